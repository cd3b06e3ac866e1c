//! Small files replaced atomically and read back with integrity checks.
//!
//! Layout: `magic (8) | length u64 BE | payload | crc32 BE (4)`. A write
//! goes to `<name>.tmp`, is fsynced, renamed over `<name>`, and the parent
//! directory is fsynced, so a crash leaves either the old or the new file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Fsyncs a directory, making renames and new entries in it durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Atomically replaces `path` with a framed `payload`.
pub fn write_control_file(path: &Path, magic: &[u8; 8], payload: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut framed = Vec::with_capacity(payload.len() + 24);
    framed.extend_from_slice(magic);
    framed.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    framed.extend_from_slice(payload);
    let crc = crc32fast::hash(&framed);
    framed.extend_from_slice(&crc.to_be_bytes());
    {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(&framed)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    let parent = path.parent().ok_or_else(|| io::Error::other("control file has no parent directory"))?;
    fsync_dir(parent)
}

/// Why a control file is not intact.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlFileError {
    #[error("read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is truncated ({len} bytes)")]
    Short { path: String, len: usize },
    #[error("{path} has the wrong magic")]
    Magic { path: String },
    #[error("{path} is truncated: header says {declared} payload bytes")]
    Truncated { path: String, declared: u64 },
    #[error("{path} fails its checksum")]
    Checksum { path: String },
}

/// Reads a control file: `Ok(None)` if it does not exist, `Err` with the
/// reason if it is not intact.
pub fn read_control_file(path: &Path, magic: &[u8; 8]) -> Result<Option<Vec<u8>>, ControlFileError> {
    let p = || path.display().to_string();
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ControlFileError::Read { path: p(), reason: e.to_string() }),
    };
    if bytes.len() < 8 + 8 + 4 {
        return Err(ControlFileError::Short { path: p(), len: bytes.len() });
    }
    if &bytes[..8] != magic {
        return Err(ControlFileError::Magic { path: p() });
    }
    let declared = u64::from_be_bytes(bytes[8..16].try_into().expect("length checked above"));
    if declared != (bytes.len() - 20) as u64 {
        return Err(ControlFileError::Truncated { path: p(), declared });
    }
    let (framed, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_be_bytes(crc.try_into().expect("split_at leaves 4 bytes"));
    if crc32fast::hash(framed) != stored {
        return Err(ControlFileError::Checksum { path: p() });
    }
    Ok(Some(framed[16..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"TESTFILE";

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctl");
        assert_eq!(read_control_file(&p, MAGIC), Ok(None));
        write_control_file(&p, MAGIC, b"hello").unwrap();
        write_control_file(&p, MAGIC, b"hello again").unwrap();
        assert_eq!(read_control_file(&p, MAGIC), Ok(Some(b"hello again".to_vec())));
        assert!(!p.with_extension("tmp").exists());
    }

    #[test]
    fn damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctl");
        write_control_file(&p, MAGIC, b"payload").unwrap();
        let good = fs::read(&p).unwrap();
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 1;
            fs::write(&p, &b).unwrap();
            assert!(read_control_file(&p, MAGIC).is_err(), "flip at {i} went unnoticed");
        }
        fs::write(&p, &good[..good.len() - 1]).unwrap();
        assert!(read_control_file(&p, MAGIC).is_err());
    }
}
