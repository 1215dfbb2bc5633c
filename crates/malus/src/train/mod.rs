//! Training: the device step, gradient accumulation, optimizers, settings and the loop.

pub mod grads;
pub mod host_dw;
pub mod optim;
pub mod settings;
pub mod step;
pub mod trainer;

pub use settings::Settings;
pub use step::Step;
pub use trainer::{Metrics, Trainer};
