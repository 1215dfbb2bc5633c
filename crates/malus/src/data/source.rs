//! A run's data file as a token file: a token file (`.bin`) is used as is; a text file or
//! JSONL instruction data is tokenized once into the run directory, under a name that changes
//! with everything the tokens depend on (the file's bytes, the tokenizer, the chat template,
//! `--mask-prompt`), so a changed input is never served from a stale cache.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail, ensure};

use super::chat::ChatTemplate;
use super::instruct::{self, Record};
use super::tokenizer::fingerprint;
use super::{Tok, TokenFile, input};

/// What a data file is, by its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `.bin`: token ids (with a loss mask when it was prepared with one).
    Tokens,
    /// `.jsonl`: instruction records (docs/data.md).
    Jsonl,
    /// Anything else: plain text.
    Text,
}

impl Kind {
    pub fn of(path: &Path) -> Kind {
        match path.extension() {
            Some(e) if e == "bin" => Kind::Tokens,
            _ if instruct::is_jsonl(path) => Kind::Jsonl,
            _ => Kind::Text,
        }
    }
}

/// How text becomes tokens for a run.
#[derive(Clone, Copy, Debug)]
pub struct Tokenizing<'a> {
    /// The tokenizer (a tokenizer.json or a model directory): also where the chat template is.
    pub tokenizer: &'a Path,
    /// A chat template file used instead of the tokenizer's.
    pub chat_template: Option<&'a Path>,
    /// Only completions and assistant turns count in the loss.
    pub mask_prompt: bool,
}

impl Tokenizing<'_> {
    fn template(&self) -> Result<Option<ChatTemplate>> {
        ChatTemplate::load(self.tokenizer, self.chat_template)
    }
}

/// Checks a data file (`what` names its flag) before any run directory exists: a token file
/// opens (and has a mask if `--mask-prompt` asks for one), a text file is not empty, every
/// JSONL record parses and has the chat template it needs.
pub fn check(path: &Path, what: &str, how: &Tokenizing) -> Result<()> {
    let p = path.display();
    match Kind::of(path) {
        Kind::Tokens => {
            let f = TokenFile::open(path)?;
            ensure!(
                !how.mask_prompt || f.has_mask(),
                "--mask-prompt: {what} {p} is a token file without a loss mask (prepare it with \
                 `malus data prepare --mask-prompt`, or give the .jsonl file itself)"
            );
        }
        Kind::Text => {
            ensure!(
                !how.mask_prompt,
                "--mask-prompt needs JSONL data ({what} {p} is plain text, where every token counts)"
            );
            let text = input::read_text(path, what)?;
            ensure!(!text.trim().is_empty(), "{what} {p} is empty");
        }
        Kind::Jsonl => {
            let records = instruct::read_records(path)?;
            if let Some((line, r)) = records.iter().find(|(_, r)| matches!(r, Record::Chat(_)))
                && how.template()?.is_none()
            {
                bail!(
                    "{p}:{line}: {} records need a chat template, and {} has none (use a model \
                     directory whose tokenizer_config.json has one, or --chat-template FILE)",
                    r.kind(),
                    how.tokenizer.display()
                );
            }
        }
    }
    Ok(())
}

/// The token file of `path`: itself when it is one, else the tokens of it cached in
/// `cache_dir` (made on first use, progress on stderr).
pub fn open(path: &Path, what: &str, tok: &Tok, how: &Tokenizing, cache_dir: &Path) -> Result<TokenFile> {
    let kind = Kind::of(path);
    if kind == Kind::Tokens {
        return TokenFile::open(path);
    }
    let template = match kind {
        Kind::Jsonl => how.template()?,
        _ => None,
    };
    let cache = cache_path(path, what, tok, template.as_ref(), how.mask_prompt, cache_dir)?;
    if !cache.is_file() {
        eprintln!("tokenizing {} …", path.display());
        match kind {
            Kind::Jsonl => {
                let s = instruct::prepare(&[path], tok, template.as_ref(), how.mask_prompt, &cache)?;
                eprintln!(
                    "  {} records, {} tokens, {:.1}% of them count in the loss",
                    s.records,
                    s.tokens,
                    100.0 * s.counted_fraction()
                );
            }
            _ => {
                super::prepare(&[path], tok, &cache)?;
            }
        }
    }
    TokenFile::open(&cache)
}

fn cache_path(
    path: &Path,
    what: &str,
    tok: &Tok,
    template: Option<&ChatTemplate>,
    mask_prompt: bool,
    dir: &Path,
) -> Result<PathBuf> {
    let data = fingerprint(input::read_text(path, what)?.as_bytes());
    let key = format!(
        "{}\0{data}\0{mask_prompt}\0{}",
        tok.hash,
        template.map_or("", |t| &t.fingerprint)
    );
    Ok(dir.join(format!("tokens-{}.bin", fingerprint(key.as_bytes()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_extension() {
        assert_eq!(Kind::of(Path::new("a/t.bin")), Kind::Tokens);
        assert_eq!(Kind::of(Path::new("chat.JSONL")), Kind::Jsonl);
        assert_eq!(Kind::of(Path::new("book.txt")), Kind::Text);
        assert_eq!(Kind::of(Path::new(input::CORPUS)), Kind::Text);
    }
}
