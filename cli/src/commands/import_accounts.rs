//! `keyrotor import-accounts FILE.csv`: loads the account registry (the
//! account source `KEYROTOR_ACCOUNT_SOURCE=table`) from a CSV file. The file
//! is validated whole first; if any row is bad, every problem is printed with
//! its line number and nothing is written (exit 1).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use keyrotor_producer::import::{import_accounts, ImportFailure};
use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::Settings;
use keyrotor_shared::store::registry::AccountRegistry;

use crate::{output, Cli, CliError};

/// `import-accounts` arguments.
#[derive(Args, Debug)]
pub struct ImportAccountsArgs {
    /// The CSV file: a header row naming `account_id` and `email`, optionally
    /// `name` and `enabled` (true/false, default true), in any order; then
    /// one row per account.
    #[arg(env = "KEYROTOR_IMPORT_FILE")]
    pub file: PathBuf,
}

/// Runs `import-accounts`.
pub async fn run(cli: &Cli, args: &ImportAccountsArgs) -> Result<ExitCode, CliError> {
    let settings = Settings::from_args(&cli.settings)?;
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", args.file.display())))?;
    let aws = AwsContext::load(&settings.role_name).await;
    let registry = AccountRegistry::new(
        aws_sdk_dynamodb::Client::new(aws.base()),
        settings.table.clone(),
    );
    let summary = match import_accounts(&registry, &text).await {
        Ok(summary) => summary,
        Err(ImportFailure::Invalid(e)) => {
            return Err(CliError::Failed(
                anyhow::Error::new(e).context(args.file.display().to_string()),
            ))
        }
        Err(ImportFailure::Aws(e)) => {
            return Err(CliError::Failed(anyhow::Error::new(e).context(format!(
                "importing {} into table {}",
                args.file.display(),
                settings.table
            ))))
        }
    };
    output::print(cli.output, &summary, |s| {
        format!(
            "imported {} account{} into the registry in table {}\n",
            s.imported,
            if s.imported == 1 { "" } else { "s" },
            settings.table
        )
    });
    Ok(ExitCode::SUCCESS)
}
