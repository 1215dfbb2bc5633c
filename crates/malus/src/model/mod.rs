//! Model configurations, parameters and LoRA adapters.

mod config;
pub mod hf;
pub mod lora;
mod params;

pub use config::Config;
pub use lora::{Adapter, Adapters, Lora, Target};
pub use params::{LayerIds, Params, Tensor};
