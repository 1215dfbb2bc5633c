//! Byte-level BPE tokenizers (Hugging Face `tokenizers`): training on text files, loading (a
//! tokenizer.json, or a Hugging Face model directory holding one), encoding and decoding.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder, TokenizerImpl};

/// The end-of-text marker placed between documents; id 0 in tokenizers malus trains.
pub const EOT: &str = "<|endoftext|>";

/// The largest vocabulary `train` makes; ids past 65,535 go into uint32 token files.
pub const MAX_TRAIN_VOCAB: usize = 1 << 20;

/// A loaded tokenizer with the hash of its file (stored in checkpoints to catch mismatches).
pub struct Tok {
    inner: Tokenizer,
    pub hash: String,
    /// The end-of-sequence token a model directory's tokenizer_config.json names.
    eos: Option<String>,
}

/// FNV-1a 64-bit: a content fingerprint, not a security hash.
pub fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Trains a byte-level BPE tokenizer of `vocab` tokens on `files` and saves it as JSON.
pub fn train(files: &[&Path], vocab: usize, out: &Path) -> Result<()> {
    ensure!(
        (257..=MAX_TRAIN_VOCAB).contains(&vocab),
        "vocab size {vocab} must be in 257..={MAX_TRAIN_VOCAB}"
    );
    for f in files {
        ensure!(f.is_file(), "training text {} does not exist", f.display());
    }
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(true)
        .vocab_size(vocab)
        .min_frequency(2)
        .special_tokens(vec![AddedToken::from(EOT.to_string(), true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tok: TokenizerImpl<BPE, NormalizerWrapper, ByteLevel, PostProcessorWrapper, ByteLevel> =
        TokenizerBuilder::new()
            .with_model(BPE::default())
            .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
            .with_decoder(Some(ByteLevel::default()))
            .build()
            .map_err(|e| anyhow!("building the tokenizer: {e}"))?;
    let names = files.iter().map(|p| p.display().to_string()).collect();
    tok.train_from_files(&mut trainer, names)
        .map_err(|e| anyhow!("training the tokenizer: {e}"))?;
    let tmp = out.with_extension("json.tmp");
    tok.save(&tmp, false)
        .map_err(|e| anyhow!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

impl Tok {
    /// Loads a tokenizer.json, or the one in a Hugging Face model directory (whose
    /// tokenizer_config.json, when there is one, names the end-of-sequence token).
    pub fn load(path: &Path) -> Result<Tok> {
        if path.is_dir() {
            let file = path.join("tokenizer.json");
            ensure!(
                file.is_file(),
                "tokenizer directory {} has no tokenizer.json",
                path.display()
            );
            let mut tok = Tok::load(&file)?;
            tok.eos = super::chat::TokenizerConfig::for_tokenizer(path)?.eos_token;
            return Ok(tok);
        }
        let bytes = super::input::read(path, "tokenizer")?;
        // The tokenizers crate panics on some malformed files (found by fuzzing) rather than
        // returning an error: a panic here, or in a first decode, is a bad file too.
        let guarded = std::panic::catch_unwind(|| {
            let t = Tokenizer::from_bytes(&bytes)?;
            t.decode(&[0, 1, 2], true)?;
            Ok::<_, tokenizers::Error>(t)
        });
        let inner = match guarded {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => bail!("tokenizer {}: {e}", path.display()),
            Err(_) => bail!(
                "tokenizer {}: malformed (the tokenizers library failed on it)",
                path.display()
            ),
        };
        Ok(Tok {
            inner,
            hash: fingerprint(&bytes),
            eos: None,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("encoding: {e}"))?
            .get_ids()
            .to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| anyhow!("decoding: {e}"))
    }

    /// The id of a token given as text (a special token such as `<|im_end|>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token that ends a document: [`EOT`] when the vocabulary has it, else the
    /// end-of-sequence token of the model directory's tokenizer_config.json.
    pub fn eot(&self) -> Option<u32> {
        self.inner
            .token_to_id(EOT)
            .or_else(|| self.eos.as_deref().and_then(|e| self.inner.token_to_id(e)))
    }
}
