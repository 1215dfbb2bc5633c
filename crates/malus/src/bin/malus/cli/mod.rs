//! Command-line interface: one sub-module per command family; `malus doctor` and its probe live
//! in [`crate::doctor`].

mod data;
mod export;
mod generate;
mod lora_args;
mod mil;
mod plan;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::doctor;

#[derive(Parser)]
#[command(
    name = "malus",
    version,
    about = "Train neural networks on Apple's Neural Engine (and any CPU)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Built once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Work with MIL programs: check, format, run.
    #[command(subcommand)]
    Mil(mil::MilCommand),
    /// Train a model (no arguments: a small model on the shipped Jane Austen corpus).
    Train(train::TrainArgs),
    /// Sample text from a checkpoint or a Hugging Face model with an adapter (a KV-cached host
    /// forward).
    Generate(generate::GenerateArgs),
    /// Merge a LoRA adapter into its base: a Hugging Face model directory transformers loads.
    Fuse(export::FuseArgs),
    /// Write a run's model as a Hugging Face model directory (a LoRA run: merged into its base).
    Export(export::ExportArgs),
    /// Draw the loss curves of a run's metrics.jsonl into a PNG.
    Plot(generate::PlotArgs),
    /// Show the kernel plan of a model: kernels, FLOPs, bytes, host work.
    Plan(plan::PlanArgs),
    /// Check this machine: OS, the Neural Engine and its chip, the CPU executor; `--probe` tests
    /// each known ANE restriction and writes a JSON capability report.
    Doctor(doctor::DoctorArgs),
    /// Train tokenizers.
    #[command(subcommand)]
    Tokenizer(data::TokenizerCommand),
    /// Prepare token shards from text.
    #[command(subcommand)]
    Data(data::DataCommand),
}

/// Writes a command's report to stdout; a closed pipe (`malus plan | head`) ends the output
/// quietly instead of panicking like `print!` does.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Parses arguments, runs the command and turns errors into a message and exit status 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mil(c) => mil::run(c),
        Command::Plan(a) => plan::run(a),
        Command::Doctor(a) => doctor::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Plot(a) => generate::plot(a),
        Command::Fuse(a) => export::fuse(a),
        Command::Export(a) => export::export(a),
        Command::Train(a) => train::run(a),
        Command::Tokenizer(c) => data::tokenizer(c),
        Command::Data(c) => data::data(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
