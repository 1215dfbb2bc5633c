//! Reading a Hugging Face directory's safetensors weights one tensor at a time, from the files'
//! headers and byte ranges: nothing is memory-mapped and no shard is read whole, so loading a
//! model costs one tensor beyond what the caller keeps — a frozen LoRA base is staged tensor
//! by tensor without an f32 copy of the model ever existing.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use half::{bf16, f16};
use safetensors::Dtype;
use serde_json::Value;

use super::hf::rope_rows_from_hf;
use super::{Config, Params, Stored};

/// The weight files: those of `model.safetensors.index.json` when present, else every
/// `model*.safetensors` (not e.g. Mistral's `consolidated.safetensors`, a second copy).
pub(crate) fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    let names: BTreeSet<String> = if index.is_file() {
        let text = std::fs::read_to_string(&index).with_context(|| format!("reading {}", index.display()))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| anyhow!("{}: not JSON ({e})", index.display()))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| anyhow!("{}: no weight_map object", index.display()))?;
        map.values()
            .map(|f| {
                // A plain name in the model directory: never a path elsewhere.
                f.as_str()
                    .filter(|n| Path::new(n).file_name().is_some_and(|b| b == *n))
                    .map(str::to_string)
                    .ok_or_else(|| {
                        anyhow!(
                            "{}: weight_map value {f} is not a file name in the directory",
                            index.display()
                        )
                    })
            })
            .collect::<Result<_>>()?
    } else {
        std::fs::read_dir(dir)
            .with_context(|| format!("reading directory {}", dir.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("model") && n.ends_with(".safetensors"))
            .collect()
    };
    ensure!(
        !names.is_empty(),
        "{}: no model*.safetensors weight file",
        dir.display()
    );
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Where one tensor's bytes are.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub file: PathBuf,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte offset in the file, and length.
    pub at: u64,
    pub len: u64,
}

impl Entry {
    /// Values `start..start + n` (of tensor `name`) widened to f32, in the file's order.
    fn read(&self, name: &str, start: usize, n: usize) -> Result<Vec<f32>> {
        let size = self.dtype.bitsize() / 8;
        let mut f =
            std::fs::File::open(&self.file).with_context(|| format!("reading {}", self.file.display()))?;
        f.seek(SeekFrom::Start(self.at + (start * size) as u64))?;
        let mut bytes = vec![0u8; n * size];
        f.read_exact(&mut bytes)
            .with_context(|| format!("{}: reading tensor {name}", self.file.display()))?;
        widen(self.dtype, &bytes, name, &self.file)
    }
}

/// The JSON header of a safetensors file, read without reading its tensors.
pub(crate) fn read_header(file: &Path) -> Result<(Value, u64)> {
    let bad = |what: &str| anyhow!("{}: not a safetensors file ({what})", file.display());
    let mut f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let size = f.metadata()?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("shorter than its header"))?;
    let n = u64::from_le_bytes(len);
    ensure!(
        n <= size.saturating_sub(8) && n <= 100 << 20,
        bad("header length past the file or over 100 MB")
    );
    let mut text = vec![0u8; n as usize];
    f.read_exact(&mut text).map_err(|_| bad("truncated header"))?;
    let v = serde_json::from_slice(&text).map_err(|e| bad(&format!("header is not JSON: {e}")))?;
    Ok((v, 8 + n))
}

