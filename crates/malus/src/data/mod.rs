//! Data: tokenizers, token shards, and preparing text into shards.

pub mod input;
pub mod shards;
pub mod tokenizer;

use std::path::Path;

use anyhow::{Context, Result, ensure};

pub use shards::{Dataset, TokenFile};
pub use tokenizer::Tok;

/// Tokenizes text files (documents separated by the end-of-text token) into a uint16 shard.
/// Returns the number of tokens written.
pub fn prepare(texts: &[&Path], tok: &Tok, out: &Path) -> Result<usize> {
    ensure!(
        tok.vocab_size() <= 65536,
        "vocabulary of {} does not fit uint16 shards",
        tok.vocab_size()
    );
    let mut ids = Vec::new();
    for t in texts {
        let text = input::read_text(t, "text")?;
        if let (Some(eot), false) = (tok.eot(), ids.is_empty()) {
            ids.push(eot);
        }
        ids.extend(
            tok.encode(&text)
                .with_context(|| format!("tokenizing {}", t.display()))?,
        );
    }
    shards::write_tokens(out, &ids)?;
    Ok(ids.len())
}
