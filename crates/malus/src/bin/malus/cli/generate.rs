//! `malus generate` and `malus plot`: sample from a checkpoint, draw a run's loss curves.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use malus::checkpoint::{self, Checkpoint};
use malus::data::Tok;
use malus::generate::{SampleOptions, generate};
use malus::model::{Config, Params};

#[derive(Args)]
pub struct GenerateArgs {
    /// A checkpoint file, or a run directory (its newest checkpoint).
    #[arg(long, default_value = "runs/default")]
    checkpoint: PathBuf,
    #[arg(long, default_value = malus::data::input::TOKENIZER)]
    tokenizer: PathBuf,
    #[arg(long, default_value = "")]
    prompt: String,
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 200)]
    max_tokens: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Args)]
pub struct PlotArgs {
    /// A metrics.jsonl file written by `malus train`.
    metrics: PathBuf,
    #[arg(short, long, default_value = "loss.png")]
    out: PathBuf,
}

/// Resolves a checkpoint path or run directory to a checkpoint file.
pub fn find_checkpoint(p: &Path) -> Result<PathBuf> {
    if p.is_dir() {
        return checkpoint::latest(p)?.with_context(|| format!("no checkpoint in {}", p.display()));
    }
    Ok(p.to_path_buf())
}

/// Samples text from a checkpoint, streaming it to `out`.
pub fn sample(
    config: &Config,
    params: &Params,
    tok: &Tok,
    prompt: &str,
    opts: &SampleOptions,
    out: &mut dyn Write,
) -> Result<String> {
    write!(out, "{prompt}")?;
    let text = generate(config, params, tok, prompt, opts, |piece| {
        let _ = write!(out, "{piece}");
        let _ = out.flush();
    })?;
    writeln!(out)?;
    Ok(text)
}

pub fn run(a: GenerateArgs) -> Result<ExitCode> {
    let path = find_checkpoint(&a.checkpoint)?;
    let ck = Checkpoint::load(&path)?;
    let tok = Tok::load(&a.tokenizer)?;
    if tok.hash != ck.meta.tokenizer_hash {
        eprintln!(
            "warning: {} was trained with another tokenizer (fingerprint {}, this one {})",
            path.display(),
            ck.meta.tokenizer_hash,
            tok.hash
        );
    }
    let opts = SampleOptions {
        temperature: a.temperature,
        top_p: a.top_p,
        max_tokens: a.max_tokens,
        seed: a.seed,
        stop: None,
    };
    sample(
        &ck.meta.config,
        ck.params()?,
        &tok,
        &a.prompt,
        &opts,
        &mut std::io::stdout().lock(),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn plot(a: PlotArgs) -> Result<ExitCode> {
    crate::plot::plot_metrics(&a.metrics, &a.out)?;
    println!("wrote {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
