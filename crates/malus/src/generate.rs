//! Text generation on the host: an f32 forward of one token at a time with a KV cache, and
//! temperature / top-p sampling. Independent of the device kernels, so a checkpoint can be
//! sampled on any machine.
//!
//! Context window: the cache holds at most `config.seq` positions (RoPE was trained for those).
//! When a token arrives and the cache is full, [`Generator::push`] restarts the window from the
//! last `seq / 2` tokens (re-encoding them at positions `0..seq/2`), so generation can run for
//! any number of tokens while every prediction still sees at least `seq / 2` tokens of context.
//! [`Generator::step`] is the strict form that refuses a token past the window instead.

use crate::data::Tok;
use crate::host::ops::{add_scaled, attend, head_rmsnorm, matvec, rmsnorm, rope, rope_sin_cos, silu_gate};
use crate::model::{Config, Params};
use crate::rng::Rng;
use anyhow::{Context, Result, anyhow, bail, ensure};

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
    /// How many times the window restarted (see the module docs).
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

/// Generates up to `opts.max_tokens` token ids after `prompt` (which must not be empty),
/// calling `on_id` with each; returns the generated ids (without the prompt or stop token).
pub fn generate_ids(
    cfg: &Config,
    params: &Params,
    prompt: &[u32],
    opts: &SampleOptions,
    mut on_id: impl FnMut(u32) -> Result<()>,
) -> Result<Vec<u32>> {
    opts.validate()?;
    ensure!(!prompt.is_empty(), "empty prompt: give at least one token");
    let mut g = Generator::new(cfg, params)?;
    let mut logits = g.prefill(prompt).context("feeding the prompt")?;
    let mut rng = Rng::new(opts.seed);
    let mut out = Vec::new();
    while out.len() < opts.max_tokens {
        let t = sample(&logits, opts, &mut rng);
        if opts.stop == Some(t) {
            break;
        }
        out.push(t);
        on_id(t)?;
        if out.len() < opts.max_tokens {
            logits = g.push(t)?;
        }
    }
    Ok(out)
}

/// Generates text after `prompt`, streaming decoded pieces to `on_token` as they become
/// whole characters; returns the generated text (without the prompt). An empty prompt starts
/// from the tokenizer's end-of-text token, i.e. the start of a fresh document.
pub fn generate(
    cfg: &Config,
    params: &Params,
    tok: &Tok,
    prompt: &str,
    opts: &SampleOptions,
    mut on_token: impl FnMut(&str),
) -> Result<String> {
    let mut ids = tok.encode(prompt)?;
    if ids.is_empty() {
        match tok.eot() {
            Some(eot) => ids.push(eot),
            None => bail!("empty prompt, and the tokenizer has no end-of-text token to start from"),
        }
    }
    let mut stream = Stream::default();
    let mut out = Vec::new();
    generate_ids(cfg, params, &ids, opts, |id| {
        out.push(id);
        // Decoding the whole list keeps byte-level tokens that split a character together.
        let text = tok.decode(&out)?;
        let piece = stream.next(&text, false);
        if !piece.is_empty() {
            on_token(piece);
        }
        Ok(())
    })?;
    let text = tok.decode(&out)?;
    let piece = stream.next(&text, true);
    if !piece.is_empty() {
        on_token(piece);
    }
    Ok(text)
}

/// Emits the new suffix of a growing decoded text, holding back trailing U+FFFD (an unfinished
/// multi-byte character decoded lossily) until the next token completes it or the text ends.
#[derive(Default)]
struct Stream {
    emitted: String,
}

