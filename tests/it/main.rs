//! Integration tests of raftgres: real nodes talking real gRPC on loopback.
//! One binary; modules are named `t10_…` (Raft core), `t50_…` (daemon), `t55_…`
//! (failure modes) and `t90_issue_N_…` (regressions).

mod support;
mod t10_raft_cluster;
mod t50_daemon;
mod t55_failure_modes;
mod t56_raft_leader;
mod t57_leader_placement;
mod t58_pgbouncer;
mod t58_vip;
mod t60_operator;
mod t65_raftctl_habits;
mod t66_parameters;
mod t68_callbacks;
mod t69_https;
mod t70_operator_safety;
mod t75_watchdog_device;
mod t80_synchronous;
mod t85_quorum;
