//! A token shard (flat uint16 ids) read through the public API of `data::shards`: `TokenFile`
//! windows, `Dataset` splits, training samples and validation windows. Settings come from an
//! 18-byte header, within what the trainer can pass (vocab 1..=65536, seq 1..=512, a validation
//! fraction in [0, 0.5], up to 16 validation windows); the rest of the input is the file.
//!
//! header: vocab u16 (0 = 65536) | seq-1 u16 (mod 512) | val u8 (/510) | nval u8 (mod 17) |
//! rng seed u64 | window length u16 | window position u16 (all little-endian)
#![no_main]

#[path = "scratch.rs"]
mod scratch;

use libfuzzer_sys::fuzz_target;
use malus::data::shards::MAGIC;
use malus::data::{Dataset, TokenFile};
use malus::rng::Rng;

fn u16_at(d: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([d[i], d[i + 1]])
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 18 {
        return;
    }
    let vocab = match u16_at(data, 0) {
        0 => 65536,
        v => v as usize,
    };
    let seq = 1 + (u16_at(data, 2) % 512) as usize;
    let val_fraction = data[4] as f64 / 510.0;
    let nval = (data[5] % 17) as usize;
    let seed = u64::from_le_bytes(data[6..14].try_into().unwrap());
    let n = u16_at(data, 14) as usize;
    let pos = u16_at(data, 16) as u64;
    let file = &data[18..];
    let path = scratch::path("shard", ".bin");
    std::fs::write(path, file).unwrap();
    let tokens: Vec<u32> = file
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
        .collect();

    // A headed file (uint32 ids and/or a loss mask): never a panic, windows and samples of the
    // asked length with ids below the vocabulary and one weight per target. (The exact oracle
    // below is the raw uint16 format's; the headed one has no oracle yet.)
    if file.starts_with(&MAGIC) {
        let Ok(f) = TokenFile::open(path) else { return };
        let _ = f.window(pos, n, vocab);
        let _ = f.mask(pos, n);
        let Ok(d) = Dataset::new(f, vocab, seq, val_fraction) else { return };
        let mut rng = Rng::new(seed);
        for _ in 0..4 {
            if let Ok(w) = d.sample(&mut rng, seq) {
                assert_eq!(w.tokens.len(), seq + 1);
                assert!(w.tokens.iter().all(|&t| (t as usize) < vocab));
                assert!(w.weights.is_none_or(|m| m.len() == seq));
            }
        }
        let _ = d.validation(seq, nval);
        return;
    }
    let f = match TokenFile::open(path) {
        Ok(f) => f,
        Err(_) => {
            assert!(file.len() % 2 == 1, "an even-sized file was refused");
            return;
        }
    };
    assert_eq!(f.len as usize, tokens.len());
    // A window reads exactly the file's ids, and fails exactly when it is out of range or holds
    // an id at or above the vocabulary.
    for (p, len) in [(pos, n), (0, n), (pos, 1), (f.len.saturating_sub(n as u64), n)] {
        let want = tokens.get(p as usize..p as usize + len);
        match f.window(p, len, vocab) {
            Ok(w) => assert_eq!(Some(w.as_slice()), want),
            Err(_) => assert!(want.is_none_or(|w| w.iter().any(|&t| t as usize >= vocab))),
        }
    }
    let Ok(d) = Dataset::new(f, vocab, seq, val_fraction) else {
        assert!(tokens.len() < 2 * (seq + 1), "a long enough file was refused");
        return;
    };
    let len = tokens.len() as u64;
    // At least seq + 1 tokens on each side of the split.
    assert!(d.train_end > seq as u64 && len - d.train_end > seq as u64);
    let mut rng = Rng::new(seed);
    for _ in 0..4 {
        if let Ok(w) = d.sample(&mut rng, seq) {
            assert_eq!(w.tokens.len(), seq + 1);
            assert!(w.tokens.iter().all(|&t| (t as usize) < vocab));
        }
    }
    if let Ok(v) = d.validation(seq, nval) {
        assert_eq!(v.len(), nval);
        if let Some(first) = v.first() {
            let at = d.train_end as usize;
            assert_eq!(first.tokens.as_slice(), &tokens[at..at + seq + 1]);
        }
        assert!(v.iter().all(|w| w.tokens.len() == seq + 1));
    }
});