/// Every tensor a safetensors file declares, with its byte range checked against the file.
pub(crate) fn entries(file: &Path) -> Result<Vec<(String, Entry)>> {
    #[derive(serde::Deserialize)]
    struct Raw {
        dtype: Dtype,
        shape: Vec<usize>,
        data_offsets: (u64, u64),
    }
    let bad = |what: String| anyhow!("{}: not a safetensors file ({what})", file.display());
    let (header, data_at) = read_header(file)?;
    let size = std::fs::metadata(file)?.len();
    let obj = header
        .as_object()
        .ok_or_else(|| bad("header is not an object".into()))?;
    let mut out = Vec::with_capacity(obj.len());
    for (name, t) in obj.iter().filter(|(k, _)| *k != "__metadata__") {
        let raw: Raw = serde_json::from_value(t.clone()).map_err(|e| bad(format!("tensor {name}: {e}")))?;
        let (b, e) = raw.data_offsets;
        let want = raw
            .shape
            .iter()
            .try_fold(raw.dtype.bitsize() as u64, |n, &d| n.checked_mul(d as u64))
            .map(|bits| bits.div_ceil(8));
        ensure!(
            b <= e && data_at.checked_add(e).is_some_and(|end| end <= size),
            bad(format!("tensor {name}: bytes {b}..{e} lie past the file"))
        );
        ensure!(
            want == Some(e - b),
            bad(format!(
                "tensor {name}: {} bytes for shape {:?} of {:?}",
                e - b,
                raw.shape,
                raw.dtype
            ))
        );
        out.push((
            name.clone(),
            Entry {
                file: file.to_path_buf(),
                dtype: raw.dtype,
                shape: raw.shape,
                at: data_at + b,
                len: e - b,
            },
        ));
    }
    // Sorted, so the first error reported does not depend on hash order.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Little-endian bytes of `dtype` widened to f32, every value checked finite.
pub(crate) fn widen(dtype: Dtype, b: &[u8], name: &str, file: &Path) -> Result<Vec<f32>> {
    let two = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
    let data: Vec<f32> = match dtype {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| f16::from_bits(two(c)).to_f32())
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| bf16::from_bits(two(c)).to_f32())
            .collect(),
        other => bail!(
            "{}: tensor {name} has dtype {other:?}; supported are F32, F16 and BF16",
            file.display()
        ),
    };
    ensure!(
        data.iter().all(|v| v.is_finite()),
        "{}: tensor {name} holds NaN or infinite values",
        file.display()
    );
    Ok(data)
}

/// A model directory's weights, indexed by the parameters of a config and checked against it
/// (every tensor present once, with its shape and a supported dtype, nothing unaccounted
/// for) before any is read.
pub struct WeightReader {
    layout: Params,
    /// Per tensor of `layout`, where it is stored.
    entries: Vec<Entry>,
    c: Config,
}

