//! Token files, read window by window with positioned reads, so a file of any size costs no
//! memory and the OS page cache does the rest. Two formats (docs/data.md):
//!
//! * **raw**: flat little-endian uint16 ids, nothing else (llama2.c / llm.c shards);
//! * **headed**: a 24-byte header ([`MAGIC`], version, id width 2 or 4, flags, token count),
//!   the ids, then, when flagged, one loss-mask byte per token (1 = the token counts as a
//!   target, 0 = it does not).
//!
//! Not memory-mapped, on purpose: a mapping needs `unsafe` (the project keeps it to
//! `malus-ane`) and a file truncated under a mapping kills the process with SIGBUS, where a
//! short read is an error naming the file; one syscall per window is noise next to a step.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

/// The first 8 bytes of a headed token file. Read as raw uint16 ids they are 65535, 65535,
/// 21581, 19279: a raw file would have to open with the very last id of a full 65,536-token
/// vocabulary twice in a row (and any other vocabulary refuses id 65535 outright), so no real
/// raw shard is mistaken for a headed one.
pub const MAGIC: [u8; 8] = [0xff, 0xff, 0xff, 0xff, b'M', b'T', b'O', b'K'];
/// The header version this code writes and reads.
pub const VERSION: u16 = 1;
/// Header size in bytes: magic 8 | version u16 | id width u8 | flags u8 | reserved u32 (zero)
/// | token count u64, all little-endian.
pub const HEADER_LEN: u64 = 24;
/// Flag bit: a mask of one byte per token follows the ids.
pub const FLAG_MASK: u8 = 1;

/// How a token file stores its ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Flat uint16, no header, no mask.
    Raw,
    /// The 24-byte header; ids of `width` bytes (2 or 4), a mask when `mask`.
    Headed { width: u8, mask: bool },
}

/// One token file.
#[derive(Debug)]
pub struct TokenFile {
    file: File,
    pub path: PathBuf,
    /// Number of tokens.
    pub len: u64,
    pub format: Format,
    /// Byte offset of the first id.
    ids_at: u64,
    width: u64,
    /// Byte offset of the first mask byte, when there is a mask.
    mask_at: Option<u64>,
}

impl TokenFile {
    pub fn open(path: &Path) -> Result<TokenFile> {
        let file = File::open(path).with_context(|| format!("cannot open token file {}", path.display()))?;
        let bytes = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        let mut head = [0u8; HEADER_LEN as usize];
        let got = read_up_to(&file, &mut head).with_context(|| format!("reading {}", path.display()))?;
        let mut f = TokenFile {
            file,
            path: path.to_path_buf(),
            len: 0,
            format: Format::Raw,
            ids_at: 0,
            width: 2,
            mask_at: None,
        };
        if got >= MAGIC.len() && head[..MAGIC.len()] == MAGIC {
            f.read_header(&head[..got], bytes)?;
        } else {
            ensure!(
                bytes % 2 == 0,
                "token file {} has an odd size ({bytes} bytes): not uint16 tokens",
                path.display()
            );
            f.len = bytes / 2;
        }
        Ok(f)
    }

