//! Core ML weight blob files ("Blob Storage File Format, iOS15 onwards", see docs/mil-dialect.md §6).
//!
//! ```text
//! 0      storage header, 64 bytes: u32 count, u32 version = 2, zeros
//! H_k    blob metadata, 64 bytes: u32 0xDEADBEEF, u32 dtype, u64 size, u64 data offset, zeros
//! H_k+64 data, then zero padding to the next multiple of 64
//! ```
//! A `BLOBFILE(offset = H_k)` points at the metadata record, not at the data.

use std::collections::BTreeMap;
use std::path::Path;

use half::f16;

use crate::error::BlobError;
use crate::types::{DType, Type};
use crate::value::{Lit, Literal};

const HEADER: usize = 64;
const META: usize = 64;
const ALIGN: usize = 64;
const SENTINEL: u32 = 0xDEAD_BEEF;
const VERSION: u32 = 2;
/// Path prefix of weight files inside a compiled model.
pub const MODEL_PATH_PREFIX: &str = "@model_path/weights/";

/// Element types a blob can hold, with Core ML's dtype codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobDType {
    Fp16 = 1,
    Fp32 = 2,
    Uint8 = 3,
    Int8 = 4,
}

impl BlobDType {
    pub fn from_code(c: u32) -> Option<BlobDType> {
        Some(match c {
            1 => BlobDType::Fp16,
            2 => BlobDType::Fp32,
            3 => BlobDType::Uint8,
            4 => BlobDType::Int8,
            _ => return None,
        })
    }

    pub fn from_dtype(d: DType) -> Option<BlobDType> {
        Some(match d {
            DType::Fp16 => BlobDType::Fp16,
            DType::Fp32 => BlobDType::Fp32,
            DType::Uint8 => BlobDType::Uint8,
            DType::Int8 => BlobDType::Int8,
            _ => return None,
        })
    }

    pub fn dtype(self) -> DType {
        match self {
            BlobDType::Fp16 => DType::Fp16,
            BlobDType::Fp32 => DType::Fp32,
            BlobDType::Uint8 => DType::Uint8,
            BlobDType::Int8 => DType::Int8,
        }
    }
}

/// One blob read from a file: its dtype and raw little-endian bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlobRef<'a> {
    pub dtype: BlobDType,
    pub data: &'a [u8],
}

