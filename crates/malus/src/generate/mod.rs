//! Text generation on the host: the loops that feed [`Generator`]'s KV-cached forward
//! (`decode.rs`), pick each next token with [`sample`] (`sample.rs`) and stream the text in
//! whole characters (`stream.rs`).

mod decode;
#[cfg(test)]
pub(crate) mod fixtures;
mod sample;
mod stream;

use anyhow::{Context, Result, bail, ensure};

pub use decode::Generator;
pub use sample::{SampleOptions, argmax, sample};
use stream::Stream;

use crate::data::Tok;
use crate::model::{Config, Params};
use crate::rng::Rng;

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
        stream.emit(&tok.decode(&out)?, false, &mut on_token);
        Ok(())
    })?;
    let text = tok.decode(&out)?;
    stream.emit(&text, true, &mut on_token);
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::fixtures::{model, random_params, tokens};
    use super::*;
    use crate::reference;

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
    fn the_same_seed_gives_the_same_sample() {
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
    fn bad_input_is_refused_and_generation_runs_past_the_window() {
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
        // Generation runs past the window, and a long prompt slides too.
        let toks = tokens(13, c.vocab, 8);
        let greedy = SampleOptions {
            temperature: 0.0,
            max_tokens: 30,
            ..Default::default()
        };
        assert_eq!(
            generate_ids(&c, &p, &toks, &greedy, |_| Ok(())).unwrap().len(),
            30
        );
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
