//! Arbitrary bytes as a checkpoint file: `Checkpoint::from_bytes` yields a checkpoint or an
//! error, never a panic (nor an allocation of gigabytes for a config the tensors cannot back);
//! a checkpoint that loads re-serialises, loads back equal, and re-serialises to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use malus::checkpoint::Checkpoint;
use malus::model::{Adapters, Tensor};
use malus::{Optimizer, Params};

fn moments(o: &Optimizer) -> Vec<Vec<u32>> {
    o.moments()
        .into_iter()
        .flat_map(|(_, m)| m.iter().map(|t| t.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(ck) = Checkpoint::from_bytes(data, "fuzz") else {
        return;
    };
    let c = &ck.meta.config;
    assert!(c.validate().is_ok());
    // The tensors have the config's (or its adapters') names and shapes, and the optimizer one
    // moment per tensor.
    let want = match &ck.meta.lora {
        None => Params::zeros(c).tensors,
        Some(l) => Adapters::zeros(c, &l.lora).tensors,
    };
    let shape = |ts: &[Tensor]| ts.iter().map(|t| (t.name.clone(), t.shape.clone())).collect::<Vec<_>>();
    assert_eq!(shape(ck.weights.tensors()), shape(&want));
    for (_, m) in ck.opt.moments() {
        assert_eq!(m.len(), want.len());
        for (t, s) in ck.weights.tensors().iter().zip(m) {
            assert_eq!(t.data.len(), s.len());
        }
    }
    let bytes = ck.to_bytes().expect("a checkpoint that loaded serialises");
    let back = Checkpoint::from_bytes(&bytes, "re-serialised").expect("a re-serialised checkpoint loads");
    assert_eq!(back.meta, ck.meta, "metadata changed in a save/load round trip");
    assert_eq!(back.weights, ck.weights);
    // Moments may hold NaN (only parameters are checked finite): compare bits.
    assert_eq!(moments(&back.opt), moments(&ck.opt));
    assert_eq!(back.to_bytes().unwrap(), bytes, "saving is not a fixed point");
});
