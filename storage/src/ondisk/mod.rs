//! The versioned on-disk format.
//!
//! A node's Raft data lives in `<data_dir>/raft-v<N>/`, named by format
//! version. Inside, a sled database holds a framed [`Header`] under the
//! header key: magic, version, owning cluster and node, an "upgrading"
//! marker, and a checksum. A directory of an unknown version, with a bad
//! header, or belonging to another cluster or node is refused with a clear
//! error and never rewritten. A directory of an earlier version is upgraded
//! at open into a new directory beside it (module `upgrade`).

mod control_file;
pub mod header;
pub(crate) mod upgrade;
pub mod v1;
pub mod v2;
mod version;

pub use control_file::{fsync_dir, read_control_file, write_control_file};
pub use header::Header;
pub use version::DataVersion;
