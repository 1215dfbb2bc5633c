//! Training: the device step, gradient accumulation (and, next, optimizers and the loop).

pub mod grads;
pub mod optim;
pub mod step;

pub use step::Step;
