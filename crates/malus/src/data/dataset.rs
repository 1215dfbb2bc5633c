//! A token file as training data: a held-out tail is the validation split, training windows are
//! sampled deterministically from a seed, and a window carries its loss weights when the file
//! has a mask. Windows are cut anywhere in the packed stream, so one may span documents.

use anyhow::{Result, bail, ensure};

use super::shards::TokenFile;
use crate::rng::Rng;

/// How many times [`Dataset::sample`] draws again a window with no counted target.
pub const REDRAWS: usize = 1000;

/// A training or validation window: `seq + 1` tokens (inputs `tokens[..seq]`, targets
/// `tokens[1..]`) and, from a file with a mask, one loss weight per target.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub tokens: Vec<u32>,
    /// `seq` weights, 1.0 where target `tokens[i + 1]` counts in the loss and 0.0 where it
    /// does not (the mask byte of token `i + 1`); `None` when every target counts.
    pub weights: Option<Vec<f32>>,
}

impl Window {
    /// The loss weights, all ones when the file has no mask.
    pub fn loss_weights(&self) -> Vec<f32> {
        match &self.weights {
            Some(w) => w.clone(),
            None => vec![1.0; self.tokens.len().saturating_sub(1)],
        }
    }
}

/// A token file split into a training head and a validation tail, or a training file and a
/// separate validation file.
#[derive(Debug)]
pub struct Dataset {
    pub file: TokenFile,
    /// Tokens `[0, train_end)` train; without `val_file`, `[train_end, len)` validate.
    pub train_end: u64,
    /// The validation file (`--val-data`), when not the tail of `file`.
    pub val_file: Option<TokenFile>,
    pub vocab: usize,
}

fn ensure_len(file: &TokenFile, need: u64, seq: usize) -> Result<()> {
    ensure!(
        file.len >= need,
        "{}: {} tokens is too short for sequences of {seq} (need at least {need})",
        file.path.display(),
        file.len
    );
    Ok(())
}

impl Dataset {
    /// Holds out the last `val_fraction` of the file (at least `seq + 1` tokens each side).
    pub fn new(file: TokenFile, vocab: usize, seq: usize, val_fraction: f64) -> Result<Dataset> {
        ensure_len(&file, 2 * (seq as u64 + 1), seq)?;
        let val = ((file.len as f64 * val_fraction) as u64).max(seq as u64 + 1);
        Ok(Dataset {
            train_end: file.len - val,
            file,
            val_file: None,
            vocab,
        })
    }

    /// Trains on all of `train` and validates on `val`.
    pub fn with_validation(train: TokenFile, val: TokenFile, vocab: usize, seq: usize) -> Result<Dataset> {
        ensure_len(&train, seq as u64 + 1, seq)?;
        ensure_len(&val, seq as u64 + 1, seq)?;
        Ok(Dataset {
            train_end: train.len,
            file: train,
            val_file: Some(val),
            vocab,
        })
    }

    /// The window of `seq + 1` tokens at `pos` of the training file.
    pub fn window(&self, pos: u64, seq: usize) -> Result<Window> {
        window_of(&self.file, pos, seq, self.vocab)
    }

    /// A random training window of `seq + 1` tokens. With a mask, a window none of whose
    /// targets counts (inside one long prompt) teaches nothing and is drawn again, up to
    /// [`REDRAWS`] times before the file is called too sparse.
    pub fn sample(&self, rng: &mut Rng, seq: usize) -> Result<Window> {
        let span = self.train_end - seq as u64; // ≥ 1 by construction
        for _ in 0..REDRAWS {
            let w = self.window(rng.below(span), seq)?;
            if w.weights.as_ref().is_none_or(|m| m.iter().any(|&v| v > 0.0)) {
                return Ok(w);
            }
        }
        bail!(
            "{}: {REDRAWS} random windows of {seq} tokens in a row had no token that counts in the \
             loss: the mask leaves too little (are the prompts longer than --seq?)",
            self.file.path.display()
        )
    }

