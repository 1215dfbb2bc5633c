//! A run directory is used by one training process at a time: an exclusive advisory lock on
//! `.lock` inside it, held for the run's life and released by the OS when the process ends
//! however it ends (kill -9 leaves no stale lock). Readers (`generate`, `plot`) don't take it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The held lock of a run directory.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Creates `dir` if needed and takes its lock; an error naming the holder's process id when
    /// another process has it.
    pub fn take(dir: &Path) -> Result<RunLock> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating run directory {}", dir.display()))?;
        let path = dir.join(".lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                bail!(
                    "run directory {} is in use by another malus process (pid {}); give this run another --out",
                    dir.display(),
                    holder.trim()
                );
            }
            Err(TryLockError::Error(e)) => bail!("locking {}: {e}", path.display()),
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id()).with_context(|| format!("writing {}", path.display()))?;
        Ok(RunLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_naming_the_first() {
        let d = std::env::temp_dir().join(format!("malus-lock-{}", std::process::id()));
        let first = RunLock::take(&d).unwrap();
        let err = RunLock::take(&d).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(first);
        let again = RunLock::take(&d).unwrap();
        assert!(again.path().ends_with(".lock"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
