//! Protocol buffer definitions and the generated gRPC code of raftgres.
//!
//! This crate owns the wire contract only: the `.proto` files and what
//! `tonic-prost-build` generates from them. It holds no logic; conversions
//! between these messages and domain types live in the crates that own the
//! domain types.

/// Raft transport between daemons (`proto/raft.proto`).
pub mod raft {
    tonic::include_proto!("raftgres.raft.v2");
}

/// The admin service `raftctl` speaks (`proto/admin.proto`).
pub mod admin {
    tonic::include_proto!("raftgres.admin.v1");
}
