//! raftgres-jepsen: the chaos harness. It runs raftgres nodes as network
//! namespaces on a bridge, injects faults between them, records what clients
//! saw, and checks the history. It treats raftgres as a black box: the
//! `raftgres` and `raftctl` binaries and their wire APIs.

pub mod checker;
pub mod history;
pub mod hosts;
pub mod nemesis;
pub mod net;
pub mod record;
pub mod report;
pub mod run;
pub mod workload;
