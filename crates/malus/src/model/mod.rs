//! Model configurations and parameters.

mod config;
mod params;

pub use config::Config;
pub use params::{LayerIds, Params, Tensor};
