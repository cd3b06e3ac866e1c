//! Finding the PostgreSQL server binaries.

use std::path::{Path, PathBuf};

/// Why no usable PostgreSQL server binaries were found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BinariesError {
    #[error(
        "no PostgreSQL server binaries found: set postgres.bin_dir, put pg_config on PATH, or install them \
         (scripts/install-deps.sh)"
    )]
    NotFound,
    #[error("{dir} has no {tool}")]
    Incomplete { dir: PathBuf, tool: &'static str },
}

/// Where `initdb`, `pg_ctl`, `postgres`, `pg_basebackup`, `pg_rewind` and
/// `pg_controldata` live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binaries {
    pub dir: PathBuf,
}

impl Binaries {
    /// The configured directory, else `pg_config --bindir` from PATH, else
    /// the newest `/usr/lib/postgresql/<version>/bin` (Debian's layout).
    pub fn find(configured: Option<&Path>) -> Result<Binaries, BinariesError> {
        if let Some(dir) = configured {
            return Self::check(dir.to_path_buf());
        }
        if let Ok(out) = std::process::Command::new("pg_config").arg("--bindir").output()
            && out.status.success()
        {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("postgres").exists() {
                return Self::check(dir);
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                        let bin = e.path().join("bin");
                        bin.join("postgres").exists().then_some((v, bin))
                    })
                    .collect()
            })
            .unwrap_or_default();
        versions.sort();
        match versions.pop() {
            Some((_, dir)) => Self::check(dir),
            None => Err(BinariesError::NotFound),
        }
    }

    fn check(dir: PathBuf) -> Result<Binaries, BinariesError> {
        for tool in ["postgres", "initdb", "pg_ctl", "pg_basebackup", "pg_rewind", "pg_controldata"] {
            if !dir.join(tool).exists() {
                return Err(BinariesError::Incomplete { dir, tool });
            }
        }
        Ok(Binaries { dir })
    }

    pub fn path(&self, tool: &str) -> PathBuf {
        self.dir.join(tool)
    }
}
