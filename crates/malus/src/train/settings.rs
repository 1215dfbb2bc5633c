//! Everything a training run is configured by, with the defaults of `malus train`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::Config;

/// Which executor runs the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceChoice {
    /// The Neural Engine where it opens, else the CPU executor.
    Auto,
    Cpu,
    Ane,
}

/// Arithmetic of the CPU executor (the ANE is always fp16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NumericsChoice {
    F32,
    Fp16,
}

/// Where the weight-gradient matmuls run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DwChoice {
    /// On the ANE: the placement the cost model predicts faster for the detected chip
    /// (`kernels::cost`); on the CPU executor: the device.
    Auto,
    Device,
    Host,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OptimizerChoice {
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
    pub optimizer: OptimizerChoice,
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
    pub numerics: NumericsChoice,
    pub dw: DwChoice,
    /// A text file (tokenized on the fly) or a uint16 token shard (`.bin`).
    pub data: PathBuf,
    pub tokenizer: PathBuf,
    pub out: PathBuf,
}

impl Settings {
    /// The shipped default: a ~6M-parameter Llama on Jane Austen, minutes on two CPU cores.
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
            optimizer: OptimizerChoice::AdamW,
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
            numerics: NumericsChoice::F32,
            dw: DwChoice::Auto,
            data: PathBuf::from("data/austen.txt"),
            tokenizer: PathBuf::from("data/tokenizer.json"),
            out: PathBuf::from("runs/default"),
        }
    }
}
