//! Checkpoints keep their format: the state of `fixtures/checkpoint/README.md`, built and
//! written by today's code, is byte for byte the file an earlier malus wrote, and that file
//! loads into the same state.

use std::path::PathBuf;

use malus::checkpoint::{Checkpoint, FORMAT, Meta, OptimizerMeta};
use malus::train::optim::LossScaler;
use malus::{AdamWConfig, Config, Optimizer, Params, Settings};

fn state() -> Checkpoint {
    let c = Config {
        dim: 32,
        hidden: 64,
        layers: 1,
        heads: 2,
        kv_heads: 2,
        head_dim: 16,
        vocab: 64,
        seq: 16,
        ..Config::preset("tiny").unwrap()
    };
    let mut params = Params::init(&c, 3);
    let g = Params::init(&c, 9);
    let mut opt = Optimizer::adamw(&params, AdamWConfig::default());
    opt.step(&mut params, &g, 1e-3);
    let mut s = Settings::default_run();
    s.model = c.clone();
    let meta = Meta {
        format: FORMAT,
        config: c,
        step: 1,
        rng: 77,
        scaler: LossScaler::fixed(1.0),
        tokenizer_hash: "abc".into(),
        tokens_seen: 16,
        elapsed_s: 0.5,
        optimizer: OptimizerMeta::of(&opt),
        settings: serde_json::to_value(&s).unwrap(),
    };
    Checkpoint { meta, params, opt }
}

#[test]
fn checkpoints_are_written_and_read_as_before() {
    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint/format-v1.safetensors");
    let before = std::fs::read(&file).unwrap();
    let now = state();
    assert!(
        now.to_bytes().unwrap() == before,
        "today's bytes differ from the committed checkpoint"
    );
    assert_eq!(Checkpoint::load(&file).unwrap(), now);
}
