//! Checkpoints: the trained tensors (a model's parameters, or a LoRA run's adapters only — the
//! frozen base is identified by a fingerprint, not copied) and their optimizer moments in one
//! safetensors file, with the rest of the
//! training state (config, step, RNG, loss scaler, data position, tokenizer fingerprint) as JSON
//! in its metadata, and a CRC-32 of every tensor's bytes (metadata key `malus.crc32`) so bit
//! rot or a bad copy is caught on load, naming the tensor. Written atomically; the newest
//! `keep` are kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use safetensors::tensor::{Dtype, TensorView};

use crate::model::{Adapters, Config, Lora, Params, Tensor};
use crate::train::optim::{AdamWConfig, LossScaler, Optimizer};

/// Format version written into every checkpoint.
pub const FORMAT: u32 = 1;

/// The metadata key of the per-tensor checksums: a JSON object, tensor name → CRC-32 (hex).
/// Checkpoints of malus before checksums have none; they load with a notice.
pub const CHECKSUMS: &str = "malus.crc32";

fn crc32(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

/// The JSON part of a checkpoint.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    pub format: u32,
    pub config: Config,
    /// Optimizer updates done.
    pub step: u64,
    /// Sampling RNG state after `step` updates.
    pub rng: u64,
    pub scaler: LossScaler,
    pub tokenizer_hash: String,
    pub tokens_seen: u64,
    pub elapsed_s: f64,
    pub optimizer: OptimizerMeta,
    /// The training settings, kept for reference and for `--resume` checks.
    pub settings: serde_json::Value,
    /// A LoRA run's adapters and the fingerprint of the base they adapt (absent in full runs
    /// and in checkpoints from before LoRA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraMeta>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraMeta {
    pub lora: Lora,
    /// [`fingerprint`] of the base model's parameters.
    pub base: String,
}

/// A content fingerprint of a set of tensors (CRC-32 of names, shapes and values): what a
/// LoRA checkpoint records of its frozen base, so resuming on another base is refused.
pub fn fingerprint(tensors: &[Tensor]) -> String {
    let mut h = Fingerprint::default();
    for t in tensors {
        h.tensor(&t.name, &t.shape);
        h.values(&t.data);
    }
    h.finish()
}

/// [`fingerprint`] fed a tensor at a time, its values in pieces, so a model streamed from disk
/// is fingerprinted without being held whole.
#[derive(Default)]
pub struct Fingerprint(crc32fast::Hasher);

impl Fingerprint {
    /// Starts the next tensor.
    pub fn tensor(&mut self, name: &str, shape: &[usize]) {
        self.0.update(name.as_bytes());
        for d in shape {
            self.0.update(&(*d as u64).to_le_bytes());
        }
    }

    /// The current tensor's next values.
    pub fn values(&mut self, v: &[f32]) {
        self.0.update(bytes_of(v));
    }

    pub fn finish(self) -> String {
        format!("{:08x}", self.0.finalize())
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OptimizerMeta {
    AdamW { cfg: AdamWConfig, step: u64 },
    Sgd { momentum: f32, weight_decay: f32 },
}

impl OptimizerMeta {
    /// The hyper-parameters and counters of an optimizer (its moments go in tensors).
    pub fn of(opt: &Optimizer) -> OptimizerMeta {
        match opt {
            Optimizer::AdamW { cfg, step, .. } => OptimizerMeta::AdamW {
                cfg: cfg.clone(),
                step: *step,
            },
            Optimizer::Sgd {
                momentum,
                weight_decay,
                ..
            } => OptimizerMeta::Sgd {
                momentum: *momentum,
                weight_decay: *weight_decay,
            },
        }
    }
}

/// Everything needed to continue training exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub meta: Meta,
    pub weights: Weights,
    pub opt: Optimizer,
}

/// What a run trains.
#[derive(Clone, Debug, PartialEq)]
pub enum Weights {
    Model(Params),
    Adapters(Adapters),
}

impl Weights {
    pub fn tensors(&self) -> &[Tensor] {
        match self {
            Weights::Model(p) => &p.tensors,
            Weights::Adapters(a) => &a.tensors,
        }
    }
}

/// The file prefix of the trained tensors (their moments have the optimizer's).
fn prefix(meta: &Meta) -> &'static str {
    if meta.lora.is_some() { "lora" } else { "param" }
}

fn bytes_of(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

/// Named tensor views and the file's string metadata, as safetensors takes them.
type Contents<'a> = (Vec<(String, TensorView<'a>)>, HashMap<String, String>);

