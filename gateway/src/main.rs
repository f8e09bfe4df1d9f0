//! `jmap-gateway`: the command-line entry point. Thin glue over the library crate.

fn main() -> std::process::ExitCode {
    gateway::cli::run()
}