impl Stream {
    fn next<'t>(&mut self, text: &'t str, last: bool) -> &'t str {
        if !text.starts_with(self.emitted.as_str()) {
            // The decoder rewrote text already shown; nothing consistent can be added.
            return "";
        }
        let end = if last {
            text.len()
        } else {
            text.trim_end_matches('\u{FFFD}').len()
        };
        if end <= self.emitted.len() {
            return "";
        }
        let piece = &text[self.emitted.len()..end];
        self.emitted.push_str(piece);
        piece
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;

    /// A tiny GQA model with every tensor random (norms around 1, not 1) and weights large
    /// enough that attention is far from uniform, so a wrong cache position would show.
    fn model(seq: usize, tied: bool, seed: u64) -> (Config, Params) {
        model_qk(seq, tied, false, seed)
    }

    /// [`model`] with or without Qwen3's q/k norm.
    fn model_qk(seq: usize, tied: bool, qk_norm: bool, seed: u64) -> (Config, Params) {
        let mut c = Config::preset("tiny").unwrap();
        c.kv_heads = 2;
        c.seq = seq;
        c.tied = tied;
        c.qk_norm = qk_norm;
        c.residual_scale = 0.7;
        let p = random_params(&c, seed);
        (c, p)
    }

    fn random_params(c: &Config, seed: u64) -> Params {
        let mut p = Params::zeros(c);
        let mut rng = Rng::new(seed);
        let norms: Vec<usize> = p
            .layers
            .iter()
            .flat_map(|l| [Some(l.attn_norm), Some(l.ffn_norm), l.q_norm, l.k_norm])
            .flatten()
            .chain([p.final_norm])
            .collect();
        for (i, t) in p.tensors.iter_mut().enumerate() {
            let fan_in = *t.shape.last().unwrap() as f64;
            for v in &mut t.data {
                *v = if norms.contains(&i) {
                    1.0 + rng.uniform(0.5)
                } else if i == p.embed || Some(i) == p.cls {
                    rng.uniform(1.0)
                } else {
                    rng.uniform(2.0 / fan_in.sqrt())
                };
            }
        }
        p
    }

    fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.below(vocab as u64) as u32).collect()
    }

    fn assert_close(got: &[f32], want: &[f64], what: &str) {
        let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(want)
            .fold(0.0f64, |m, (&g, w)| m.max((g as f64 - w).abs()));
        assert!(err <= 1e-4 * scale, "{what}: max error {err} vs scale {scale}");
    }

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
    fn greedy_is_deterministic_and_follows_reference_argmax() {
        let (c, p) = model(64, true, 3);
        let prompt = tokens(5, c.vocab, 4);
        let opts = SampleOptions {
            temperature: 0.0,
            max_tokens: 30,
            ..Default::default()
        };
        let mut streamed = Vec::new();
        let out = generate_ids(&c, &p, &prompt, &opts, |t| {
            streamed.push(t);
            Ok(())
        })
        .unwrap();
        assert_eq!(out.len(), 30);
        assert_eq!(streamed, out);
        let again = generate_ids(&c, &p, &prompt, &opts, |_| Ok(())).unwrap();
        assert_eq!(out, again);
        let all: Vec<u32> = prompt.iter().chain(&out).copied().collect();
        let lg = reference::logits(&c, &p, &all[..all.len() - 1]);
        for (i, &t) in out.iter().enumerate() {
            let row = &lg[prompt.len() - 1 + i];
            let best = (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            assert_eq!(t as usize, best, "generated token {i}");
        }
        // A stop token ends generation and is not returned.
        let stop = SampleOptions {
            stop: Some(out[3]),
            ..opts.clone()
        };
        let first = out.iter().position(|&t| t == out[3]).unwrap();
        assert_eq!(
            generate_ids(&c, &p, &prompt, &stop, |_| Ok(())).unwrap(),
            &out[..first]
        );
    }

    #[test]
    fn sampling_top_p_and_seeds() {
        let mut rng = Rng::new(9);
        let opts = |temperature, top_p| SampleOptions {
            temperature,
            top_p,
            ..Default::default()
        };
        // A tiny nucleus keeps only the most likely token, whatever the temperature.
        for _ in 0..50 {
            let logits: Vec<f32> = (0..100).map(|_| rng.uniform(5.0)).collect();
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

        let (c, p) = model(64, false, 5);
        let prompt = tokens(3, c.vocab, 6);
        let run = |seed| {
            let o = SampleOptions {
                temperature: 1.0,
                top_p: 0.9,
                max_tokens: 40,
                seed,
                stop: None,
            };
            generate_ids(&c, &p, &prompt, &o, |_| Ok(())).unwrap()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn errors_and_the_sliding_window() {
        let (c, p) = model(8, true, 7);
        let opts = SampleOptions::default();
        let err = generate_ids(&c, &p, &[1, 256], &opts, |_| Ok(())).unwrap_err();
        assert!(format!("{err:#}").contains("token id 256"), "{err:#}");
        assert!(generate_ids(&c, &p, &[], &opts, |_| Ok(())).is_err());
        for bad in [
            SampleOptions {
                temperature: -1.0,
                ..Default::default()
            },
            SampleOptions {
                top_p: 1.5,
                ..Default::default()
            },
        ] {
            assert!(generate_ids(&c, &p, &[1], &bad, |_| Ok(())).is_err());
        }
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

        // Generation runs past the window, and a long prompt slides too.
        let greedy = SampleOptions {
            temperature: 0.0,
            max_tokens: 30,
            ..Default::default()
        };
        assert_eq!(
            generate_ids(&c, &p, &toks, &greedy, |_| Ok(())).unwrap().len(),
            30
        );

        let mut bad = p.clone();
        bad.tensors[bad.layers[1].wk].shape = vec![c.dim, c.dim];
        let err = Generator::new(&c, &bad).err().unwrap().to_string();
        assert!(err.contains("k_proj"), "{err}");
        let mut q = c.clone();
        q.qk_norm = true;
        let err = Generator::new(&q, &p).err().unwrap().to_string();
        assert!(err.contains("lack q/k norm"), "{err}");
    }

    #[test]
    fn streaming_holds_back_split_characters() {
        let mut s = Stream::default();
        assert_eq!(s.next("a", false), "a");
        assert_eq!(s.next("a\u{FFFD}", false), "");
        assert_eq!(s.next("aé", false), "é");
        assert_eq!(s.next("aéb\u{FFFD}", true), "b\u{FFFD}");
    }

    #[test]
    fn generates_text_with_a_trained_tokenizer() {
        let dir = std::env::temp_dir().join(format!("malus-generate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("corpus.txt");
        std::fs::write(&text, "the café serves crème brûlée. ".repeat(50)).unwrap();
        let tok_path = dir.join("tok.json");
        crate::data::tokenizer::train(&[&text], 300, &tok_path).unwrap();
        let tok = Tok::load(&tok_path).unwrap();
        let (mut c, _) = model(16, true, 0);
        c.vocab = tok.vocab_size();
        let p = random_params(&c, 11);
        let opts = SampleOptions {
            temperature: 1.0,
            top_p: 1.0,
            max_tokens: 40,
            seed: 3,
            stop: None,
        };
        for prompt in ["the café", ""] {
            let mut pieces = String::new();
            let out = generate(&c, &p, &tok, prompt, &opts, |s| pieces.push_str(s)).unwrap();
            assert_eq!(pieces, out, "streamed pieces add up to the result");
            assert!(!out.is_empty());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
