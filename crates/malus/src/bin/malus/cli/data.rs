//! `malus tokenizer train` and `malus data prepare`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use malus::data::{self, Tok};

#[derive(Subcommand)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE tokenizer on text files.
    Train {
        /// Vocabulary size (257..=65536).
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
    /// Tokenize text files into a uint16 token shard.
    Prepare(PrepareArgs),
}

#[derive(Args)]
pub struct PrepareArgs {
    #[arg(long, default_value = malus::data::input::TOKENIZER)]
    tokenizer: PathBuf,
    /// Output shard (.bin, uint16 little-endian).
    #[arg(short, long)]
    out: PathBuf,
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
            let n = data::prepare(&refs, &tok, &a.out)?;
            println!("wrote {} ({n} tokens)", a.out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
