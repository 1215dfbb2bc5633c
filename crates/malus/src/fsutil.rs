//! File-system helpers: atomic writes, so an interrupted or failed write never replaces a good
//! file with a partial one.

use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` through a temp file in the same directory: write, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| Ok(std::fs::write(tmp, bytes)?))
}

/// Like [`write_atomic`] for writers that stream to a path themselves (so a large file never
/// sits whole in memory): `write` fills the temp file, which is then fsynced and renamed over
/// `path`. On any failure the temp file is removed and `path` is untouched.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    // The permissions a new file gets here (the umask's): `write` may replace the temp file
    // with a narrower one (safetensors' writer renames a 0600 temp file over it).
    let result = std::fs::File::create(&tmp)
        .and_then(|f| f.metadata())
        .map(|m| m.permissions())
        .map_err(anyhow::Error::from)
        .and_then(|perms| write(&tmp).and_then(|()| Ok(std::fs::set_permissions(&tmp, perms)?)))
        .and_then(|()| {
            std::fs::File::options().append(true).open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A writer that leaves a 0600 file (as safetensors' does) still yields a file with the
    /// permissions of any other new file.
    #[test]
    fn narrow_writers_get_the_usual_permissions() {
        let dir = std::env::temp_dir().join(format!("malus-fsutil-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let usual = dir.join("usual");
        std::fs::write(&usual, b"x").unwrap();
        let want = std::fs::metadata(&usual).unwrap().permissions().mode() & 0o777;
        let path = dir.join("narrow");
        write_atomic_with(&path, |tmp| {
            let other = tmp.with_extension("other");
            std::fs::write(&other, b"y")?;
            std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600))?;
            Ok(std::fs::rename(&other, tmp)?)
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"y");
        let got = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, want, "{got:o} vs {want:o}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
