//! `malus fuse` and `malus export`: write a Hugging Face model directory that `transformers`
//! loads — a base model with a LoRA adapter merged in, or the model of a training run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use malus::model::hf_out::{self, StoreDtype};
use malus::model_source::{self, Loaded};

#[derive(Args)]
pub struct FuseArgs {
    /// The base model: a Hugging Face directory.
    #[arg(long, value_name = "DIR")]
    init: PathBuf,
    /// The adapter: a PEFT adapter directory, or the run directory of `malus train --lora`.
    #[arg(long, value_name = "DIR")]
    adapter: PathBuf,
    /// The new model directory (must not exist, or be empty).
    #[arg(short, long)]
    out: PathBuf,
    /// Storage type of the weights (default: the base's).
    #[arg(long, value_enum)]
    dtype: Option<StoreDtype>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// A checkpoint file, or a run directory (its newest checkpoint); a LoRA run's adapters are
    /// merged into its base.
    #[arg(long, default_value = "runs/default")]
    checkpoint: PathBuf,
    /// The new model directory (must not exist, or be empty).
    #[arg(short, long)]
    out: PathBuf,
    /// Storage type of the weights (default: the base's for a run from --init, else f32).
    #[arg(long, value_enum)]
    dtype: Option<StoreDtype>,
}

pub fn fuse(a: FuseArgs) -> Result<ExitCode> {
    // The base's own config.json is written, whatever context the loaded config has.
    let m = model_source::from_hf(&a.init, None, Some(&a.adapter))?;
    write(&m, a.dtype, &a.out)
}

pub fn export(a: ExportArgs) -> Result<ExitCode> {
    let m = model_source::from_checkpoint(&a.checkpoint)?;
    write(&m, a.dtype, &a.out)
}

fn write(m: &Loaded, dtype: Option<StoreDtype>, out: &std::path::Path) -> Result<ExitCode> {
    let (dtype, config) = match &m.hf_dir {
        Some(dir) => {
            let dtype = dtype.map_or_else(|| StoreDtype::of_dir(dir), Ok)?;
            (dtype, hf_out::base_config_json(dir, dtype)?)
        }
        None => {
            let dtype = dtype.unwrap_or(StoreDtype::F32);
            (dtype, hf_out::config_json(&m.config, dtype)?)
        }
    };
    let files = hf_out::write_model_dir(out, &m.config, &m.params, dtype, &config, &m.tokenizer)?;
    println!(
        "wrote {} ({}; weights as {})",
        out.display(),
        files.join(", "),
        dtype.torch_name()
    );
    Ok(ExitCode::SUCCESS)
}
