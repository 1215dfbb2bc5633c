//! Data: tokenizers, token files, and preparing text into token files (docs/data.md).

pub mod chat;
pub mod dataset;
pub mod input;
pub mod instruct;
pub mod jinja;
pub mod shards;
pub mod source;
pub mod tokenizer;

use std::path::Path;

use anyhow::{Context, Result};

pub use dataset::{Dataset, Window};
pub use shards::TokenFile;
pub use tokenizer::Tok;

/// Tokenizes text files (documents separated by the end-of-text token, packed) into a token
/// file: raw uint16 when the vocabulary fits, else uint32 ids under a header. Returns the
/// number of tokens written.
pub fn prepare(texts: &[&Path], tok: &Tok, out: &Path) -> Result<usize> {
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
    shards::write_token_file(out, &ids, None, tok.vocab_size())?;
    Ok(ids.len())
}
