//! The `sqlguard` binary: parse the command line, set up logging and the
//! runtime, dispatch. No logic lives here.

use clap::Parser;

/// Parsing, checking and dropping an AST recurses; 8 MiB per worker thread
/// leaves a wide margin over what a 64 KiB statement can need
/// (PARSER-DIFFERENTIALS.md §7).
const WORKER_STACK_BYTES: usize = 8 * 1024 * 1024;

fn main() {
    // Logging is set up by `cli::run` (`serve` reads `log.format` first).
    let cli = sqlguard::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = match runtime.block_on(sqlguard::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}