/// The tensors and JSON metadata of a training state, borrowed (nothing is copied).
fn contents<'a>(meta: &Meta, trained: &'a [Tensor], opt: &'a Optimizer) -> Result<Contents<'a>> {
    fn view<'a>(shape: &[usize], data: &'a [f32]) -> Result<TensorView<'a>> {
        TensorView::new(Dtype::F32, shape.to_vec(), bytes_of(data)).map_err(|e| anyhow!("{e}"))
    }
    let mut tensors: Vec<(String, TensorView)> = Vec::new();
    let own = prefix(meta);
    for t in trained {
        tensors.push((format!("{own}.{}", t.name), view(&t.shape, &t.data)?));
    }
    for (prefix, state) in opt.moments() {
        for (t, s) in trained.iter().zip(state.iter()) {
            tensors.push((format!("{prefix}.{}", t.name), view(&t.shape, s)?));
        }
    }
    let mut meta = meta.clone();
    meta.optimizer = OptimizerMeta::of(opt);
    let sums: std::collections::BTreeMap<&str, String> = tensors
        .iter()
        .map(|(n, v)| (n.as_str(), crc32(v.data())))
        .collect();
    let info = HashMap::from([
        ("malus".to_string(), serde_json::to_string(&meta)?),
        (CHECKSUMS.to_string(), serde_json::to_string(&sums)?),
    ]);
    Ok((tensors, info))
}

/// Writes a training state atomically, streaming the tensors to disk (no copy of the weights
/// or moments is made, so saving costs no memory): a failure — full disk, interruption — never
/// replaces a good file.
pub fn save(path: &Path, meta: &Meta, trained: &[Tensor], opt: &Optimizer) -> Result<()> {
    let (tensors, info) = contents(meta, trained, opt)?;
    crate::fsutil::write_atomic_with(path, |tmp| {
        safetensors::serialize_to_file(tensors, Some(info), tmp).map_err(|e| anyhow!("{e}"))?;
        sort_header_of_file(tmp)?;
        // safetensors writes through a private temp file (mode 0600); checkpoints are ordinary
        // files the user may share.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o644))?;
        }
        Ok(())
    })
}

/// The length of a safetensors header (the 8 bytes before it say it).
fn header_len(bytes: &[u8]) -> Result<usize> {
    let n = bytes.first_chunk::<8>().map(|b| u64::from_le_bytes(*b));
    n.and_then(|n| usize::try_from(n).ok())
        .filter(|n| bytes.len() - 8 >= *n)
        .ok_or_else(|| anyhow!("safetensors wrote a header it cannot hold"))
}

/// Rewrites a safetensors header (JSON, space-padded) with its keys sorted. safetensors writes
/// the `__metadata__` map from a `HashMap`, in an order that changes from run to run; sorted,
/// the same state always gives the same bytes (files can be compared and hashed). The sorted
/// JSON has the same length: only the order of the keys changes.
fn sort_header(header: &mut [u8]) -> Result<()> {
    let v: serde_json::Value = serde_json::from_slice(header)?;
    let sorted = serde_json::to_vec(&v)?; // serde_json's maps are ordered by key
    ensure!(
        sorted.len() <= header.len(),
        "sorting the checkpoint header grew it"
    );
    header[..sorted.len()].copy_from_slice(&sorted);
    header[sorted.len()..].fill(b' ');
    Ok(())
}

/// [`sort_header`] in a file safetensors has written.
fn sort_header_of_file(path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)?;
    let n = usize::try_from(u64::from_le_bytes(len))?;
    let mut header = vec![0u8; n];
    f.read_exact(&mut header)?;
    sort_header(&mut header)?;
    f.seek(SeekFrom::Start(8))?;
    f.write_all(&header)?;
    Ok(())
}

