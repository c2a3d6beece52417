//! `keyrotor breaker [--output json]` shows the circuit breaker;
//! `keyrotor breaker reset` closes it, recording who (the caller's ARN) and
//! when. While it is open, enforce runs act in audit mode.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::Settings;
use keyrotor_shared::store::breaker::{BreakerPort, BreakerState, BreakerStore};
use serde::Serialize;

use crate::{output, Cli, CliError};

/// `breaker` arguments.
#[derive(Args, Debug)]
pub struct BreakerArgs {
    /// What to do (default: show it).
    #[command(subcommand)]
    pub action: Option<BreakerAction>,
}

/// What `breaker` does besides showing.
#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerAction {
    /// Close the breaker: enforce runs act again.
    Reset,
}

/// The breaker as `breaker --output json` prints it.
#[derive(Debug, Serialize)]
pub struct BreakerView {
    /// `open` or `closed`.
    pub state: &'static str,
    /// When it last opened.
    pub opened_at: Option<String>,
    /// The run whose failures opened it.
    pub run_id: Option<String>,
    /// That run's failed enforce results.
    pub failures: i64,
    /// The threshold it opened at.
    pub threshold: Option<String>,
    /// When it was last reset.
    pub reset_at: Option<String>,
    /// Who reset it.
    pub reset_by: Option<String>,
}

impl From<&BreakerState> for BreakerView {
    fn from(b: &BreakerState) -> BreakerView {
        let at = |t: &Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339());
        BreakerView {
            state: if b.open { "open" } else { "closed" },
            opened_at: at(&b.opened_at),
            run_id: b.run_id.clone(),
            failures: b.failures,
            threshold: b.threshold.clone(),
            reset_at: at(&b.reset_at),
            reset_by: b.reset_by.clone(),
        }
    }
}

fn table(v: &BreakerView) -> String {
    let mut text = format!("breaker    {}\n", v.state);
    if let (Some(at), Some(run)) = (&v.opened_at, &v.run_id) {
        text += &format!(
            "opened     {at} by run {run}: {} failed results (threshold {})\n",
            v.failures,
            v.threshold.as_deref().unwrap_or("?")
        );
    }
    if let Some(at) = &v.reset_at {
        text += &format!(
            "reset      {at} by {}\n",
            v.reset_by.as_deref().unwrap_or("?")
        );
    }
    if v.state == "open" {
        text += "enforce runs act in audit mode until `keyrotor breaker reset`\n";
    }
    text
}

/// Runs `breaker`.
pub async fn run(cli: &Cli, args: &BreakerArgs) -> Result<ExitCode, CliError> {
    let settings = Settings::from_args(&cli.settings)?;
    let aws = AwsContext::load(&settings.role_name).await;
    let store = BreakerStore::new(aws_sdk_dynamodb::Client::new(aws.base()), &settings.table);
    let state = match args.action {
        None => store
            .state()
            .await
            .with_context(|| format!("reading the breaker in table {}", settings.table))?,
        Some(BreakerAction::Reset) => {
            let by = aws.caller_arn().await.context("finding who resets it")?;
            let state = store.reset(&by).await.context("resetting the breaker")?;
            eprintln!("breaker reset by {by}: enforce runs act again");
            state
        }
    };
    output::print(cli.output, &BreakerView::from(&state), table);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_breaker_says_what_opened_it_and_how_to_close_it() {
        let state = BreakerState {
            open: true,
            opened_at: Some(chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap()),
            run_id: Some("r1".into()),
            failures: 3,
            threshold: Some("3".into()),
            ..BreakerState::default()
        };
        let view = BreakerView::from(&state);
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["state"], "open");
        assert_eq!(json["run_id"], "r1");
        assert_eq!(json["failures"], 3);
        let text = table(&view);
        assert!(
            text.contains("by run r1: 3 failed results (threshold 3)"),
            "{text}"
        );
        assert!(text.contains("keyrotor breaker reset"), "{text}");
        let closed = table(&BreakerView::from(&BreakerState::default()));
        assert_eq!(closed, "breaker    closed\n");
    }
}
