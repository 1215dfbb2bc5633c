//! The `malus` command.

fn main() -> std::process::ExitCode {
    malus::cli::main()
}
