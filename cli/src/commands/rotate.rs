//! `keyrotor rotate --account ID --user NAME`: one user's due steps, now,
//! through the worker's code path (incident response, trials). In enforce
//! mode it is a run of its own (a `manual` run id): its result is recorded,
//! published and emailed like any worker's, so an incident rotation reaches
//! the subscribers and the owner. In audit mode nothing is recorded.

use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use clap::Args;
use keyrotor_shared::domain::{AccountId, Mode, Outcome};
use keyrotor_shared::executor::UserRequest;
use keyrotor_shared::message::{WorkMessage, MESSAGE_VERSION};
use keyrotor_shared::store::runs::RunStore;
use keyrotor_worker::process::Handled;
use keyrotor_worker::setup::build_worker;

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

/// A run id for one `rotate`: sorts by time like the producer's, and says
/// where it came from.
fn manual_run_id() -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}-manual-{}",
        keyrotor_shared::time::now().format("%Y%m%dT%H%M%SZ"),
        &suffix[..8]
    )
}

/// Runs `rotate`.
pub async fn run(cli: &Cli, args: &RotateArgs) -> Result<ExitCode, CliError> {
    let ctx = context(cli).await?;
    let as_of = args
        .as_of
        .unwrap_or_else(keyrotor_shared::time::now)
        .trunc_subsecs(3);
    let enforce = ctx.settings.mode == Mode::Enforce;
    keyrotor_shared::time::check_enforce_as_of(
        as_of,
        enforce,
        ctx.settings.allow_future_as_of,
        keyrotor_shared::time::now(),
    )
    .map_err(|e| CliError::Usage(e.to_string()))?;
    let who = format!("{}/{}", args.account, args.user);
    if !enforce {
        let req = UserRequest {
            account_id: args.account.to_string(),
            user_name: args.user.clone(),
            as_of,
            mode: Mode::Audit,
            force: args.force,
            run_id: None,
            exempt: None,
            iam_share: keyrotor_shared::aws::IamShare::WHOLE,
        };
        let result = ctx
            .executor
            .process(&req)
            .await
            .map_err(|e| CliError::Failed(anyhow::anyhow!("{who}: {e}")))?;
        output::print(cli.output, &result, output::result_text);
        return Ok(ExitCode::SUCCESS);
    }

    // A run of one message, recorded like the producer's, then worked.
    let run_id = manual_run_id();
    let account = args.account.to_string();
    let runs = RunStore::new(
        aws_sdk_dynamodb::Client::new(ctx.aws.base()),
        ctx.settings.table.clone(),
    );
    let forced = if args.force {
        vec![(account.clone(), args.user.clone())]
    } else {
        Vec::new()
    };
    let record = async {
        let key = runs.start(&run_id, as_of, Mode::Enforce, &forced).await?;
        runs.account_enqueued(&run_id, &account, &account, 1)
            .await?;
        runs.finish_enqueue(&run_id, 1, 1).await?;
        Ok::<_, keyrotor_shared::error::AwsError>(key)
    };
    let key = record
        .await
        .map_err(|e| CliError::Failed(anyhow::anyhow!("recording the manual run: {e}")))?;
    let worker = build_worker(ctx.settings.clone(), &ctx.aws).map_err(CliError::Failed)?;
    let mut message = WorkMessage {
        v: MESSAGE_VERSION,
        run_id: run_id.clone(),
        account_id: account.clone(),
        account_name: account.clone(),
        owner_email: None,
        user_name: args.user.clone(),
        as_of,
        mode: Mode::Enforce,
        force: args.force,
        exempt: false,
        shard: None,
        shards: None,
        wave: None,
        audit_only: false,
        sig: None,
    };
    message.sign(&key);
    tracing::info!(run_id = %run_id, account_id = %account, user = %args.user, "manual run");
    // As if on its last receive: a transient failure is recorded as
    // `failed`, so the manual run completes and reports it.
    let processed = Arc::new(worker)
        .process(&message, ctx.settings.max_receives)
        .await
        .map_err(|e| CliError::Failed(anyhow::anyhow!("{who}: {e}")))?;
    if let Handled::Rejected(reason) = &processed.handled {
        return Err(CliError::Failed(anyhow::anyhow!("{who}: {reason}")));
    }
    match (processed.result, processed.item) {
        (Some(result), _) => {
            output::print(cli.output, &result, output::result_text);
            Ok(ExitCode::SUCCESS)
        }
        (None, Some(item)) if item.outcome == Outcome::Failed => Err(CliError::Failed(
            anyhow::anyhow!("{who}: {} (run {run_id})", item.reason),
        )),
        (None, item) => {
            let outcome = item.map(|i| i.outcome.as_str()).unwrap_or_default();
            output::print(
                cli.output,
                &serde_json::json!({"run_id": run_id, "account_id": account, "user_name": args.user, "outcome": outcome}),
                |v| format!("{v}\n"),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
