//! Model configurations (and, later, parameters and weight I/O).

mod config;

pub use config::Config;
