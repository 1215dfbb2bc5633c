//! The training loop: sample, forward, backward, accumulate, clip, update, re-stage; evaluate,
//! log metrics, checkpoint, resume exactly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use malus_mil::DType;

use super::Step;
use super::optim::{AdamWConfig, LossScaler, Optimizer, Schedule, clip};
use super::settings::{DeviceChoice, DwChoice, NumericsChoice, OptimizerChoice, Settings};
use crate::checkpoint::{self, Checkpoint, FORMAT, Meta, OptimizerMeta};
use crate::data::{self, Dataset, Tok, TokenFile};
use crate::device::{AneDevice, CpuDevice, Device};
use crate::kernels::cost::{Chip, auto_plan};
use crate::kernels::plan::{DwPlacement, Plan};
use crate::model::{Config, Params};
use crate::rng::Rng;

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
    pub settings: Settings,
    pub params: Params,
    pub opt: Optimizer,
    pub scaler: LossScaler,
    pub step_no: u64,
    pub rng: Rng,
    pub tokens_seen: u64,
    pub elapsed: f64,
    pub tok: Tok,
    data: Dataset,
    val: Vec<Vec<u32>>,
    step: Step,
    /// What runs the step, for the start-up line: the device and where dW goes.
    pub device_name: String,
    schedule: Schedule,
}

/// Chooses and opens the device; returns it with the kernel element type it needs.
fn open_device(s: &Settings) -> Result<(Box<dyn Device>, DType)> {
    let cpu = |n: NumericsChoice| -> (Box<dyn Device>, DType) {
        match n {
            NumericsChoice::F32 => (
                Box::new(CpuDevice {
                    numerics: malus_cpu::Numerics::F32,
                }),
                DType::Fp32,
            ),
            NumericsChoice::Fp16 => (
                Box::new(CpuDevice {
                    numerics: malus_cpu::Numerics::Fp16,
                }),
                DType::Fp16,
            ),
        }
    };
    match s.device {
        DeviceChoice::Cpu => Ok(cpu(s.numerics)),
        DeviceChoice::Ane => {
            let ane = malus_ane::Ane::open().context("--device ane")?;
            Ok((Box::new(AneDevice { ane }), DType::Fp16))
        }
        DeviceChoice::Auto => match malus_ane::Ane::open() {
            Ok(ane) => Ok((Box::new(AneDevice { ane }), DType::Fp16)),
            Err(_) => Ok(cpu(s.numerics)),
        },
    }
}

/// The plan for `--dw`. `auto`: on a Neural Engine whose chip the cost model has constants for,
/// the placement it predicts faster; otherwise dW on the device.
fn plan_for(c: &Config, dtype: DType, dw: DwChoice, device: &dyn Device) -> Result<Plan> {
    let chip = device.chip_family().and_then(Chip::for_family);
    match (dw, chip) {
        (DwChoice::Host, _) => Plan::new(c, dtype, DwPlacement::Host),
        (DwChoice::Device, _) | (DwChoice::Auto, None) => Plan::new(c, dtype, DwPlacement::Device),
        (DwChoice::Auto, Some(chip)) => Ok(auto_plan(c, dtype, chip)?.0),
    }
}

/// Opens the training data: a token shard as is, or a text file tokenized into `out/`.
fn open_data(s: &Settings, tok: &Tok) -> Result<TokenFile> {
    let is_text = s.data.extension().is_none_or(|e| e != "bin");
    if !is_text {
        return TokenFile::open(&s.data);
    }
    ensure!(
        s.data.is_file(),
        "training data {} does not exist",
        s.data.display()
    );
    let cache = s.out.join(format!("tokens-{}.bin", tok.hash));
    if !cache.is_file() {
        eprintln!("tokenizing {} …", s.data.display());
        data::prepare(&[&s.data], tok, &cache)?;
    }
    TokenFile::open(&cache)
}

impl Trainer {
    /// Starts a run, or continues the newest checkpoint in `settings.out` when `resume`.
    pub fn new(settings: Settings, resume: bool) -> Result<Trainer> {
        let c = &settings.model;
        c.validate()?;
        std::fs::create_dir_all(&settings.out)
            .with_context(|| format!("creating {}", settings.out.display()))?;
        let tok = Tok::load(&settings.tokenizer)?;
        ensure!(
            tok.vocab_size() <= c.vocab,
            "tokenizer {} has {} tokens but the model's vocabulary is {}",
            settings.tokenizer.display(),
            tok.vocab_size(),
            c.vocab
        );
        let file = open_data(&settings, &tok)?;
        let data = Dataset::new(file, c.vocab, c.seq, settings.val_fraction)?;
        let val = data.validation(c.seq, settings.eval_batches)?;
        let (device, dtype) = open_device(&settings)?;
        let plan = plan_for(c, dtype, settings.dw, device.as_ref())?;
        let step = Step::new(&plan, device.as_ref())?;
        let fp16 = dtype == DType::Fp16;
        // A resumed run takes its weights from the checkpoint: no need to read the import.
        let params = match &settings.init {
            Some(dir) if !resume => {
                let (hf_config, params) = crate::model::hf::load(dir, c.seq)?;
                ensure!(
                    hf_config == *c,
                    "the run's model config differs from {}/config.json ({c:?} vs {hf_config:?})",
                    dir.display()
                );
                params
            }
            _ => Params::init(c, settings.seed),
        };
        let mut t = Trainer {
            params,
            opt: Optimizer::sgd(&Params::zeros(c), 0.0, 0.0),
            scaler: match settings.loss_scale {
                Some(s) => LossScaler::fixed(s),
                None if fp16 => LossScaler::dynamic(1024.0, 200),
                None => LossScaler::fixed(1.0),
            },
            step_no: 0,
            rng: Rng::new(settings.seed ^ 0x5EED),
            tokens_seen: 0,
            elapsed: 0.0,
            schedule: Schedule {
                max_lr: settings.lr,
                warmup: settings.warmup,
                total: settings.steps,
                min_ratio: settings.min_lr_ratio,
            },
            tok,
            data,
            val,
            step,
            device_name: format!("{}, dW on the {}", device.name(), plan.dw.name()),
            settings,
        };
        t.opt = match t.settings.optimizer {
            OptimizerChoice::AdamW => Optimizer::adamw(
                &t.params,
                AdamWConfig {
                    weight_decay: t.settings.weight_decay,
                    beta2: t.settings.beta2,
                    ..AdamWConfig::default()
                },
            ),
            OptimizerChoice::Sgd => Optimizer::sgd(&t.params, t.settings.momentum, t.settings.weight_decay),
        };
        if resume {
            match checkpoint::latest(&t.settings.out)? {
                Some(path) => t.restore(Checkpoint::load(&path)?, &path)?,
                None => bail!("--resume: no checkpoint in {}", t.settings.out.display()),
            }
        }
        t.step.stage(&t.params)?;
        Ok(t)
    }

