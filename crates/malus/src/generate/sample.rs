//! Picking the next token from logits: greedy, or temperature with an optional top-p nucleus,
//! from a seeded generator so the same seed gives the same text.

use anyhow::{Result, ensure};

use crate::rng::Rng;

/// How to pick each next token.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleOptions {
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Nucleus sampling: draw only from the most likely tokens whose probabilities add up to
    /// at least `top_p` (1 keeps them all; 0 keeps only the top token).
    pub top_p: f32,
    /// Most tokens to generate (the stop token, if met, ends earlier and is not counted).
    pub max_tokens: usize,
    /// Seed of the sampling random numbers: the same seed gives the same text.
    pub seed: u64,
    /// A token that ends generation; it is not part of the output.
    pub stop: Option<u32>,
}

impl Default for SampleOptions {
    fn default() -> SampleOptions {
        SampleOptions {
            temperature: 0.8,
            top_p: 0.95,
            max_tokens: 256,
            seed: 42,
            stop: None,
        }
    }
}

impl SampleOptions {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.temperature.is_finite() && self.temperature >= 0.0,
            "temperature {} must be finite and ≥ 0",
            self.temperature
        );
        ensure!(
            (0.0..=1.0).contains(&self.top_p),
            "top_p {} must be in [0, 1]",
            self.top_p
        );
        Ok(())
    }
}

/// Index of the largest logit (the first of equals; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

/// Picks the next token from `logits` under `opts` (greedy at temperature 0, which draws no
/// random number).
pub fn sample(logits: &[f32], opts: &SampleOptions, rng: &mut Rng) -> u32 {
    if opts.temperature == 0.0 {
        return argmax(logits);
    }
    let t = opts.temperature as f64;
    let m = logits[argmax(logits) as usize] as f64;
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let e = ((l as f64 - m) / t).exp();
            (i as u32, if e.is_nan() { 0.0 } else { e })
        })
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let mut mass = total;
    if opts.top_p < 1.0 {
        // Stable sort: equal probabilities keep index order, so the draw is reproducible.
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let want = opts.top_p as f64 * total;
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            acc += p.1;
            if acc >= want {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
        mass = acc.min(total);
    }
    let u = rng.next_f64() * mass;
    let mut acc = 0.0;
    for &(id, p) in &probs {
        acc += p;
        if u < acc {
            return id;
        }
    }
    probs.last().map_or(0, |p| p.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_top_p_and_temperature() {
        let mut rng = Rng::new(9);
        let opts = |temperature, top_p| SampleOptions {
            temperature,
            top_p,
            ..Default::default()
        };
        // A tiny nucleus keeps only the most likely token, whatever the temperature.
        for _ in 0..50 {
            let logits = rng.uniform_vec(100, 5.0);
            assert_eq!(sample(&logits, &opts(1.5, 1e-6), &mut rng), argmax(&logits));
            assert_eq!(sample(&logits, &opts(0.0, 1.0), &mut rng), argmax(&logits));
        }
        // Probabilities 0.5, 0.3, 0.2: top-p 0.7 keeps the first two in ratio 5:3.
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let mut counts = [0usize; 3];
        for _ in 0..20000 {
            counts[sample(&logits, &opts(1.0, 0.7), &mut rng) as usize] += 1;
        }
        assert_eq!(counts[2], 0);
        let frac = counts[0] as f64 / 20000.0;
        assert!((frac - 0.625).abs() < 0.02, "{counts:?}");
        // Without a nucleus the draw follows the softmax.
        let mut counts = [0usize; 3];
        for _ in 0..20000 {
            counts[sample(&logits, &opts(1.0, 1.0), &mut rng) as usize] += 1;
        }
        assert!((counts[2] as f64 / 20000.0 - 0.2).abs() < 0.02, "{counts:?}");
    }
}