impl Checkpoint {
    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let (tensors, info) = contents(&self.meta, self.weights.tensors(), &self.opt)?;
        let mut bytes = safetensors::serialize(tensors, Some(info))
            .map_err(|e| anyhow!("serialising checkpoint: {e}"))?;
        let n = header_len(&bytes)?;
        sort_header(&mut bytes[8..8 + n])?;
        Ok(bytes)
    }

    /// Parses safetensors bytes; `name` is used in error messages.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Checkpoint> {
        let (_, md) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| anyhow!("{name}: not a safetensors file ({e})"))?;
        let json = md
            .metadata()
            .as_ref()
            .and_then(|m| m.get("malus"))
            .ok_or_else(|| anyhow!("{name}: not a malus checkpoint (no `malus` metadata)"))?;
        let sums: Option<HashMap<String, String>> = match md
            .metadata()
            .as_ref()
            .and_then(|m| m.get(CHECKSUMS))
        {
            Some(s) => Some(serde_json::from_str(s).with_context(|| format!("{name}: bad checksum table"))?),
            None => {
                eprintln!(
                    "note: {name} has no checksums (written by an older malus): its tensors are not verified"
                );
                None
            }
        };
        let meta: Meta =
            serde_json::from_str(json).with_context(|| format!("{name}: bad checkpoint metadata"))?;
        ensure!(
            meta.format == FORMAT,
            "{name}: checkpoint format {} (this malus reads {FORMAT})",
            meta.format
        );
        meta.config
            .validate()
            .with_context(|| format!("{name}: bad model config"))?;
        // Refuse a config the file cannot hold before allocating for it.
        let moments = match meta.optimizer {
            OptimizerMeta::AdamW { .. } => 2,
            OptimizerMeta::Sgd { .. } => 1,
        };
        let trained = match &meta.lora {
            None => meta.config.checked_num_params(),
            Some(l) => {
                l.lora
                    .validate(&meta.config)
                    .with_context(|| format!("{name}: bad LoRA settings"))?;
                l.lora.num_params(&meta.config)
            }
        };
        let needed = trained.and_then(|n| n.checked_mul(4 * (1 + moments)));
        ensure!(
            needed.is_some_and(|n| n <= bytes.len()),
            "{name}: its config needs {} bytes of tensors but the file has {}",
            needed.map_or("more than 2^64".into(), |n| n.to_string()),
            bytes.len()
        );
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| anyhow!("{name}: corrupt tensors ({e})"))?;
        let mut weights = match &meta.lora {
            None => Weights::Model(Params::zeros(&meta.config)),
            Some(l) => Weights::Adapters(Adapters::zeros(&meta.config, &l.lora)),
        };
        let tensors = match &mut weights {
            Weights::Model(p) => &mut p.tensors,
            Weights::Adapters(a) => &mut a.tensors,
        };
        let read = |key: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let t = st
                .tensor(key)
                .map_err(|_| anyhow!("{name}: missing tensor {key}"))?;
            ensure!(
                t.dtype() == Dtype::F32,
                "{name}: tensor {key} is {:?}, expected F32",
                t.dtype()
            );
            ensure!(
                t.shape() == shape,
                "{name}: tensor {key} has shape {:?}, the config needs {shape:?}",
                t.shape()
            );
            if let Some(sums) = &sums {
                let want = sums
                    .get(key)
                    .ok_or_else(|| anyhow!("{name}: tensor {key} has no checksum"))?;
                let got = crc32(t.data());
                ensure!(
                    got == *want,
                    "{name}: tensor {key} is corrupt (CRC-32 {got}, the file recorded {want})"
                );
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let own = prefix(&meta);
        for t in tensors.iter_mut() {
            t.data = read(&format!("{own}.{}", t.name), &t.shape)?;
        }
        let state = |prefix: &str| -> Result<Vec<Vec<f32>>> {
            tensors
                .iter()
                .map(|t| read(&format!("{prefix}.{}", t.name), &t.shape))
                .collect()
        };
        let opt = match &meta.optimizer {
            OptimizerMeta::AdamW { cfg, step } => Optimizer::AdamW {
                cfg: cfg.clone(),
                step: *step,
                m: state("adam_m")?,
                v: state("adam_v")?,
            },
            OptimizerMeta::Sgd {
                momentum,
                weight_decay,
            } => Optimizer::Sgd {
                momentum: *momentum,
                weight_decay: *weight_decay,
                buf: state("sgd_buf")?,
            },
        };
        if let Some(t) = tensors.iter().find(|t| t.data.iter().any(|v| !v.is_finite())) {
            bail!("{name}: parameter {} contains inf or NaN", t.name);
        }
        Ok(Checkpoint { meta, weights, opt })
    }

    /// The model of a full run's checkpoint; a LoRA checkpoint holds only adapters.
    pub fn params(&self) -> Result<&Params> {
        match &self.weights {
            Weights::Model(p) => Ok(p),
            Weights::Adapters(_) => bail!(
                "this checkpoint holds LoRA adapters, not a model: give its base with --init (or merge it with `malus fuse`)"
            ),
        }
    }

    /// Writes atomically (see [`save`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        save(path, &self.meta, self.weights.tensors(), &self.opt)
    }

    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        Checkpoint::from_bytes(&bytes, &path.display().to_string())
    }
}

