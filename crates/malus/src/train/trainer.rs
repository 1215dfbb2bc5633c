//! The training loop: sample, forward, backward, accumulate, clip, update, re-stage; evaluate,
//! log metrics, checkpoint, resume exactly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail, ensure};
use malus_mil::DType;

use super::CompiledModel;
use super::optim::{AdamWConfig, LossScaler, Optimizer, Schedule};
use crate::checkpoint::{self, Checkpoint, FORMAT, LoraMeta, Meta, OptimizerMeta, Weights};
use crate::data::{Dataset, Tok, Window, source};
use crate::device::Device;
use crate::host;
use crate::kernels::Shape;
use crate::model::hf_out::StoreDtype;
use crate::model::hf_weights::WeightReader;
use crate::model::{Adapters, Lora, Params, Tensor, peft};
use crate::plan::Plan;
use crate::plan::memory::{self, Executor, MemoryEstimate};
use crate::rng::Rng;
use crate::run_dir::RunLock;
use crate::settings::{DeviceChoice, Numerics, OptimizerKind, Settings};

/// One logged point.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    pub step: u64,
    pub train_loss: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    pub lr: f64,
    pub loss_scale: f32,
    pub grad_norm: f64,
    pub skipped: bool,
    pub tokens_per_s: f64,
    pub elapsed: f64,
}

/// A training run in progress.
pub struct Trainer {
    settings: Settings,
    /// The model: every weight trains, or with LoRA the frozen base.
    params: Params,
    /// A LoRA run's adapters (what trains) and the fingerprint of its base.
    lora: Option<(Adapters, String)>,
    /// Over the trained tensors.
    opt: Optimizer,
    scaler: LossScaler,
    step_no: u64,
    rng: Rng,
    tokens_seen: u64,
    elapsed: f64,
    tok: Tok,
    data: Dataset,
    /// The validation windows, with the weights that make their summed loss the mean over
    /// every counted target ([`host::batch_loss_weights`]).
    val: Vec<(Vec<u32>, Vec<f32>)>,
    model: CompiledModel,
    /// What runs the step, for the start-up line: the device and where dW goes.
    device_name: String,
    schedule: Schedule,
    /// What a resumed run keeps from its checkpoint and what it takes from these settings.
    resume_notes: Vec<String>,
    /// Held while the run lives: one process per run directory.
    _lock: RunLock,
}

/// Refuses a run that cannot fit in this machine's memory, before anything is allocated.
fn admit(s: &Settings) -> Result<()> {
    let Some((available, source)) = memory::available() else {
        return Ok(());
    };
    // Where the device is not known yet (`auto`), the larger estimate: the CPU executor's.
    let ex = match (s.device, s.numerics) {
        (DeviceChoice::Ane, _) => Executor::Ane,
        (_, n) => Executor::Cpu {
            fp16: n == Numerics::Fp16,
        },
    };
    let shape = Shape::new(&s.model, DType::Fp32)?;
    let estimate = match &s.lora {
        Some(l) => {
            let dir = s.init.as_deref().ok_or_else(|| anyhow!("--lora needs --init"))?;
            let embed = match StoreDtype::of_dir(dir)? {
                StoreDtype::F32 => 4,
                StoreDtype::F16 | StoreDtype::Bf16 => 2,
            };
            MemoryEstimate::lora(&s.model, &shape.with_lora(l), ex, l, s.optimizer, embed)
        }
        None => MemoryEstimate::training(&s.model, &shape, ex, s.optimizer, s.dw),
    };
    estimate.admit(available, source)
}

/// Checks the training and validation data before anything is written.
fn check_data(s: &Settings) -> Result<()> {
    source::check(&s.data, "training data", &s.tokenizing())?;
    if let Some(v) = &s.val_data {
        source::check(v, "validation data", &s.tokenizing())?;
    }
    Ok(())
}

/// Opens the training data (and the validation data when separate), tokenized into `out/`.
fn open_data(s: &Settings, tok: &Tok) -> Result<Dataset> {
    let (c, how) = (&s.model, s.tokenizing());
    let train = source::open(&s.data, "training data", tok, &how, &s.out)?;
    match &s.val_data {
        Some(v) => {
            let val = source::open(v, "validation data", tok, &how, &s.out)?;
            Dataset::with_validation(train, val, c.vocab, c.seq)
        }
        None => Dataset::new(train, c.vocab, c.seq, s.val_fraction),
    }
}

/// Where in its run directory a LoRA run keeps its newest adapters, in PEFT's format.
pub const ADAPTER_DIR: &str = "adapter";

