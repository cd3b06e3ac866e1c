//! The commented default configuration printed by `raftgres show-config`.

/// A complete, valid configuration for node 1 of a 3-node cluster, with
/// every field explained. Parsed back by a test.
pub const DEFAULT_CONFIG: &str = r#"# raftgres node configuration (TOML). One file per node.

# Name of the cluster. Every Raft message carries it; a node configured for
# another cluster is refused. It is also written into the data directory.
cluster_id = "pg-main"

[node]
# Raft node id: unique in the cluster, >= 1, never reused.
id = 1
# Member name (like Patroni's `name`): unique, shown by raftctl and the API.
name = "pg1"
# Absolute directory for this node's state: raft-v2/ (the Raft log),
# pgdata/ (PostgreSQL, unless postgres.data_dir says otherwise) and run/
# (PostgreSQL's Unix socket). Its parents must be traversable by
# postgres.run_as when the daemon runs as root.
data_dir = "/var/lib/raftgres"

[raft]
# Address the Raft gRPC transport listens on.
listen = "127.0.0.1:7001"
# Address peers use to reach it (default: listen).
# advertise = "10.0.0.1:7001"
# Leader heartbeat and election timeouts. 3 x heartbeat <= min < max. A
# follower elects only after election_timeout_max_ms plus an election
# timeout without a heartbeat (openraft's leader lease), and the primary
# must get its next lease renewal from the new leader before its lease
# runs out: 2 x max + 3 x heartbeat + dynamic.heartbeat_interval_ms must
# stay below dynamic.lease_ttl_ms - dynamic.demote_margin_ms.
heartbeat_interval_ms = 100
election_timeout_min_ms = 300
election_timeout_max_ms = 400
# Where the Raft leader may run. "any" leaves it where elections put it;
# "avoid_primary" hands the leadership to a follower when it lands on the
# primary's node, so the primary's death never also costs a Raft election
# (about 1 s more failover). Experimental: the election a hand-over starts
# can cost the primary its lease under faults.
leader_placement = "any"

# The members that form the cluster at first start. Every initial member
# must list the same set. This node must appear with its own name and
# advertised Raft address.
[[raft.initial_members]]
id = 1
name = "pg1"
raft_addr = "127.0.0.1:7001"

[[raft.initial_members]]
id = 2
name = "pg2"
raft_addr = "127.0.0.1:7002"

[[raft.initial_members]]
id = 3
name = "pg3"
raft_addr = "127.0.0.1:7003"

[http]
# Patroni-compatible REST API: /primary, /replica, /health, ...
listen = "127.0.0.1:8008"
# URL host:port others use to reach it (default: listen).
# advertise = "10.0.0.1:8008"
# HTTPS (Patroni's restapi.certfile, keyfile, cafile, verify_client): with
# certfile and keyfile (PEM) the API serves HTTPS only and members' URLs are
# https://. The certificate must name the host of advertise. cafile signs
# the members' certificates (the daemon checks other members' APIs against
# it) and, with verify_client = "optional" or "required", the clients'.
# certfile = "/etc/raftgres/api.pem"
# keyfile = "/etc/raftgres/api-key.pem"
# cafile = "/etc/raftgres/ca.pem"
verify_client = "none"

[postgres]
# Directory of initdb, pg_ctl, postgres, pg_basebackup, pg_rewind. Default:
# `pg_config --bindir` on PATH, else the newest /usr/lib/postgresql/*/bin.
# bin_dir = "/usr/lib/postgresql/15/bin"
# PostgreSQL data directory (default: <node.data_dir>/pgdata).
# data_dir = "/var/lib/raftgres/pgdata"
listen_addresses = "127.0.0.1"
# Host other members and clients use to reach this PostgreSQL (default:
# the host of raft.advertise).
# advertise_host = "10.0.0.1"
port = 5432
# Superuser the daemon connects as (over the Unix socket) and that
# pg_rewind uses (over TCP).
superuser = "postgres"
superuser_password = "change-me"
# Role replicas stream with.
replication_user = "replicator"
replication_password = "change-me-too"
# OS user PostgreSQL runs as when the daemon runs as root.
run_as = "postgres"
# A primary whose postmaster runs and says it is ready, but has not answered
# the daemon for this long (stopped processes, a stalled disk), is killed and
# gives up its role so another node takes over. 0 turns this off.
hang_timeout_ms = 10000

[security]
# The cluster token, the same on every node: at least 16 printable ASCII
# characters. Every Raft message and admin call carries it, and unsafe HTTP
# requests (POST/PUT/PATCH/DELETE) need it as `Authorization: Bearer <token>`.
# Keep it out of the file with token_file instead.
token = "change-me-to-a-long-random-secret"
# token_file = "/etc/raftgres/token"
# TLS on the Raft port (Raft and admin gRPC): the cluster's CA, and this
# node's certificate (its subject alternative names must cover the host of
# raft.advertise) and key, PEM. All three or none; raftctl then needs
# --ca-file.
# tls_ca_file = "/etc/raftgres/ca.pem"
# tls_cert_file = "/etc/raftgres/node.pem"
# tls_key_file = "/etc/raftgres/node-key.pem"

