//! The `malus` command. Code only the command needs (argument parsing, the doctor's probe,
//! plots, .npy files) lives here, beside the library it drives.

mod cli;
mod doctor;
mod npy;
mod plot;

fn main() -> std::process::ExitCode {
    cli::main()
}