    /// Checks a headed file's header against its size and fills in the layout.
    fn read_header(&mut self, head: &[u8], bytes: u64) -> Result<()> {
        let p = self.path.display();
        ensure!(
            head.len() as u64 == HEADER_LEN,
            "token file {p}: bad header: {} bytes, the header alone is {HEADER_LEN}",
            head.len()
        );
        let version = u16::from_le_bytes([head[8], head[9]]);
        let (width, flags) = (head[10], head[11]);
        let reserved = u32::from_le_bytes(head[12..16].try_into().unwrap());
        let count = u64::from_le_bytes(head[16..24].try_into().unwrap());
        ensure!(
            version == VERSION,
            "token file {p}: bad header: version {version} (this malus reads version {VERSION})"
        );
        ensure!(
            width == 2 || width == 4,
            "token file {p}: bad header: id width {width} (must be 2 or 4 bytes)"
        );
        ensure!(
            flags & !FLAG_MASK == 0,
            "token file {p}: bad header: unknown flags {flags:#04x}"
        );
        ensure!(
            reserved == 0,
            "token file {p}: bad header: reserved bytes are {reserved:#x}, not zero"
        );
        let body = bytes - HEADER_LEN;
        let Some(id_bytes) = count.checked_mul(width as u64) else {
            bail!("token file {p}: bad header: a token count of {count} is impossible");
        };
        ensure!(
            body >= id_bytes,
            "token file {p}: truncated ids: the header says {count} tokens of {width} bytes \
             ({id_bytes} bytes) but {body} bytes follow it"
        );
        let rest = body - id_bytes;
        let mask = flags & FLAG_MASK != 0;
        if mask {
            ensure!(
                rest == count,
                "token file {p}: mask length: {rest} mask bytes follow the ids, the header says \
                 {count} tokens"
            );
        } else {
            ensure!(
                rest == 0,
                "token file {p}: {rest} bytes follow the ids, but the header flags no mask"
            );
        }
        self.len = count;
        self.format = Format::Headed { width, mask };
        self.ids_at = HEADER_LEN;
        self.width = width as u64;
        self.mask_at = mask.then_some(HEADER_LEN + id_bytes);
        Ok(())
    }

    /// Whether the file carries a loss mask.
    pub fn has_mask(&self) -> bool {
        self.mask_at.is_some()
    }