# The kernel watchdog (/dev/watchdog): a timer that resets the machine
# unless it is fed. A primary holds it while its lease holds, so a daemon
# that is killed or hangs, or a primary whose lease runs out, is reset before
# another node may be promoted. Off by default: the reset takes the whole
# machine down, so turn it on only on machines that run nothing else that
# matters, with the device set up (`modprobe softdog` or a hardware driver,
# /dev/watchdog writable by the daemon's user).
[watchdog]
# off: not used. automatic: used when it works; a node whose device fails
# becomes primary without it and logs a warning. required: a node never
# takes the primary role without a working device; one whose device cannot
# be used publishes nofailover and watchdog = "unavailable" as tags and
# says why in its log.
mode = "off"
# The device. A path that is not a character device (a regular file, a FIFO)
# is a stand-in: the protocol is written to it as text ("timeout <s>",
# "keepalive", "V") and nothing is reset. For tests.
device = "/dev/watchdog"
# The device's timeout is dynamic.lease_ttl_ms minus this, in whole seconds
# rounded down (at least 1 s); it is fed only while at least that much of
# the lease remains, so it fires no later than the lease ends. A renewal must
# arrive within the first lease_ttl_ms - timeout of each lease: at least
# 2 x dynamic.heartbeat_interval_ms, below dynamic.lease_ttl_ms.
safety_margin_ms = 500

# Programs run on PostgreSQL's events (Patroni's callbacks). Each is a
# program and optionally its own arguments, split like shell words but run
# without a shell. on_start, on_stop, on_restart and on_role_change get
# three more arguments: the action, the role (primary or replica) and
# cluster_id. They run beside the agent, one at a time: a new callback kills
# the one still running. pre_promote runs with no arguments before this node
# promotes its PostgreSQL; a non-zero exit or a timeout vetoes the promotion,
# and the node gives the role back for another to take. Read at start.
[callbacks]
# on_start = "/etc/raftgres/callback.sh"
# on_stop = "/etc/raftgres/callback.sh"
# on_restart = "/etc/raftgres/callback.sh"
# on_role_change = "/etc/raftgres/callback.sh"
# pre_promote = "/etc/raftgres/pre-promote.sh"
# A callback still running after this long is killed, with what it started.
timeout_ms = 10000
# PgBouncer follows the primary (docs/operations.md, "PgBouncer"): on every
# change of the primary that can take writes, this node renders
# databases_file from databases_template and has PgBouncer RELOAD; a
# switchover PAUSEs PgBouncer's pools first and RESUMEs them once they point
# at the new primary. pgbouncer.ini pulls the file in with
# `%include /etc/pgbouncer/raftgres-databases.ini` (and has no [databases]
# section of its own). A node with this section and no postgres section is
# proxy-only: it joins as a Raft learner through raft.initial_members (which
# must not list it) and runs no PostgreSQL.
# [pgbouncer]
# Admin console: PgBouncer's address and a user of its admin_users.
# admin_host = "127.0.0.1"
# admin_port = 6432
# admin_user = "pgbouncer"
# Its password: from a file, or from an environment variable; neither
# means none (PgBouncer trusts the connection). Never logged.
# admin_password_file = "/etc/raftgres/pgbouncer-admin-password"
# admin_password_env = "RAFTGRES_PGBOUNCER_PASSWORD"
# databases_file = "/etc/pgbouncer/raftgres-databases.ini"
# The lines of the [databases] section, a minijinja template with host,
# port, name (the primary member's), epoch and cluster.
# databases_template = "app = host={{ host }} port={{ port }} dbname=app"
# PAUSE must finish the running transactions within pause_wait_ms, else
# it is given up (RESUMEd) and the switchover goes on without it; paused
# pools RESUME by themselves after pause_timeout_ms.
# pause_wait_ms = 5000
# pause_timeout_ms = 15000
# A virtual IP (off unless this section is uncommented). The address is
# bound on the interface of the node whose primary lease allows writes, and
# only while it does; the node announces it with gratuitous ARP when it
# takes it, and removes it before its lease stops allowing writes, before
# a switchover demotes it and when the daemon stops. Every node lists the
# same address; the interface may differ. Needs CAP_NET_ADMIN and
# CAP_NET_RAW (or root). IPv4 only.
# [vip]
# address = "10.0.0.10/24"
# interface = "eth0"

# This member's tags, as in Patroni: nofailover, noloadbalance, nosync
# (true/false, quoted or not), failover_priority (0 = never promote), and any other
# key = "value" for `/replica?tag_key=value` checks. Applied on reload.
[tags]
# nofailover = false

# The dynamic configuration a new cluster starts with. After bootstrap it
# lives in the Raft log and is changed with `raftctl config set`.
[dynamic]
# Primary lease: renewed by every heartbeat the Raft leader confirms with a
# quorum, counted from the heartbeat's send time. Must exceed
# 3 x heartbeat_interval_ms + drift_margin_ms + demote_margin_ms.
lease_ttl_ms = 2000
heartbeat_interval_ms = 250
# Extra wait before a silent primary's lease is treated as expired.
drift_margin_ms = 200
# A primary whose lease was not renewed stops accepting writes this long
# before the lease ends. At least heartbeat_interval_ms.
demote_margin_ms = 500
# Replicas further behind (bytes) are not failover candidates.
maximum_lag_on_failover = 1048576
# off | on | strict
synchronous_mode = "off"
synchronous_node_count = 1
# A crashed PostgreSQL is restarted this many times before the primary
# gives up its role so another node takes over (0: fail over at once).
postgres_restart_attempts = 1
use_pg_rewind = true
reclone_on_rewind_failure = true

# PostgreSQL parameters for every member (raftgres manages port,
# listen_addresses, primary_conninfo, synchronous_standby_names, ...).
[dynamic.postgresql_parameters]
max_connections = "100"
shared_buffers = "128MB"
"#;
