//! `jmap-gateway`: the command-line entry point. Thin glue over the library crate.

/// mimalloc rather than glibc malloc: a sync builds a batch on one thread and commits it on
/// another, and glibc's arenas spent about a sixth of that CPU handing memory between them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gateway::cli::run()
}
