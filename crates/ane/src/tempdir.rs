//! The program directory `<tmp>/<hexStringIdentifier>/` that every working caller fills before
//! compiling (docs/ane-runtime.md §5): `model.mil` (the MIL bytes) and each weight file at its key minus
//! `@model_path/`.
//!
//! The identifier depends only on the program, so two kernels compiled from identical specs share
//! one directory. A process-wide reference count keeps it until the last such kernel drops.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::spec::weight_relative_path;

fn registry() -> &'static Mutex<HashMap<PathBuf, usize>> {
    static LIVE: OnceLock<Mutex<HashMap<PathBuf, usize>>> = OnceLock::new();
    LIVE.get_or_init(Default::default)
}

/// Whether `hex` can name a directory under the temp root (the framework chooses it; we still
/// refuse anything that would escape).
pub(crate) fn valid_identifier(hex: &str) -> bool {
    !hex.is_empty()
        && hex != "."
        && hex != ".."
        && hex
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// A populated program directory, removed when the last holder drops.
#[derive(Debug)]
pub(crate) struct ProgramDir {
    path: PathBuf,
}

impl ProgramDir {
    /// Creates and fills `root/hex/` (or joins it if a live kernel already holds it). On error,
    /// returns the path that failed.
    pub(crate) fn populate(
        root: &Path,
        hex: &str,
        mil: &[u8],
        weights: &[(String, Vec<u8>)],
    ) -> Result<ProgramDir, (PathBuf, std::io::Error)> {
        let path = root.join(hex);
        let mut live = registry().lock().unwrap_or_else(|e| e.into_inner());
        let count = live.entry(path.clone()).or_insert(0);
        if *count == 0 {
            if let Err(e) = write_contents(&path, mil, weights) {
                live.remove(&path);
                let _ = fs::remove_dir_all(&path);
                return Err(e);
            }
        }
        *count += 1;
        Ok(ProgramDir { path })
    }

    /// `root/hex`.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn write_contents(
    dir: &Path,
    mil: &[u8],
    weights: &[(String, Vec<u8>)],
) -> Result<(), (PathBuf, std::io::Error)> {
    let ctx = |p: &Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    let weights_dir = dir.join("weights");
    fs::create_dir_all(&weights_dir).map_err(ctx(&weights_dir))?;
    let model = dir.join("model.mil");
    fs::write(&model, mil).map_err(ctx(&model))?;
    for (key, bytes) in weights {
        let rel = weight_relative_path(key).map_err(|m| {
            (
                dir.to_path_buf(),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, m),
            )
        })?;
        let file = dir.join(rel);
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent).map_err(ctx(parent))?;
        }
        fs::write(&file, bytes).map_err(ctx(&file))?;
    }
    Ok(())
}

impl Drop for ProgramDir {
    fn drop(&mut self) {
        let mut live = registry().lock().unwrap_or_else(|e| e.into_inner());
        let last = match live.get_mut(&self.path) {
            Some(c) if *c > 1 => {
                *c -= 1;
                false
            }
            _ => true,
        };
        if last {
            live.remove(&self.path);
            // Best effort: a leftover directory only costs disk space.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("malus-ane-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn writes_model_and_weights_then_removes() {
        let root = scratch("populate");
        let w = vec![
            ("@model_path/weights/a.bin".to_string(), vec![1u8, 2, 3]),
            ("@model_path/extra/b.bin".to_string(), vec![9u8]),
        ];
        let d = ProgramDir::populate(&root, "ABC123", b"program(1.3)", &w).unwrap();
        assert_eq!(d.path(), root.join("ABC123"));
        assert_eq!(fs::read(root.join("ABC123/model.mil")).unwrap(), b"program(1.3)");
        assert_eq!(fs::read(root.join("ABC123/weights/a.bin")).unwrap(), [1, 2, 3]);
        assert_eq!(fs::read(root.join("ABC123/extra/b.bin")).unwrap(), [9]);
        drop(d);
        assert!(!root.join("ABC123").exists());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn weights_dir_exists_even_without_weights() {
        let root = scratch("noweights");
        let d = ProgramDir::populate(&root, "H", b"m", &[]).unwrap();
        assert!(root.join("H/weights").is_dir());
        drop(d);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn shared_identifier_is_removed_by_the_last_holder() {
        let root = scratch("shared");
        let a = ProgramDir::populate(&root, "SAME", b"m", &[]).unwrap();
        let b = ProgramDir::populate(&root, "SAME", b"m", &[]).unwrap();
        drop(a);
        assert!(root.join("SAME/model.mil").exists());
        drop(b);
        assert!(!root.join("SAME").exists());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn failure_names_the_path_and_leaves_nothing() {
        let root = scratch("fail");
        fs::write(root.join("F"), b"a file where the dir should be").unwrap();
        let (path, _) = ProgramDir::populate(&root, "F", b"m", &[]).unwrap_err();
        assert!(path.starts_with(root.join("F")), "{path:?}");
        assert!(!registry().lock().unwrap().contains_key(&root.join("F")));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn identifiers_that_escape_are_refused() {
        assert!(valid_identifier("0A1b_2-c.d"));
        for bad in ["", ".", "..", "a/b", "a\0", "../x"] {
            assert!(!valid_identifier(bad), "{bad:?}");
        }
    }
}