    fn restore(&mut self, ck: Checkpoint, path: &Path) -> Result<()> {
        ensure!(
            ck.meta.config == self.settings.model,
            "{}: the checkpoint's model config differs from this run's ({:?} vs {:?})",
            path.display(),
            ck.meta.config,
            self.settings.model
        );
        ensure!(
            ck.meta.tokenizer_hash == self.tok.hash,
            "{}: trained with another tokenizer (fingerprint {} vs {} of {})",
            path.display(),
            ck.meta.tokenizer_hash,
            self.tok.hash,
            self.settings.tokenizer.display()
        );
        self.params = ck.params;
        self.opt = ck.opt;
        self.scaler = ck.meta.scaler;
        self.step_no = ck.meta.step;
        self.rng = Rng::new(ck.meta.rng);
        self.tokens_seen = ck.meta.tokens_seen;
        self.elapsed = ck.meta.elapsed_s;
        Ok(())
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
        })
    }

    /// The checkpoint of the current state (a copy; [`Trainer::save`] writes without one).
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        Ok(Checkpoint {
            meta: self.meta()?,
            params: self.params.clone(),
            opt: self.opt.clone(),
        })
    }

    /// Writes a checkpoint into the run directory and prunes old ones; returns its path.
    pub fn save(&self) -> Result<PathBuf> {
        let path = self.settings.out.join(checkpoint::file_name(self.step_no));
        checkpoint::save(&path, &self.meta()?, &self.params, &self.opt)?;
        checkpoint::prune(&self.settings.out, self.settings.keep)?;
        Ok(path)
    }

    /// Mean loss over the fixed validation windows.
    pub fn validate(&mut self) -> Result<f64> {
        let mut sum = 0.0;
        for w in &self.val {
            sum += self.step.forward(&self.params, w)?;
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
        for _ in 0..accum {
            let toks = self.data.sample(&mut self.rng, c.seq)?;
            loss += self.step.forward(&self.params, &toks)?;
            self.step.backward(scale)?;
        }
        loss /= accum as f64;
        let grads = self.step.take_grads(&self.params, scale * accum as f32);
        let finite = grads.tensors.iter().all(|t| t.data.iter().all(|v| v.is_finite()));
        let apply = self.scaler.update(finite);
        let lr = self.schedule.lr(self.step_no);
        let mut grad_norm = f64::NAN;
        if apply {
            grad_norm = clip(grads, self.settings.clip);
            let changed = self.opt.step(&mut self.params, grads, lr as f32);
            self.step.restage(&self.params, &changed)?;
        }
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
            if self.step_no % self.settings.eval_every == 0 || last {
                m.val_loss = Some(self.validate()?);
            }
            writeln!(log, "{}", serde_json::to_string(&m)?)
                .with_context(|| format!("writing {}", path.display()))?;
            on_metrics(&m);
            let stopping = stop.load(Ordering::SeqCst);
            if self.step_no % self.settings.ckpt_every == 0 || last || stopping {
                self.save()?;
            }
            if stopping {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Exec;
    use crate::kernels::KernelDef;
    use malus_ane::ChipFamily;

    /// A device that only reports a chip family (`plan_for` never compiles).
    struct Reports(Option<ChipFamily>);

    impl Device for Reports {
        fn name(&self) -> String {
            "test".into()
        }
        fn chip_family(&self) -> Option<ChipFamily> {
            self.0
        }
        fn compile(&self, _: &KernelDef) -> Result<Box<dyn Exec>> {
            anyhow::bail!("not in this test")
        }
    }

    #[test]
    fn dw_auto_asks_the_cost_model_for_the_detected_chip() {
        let c = Config::preset("stories110m").unwrap();
        let dw = |f| plan_for(&c, DType::Fp16, DwChoice::Auto, &Reports(f)).unwrap().dw;
        assert_eq!(dw(Some(ChipFamily::M1)), DwPlacement::Host);
        assert_eq!(dw(Some(ChipFamily::M5)), DwPlacement::Device);
        // No chip (the CPU executor) or one the table does not know: the device.
        assert_eq!(dw(None), DwPlacement::Device);
        assert_eq!(dw(Some(ChipFamily::Unknown)), DwPlacement::Device);
    }
}
