//! A Patroni user's habits against real daemons and real PostgreSQL:
//! errors in operator terms (wrong port, missing token, a closed pipe, a
//! follower whose node stops), patronictl's spellings and Patroni's
//! `PATCH /config`, a history that reads like `patronictl history`, and
//! confirmation before a change that costs an outage. One three-node
//! cluster, in named phases.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use raftgres::playground::{endpoints, http_get};
use serde_json::Value;
use tracing::info;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::{CONFIG_REQUEST, EVENTS, HANDOVER_ACCEPTED, REPLICAS_FOLLOW, SETTLED, SWITCHOVER};
use crate::support::{phase, wait_for};

fn primary_of(c: &DaemonCluster) -> String {
    c.raftctl_json(&["list"])["primary"].as_str().unwrap_or_default().to_string()
}

fn replicas_of(c: &DaemonCluster, primary: &str) -> Vec<u64> {
    c.layout.nodes.iter().filter(|n| n.name != primary).map(|n| n.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raftctl_habits() {
    let mut c = DaemonCluster::start(3, |_| {}).await;
    c.must_healthy(&[1, 2, 3], SETTLED).await;

    phase("wrong ports are named", phase_wrong_ports(&c)).await;
    phase("token errors name --token", phase_token(&c)).await;
    phase("a closed pipe is not an error", phase_closed_pipe(&c)).await;
    phase("logs in a file carry no colour", async { no_colour(&c) }).await;
    phase("sizes take units", phase_sizes(&c)).await;
    phase("patronictl spellings", phase_patronictl_spellings(&c)).await;
    phase("list --watch repeats", phase_watch(&c)).await;
    phase("raftctl -c node.toml", phase_config_file(&c)).await;
    phase("Patroni's PATCH /config", phase_patroni_patch(&c)).await;
    phase("confirmation before destroying", phase_confirmation(&c)).await;
    let target = phase("switchover --force", phase_switchover(&c)).await;
    phase("history reads like patronictl's", phase_history(&c, &target)).await;
    phase("events --follow survives its node", phase_follow(&mut c)).await;
}

/// raftctl pointed at the HTTP API or at PostgreSQL says which port it
/// wants.
async fn phase_wrong_ports(c: &DaemonCluster) {
    let n = c.layout.node(1);
    let http = format!("{}:{}", n.host, n.http_port);
    let (code, _, err) = c.raftctl_with(&["list"], &[("RAFTCTL_ENDPOINTS", &http)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("HTTP API port") && err.contains("raft_addr") && err.contains("7001"), "{err}");
    let pg = format!("{}:{}", n.host, n.pg_port);
    let (code, _, err) = c.raftctl_with(&["list"], &[("RAFTCTL_ENDPOINTS", &pg)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("PostgreSQL port") && err.contains("raft_addr"), "{err}");
}

/// A missing or wrong token names where the token goes.
async fn phase_token(c: &DaemonCluster) {
    for token in ["", "not-the-cluster-token-at-all"] {
        let (code, _, err) = c.raftctl_with(&["list"], &[("RAFTCTL_TOKEN", token)]);
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("--token") && err.contains("RAFTCTL_TOKEN"), "{err}");
    }
}

/// `raftctl list | head`: the reader went away before the output was
/// written; raftctl exits quietly.
async fn phase_closed_pipe(c: &DaemonCluster) {
    for args in [&["list"][..], &["history", "--all"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_raftctl"))
            .args(args)
            .env("RAFTCTL_ENDPOINTS", endpoints(&c.layout))
            .env("RAFTCTL_TOKEN", &c.layout.token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start raftctl");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("raftctl ends");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

/// The daemons' logs go to a file: plain text.
fn no_colour(c: &DaemonCluster) {
    for id in 1..=3 {
        let log = c.log(id);
        assert!(log.contains("INFO"), "node {id} logged: {log}");
        assert!(!log.contains('\u{1b}'), "escape codes in node {id}'s log");
    }
}

/// `maximum_lag_on_failover=16MB` is stored as bytes; a plain integer
/// still works; a bad size changes nothing.
async fn phase_sizes(c: &DaemonCluster) {
    c.must_raftctl(&["config", "set", "maximum_lag_on_failover=16MB"]);
    let shown = c.raftctl_json(&["config", "show"]);
    assert_eq!(shown["config"]["maximum_lag_on_failover"], 16 << 20, "{shown}");
    let version = shown["version"].as_u64();
    let (code, _, err) = c.raftctl(&["config", "set", "maximum_lag_on_failover=16 parsecs"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("maximum_lag_on_failover"), "{err}");
    assert_eq!(c.raftctl_json(&["config", "show"])["version"].as_u64(), version);
    c.must_raftctl(&["config", "set", "maximum_lag_on_failover=1048576"]);
    assert_eq!(c.raftctl_json(&["config", "show"])["config"]["maximum_lag_on_failover"], 1 << 20);
}

/// patronictl's words: --candidate/--leader/--scheduled, edit-config,
/// show-config, topology, dsn, reload; a mistyped key gets the real one.
async fn phase_patronictl_spellings(c: &DaemonCluster) {
    let primary = primary_of(c);
    let replica = format!("pg{}", replicas_of(c, &primary)[0]);
    info!("--- switchover --leader --candidate --scheduled, then flush's hint and --cancel");
    let at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let out =
        c.must_raftctl(&["switchover", "--leader", &primary, "--candidate", &replica, "--scheduled", &at, "--force"]);
    assert!(out.contains("scheduled"), "{out}");
    let status = c.raftctl_json(&["list"]);
    assert_eq!(status["switchover"]["to"], replica.as_str(), "{status}");
    assert_eq!(status["switchover"]["from"], primary.as_str(), "{status}");
    let (code, _, err) = c.raftctl(&["flush", "demo", "switchover"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("switchover --cancel"), "{err}");
    c.must_raftctl(&["switchover", "--cancel"]);
    assert_eq!(c.raftctl_json(&["list"])["switchover"], Value::Null);

    info!("--- edit-config --set/--pg, show-config");
    let version = c.raftctl_json(&["show-config"])["version"].as_u64().expect("a version");
    c.must_raftctl(&["edit-config", "-p", "work_mem=9MB", "-s", "maximum_lag_on_failover=32MB"]);
    let shown = c.raftctl_json(&["show-config"]);
    assert_eq!(shown["version"].as_u64(), Some(version + 1), "{shown}");
    assert_eq!(shown["config"]["postgresql_parameters"]["work_mem"], "9MB", "{shown}");
    assert_eq!(shown["config"]["maximum_lag_on_failover"], 32 << 20, "{shown}");
    c.must_raftctl(&["config", "set", "postgresql.parameters.work_mem=null", "maximum_lag_on_failover=1MB"]);
    assert_eq!(c.raftctl_json(&["config", "show"])["config"]["postgresql_parameters"]["work_mem"], Value::Null);

    info!("--- a mistyped key is named with the real one; a Patroni key without equivalent says why");
    let version = c.raftctl_json(&["config", "show"])["version"].as_u64();
    let (code, _, err) = c.raftctl(&["config", "set", "maximum_lag_on_failvoer=1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean maximum_lag_on_failover"), "{err}");
    let (code, _, err) = c.raftctl(&["config", "set", "retry_timeout=10"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("retry_timeout") && err.contains("no equivalent"), "{err}");
    assert_eq!(c.raftctl_json(&["config", "show"])["version"].as_u64(), version, "nothing changed");

    info!("--- topology, dsn");
    let tree = c.must_raftctl(&["topology"]);
    let first = tree.find(&primary).expect("the primary is shown");
    assert!(tree.find(&format!("+ {replica}")).is_some_and(|r| r > first), "{tree}");
    let pg_port = |name: &str| c.layout.nodes.iter().find(|n| n.name == name).map(|n| n.pg_port).expect("a node");
    let dsn = c.must_raftctl(&["dsn"]);
    assert_eq!(dsn.trim(), format!("host=127.0.0.1 port={}", pg_port(&primary)));
    let dsn = c.must_raftctl(&["dsn", "-m", &replica]);
    assert_eq!(dsn.trim(), format!("host=127.0.0.1 port={}", pg_port(&replica)));
    let dsn = c.must_raftctl(&["dsn", "--role", "replica"]);
    assert!(!dsn.contains(&format!("port={}", pg_port(&primary))), "{dsn}");

    info!("--- reload: every member, or the one named");
    let out = c.must_raftctl(&["reload"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    let out = c.must_raftctl(&["reload", &replica]);
    assert!(out.starts_with(&format!("{replica}: ")), "{out}");
    let (code, _, err) = c.raftctl(&["reload", "pg9"]);
    assert_eq!(code, 1, "{err}");
}

/// The lines a child prints on its standard output, as they come.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// `list -w 1` prints the cluster again every second.
async fn phase_watch(c: &DaemonCluster) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_raftctl"))
        .args(["list", "-w", "1"])
        .env("RAFTCTL_ENDPOINTS", endpoints(&c.layout))
        .env("RAFTCTL_TOKEN", &c.layout.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start raftctl list -w 1");
    let rx = lines_of(&mut child);
    let mut headers = 0;
    wait_for("list -w 1 to print the cluster twice", EVENTS, async || {
        headers += rx.try_iter().filter(|l| l.starts_with("Cluster: ")).count();
        if headers >= 2 { Ok(()) } else { Err(headers) }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
}

/// `raftctl -c <a node's raftgres.toml>` finds the endpoints and the token
/// there.
async fn phase_config_file(c: &DaemonCluster) {
    let out = Command::new(env!("CARGO_BIN_EXE_raftctl"))
        .arg("-c")
        .arg(c.layout.node(2).config_path())
        .args(["list", "--json"])
        .env_remove("RAFTCTL_ENDPOINTS")
        .env_remove("RAFTCTL_TOKEN")
        .env_remove("RAFTCTL_TOKEN_FILE")
        .output()
        .expect("run raftctl -c");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}{text}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(status["members"].as_array().map(Vec::len), Some(3), "{status}");
}

/// Patroni's `PATCH /config` shape maps onto raftgres's keys; a key with no
/// equivalent is a 400 that says so, and changes nothing.
async fn phase_patroni_patch(c: &DaemonCluster) {
    let url = format!("{}/config", c.api(1));
    let token = Some(c.layout.token.as_str());
    let patch = |body: &'static str| {
        let url = url.clone();
        async move {
            raftgres::http::client::request("PATCH", &url, token, &[], Some(body.to_string()), CONFIG_REQUEST)
                .await
                .unwrap_or_else(|e| panic!("PATCH /config: {e}"))
        }
    };
    let r = patch(
        r#"{"postgresql": {"parameters": {"work_mem": "6MB", "log_min_duration_statement": 1000}},
                      "maximum_lag_on_failover": "8MB"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let shown = c.raftctl_json(&["config", "show"]);
    assert_eq!(shown["config"]["postgresql_parameters"]["work_mem"], "6MB", "{shown}");
    assert_eq!(shown["config"]["postgresql_parameters"]["log_min_duration_statement"], "1000", "{shown}");
    assert_eq!(shown["config"]["maximum_lag_on_failover"], 8 << 20, "{shown}");
    let version = shown["version"].as_u64();
    for (body, names) in [
        (r#"{"retry_timeout": 10, "maximum_lag_on_failover": 1}"#, "retry_timeout"),
        (r#"{"synchronous_mode_strict": true}"#, "synchronous_mode"),
        (r#"{"postgresql": {"pg_ident": ["map1 root postgres"]}}"#, "postgresql.pg_ident"),
    ] {
        let r = patch(body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.body.contains(names), "{body}: {}", r.body);
    }
    assert_eq!(c.raftctl_json(&["config", "show"])["version"].as_u64(), version, "nothing changed");
    let r = patch(r#"{"pause": true}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(c.raftctl_json(&["list"])["maintenance"], true);
    let r = patch(r#"{"pause": null}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(c.raftctl_json(&["list"])["maintenance"], false);
    let r = patch(r#"{"maximum_lag_on_falover": 1}"#).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("did you mean \"maximum_lag_on_failover\""), "{}", r.body);
    // PUT takes the whole document, in Patroni's shape too; what it leaves
    // out returns to its default.
    let body = r#"{"ttl": 2, "postgresql": {"parameters": {"work_mem": "5MB"}}}"#;
    let r = raftgres::http::client::request("PUT", &url, token, &[], Some(body.to_string()), CONFIG_REQUEST)
        .await
        .unwrap_or_else(|e| panic!("PUT /config: {e}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let shown = c.raftctl_json(&["config", "show"]);
    assert_eq!(shown["config"]["lease_ttl_ms"], 2000, "{shown}");
    assert_eq!(shown["config"]["postgresql_parameters"], serde_json::json!({"work_mem": "5MB"}), "{shown}");
    assert_eq!(shown["config"]["maximum_lag_on_failover"], 1 << 20, "back to its default: {shown}");
    c.must_raftctl(&[
        "config",
        "set",
        "postgresql_parameters.work_mem=null",
        "postgresql_parameters.log_min_duration_statement=null",
    ]);
}

/// Without a terminal, destructive commands need `--force`: exit 2, a
/// message naming it, the plan shown, nothing changed. A mistyped member
/// is refused before any progress message.
async fn phase_confirmation(c: &DaemonCluster) {
    let primary = primary_of(c);
    let replica = format!("pg{}", replicas_of(c, &primary)[0]);
    let elections = c.raftctl_json(&["history"]).as_array().map(Vec::len);
    let pid = c.postmaster_pid(replicas_of(c, &primary)[0]);
    let primary_pid = c.postmaster_pid(primary.trim_start_matches("pg").parse().expect("pg<id>"));
    for args in [
        vec!["switchover", "--to", &replica],
        vec!["switchover"],
        vec!["failover", "--to", &replica],
        vec!["restart", &primary],
        vec!["reinit", &replica],
    ] {
        let (code, out, err) = c.raftctl(&args);
        assert_eq!(code, 2, "{args:?}: {err}{out}");
        assert!(err.contains("--force") && err.contains("nothing changed"), "{args:?}: {err}");
        assert!(!err.contains("waiting") && !err.contains("restarting"), "no progress before consent: {err}");
    }
    let (_, _, err) = c.raftctl(&["switchover", "--to", &replica]);
    assert!(err.contains(&format!("{primary} is demoted")) && err.contains(&replica), "the plan is shown: {err}");
    let (code, _, err) = c.raftctl(&["config", "edit"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--force"), "{err}");
    info!("--- a mistyped member: refused, with no progress message");
    let (code, _, err) = c.raftctl(&["switchover", "--to", "pg9", "--force"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown member") && !err.contains("switching over"), "{err}");
    let (code, _, err) = c.raftctl(&["switchover", "--to", &primary, "--force"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already the primary"), "{err}");
    assert_eq!(primary_of(c), primary, "nothing changed");
    assert_eq!(c.raftctl_json(&["history"]).as_array().map(Vec::len), elections);
    assert_eq!(c.postmaster_pid(replicas_of(c, &primary)[0]), pid, "the replica was not touched");
    assert_eq!(c.postmaster_pid(primary.trim_start_matches("pg").parse().expect("pg<id>")), primary_pid);
}

/// `switchover --force` does it; returns the new primary's name.
async fn phase_switchover(c: &DaemonCluster) -> String {
    let primary = primary_of(c);
    let target_id = replicas_of(c, &primary)[0];
    let target = format!("pg{target_id}");
    let out = wait_for("switchover --force to be accepted", HANDOVER_ACCEPTED, async || {
        match c.raftctl(&["switchover", "--to", &target, "--force"]) {
            (0, out, _) => Ok(out),
            (1, _, err) if err.contains("not a streaming replica") => Err(err),
            (code, out, err) => panic!("switchover failed ({code}): {err}{out}"),
        }
    })
    .await;
    assert!(out.contains(&format!("{target} is the new primary")), "{out}");
    assert_eq!(c.must_primary(&[target_id], SWITCHOVER).await, target_id);
    c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
    target
}

/// `history`: elections with timeline, LSN, reason and the new primary by
/// name; `--all`: every event, names, no Rust spellings; `/history`:
/// Patroni's rows.
async fn phase_history(c: &DaemonCluster, target: &str) {
    let rows = wait_for("the switchover's timeline in the history", SETTLED, async || {
        let rows = c.raftctl_json(&["history"]);
        match rows.as_array() {
            Some(a) if a.len() == 2 && a[1]["timeline"] == 2 => Ok(rows),
            _ => Err(rows),
        }
    })
    .await;
    let (first, last) = (&rows[0], &rows[1]);
    assert_eq!(first["reason"], "bootstrap", "{rows}");
    assert_eq!(first["timeline"], 1, "{rows}");
    assert_eq!(last["reason"], "switchover", "{rows}");
    assert_eq!(last["new_primary"], target, "{rows}");
    let lsn = last["lsn"].as_str().unwrap_or_default();
    assert!(lsn.contains('/') && lsn != "0/0", "{rows}");
    assert!(last["epoch"].as_u64() > first["epoch"].as_u64(), "{rows}");
    let table = c.must_raftctl(&["history"]);
    for want in ["Epoch", "TL", "LSN", "Reason", "New Primary", target, lsn, "switchover"] {
        assert!(table.contains(want), "{want} missing:\n{table}");
    }
    let all_text = c.must_raftctl(&["history", "--all"]);
    let all_json = c.raftctl_json(&["history", "--all"]).to_string();
    for leak in ["Some(", "None", "PrimaryElected", "Switchover {", "\"Switchover\"", "node 1 ", "node 2 "] {
        assert!(!all_text.contains(leak) && !all_json.contains(leak), "{leak} in the history:\n{all_text}");
    }
    assert!(all_text.contains(&format!("{target} elected primary")), "{all_text}");
    let (code, body) = http_get(&format!("{}/history", c.api(1))).await.expect("GET /history");
    assert_eq!(code, 200);
    let patroni: Value = serde_json::from_str(&body).expect("JSON");
    let row = patroni.as_array().and_then(|r| r.last()).cloned().unwrap_or_default();
    assert_eq!(row.as_array().map(Vec::len), Some(5), "{patroni}");
    assert_eq!(row[0], 1, "the timeline that ended: {patroni}");
    assert!(row[1].as_u64().is_some_and(|l| l > 0), "{patroni}");
    assert_eq!(row[2], "switchover", "{patroni}");
    assert_eq!(row[4], target, "{patroni}");
}

/// `events --follow` moves to the next endpoint when its node stops and
/// resumes after the last event it printed.
async fn phase_follow(c: &mut DaemonCluster) {
    let primary = primary_of(c);
    let followed = replicas_of(c, &primary)[0];
    // The followed node first, so that raftctl connects to it.
    let mut eps = vec![c.layout.node(followed).raft_addr()];
    eps.extend(c.layout.nodes.iter().filter(|n| n.id != followed).map(|n| n.raft_addr()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_raftctl"))
        .args(["events", "--follow", "--json"])
        .env("RAFTCTL_ENDPOINTS", eps.join(","))
        .env("RAFTCTL_TOKEN", &c.layout.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start raftctl events --follow");
    let rx = lines_of(&mut child);
    let mut seen: Vec<Value> = Vec::new();
    let drain = |seen: &mut Vec<Value>| {
        while let Ok(line) = rx.try_recv() {
            seen.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")));
        }
    };
    wait_for("the follower to print a pause", EVENTS, async || {
        c.must_raftctl(&["pause"]);
        c.must_raftctl(&["resume"]);
        drain(&mut seen);
        if seen.iter().any(|e| e["kind"] == "maintenance_changed") { Ok(()) } else { Err(seen.len()) }
    })
    .await;
    let before = seen.len();
    info!(node = followed, "--- stop the followed node");
    c.stop_node(followed).await;
    c.must_raftctl(&["pause"]);
    wait_for("the follower to go on from another node", Duration::from_secs(40), async || {
        drain(&mut seen);
        match seen[before..].iter().find(|e| e["kind"] == "maintenance_changed" && e["event"]["on"] == true) {
            Some(_) => Ok(()),
            None => Err(seen[before..].to_vec()),
        }
    })
    .await;
    let indexes: Vec<u64> = seen.iter().filter_map(|e| e["index"].as_u64()).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "no event twice, none out of order: {indexes:?}");
    c.must_raftctl(&["resume"]);
    let _ = child.kill();
    let _ = child.wait();
}
