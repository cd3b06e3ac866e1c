//! The format header stored under the header key.
//!
//! Frame: `MAGIC (8) | version u32 BE | body | crc32 BE (4)` where the
//! checksum covers everything before it. The version sits before the body so
//! that a newer body layout is still recognised as "newer" rather than
//! "corrupted".

use serde::{Deserialize, Serialize};

use super::version::DataVersion;
use crate::encoding;

const MAGIC: &[u8; 8] = b"RGRAFTDB";

/// Who owns a data directory and in which format it is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    pub cluster_id: String,
    pub node_id: u64,
    /// Set while an upgrade rewrites the directory; a directory with it set
    /// is refused.
    pub upgrading: bool,
    /// Release of raftgres that created the directory.
    pub created_by: String,
}

/// Why a header frame could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Not a raftgres header (wrong magic, too short, bad checksum, bad body).
    Malformed(String),
    /// A well-formed header of a version this build does not know.
    UnknownVersion(u32),
}

impl Header {
    pub fn new(cluster_id: &str, node_id: u64) -> Self {
        Self {
            version: DataVersion::CURRENT.number(),
            cluster_id: cluster_id.to_string(),
            node_id,
            upgrading: false,
            created_by: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, encoding::EncodeError> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&encoding::encode("format header", self)?);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        if bytes.len() < MAGIC.len() + 4 + 4 {
            return Err(HeaderError::Malformed(format!("header is {} bytes long", bytes.len())));
        }
        let (framed, crc) = bytes.split_at(bytes.len() - 4);
        if &framed[..8] != MAGIC {
            return Err(HeaderError::Malformed("header magic is not raftgres's".into()));
        }
        let stored = u32::from_be_bytes(crc.try_into().expect("split_at leaves 4 bytes"));
        if crc32fast::hash(framed) != stored {
            return Err(HeaderError::Malformed("header checksum mismatch".into()));
        }
        let version = u32::from_be_bytes(framed[8..12].try_into().expect("length checked above"));
        if DataVersion::from_number(version).is_none() {
            return Err(HeaderError::UnknownVersion(version));
        }
        let header: Header =
            encoding::decode("format header", &framed[12..]).map_err(|e| HeaderError::Malformed(e.to_string()))?;
        if header.version != version {
            return Err(HeaderError::Malformed(format!(
                "header frame says v{version} but its body says v{}",
                header.version
            )));
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header::new("c1", 3);
        assert_eq!(Header::decode(&h.encode().unwrap()), Ok(h));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = Header::new("c1", 3).encode().unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(Header::decode(&b).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn newer_version_is_recognised_as_such() {
        let mut h = Header::new("c1", 3);
        h.version = 7;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&7u32.to_be_bytes());
        bytes.extend_from_slice(b"future body layout");
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(Header::decode(&bytes), Err(HeaderError::UnknownVersion(7)));
    }
}