impl BlobRef<'_> {
    /// The values widened to f32 (integers as their numeric value).
    pub fn to_f32(&self) -> Vec<f32> {
        match self.dtype {
            BlobDType::Fp16 => self
                .data
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            BlobDType::Fp32 => self
                .data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            BlobDType::Uint8 => self.data.iter().map(|&b| b as f32).collect(),
            BlobDType::Int8 => self.data.iter().map(|&b| b as i8 as f32).collect(),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A set of weight files keyed by their MIL path (`@model_path/weights/NAME.bin`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weights {
    files: BTreeMap<String, Vec<u8>>,
}

impl Weights {
    pub fn new() -> Weights {
        Weights::default()
    }

    /// The MIL path of a weight file name: `w.bin` → `@model_path/weights/w.bin`.
    pub fn key(file_name: &str) -> String {
        format!("{MODEL_PATH_PREFIX}{file_name}")
    }

    /// Appends a blob to the file `key` (created with a storage header if new) and returns the
    /// offset of its metadata record, which is what `BLOBFILE(offset = …)` must name.
    pub fn add_raw(&mut self, key: &str, dtype: BlobDType, data: &[u8]) -> u64 {
        let file = self.files.entry(key.to_string()).or_insert_with(|| {
            let mut h = vec![0u8; HEADER];
            h[4..8].copy_from_slice(&VERSION.to_le_bytes());
            h
        });
        // A file added with `insert_file` may be anything: give it a header and 64-byte alignment
        // rather than panicking (reading its earlier blobs reports what is wrong with them).
        if file.len() < HEADER {
            file.resize(HEADER, 0);
        }
        let padded = file.len().div_ceil(ALIGN) * ALIGN;
        file.resize(padded, 0);
        let count = u32_at(file, 0).saturating_add(1);
        file[0..4].copy_from_slice(&count.to_le_bytes());
        let meta_at = file.len();
        let data_at = meta_at + META;
        let mut meta = [0u8; META];
        meta[0..4].copy_from_slice(&SENTINEL.to_le_bytes());
        meta[4..8].copy_from_slice(&(dtype as u32).to_le_bytes());
        meta[8..16].copy_from_slice(&(data.len() as u64).to_le_bytes());
        meta[16..24].copy_from_slice(&(data_at as u64).to_le_bytes());
        file.extend_from_slice(&meta);
        file.extend_from_slice(data);
        let padded = file.len().div_ceil(ALIGN) * ALIGN;
        file.resize(padded, 0);
        meta_at as u64
    }

    /// Adds f32 values stored as fp16 (round to nearest even).
    pub fn add_f16(&mut self, key: &str, values: &[f32]) -> u64 {
        let bytes: Vec<u8> = values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        self.add_raw(key, BlobDType::Fp16, &bytes)
    }

    pub fn add_f32(&mut self, key: &str, values: &[f32]) -> u64 {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_raw(key, BlobDType::Fp32, &bytes)
    }

    pub fn add_i8(&mut self, key: &str, values: &[i8]) -> u64 {
        let bytes: Vec<u8> = values.iter().map(|&v| v as u8).collect();
        self.add_raw(key, BlobDType::Int8, &bytes)
    }

    pub fn add_u8(&mut self, key: &str, values: &[u8]) -> u64 {
        self.add_raw(key, BlobDType::Uint8, values)
    }

    /// Adds a whole file as read from disk (checked when blobs are read).
    pub fn insert_file(&mut self, key: &str, bytes: Vec<u8>) {
        self.files.insert(key.to_string(), bytes);
    }

    /// The files: `(key, bytes)` in key order.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Reads the blob whose metadata record is at `offset` in file `key`, with every bound checked.
    pub fn read(&self, key: &str, offset: u64) -> Result<BlobRef<'_>, BlobError> {
        let file = self.files.get(key).ok_or_else(|| BlobError::Corrupt {
            file: key.to_string(),
            msg: "no such weight file".into(),
        })?;
        read_blob(file, offset).map_err(|msg| BlobError::Corrupt {
            file: key.to_string(),
            msg: format!("blob at offset {offset}: {msg}"),
        })
    }

    /// Reads the data of a `BLOBFILE` literal, checking dtype and size against its type.
    pub fn resolve(&self, lit: &Literal) -> Result<BlobRef<'_>, BlobError> {
        let (Lit::Blob { path, offset }, Type::Tensor { dtype, .. }) = (&lit.lit, &lit.ty) else {
            return Err(BlobError::Corrupt {
                file: String::new(),
                msg: "literal is not a BLOBFILE tensor".into(),
            });
        };
        let blob = self.read(path, *offset)?;
        let corrupt = |msg: String| BlobError::Corrupt {
            file: path.clone(),
            msg: format!("blob at offset {offset}: {msg}"),
        };
        if blob.dtype.dtype() != *dtype {
            return Err(corrupt(format!(
                "holds {:?} but the program declares {dtype}",
                blob.dtype
            )));
        }
        let want = lit
            .ty
            .num_elements()
            .and_then(|n| n.checked_mul(dtype.size_bytes()));
        if want != Some(blob.data.len()) {
            return Err(corrupt(format!(
                "holds {} bytes, the declared type {} needs {}",
                blob.data.len(),
                crate::printer::type_str(&lit.ty, crate::printer::Spelling::Rank0Tensors),
                match (want, lit.ty.known_shape()) {
                    (Some(w), _) => w.to_string(),
                    (None, None) => "a fully known shape".to_string(),
                    (None, Some(_)) => "more than fit in memory".to_string(),
                }
            )));
        }
        Ok(blob)
    }

    /// Loads every `*.bin` file of a directory as `@model_path/weights/<name>`.
    pub fn load_dir(dir: &Path) -> Result<Weights, BlobError> {
        let io = |source| BlobError::Io {
            file: dir.display().to_string(),
            source,
        };
        let mut w = Weights::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "bin") {
                let bytes = std::fs::read(&path).map_err(|source| BlobError::Io {
                    file: path.display().to_string(),
                    source,
                })?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                w.insert_file(&Weights::key(&name), bytes);
            }
        }
        Ok(w)
    }

    /// Writes every file into `dir` under its name (the key minus `@model_path/weights/`).
    pub fn save_dir(&self, dir: &Path) -> Result<(), BlobError> {
        for (key, bytes) in &self.files {
            let name = key.strip_prefix(MODEL_PATH_PREFIX).unwrap_or(key);
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| BlobError::Io {
                    file: parent.display().to_string(),
                    source,
                })?;
            }
            std::fs::write(&path, bytes).map_err(|source| BlobError::Io {
                file: path.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Reads one blob from the bytes of a blob file.
pub fn read_blob(file: &[u8], offset: u64) -> Result<BlobRef<'_>, String> {
    if file.len() < HEADER {
        return Err(format!(
            "file is {} bytes, shorter than the 64-byte storage header",
            file.len()
        ));
    }
    let at = usize::try_from(offset).map_err(|_| "offset does not fit in memory".to_string())?;
    if at < HEADER {
        return Err("offset points into the storage header".into());
    }
    let end = at.checked_add(META).filter(|&e| e <= file.len());
    if end.is_none() {
        return Err(format!(
            "metadata record runs past the end of the file ({} bytes)",
            file.len()
        ));
    }
    let sentinel = u32_at(file, at);
    if sentinel != SENTINEL {
        return Err(format!(
            "expected the 0xDEADBEEF sentinel, found {sentinel:#010x}"
        ));
    }
    let code = u32_at(file, at + 4);
    let dtype = BlobDType::from_code(code).ok_or_else(|| format!("unknown dtype code {code}"))?;
    let size = u64_at(file, at + 8);
    let data_at = u64_at(file, at + 16);
    let range = usize::try_from(data_at)
        .ok()
        .zip(usize::try_from(size).ok())
        .and_then(|(s, n)| s.checked_add(n).map(|e| s..e))
        .filter(|r| r.end <= file.len() && r.start >= at + META);
    let Some(range) = range else {
        return Err(format!(
            "data [{data_at}, +{size}) lies outside the file ({} bytes) or overlaps its metadata",
            file.len()
        ));
    };
    let elem = match dtype {
        BlobDType::Fp16 => 2,
        BlobDType::Fp32 => 4,
        _ => 1,
    };
    if size as usize % elem != 0 {
        return Err(format!("size {size} is not a whole number of {dtype:?} elements"));
    }
    Ok(BlobRef {
        dtype,
        data: &file[range],
    })
}
