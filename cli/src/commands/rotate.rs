//! `keyrotor rotate --account ID --user NAME`: one user's due steps, now,
//! or with `--exposed KEY_ID` an incident: the key's user (found from the
//! key when `--user` is not given) gets a new key at once and the exposed
//! key is switched off as soon as the new one is stored;
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
    /// The IAM user (with `--exposed`, found from the key when not given).
    #[arg(
        long,
        env = "KEYROTOR_ROTATE_USER",
        required_unless_present = "exposed"
    )]
    pub user: Option<String>,
    /// An incident: this access key is exposed. The user's key is replaced
    /// now (forced), then the exposed key is switched off at once
    /// (`KEYROTOR_EXPOSED_KEY_ACTION`).
    #[arg(long, env = "KEYROTOR_ROTATE_EXPOSED", value_parser = exposed_key)]
    pub exposed: Option<String>,
    /// Evaluation time: RFC 3339 or YYYY-MM-DD (default: now).
    #[arg(long, env = "KEYROTOR_AS_OF", value_parser = parse_as_of)]
    pub as_of: Option<DateTime<Utc>>,
    /// Rotate now whatever the key's age.
    #[arg(long, env = "KEYROTOR_FORCE")]
    pub force: bool,
}

fn exposed_key(s: &str) -> Result<String, String> {
    let s = s.trim();
    if keyrotor_shared::incident::is_key_id(s) {
        Ok(s.to_string())
    } else {
        Err(format!("`{s}` is not an access key id (AKIA...)"))
    }
}

/// The user of `key_id` in `account`, asked of IAM through the member role.
async fn user_of(ctx: &super::Context, account: &str, key_id: &str) -> Result<String, CliError> {
    ctx.aws
        .checked_for_account(account)
        .await
        .map_err(|e| CliError::Failed(anyhow::anyhow!("account {account}: {e}")))?;
    keyrotor_producer::users::user_of_key(&ctx.aws.iam_in(account).await, key_id)
        .await
        .map_err(|e| CliError::Failed(anyhow::anyhow!("finding the user of {key_id}: {e}")))?
        .ok_or_else(|| {
            CliError::Usage(format!(
                "IAM in account {account} does not know the key {key_id}"
            ))
        })
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
    let user = match (&args.exposed, &args.user) {
        (Some(key), given) => {
            let owner = user_of(&ctx, args.account.as_str(), key).await?;
            if given.as_ref().is_some_and(|u| *u != owner) {
                return Err(CliError::Usage(format!(
                    "the key {key} belongs to {owner}, not {}",
                    given.as_deref().unwrap_or_default()
                )));
            }
            owner
        }
        (None, Some(user)) => user.clone(),
        (None, None) => return Err(CliError::Usage("--user is required".into())),
    };
    let force = args.force || args.exposed.is_some();
    let who = format!("{}/{}", args.account, user);
    if !enforce {
        let req = UserRequest {
            account_id: args.account.to_string(),
            user_name: user.clone(),
            as_of,
            mode: Mode::Audit,
            force,
            run_id: None,
            exempt: None,
            iam_share: keyrotor_shared::aws::IamShare::WHOLE,
            exposed_key: args.exposed.clone(),
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
    let forced = if force {
        vec![(account.clone(), user.clone())]
    } else {
        Vec::new()
    };
    let record = async {
        let key = runs.start(&run_id, as_of, Mode::Enforce, &forced).await?;
        runs.account_enqueued(&run_id, &account, &account, 1, 1)
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
        user_name: user.clone(),
        as_of,
        mode: Mode::Enforce,
        force,
        exempt: false,
        shard: None,
        shards: None,
        wave: None,
        audit_only: false,
        incident: args.exposed.is_some(),
        exposed_key: args.exposed.clone(),
        sig: None,
    };
    message.sign(&key);
    tracing::info!(run_id = %run_id, account_id = %account, user = %user, "manual run");
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
                &serde_json::json!({"run_id": run_id, "account_id": account, "user_name": user, "outcome": outcome}),
                |v| format!("{v}\n"),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
