//! `keyrotor report RUN_ID [--format json|csv|html] [--out FILE]`: a run's
//! report (see [`crate::report`]) from the state table, to stdout or a
//! file. Exit 1 when there is no such run.

use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use clap::{Args, ValueEnum};
use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::Settings;
use keyrotor_shared::store::results::ResultStore;
use keyrotor_shared::store::runs::RunStore;

use crate::report::{html, Report};
use crate::{Cli, CliError};

/// The report's format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON document: the run, its accounts, one result per user.
    Json,
    /// RFC 4180 CSV, one row per user result.
    Csv,
    /// One self-contained HTML page: failures, totals, charts, accounts.
    Html,
}

/// `report` arguments.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run.
    #[arg(env = "KEYROTOR_REPORT_RUN_ID")]
    pub run_id: String,
    /// The format.
    #[arg(
        long,
        value_enum,
        default_value = "json",
        env = "KEYROTOR_REPORT_FORMAT"
    )]
    pub format: Format,
    /// Write the report to this file instead of stdout.
    #[arg(long, env = "KEYROTOR_REPORT_OUT")]
    pub out: Option<std::path::PathBuf>,
}

/// Runs `report`.
pub async fn run(cli: &Cli, args: &ReportArgs) -> Result<ExitCode, CliError> {
    let settings = Settings::from_args(&cli.settings)?;
    let aws = AwsContext::load(&settings.role_name).await;
    let client = aws_sdk_dynamodb::Client::new(aws.base());
    let table = settings.table.clone();
    let run_id = &args.run_id;
    let record = RunStore::new(client.clone(), table.clone())
        .get(run_id)
        .await
        .with_context(|| format!("reading run {run_id} in table {table}"))?
        .ok_or_else(|| anyhow!("no run {run_id}"))?;
    let results = ResultStore::new(client, table.clone());
    let mut items = Vec::new();
    for account in &record.per_account {
        items.extend(
            results
                .account_results(run_id, &account.account_id)
                .await
                .with_context(|| {
                    format!("reading the results of account {}", account.account_id)
                })?,
        );
    }
    let report = Report::build(&record, items);
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&report).expect("plain data") + "\n",
        Format::Csv => report.csv().context("writing the CSV")?,
        Format::Html => html::render(&report, &settings.policy).context("rendering the HTML")?,
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "report of run {run_id} ({} results) written to {}",
                report.results.len(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
