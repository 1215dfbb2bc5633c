//! Training: the compiled model's step (a schedule over the kernel table), staging of weights
//! and its adjoint, gradient accumulators, optimizers and the loop.

mod dw_pass;
pub mod frozen;
pub mod grads;
mod kernels;
pub mod lora;
pub mod optim;
pub mod staging;
pub mod step;
pub mod trainer;

pub use step::CompiledModel;
pub use trainer::{Metrics, Trainer};
