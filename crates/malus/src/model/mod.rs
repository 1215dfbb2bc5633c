//! Model configurations and parameters.

mod config;
pub mod hf;
mod params;

pub use config::Config;
pub use params::{LayerIds, Params, Tensor};
