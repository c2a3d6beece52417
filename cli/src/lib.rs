//! The `keyrotor` command line: argument definitions and the commands. Each
//! command parses its flags, calls the shared library and prints the result
//! as a table or as JSON.

mod commands;
mod output;
pub mod report;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use keyrotor_shared::config::{ConfigError, SettingsArgs};

pub use keyrotor_shared::time::parse_as_of;

/// Rotates IAM user access keys across an AWS Organization.
#[derive(Parser, Debug)]
#[command(name = "keyrotor", version, about)]
pub struct Cli {
    /// Output format.
    #[arg(
        long,
        env = "KEYROTOR_OUTPUT",
        value_enum,
        default_value = "table",
        global = true
    )]
    pub output: Output,
    /// Settings shared with the Lambda functions.
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// `--output`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Human-readable.
    Table,
    /// One JSON document (or one per line for lists).
    Json,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the table, queue, dead-letter queue and topic where missing.
    Init(commands::init::InitArgs),
    /// Enqueue one message per (account, user) of the Organization: a run.
    Produce(commands::produce::ProduceArgs),
    /// Show what is due for an account's users (changes nothing).
    Plan(commands::plan::PlanArgs),
    /// Work the queue: the long-running worker pool.
    Work(commands::work::WorkArgs),
    /// Perform one user's due steps now, through the worker's code path.
    Rotate(commands::rotate::RotateArgs),
    /// Load accounts into the registry from a CSV file (account_id,email[,name]).
    ImportAccounts(commands::import_accounts::ImportAccountsArgs),
    /// Show a run's progress and results per outcome (default: the newest run).
    Status(commands::status::StatusArgs),
    /// Write a run's report: its accounts and one result per user (HTML, CSV or JSON).
    Report(commands::report::ReportArgs),
    /// Show the circuit breaker, or `reset` it so that enforce runs act again.
    Breaker(commands::breaker::BreakerArgs),
    /// Show the rollout waves, or `release N` / `halt N` one by hand.
    Waves(commands::waves::WavesArgs),
}

/// How a command failed, which decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad setting (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A bad argument (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The command ran and failed (exit 1).
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> CliError {
        CliError::Failed(e)
    }
}

/// Runs the parsed command; `Ok` carries the exit code (1 when some users failed).
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match &cli.command {
        Command::Init(args) => commands::init::run(&cli, args).await,
        Command::Plan(args) => commands::plan::run(&cli, args).await,
        Command::Produce(args) => commands::produce::run(&cli, args).await,
        Command::Rotate(args) => commands::rotate::run(&cli, args).await,
        Command::Work(args) => commands::work::run(&cli, args).await,
        Command::ImportAccounts(args) => commands::import_accounts::run(&cli, args).await,
        Command::Status(args) => commands::status::run(&cli, args).await,
        Command::Report(args) => commands::report::run(&cli, args).await,
        Command::Breaker(args) => commands::breaker::run(&cli, args).await,
        Command::Waves(args) => commands::waves::run(&cli, args).await,
    }
}
