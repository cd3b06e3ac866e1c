//! PostgreSQL parameters and client authentication as an operator changes
//! them: a value the server would refuse never reaches it, a reloadable
//! change reaches every node at once, one that needs a restart is shown
//! pending until a (conditional, possibly scheduled) restart applies it, a
//! server that does not start says why and backs off, and `pg_hba` rules
//! come from the configuration. Phases are named: a failure names its
//! phase.

use std::path::PathBuf;
use std::time::Duration;

use raftgres::http::client;
use raftgres::playground::http_get;
use raftgres_api::time::format_ms;
use serde_json::Value;
use tokio_postgres::NoTls;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::{REJOIN, REPLICAS_FOLLOW, SETTLED, SWITCHOVER};
use crate::support::{phase, wait_for};

/// How long a change takes to reach every node (a few agent turns).
const APPLIED: Duration = Duration::from_secs(15);

async fn show(c: &DaemonCluster, id: u64, name: &str) -> Result<String, String> {
    let client = c.pg(id).await.map_err(|e| e.to_string())?;
    let row = client.query_one(&format!("SHOW {name}"), &[]).await.map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

async fn patroni(c: &DaemonCluster, id: u64) -> Value {
    let (code, body) = http_get(&format!("{}/patroni", c.api(id))).await.expect("GET /patroni");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("a JSON document")
}

async fn post(c: &DaemonCluster, id: u64, path: &str, body: &str) -> (u16, String) {
    let url = format!("{}{path}", c.api(id));
    let token = c.layout.token.clone();
    let r = client::request("POST", &url, Some(&token), &[], Some(body.to_string()), SWITCHOVER)
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    (r.status, r.body)
}

async fn delete(c: &DaemonCluster, id: u64, path: &str) -> (u16, String) {
    let url = format!("{}{path}", c.api(id));
    let token = c.layout.token.clone();
    let r = client::request("DELETE", &url, Some(&token), &[], None, SETTLED)
        .await
        .unwrap_or_else(|e| panic!("DELETE {path}: {e}"));
    (r.status, r.body)
}

fn config_version(c: &DaemonCluster) -> u64 {
    c.raftctl_json(&["config", "show"])["version"].as_u64().expect("a version")
}

fn pgdata(c: &DaemonCluster, id: u64) -> PathBuf {
    c.layout.node(id).dir.join("pgdata")
}

fn server_log(c: &DaemonCluster, id: u64) -> String {
    std::fs::read_to_string(c.layout.node(id).dir.join("postgres.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parameters_are_checked_applied_and_restarted_like_patroni_s() {
    let c = DaemonCluster::start(3, |_| {}).await;
    let primary = c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
    let replicas: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != primary).collect();

    phase("a value the server would refuse is refused", async {
        let before = config_version(&c);
        for (pair, says) in [
            ("postgresql_parameters.wrok_mem=8MB", "did you mean \"work_mem\""),
            ("postgresql_parameters.work_mem=lots", "\"lots\" is not a valid value"),
            ("postgresql_parameters.work_mem=8mb", "not a valid unit"),
            ("postgresql_parameters.max_connections=0", "outside the range"),
            ("postgresql_parameters.wal_level=most", "is not one of: minimal, replica, logical"),
            ("postgresql_parameters.block_size=16384", "cannot be set"),
        ] {
            let (code, out, err) = c.raftctl(&["config", "set", pair]);
            assert_eq!(code, 2, "{pair}: {err}{out}");
            assert!(err.contains(says), "{pair}: {err}");
        }
        let (code, _, err) = c.raftctl(&[
            "config",
            "set",
            "postgresql_parameters.work_mem=lots",
            "postgresql_parameters.shared_bufers=1GB",
        ]);
        assert_eq!(code, 2);
        assert!(err.contains("work_mem") && err.contains("shared_bufers"), "every refusal, not the first: {err}");
        assert_eq!(config_version(&c), before, "nothing changed");
    })
    .await;

    phase("a reloadable change reaches every node without a restart", async {
        let mut before = Vec::new();
        for id in [1, 2, 3] {
            before.push(c.postmaster_started(id).await);
        }
        c.must_raftctl(&["config", "set", "postgresql_parameters.work_mem=12MB"]);
        for (i, id) in [1, 2, 3].into_iter().enumerate() {
            wait_for(&format!("work_mem on node {id}"), APPLIED, async || match show(&c, id, "work_mem").await {
                Ok(v) if v == "12MB" => Ok(()),
                other => Err(other),
            })
            .await;
            assert_eq!(c.postmaster_started(id).await, before[i], "node {id} was not restarted");
            assert!(patroni(&c, id).await.get("pending_restart").is_none(), "node {id}: nothing pending");
        }
    })
    .await;

    phase("a change that needs a restart is shown pending on every member", async {
        c.must_raftctl(&["config", "set", "postgresql_parameters.max_connections=110"]);
        for id in [1, 2, 3] {
            wait_for(&format!("node {id} to show the restart pending"), APPLIED, async || {
                let doc = patroni(&c, id).await;
                let reason = &doc["pending_restart_reason"]["max_connections"];
                if doc["pending_restart"] == true && reason["old_value"] == "100" && reason["new_value"] == "110" {
                    Ok(())
                } else {
                    Err(doc)
                }
            })
            .await;
            assert_eq!(show(&c, id, "max_connections").await.as_deref(), Ok("100"), "not restarted by itself");
        }
        let status = c.raftctl_json(&["list"]);
        for m in status["members"].as_array().expect("members") {
            assert_eq!(m["pending_restart"]["max_connections"]["new_value"], "110", "{status}");
        }
        let table = c.must_raftctl(&["list"]);
        assert!(table.contains("Pending restart"), "{table}");
        assert!(table.contains(&format!("Pending restart on pg{primary}: max_connections: 100->110")), "{table}");
        let (_, text) = http_get(&format!("{}/metrics", c.api(primary))).await.expect("metrics");
        assert!(text.lines().any(|l| l.starts_with("raftgres_pending_restart{") && l.ends_with(" 1")), "{text}");
        assert!(text.lines().any(|l| l.starts_with("patroni_pending_restart{") && l.ends_with(" 1")), "{text}");
    })
    .await;

    phase("POST /restart honours its conditions", async {
        let r = replicas[0];
        for (body, code, says) in [
            (r#"{"role": "primary"}"#, 503, "restart conditions are not satisfied"),
            (r#"{"postgres_version": "9.6"}"#, 503, "restart conditions are not satisfied"),
            (r#"{"bogus": 1}"#, 400, "Unknown filter for the scheduled restart: bogus"),
            (r#"{"role": "king"}"#, 400, "role should be"),
            (r#"{"schedule": "2020-01-01T00:00:00Z"}"#, 422, "in the past"),
            (r#"{"schedule": "2099-01-01T00:00:00"}"#, 400, "Timezone information is mandatory"),
        ] {
            let (got, text) = post(&c, r, "/restart", body).await;
            assert_eq!(got, code, "{body}: {text}");
            assert!(text.contains(says), "{body}: {text}");
        }
        assert_eq!(show(&c, r, "max_connections").await.as_deref(), Ok("100"), "no restart happened");
        let (code, text) = post(&c, r, "/restart", r#"{"restart_pending": true, "role": "replica"}"#).await;
        assert_eq!(code, 200, "{text}");
        assert_eq!(show(&c, r, "max_connections").await.as_deref(), Ok("110"));
        assert!(patroni(&c, r).await.get("pending_restart").is_none(), "applied");
        let (code, text) = post(&c, r, "/restart", r#"{"restart_pending": true}"#).await;
        assert_eq!((code, text.trim()), (503, "restart conditions are not satisfied"), "nothing pending any more");
    })
    .await;

    phase("a scheduled restart runs once, when due", async {
        let r = replicas[1];
        let far = format_ms(raftgres_storage::now_ms() + 3_600_000);
        let (code, text) =
            post(&c, r, "/restart", &format!(r#"{{"schedule": "{far}", "restart_pending": true}}"#)).await;
        assert_eq!(code, 202, "{text}");
        assert_eq!(patroni(&c, r).await["scheduled_restart"]["schedule"], far.as_str());
        let (code, text) = post(&c, r, "/restart", &format!(r#"{{"schedule": "{far}"}}"#)).await;
        assert_eq!((code, text.trim()), (409, "Another restart is already scheduled"));
        assert_eq!(delete(&c, r, "/restart").await.0, 200);
        assert_eq!(delete(&c, r, "/restart").await.0, 404);
        assert!(patroni(&c, r).await.get("scheduled_restart").is_none());
        let soon = format_ms(raftgres_storage::now_ms() + 1_500);
        let (code, text) =
            post(&c, r, "/restart", &format!(r#"{{"schedule": "{soon}", "restart_pending": true}}"#)).await;
        assert_eq!(code, 202, "{text}");
        wait_for("the scheduled restart to apply max_connections", REJOIN, async || {
            match show(&c, r, "max_connections").await {
                Ok(v) if v == "110" => Ok(()),
                other => Err(other),
            }
        })
        .await;
        wait_for("the schedule to be gone once it ran", SETTLED, async || {
            let doc = patroni(&c, r).await;
            if doc.get("scheduled_restart").is_none() { Ok(()) } else { Err(doc) }
        })
        .await;
    })
    .await;

    let primary = phase("raftctl restart --pending --switchover restarts no serving primary", async {
        let (code, _, err) = c.raftctl(&["restart", "--pending", "--switchover"]);
        assert_eq!(code, 2, "the primary is among them: without a terminal it needs --force: {err}");
        assert!(err.contains("--force"), "{err}");
        let out = c.must_raftctl(&["restart", "--pending", "--switchover", "--force"]);
        assert!(out.contains(&format!("Success: restart on member pg{primary}")), "{out}");
        let new = c.must_healthy(&[1, 2, 3], REJOIN).await;
        assert_ne!(new, primary, "the role moved before the old primary restarted");
        for id in [1, 2, 3] {
            assert_eq!(show(&c, id, "max_connections").await.as_deref(), Ok("110"), "node {id}");
            assert!(patroni(&c, id).await.get("pending_restart").is_none(), "node {id}");
        }
        let out = c.must_raftctl(&["restart", "--pending", "--force"]);
        assert!(out.contains("nothing to restart"), "{out}");
        new
    })
    .await;
    let replicas: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != primary).collect();

    phase("raftctl restart --all restarts replicas first and the primary in place", async {
        c.must_raftctl(&["config", "set", "postgresql_parameters.max_connections=120"]);
        for id in [1, 2, 3] {
            wait_for(&format!("node {id} to show the restart pending"), APPLIED, async || {
                let doc = patroni(&c, id).await;
                if doc["pending_restart"] == true { Ok(()) } else { Err(doc) }
            })
            .await;
        }
        let out = c.must_raftctl(&["restart", "--all", "--force"]);
        let order: Vec<&str> = out.lines().filter(|l| l.starts_with("Success: restart on member")).collect();
        assert_eq!(order.len(), 3, "{out}");
        assert!(order[2].ends_with(&format!("pg{primary}")), "the primary last: {out}");
        assert_eq!(c.must_healthy(&[1, 2, 3], REJOIN).await, primary, "no failover for a restart in place");
        for id in [1, 2, 3] {
            assert_eq!(show(&c, id, "max_connections").await.as_deref(), Ok("120"), "node {id}");
        }
    })
    .await;

    phase("a server that does not start says why and backs off", async {
        let r = replicas[0];
        let auto = pgdata(&c, r).join("postgresql.auto.conf");
        let original = std::fs::read_to_string(&auto).expect("postgresql.auto.conf");
        std::fs::write(&auto, format!("{original}shared_preload_libraries = 'no_such_library'\n")).expect("write");
        let (code, text) = post(&c, r, "/restart", "{}").await;
        assert_eq!(code, 503, "{text}");
        assert!(text.contains("could not access file \"no_such_library\""), "the server log's reason: {text}");
        let doc = patroni(&c, r).await;
        let error = doc["raftgres"]["last_error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains("no_such_library"), "{doc}");
        let status = c.raftctl_json(&["list"]);
        let m = status["members"].as_array().expect("members").iter().find(|m| m["id"] == r).cloned();
        let listed = m.map(|m| m["last_error"].clone()).unwrap_or_default();
        assert!(listed.as_str().is_some_and(|e| e.contains("no_such_library")), "{status}");
        // Backing off: a handful of attempts in 10 s, not one per turn,
        // and no stream of events.
        let attempts = |log: &str| log.matches("could not access file \"no_such_library\"").count();
        let first = attempts(&server_log(&c, r));
        let events_about = |c: &DaemonCluster| -> usize {
            let all = c.raftctl_json(&["history", "--all"]);
            let name = format!("pg{r}");
            all.as_array()
                .expect("events")
                .iter()
                .filter(|e| e["text"].as_str().is_some_and(|t| t.contains(&name)))
                .count()
        };
        let events_before = events_about(&c);
        let window = std::time::Instant::now();
        wait_for("10 s of backing off", Duration::from_secs(15), async || {
            let n = attempts(&server_log(&c, r)) - first;
            assert!(n <= 5, "{n} start attempts within {:?}", window.elapsed());
            if window.elapsed() >= Duration::from_secs(10) { Ok(()) } else { Err(n) }
        })
        .await;
        let events = events_about(&c) - events_before;
        assert!(events <= 2, "{events} events about pg{r} while it failed to start");
        std::fs::write(&auto, &original).expect("restore postgresql.auto.conf");
        let (code, text) = post(&c, r, "/restart", "{}").await;
        assert_eq!(code, 200, "an operator's restart does not wait out the pause: {text}");
        assert_eq!(c.must_healthy(&[1, 2, 3], REJOIN).await, primary);
    })
    .await;

    phase("client authentication comes from the configuration", async {
        for id in [1, 2, 3] {
            let hba = std::fs::read_to_string(pgdata(&c, id).join("pg_hba.conf")).expect("pg_hba.conf");
            let host = &c.layout.node(id).host;
            assert!(hba.contains(&format!("replicator  {host}/32")), "node {id}:\n{hba}");
            assert!(
                !hba.lines().any(|l| l.contains("replication") && l.contains("0.0.0.0/0")),
                "replication only from members, node {id}:\n{hba}"
            );
        }
        c.must_pg(primary)
            .await
            .batch_execute("CREATE ROLE blocked LOGIN PASSWORD 'blocked-pw'")
            .await
            .expect("create a role");
        let login = async |id: u64| {
            let n = c.layout.node(id);
            let uri = format!("postgresql://blocked:blocked-pw@{}:{}/postgres", n.host, n.pg_port);
            tokio_postgres::connect(&uri, NoTls)
                .await
                .map(|_| ())
                .map_err(|e| e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()))
        };
        for id in [1, 2, 3] {
            wait_for(&format!("the role to log in on node {id}"), APPLIED, async || login(id).await).await;
        }
        let rules = r#"pg_hba=["local all all trust", "local replication all trust",
            "host all blocked 0.0.0.0/0 reject", "host replication replicator 127.0.0.0/8 scram-sha-256",
            "host all all 0.0.0.0/0 scram-sha-256"]"#;
        let (code, _, err) = c.raftctl(&["config", "set", r#"pg_hba=["hots all all 0.0.0.0/0 trust"]"#]);
        assert_eq!(code, 2, "a malformed rule is refused: {err}");
        assert!(err.contains("not a connection type"), "{err}");
        c.must_raftctl(&["config", "set", &rules.replace('\n', " ")]);
        let shown = c.raftctl_json(&["config", "show"]);
        assert_eq!(shown["config"]["pg_hba"][2], "host all blocked 0.0.0.0/0 reject", "{shown}");
        for id in [1, 2, 3] {
            wait_for(&format!("node {id} to refuse the role"), APPLIED, async || match login(id).await {
                Err(e) if e.contains("pg_hba.conf rejects connection") => Ok(()),
                other => Err(other),
            })
            .await;
        }
        assert_eq!(c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await, primary, "replication still allowed");
        c.must_raftctl(&["config", "set", "pg_hba=null"]);
        for id in [1, 2, 3] {
            wait_for(&format!("the role to log in on node {id} again"), APPLIED, async || login(id).await).await;
        }
    })
    .await;
}
