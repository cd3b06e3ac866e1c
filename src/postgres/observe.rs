//! Observing the local server over SQL (Unix socket, superuser).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, NoTls, Statement};

use super::lsn;

/// What the local PostgreSQL looks like right now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The data directory holds a cluster.
    pub data_present: bool,
    /// A postmaster process is alive.
    pub running: bool,
    /// The server answered SQL.
    pub accepting: bool,
    pub in_recovery: Option<bool>,
    pub timeline: Option<u32>,
    /// Primary: current WAL insert position.
    pub write_lsn: Option<u64>,
    /// Replica: last WAL received and replayed.
    pub receive_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
    /// The WAL receiver is streaming.
    pub streaming: bool,
    /// Where the WAL receiver streams from.
    pub upstream: Option<(String, u16)>,
    pub system_id: Option<String>,
    pub server_version: Option<String>,
    /// A cleanly shut down primary: where its shutdown checkpoint record
    /// starts (`pg_controldata`). Its WAL ends just past it.
    pub checkpoint_lsn: Option<u64>,
}

impl Observation {
    /// The furthest WAL position this server has: written on a primary,
    /// received or replayed on a replica.
    pub fn lsn(&self) -> Option<u64> {
        match self.in_recovery {
            Some(false) => self.write_lsn,
            _ => self.receive_lsn.max(self.replay_lsn),
        }
    }

    pub fn is_primary(&self) -> bool {
        self.accepting && self.in_recovery == Some(false)
    }

    pub fn is_replica(&self) -> bool {
        self.accepting && self.in_recovery == Some(true)
    }
}

const QUERY: &str = "SELECT pg_is_in_recovery(),
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
    pg_last_wal_receive_lsn()::text,
    pg_last_wal_replay_lsn()::text,
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END,
    (SELECT timeline_id FROM pg_control_checkpoint()),
    (SELECT status FROM pg_stat_wal_receiver),
    (SELECT received_tli FROM pg_stat_wal_receiver),
    (SELECT sender_host FROM pg_stat_wal_receiver),
    (SELECT sender_port FROM pg_stat_wal_receiver),
    (SELECT system_identifier::text FROM pg_control_system()),
    current_setting('server_version')";

/// Keeps one connection to the local server and re-opens it when needed.
pub struct Observer {
    config: tokio_postgres::Config,
    client: Option<Client>,
    /// [`QUERY`] prepared on `client`: an observation is then one round
    /// trip (bind, execute) where an unprepared query takes two (parse and
    /// describe first), and the server plans it once per connection.
    statement: Option<Statement>,
    data_dir: PathBuf,
    /// The last observation got no answer at all within its deadline (as
    /// opposed to an error answer): the server may be hung.
    unanswered: bool,
}

impl Observer {
    pub fn new(socket_dir: PathBuf, port: u16, superuser: &str, data_dir: PathBuf) -> Self {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(socket_dir)
            .port(port)
            .user(superuser)
            .dbname("postgres")
            .application_name("raftgres")
            // raftgres's own statements (the replication role, a checkpoint)
            // are not clients' writes: they never wait for a synchronous
            // standby, which may not exist yet (strict mode at bootstrap).
            .options("-c statement_timeout=10s -c synchronous_commit=local")
            // Longer than the deadline of one observation, so a server that
            // does not answer shows as a timed-out observation.
            .connect_timeout(Duration::from_secs(5));
        Self { config, client: None, statement: None, data_dir, unanswered: false }
    }

    /// A connected client, reconnecting if the last one broke.
    pub async fn client(&mut self) -> Result<&Client, tokio_postgres::Error> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, connection) = self.config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("local PostgreSQL connection ended: {e}");
                }
            });
            self.client = Some(client);
            self.statement = None;
        }
        Ok(self.client.as_ref().expect("set above"))
    }

    /// The observation query, prepared on the current connection.
    async fn prepared(&mut self) -> Result<(&Client, &Statement), tokio_postgres::Error> {
        self.client().await?;
        let client = self.client.as_ref().expect("connected above");
        if self.statement.is_none() {
            self.statement = Some(client.prepare(QUERY).await?);
        }
        Ok((client, self.statement.as_ref().expect("prepared above")))
    }

    /// A connection is open. It belongs to the postmaster that ran when it
    /// was opened: PostgreSQL ends a backend whose postmaster died, which
    /// closes the connection. While it is open and answers, that server
    /// runs.
    pub fn connected(&self) -> bool {
        self.client.as_ref().is_some_and(|c| !c.is_closed())
    }

    /// The last observation of a running server got no answer in time.
    pub fn unanswered(&self) -> bool {
        self.unanswered
    }

    /// Drops the connection (before a stop or restart).
    pub fn disconnect(&mut self) {
        self.client = None;
        self.statement = None;
    }

    /// Observes the server; `running` and `data_present` come from the
    /// caller, which checked the process and directory.
    pub async fn observe(&mut self, data_present: bool, running: bool) -> Observation {
        let mut o = Observation { data_present, running, ..Default::default() };
        self.unanswered = false;
        if !running {
            self.disconnect();
            return o;
        }
        let row = match tokio::time::timeout(Duration::from_secs(2), async {
            let (client, statement) = self.prepared().await?;
            client.query_one(statement, &[]).await
        })
        .await
        {
            Ok(Ok(row)) => row,
            Ok(Err(e)) => {
                tracing::debug!("observe local PostgreSQL: {e}");
                self.disconnect();
                return o;
            }
            Err(_) => {
                tracing::debug!("observe local PostgreSQL: timed out");
                self.disconnect();
                self.unanswered = true;
                return o;
            }
        };
        let text = |i: usize| row.try_get::<_, Option<String>>(i).ok().flatten();
        o.accepting = true;
        o.in_recovery = row.try_get::<_, bool>(0).ok();
        o.write_lsn = text(1).as_deref().and_then(lsn::parse);
        o.receive_lsn = text(2).as_deref().and_then(lsn::parse);
        o.replay_lsn = text(3).as_deref().and_then(lsn::parse);
        let walfile_tl = text(4).as_deref().and_then(lsn::timeline_of_walfile);
        let checkpoint_tl = row.try_get::<_, Option<i32>>(5).ok().flatten().map(|t| t as u32);
        o.streaming = text(6).as_deref() == Some("streaming");
        let received_tl = row.try_get::<_, Option<i32>>(7).ok().flatten().map(|t| t as u32);
        // A standby without a WAL receiver has no current timeline in SQL;
        // the checkpoint's lags until the next restartpoint. The newest
        // timeline history file it has fetched is exact.
        o.timeline = walfile_tl
            .or(received_tl)
            .or_else(|| checkpoint_tl.map(|tl| super::history::newest_timeline(&self.data_dir, tl)));
        let sender_host = text(8);
        let sender_port = row.try_get::<_, Option<i32>>(9).ok().flatten();
        o.upstream = sender_host.zip(sender_port.map(|p| p as u16));
        o.system_id = text(10);
        o.server_version = text(11);
        o
    }
}
