//! The `props-pipeline` binary: parse the command line, set up logging and the runtime, dispatch.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::logging::init(args.log_format);
    if let Some(host) = &args.gcp.firestore_emulator_host {
        // firestore-rs finds the emulator only through this variable, and a --firestore-emulator-host
        // flag must win over a stale environment.
        // SAFETY: no other thread exists yet (the runtime is built below), so nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var("FIRESTORE_EMULATOR_HOST", host) };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::dispatch(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(cli::exit_code(&error))
        }
    }
}
