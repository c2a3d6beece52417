//! `keyrotor plan --account ID [--user NAME] [--as-of T]`: what is due, and
//! what is coming within the warning window, for an account's users.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::Args;
use keyrotor_shared::domain::AccountId;
use keyrotor_shared::executor::UserRequest;
use tokio::task::JoinSet;

use super::context;
use crate::{output, parse_as_of, Cli, CliError, Output};

/// Users planned at once; IAM reads are cheap but rate-limited per account.
const PLAN_CONCURRENCY: usize = 8;

/// `plan` flags.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The member account.
    #[arg(long, env = "KEYROTOR_PLAN_ACCOUNT")]
    pub account: AccountId,
    /// One user (default: every user of the account).
    #[arg(long, env = "KEYROTOR_PLAN_USER")]
    pub user: Option<String>,
    /// Evaluation time: RFC 3339 or YYYY-MM-DD (default: now).
    #[arg(long, env = "KEYROTOR_AS_OF", value_parser = parse_as_of)]
    pub as_of: Option<DateTime<Utc>>,
}

/// Runs `plan`.
pub async fn run(cli: &Cli, args: &PlanArgs) -> Result<ExitCode, CliError> {
    let ctx = context(cli).await?;
    let as_of = args.as_of.unwrap_or_else(keyrotor_shared::time::now);
    let account = args.account.to_string();
    let users = match &args.user {
        Some(u) => vec![u.clone()],
        None => {
            let iam = keyrotor_shared::aws::SdkIam::new(ctx.aws.iam_in(&account).await);
            use keyrotor_shared::aws::IamPort;
            iam.list_user_names()
                .await
                .map_err(|e| CliError::Failed(e.into()))?
        }
    };
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(users.len() as u64);
        bar.set_message("planning");
        bar
    });
    let mut tasks = JoinSet::new();
    let mut failures = 0;
    let mut plans = Vec::new();
    let mut pending = users.into_iter();
    loop {
        while tasks.len() < PLAN_CONCURRENCY {
            let Some(user) = pending.next() else { break };
            let executor = Arc::clone(&ctx.executor);
            let req = UserRequest {
                account_id: account.clone(),
                user_name: user,
                as_of,
                mode: ctx.settings.mode,
                force: false,
                run_id: None,
                exempt: None,
                iam_share: keyrotor_shared::aws::IamShare::WHOLE,
                exposed_key: None,
            };
            tasks.spawn(async move {
                let plan = executor.plan(&req).await;
                (req.user_name, plan)
            });
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        let (user, plan) = done.map_err(|e| CliError::Failed(e.into()))?;
        if let Some(bar) = &progress {
            bar.inc(1);
        }
        match plan {
            Ok(plan) => plans.push(plan),
            Err(e) => {
                failures += 1;
                eprintln!("error: {account}/{user}: {e}");
            }
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    plans.sort_by(|a, b| a.user_name.cmp(&b.user_name));
    for plan in &plans {
        match cli.output {
            Output::Json => output::print_line(plan),
            Output::Table => print!("{}", output::plan_text(plan)),
        }
    }
    Ok(if failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