    fn check_range(&self, pos: u64, n: usize) -> Result<()> {
        ensure!(
            pos.checked_add(n as u64).is_some_and(|end| end <= self.len),
            "{}: window [{pos}, +{n}) is past the end ({} tokens)",
            self.path.display(),
            self.len
        );
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], at: u64) -> Result<()> {
        self.file
            .read_exact_at(buf, at)
            .with_context(|| format!("reading {}", self.path.display()))
    }

    /// `n` tokens from position `pos`, each checked to be below `vocab`.
    pub fn window(&self, pos: u64, n: usize, vocab: usize) -> Result<Vec<u32>> {
        self.check_range(pos, n)?;
        let mut buf = vec![0u8; n * self.width as usize];
        self.read_at(&mut buf, self.ids_at + pos * self.width)?;
        let ids: Vec<u32> = if self.width == 2 {
            buf.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
                .collect()
        } else {
            buf.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
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

    /// The mask bytes of tokens `[pos, pos + n)` (`None` for a file without a mask); each is
    /// checked to be 0 or 1.
    pub fn mask(&self, pos: u64, n: usize) -> Result<Option<Vec<bool>>> {
        let Some(at) = self.mask_at else {
            return Ok(None);
        };
        self.check_range(pos, n)?;
        let mut buf = vec![0u8; n];
        self.read_at(&mut buf, at + pos)?;
        if let Some(i) = buf.iter().position(|&b| b > 1) {
            bail!(
                "{}: mask byte {} at position {} is not 0 or 1",
                self.path.display(),
                buf[i],
                pos + i as u64
            );
        }
        Ok(Some(buf.into_iter().map(|b| b == 1).collect()))
    }
}

/// Reads from the start of `file` until `buf` is full or the file ends; the bytes read.
fn read_up_to(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Writes token ids as a raw uint16 file (temp file, fsync, rename: never a partial file).
/// Ids above 65535 are an error: [`write_token_file`] chooses a format that holds them.
pub fn write_tokens(path: &Path, ids: &[u32]) -> Result<()> {
    let mut bytes = Vec::with_capacity(ids.len() * 2);
    for &t in ids {
        ensure!(t <= u16::MAX as u32, "token id {t} does not fit in uint16");
        bytes.extend_from_slice(&(t as u16).to_le_bytes());
    }
    crate::fsutil::write_atomic(path, &bytes)
}

/// Writes token ids for a tokenizer of `vocab` tokens, with an optional loss mask (one entry
/// per id): a raw uint16 file when the vocabulary fits uint16 and there is no mask (so other
/// tools read it), else a headed file with ids of 2 or 4 bytes. Returns the format written.
pub fn write_token_file(path: &Path, ids: &[u32], mask: Option<&[bool]>, vocab: usize) -> Result<Format> {
    let width: u8 = if vocab > 1 << 16 { 4 } else { 2 };
    if width == 2 && mask.is_none() {
        write_tokens(path, ids)?;
        return Ok(Format::Raw);
    }
    if let Some(m) = mask {
        ensure!(
            m.len() == ids.len(),
            "a mask of {} entries for {} tokens",
            m.len(),
            ids.len()
        );
    }
    let mut bytes = Vec::with_capacity(HEADER_LEN as usize + ids.len() * (width as usize + 1));
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.push(width);
    bytes.push(if mask.is_some() { FLAG_MASK } else { 0 });
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    for &t in ids {
        ensure!(
            (t as usize) < vocab,
            "token id {t} is not below the vocabulary size {vocab}"
        );
        if width == 2 {
            bytes.extend_from_slice(&(t as u16).to_le_bytes());
        } else {
            bytes.extend_from_slice(&t.to_le_bytes());
        }
    }
    if let Some(m) = mask {
        bytes.extend(m.iter().map(|&b| b as u8));
    }
    crate::fsutil::write_atomic(path, &bytes)?;
    Ok(Format::Headed {
        width,
        mask: mask.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("malus-shards-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn raw_windows_and_bad_files() {
        let dir = dir("raw");
        let p = dir.join("t.bin");
        let ids: Vec<u32> = (0..1000).map(|i| i % 50).collect();
        write_tokens(&p, &ids).unwrap();
        let f = TokenFile::open(&p).unwrap();
        assert_eq!((f.len, f.format, f.has_mask()), (1000, Format::Raw, false));
        assert_eq!(f.window(10, 3, 50).unwrap(), vec![10, 11, 12]);
        assert_eq!(f.mask(10, 3).unwrap(), None);
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
        std::fs::write(dir.join("odd.bin"), [1u8, 2, 3]).unwrap();
        assert!(
            TokenFile::open(&dir.join("odd.bin"))
                .unwrap_err()
                .to_string()
                .contains("odd size")
        );
        assert!(
            TokenFile::open(&dir.join("missing.bin"))
                .unwrap_err()
                .to_string()
                .contains("missing.bin")
        );
        // Shorter than the magic, and starting like it but raw: still raw uint16.
        std::fs::write(dir.join("ff.bin"), [0xff, 0xff, 0xff, 0xff, 1, 0]).unwrap();
        let f = TokenFile::open(&dir.join("ff.bin")).unwrap();
        assert_eq!((f.len, f.format), (3, Format::Raw));
        assert_eq!(f.window(0, 3, 65536).unwrap(), vec![65535, 65535, 1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn headed_layout_is_exact() {
        let dir = dir("layout");
        let p = dir.join("h.bin");
        let f = write_token_file(&p, &[1, 70000], Some(&[false, true]), 100_000).unwrap();
        assert_eq!(f, Format::Headed { width: 4, mask: true });
        let mut want = MAGIC.to_vec();
        want.extend([1, 0, 4, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        want.extend([1, 0, 0, 0, 0x70, 0x11, 0x01, 0x00, 0, 1]);
        assert_eq!(std::fs::read(&p).unwrap(), want);
        let t = TokenFile::open(&p).unwrap();
        assert_eq!(t.window(0, 2, 100_000).unwrap(), vec![1, 70000]);
        assert_eq!(t.mask(0, 2).unwrap(), Some(vec![false, true]));
        assert!(t.window(0, 2, 65536).is_err());
        // Small vocabulary with a mask: uint16 ids.
        let f = write_token_file(&p, &[3, 4, 5], Some(&[true; 3]), 10).unwrap();
        assert_eq!(f, Format::Headed { width: 2, mask: true });
        assert_eq!(std::fs::read(&p).unwrap().len(), 24 + 3 * 2 + 3);
        // Small vocabulary, no mask: raw.
        assert_eq!(write_token_file(&p, &[3, 4], None, 10).unwrap(), Format::Raw);
        assert_eq!(std::fs::read(&p).unwrap(), vec![3, 0, 4, 0]);
        assert!(write_token_file(&p, &[3, 10], Some(&[true; 2]), 10).is_err());
        assert!(write_token_file(&p, &[3], Some(&[true; 2]), 10).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
