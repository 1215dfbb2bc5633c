//! A Hugging Face model directory made from the input, read by `model::hf::load_config` and
//! `model::hf::load`: an error or a model, never a panic (nor gigabytes allocated for a config
//! the weights cannot back). A model that loads has the config `load_config` reads, the shapes
//! of `Params::zeros`, and finite values.
//!
//! input: seq byte (seq = 1 + b % 32), then files, each a name byte (index into `FILES`, mod 5),
//! a u32 little-endian length and that many bytes (the last one takes what is left).
#![no_main]

#[path = "scratch.rs"]
mod scratch;

use libfuzzer_sys::fuzz_target;
use malus::Params;
use malus::model::hf;

/// Keep in step with seedgen.
const FILES: [&str; 5] = [
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
];

fuzz_target!(|data: &[u8]| {
    let Some((&s, mut rest)) = data.split_first() else {
        return;
    };
    let seq = 1 + s as usize % 32;
    let dir = scratch::path("hf", "");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    while let Some((&name, r)) = rest.split_first() {
        let (len, r) = match r.split_first_chunk::<4>() {
            Some((l, r)) => (u32::from_le_bytes(*l) as usize, r),
            None => (r.len(), &r[r.len()..]),
        };
        let (bytes, r) = r.split_at(len.min(r.len()));
        std::fs::write(dir.join(FILES[name as usize % FILES.len()]), bytes).unwrap();
        rest = r;
    }
    let config = hf::load_config(dir, seq);
    let Ok((c, p)) = hf::load(dir, seq) else {
        return;
    };
    assert_eq!(config.expect("load succeeded where load_config failed"), c);
    assert_eq!(c.seq, seq);
    assert!(c.validate().is_ok());
    assert!(p.check_same_shapes(&Params::zeros(&c)).is_ok());
    assert!(p.tensors.iter().all(|t| t.data.iter().all(|v| v.is_finite())));
});
