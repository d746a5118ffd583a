//! The `bpsms` binary: parse arguments, start tracing, run, print the error
//! chain, exit with the documented code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use bpsms::commands::exit;

/// mimalloc: the send path allocates and frees across threads at tens of
/// thousands of messages per second, where glibc's arenas contend on their
/// locks. Transparent huge pages stay off (`no_thp`): with them, its arenas
/// would hold 30 MB more during an import.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = bpsms::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(|| bpsms::progress::StderrAboveProgress)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            bpsms::errln!("error: failed to start the async runtime: {error}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    let ended = runtime.block_on(bpsms::run(cli));
    // A run left at once abandons requests still in flight: their tasks are
    // dropped here rather than waited for.
    runtime.shutdown_background();
    match ended {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(failure) => {
            bpsms::errln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}
