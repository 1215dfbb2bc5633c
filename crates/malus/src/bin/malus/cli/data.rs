//! `malus tokenizer train` and `malus data prepare`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use malus::data::chat::ChatTemplate;
use malus::data::instruct;
use malus::data::{self, Tok};

#[derive(Subcommand)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE tokenizer on text files.
    Train {
        /// Vocabulary size (257..=1048576).
        #[arg(long, default_value_t = 4096)]
        vocab: usize,
        /// Output tokenizer.json.
        #[arg(short, long, default_value = "tokenizer.json")]
        out: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Tokenize text files, or JSONL instruction data, into a token file (docs/data.md).
    Prepare(PrepareArgs),
}

#[derive(Args)]
pub struct PrepareArgs {
    /// A tokenizer.json, or a Hugging Face model directory (tokenizer.json, and
    /// tokenizer_config.json for the chat template and bos/eos tokens).
    #[arg(long, default_value = malus::data::input::TOKENIZER)]
    tokenizer: PathBuf,
    /// Output token file (.bin): raw uint16 ids, or a headed file when the vocabulary needs
    /// uint32 ids or there is a loss mask.
    #[arg(short, long)]
    out: PathBuf,
    /// JSONL only: only completions and assistant turns count in the loss (writes a mask).
    #[arg(long)]
    mask_prompt: bool,
    /// JSONL only: render chat records with this Jinja template (or the `chat_template` of
    /// this .json file) instead of the tokenizer's.
    #[arg(long, value_name = "FILE")]
    chat_template: Option<PathBuf>,
    /// Text files, or .jsonl files (`text`, `prompt`/`completion` or `messages` records).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn tokenizer(cmd: TokenizerCommand) -> Result<ExitCode> {
    match cmd {
        TokenizerCommand::Train { vocab, out, files } => {
            let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
            data::tokenizer::train(&refs, vocab, &out)?;
            let tok = Tok::load(&out)?;
            println!(
                "wrote {} ({} tokens, fingerprint {})",
                out.display(),
                tok.vocab_size(),
                tok.hash
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn data(cmd: DataCommand) -> Result<ExitCode> {
    match cmd {
        DataCommand::Prepare(a) => {
            let tok = Tok::load(&a.tokenizer)?;
            let refs: Vec<&Path> = a.files.iter().map(PathBuf::as_path).collect();
            let jsonl = refs.iter().filter(|p| instruct::is_jsonl(p)).count();
            if jsonl == 0 {
                if a.mask_prompt || a.chat_template.is_some() {
                    bail!("--mask-prompt and --chat-template are for .jsonl inputs");
                }
                let n = data::prepare(&refs, &tok, &a.out)?;
                println!("wrote {} ({n} tokens)", a.out.display());
                return Ok(ExitCode::SUCCESS);
            }
            if jsonl < refs.len() {
                bail!("give either .jsonl files or text files, not both");
            }
            let template = ChatTemplate::load(&a.tokenizer, a.chat_template.as_deref())?;
            let s = instruct::prepare(&refs, &tok, template.as_ref(), a.mask_prompt, &a.out)?;
            let counted = match s.masked {
                true => format!(", {:.1}% of them count in the loss", 100.0 * s.counted_fraction()),
                false => String::new(),
            };
            println!(
                "wrote {} ({} records, {} tokens{counted})",
                a.out.display(),
                s.records,
                s.tokens
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
