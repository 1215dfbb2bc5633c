//! `malus generate` and `malus plot`: sample from a checkpoint or a Hugging Face model (with a
//! LoRA adapter), draw a run's loss curves.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use malus::data::Tok;
use malus::data::chat::ChatTemplate;
use malus::generate::{SampleOptions, generate};
use malus::model::{Config, Params};
use malus::model_source;

#[derive(Args)]
pub struct GenerateArgs {
    /// A checkpoint file, or a run directory (its newest checkpoint). A LoRA run's adapters are
    /// merged into its base model.
    #[arg(long, default_value = "runs/default", conflicts_with = "init")]
    checkpoint: PathBuf,
    /// A Hugging Face model directory to generate from instead of a checkpoint.
    #[arg(long, value_name = "DIR")]
    init: Option<PathBuf>,
    /// With --init: merge this LoRA adapter into the model (a PEFT adapter directory, or the run
    /// directory of `malus train --lora`).
    #[arg(long, value_name = "DIR", requires = "init")]
    adapter: Option<PathBuf>,
    /// With --init: the context window in tokens, which generation slides past (default: the
    /// model's, at most 2048).
    #[arg(long, requires = "init")]
    seq: Option<usize>,
    /// Default: the model's own (the --init directory, or the run's tokenizer).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[arg(long, default_value = "")]
    prompt: String,
    /// The prompt is a user message: render it with the model's chat template, print only the
    /// reply, stop at the end-of-sequence token.
    #[arg(long)]
    chat: bool,
    /// With --chat: this Jinja template (or the `chat_template` of this .json file) instead of
    /// the tokenizer's.
    #[arg(long, value_name = "FILE", requires = "chat")]
    chat_template: Option<PathBuf>,
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

/// Samples text after `prompt`, streaming the prompt and the text to `out`.
pub fn sample(
    config: &Config,
    params: &Params,
    tok: &Tok,
    prompt: &str,
    opts: &SampleOptions,
    out: &mut dyn Write,
) -> Result<String> {
    write!(out, "{prompt}")?;
    reply(config, params, tok, prompt, opts, out)
}

/// Samples text after `prompt`, streaming only the text to `out` (then a newline).
fn reply(
    config: &Config,
    params: &Params,
    tok: &Tok,
    prompt: &str,
    opts: &SampleOptions,
    out: &mut dyn Write,
) -> Result<String> {
    let text = generate(config, params, tok, prompt, opts, |piece| {
        let _ = write!(out, "{piece}");
        let _ = out.flush();
    })?;
    writeln!(out)?;
    Ok(text)
}

pub fn run(a: GenerateArgs) -> Result<ExitCode> {
    let m = match &a.init {
        Some(dir) => model_source::from_hf(dir, a.seq, a.adapter.as_deref())?,
        None => model_source::from_checkpoint(&a.checkpoint)?,
    };
    let tokenizer = a.tokenizer.clone().unwrap_or(m.tokenizer.clone());
    let tok = Tok::load(&tokenizer)?;
    if let Some(h) = m.tokenizer_hash.as_ref().filter(|h| **h != tok.hash) {
        eprintln!(
            "warning: {} was trained with another tokenizer (fingerprint {h}, this one {})",
            a.checkpoint.display(),
            tok.hash
        );
    }
    let mut opts = SampleOptions {
        temperature: a.temperature,
        top_p: a.top_p,
        max_tokens: a.max_tokens,
        seed: a.seed,
        stop: None,
    };
    let mut stdout = std::io::stdout().lock();
    if !a.chat {
        sample(&m.config, &m.params, &tok, &a.prompt, &opts, &mut stdout)?;
        return Ok(ExitCode::SUCCESS);
    }
    let template = ChatTemplate::load(&tokenizer, a.chat_template.as_deref())?.with_context(|| {
        format!(
            "--chat: {} has no chat template (give --chat-template FILE)",
            tokenizer.display()
        )
    })?;
    let prompt = template.render(&[json!({"role": "user", "content": a.prompt})], true)?;
    opts.stop = template
        .eos_token
        .as_deref()
        .and_then(|e| tok.token_id(e))
        .or_else(|| tok.eot());
    reply(&m.config, &m.params, &tok, &prompt, &opts, &mut stdout)?;
    Ok(ExitCode::SUCCESS)
}

pub fn plot(a: PlotArgs) -> Result<ExitCode> {
    crate::plot::plot_metrics(&a.metrics, &a.out)?;
    println!("wrote {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
