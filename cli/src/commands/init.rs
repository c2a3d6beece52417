//! `keyrotor init`.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::Settings;

use crate::{output, Cli, CliError};

/// `init` flags.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Name prefix of the queue (`PREFIX.fifo`), DLQ and topic (`PREFIX-results`).
    #[arg(long, env = "KEYROTOR_INIT_PREFIX", default_value = "keyrotor")]
    pub prefix: String,
}

/// Runs `init`.
pub async fn run(cli: &Cli, args: &InitArgs) -> Result<ExitCode, CliError> {
    let settings = Settings::from_args(&cli.settings)?;
    let aws = AwsContext::load(&settings.role_name).await;
    let made = keyrotor_shared::provision::init(aws.base(), &settings.table, &args.prefix)
        .await
        .context("init")?;
    output::print(cli.output, &made, |made| {
        format!(
            "table      {} ({})\nqueue      {}\ndlq        {}\ntopic      {}\n\nexport KEYROTOR_TABLE={} KEYROTOR_QUEUE_URL={} KEYROTOR_TOPIC_ARN={}\n",
            made.table,
            if made.table_created { "created" } else { "exists" },
            made.queue_url,
            made.dlq_url,
            made.topic_arn,
            made.table,
            made.queue_url,
            made.topic_arn
        )
    });
    Ok(ExitCode::SUCCESS)
}
