//! malus: train neural networks on Apple's Neural Engine, and on any CPU through an executor of
//! the very same MIL programs.
//!
//! The flow of a step, and where each part lives:
//!
//! ```text
//! Config ──► Plan ──────────► CompiledModel ──► forward / backward ──► grads ──► Optimizer
//! (model)    (kernels:        (device: the      (train::step, a        (train::    (train::optim;
//!            the table,       kernels compiled  schedule over the      grads,      re-stage the
//!            report, cost)    once; staging)    kernel table)          staging)    changed weights)
//! ```
//!
//! - [`model`]: configs, parameters, Hugging Face import. [`kernels`]: one MIL builder per
//!   kernel family and the kernel table. [`plan`]: which kernels a model needs, their accounting
//!   and predicted ANE time. [`device`]: the CPU executor or the Neural Engine. [`host`]: the
//!   few ops that stay on the CPU. [`train`]: the step, staging, accumulators, optimizers, the
//!   loop. [`data`], [`checkpoint`], [`generate`]: tokens in, states out, text out.
//!
//! ```no_run
//! use malus::{AdamWConfig, CompiledModel, Config, Device, Dw, Numerics, Optimizer, Params, Plan};
//! # fn main() -> anyhow::Result<()> {
//! let config = Config::preset("tiny")?;
//! let device = Device::cpu(Numerics::F32); // or Device::open(DeviceChoice::Auto, …)
//! let mut params = Params::init(&config, 0);
//! let mut model = CompiledModel::new(&Plan::for_device(&config, &device, Dw::Auto)?, &device)?;
//! model.stage(&params)?;
//! let mut opt = Optimizer::adamw(&params.tensors, AdamWConfig::default());
//! # let batch = vec![0u32; config.seq + 1];
//! let loss = model.forward(&params, &batch)?;
//! model.backward(1.0)?;
//! let grads = model.take_grads(&params, 1.0)?;
//! let changed = opt.step(&mut params.tensors, &grads.tensors, 3e-3);
//! model.restage(&params, &changed)?;
//! # let _ = loss; Ok(()) }
//! ```

pub mod checkpoint;
pub mod data;
pub mod device;
pub mod fsutil;
pub mod generate;
pub mod host;
pub mod kernels;
pub mod model;
pub mod model_source;
pub mod plan;
pub mod reference;
pub mod rng;
pub mod run_dir;
pub mod settings;
pub mod train;

pub use data::Tok;
pub use device::Device;
pub use model::{Config, Params};
pub use plan::Plan;
pub use settings::{DeviceChoice, Dw, Numerics, OptimizerKind, Settings};
pub use train::optim::{AdamWConfig, Optimizer};
pub use train::{CompiledModel, Metrics, Trainer};
