//! Model configurations, parameters and LoRA adapters.

mod config;
pub mod hf;
pub mod hf_out;
pub mod hf_weights;
pub mod lora;
mod params;
pub mod peft;
mod stored;

pub use config::Config;
pub use lora::{Adapter, Adapters, Lora, Target};
pub use params::{LayerIds, Params, Tensor};
pub use stored::Stored;
