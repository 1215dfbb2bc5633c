//! malus: train neural networks on Apple's Neural Engine, and on any CPU through an executor of
//! the very same MIL programs.

pub mod cli;
pub mod kernels;
pub mod model;
