//! `keyrotor produce`: one run of the producer from a shell — the same code
//! the scheduled Lambda runs.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::Args;
use keyrotor_producer::lambda::parse_force_user;
use keyrotor_producer::run::WaveSummary;
use keyrotor_producer::{AccountOutcome, ProduceError, ProduceRequest, Producer};
use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::Settings;

use crate::{output, parse_as_of, Cli, CliError};

/// `produce` flags (`--mode`, `--accounts`, `--ous` are the global settings).
#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Evaluation time of the run: RFC 3339 or YYYY-MM-DD (default: now).
    #[arg(long, env = "KEYROTOR_AS_OF", value_parser = parse_as_of)]
    pub as_of: Option<DateTime<Utc>>,
    /// Rotate this user now whatever its age: ACCOUNT:USER (repeatable).
    #[arg(long = "force-user", env = "KEYROTOR_FORCE_USERS", value_delimiter = ',', value_parser = parse_force_user)]
    pub force_users: Vec<(String, String)>,
    /// Reuse a run id (to re-send a run; duplicates are dropped).
    #[arg(long, env = "KEYROTOR_RUN_ID")]
    pub run_id: Option<String>,
}

/// `waves      1 released (1 account), 2 pending (2 accounts)`, when there
/// are waves.
fn waves_line(waves: &[WaveSummary]) -> String {
    if waves.is_empty() {
        return String::new();
    }
    let each: Vec<String> = waves
        .iter()
        .map(|w| {
            let s = if w.accounts == 1 { "" } else { "s" };
            format!(
                "{} {} ({} account{s})",
                w.wave,
                w.state.as_str(),
                w.accounts
            )
        })
        .collect();
    format!("waves      {}\n", each.join(", "))
}

/// Runs `produce`.
pub async fn run(cli: &Cli, args: &ProduceArgs) -> Result<ExitCode, CliError> {
    let settings = Arc::new(Settings::from_args(&cli.settings)?);
    let aws = AwsContext::load(&settings.role_name).await;
    let producer = Producer::new(settings.clone(), aws).await?;
    let req = ProduceRequest {
        run_id: args.run_id.clone(),
        as_of: args.as_of.unwrap_or_else(keyrotor_shared::time::now),
        mode: settings.mode,
        accounts: None,
        force_users: args.force_users.clone(),
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_message("accounts");
        bar
    });
    let progress = |outcome: &AccountOutcome, total: usize| {
        if let Some(bar) = &bar {
            bar.set_length(total as u64);
            bar.inc(1);
        }
        if let AccountOutcome::Failed(f) = outcome {
            eprintln!("error: account {}: {}", f.account_id, f.error);
        }
    };
    let summary = producer
        .produce(&req, &progress)
        .await
        .map_err(|e| match e {
            ProduceError::FutureAsOf(_) | ProduceError::RunMismatch(_) => {
                CliError::Usage(e.to_string())
            }
            other => CliError::Failed(other.into()),
        })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if summary.held_by_breaker {
        eprintln!(
            "warning: the circuit breaker is open (`keyrotor breaker`): run {} is an audit run; `keyrotor breaker reset` lets enforce runs act again",
            summary.run_id
        );
    }
    output::print(cli.output, &summary, |s| {
        format!(
            "run        {} ({})\naccounts   {} enqueued, {} skipped, {} failed{}\nusers      {}\nenqueued   {}\n",
            s.run_id,
            s.mode,
            s.accounts,
            s.skipped_accounts,
            s.failed_accounts.len(),
            if s.failed_accounts.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.failed_accounts.join(", "))
            },
            s.users,
            s.enqueued
        ) + &waves_line(&s.waves)
    });
    Ok(if summary.failed_accounts.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