impl WeightReader {
    pub fn open(dir: &Path, c: &Config) -> Result<WeightReader> {
        let layout = Params::layout(c);
        let index: HashMap<&str, usize> = layout
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        let mut found: Vec<Option<Entry>> = vec![None; layout.tensors.len()];
        let (mut unknown, mut tied_head) = (Vec::new(), None);
        for file in weight_files(dir)? {
            for (name, e) in entries(&file)? {
                // Old checkpoints store RoPE's frequency table, which malus recomputes.
                if name.ends_with("rotary_emb.inv_freq") {
                    continue;
                }
                let Some(&i) = index.get(name.as_str()) else {
                    if c.tied && name == "lm_head.weight" {
                        tied_head = Some(e);
                    } else {
                        unknown.push(name);
                    }
                    continue;
                };
                if let Some(first) = &found[i] {
                    bail!(
                        "tensor {name} is stored twice: in {} and {}",
                        first.file.display(),
                        file.display()
                    );
                }
                let want = &layout.tensors[i].shape;
                ensure!(
                    e.shape == *want,
                    "{}: tensor {name} has shape {:?}, but config.json implies {want:?}",
                    file.display(),
                    e.shape
                );
                ensure!(
                    matches!(e.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16),
                    "{}: tensor {name} has dtype {:?}; supported are F32, F16 and BF16",
                    file.display(),
                    e.dtype
                );
                found[i] = Some(e);
            }
        }
        let missing: Vec<String> = layout
            .tensors
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(t, _)| t.name.clone())
            .collect();
        ensure!(
            missing.is_empty(),
            "{}: missing tensor(s) {}",
            dir.display(),
            shown(&missing)
        );
        unknown.sort();
        ensure!(
            unknown.is_empty(),
            "{}: tensor(s) malus has no parameter for: {} (not a plain {} model?)",
            dir.display(),
            shown(&unknown),
            if c.qk_norm { "Qwen3" } else { "Llama/Mistral" }
        );
        let reader = WeightReader {
            entries: found.into_iter().map(|e| e.expect("none missing")).collect(),
            layout,
            c: c.clone(),
        };
        if let Some(head) = tied_head {
            reader.check_tied_head(&head)?;
        }
        Ok(reader)
    }

    /// The parameters' names, shapes and indices (no data).
    pub fn layout(&self) -> &Params {
        &self.layout
    }

    /// Bytes of every parameter as stored.
    pub fn stored_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.len).sum()
    }

    /// Values `start..start + n` of tensor `i` widened to f32, in the file's order (no RoPE
    /// reordering: for tensors that need none, such as a classifier read in pieces).
    pub fn read_part(&self, i: usize, start: usize, n: usize) -> Result<Vec<f32>> {
        self.entries[i].read(&self.layout.tensors[i].name, start, n)
    }

    /// Tensor `i` in f32, in malus's layout (q/k rows, and their norm weights, moved from
    /// Hugging Face's RoPE pairing to malus's: [`rope_rows_from_hf`]).
    pub fn read(&self, i: usize) -> Result<Vec<f32>> {
        let t = &self.layout.tensors[i];
        let data = self.read_part(i, 0, t.numel())?;
        let c = &self.c;
        let moved = self.layout.layers.iter().find_map(|l| {
            let rows = [(l.wq, c.heads, c.dim), (l.wk, c.kv_heads, c.dim)];
            let norms = [l.q_norm, l.k_norm].into_iter().flatten().map(|n| (n, 1, 1));
            rows.into_iter().chain(norms).find(|(n, ..)| *n == i)
        });
        Ok(match moved {
            Some((_, heads, cols)) => rope_rows_from_hf(&data, heads, c.head_dim, cols),
            None => data,
        })
    }

    /// The embedding table at its storage precision (2 bytes per value for a bf16/fp16 model).
    pub fn embedding(&self) -> Result<Stored> {
        let i = self.layout.embed;
        let e = &self.entries[i];
        let data = self.read_part(i, 0, self.layout.tensors[i].numel())?;
        // Narrowing back what was widened is exact, and keeps one reader of the file format.
        Ok(match e.dtype {
            Dtype::F16 => Stored::F16(data.iter().map(|v| f16::from_f32(*v)).collect()),
            Dtype::BF16 => Stored::Bf16(data.iter().map(|v| bf16::from_f32(*v)).collect()),
            _ => Stored::F32(data),
        })
    }

    /// A tied model may also store its head: it must equal the embedding, which is what malus
    /// trains (compared a block of rows at a time).
    fn check_tied_head(&self, head: &Entry) -> Result<()> {
        let shape = &self.layout.tensors[self.layout.embed].shape;
        let differs = || {
            anyhow!(
                "{}: tie_word_embeddings is true but lm_head.weight differs from model.embed_tokens.weight",
                head.file.display()
            )
        };
        ensure!(head.shape == *shape, differs());
        let (total, step) = (shape.iter().product::<usize>(), 1 << 20);
        for start in (0..total).step_by(step) {
            let n = step.min(total - start);
            let a = self.read_part(self.layout.embed, start, n)?;
            ensure!(a == head.read("lm_head.weight", start, n)?, differs());
        }
        Ok(())
    }
}

/// Up to five names, and how many more.
fn shown(names: &[String]) -> String {
    let more = names.len().saturating_sub(5);
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if more > 0 {
        s += &format!(" and {more} more");
    }
    s
}

/// Reads every parameter of `c` from the directory's weight files, one tensor at a time.
pub fn load_params(dir: &Path, c: &Config) -> Result<Params> {
    let r = WeightReader::open(dir, c)?;
    let mut p = r.layout().clone();
    for i in 0..p.tensors.len() {
        p.tensors[i].data = r.read(i)?;
    }
    Ok(p)
}
