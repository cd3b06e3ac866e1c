//! A real PgBouncer (Debian's, installed by `scripts/install-deps.sh`) as a
//! child of the test: transaction pooling on an allocated loopback port,
//! trust authentication, its `[databases]` section in a file raftgres
//! writes. Killed on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use raftgres::config::FileConfig;
use raftgres::pgbouncer::PgBouncerSection;
use raftgres::playground::free_port_on;
use tempfile::TempDir;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use tracing::info;

/// The user PgBouncer drops to when the test runs as root (it refuses to
/// run as root).
const RUN_AS: &str = "postgres";

pub struct PgBouncer {
    pub port: u16,
    pub dir: TempDir,
    child: Child,
}

impl PgBouncer {
    /// Starts PgBouncer with an empty `[databases]` file: it has nowhere to
    /// send clients until raftgres renders the file. `password` is the
    /// PostgreSQL superuser's, which the template puts in the connection
    /// string.
    pub fn start() -> PgBouncer {
        let dir = tempfile::Builder::new().prefix("raftgres-pgbouncer-").tempdir().expect("temporary directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let port = free_port_on("127.0.0.1").expect("a free port");
        let ini = format!(
            "[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\n\
             auth_file = {auth}\nadmin_users = pgbouncer\npool_mode = transaction\nmax_client_conn = 200\n\
             default_pool_size = 20\nserver_reset_query =\nserver_check_delay = 0\nquery_wait_timeout = 120\n\
             ignore_startup_parameters = extra_float_digits\nlogfile =\npidfile =\n%include {databases}\n",
            auth = dir.path().join("userlist.txt").display(),
            databases = databases_file(dir.path()).display(),
        );
        write_readable(&dir.path().join("pgbouncer.ini"), &ini);
        write_readable(&dir.path().join("userlist.txt"), "\"postgres\" \"\"\n\"pgbouncer\" \"\"\n");
        write_readable(&databases_file(dir.path()), "[databases]\n");
        let log = std::fs::File::create(dir.path().join("pgbouncer.log")).expect("log file");
        let exe = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("pgbouncer is installed (scripts/install-deps.sh)");
        let mut cmd = Command::new(exe);
        if nix::unistd::geteuid().is_root() {
            cmd.args(["-u", RUN_AS]);
        }
        let child = cmd
            .arg(dir.path().join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start pgbouncer");
        info!(port, pid = child.id(), "pgbouncer started");
        PgBouncer { port, dir, child }
    }

    /// The `[pgbouncer]` section that points raftgres at this PgBouncer.
    pub fn section(&self, superuser_password: &str) -> PgBouncerSection {
        let text = format!(
            "admin_port = {}\nadmin_user = \"pgbouncer\"\ndatabases_file = \"{}\"\n\
             databases_template = \"postgres = host={{{{ host }}}} port={{{{ port }}}} dbname=postgres user=postgres password={superuser_password}\"\n\
             pause_wait_ms = 5000\npause_timeout_ms = 20000\n",
            self.port,
            databases_file(self.dir.path()).display()
        );
        toml::from_str(&text).expect("a valid [pgbouncer] section")
    }

    /// Adds this PgBouncer to `f`.
    pub fn configure(&self, f: &mut FileConfig, superuser_password: &str) {
        f.pgbouncer = Some(self.section(superuser_password));
    }

    pub fn databases(&self) -> String {
        std::fs::read_to_string(databases_file(self.dir.path())).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// A client connection through PgBouncer.
    pub async fn connect(&self) -> Result<Client, String> {
        let conninfo = format!("host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=3", self.port);
        let (client, conn) = tokio::time::timeout(Duration::from_secs(5), tokio_postgres::connect(&conninfo, NoTls))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Which PostgreSQL a new connection through PgBouncer reaches: its
    /// port and whether it is in recovery.
    pub async fn reaches(&self) -> Result<(u16, bool), String> {
        let client = self.connect().await?;
        let q = client.simple_query("SELECT inet_server_port(), pg_is_in_recovery()");
        let rows = tokio::time::timeout(Duration::from_secs(3), q)
            .await
            .map_err(|_| "query timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let row = rows
            .into_iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .ok_or("no row")?;
        let port = row.get(0).and_then(|p| p.parse().ok()).ok_or("no port")?;
        Ok((port, row.get(1) == Some("t")))
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("===== pgbouncer log =====\n{}", self.log());
        }
    }
}

fn databases_file(dir: &Path) -> PathBuf {
    dir.join("databases.ini")
}

fn write_readable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}
