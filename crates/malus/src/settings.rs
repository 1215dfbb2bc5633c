//! Everything a training run is configured by, with the defaults of `malus train`, and the
//! choices it is made of. The enums are the command line's values too (clap's `ValueEnum`), so
//! the CLI and the library spell each choice once.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::data::source::Tokenizing;
use crate::model::{Config, Lora};

/// Which executor runs the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
pub enum DeviceChoice {
    /// The Neural Engine where it opens, else the CPU executor.
    Auto,
    Cpu,
    Ane,
}

/// Arithmetic of the CPU executor (the Neural Engine is always fp16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
pub enum Numerics {
    /// f32 kernels: the fast path on a CPU.
    F32,
    /// fp16 kernels with every op rounded as on the ANE: its stand-in for tests.
    Fp16,
}

/// Where the weight-gradient matmuls run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
pub enum Dw {
    /// On a Neural Engine: the placement the cost model predicts faster for its chip
    /// (`plan::cost`); elsewhere: the device.
    Auto,
    /// dW kernels on the device.
    Device,
    /// f32 GEMMs on the host over the backward kernels' taps.
    Host,
}

impl Dw {
    /// `device` or `host` (`auto` before it is resolved), as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            Dw::Auto => "auto",
            Dw::Device => "device",
            Dw::Host => "host",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
pub enum OptimizerKind {
    #[value(name = "adamw")]
    AdamW,
    Sgd,
}

/// A training run's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub model: Config,
    /// A Hugging Face model directory whose weights the run starts from (`model` must be its
    /// config); `None`: random initialisation.
    pub init: Option<PathBuf>,
    /// Optimizer updates.
    pub steps: u64,
    /// Sequences per update (gradient accumulation).
    pub accum: usize,
    pub lr: f64,
    pub warmup: u64,
    pub min_lr_ratio: f64,
    pub optimizer: OptimizerKind,
    pub weight_decay: f32,
    pub beta2: f32,
    pub momentum: f32,
    /// Global-norm clip (0 disables).
    pub clip: f64,
    /// `None`: dynamic loss scaling for fp16 numerics, none for f32. `Some(s)`: fixed.
    pub loss_scale: Option<f32>,
    pub seed: u64,
    pub eval_every: u64,
    pub eval_batches: usize,
    pub ckpt_every: u64,
    pub keep: usize,
    pub val_fraction: f64,
    pub device: DeviceChoice,
    pub numerics: Numerics,
    pub dw: Dw,
    /// A text file or JSONL instruction data (tokenized into `out` once), or a token file
    /// (`.bin`); `builtin:…` names a file shipped in the binary (`data::input`).
    pub data: PathBuf,
    /// Validation data of the same kinds; `None`: the last `val_fraction` of `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_data: Option<PathBuf>,
    /// JSONL data: only completions and assistant turns count in the loss.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mask_prompt: bool,
    /// JSONL data: the chat template to render records with instead of the tokenizer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<PathBuf>,
    pub tokenizer: PathBuf,
    pub out: PathBuf,
    /// Train LoRA adapters on the frozen `init` model instead of every weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<Lora>,
    /// A LoRA run starts from this PEFT adapter directory instead of fresh adapters (its
    /// settings must be `lora`'s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<PathBuf>,
}

