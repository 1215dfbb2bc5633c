//! Writing inputs, reading outputs: conversion, sizes, names, lock modes, policies.

use half::f16;

use super::*;
use crate::fake::FakeConfig;
use crate::{Equalize, Error, SurfacePolicy};

/// A fake whose evaluate copies input surface `i` to output surface `i`.
fn copying_fake() -> Arc<FakeBackend> {
    FakeBackend::with_config(FakeConfig {
        on_evaluate: Some(Arc::new(|ins: &[Vec<u8>]| ins.to_vec())),
        ..FakeConfig::default()
    })
}

#[test]
fn fp16_round_trip_through_a_surface() {
    let fake = copying_fake();
    let mut k = open(&fake).compile(&simple_spec()).unwrap();
    let x: Vec<f32> = (0..32).map(|i| i as f32 * 0.3337 - 5.0).collect();
    k.write_input_f32("x", &x).unwrap();
    // The surface holds IEEE half bits, round-to-nearest.
    let raw = fake.surface_contents(0);
    for (i, v) in x.iter().enumerate() {
        let h = f16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]);
        assert_eq!(h, f16::from_f32(*v));
    }
    k.run().unwrap();
    let mut y = vec![0f32; 32];
    k.read_output_f32("y", &mut y).unwrap();
    let expect: Vec<f32> = x.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
    assert_eq!(y, expect);
    let mut yh = vec![f16::ZERO; 32];
    k.read_output_f16(0, &mut yh).unwrap();
    assert_eq!(yh, x.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>());
    drop(k);
    assert_clean(&fake);
}

/// `on_evaluate_model` is handed the program being evaluated — the MIL text and weight files
/// its descriptor carried — so a test can compute its outputs with a CPU executor.
#[test]
fn model_aware_evaluate_sees_the_program() {
    use crate::fake::FakeModel;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<FakeModel>::new()));
    let log = seen.clone();
    let fake = FakeBackend::with_config(FakeConfig {
        on_evaluate_model: Some(Arc::new(move |m: &FakeModel, ins: &[Vec<u8>]| {
            log.lock().unwrap().push(m.clone());
            // The output is the first input's bytes, reversed.
            vec![ins[0].iter().rev().copied().collect()]
        })),
        on_evaluate: Some(Arc::new(|_: &[Vec<u8>]| {
            panic!("the model-aware hook takes precedence")
        })),
        ..FakeConfig::default()
    });
    let mut k = open(&fake).compile(&spec()).unwrap();
    k.run().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].mil, spec().mil_text);
    let mut files = seen[0].weights.clone();
    files.sort();
    let mut want = spec().weights;
    want.sort();
    assert_eq!(files, want);
}

#[test]
fn fp32_outputs_are_read_as_is() {
    let fake = FakeBackend::with_config(FakeConfig {
        on_evaluate: Some(Arc::new(|_: &[Vec<u8>]| {
            let v: Vec<u8> = (0..32).flat_map(|i| (i as f32 * 1.5).to_le_bytes()).collect();
            vec![v]
        })),
        ..FakeConfig::default()
    });
    let mut k = open(&fake).compile(&spec()).unwrap();
    k.run().unwrap();
    let mut y = vec![0f32; 32];
    k.read_output_f32("y", &mut y).unwrap();
    assert_eq!(y, (0..32).map(|i| i as f32 * 1.5).collect::<Vec<_>>());
    let mut bytes = vec![0u8; 128];
    k.read_output_bytes("y", &mut bytes).unwrap();
    assert_eq!(&bytes[4..8], &1.5f32.to_le_bytes());
}

#[test]
fn inputs_by_index_follow_the_spec_not_the_binding() {
    let fake = FakeBackend::new();
    let mut k = open(&fake).compile(&spec()).unwrap();
    // Index 0 is `b` (declared first), although `a` is bound first. Surface 0 is `b`'s.
    k.write_input_f32(0, &[1.0; 32]).unwrap();
    k.write_input_f32("a", &[2.0; 16]).unwrap();
    assert_eq!(&fake.surface_contents(0)[..2], &f16::from_f32(1.0).to_le_bytes());
    assert_eq!(&fake.surface_contents(1)[..2], &f16::from_f32(2.0).to_le_bytes());
}

