//! Checkpoints keep their format: the state of `fixtures/checkpoint/README.md`, built and
//! written by today's code, holds the same tensors and metadata as the file an earlier malus
//! wrote (plus the per-tensor checksums added since), that file still loads into the same
//! state, and a flipped byte anywhere in a tensor is caught, naming the tensor.

use std::path::PathBuf;

use malus::checkpoint::{CHECKSUMS, Checkpoint, FORMAT, Meta, OptimizerMeta, Weights};
use malus::train::optim::LossScaler;
use malus::{AdamWConfig, Config, Optimizer, Params, Settings};
use safetensors::SafeTensors;

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
    let mut opt = Optimizer::adamw(&params.tensors, AdamWConfig::default());
    opt.step(&mut params.tensors, &g.tensors, 1e-3);
    let mut s = Settings::default_run();
    s.model = c.clone();
    // The defaults as they were when the fixture was written.
    s.data = "data/austen.txt".into();
    s.tokenizer = "data/tokenizer.json".into();
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
        lora: None,
    };
    Checkpoint {
        meta,
        weights: Weights::Model(params),
        opt,
    }
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint/format-v1.safetensors")
}

#[test]
fn checkpoints_are_written_and_read_as_before() {
    let before = std::fs::read(fixture()).unwrap();
    let now = state();
    let bytes = now.to_bytes().unwrap();
    let (old, new) = (
        SafeTensors::deserialize(&before).unwrap(),
        SafeTensors::deserialize(&bytes).unwrap(),
    );
    let (mut names, mut old_names) = (new.names(), old.names());
    names.sort();
    old_names.sort();
    assert_eq!(names, old_names);
    for n in names {
        let (a, b) = (old.tensor(n).unwrap(), new.tensor(n).unwrap());
        assert_eq!(
            (a.dtype(), a.shape(), a.data()),
            (b.dtype(), b.shape(), b.data()),
            "{n}"
        );
    }
    let meta = |b: &[u8]| {
        SafeTensors::read_metadata(b)
            .unwrap()
            .1
            .metadata()
            .clone()
            .unwrap()
    };
    let (mo, mn) = (meta(&before), meta(&bytes));
    assert_eq!(mo["malus"], mn["malus"], "the training-state JSON changed");
    assert!(!mo.contains_key(CHECKSUMS) && mn.contains_key(CHECKSUMS));
    assert_eq!(mn.len(), 2, "{mn:?}");
    // The old file (no checksums) still loads, into the same state.
    assert_eq!(Checkpoint::load(&fixture()).unwrap(), now);
    assert_eq!(Checkpoint::from_bytes(&bytes, "new").unwrap(), now);
}

/// One flipped byte in each tensor's data is detected and named.
#[test]
fn a_flipped_byte_in_any_tensor_is_caught() {
    let bytes = state().to_bytes().unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, usize, usize)> = st
        .iter()
        .map(|(n, v)| {
            let start = v.data().as_ptr() as usize - bytes.as_ptr() as usize;
            (n.to_string(), start, v.data().len())
        })
        .collect();
    assert_eq!(
        tensors.len(),
        3 * 11,
        "params and two AdamW moments of 11 tensors"
    );
    for (name, start, len) in tensors {
        for at in [start, start + len / 2, start + len - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            let err = format!("{:#}", Checkpoint::from_bytes(&bad, "ck").unwrap_err());
            assert!(
                err.contains(&name) && err.contains("corrupt"),
                "byte {at} of {name}: {err}"
            );
        }
    }
}

/// A checkpoint whose config claims sizes its file cannot hold is refused before anything is
/// allocated for them (the fuzzer's huge-vocabulary inputs); a size past any tensor extent is
/// refused by key.
#[test]
fn absurd_configs_are_refused_before_allocating() {
    let mut ck = state();
    ck.meta.config.vocab = 200_000_000;
    let err = format!(
        "{:#}",
        Checkpoint::from_bytes(&ck.to_bytes().unwrap(), "ck").unwrap_err()
    );
    assert!(
        err.contains("its config needs") && err.contains("the file has"),
        "{err}"
    );
    ck.meta.config.vocab = 1 << 32;
    ck.meta.config.dim = 1 << 32;
    let err = format!(
        "{:#}",
        Checkpoint::from_bytes(&ck.to_bytes().unwrap(), "ck").unwrap_err()
    );
    assert!(err.contains("exceeds"), "{err}");
}

/// The checkpoints the fuzzer made the reader allocate for or overflow on (fuzz/regressions/)
/// are now named errors.
#[test]
fn the_fuzzers_checkpoints_are_errors() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/checkpoint_read");
    for name in ["huge-vocab.safetensors", "overflow-dims.safetensors"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let err = format!("{:#}", Checkpoint::from_bytes(&bytes, name).unwrap_err());
        assert!(
            err.contains("exceeds") || err.contains("its config needs"),
            "{name}: {err}"
        );
    }
}

/// The fuzzer's checkpoint whose settings hold `1.100000001490116`: metadata numbers are the
/// same after a save and a load (they once drifted by 1 ulp each time, serde_json's default
/// float parsing being inexact), and saving again gives the same bytes, in memory and on disk.
#[test]
fn metadata_floats_survive_a_save_and_load() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/checkpoint_read/settings-float-drifts.safetensors");
    let ck = Checkpoint::from_bytes(&std::fs::read(path).unwrap(), "drift").unwrap();
    let bytes = ck.to_bytes().unwrap();
    let back = Checkpoint::from_bytes(&bytes, "again").unwrap();
    assert_eq!(back.meta, ck.meta);
    assert_eq!(back.to_bytes().unwrap(), bytes, "saving again gives other bytes");
    // A saved file holds the same bytes (the header's keys in one order, whatever the process).
    let dir = std::env::temp_dir().join(format!("malus-ck-bytes-{}", std::process::id()));
    let file = dir.join("ck.safetensors");
    malus::checkpoint::save(&file, &back.meta, back.weights.tensors(), &back.opt).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    std::fs::remove_dir_all(&dir).unwrap();
    // Numbers that need all 17 digits, everywhere metadata holds an f64.
    let mut ck = state();
    ck.meta.elapsed_s = 0.1 + 0.2;
    ck.meta.config.rope_theta = 1.000_000_000_000_000_2;
    ck.meta.settings["weight_decay"] = serde_json::json!(1.100_000_001_490_116_1);
    let back = Checkpoint::from_bytes(&ck.to_bytes().unwrap(), "ulps").unwrap();
    assert_eq!(back.meta, ck.meta);
}
