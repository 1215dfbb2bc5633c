//! Token files: flat little-endian uint16 ids (llama2.c / llm.c shards), read window by window
//! with positioned reads, so a shard of any size costs no memory and the OS page cache does the
//! rest. Not memory-mapped, on purpose: a mapping needs `unsafe` (the project keeps it to
//! `malus-ane`) and a shard truncated under a mapping kills the process with SIGBUS, where a
//! short read is an error naming the file; one syscall per window is noise next to a step. A
//! held-out tail is the validation split; sampling is deterministic from a seed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use crate::rng::Rng;

/// One token file.
#[derive(Debug)]
pub struct TokenFile {
    file: File,
    pub path: PathBuf,
    pub len: u64,
}

impl TokenFile {
    pub fn open(path: &Path) -> Result<TokenFile> {
        let file = File::open(path).with_context(|| format!("cannot open token file {}", path.display()))?;
        let bytes = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        ensure!(
            bytes % 2 == 0,
            "token file {} has an odd size ({bytes} bytes): not uint16 tokens",
            path.display()
        );
        Ok(TokenFile {
            file,
            path: path.to_path_buf(),
            len: bytes / 2,
        })
    }

    /// `n` tokens from position `pos`, each checked to be below `vocab`.
    pub fn window(&self, pos: u64, n: usize, vocab: usize) -> Result<Vec<u32>> {
        ensure!(
            pos + n as u64 <= self.len,
            "{}: window [{pos}, +{n}) is past the end ({} tokens)",
            self.path.display(),
            self.len
        );
        let mut buf = vec![0u8; n * 2];
        self.file
            .read_exact_at(&mut buf, pos * 2)
            .with_context(|| format!("reading {}", self.path.display()))?;
        let ids: Vec<u32> = buf
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
            .collect();
        if let Some(i) = ids.iter().position(|&t| t as usize >= vocab) {
            bail!(
                "{}: token {} at position {} is not below the vocabulary size {vocab}",
                self.path.display(),
                ids[i],
                pos + i as u64
            );
        }
        Ok(ids)
    }
}

/// Writes token ids as a uint16 file (temp file, fsync, rename: never a partial file).
pub fn write_tokens(path: &Path, ids: &[u32]) -> Result<()> {
    let mut bytes = Vec::with_capacity(ids.len() * 2);
    for &t in ids {
        ensure!(t <= u16::MAX as u32, "token id {t} does not fit in uint16");
        bytes.extend_from_slice(&(t as u16).to_le_bytes());
    }
    crate::fsutil::write_atomic(path, &bytes)
}

/// A token file split into a training head and a validation tail.
#[derive(Debug)]
pub struct Dataset {
    pub file: TokenFile,
    /// Tokens `[0, train_end)` train; `[train_end, len)` validate.
    pub train_end: u64,
    pub vocab: usize,
}

impl Dataset {
    /// Holds out the last `val_fraction` of the file (at least `seq + 1` tokens each side).
    pub fn new(file: TokenFile, vocab: usize, seq: usize, val_fraction: f64) -> Result<Dataset> {
        let need = 2 * (seq as u64 + 1);
        ensure!(
            file.len >= need,
            "{}: {} tokens is too short for sequences of {seq} (need at least {need})",
            file.path.display(),
            file.len
        );
        let val = ((file.len as f64 * val_fraction) as u64).max(seq as u64 + 1);
        Ok(Dataset {
            train_end: file.len - val,
            file,
            vocab,
        })
    }

    /// A random training window of `seq + 1` tokens.
    pub fn sample(&self, rng: &mut Rng, seq: usize) -> Result<Vec<u32>> {
        let span = self.train_end - seq as u64; // ≥ 1 by construction
        let pos = rng.below(span);
        self.file.window(pos, seq + 1, self.vocab)
    }

    /// `n` evenly spaced validation windows (the same every time).
    pub fn validation(&self, seq: usize, n: usize) -> Result<Vec<Vec<u32>>> {
        let start = self.train_end;
        let span = self.file.len - start - seq as u64;
        (0..n as u64)
            .map(|i| {
                self.file
                    .window(start + span * i / n.max(1) as u64, seq + 1, self.vocab)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_splits_and_bad_files() {
        let dir = std::env::temp_dir().join(format!("malus-shards-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.bin");
        let ids: Vec<u32> = (0..1000).map(|i| i % 50).collect();
        write_tokens(&p, &ids).unwrap();
        let f = TokenFile::open(&p).unwrap();
        assert_eq!(f.len, 1000);
        assert_eq!(f.window(10, 3, 50).unwrap(), vec![10, 11, 12]);
        assert!(
            f.window(999, 2, 50)
                .unwrap_err()
                .to_string()
                .contains("past the end")
        );
        let err = f.window(0, 60, 40).unwrap_err().to_string();
        assert!(
            err.contains("token 40 at position 40") && err.contains("t.bin"),
            "{err}"
        );
        let d = Dataset::new(f, 50, 16, 0.1).unwrap();
        assert_eq!(d.train_end, 900);
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            let w = d.sample(&mut rng, 16).unwrap();
            assert_eq!(w.len(), 17);
        }
        let v = d.validation(16, 4).unwrap();
        assert_eq!(v[0][0], 900 % 50);
        std::fs::write(dir.join("odd.bin"), [1u8, 2, 3]).unwrap();
        assert!(
            TokenFile::open(&dir.join("odd.bin"))
                .unwrap_err()
                .to_string()
                .contains("odd size")
        );
        let short = dir.join("short.bin");
        write_tokens(&short, &[1, 2, 3]).unwrap();
        assert!(Dataset::new(TokenFile::open(&short).unwrap(), 50, 16, 0.1).is_err());
        assert!(
            TokenFile::open(&dir.join("missing.bin"))
                .unwrap_err()
                .to_string()
                .contains("missing.bin")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