#[test]
fn evaluate_sees_inputs_in_binding_order() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let fake = FakeBackend::with_config(FakeConfig {
        on_evaluate: Some(Arc::new(move |ins: &[Vec<u8>]| {
            *s2.lock().unwrap() = ins.iter().map(|v| v[0]).collect();
            vec![]
        })),
        ..FakeConfig::default()
    });
    let mut k = open(&fake).compile(&spec()).unwrap();
    k.write_input_bytes("b", &[0xBB; 64]).unwrap();
    k.write_input_bytes("a", &[0xAA; 32]).unwrap();
    k.run().unwrap();
    assert_eq!(*seen.lock().unwrap(), [0xAA, 0xBB], "a before b");
}

#[test]
fn wrong_lengths_are_buffer_size_errors() {
    let fake = FakeBackend::new();
    let mut k = open(&fake).compile(&spec()).unwrap();
    let e = k.write_input_f32("b", &[0.0; 31]).unwrap_err();
    assert!(
        matches!(&e, Error::BufferSize { kernel, name, expected: 32, got: 31 } if kernel == "attn" && name == "b"),
        "{e}"
    );
    let errors = [
        (k.write_input_bytes("a", &[0; 33]).unwrap_err(), 32, 33),
        (k.read_output_f32("y", &mut [0.0; 33]).unwrap_err(), 32, 33),
        (k.read_output_bytes("y", &mut [0; 64]).unwrap_err(), 128, 64),
    ];
    for (e, want, given) in errors {
        assert!(
            matches!(e, Error::BufferSize { expected, got, .. } if expected == want && got == given),
            "{e}"
        );
    }
    let e = k.write_input_f16("b", &[f16::ZERO; 3]).unwrap_err();
    assert!(matches!(e, Error::BufferSize { .. }), "{e}");
}

#[test]
fn unknown_names_and_indices_are_errors() {
    let fake = FakeBackend::new();
    let mut k = open(&fake).compile(&spec()).unwrap();
    let e = k.write_input_f32("y", &[0.0; 32]).unwrap_err();
    assert!(
        matches!(&e, Error::UnknownTensor { direction: "input", name, .. } if name == "y"),
        "{e}"
    );
    let e = k.read_output_f32(1, &mut [0.0; 32]).unwrap_err();
    assert!(
        matches!(&e, Error::UnknownTensor { direction: "output", name, .. } if name == "#1"),
        "{e}"
    );
}

#[test]
fn writes_lock_read_write_and_reads_lock_read_only() {
    let fake = FakeBackend::new();
    let mut k = open(&fake).compile(&simple_spec()).unwrap();
    fake.clear_events();
    k.write_input_f32("x", &[1.0; 32]).unwrap();
    k.read_output_f32("y", &mut [0.0; 32]).unwrap();
    assert_eq!(
        fake.events(),
        [
            Event::Lock {
                surface: 0,
                options: 0
            },
            Event::Unlock {
                surface: 0,
                options: 0
            },
            Event::Lock {
                surface: 1,
                options: 1
            },
            Event::Unlock {
                surface: 1,
                options: 1
            },
        ]
    );
}

#[test]
fn with_input_mut_exposes_exactly_the_tensor_bytes() {
    let fake = FakeBackend::new();
    let mut k = open(&fake).compile(&spec()).unwrap();
    // The fake rounds `a`'s 32 bytes up to 32 and `y`'s 128 to 128; use an odd size to see it.
    let n = k.with_input_mut("a", |b| {
        b.fill(7);
        b.len()
    });
    assert_eq!(n.unwrap(), 32);
    assert!(fake.surface_contents(1).iter().all(|&b| b == 7));
}

#[test]
fn padded_allocations_keep_data_packed_at_offset_zero() {
    let fake = copying_fake();
    let ane = Ane::open_with(fake.clone()).unwrap().with_config(AneConfig {
        surface_policy: SurfacePolicy {
            align: 128,
            min_bytes: 0,
            equalize: Equalize::All,
        },
        ..config()
    });
    let mut k = ane.compile(&spec()).unwrap();
    let sizes: Vec<_> = fake.surface_sizes();
    assert_eq!(sizes, [128, 128, 128]);
    k.write_input_f32("a", &[3.0; 16]).unwrap();
    let raw = fake.surface_contents(1);
    assert_eq!(&raw[..2], &f16::from_f32(3.0).to_le_bytes());
    assert!(raw[32..].iter().all(|&b| b == 0), "padding untouched and zero");
}
