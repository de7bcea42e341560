//! A per-test temporary directory that is removed with its guard.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use crate::env::next_id;

/// Every directory the harness makes is `$TMPDIR/vswitch-e2e-<pid>-<n>`.
pub(crate) const PREFIX: &str = "vswitch-e2e-";

/// A fresh directory under the system's temporary directory; dropping the guard removes
/// it with everything inside, unless `VSWITCH_E2E_KEEP` is set (for post-mortems).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates it.
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub fn new() -> TempDir {
        let path =
            std::env::temp_dir().join(format!("{PREFIX}{}-{}", std::process::id(), next_id()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("VSWITCH_E2E_KEEP").is_some() {
            eprintln!("e2e: keeping {}", self.path.display());
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("e2e: cannot remove {}: {e}", self.path.display());
            }
        }
    }
}
