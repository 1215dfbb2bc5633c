//! Arbitrary bytes as a checkpoint file: `Checkpoint::from_bytes` yields a checkpoint or an
//! error, never a panic (nor an allocation of gigabytes for a config the tensors cannot back);
//! a checkpoint that loads re-serialises, loads back equal, and re-serialises to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use malus::checkpoint::Checkpoint;
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
    // The tensors have the config's names and shapes, and the optimizer one moment per tensor.
    let want = Params::zeros(c);
    assert!(ck.params.check_same_shapes(&want).is_ok());
    for (_, m) in ck.opt.moments() {
        assert_eq!(m.len(), ck.params.tensors.len());
        for (t, s) in ck.params.tensors.iter().zip(m) {
            assert_eq!(t.data.len(), s.len());
        }
    }
    let bytes = ck.to_bytes().expect("a checkpoint that loaded serialises");
    let back = Checkpoint::from_bytes(&bytes, "re-serialised").expect("a re-serialised checkpoint loads");
    assert_eq!(back.meta, ck.meta, "metadata changed in a save/load round trip");
    assert_eq!(back.params, ck.params);
    // Moments may hold NaN (only parameters are checked finite): compare bits.
    assert_eq!(moments(&back.opt), moments(&ck.opt));
    assert_eq!(back.to_bytes().unwrap(), bytes, "saving is not a fixed point");
});