/// File name of the checkpoint after `step` updates.
pub fn file_name(step: u64) -> String {
    format!("ckpt-{step:08}.safetensors")
}

/// Checkpoints in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = e?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !path.is_file() {
            continue;
        }
        if let Some(step) = name
            .strip_prefix("ckpt-")
            .and_then(|r| r.strip_suffix(".safetensors"))
            && let Ok(s) = step.parse()
        {
            out.push((s, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The newest checkpoint in `dir`.
pub fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list(dir)?.pop().map(|(_, p)| p))
}

/// The newest checkpoint in `dir` that reads and verifies, with a line for each newer one that
/// was skipped and why (never silently); an error listing them all when none is intact, `None`
/// when there is none.
pub fn latest_intact(dir: &Path) -> Result<Option<(PathBuf, Checkpoint, Vec<String>)>> {
    let all = list(dir)?;
    if all.is_empty() {
        return Ok(None);
    }
    let mut skipped = Vec::new();
    for (_, path) in all.into_iter().rev() {
        match Checkpoint::load(&path) {
            Ok(ck) => return Ok(Some((path, ck, skipped))),
            Err(e) => skipped.push(format!("skipped {}: {e:#}", path.display())),
        }
    }
    bail!(
        "no intact checkpoint in {}:\n  {}",
        dir.display(),
        skipped.join("\n  ")
    )
}

/// Deletes all but the newest `keep` checkpoints.
pub fn prune(dir: &Path, keep: usize) -> Result<()> {
    let all = list(dir)?;
    let n = all.len().saturating_sub(keep.max(1));
    for (_, p) in all.into_iter().take(n) {
        std::fs::remove_file(&p).with_context(|| format!("removing old checkpoint {}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let c = Config::preset("tiny").unwrap();
        let params = Params::init(&c, 1);
        let mut opt = Optimizer::adamw(&params.tensors, AdamWConfig::default());
        let mut p2 = params.clone();
        opt.step(&mut p2.tensors, &params.tensors, 0.01);
        Checkpoint {
            meta: Meta {
                format: FORMAT,
                config: c,
                step: 3,
                rng: 99,
                scaler: LossScaler::dynamic(1024.0, 100),
                tokenizer_hash: "abc".into(),
                tokens_seen: 1000,
                elapsed_s: 1.5,
                optimizer: OptimizerMeta::Sgd {
                    momentum: 0.0,
                    weight_decay: 0.0,
                },
                settings: serde_json::json!({"lr": 0.001}),
                lora: None,
            },
            weights: Weights::Model(p2),
            opt,
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let ck = sample();
        let back = Checkpoint::from_bytes(&ck.to_bytes().unwrap(), "x").unwrap();
        assert_eq!(back.weights, ck.weights);
        assert_eq!(back.opt, ck.opt);
        assert_eq!(back.meta.rng, 99);
        assert!(matches!(
            back.meta.optimizer,
            OptimizerMeta::AdamW { step: 1, .. }
        ));
    }

    #[test]
    fn corrupt_and_foreign_files_are_named_errors() {
        let ck = sample();
        let bytes = ck.to_bytes().unwrap();
        let err = Checkpoint::from_bytes(&bytes[..bytes.len() / 2], "half.safetensors").unwrap_err();
        assert!(format!("{err:#}").contains("half.safetensors"), "{err:#}");
        assert!(Checkpoint::from_bytes(b"garbage", "g").is_err());
        let plain = safetensors::serialize(Vec::<(String, TensorView)>::new(), None).unwrap();
        assert!(
            format!("{:#}", Checkpoint::from_bytes(&plain, "p").unwrap_err())
                .contains("not a malus checkpoint")
        );
    }

    #[test]
    fn listing_and_pruning() {
        let dir = std::env::temp_dir().join(format!("malus-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = sample();
        for s in [5, 10, 15] {
            ck.save(&dir.join(file_name(s))).unwrap();
        }
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        assert_eq!(
            list(&dir).unwrap().iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![5, 10, 15]
        );
        prune(&dir, 2).unwrap();
        assert_eq!(latest(&dir).unwrap().unwrap(), dir.join(file_name(15)));
        assert_eq!(list(&dir).unwrap().len(), 2);
        // A write that fails (here: the target is a directory) is an error naming the file, and
        // leaves no temp file behind.
        let blocked = dir.join(file_name(20));
        std::fs::create_dir_all(blocked.join("inside")).unwrap();
        let err = ck.save(&blocked).unwrap_err();
        assert!(format!("{err:#}").contains("ckpt-00000020"), "{err:#}");
        let leftovers = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