    /// `n` evenly spaced validation windows (the same every time).
    pub fn validation(&self, seq: usize, n: usize) -> Result<Vec<Window>> {
        let (file, start) = match &self.val_file {
            Some(v) => (v, 0),
            None => (&self.file, self.train_end),
        };
        let span = file.len - start - seq as u64;
        (0..n as u64)
            .map(|i| window_of(file, start + span * i / n.max(1) as u64, seq, self.vocab))
            .collect()
    }
}

fn window_of(file: &TokenFile, pos: u64, seq: usize, vocab: usize) -> Result<Window> {
    let tokens = file.window(pos, seq + 1, vocab)?;
    let weights = file
        .mask(pos + 1, seq)?
        .map(|m| m.into_iter().map(|b| if b { 1.0 } else { 0.0 }).collect());
    Ok(Window { tokens, weights })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shards::{write_token_file, write_tokens};

    #[test]
    fn splits_samples_and_weights() {
        let dir = std::env::temp_dir().join(format!("malus-dataset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.bin");
        let ids: Vec<u32> = (0..1000).map(|i| i % 50).collect();
        write_tokens(&p, &ids).unwrap();
        let d = Dataset::new(TokenFile::open(&p).unwrap(), 50, 16, 0.1).unwrap();
        assert_eq!(d.train_end, 900);
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            let w = d.sample(&mut rng, 16).unwrap();
            assert_eq!((w.tokens.len(), w.weights.as_ref()), (17, None));
            assert_eq!(w.loss_weights(), vec![1.0; 16]);
        }
        let v = d.validation(16, 4).unwrap();
        assert_eq!(v[0].tokens[0], 900 % 50);

        // Every third token counts: the weight of target i is the mask of token i + 1.
        let mask: Vec<bool> = (0..1000).map(|i| i % 3 == 0).collect();
        write_token_file(&p, &ids, Some(&mask), 50).unwrap();
        let d = Dataset::new(TokenFile::open(&p).unwrap(), 50, 4, 0.1).unwrap();
        let w = d.window(10, 4).unwrap();
        assert_eq!(w.tokens, vec![10, 11, 12, 13, 14]);
        assert_eq!(w.weights, Some(vec![0.0, 1.0, 0.0, 0.0]));
        let v = d.validation(4, 2).unwrap();
        assert!(v.iter().all(|w| w.weights.as_ref().unwrap().len() == 4));

        // Windows with no counted target are drawn again; a file with none is refused by name.
        let sparse: Vec<bool> = (0..1000).map(|i| i % 25 == 0).collect();
        write_token_file(&p, &ids, Some(&sparse), 50).unwrap();
        let d = Dataset::new(TokenFile::open(&p).unwrap(), 50, 4, 0.1).unwrap();
        for _ in 0..50 {
            let w = d.sample(&mut rng, 4).unwrap();
            assert!(w.weights.unwrap().contains(&1.0));
        }
        write_token_file(&p, &ids, Some(&[false; 1000]), 50).unwrap();
        let d = Dataset::new(TokenFile::open(&p).unwrap(), 50, 4, 0.1).unwrap();
        let e = d.sample(&mut rng, 4).unwrap_err().to_string();
        assert!(e.contains("t.bin") && e.contains("no token that counts"), "{e}");

        // A separate validation file: training uses the whole first file.
        let v = dir.join("v.bin");
        write_tokens(&v, &[7; 40]).unwrap();
        write_tokens(&p, &ids).unwrap();
        let d = Dataset::with_validation(TokenFile::open(&p).unwrap(), TokenFile::open(&v).unwrap(), 50, 16)
            .unwrap();
        assert_eq!(d.train_end, 1000);
        let w = d.validation(16, 3).unwrap();
        assert!(w.iter().all(|w| w.tokens == vec![7; 17]), "{w:?}");

        let short = dir.join("short.bin");
        write_tokens(&short, &[1, 2, 3]).unwrap();
        assert!(Dataset::new(TokenFile::open(&short).unwrap(), 50, 16, 0.1).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
