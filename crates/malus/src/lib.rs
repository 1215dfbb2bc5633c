//! malus: train neural networks on Apple's Neural Engine, and on any CPU through an executor of
//! the very same MIL programs.

pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod device;
pub mod fsutil;
pub mod generate;
pub mod host;
pub mod kernels;
pub mod model;
pub mod npy;
pub mod plot;
pub mod probe;
pub mod reference;
pub mod rng;
pub mod train;
