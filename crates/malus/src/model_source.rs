//! The model a command runs or writes out (`generate`, `fuse`, `export`): a Hugging Face
//! directory, with a LoRA adapter merged in when one is given, or a training checkpoint. A LoRA
//! run's checkpoint holds only adapters: its base is the run's `--init`, checked against the
//! fingerprint the adapters were trained on.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};

use crate::checkpoint::{self, Checkpoint, Weights};
use crate::model::{Config, Params, hf, peft};
use crate::settings::Settings;
use crate::train::trainer::ADAPTER_DIR;

/// A model ready to run, and where its tokenizer and Hugging Face files are.
pub struct Loaded {
    pub config: Config,
    /// The weights, adapters merged in.
    pub params: Params,
    /// A tokenizer.json or a model directory (with tokenizer_config.json): the base
    /// directory, or a run's `--tokenizer`.
    pub tokenizer: PathBuf,
    /// The Hugging Face directory the weights came from (for a LoRA run, its base).
    pub hf_dir: Option<PathBuf>,
    /// The fingerprint of the tokenizer the weights were trained with, when known.
    pub tokenizer_hash: Option<String>,
}

/// A PEFT adapter directory: `p` itself, or a LoRA run directory's `adapter/`.
pub fn adapter_dir(p: &Path) -> Result<PathBuf> {
    if peft::is_adapter_dir(p) {
        return Ok(p.to_path_buf());
    }
    let inner = p.join(ADAPTER_DIR);
    ensure!(
        peft::is_adapter_dir(&inner),
        "--adapter {}: neither a PEFT adapter directory ({}) nor a LoRA run directory with one in {ADAPTER_DIR}/",
        p.display(),
        peft::CONFIG_FILE
    );
    Ok(inner)
}

/// The context a Hugging Face model generates with unless told: its own, up to this.
pub const GENERATE_CONTEXT: usize = 2048;

/// A Hugging Face model directory with a context of `seq` tokens (default: its
/// `max_position_embeddings`, at most [`GENERATE_CONTEXT`]), and `adapter` (a PEFT directory or
/// LoRA run directory) merged into its weights.
pub fn from_hf(dir: &Path, seq: Option<usize>, adapter: Option<&Path>) -> Result<Loaded> {
    let seq = match seq {
        Some(s) => s,
        None => hf::max_positions(dir)?.map_or(GENERATE_CONTEXT, |m| m.min(GENERATE_CONTEXT)),
    };
    let (config, mut params) = hf::load(dir, seq)?;
    if let Some(a) = adapter {
        let a = adapter_dir(a)?;
        let ad = peft::load(&a, &config).with_context(|| format!("--adapter {}", a.display()))?;
        ad.merge_into(&mut params);
    }
    Ok(Loaded {
        config,
        params,
        tokenizer: dir.to_path_buf(),
        hf_dir: Some(dir.to_path_buf()),
        tokenizer_hash: None,
    })
}

/// A checkpoint file, or a run directory's newest checkpoint.
pub fn checkpoint_file(p: &Path) -> Result<PathBuf> {
    if p.is_dir() {
        return checkpoint::latest(p)?.with_context(|| format!("no checkpoint in {}", p.display()));
    }
    Ok(p.to_path_buf())
}

/// The model of a checkpoint (`p`: a file or a run directory). A LoRA checkpoint's adapters are
/// merged into its base, read again from the run's `--init` and refused if it changed.
pub fn from_checkpoint(p: &Path) -> Result<Loaded> {
    let path = checkpoint_file(p)?;
    let ck = Checkpoint::load(&path)?;
    let settings: Settings = serde_json::from_value(ck.meta.settings.clone())
        .map_err(|e| anyhow!("{}: the run's settings do not read ({e})", path.display()))?;
    let config = ck.meta.config.clone();
    let (params, hf_dir) = match ck.weights {
        Weights::Model(p) => (p, settings.init.clone()),
        Weights::Adapters(ad) => {
            let (Some(base_dir), Some(meta)) = (&settings.init, &ck.meta.lora) else {
                bail!("{}: LoRA adapters without a recorded base model", path.display());
            };
            let (_, mut base) = hf::load(base_dir, config.seq)
                .with_context(|| format!("the base model of {}", path.display()))?;
            ensure!(
                checkpoint::fingerprint(&base.tensors) == meta.base,
                "{}: its adapters were trained on another base than the one now in {}",
                path.display(),
                base_dir.display()
            );
            ad.merge_into(&mut base);
            (base, Some(base_dir.clone()))
        }
    };
    Ok(Loaded {
        config,
        params,
        tokenizer: settings.tokenizer,
        hf_dir,
        tokenizer_hash: Some(ck.meta.tokenizer_hash),
    })
}
