//! The KV-cached host forward: one token at a time through every layer, in f32 with the
//! kernels of [`crate::host::ops`]. Independent of the device kernels, so a checkpoint can be
//! sampled on any machine.
//!
//! Context window: the cache holds at most `config.seq` positions (RoPE was trained for those).
//! When a token arrives and the cache is full, [`Generator::push`] restarts the window from the
//! last `seq / 2` tokens (re-encoding them at positions `0..seq/2`), so generation can run for
//! any number of tokens while every prediction still sees at least `seq / 2` tokens of context.
//! [`Generator::step`] is the strict form that refuses a token past the window instead.

use anyhow::{Result, anyhow, ensure};

use crate::host::ops::{add_scaled, attend, head_rmsnorm, matvec, rmsnorm, rope, rope_sin_cos, silu_gate};
use crate::model::{Config, Params};

/// A decoding session: the model's weights and a KV cache of the tokens seen so far.
pub struct Generator<'a> {
    cfg: &'a Config,
    params: &'a Params,
    /// Per layer, keys after RoPE, `[pos][kv_dim]` for `pos < window.len()`.
    k: Vec<Vec<f32>>,
    /// Per layer, values `[pos][kv_dim]`.
    v: Vec<Vec<f32>>,
    /// The tokens whose keys and values are cached; the index is the RoPE position.
    window: Vec<u32>,
    /// How many times the window restarted (see [`Generator::push`]).
    slides: usize,
}

