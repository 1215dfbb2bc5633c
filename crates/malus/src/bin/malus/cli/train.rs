//! `malus train`: train (or continue) a model on text, with progress, metrics and checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::lora_args::LoraArgs;
use malus::generate::SampleOptions;
use malus::model::{Config, hf, peft};
use malus::model_source;
use malus::{DeviceChoice, Dw, Numerics, OptimizerKind, Settings, Trainer};

/// With no arguments: a ~6M-parameter model on the shipped Jane Austen corpus.
#[derive(Args)]
pub struct TrainArgs {
    /// Model preset (tiny, stories15m, stories42m, stories110m, qwen3-0.6b); default: the shipped
    /// small model.
    #[arg(long)]
    model: Option<String>,
    /// Fine-tune a Hugging Face model directory (config.json, *.safetensors; Llama, Mistral or
    /// Qwen3): its config replaces the preset, its tokenizer.json the default tokenizer.
    #[arg(long, value_name = "DIR")]
    init: Option<PathBuf>,
    #[arg(long)]
    seq: Option<usize>,
    /// Vocabulary size of the model (≥ the tokenizer's).
    #[arg(long)]
    vocab: Option<usize>,
    /// Text file, JSONL instruction data (`text`, `prompt`/`completion` or `messages`
    /// records), or a token file (.bin).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Validation data of the same kinds (default: the last 5% of --data).
    #[arg(long, value_name = "FILE")]
    val_data: Option<PathBuf>,
    /// JSONL data: only completions and assistant turns count in the loss.
    #[arg(long)]
    mask_prompt: bool,
    /// JSONL data: render chat records with this Jinja template (or the `chat_template` of this
    /// .json file) instead of the tokenizer's.
    #[arg(long, value_name = "FILE")]
    chat_template: Option<PathBuf>,
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Run directory: checkpoints, metrics.jsonl, token cache.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Optimizer updates.
    #[arg(long)]
    steps: Option<u64>,
    /// Sequences per update.
    #[arg(long)]
    accum: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    warmup: Option<u64>,
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerKind>,
    /// Global gradient-norm clip (0 disables).
    #[arg(long)]
    clip: Option<f64>,
    /// Fixed loss scale (default: dynamic for fp16, none for f32).
    #[arg(long)]
    loss_scale: Option<f32>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Arithmetic of the CPU executor.
    #[arg(long, value_enum, default_value_t = Numerics::F32)]
    numerics: Numerics,
    /// Where the weight-gradient matmuls run (auto: on an ANE, what the cost model predicts
    /// faster for its chip; on the CPU executor, the device).
    #[arg(long, value_enum, default_value_t = Dw::Auto)]
    dw: Dw,
    #[arg(long)]
    eval_every: Option<u64>,
    #[arg(long)]
    ckpt_every: Option<u64>,
    /// Continue from the newest checkpoint in the run directory.
    #[arg(long)]
    resume: bool,
    /// Tokens to sample at the end (0: none).
    #[arg(long, default_value_t = 120)]
    sample_tokens: usize,
    #[command(flatten)]
    lora: LoraArgs,
    /// Start the adapters from this one (a PEFT adapter directory, or a LoRA run directory)
    /// instead of fresh ones; its rank, α, targets and layers are the run's. Implies --lora.
    #[arg(
        long,
        value_name = "DIR",
        requires = "init",
        conflicts_with_all = ["lora_rank", "lora_alpha", "rslora", "lora_targets", "lora_layers"]
    )]
    adapter: Option<PathBuf>,
}

fn settings(a: &TrainArgs) -> Result<Settings> {
    let mut s = Settings::default_run();
    if let Some(dir) = &a.init {
        anyhow::ensure!(
            a.model.is_none() && a.vocab.is_none(),
            "--init takes the model from {}/config.json: leave out --model and --vocab",
            dir.display()
        );
        s.model = hf::load_config(dir, a.seq.unwrap_or(s.model.seq))?;
        // The directory, not its tokenizer.json: tokenizer_config.json beside it has the chat
        // template and the end-of-sequence token.
        s.tokenizer = dir.clone();
        let name = dir.file_name().map_or("hf".into(), |n| n.to_string_lossy());
        s.out = PathBuf::from(format!("runs/{name}"));
        s.init = Some(dir.clone());
    }
    if let Some(m) = &a.model {
        let vocab = s.model.vocab;
        s.model = Config::preset(m)?;
        s.model.vocab = vocab;
        s.out = PathBuf::from(format!("runs/{m}"));
    }
    if let Some(v) = a.seq {
        s.model.seq = v;
    }
    if let Some(v) = a.vocab {
        s.model.vocab = v;
    }
    macro_rules! set {
        ($($f:ident),*) => { $(if let Some(v) = a.$f.clone() { s.$f = v; })* };
    }
    set!(
        data, tokenizer, out, steps, accum, lr, warmup, clip, seed, eval_every, ckpt_every
    );
    (s.val_data, s.chat_template) = (a.val_data.clone(), a.chat_template.clone());
    s.mask_prompt = a.mask_prompt;
    s.loss_scale = a.loss_scale.or(s.loss_scale);
    s.optimizer = a.optimizer.unwrap_or(s.optimizer);
    (s.device, s.numerics, s.dw) = (a.device, a.numerics, a.dw);
    if let Some(dir) = &a.adapter {
        let dir = model_source::adapter_dir(dir)?;
        let mut l = peft::read_config(&dir, &s.model)?;
        l.dropout = a.lora.lora_dropout;
        (s.lora, s.adapter) = (Some(l), Some(dir));
    } else {
        s.lora = a.lora.settings();
    }
    s.validate()?;
    Ok(s)
}

