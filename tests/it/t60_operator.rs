//! Operator interfaces against real daemons and real PostgreSQL: the HTTP
//! API (JSON, control endpoints, auth, metrics), `raftctl` (each command and
//! its errors), HAProxy from Debian's package routing through a failover,
//! a partitioned primary's health checks, and a membership change while
//! writes continue. The long tests run in named phases: a failure names
//! its phase.

use std::time::{Duration, Instant};

use raftgres::http::client;
use raftgres::playground::{free_port, http_get};
use serde_json::Value;
use tracing::info;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::{
    CONFIG_REQUEST, CONTROL_REQUEST, DAEMON_START, EVENTS, FAILOVER, HANDOVER_ACCEPTED, HAPROXY, LEASE_LOST, REJOIN,
    REPLICAS_FOLLOW, REPLICATED, SETTLED, SWITCHOVER, WRITE, WRITER_PROGRESS,
};
use crate::support::{Partition, phase, wait_for};

async fn call(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> client::Reply {
    client::request(method, url, token, &[], body.map(str::to_string), CONTROL_REQUEST)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

fn primary_of(status: &Value) -> String {
    status["primary"].as_str().unwrap_or_default().to_string()
}

fn members(status: &Value) -> Vec<Value> {
    status["members"].as_array().cloned().unwrap_or_default()
}

fn id_of(name: &str) -> u64 {
    name.trim_start_matches("pg").parse().expect("members are named pg<id>")
}

/// What the phases of [`http_api_raftctl_and_auth`] share: the roles when
/// it starts, and the primary's API with the token.
struct Roles {
    primary: u64,
    replicas: Vec<u64>,
    /// The primary's HTTP API.
    api: String,
    token: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_api_raftctl_and_auth() {
    let c = DaemonCluster::start(3, |_| {}).await;
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;
    let replicas: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != primary).collect();
    let roles = Roles { primary, replicas, api: c.api(primary), token: c.layout.token.clone() };
    let r = &roles;

    phase("raftctl list", phase_list(&c, r)).await;
    let version_before = phase("HTTP needs the token", phase_http_needs_the_token(&c, r)).await;
    phase("gRPC needs the token", phase_grpc_needs_the_token(&c, r, version_before)).await;
    phase("HEAD and OPTIONS", phase_head_and_options(&c, r)).await;
    phase("JSON documents", phase_json_documents(&c, r)).await;
    let version = phase("HTTP /config", phase_http_config(&c, r, version_before)).await;
    phase("metrics", phase_metrics(&c, r)).await;
    phase("raftctl errors", phase_raftctl_errors(&c, r, version)).await;
    phase("raftctl config", phase_raftctl_config(&c, version)).await;
    phase("pause and resume", phase_pause_and_resume(&c, r)).await;
    phase("scheduled switchover", phase_scheduled_switchover(&c, r)).await;
    phase("events --follow", phase_events_follow(&c, r)).await;
    let restarted = phase("restart", phase_restart(&c, r)).await;
    phase("HTTP control requests", phase_http_control(&c, r, restarted)).await;
    phase("reinit", phase_reinit(&c, r)).await;
    let new_primary = phase("switchover under writes", phase_switchover_under_writes(&c, r)).await;
    phase("failover --to", phase_failover_to(&c, r, new_primary)).await;
}

/// raftctl list: every member with its role, state, timeline and Raft role.
async fn phase_list(c: &DaemonCluster, r: &Roles) {
    let primary = r.primary;
    let status = c.raftctl_json(&["list"]);
    assert_eq!(primary_of(&status), format!("pg{primary}"), "{status}");
    let ms = members(&status);
    assert_eq!(ms.len(), 3, "{status}");
    assert_eq!(ms.iter().filter(|m| m["role"] == "primary").count(), 1, "{status}");
    assert_eq!(ms.iter().filter(|m| m["role"] == "replica" && m["state"] == "streaming").count(), 2, "{status}");
    assert_eq!(ms.iter().filter(|m| m["raft_role"] == "leader").count(), 1, "{status}");
    assert!(ms.iter().all(|m| m["timeline"] == 1), "{status}");
    let table = c.must_raftctl(&["list"]);
    for want in ["Member", "Leader", "Replica", "streaming", "Lag in MB", "Raft"] {
        assert!(table.contains(want), "{want} missing from:\n{table}");
    }
}

/// Every unsafe HTTP request needs the token, and changes nothing without
/// it. Returns the configuration version before.
async fn phase_http_needs_the_token(c: &DaemonCluster, r: &Roles) -> u64 {
    let (primary, api) = (r.primary, &r.api);
    let version_before = c.raftctl_json(&["config", "show"])["version"].as_u64().expect("version");
    for (method, path, body) in [
        ("POST", "/switchover", r#"{"leader":"pg1"}"#),
        ("DELETE", "/switchover", ""),
        ("POST", "/failover", r#"{"candidate":"pg2"}"#),
        ("POST", "/restart", "{}"),
        ("POST", "/reinitialize", "{}"),
        ("POST", "/reload", ""),
        ("PATCH", "/config", r#"{"maximum_lag_on_failover": 1}"#),
        ("PUT", "/config", "{}"),
        ("POST", "/primary", ""),
    ] {
        for presented in [None, Some("not-the-cluster-token")] {
            let r = call(method, &format!("{api}{path}"), presented, Some(body)).await;
            assert_eq!(r.status, 401, "{method} {path} with {presented:?}: {}", r.body);
        }
    }
    let after = c.raftctl_json(&["list"]);
    assert_eq!(primary_of(&after), format!("pg{primary}"));
    assert_eq!(c.raftctl_json(&["config", "show"])["version"].as_u64(), Some(version_before));
    version_before
}

/// Every admin gRPC call needs the token.
async fn phase_grpc_needs_the_token(c: &DaemonCluster, r: &Roles, version_before: u64) {
    let primary = r.primary;
    for args in [
        vec!["list"],
        vec!["member", "add", "--id", "9", "--name", "pg9", "--raft-addr", "127.0.0.1:1"],
        vec!["member", "promote", "pg2"],
        vec!["member", "remove", "pg2"],
        vec!["switchover", "--to", "pg2"],
        vec!["switchover", "--cancel"],
        vec!["failover", "--to", "pg2"],
        vec!["pause"],
        vec!["resume"],
        vec!["config", "show"],
        vec!["config", "set", "maximum_lag_on_failover=1"],
        vec!["history"],
        vec!["events", "--follow"],
        vec!["restart", "pg2"],
        vec!["reinit", "pg2"],
        vec!["haproxy-config"],
    ] {
        for t in ["", "wrong-token-wrong-token"] {
            let (code, out, err) = c.raftctl_with(&args, &[("RAFTCTL_TOKEN", t)]);
            assert_eq!(code, 4, "raftctl {args:?} with token {t:?}: {err}{out}");
        }
    }
    assert_eq!(primary_of(&c.raftctl_json(&["list"])), format!("pg{primary}"));
    assert_eq!(c.raftctl_json(&["config", "show"])["version"].as_u64(), Some(version_before));
}

/// HEAD and OPTIONS answer with the status line only.
async fn phase_head_and_options(c: &DaemonCluster, r: &Roles) {
    let (primary, replicas) = (r.primary, &r.replicas);
    for (method, path, node, want) in [
        ("OPTIONS", "/primary", primary, 200),
        ("OPTIONS", "/primary", replicas[0], 503),
        ("HEAD", "/replica?lag=16MB", replicas[0], 200),
        ("HEAD", "/replica", primary, 503),
        ("OPTIONS", "/", primary, 200),
    ] {
        let r = call(method, &format!("{}{path}", c.api(node)), None, None).await;
        assert_eq!(r.status, want, "{method} {path} on node {node}");
        assert!(r.body.is_empty(), "{method} {path} has no body: {}", r.body);
    }
}

/// JSON documents: /cluster, /history, /patroni and /status.
async fn phase_json_documents(c: &DaemonCluster, r: &Roles) {
    let (replicas, api) = (&r.replicas, &r.api);
    let (code, body) = http_get(&format!("{api}/cluster")).await.expect("GET /cluster");
    assert_eq!(code, 200);
    let cluster: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(cluster["members"].as_array().map(Vec::len), Some(3), "{cluster}");
    assert_eq!(cluster["members"].as_array().unwrap().iter().filter(|m| m["role"] == "leader").count(), 1, "{cluster}");
    let (code, body) = http_get(&format!("{api}/history")).await.expect("GET /history");
    assert_eq!(code, 200);
    let rows: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(rows, serde_json::json!([]), "Patroni's rows: no timeline has ended yet");
    let (code, body) = http_get(&format!("{api}/history?all=true")).await.expect("GET /history?all=true");
    assert_eq!(code, 200);
    assert!(body.contains("primary_elected") && !body.contains("PrimaryElected"), "{body}");
    for path in ["/patroni", "/status"] {
        let (code, body) = http_get(&format!("{}{path}", c.api(replicas[0]))).await.expect("GET");
        assert_eq!(code, 200, "{path}");
        assert!(body.contains("\"role\":\"replica\""), "{path}: {body}");
    }
}

/// /config: GET with its version, PATCH as a compare-and-set merge, PUT
/// validated. Returns the version after the one valid PATCH.
async fn phase_http_config(c: &DaemonCluster, r: &Roles, version_before: u64) -> u64 {
    let (api, token) = (&r.api, &r.token);
    let r = call("GET", &format!("{api}/config"), None, None).await;
    assert_eq!(r.status, 200);
    let etag = r.etag.clone().expect("GET /config carries an ETag");
    let stale = format!("\"{}\"", version_before + 100);
    let r = client::request(
        "PATCH",
        &format!("{api}/config"),
        Some(token),
        &[("if-match", &stale)],
        Some(r#"{"maximum_lag_on_failover": 2097152}"#.into()),
        CONFIG_REQUEST,
    )
    .await
    .expect("PATCH");
    assert_eq!(r.status, 409, "a stale version is a conflict: {}", r.body);
    let r = client::request(
        "PATCH",
        &format!("{api}/config"),
        Some(token),
        &[("if-match", &etag)],
        Some(r#"{"maximum_lag_on_failover": 2097152}"#.into()),
        CONFIG_REQUEST,
    )
    .await
    .expect("PATCH");
    assert_eq!(r.status, 200, "{}", r.body);
    let cfg: Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(cfg["maximum_lag_on_failover"], 2097152);
    assert_eq!(cfg["lease_ttl_ms"], 2000, "a merge keeps the other keys");
    let r = call("PUT", &format!("{api}/config"), Some(token), Some(r#"{"lease_ttl_ms": 10}"#)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("lease_ttl_ms"), "{}", r.body);
    let r = call("PATCH", &format!("{api}/config"), Some(token), Some(r#"{"no_such_key": 1}"#)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let version = c.raftctl_json(&["config", "show"])["version"].as_u64().expect("version");
    assert_eq!(version, version_before + 1, "only the valid PATCH changed it");
    version
}

/// /metrics in Prometheus text.
async fn phase_metrics(c: &DaemonCluster, r: &Roles) {
    let (replicas, api) = (&r.replicas, &r.api);
    let (code, text) = http_get(&format!("{api}/metrics")).await.expect("GET /metrics");
    assert_eq!(code, 200);
    for want in [
        "raftgres_raft_term{",
        "raftgres_raft_applied_index{",
        "raftgres_primary{scope=\"it-daemons\",name=\"pg",
        "raftgres_lease_remaining_seconds{",
        "raftgres_failovers_total{",
        "raftgres_switchovers_total{",
        "raftgres_postgres_up{",
        "patroni_primary{",
    ] {
        assert!(text.contains(want), "{want} missing from /metrics:\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("raftgres_primary{") && l.ends_with(" 1")), "{text}");
    let (_, text) = http_get(&format!("{}/metrics", c.api(replicas[0]))).await.expect("GET /metrics");
    assert!(text.lines().any(|l| l.starts_with("raftgres_replication_lag_bytes{")), "{text}");
}

/// raftctl errors: unknown member, invalid value, unreachable cluster;
/// nothing changes.
async fn phase_raftctl_errors(c: &DaemonCluster, r: &Roles, version: u64) {
    let primary = r.primary;
    let (code, _, err) = c.raftctl(&["failover", "--to", "pg42"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown member") && err.contains("pg1"), "{err}");
    let (code, _, err) = c.raftctl(&["member", "remove", "nobody"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = c.raftctl(&["member", "remove", &format!("pg{primary}")]);
    assert_eq!(code, 1, "the primary cannot be removed: {err}");
    let (code, _, err) = c.raftctl(&["config", "set", "lease_ttl_ms=5"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("lease_ttl_ms"), "{err}");
    let (code, _, err) = c.raftctl(&["config", "set", "synchronous_mode=sometimes"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = c.raftctl(&["switchover", "--at", "tomorrow"]);
    assert_eq!(code, 2, "{err}");
    let dead = format!("127.0.0.1:{}", free_port().expect("port"));
    let (code, _, err) = c.raftctl_with(&["list"], &[("RAFTCTL_ENDPOINTS", &dead)]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
    assert_eq!(c.raftctl_json(&["config", "show"])["version"].as_u64(), Some(version));
    assert_eq!(primary_of(&c.raftctl_json(&["list"])), format!("pg{primary}"));
}

/// raftctl config show/set/edit.
async fn phase_raftctl_config(c: &DaemonCluster, version: u64) {
    let out = c.must_raftctl(&["config", "set", "maximum_lag_on_failover=4194304", "--dry-run"]);
    assert!(out.contains("4194304") && out.contains("dry run"), "{out}");
    assert_eq!(c.raftctl_json(&["config", "show"])["version"].as_u64(), Some(version));
    let out =
        c.must_raftctl(&["config", "set", "maximum_lag_on_failover=4194304", "postgresql_parameters.work_mem=8MB"]);
    assert!(out.contains(&format!("version {}", version + 1)), "{out}");
    let shown = c.raftctl_json(&["config", "show"]);
    assert_eq!(shown["config"]["maximum_lag_on_failover"], 4194304, "{shown}");
    assert_eq!(shown["config"]["postgresql_parameters"]["work_mem"], "8MB", "{shown}");
    let (code, _, err) = c.raftctl(&["config", "set", "lease_ttl_ms=3000", "--if-version", "1"]);
    assert_eq!(code, 1, "a stale --if-version is refused: {err}");
    let editor = "sed -i 's/\"maximum_lag_on_failover\": 4194304/\"maximum_lag_on_failover\": 8388608/'";
    let (code, out, err) = c.raftctl_with(&["config", "edit", "--force"], &[("EDITOR", editor), ("VISUAL", editor)]);
    assert_eq!(code, 0, "{err}{out}");
    assert_eq!(c.raftctl_json(&["config", "show"])["config"]["maximum_lag_on_failover"], 8388608);
}

/// Pause and resume.
async fn phase_pause_and_resume(c: &DaemonCluster, r: &Roles) {
    let api = &r.api;
    c.must_raftctl(&["pause"]);
    assert_eq!(c.raftctl_json(&["list"])["maintenance"], true);
    let (_, body) = http_get(&format!("{api}/patroni")).await.expect("GET");
    assert!(body.contains("\"pause\":true"), "{body}");
    let (code, _, err) = c.raftctl(&["pause"]);
    assert_eq!(code, 1, "pausing twice is refused: {err}");
    c.must_raftctl(&["resume"]);
    assert_eq!(c.raftctl_json(&["list"])["maintenance"], false);
}

/// A scheduled switchover is listed and can be cancelled.
async fn phase_scheduled_switchover(c: &DaemonCluster, r: &Roles) {
    let (primary, replicas, api, token) = (r.primary, &r.replicas, &r.api, &r.token);
    let at = chrono::Utc::now() + chrono::Duration::hours(1);
    let target = format!("pg{}", replicas[0]);
    let out = c.must_raftctl(&["switchover", "--to", &target, "--at", &at.to_rfc3339(), "--force"]);
    assert!(out.contains("scheduled"), "{out}");
    let status = c.raftctl_json(&["list"]);
    assert_eq!(status["switchover"]["to"], target.as_str(), "{status}");
    assert!(c.must_raftctl(&["list"]).contains("Switchover scheduled"));
    let (code, _, err) = c.raftctl(&["switchover", "--to", &target, "--force"]);
    assert_eq!(code, 1, "one switchover at a time: {err}");
    c.must_raftctl(&["switchover", "--cancel"]);
    assert_eq!(c.raftctl_json(&["list"])["switchover"], Value::Null);
    let (code, _, err) = c.raftctl(&["switchover", "--cancel"]);
    assert_eq!(code, 1, "nothing to cancel: {err}");
    let r = call("DELETE", &format!("{api}/switchover"), Some(token), None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let body = format!(r#"{{"leader":"pg{primary}","candidate":"{target}","scheduled_at":"{past}"}}"#);
    let r = call("POST", &format!("{api}/switchover"), Some(token), Some(&body)).await;
    assert_eq!(r.status, 422, "a past time: {}", r.body);
    let r = call("POST", &format!("{api}/switchover"), Some(token), Some(r#"{"candidate":"pg1"}"#)).await;
    assert_eq!(r.status, 400, "no leader: {}", r.body);
    assert_eq!(primary_of(&c.raftctl_json(&["list"])), format!("pg{primary}"));
}

/// events --follow prints events as they are applied.
async fn phase_events_follow(c: &DaemonCluster, r: &Roles) {
    let token = &r.token;
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_raftctl"))
        .args(["events", "--follow", "--json"])
        .env("RAFTCTL_ENDPOINTS", raftgres::playground::endpoints(&c.layout))
        .env("RAFTCTL_TOKEN", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start raftctl events");
    let stdout = follower.stdout.take().expect("piped stdout");
    let follower = KillOnDrop(follower);
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("maintenance_changed");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    // The stream starts empty; events after it connected must arrive.
    wait_for("the follower to connect", EVENTS, async || {
        c.must_raftctl(&["pause"]);
        c.must_raftctl(&["resume"]);
        if reader.is_finished() { Ok(()) } else { Err("no event yet") }
    })
    .await;
    drop(follower);
    let lines = reader.join().expect("reader");
    let last: Value = serde_json::from_str(lines.last().expect("a line")).expect("JSON event");
    assert_eq!(last["kind"], "maintenance_changed", "{lines:?}");
}

/// Restart a replica's PostgreSQL through another node. Returns its new
/// postmaster's pid.
async fn phase_restart(c: &DaemonCluster, r: &Roles) -> i32 {
    let replicas = &r.replicas;
    let before = c.postmaster_pid(replicas[0]).expect("running");
    let out = c.must_raftctl(&["restart", &format!("pg{}", replicas[0]), "--force"]);
    assert!(out.contains(&format!("Success: restart on member pg{}", replicas[0])), "{out}");
    let after = c.postmaster_pid(replicas[0]).expect("running again");
    assert_ne!(before, after, "a new postmaster");
    after
}

/// The same control requests over HTTP, with the token.
async fn phase_http_control(c: &DaemonCluster, r: &Roles, after: i32) {
    let (replicas, api, token) = (&r.replicas, &r.api, &r.token);
    let r = call("POST", &format!("{}/restart", c.api(replicas[0])), Some(token), Some("{}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(c.postmaster_pid(replicas[0]), Some(after), "restarted again");
    let r = call("POST", &format!("{api}/reinitialize"), Some(token), Some("{}")).await;
    assert_eq!(r.status, 503, "not on the primary: {}", r.body);
    let r = call("POST", &format!("{api}/reload"), Some(token), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("nothing changed"), "{}", r.body);
    let r = call("POST", &format!("{api}/failover"), Some(token), Some(r#"{"candidate":"pg42"}"#)).await;
    assert_eq!(r.status, 412, "unknown candidate: {}", r.body);
    let r = call("POST", &format!("{api}/failover"), Some(token), Some("{}")).await;
    assert_eq!(r.status, 400, "no candidate: {}", r.body);
    let r = call("POST", &format!("{api}/switchover"), Some(token), Some("not json")).await;
    assert_eq!(r.status, 400, "{}", r.body);
}

/// reinit: refused on the primary, re-clones a replica (after the primary
/// got a table `t` with 50 rows).
async fn phase_reinit(c: &DaemonCluster, r: &Roles) {
    let (primary, replicas) = (r.primary, &r.replicas);
    let (code, _, err) = c.raftctl(&["reinit", &format!("pg{primary}")]);
    assert_eq!(code, 1, "{err}");
    let pclient = c.must_pg(primary).await;
    pclient.batch_execute("CREATE TABLE t (v bigint PRIMARY KEY)").await.expect("create table");
    for v in 0..50i64 {
        pclient.execute("INSERT INTO t VALUES ($1)", &[&v]).await.expect("insert");
    }
    let out = c.must_raftctl(&["reinit", &format!("pg{}", replicas[1]), "--force"]);
    assert!(out.contains("reinitialized"), "{out}");
    c.must_rows(replicas[1], 50, REPLICATED).await;
}

/// Switchover while a client writes: no acknowledged write is lost.
/// Returns the new primary.
async fn phase_switchover_under_writes(c: &DaemonCluster, r: &Roles) -> u64 {
    let (primary, replicas) = (r.primary, &r.replicas);
    let writer = {
        let uris: Vec<(u64, String)> = [1u64, 2, 3].iter().map(|id| (*id, c.layout.pg_uri(*id))).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let task = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut v = 1000i64;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                v += 1;
                for (_, uri) in &uris {
                    let Ok(Ok((cl, conn))) = tokio::time::timeout(
                        Duration::from_millis(300),
                        tokio_postgres::connect(uri, tokio_postgres::NoTls),
                    )
                    .await
                    else {
                        continue;
                    };
                    tokio::spawn(conn);
                    if let Ok(Ok(_)) =
                        tokio::time::timeout(Duration::from_millis(500), cl.execute("INSERT INTO t VALUES ($1)", &[&v]))
                            .await
                    {
                        acked.push(v);
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acked
        });
        (stop, task)
    };
    wait_for("the writer to make progress", WRITER_PROGRESS, async || {
        let n: i64 = c
            .must_pg(primary)
            .await
            .query_one("SELECT count(*) FROM t WHERE v > 1000", &[])
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if n >= 5 { Ok(()) } else { Err(format!("{n} rows")) }
    })
    .await;
    let target = format!("pg{}", replicas[0]);
    let out = wait_for("switchover --to to be accepted", HANDOVER_ACCEPTED, async || {
        match c.raftctl(&["switchover", "--to", &target, "--force"]) {
            (0, out, _) => Ok(out),
            (1, _, err) if err.contains("not a streaming replica") => Err(err),
            (code, out, err) => panic!("switchover failed ({code}): {err}{out}"),
        }
    })
    .await;
    assert!(out.contains(&format!("{target} is the new primary")), "{out}");
    let new_primary = c.must_primary(&[replicas[0]], SWITCHOVER).await;
    assert_eq!(new_primary, replicas[0]);
    // Let the writer land a few writes on the new primary before stopping.
    let on_new = async || -> Result<i64, String> {
        let cl = c.pg(new_primary).await.map_err(|e| e.to_string())?;
        let row = cl.query_one("SELECT count(*) FROM t WHERE v > 1000", &[]).await.map_err(|e| e.to_string())?;
        Ok(row.get(0))
    };
    let at_switch = wait_for("a count on the new primary", WRITE, on_new).await;
    wait_for("writes on the new primary", WRITER_PROGRESS, async || match on_new().await {
        Ok(n) if n >= at_switch + 5 => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
    writer.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.1.await.expect("writer");
    assert!(acked.len() >= 5, "the writer made progress: {}", acked.len());
    let nclient = c.must_pg(new_primary).await;
    let rows = nclient.query("SELECT v FROM t WHERE v > 1000", &[]).await.expect("select");
    let present: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    let lost: Vec<&i64> = acked.iter().filter(|v| !present.contains(v)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost in the switchover: {lost:?}");
    c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
    assert_eq!(c.must_timeline(new_primary).await, 2);
    new_primary
}

/// failover --to another replica; history shows both handovers.
async fn phase_failover_to(c: &DaemonCluster, r: &Roles, new_primary: u64) {
    let (primary, replicas) = (r.primary, &r.replicas);
    let target = if replicas[1] != new_primary { replicas[1] } else { primary };
    // The target's streaming state reaches the replicated state a moment
    // after its API shows it; until then the failover is refused.
    let out = wait_for("failover --to to be accepted", HANDOVER_ACCEPTED, async || {
        match c.raftctl(&["failover", "--to", &format!("pg{target}"), "--force"]) {
            (0, out, _) => Ok(out),
            (1, _, err) if err.contains("not a streaming replica") => Err(err),
            (code, out, err) => panic!("failover failed ({code}): {err}{out}"),
        }
    })
    .await;
    assert!(out.contains("new primary"), "{out}");
    assert_eq!(c.must_primary(&[target], SWITCHOVER).await, target);
    let history = c.raftctl_json(&["history", "--all"]);
    let kinds: Vec<&str> = history.as_array().expect("array").iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"switchover_scheduled") && kinds.contains(&"primary_released"), "{kinds:?}");
    let elections = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "primary_elected" && e["text"].as_str().unwrap_or("").contains("switchover"))
        .count();
    assert_eq!(elections, 2, "{history}");
    let (_, text) = http_get(&format!("{}/metrics", c.api(target))).await.expect("metrics");
    assert!(text.lines().any(|l| l.starts_with("raftgres_switchovers_total{") && l.ends_with(" 2")), "{text}");
    assert_eq!(id_of(&primary_of(&c.raftctl_json(&["list"]))), target);
}

/// Which backend a connection through HAProxy reached: (port, in
/// recovery), or why it failed.
pub(crate) type Reached = Result<(i32, bool), String>;

/// Which backend a connection through HAProxy on `port` reaches.
pub(crate) async fn through(port: u16, password: &str) -> Reached {
    let uri = format!("postgresql://postgres:{password}@127.0.0.1:{port}/postgres?connect_timeout=2");
    let (cl, conn) = tokio::time::timeout(Duration::from_secs(3), tokio_postgres::connect(&uri, tokio_postgres::NoTls))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let row = tokio::time::timeout(
        Duration::from_secs(3),
        cl.query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[]),
    )
    .await
    .map_err(|_| "query timed out".to_string())?
    .map_err(|e| e.to_string())?;
    Ok((row.get(0), row.get(1)))
}

/// The port of node `id`'s PostgreSQL, as `inet_server_port()` reports it.
fn pg_port(c: &DaemonCluster, id: u64) -> i32 {
    c.layout.node(id).pg_port as i32
}

/// HAProxy running the configuration raftctl generated, with its primary
/// and replica ports; killed on drop.
struct Haproxy {
    pp: u16,
    rp: u16,
    /// The superuser's password, to connect through it.
    pw: String,
    _process: Kill,
}

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn haproxy_routes_through_a_failover_and_a_partitioned_primary_answers_503() {
    let host = |id: u64| format!("127.0.61.{id}");
    let mut c = DaemonCluster::start_on(3, host, |_| {}).await;
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;

    let haproxy = phase("HAProxy", phase_haproxy_runs_the_generated_configuration(&c, primary)).await;
    let (partition, others) = phase("partitioned primary", phase_partitioned_primary(&c, primary, host)).await;
    phase("HAProxy follows the new primary", phase_haproxy_follows_the_new_primary(&c, primary, &others, &haproxy))
        .await;
    phase("healed", phase_healed(&c, primary, partition)).await;
    c.kill_node(primary);
}

/// HAProxy runs the configuration raftctl generates, and settles on the
/// right backends.
async fn phase_haproxy_runs_the_generated_configuration(c: &DaemonCluster, primary: u64) -> Haproxy {
    let ports: Vec<u16> = (0..5).map(|_| free_port().expect("port")).collect();
    let cfg_path = c.layout.dir.join("haproxy.cfg");
    let (pp, rp, dp, op, sp) = (ports[0], ports[1], ports[2], ports[3], ports[4]);
    c.must_raftctl(&[
        "haproxy-config",
        "--bind",
        "127.0.0.1",
        "--primary-port",
        &pp.to_string(),
        "--replica-port",
        &rp.to_string(),
        "--default-port",
        &dp.to_string(),
        "--offline-port",
        &op.to_string(),
        "--stats-port",
        &sp.to_string(),
        "--check-interval-ms",
        "500",
        "--file",
        cfg_path.to_str().expect("utf-8 path"),
    ]);
    let cfg = std::fs::read_to_string(&cfg_path).expect("config written");
    assert!(cfg.contains("OPTIONS uri /primary") && cfg.contains("/replica?lag="), "{cfg}");
    let haproxy = std::process::Command::new("haproxy")
        .args(["-db", "-f", cfg_path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start haproxy (scripts/install-deps.sh installs it)");
    let haproxy = Haproxy { pp, rp, pw: c.layout.superuser_password.clone(), _process: Kill(haproxy) };
    let pw = &haproxy.pw;

    // HAProxy counts servers up until their first check; wait for both
    // services to settle on the right backends.
    wait_for("HAProxy's primary port to reach the primary", HAPROXY, async || match through(pp, pw).await {
        Ok((port, false)) if port == pg_port(c, primary) => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
    wait_for("HAProxy's checks to settle", HAPROXY, async || {
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(through(rp, pw).await);
        }
        if seen.iter().all(|r| matches!(r, Ok((_, true)))) { Ok(()) } else { Err(format!("{seen:?}")) }
    })
    .await;
    assert!(matches!(through(dp, pw).await, Ok((p, false)) if p == pg_port(c, primary)));
    haproxy
}

/// The primary is cut off from Raft: its lease runs out and it answers
/// 503. Returns the partition and the other nodes.
async fn phase_partitioned_primary(
    c: &DaemonCluster,
    primary: u64,
    host: impl Fn(u64) -> String,
) -> (Partition, Vec<u64>) {
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != primary).collect();
    let peer_ports: Vec<u16> = others.iter().map(|id| c.layout.node(*id).raft_port).collect();
    let partition = Partition::isolate(&host(primary), &[c.layout.node(primary).raft_port], &peer_ports);
    let cut = Instant::now();
    wait_for("the partitioned primary to fail its /primary check", LEASE_LOST, async || {
        match http_get(&format!("{}/primary", c.api(primary))).await {
            Ok((503, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let demoted_after = cut.elapsed();
    info!(?demoted_after, "the partitioned primary answers 503");
    for path in ["/leader", "/read-write", "/"] {
        let (code, _) = http_get(&format!("{}{path}", c.api(primary))).await.expect("GET");
        assert_eq!(code, 503, "{path} on the partitioned primary");
    }
    (partition, others)
}

/// A new primary is elected; HAProxy's primary port follows it, the
/// replica port leaves it.
async fn phase_haproxy_follows_the_new_primary(c: &DaemonCluster, primary: u64, others: &[u64], haproxy: &Haproxy) {
    let (pp, rp, pw) = (haproxy.pp, haproxy.rp, &haproxy.pw);
    let mut replica_port_hits: Vec<(Instant, Reached)> = Vec::new();
    let new_primary = wait_for("HAProxy's primary port to reach a new primary", FAILOVER, async || {
        replica_port_hits.push((Instant::now(), through(rp, pw).await));
        match through(pp, pw).await {
            Ok((port, false)) if port != pg_port(c, primary) => Ok(port),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let switched = Instant::now();
    let new_id = others.iter().copied().find(|id| pg_port(c, *id) == new_primary).expect("one of the others");
    assert_eq!(c.must_primary(others, SETTLED).await, new_id);
    let (code, _) = http_get(&format!("{}/replica", c.api(new_id))).await.expect("GET");
    assert_eq!(code, 503, "the new primary fails the replica check");
    // HAProxy learns of a role change only by polling: a node promoted
    // between two checks serves the replica port until `fall` checks
    // failed (fall 2 x fastinter 500 ms here). After that, never again.
    let detect = Duration::from_secs(3);
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        replica_port_hits.push((Instant::now(), through(rp, pw).await));
    }
    let mut in_window = 0;
    for (at, hit) in &replica_port_hits {
        if let Ok((port, false)) = hit {
            assert!(
                *at < switched + detect && *port == new_primary,
                "the replica port reached a primary on port {port} {:?} after the switch",
                at.saturating_duration_since(switched)
            );
            in_window += 1;
        }
    }
    info!(in_window, "replica-port connections that reached the new primary before HAProxy's checks caught up");
    let late_ok =
        replica_port_hits.iter().filter(|(at, h)| *at > switched + detect && matches!(h, Ok((_, true)))).count();
    assert!(late_ok >= 3, "the replica port serves reads from the remaining replica: {replica_port_hits:?}");
    let (code, _) = http_get(&format!("{}/primary", c.api(primary))).await.expect("GET");
    assert_eq!(code, 503, "still 503 while cut off");
}

/// Healed: the old primary rejoins as a replica.
async fn phase_healed(c: &DaemonCluster, primary: u64, partition: Partition) {
    drop(partition);
    c.must_healthy(&[1, 2, 3], REJOIN).await;
    let (code, _) = http_get(&format!("{}/replica", c.api(primary))).await.expect("GET");
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_node_joins_and_an_old_one_leaves_while_writes_continue() {
    let mut c = DaemonCluster::start(3, |_| {}).await;
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;
    // A replica that does not lead Raft: removing the leader would add an
    // election to what is measured.
    let status = c.raftctl_json(&["list"]);
    let leaving = members(&status)
        .iter()
        .find(|m| m["role"] == "replica" && m["raft_role"] == "follower")
        .map(|m| m["id"].as_u64().expect("id"))
        .expect("a replica following Raft");
    let client = c.must_pg(primary).await;
    client.batch_execute("CREATE TABLE t (v bigint PRIMARY KEY)").await.expect("create table");

    let uri = c.layout.pg_uri(primary);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = tokio::spawn(async move {
        let (cl, conn) = tokio_postgres::connect(&uri, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(conn);
        let (mut ok, mut failed) = (0i64, Vec::new());
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            match cl.execute("INSERT INTO t VALUES ($1)", &[&ok]).await {
                Ok(_) => ok += 1,
                Err(e) => failed.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (ok, failed)
    });

    let new = phase("node 4 joins", phase_a_node_joins(&mut c)).await;
    let rest_ep = phase("an old replica leaves", phase_an_old_replica_leaves(&mut c, leaving, new)).await;
    phase("writes go on", async {
        // Writes go on after the removal.
        let count = async || -> Result<i64, String> {
            let cl = c.pg(primary).await.map_err(|e| e.to_string())?;
            Ok(cl.query_one("SELECT count(*) FROM t", &[]).await.map_err(|e| e.to_string())?.get(0))
        };
        let after_removal = wait_for("a row count", WRITE, count).await;
        wait_for("writes after the removal", WRITER_PROGRESS, async || match count().await {
            Ok(n) if n >= after_removal + 20 => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = writer.await.expect("writer");
        assert!(failed.is_empty(), "writes failed during the membership change: {failed:?}");
        assert!(ok > 50, "writes continued: {ok}");
        let remaining: Vec<u64> = [1, 2, 3, new].into_iter().filter(|id| *id != leaving).collect();
        c.must_rows(new, ok, REPLICATED).await;
        assert_eq!(c.must_healthy(&remaining, REPLICAS_FOLLOW).await, primary);
        let (code, _, err) =
            c.raftctl_with(&["member", "remove", &format!("pg{leaving}")], &[("RAFTCTL_ENDPOINTS", &rest_ep)]);
        assert_eq!(code, 1, "an unknown member: {err}");
    })
    .await;
}

/// Node 4 starts, is added as a learner, catches up and is promoted.
/// Returns its id.
async fn phase_a_node_joins(c: &mut DaemonCluster) -> u64 {
    let new = c.spawn_joiner();
    let node = c.layout.node(new).clone();
    let (code, _, err) = c.raftctl(&["member", "add", "--id", "4", "--name", "pg2", "--raft-addr", &node.raft_addr()]);
    assert_eq!(code, 1, "a duplicate name is refused: {err}");
    // The new daemon answers its admin service once it has started.
    wait_for("the new daemon to answer", DAEMON_START, async || {
        match c.raftctl_with(&["list"], &[("RAFTCTL_ENDPOINTS", &node.raft_addr())]) {
            (0, _, _) => Ok(()),
            (_, _, err) => Err(err),
        }
    })
    .await;
    let (code, _, err) = c.raftctl(&["member", "add", "--id", "5", "--name", "pg5", "--raft-addr", &node.raft_addr()]);
    assert_eq!(code, 1, "the node at that address is another id: {err}");
    assert!(err.contains("is node 4, not 5"), "{err}");
    let dead = format!("127.0.0.1:{}", free_port().expect("port"));
    let (code, _, err) = c.raftctl(&["member", "add", "--id", "5", "--name", "pg5", "--raft-addr", &dead]);
    assert_eq!(code, 3, "nothing listens there: {err}");
    let status = c.raftctl_json(&["list"]);
    assert_eq!(members(&status).len(), 3, "nothing was added: {status}");
    let out = c.must_raftctl(&[
        "member",
        "add",
        "--id",
        &new.to_string(),
        "--name",
        &node.name,
        "--raft-addr",
        &node.raft_addr(),
        "--api-url",
        &node.api_url(),
    ]);
    assert!(out.contains("learner"), "{out}");
    let status = c.raftctl_json(&["list"]);
    let m = members(&status).into_iter().find(|m| m["name"] == node.name.as_str()).expect("listed");
    assert_eq!(m["raft_role"], "learner", "{status}");
    let out = c.must_raftctl(&["member", "promote", &node.name]);
    assert!(out.contains("voter"), "{out}");
    let (code, _, err) = c.raftctl(&["member", "promote", &node.name]);
    assert_eq!(code, 1, "already a voter: {err}");
    c.must_healthy(&[1, 2, 3, new], REJOIN).await;
    new
}

/// An old replica is removed: its own view turns stale, the others no
/// longer list it. Returns the endpoints of the remaining members.
async fn phase_an_old_replica_leaves(c: &mut DaemonCluster, leaving: u64, new: u64) -> String {
    let out = c.must_raftctl(&["member", "remove", &format!("pg{leaving}")]);
    assert!(out.contains("removed"), "{out}");
    // The removed node no longer hears from the leader: its own view is
    // flagged stale, and the others no longer list it.
    let removed_ep = c.layout.node(leaving).raft_addr();
    let (code, out, err) = c.raftctl_with(&["list", "--json"], &[("RAFTCTL_ENDPOINTS", &removed_ep)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).expect("JSON")["stale"], true, "{out}");
    let rest_ep = [1, 2, 3, new]
        .into_iter()
        .filter(|id| *id != leaving)
        .map(|id| c.layout.node(id).raft_addr())
        .collect::<Vec<_>>()
        .join(",");
    let (code, out, err) = c.raftctl_with(&["list", "--json"], &[("RAFTCTL_ENDPOINTS", &rest_ep)]);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(status["stale"], false, "{status}");
    assert!(members(&status).iter().all(|m| m["name"] != format!("pg{leaving}").as_str()), "{status}");
    assert_eq!(
        members(&status).iter().filter(|m| m["raft_role"] == "follower" || m["raft_role"] == "leader").count(),
        3
    );
    c.kill_node(leaving);
    rest_ep
}

/// A CA and one certificate for 127.0.0.1 signed by it, as PEM files in
/// `dir`: (ca, cert, key).
fn test_certificates(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "raftgres test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("node key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("node certificate");
    let paths = (dir.join("ca.pem"), dir.join("node.pem"), dir.join("node-key.pem"));
    std::fs::write(&paths.0, ca.pem()).expect("write CA");
    std::fs::write(&paths.1, cert.pem()).expect("write certificate");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raft_and_admin_traffic_over_tls() {
    let certs = tempfile::tempdir().expect("temporary directory");
    let (ca, cert, key) = test_certificates(certs.path());
    let (ca2, cert2, key2) = (ca.clone(), cert.clone(), key.clone());
    // Healthy means the daemons elected, replicated and granted leases over
    // TLS.
    let c = DaemonCluster::start(3, move |f| {
        f.security.tls_ca_file = Some(ca2.clone());
        f.security.tls_cert_file = Some(cert2.clone());
        f.security.tls_key_file = Some(key2.clone());
    })
    .await;
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;
    let ca_env = ca.to_str().expect("utf-8 path");

    info!("--- raftctl verifies the daemons against the CA");
    let (code, out, err) = c.raftctl_with(&["list", "--json"], &[("RAFTCTL_CA_FILE", ca_env)]);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(members(&status).len(), 3, "{status}");
    assert_eq!(primary_of(&status), format!("pg{primary}"));

    info!("--- a per-member call is forwarded between daemons over TLS");
    let replica = [1, 2, 3].into_iter().find(|id| *id != primary && *id != 1).expect("a replica other than node 1");
    let first_only = c.layout.node(1).raft_addr();
    let (code, out, err) = c.raftctl_with(
        &["restart", &format!("pg{replica}"), "--force"],
        &[("RAFTCTL_CA_FILE", ca_env), ("RAFTCTL_ENDPOINTS", &first_only)],
    );
    assert_eq!(code, 0, "{err}{out}");

    info!("--- plaintext and an unknown CA are refused");
    let (code, _, err) = c.raftctl(&["list"]);
    assert_eq!(code, 3, "plaintext to a TLS port: {err}");
    let other = tempfile::tempdir().expect("temporary directory");
    let (other_ca, _, _) = test_certificates(other.path());
    let (code, _, err) = c.raftctl_with(&["list"], &[("RAFTCTL_CA_FILE", other_ca.to_str().unwrap())]);
    assert_eq!(code, 3, "a server certificate from another CA: {err}");

    info!("--- a configuration naming only part of the TLS material is refused");
    let mut f = c.layout.file_config(1);
    f.security.tls_ca_file = Some(ca.clone());
    f.security.tls_cert_file = Some(cert.clone());
    let e = f.validate().expect_err("invalid").to_string();
    assert!(e.contains("security.tls_ca_file"), "{e}");
    f.security.tls_key_file = Some(ca.clone());
    let e = f.validate().expect_err("a certificate is not a key").to_string();
    assert!(e.contains("PRIVATE KEY"), "{e}");
    f.security.tls_key_file = Some(key.clone());
    assert!(f.validate().is_ok());
}