impl<'a> Generator<'a> {
    /// Checks the parameters have the config's shapes, so a mismatched checkpoint fails here
    /// rather than as a slice panic mid-forward.
    pub fn new(cfg: &'a Config, params: &'a Params) -> Result<Generator<'a>> {
        cfg.validate()?;
        params.check(cfg)?;
        Ok(Generator {
            cfg,
            params,
            k: vec![Vec::with_capacity(cfg.seq * cfg.kv_dim()); cfg.layers],
            v: vec![Vec::with_capacity(cfg.seq * cfg.kv_dim()); cfg.layers],
            window: Vec::with_capacity(cfg.seq),
            slides: 0,
        })
    }

    /// The tokens currently in the cache, at positions `0..len`.
    pub fn window(&self) -> &[u32] {
        &self.window
    }

    /// How many times the window was restarted from its last `seq / 2` tokens.
    pub fn slides(&self) -> usize {
        self.slides
    }

    /// Forgets all cached tokens.
    pub fn reset(&mut self) {
        self.k.iter_mut().chain(self.v.iter_mut()).for_each(Vec::clear);
        self.window.clear();
    }

    /// Feeds one token at the next position and returns the logits `[vocab]` predicting the
    /// token after it. Errors when the cache already holds `seq` tokens.
    pub fn step(&mut self, token: u32) -> Result<Vec<f32>> {
        self.check_token(token)?;
        ensure!(
            self.window.len() < self.cfg.seq,
            "context window full: {} tokens (seq {})",
            self.window.len(),
            self.cfg.seq
        );
        Ok(self.forward(token, true).expect("logits requested"))
    }

    /// Like [`step`](Self::step), but restarts the window from its last `seq / 2` tokens when
    /// it is full.
    pub fn push(&mut self, token: u32) -> Result<Vec<f32>> {
        self.check_token(token)?;
        self.make_room();
        Ok(self.forward(token, true).expect("logits requested"))
    }

    /// Feeds several tokens (sliding as [`push`](Self::push) does) and returns the logits after
    /// the last; the classifier runs only once.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let (&last, rest) = tokens
            .split_last()
            .ok_or_else(|| anyhow!("nothing to prefill: empty token list"))?;
        for &t in tokens {
            self.check_token(t)?;
        }
        for &t in rest {
            self.make_room();
            self.forward(t, false);
        }
        self.push(last)
    }

    fn check_token(&self, token: u32) -> Result<()> {
        ensure!(
            (token as usize) < self.cfg.vocab,
            "token id {token} is outside the model's vocabulary of {}",
            self.cfg.vocab
        );
        Ok(())
    }

    fn make_room(&mut self) {
        if self.window.len() < self.cfg.seq {
            return;
        }
        let keep = self.window[self.window.len() - self.cfg.seq / 2..].to_vec();
        self.reset();
        self.slides += 1;
        for t in keep {
            self.forward(t, false);
        }
    }

    /// One token through every layer at position `window.len()`; appends its K and V.
    fn forward(&mut self, token: u32, want_logits: bool) -> Option<Vec<f32>> {
        let (c, p) = (self.cfg, self.params);
        let w = |i: usize| p.tensors[i].data.as_slice();
        let (dim, hd, kv_dim) = (c.dim, c.head_dim, c.kv_dim());
        let pos = self.window.len();
        let alpha = c.residual_scale as f32;
        let t = token as usize;
        let mut x = w(p.embed)[t * dim..(t + 1) * dim].to_vec();
        let mut n = vec![0.0; dim];
        let mut q = vec![0.0; c.q_dim()];
        let mut kv = vec![0.0; kv_dim];
        let mut o = vec![0.0; c.q_dim()];
        let mut a = vec![0.0; dim];
        let mut h1 = vec![0.0; c.hidden];
        let mut h3 = vec![0.0; c.hidden];
        let (sin, cos) = rope_sin_cos(c.rope_theta, hd, pos);
        for (li, l) in p.layers.iter().enumerate() {
            rmsnorm(&x, w(l.attn_norm), c.norm_eps, &mut n);
            matvec(w(l.wq), &n, &mut q);
            matvec(w(l.wk), &n, &mut kv);
            if let (Some(qn), Some(kn)) = (l.q_norm, l.k_norm) {
                head_rmsnorm(&mut q, hd, w(qn), c.norm_eps);
                head_rmsnorm(&mut kv, hd, w(kn), c.norm_eps);
            }
            rope(&mut q, hd, &sin, &cos);
            rope(&mut kv, hd, &sin, &cos);
            self.k[li].extend_from_slice(&kv);
            matvec(w(l.wv), &n, &mut kv);
            self.v[li].extend_from_slice(&kv);
            attend(&q, &self.k[li], &self.v[li], hd, c.group(), &mut o);
            matvec(w(l.wo), &o, &mut a);
            add_scaled(&mut x, alpha, &a);

            rmsnorm(&x, w(l.ffn_norm), c.norm_eps, &mut n);
            matvec(w(l.w1), &n, &mut h1);
            matvec(w(l.w3), &n, &mut h3);
            silu_gate(&mut h1, &h3);
            matvec(w(l.w2), &h1, &mut a);
            add_scaled(&mut x, alpha, &a);
        }
        self.window.push(token);
        want_logits.then(|| {
            rmsnorm(&x, w(p.final_norm), c.norm_eps, &mut n);
            let mut logits = vec![0.0; c.vocab];
            matvec(w(p.classifier()), &n, &mut logits);
            logits
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{assert_close, model, model_qk, tokens};
    use super::*;
    use crate::reference;

    #[test]
    fn cached_forward_matches_the_reference_at_every_position() {
        for (tied, qk) in [(true, false), (false, false), (true, true)] {
            let (c, p) = model_qk(64, tied, qk, 1);
            let toks = tokens(c.seq, c.vocab, 2);
            let want = reference::logits(&c, &p, &toks);
            let mut g = Generator::new(&c, &p).unwrap();
            for (pos, &t) in toks.iter().enumerate() {
                let got = g.step(t).unwrap();
                assert_close(&got, &want[pos], &format!("tied {tied}, qk {qk}, position {pos}"));
            }
            // Prefill computes the same state as stepping.
            let mut g2 = Generator::new(&c, &p).unwrap();
            let last = g2.prefill(&toks[..10]).unwrap();
            assert_close(&last, &want[9], "prefill");
            assert_eq!(g2.window(), &toks[..10]);
        }
    }

    #[test]
    fn step_refuses_past_the_window_and_push_slides() {
        let (c, p) = model(8, true, 7);
        let mut g = Generator::new(&c, &p).unwrap();
        assert!(g.step(300).is_err());
        assert!(g.window().is_empty(), "a refused token leaves the cache alone");

        // step refuses a token past the window; push restarts from the last seq/2 tokens.
        let toks = tokens(13, c.vocab, 8);
        for &t in &toks[..8] {
            g.step(t).unwrap();
        }
        let err = g.step(toks[8]).unwrap_err().to_string();
        assert!(err.contains("context window full"), "{err}");
        let got = g.push(toks[8]).unwrap();
        assert_eq!(g.window(), &toks[4..9]);
        assert_eq!(g.slides(), 1);
        let want = reference::logits(&c, &p, &toks[4..9]);
        assert_close(&got, &want[4], "after a slide");
    }

    #[test]
    fn mismatched_parameters_are_refused() {
        let (c, p) = model(8, true, 7);
        let mut bad = p.clone();
        bad.tensors[bad.layers[1].wk].shape = vec![c.dim, c.dim];
        let err = Generator::new(&c, &bad).err().unwrap().to_string();
        assert!(err.contains("k_proj"), "{err}");
        let mut q = c.clone();
        q.qk_norm = true;
        let err = Generator::new(&q, &p).err().unwrap().to_string();
        assert!(err.contains("lack q/k norm"), "{err}");
    }
}