/// What the end-of-run sample continues.
const SAMPLE_PROMPT: &str = "It is a truth";

pub fn run(a: TrainArgs) -> Result<ExitCode> {
    let s = settings(&a)?;
    let mut t = Trainer::new(s, a.resume)?;
    let c = &t.settings().model;
    println!(
        "malus train: {:.2}M parameters (dim {}, {} layers, {} heads, seq {}, vocab {}) on {} | data {} | run dir {}",
        t.settings().model.num_params() as f64 / 1e6,
        c.dim,
        c.layers,
        c.heads,
        c.seq,
        c.vocab,
        t.device_name(),
        t.settings().data.display(),
        t.settings().out.display()
    );
    if let Some(a) = t.adapters() {
        println!(
            "LoRA: {:.3}M adapter parameters (rank {}, α {}, {} layers × {:?}); the base is frozen",
            a.num_params() as f64 / 1e6,
            a.lora.rank,
            a.lora.alpha,
            a.adapters.len() / a.lora.targets.len().max(1),
            a.lora.targets
        );
    }
    if t.step_no() > 0 {
        println!("resumed at step {}", t.step_no());
        for note in t.resume_notes() {
            println!("  {note}");
        }
    } else if let Some(dir) = &t.settings().init {
        println!("starting from the Hugging Face weights in {}", dir.display());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing this step and writing a checkpoint (Ctrl-C again to quit now)");
    });
    let bar = ProgressBar::new(t.settings().steps);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}")
            .expect("static template"),
    );
    bar.set_position(t.step_no());
    let mut last_val = None;
    t.run(stop.clone(), |m| {
        bar.set_position(m.step);
        if let Some(v) = m.val_loss {
            last_val = Some(v);
            let line = format!(
                "step {:>5}  train {:.3}  val {:.3}  lr {:.2e}  {:.0} tok/s",
                m.step, m.train_loss, v, m.lr, m.tokens_per_s
            );
            // A hidden bar (output not a terminal) prints nothing: log the line plainly then.
            if bar.is_hidden() {
                println!("{line}");
            } else {
                bar.println(line);
            }
        }
        bar.set_message(format!("loss {:.3}  {:.0} tok/s", m.train_loss, m.tokens_per_s));
    })?;
    bar.finish_and_clear();
    if stop.load(Ordering::SeqCst) {
        println!("stopped at step {}; continue with --resume", t.step_no());
        return Ok(ExitCode::from(130));
    }
    println!(
        "done: {} steps, validation loss {}, {:.0} s; metrics in {}",
        t.step_no(),
        last_val.map_or("n/a".into(), |v| format!("{v:.3}")),
        t.elapsed(),
        t.settings().out.join("metrics.jsonl").display()
    );
    let png = t.settings().out.join("loss.png");
    match crate::plot::plot_metrics(&t.settings().out.join("metrics.jsonl"), &png) {
        Ok(()) => println!("loss curve: {}", png.display()),
        Err(e) => eprintln!("warning: could not plot the loss curve: {e:#}"),
    }
    if a.sample_tokens > 0 {
        println!("sample (temperature 0.8, top-p 0.95):");
        let opts = SampleOptions {
            temperature: 0.8,
            top_p: 0.95,
            max_tokens: a.sample_tokens,
            seed: 42,
            stop: None,
        };
        let out = &mut std::io::stdout().lock();
        if t.adapters().is_none() {
            let (c, p) = (&t.settings().model, t.params());
            super::generate::sample(c, p, t.tokenizer(), SAMPLE_PROMPT, &opts, out)?;
            return Ok(ExitCode::SUCCESS);
        }
        // A LoRA run samples from its base with the adapters merged in: read again from disk,
        // in f32, once the trainer and its staged base are gone — if that fits.
        let c = t.settings().model.clone();
        let run = t.settings().out.clone();
        drop(t);
        let need = 4 * c.checked_num_params().unwrap_or(usize::MAX) as u128;
        if let Some((have, _)) = malus::plan::memory::available()
            && need > have as u128 / 2
        {
            println!(
                "(no sample: the merged model takes {:.1} GB in f32; `malus generate --checkpoint {}` once memory allows)",
                need as f64 / 1e9,
                run.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let m = malus::model_source::from_checkpoint(&run)?;
        let tok = malus::data::Tok::load(&m.tokenizer)?;
        super::generate::sample(&m.config, &m.params, &tok, SAMPLE_PROMPT, &opts, out)?;
    }
    Ok(ExitCode::SUCCESS)
}
