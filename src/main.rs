//! The `props-pipeline` binary: parse the command line, set up logging and the runtime, dispatch.

mod cli;

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::errors::parse_command_line();
    cli::logging::init(args.log_format);
    if let Some(host) = args.command.gcp().and_then(|gcp| gcp.firestore_emulator_host) {
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
        // The reader of stdout went away (`| head`): what it wanted was printed.
        Err(error) if cli::errors::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // Ignored: if stderr is closed too, the exit code is all that is left to say it.
            let _ = writeln!(std::io::stderr(), "error: {}", cli::errors::one_line(&error));
            ExitCode::from(cli::exit::code(&error))
        }
    }
}
