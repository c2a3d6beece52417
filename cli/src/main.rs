//! `keyrotor`: the operator's command. Parses, runs, prints; the work is in
//! `keyrotor-shared`.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use keyrotor_shared::config::ConfigError;

use keyrotor_cli::{run, Cli, CliError};

fn main() -> ExitCode {
    // Crash tests inject failures through FAILPOINTS; only test builds have them.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    // A failpoint's panic is a crash of the whole process, wherever it
    // fires (a worker task's panic would otherwise leave the rest running).
    #[cfg(feature = "failpoints")]
    {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            std::process::abort();
        }));
    }

    // A bad value of a setting is named by its environment variable (exit
    // 2, as every bad setting); help, versions and unknown flags are clap's.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match ConfigError::from_clap(e, &Cli::command()) {
            Ok(setting) => {
                eprintln!("error: {setting}");
                return ExitCode::from(2);
            }
            Err(e) => e.exit(),
        },
    };
    keyrotor_shared::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(CliError::Config(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(CliError::Usage(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
