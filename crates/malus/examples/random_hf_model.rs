//! Writes a Hugging Face model directory of a preset's shape with random weights, stored in
//! bf16 as shipped models are, and the shipped tokenizer: a stand-in for Llama-2-7B or
//! Llama-3.2-3B in memory and speed benchmarks (`bench/lora_memory.sh`), where only the shape
//! matters. The weights are made in f32 first (4 bytes per parameter of memory).
//!
//! Run: `cargo run --release --example random_hf_model -- llama3.2-3b /tmp/llama3b`

use std::path::PathBuf;

use malus::model::hf_out::{self, StoreDtype};
use malus::{Config, Params};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [preset, out] = &args[..] else {
        anyhow::bail!("usage: random_hf_model PRESET OUT_DIR");
    };
    let c = Config {
        residual_scale: 1.0,
        ..Config::preset(preset)?
    };
    eprintln!(
        "{preset}: {:.2}B parameters, writing {out}",
        c.num_params() as f64 / 1e9
    );
    let p = Params::init(&c, 1);
    let config = hf_out::config_json(&c, StoreDtype::Bf16)?;
    let tok = PathBuf::from("data/tokenizer.json");
    let files = hf_out::write_model_dir(out.as_ref(), &c, &p, StoreDtype::Bf16, &config, &tok)?;
    eprintln!("wrote {}", files.join(", "));
    Ok(())
}
