//! `keyrotor rotate --account ID --user NAME`: one user's due steps, now,
//! through the worker's code path (incident response, trials).

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Args;
use keyrotor_shared::config::AccountId;
use keyrotor_shared::executor::UserRequest;

use super::context;
use crate::{output, parse_as_of, Cli, CliError};

/// `rotate` flags (`--mode` is the global setting).
#[derive(Args, Debug)]
pub struct RotateArgs {
    /// The member account.
    #[arg(long, env = "KEYROTOR_ROTATE_ACCOUNT")]
    pub account: AccountId,
    /// The IAM user.
    #[arg(long, env = "KEYROTOR_ROTATE_USER")]
    pub user: String,
    /// Evaluation time: RFC 3339 or YYYY-MM-DD (default: now).
    #[arg(long, env = "KEYROTOR_AS_OF", value_parser = parse_as_of)]
    pub as_of: Option<DateTime<Utc>>,
    /// Rotate now whatever the key's age.
    #[arg(long, env = "KEYROTOR_FORCE")]
    pub force: bool,
}

/// Runs `rotate`.
pub async fn run(cli: &Cli, args: &RotateArgs) -> Result<ExitCode, CliError> {
    let ctx = context(cli).await?;
    let req = UserRequest {
        account_id: args.account.to_string(),
        user_name: args.user.clone(),
        as_of: args.as_of.unwrap_or_else(Utc::now),
        mode: ctx.settings.mode,
        force: args.force,
    };
    let result = ctx.executor.process(&req).await.map_err(|e| {
        CliError::Failed(anyhow::anyhow!("{}/{}: {e}", req.account_id, req.user_name))
    })?;
    output::print(cli.output, &result, output::result_text);
    Ok(ExitCode::SUCCESS)
}