/// The adapters a LoRA run starts from: a PEFT adapter directory, whose settings must be the
/// run's (dropout aside, which only training uses).
fn start_adapter(dir: &Path, c: &crate::model::Config, l: &Lora) -> Result<Adapters> {
    let mut a = peft::load(dir, c).with_context(|| format!("--adapter {}", dir.display()))?;
    let file = a.lora.clone();
    a.lora.dropout = l.dropout;
    ensure!(
        a.lora == *l,
        "--adapter {}: its settings ({file:?}) are not this run's LoRA settings ({l:?})",
        dir.display()
    );
    Ok(a)
}

/// A batch's windows as micro-steps: tokens, and weights under which the micro-steps' summed
/// losses over their number is the mean over the batch's counted targets.
fn weighted(windows: Vec<Window>) -> Result<Vec<(Vec<u32>, Vec<f32>)>> {
    let weights = host::batch_loss_weights(&windows.iter().map(Window::loss_weights).collect::<Vec<_>>())?;
    Ok(windows.into_iter().map(|w| w.tokens).zip(weights).collect())
}

impl Trainer {
    /// Starts a run, or continues the newest checkpoint in `settings.out` when `resume`.
    pub fn new(settings: Settings, resume: bool) -> Result<Trainer> {
        settings.validate()?;
        let c = &settings.model;
        admit(&settings)?;
        // Inputs first: no run directory is made for a run that cannot start.
        let tok = Tok::load(&settings.tokenizer)?;
        ensure!(
            tok.vocab_size() <= c.vocab,
            "tokenizer {} has {} tokens but the model's vocabulary is {}",
            settings.tokenizer.display(),
            tok.vocab_size(),
            c.vocab
        );
        check_data(&settings)?;
        let lock = RunLock::take(&settings.out)?;
        let data = open_data(&settings, &tok)?;
        let val = weighted(data.validation(c.seq, settings.eval_batches)?).context("the validation split")?;
        let device = Device::open(settings.device, settings.numerics)?;
        let plan = match &settings.lora {
            Some(l) => Plan::lora(c, device.dtype(), l)?,
            None => Plan::for_device(c, &device, settings.dw)?,
        };
        let mut model = CompiledModel::new(&plan, &device)?;
        let fp16 = device.dtype() == DType::Fp16;
        let mut scaler = match settings.loss_scale {
            Some(s) => LossScaler::fixed(s),
            None if fp16 => LossScaler::dynamic(1024.0, 200),
            None => LossScaler::fixed(1.0),
        };
        let (mut step_no, mut rng, mut tokens_seen, mut elapsed) =
            (0, Rng::new(settings.seed ^ 0x5EED), 0, 0.0);
        let mut resume_notes = Vec::new();
        // The frozen base of a LoRA run is the `--init` model, also when resuming: staged
        // from its files, never held in f32.
        let base = match &settings.lora {
            Some(_) => Some(model.stage_frozen(&init_weights(&settings)?)?),
            None => None,
        };
        let (params, lora, opt) = if resume {
            let (path, ck, skipped) = checkpoint::latest_intact(&settings.out)
                .context("--resume")?
                .ok_or_else(|| anyhow!("--resume: no checkpoint in {}", settings.out.display()))?;
            resume_notes = skipped;
            let base_fp = base.as_ref().map(|(_, fp)| fp.as_str());
            resume_notes.extend(check_resume(&ck, &path, &settings, &tok, base_fp)?);
            forget_metrics_after(&settings.out.join("metrics.jsonl"), ck.meta.step)?;
            (scaler, step_no, rng, tokens_seen) = (
                ck.meta.scaler,
                ck.meta.step,
                Rng::new(ck.meta.rng),
                ck.meta.tokens_seen,
            );
            elapsed = ck.meta.elapsed_s;
            match (ck.weights, base) {
                (Weights::Model(p), None) => (p, None, ck.opt),
                (Weights::Adapters(a), Some((base, fp))) => (base, Some((a, fp)), ck.opt),
                _ => unreachable!("check_resume compares the run kinds"),
            }
        } else {
            match (&settings.lora, base) {
                (Some(l), Some((base, fp))) => {
                    let a = match &settings.adapter {
                        Some(dir) => start_adapter(dir, c, l)?,
                        None => Adapters::init(c, l, settings.seed),
                    };
                    let opt = new_optimizer(&settings, &a.tensors);
                    (base, Some((a, fp)), opt)
                }
                _ => {
                    let params = match &settings.init {
                        Some(_) => load_init(&settings)?,
                        None => Params::init(c, settings.seed),
                    };
                    let opt = new_optimizer(&settings, &params.tensors);
                    (params, None, opt)
                }
            }
        };
        let mut t = Trainer {
            params,
            lora,
            opt,
            scaler,
            step_no,
            rng,
            tokens_seen,
            elapsed,
            schedule: Schedule {
                max_lr: settings.lr,
                warmup: settings.warmup,
                total: settings.steps,
                min_ratio: settings.min_lr_ratio,
            },
            tok,
            data,
            val,
            model,
            device_name: format!("{}, dW on the {}", device.name(), plan.dw.name()),
            resume_notes,
            settings,
            _lock: lock,
        };
        match &t.lora {
            Some((a, _)) => t.model.stage_adapters(&t.params, a)?,
            None => t.model.stage(&t.params)?,
        }
        Ok(t)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The model's weights. With LoRA, the frozen base's layout with only its RMSNorm weights:
    /// its matrices exist only staged in the kernel inputs, its embedding in the compiled
    /// model (see [`CompiledModel::stage_frozen`]).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// A LoRA run's adapters.
    pub fn adapters(&self) -> Option<&Adapters> {
        self.lora.as_ref().map(|(a, _)| a)
    }

    /// The tensors this run trains: every weight, or the adapters.
    pub fn trained(&self) -> &[Tensor] {
        match &self.lora {
            Some((a, _)) => &a.tensors,
            None => &self.params.tensors,
        }
    }

    /// Optimizer updates done.
    pub fn step_no(&self) -> u64 {
        self.step_no
    }

    pub fn tokenizer(&self) -> &Tok {
        &self.tok
    }

    /// Training seconds so far (resumed runs included).
    pub fn elapsed(&self) -> f64 {
        self.elapsed
    }

    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// After `--resume`: the newer checkpoints skipped as damaged, then one line per setting
    /// that differs from the checkpoint's run, saying which value the resumed run uses.
    pub fn resume_notes(&self) -> &[String] {
        &self.resume_notes
    }

    /// The JSON part of the current state's checkpoint.
    fn meta(&self) -> Result<Meta> {
        Ok(Meta {
            format: FORMAT,
            config: self.settings.model.clone(),
            step: self.step_no,
            rng: self.rng.state,
            scaler: self.scaler.clone(),
            tokenizer_hash: self.tok.hash.clone(),
            tokens_seen: self.tokens_seen,
            elapsed_s: self.elapsed,
            optimizer: OptimizerMeta::of(&self.opt),
            settings: serde_json::to_value(&self.settings)?,
            lora: self.lora.as_ref().map(|(a, base)| LoraMeta {
                lora: a.lora.clone(),
                base: base.clone(),
            }),
        })
    }

    /// Writes a checkpoint into the run directory and prunes old ones; returns its path. A LoRA
    /// run also writes its adapters as a PEFT directory, `out/adapter` ([`ADAPTER_DIR`]).
    pub fn save(&self) -> Result<PathBuf> {
        let out = &self.settings.out;
        let path = out.join(checkpoint::file_name(self.step_no));
        checkpoint::save(&path, &self.meta()?, self.trained(), &self.opt)?;
        checkpoint::prune(out, self.settings.keep)?;
        if let (Some((a, _)), Some(base)) = (&self.lora, &self.settings.init) {
            peft::save(
                &out.join(ADAPTER_DIR),
                a,
                &self.settings.model,
                &base.display().to_string(),
            )?;
        }
        Ok(path)
    }

    /// Mean loss over the fixed validation windows.
    pub fn validate(&mut self) -> Result<f64> {
        let mut sum = 0.0;
        for (tokens, weights) in &self.val {
            sum += self.model.forward_weighted(&self.params, tokens, weights)?;
        }
        Ok(sum / self.val.len().max(1) as f64)
    }

    /// One optimizer update over `accum` sequences.
    pub fn update(&mut self) -> Result<Metrics> {
        let t0 = Instant::now();
        let c = &self.settings.model;
        let accum = self.settings.accum;
        let scale = self.scaler.scale;
        let mut loss = 0.0;
        let batch = weighted(
            (0..accum)
                .map(|_| self.data.sample(&mut self.rng, c.seq))
                .collect::<Result<Vec<_>>>()?,
        )?;
        for (tokens, weights) in &batch {
            loss += self.model.forward_weighted(&self.params, tokens, weights)?;
            self.model.backward(scale)?;
        }
        loss /= accum as f64;
        // With dynamic loss scaling a non-finite loss or gradient is the scaler's to handle
        // (skip the update, lower the scale); otherwise it ends the run.
        ensure!(
            loss.is_finite() || self.scaler.dynamic,
            "loss is {} at step {}: stopping (the last checkpoint is intact; try a lower --lr)",
            if loss.is_nan() { "NaN" } else { "inf" },
            self.step_no + 1
        );
        let k = scale * accum as f32;
        let lr = self.schedule.lr(self.step_no);
        let (apply, grad_norm) = match &mut self.lora {
            Some((a, _)) => {
                let mut g = self.model.take_lora_grads(k)?;
                let (apply, norm) = self.scaler.apply(loss, &mut g.tensors, self.settings.clip);
                if apply {
                    self.opt.step(&mut a.tensors, &g.tensors, lr as f32);
                    self.model.stage_adapters(&self.params, a)?;
                }
                (apply, norm)
            }
            None => {
                let g = self.model.take_grads(&self.params, k)?;
                let (apply, norm) = self.scaler.apply(loss, &mut g.tensors, self.settings.clip);
                if apply {
                    let changed = self.opt.step(&mut self.params.tensors, &g.tensors, lr as f32);
                    self.model.restage(&self.params, &changed)?;
                }
                (apply, norm)
            }
        };
        self.step_no += 1;
        let dt = t0.elapsed().as_secs_f64();
        self.elapsed += dt;
        let tokens = (accum * c.seq) as u64;
        self.tokens_seen += tokens;
        Ok(Metrics {
            step: self.step_no,
            train_loss: loss,
            val_loss: None,
            lr,
            loss_scale: scale,
            grad_norm,
            skipped: !apply,
            tokens_per_s: tokens as f64 / dt,
            elapsed: self.elapsed,
        })
    }

    /// Trains to `settings.steps`, logging to `out/metrics.jsonl`, checkpointing, stopping
    /// cleanly (with a checkpoint) when `stop` is raised.
    pub fn run(&mut self, stop: Arc<AtomicBool>, mut on_metrics: impl FnMut(&Metrics)) -> Result<()> {
        let path = self.settings.out.join("metrics.jsonl");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        while self.step_no < self.settings.steps {
            let mut m = self.update()?;
            let last = self.step_no == self.settings.steps;
            if self.step_no.is_multiple_of(self.settings.eval_every) || last {
                m.val_loss = Some(self.validate()?);
            }
            writeln!(log, "{}", serde_json::to_string(&m)?)
                .with_context(|| format!("writing {}", path.display()))?;
            on_metrics(&m);
            let stopping = stop.load(Ordering::SeqCst);
            if self.step_no.is_multiple_of(self.settings.ckpt_every) || last || stopping {
                self.save()?;
            }
            if stopping {
                break;
            }
        }
        Ok(())
    }
}

/// Checks a checkpoint belongs to this run — the same model config, tokenizer and optimizer
/// kind, and for LoRA the same adapter settings and base (`base_fp`, the fingerprint of the
/// loaded `--init`) — and returns what the resumed run keeps and changes ([`resume_notes`]).
fn check_resume(
    ck: &Checkpoint,
    path: &Path,
    settings: &Settings,
    tok: &Tok,
    base_fp: Option<&str>,
) -> Result<Vec<String>> {
    let p = path.display();
    match (&ck.meta.lora, &settings.lora) {
        (None, None) => {}
        (Some(_), None) => {
            bail!("--resume: {p} holds LoRA adapters: resume it with the same --lora settings and --init")
        }
        (None, Some(_)) => {
            bail!("--resume: {p} is a full fine-tune: --lora cannot continue it (start a new run directory)")
        }
        (Some(m), Some(l)) => {
            ensure!(
                m.lora == *l,
                "--resume: {p} trained adapters {:?}, this run asks for {l:?}: the adapters' shape \
                 cannot change (leave the --lora-* flags as they were, or start a new run directory)",
                m.lora
            );
            let fp = base_fp.unwrap_or_default();
            ensure!(
                m.base == fp,
                "--resume: {p} adapts another base model (fingerprint {} vs {fp} of {}): resume \
                 it with the --init it was trained on",
                m.base,
                settings.init.as_deref().unwrap_or(Path::new("?")).display()
            );
        }
    }
    ensure!(
        ck.meta.config == settings.model,
        "--resume: {p}: the checkpoint's model config differs from this run's ({})",
        differences(&json(&ck.meta.config), &json(&settings.model))
            .into_iter()
            .map(|(_, d)| d)
            .collect::<Vec<_>>()
            .join(", ")
    );
    ensure!(
        ck.meta.tokenizer_hash == tok.hash,
        "--resume: {p} was trained with another tokenizer (fingerprint {} vs {} of {})",
        ck.meta.tokenizer_hash,
        tok.hash,
        settings.tokenizer.display()
    );
    let kind = match ck.opt {
        Optimizer::AdamW { .. } => OptimizerKind::AdamW,
        Optimizer::Sgd { .. } => OptimizerKind::Sgd,
    };
    ensure!(
        kind == settings.optimizer,
        "--resume: {p} was trained with {kind:?}, this run asks for {:?}; an optimizer's state \
         cannot change kind (leave out --optimizer, or start a new run directory)",
        settings.optimizer
    );
    Ok(resume_notes(&ck.meta.settings, settings))
}

/// Drops the metrics logged after `step` (by a run that went on past the checkpoint it is
/// resumed from), so the log holds each step once.
fn forget_metrics_after(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<Metrics>(l).is_ok_and(|m| m.step <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    if kept.len() != text.len() {
        crate::fsutil::write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// The `--init` model, checked to be the run's config.
fn load_init(s: &Settings) -> Result<Params> {
    crate::model::hf_weights::load_params(init_dir(s)?, &s.model)
}

/// The `--init` directory, once its config.json is checked to be the run's model config.
fn init_dir(s: &Settings) -> Result<&Path> {
    let dir = s.init.as_deref().ok_or_else(|| anyhow!("no --init model"))?;
    let c = &s.model;
    let hf_config = crate::model::hf::load_config(dir, c.seq)?;
    ensure!(
        hf_config == *c,
        "the run's model config differs from {}/config.json ({c:?} vs {hf_config:?})",
        dir.display()
    );
    Ok(dir)
}

/// The `--init` model's weights, indexed and checked, for a frozen base to stream from.
fn init_weights(s: &Settings) -> Result<WeightReader> {
    WeightReader::open(init_dir(s)?, &s.model)
}

/// A new optimizer over the trained tensors `p` as the settings ask.
fn new_optimizer(s: &Settings, p: &[Tensor]) -> Optimizer {
    match s.optimizer {
        OptimizerKind::AdamW => Optimizer::adamw(
            p,
            AdamWConfig {
                weight_decay: s.weight_decay,
                beta2: s.beta2,
                ..AdamWConfig::default()
            },
        ),
        OptimizerKind::Sgd => Optimizer::sgd(p, s.momentum, s.weight_decay),
    }
}

/// For each field where two serialised values differ: its name and `key: a in the
/// checkpoint, b here`.
fn differences(a: &serde_json::Value, b: &serde_json::Value) -> Vec<(String, String)> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return Vec::new();
    };
    b.iter()
        .filter(|(k, v)| a.get(*k) != Some(v))
        .map(|(k, v)| {
            let was = a.get(k).map_or("none".into(), |x| x.to_string());
            (k.clone(), format!("{k}: {was} in the checkpoint, {v} here"))
        })
        .collect()
}

fn json(v: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// Settings the optimizer state carries: a resumed run keeps the checkpoint's.
const KEPT_FROM_CHECKPOINT: [&str; 4] = ["weight_decay", "beta2", "momentum", "seed"];

/// One line per setting that differs between the checkpoint's run (`old`, as saved) and this
/// one, saying which value the resumed run uses.
fn resume_notes(old: &serde_json::Value, new: &Settings) -> Vec<String> {
    if !old.is_object() {
        return vec!["the checkpoint records no settings: this run's apply".into()];
    }
    differences(old, &json(new))
        .into_iter()
        .map(|(key, d)| {
            let rule = if KEPT_FROM_CHECKPOINT.contains(&key.as_str()) {
                "the checkpoint's is kept"
            } else {
                "this run's applies"
            };
            format!("{d}: {rule}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_notes_name_each_changed_setting_and_who_wins() {
        let old = Settings::default_run();
        let mut new = old.clone();
        new.lr = 1e-3;
        new.weight_decay = 0.0;
        let notes = resume_notes(&serde_json::to_value(&old).unwrap(), &new);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes
                .iter()
                .any(|n| n == "lr: 0.002 in the checkpoint, 0.001 here: this run's applies"),
            "{notes:?}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("weight_decay:") && n.ends_with("the checkpoint's is kept")),
            "{notes:?}"
        );
        assert!(resume_notes(&serde_json::to_value(&old).unwrap(), &old).is_empty());
    }
}
