//! Conversions between domain values and the protobuf envelope.
//!
//! Raft messages travel as opaque bytes inside [`RaftRequest`] and
//! [`RaftReply`]; the bytes are encoded by `raftgres_storage::encoding`,
//! the one place that calls bincode.

pub mod forward;

use raftgres_proto::raft::{RaftReply, RaftRequest};
use raftgres_storage::NodeId;
use raftgres_storage::encoding::{self, DecodeError, EncodeError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Wraps `payload` for `to`, stamped with the sender's cluster and id.
pub fn request<T: Serialize>(
    cluster_id: &str,
    from: NodeId,
    to: NodeId,
    what: &'static str,
    payload: &T,
) -> Result<RaftRequest, EncodeError> {
    Ok(RaftRequest {
        cluster_id: cluster_id.to_string(),
        from,
        to,
        payload: encoding::encode(what, payload)?,
        ..Default::default()
    })
}

/// Decodes a request's payload.
pub fn request_payload<T: DeserializeOwned>(what: &'static str, req: &RaftRequest) -> Result<T, DecodeError> {
    encoding::decode(what, &req.payload)
}

/// Wraps a handler's result.
pub fn reply<T: Serialize>(what: &'static str, result: &T) -> Result<RaftReply, EncodeError> {
    Ok(RaftReply { payload: encoding::encode(what, result)?, ..Default::default() })
}

/// Decodes a reply's payload.
pub fn reply_payload<T: DeserializeOwned>(what: &'static str, reply: &RaftReply) -> Result<T, DecodeError> {
    encoding::decode(what, &reply.payload)
}
