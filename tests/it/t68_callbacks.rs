//! Callbacks against real daemons and real PostgreSQL: Patroni's arguments
//! at start and across a switchover, a hanging callback killed at its
//! timeout without holding anything up, and `pre_promote` vetoing a
//! switchover (the old primary takes the role back) and a failover (another
//! member is promoted).

use std::path::{Path, PathBuf};
use std::time::Duration;

use raftgres::config::FileConfig;
use serde_json::Value;
use tracing::info;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::{FAILOVER, HANDOVER_ACCEPTED, REPLICAS_FOLLOW, SETTLED, SWITCHOVER};
use crate::support::{phase, wait_for};

const CLUSTER: &str = "it-daemons";

/// How long a hanging callback may run.
const CALLBACK_TIMEOUT_MS: u64 = 1_500;

/// The scripts the nodes run, and the file they record their calls in.
struct Scripts {
    dir: tempfile::TempDir,
}

impl Scripts {
    fn new() -> Scripts {
        let dir = tempfile::Builder::new().prefix("raftgres-cb-").tempdir().expect("temporary directory");
        let s = Scripts { dir };
        let calls = s.calls();
        // Each records "<node> <action> <role> <cluster>".
        s.write("record.sh", &format!("#!/bin/sh\necho \"$@\" >> {}\n", calls.display()));
        // Records, writes its pid, then hangs.
        s.write(
            "hang.sh",
            &format!(
                "#!/bin/sh\necho \"$@\" >> {}\necho $$ > {}/hang-$1.pid\nsleep 600\n",
                calls.display(),
                s.path().display()
            ),
        );
        // Records the call; vetoes when the file veto-<node> exists.
        s.write(
            "pre-promote.sh",
            &format!(
                "#!/bin/sh\necho \"$1 pre_promote\" >> {}\n[ -e {}/veto-$1 ] && {{ echo \"vetoing $1\"; exit 1; }}\nexit 0\n",
                calls.display(),
                s.path().display()
            ),
        );
        s
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn script(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        let p = self.script(name);
        std::fs::write(&p, text).expect("write a script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("make it executable");
    }

    fn calls(&self) -> PathBuf {
        self.path().join("calls")
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.calls()).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// Waits until `line` was recorded.
    async fn must_record(&self, line: &str, deadline: Duration) {
        wait_for(&format!("the call {line:?}"), deadline, async || {
            let lines = self.lines();
            if lines.iter().any(|l| l == line) { Ok(()) } else { Err(lines) }
        })
        .await
    }
}

fn name(id: u64) -> String {
    format!("pg{id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callbacks_get_patronis_arguments_and_a_hanging_one_is_killed() {
    let s = Scripts::new();
    let (record, hang) = (s.script("record.sh"), s.script("hang.sh"));
    let c = DaemonCluster::start(3, |f: &mut FileConfig| {
        let me = f.node.name.clone();
        f.callbacks.on_start = Some(format!("{} {me}", record.display()));
        f.callbacks.on_role_change = Some(format!("{} {me}", record.display()));
        f.callbacks.on_stop = Some(format!("{} {me}", hang.display()));
        f.callbacks.timeout_ms = CALLBACK_TIMEOUT_MS;
    })
    .await;
    let _logs = c.logs_on_panic();
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;
    let replicas: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != primary).collect();

    phase("on_start at boot", async {
        s.must_record(&format!("{} on_start primary {CLUSTER}", name(primary)), SETTLED).await;
        for r in &replicas {
            s.must_record(&format!("{} on_start replica {CLUSTER}", name(*r)), SETTLED).await;
        }
    })
    .await;

    let target = replicas[0];
    phase("a switchover is not held up by a hanging on_stop", async {
        let started = std::time::Instant::now();
        let out = c.must_raftctl(&["switchover", "--to", &name(target), "--force"]);
        info!(took = ?started.elapsed(), "{out}");
        assert!(started.elapsed() < HANDOVER_ACCEPTED + SWITCHOVER, "the switchover took {:?}", started.elapsed());
        assert_eq!(c.must_primary(&[1, 2, 3], SWITCHOVER).await, target);
        s.must_record(&format!("{} on_role_change primary {CLUSTER}", name(target)), SETTLED).await;
        s.must_record(&format!("{} on_stop primary {CLUSTER}", name(primary)), SETTLED).await;
        // The old primary follows as a replica: a role change, not a start.
        c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
        s.must_record(&format!("{} on_role_change replica {CLUSTER}", name(primary)), SETTLED).await;
        let starts = s.lines().iter().filter(|l| l.starts_with(&format!("{} on_start", name(primary)))).count();
        assert_eq!(starts, 1, "the old primary started once, at boot: {:?}", s.lines());
    })
    .await;

    phase("the hanging on_stop is killed", async {
        let pid_file = s.path().join(format!("hang-{}.pid", name(primary)));
        let pid = wait_for("the hanging callback's pid", SETTLED, async || {
            std::fs::read_to_string(&pid_file).map(|p| p.trim().to_string()).map_err(|e| e.to_string())
        })
        .await;
        // Killed by the next callback or at its timeout, with its `sleep`.
        wait_for("the hanging callback to be gone", SETTLED, async || {
            let proc = format!("/proc/{pid}");
            let alive = std::fs::read_to_string(format!("{proc}/stat")).is_ok_and(|st| !st.contains(") Z "));
            if alive { Err(proc) } else { Ok(()) }
        })
        .await;
        let sleeping = std::process::Command::new("pgrep").args(["-f", "sleep 600"]).output().expect("pgrep");
        assert!(sleeping.stdout.is_empty(), "its sleep survived: {}", String::from_utf8_lossy(&sleeping.stdout));
        let log = c.log(primary);
        assert!(log.contains("callback killed"), "the kill is logged");
        assert!(log.contains("callback=\"on_stop\"") || log.contains("callback=on_stop"), "named in the log");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pre_promote_vetoes_a_switchover_and_a_failover_goes_elsewhere() {
    let s = Scripts::new();
    let pre = s.script("pre-promote.sh");
    let mut c = DaemonCluster::start(3, |f: &mut FileConfig| {
        f.callbacks.pre_promote = Some(format!("{} {}", pre.display(), f.node.name));
        f.callbacks.timeout_ms = 5_000;
    })
    .await;
    let _logs = c.logs_on_panic();
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;
    let replicas: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != primary).collect();
    let (vetoer, other) = (replicas[0], replicas[1]);
    std::fs::write(s.path().join(format!("veto-{}", name(vetoer))), "").expect("arm the veto");

    phase("a vetoed switchover gives the role back", async {
        let (code, out, err) = c.raftctl(&["switchover", "--to", &name(vetoer), "--force"]);
        assert_eq!(code, 1, "the switchover fails: {out}{err}");
        assert!(err.contains("pre_promote vetoed"), "and says why: {err}");
        s.must_record(&format!("{} pre_promote", name(vetoer)), SETTLED).await;
        // The old primary holds every write and takes the role back.
        assert_eq!(c.must_primary(&[1, 2, 3], FAILOVER).await, primary);
        c.must_healthy(&[1, 2, 3], REPLICAS_FOLLOW).await;
        let status = c.raftctl_json(&["list"]);
        let m = member(&status, vetoer);
        assert_eq!(m["tags"]["pre_promote"], "vetoed", "{m}");
        assert_eq!(m["tags"]["nofailover"], "true", "{m}");
        let last_error = m["last_error"].as_str().unwrap_or_default();
        assert!(last_error.contains("promotion vetoed: pre_promote exited with status 1"), "{m}");
        assert!(c.log(vetoer).contains(&format!("vetoing {}", name(vetoer))), "its output is logged");
        let patroni = raftgres::http::client::get(&format!("{}/patroni", c.api(vetoer))).await.expect("GET /patroni");
        assert!(patroni.1.contains("promotion vetoed"), "{}", patroni.1);
    })
    .await;

    phase("a failover skips the vetoing member", async {
        c.kill_node(primary);
        let new = c.must_primary(&[vetoer, other], FAILOVER).await;
        assert_eq!(new, other, "the member whose pre_promote allows it is promoted");
        s.must_record(&format!("{} pre_promote", name(other)), SETTLED).await;
    })
    .await;
}

/// The member with id `id` in `raftctl list --json`.
fn member(status: &Value, id: u64) -> Value {
    let members = status["members"].as_array().cloned().unwrap_or_default();
    members
        .into_iter()
        .find(|m| m["name"] == name(id).as_str())
        .unwrap_or_else(|| panic!("no {} in {status}", name(id)))
}