impl Settings {
    /// Checks every setting before any work, naming the flag: numbers finite and in range,
    /// counts positive.
    pub fn validate(&self) -> Result<()> {
        let finite = |flag: &str, v: f64, ok: bool, want: &str| -> Result<()> {
            ensure!(v.is_finite() && ok, "--{flag} must be {want} (got {v})");
            Ok(())
        };
        finite("lr", self.lr, self.lr > 0.0, "a finite number > 0")?;
        finite(
            "clip",
            self.clip,
            self.clip >= 0.0,
            "a finite number ≥ 0 (0 disables clipping)",
        )?;
        let wd = self.weight_decay as f64;
        finite("weight-decay", wd, wd >= 0.0, "a finite number ≥ 0")?;
        let b2 = self.beta2 as f64;
        finite("beta2", b2, (0.0..1.0).contains(&b2), "in [0, 1)")?;
        let mo = self.momentum as f64;
        finite("momentum", mo, (0.0..1.0).contains(&mo), "in [0, 1)")?;
        let r = self.min_lr_ratio;
        finite("min-lr-ratio", r, (0.0..=1.0).contains(&r), "in [0, 1]")?;
        let v = self.val_fraction;
        finite("val-fraction", v, v > 0.0 && v < 1.0, "in (0, 1)")?;
        if let Some(ls) = self.loss_scale {
            finite("loss-scale", ls as f64, ls > 0.0, "a finite number > 0")?;
        }
        for (flag, n) in [
            ("steps", self.steps),
            ("accum", self.accum as u64),
            ("eval-every", self.eval_every),
            ("eval-batches", self.eval_batches as u64),
            ("ckpt-every", self.ckpt_every),
            ("keep", self.keep as u64),
        ] {
            ensure!(n > 0, "--{flag} must be positive");
        }
        self.model.validate()?;
        if let Some(l) = &self.lora {
            ensure!(
                self.init.is_some(),
                "--lora needs --init: the pretrained model directory whose weights the adapters adapt"
            );
            l.validate(&self.model)?;
        }
        ensure!(
            self.adapter.is_none() || self.lora.is_some(),
            "--adapter continues a LoRA adapter: it needs --lora"
        );
        Ok(())
    }

    /// The shipped default: a ~6M-parameter Llama on Jane Austen, minutes on two CPU cores.
    /// How this run's text and JSONL data become tokens.
    pub fn tokenizing(&self) -> Tokenizing<'_> {
        Tokenizing {
            tokenizer: &self.tokenizer,
            chat_template: self.chat_template.as_deref(),
            mask_prompt: self.mask_prompt,
        }
    }

    pub fn default_run() -> Settings {
        Settings {
            model: Config {
                dim: 256,
                hidden: 704,
                layers: 6,
                heads: 8,
                kv_heads: 8,
                head_dim: 32,
                vocab: 4096,
                seq: 128,
                rope_theta: 10000.0,
                norm_eps: 1e-5,
                qk_norm: false,
                tied: true,
                residual_scale: 1.0,
            },
            init: None,
            steps: 450,
            accum: 4,
            lr: 2e-3,
            warmup: 40,
            min_lr_ratio: 0.1,
            optimizer: OptimizerKind::AdamW,
            weight_decay: 0.1,
            beta2: 0.95,
            momentum: 0.9,
            clip: 1.0,
            loss_scale: None,
            seed: 1,
            eval_every: 50,
            eval_batches: 16,
            ckpt_every: 100,
            keep: 3,
            val_fraction: 0.05,
            device: DeviceChoice::Auto,
            numerics: Numerics::F32,
            dw: Dw::Auto,
            data: PathBuf::from(crate::data::input::CORPUS),
            val_data: None,
            mask_prompt: false,
            chat_template: None,
            tokenizer: PathBuf::from(crate::data::input::TOKENIZER),
            out: PathBuf::from("runs/default"),
            lora: None,
            adapter: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named_by_flag() {
        assert!(Settings::default_run().validate().is_ok());
        type Case = (&'static str, fn(&mut Settings));
        let cases: [Case; 8] = [
            ("--lr must be a finite number > 0 (got NaN)", |s| s.lr = f64::NAN),
            ("--lr must be a finite number > 0 (got inf)", |s| {
                s.lr = f64::INFINITY
            }),
            ("--lr must be a finite number > 0 (got -0.1)", |s| s.lr = -0.1),
            ("--clip must be", |s| s.clip = f64::NAN),
            ("--beta2 must be in [0, 1) (got 1)", |s| s.beta2 = 1.0),
            ("--loss-scale must be", |s| s.loss_scale = Some(f32::INFINITY)),
            ("--accum must be positive", |s| s.accum = 0),
            ("model config: vocab must be positive", |s| s.model.vocab = 0),
        ];
        for (want, f) in cases {
            let mut s = Settings::default_run();
            f(&mut s);
            let err = s.validate().unwrap_err().to_string();
            assert!(err.starts_with(want), "{want}: {err}");
        }
    }
}
