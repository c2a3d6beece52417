//! Every `KEYROTOR_*` setting, in one place: its flag, its environment
//! variable, its default, its meaning and its validation.
//!
//! The CLI flattens [`SettingsArgs`] into every command, so each setting is a
//! flag with an environment variable; the Lambda binaries read the same struct
//! from the environment alone ([`Settings::from_env`]). Values arrive as text
//! and are parsed here, so that a bad value fails at start with a message that
//! names the environment variable (clap's own errors would name only the flag).
//! The README's configuration table is checked against this module by a test.

use chrono::Duration;
use clap::{Args, Parser};

use crate::domain::{AccountId, AccountSource, Mode};
use crate::policy::{PolicyConfig, UnusedKeys};

/// The most groups `KEYROTOR_SHARDS_PER_ACCOUNT=auto` spreads an account over.
pub const AUTO_SHARDS_MAX: u32 = 32;

/// Raw settings as flags and environment variables. Parse with
/// [`Settings::from_args`].
#[derive(Args, Debug, Clone, Default)]
pub struct SettingsArgs {
    /// SQS work queue URL (FIFO if it ends in `.fifo`).
    #[arg(long, env = "KEYROTOR_QUEUE_URL", global = true)]
    pub queue_url: Option<String>,
    /// DynamoDB table holding locks, the ledger, runs and results.
    #[arg(
        long,
        env = "KEYROTOR_TABLE",
        default_value = "keyrotor",
        global = true
    )]
    pub table: String,
    /// SNS topic ARN that receives every result event.
    #[arg(long, env = "KEYROTOR_TOPIC_ARN", global = true)]
    pub topic_arn: Option<String>,
    /// Verified SESv2 sender address for owner emails.
    #[arg(long, env = "KEYROTOR_SENDER", global = true)]
    pub sender: Option<String>,
    /// Role assumed in every member account.
    #[arg(
        long,
        env = "KEYROTOR_ROLE_NAME",
        default_value = "keyrotor-member",
        global = true
    )]
    pub role_name: String,
    /// Role the producer assumes in every member account to list users
    /// (`keyrotor-member-reader` in the hub stack); default: KEYROTOR_ROLE_NAME.
    #[arg(long, env = "KEYROTOR_PRODUCER_ROLE_NAME", global = true)]
    pub producer_role_name: Option<String>,
    /// `audit` (report only, the default) or `enforce` (change keys).
    #[arg(long, env = "KEYROTOR_MODE", default_value = "audit", global = true)]
    pub mode: String,
    /// Age in days at which a key is rotated (R).
    #[arg(
        long,
        env = "KEYROTOR_ROTATE_DAYS",
        default_value = "90",
        global = true
    )]
    pub rotate_days: String,
    /// Age in days at which the previous key is deactivated (D).
    #[arg(
        long,
        env = "KEYROTOR_DEACTIVATE_DAYS",
        default_value = "100",
        global = true
    )]
    pub deactivate_days: String,
    /// Age in days at which an inactive key is deleted (X).
    #[arg(
        long,
        env = "KEYROTOR_DELETE_DAYS",
        default_value = "110",
        global = true
    )]
    pub delete_days: String,
    /// Days before a due action that its one warning goes out (W).
    #[arg(long, env = "KEYROTOR_WARN_DAYS", default_value = "7", global = true)]
    pub warn_days: String,
    /// Days an adoption hold may delay a deactivation at most.
    #[arg(
        long,
        env = "KEYROTOR_MAX_HOLD_DAYS",
        default_value = "14",
        global = true
    )]
    pub max_hold_days: String,
    /// What to do with a never-used key past its rotation age: `retire`, `rotate` or `ignore`.
    #[arg(
        long,
        env = "KEYROTOR_UNUSED_KEYS",
        default_value = "retire",
        global = true
    )]
    pub unused_keys: String,
    /// Hold a deactivation while the old key is still the one in use (`true`/`false`).
    #[arg(
        long,
        env = "KEYROTOR_ADOPTION_CHECK",
        default_value = "true",
        global = true
    )]
    pub adoption_check: String,
    /// IAM group whose members are exempt.
    #[arg(long, env = "KEYROTOR_EXEMPT_GROUP", global = true)]
    pub exempt_group: Option<String>,
    /// User tag that exempts a user when its value is `true`.
    #[arg(
        long,
        env = "KEYROTOR_EXEMPT_TAG",
        default_value = "keyrotor:exempt",
        global = true
    )]
    pub exempt_tag: String,
    /// Comma-separated IAM path prefixes whose users are exempt.
    #[arg(long, env = "KEYROTOR_EXEMPT_PATHS", global = true)]
    pub exempt_paths: Option<String>,
    /// User tag holding the owner's email address.
    #[arg(
        long,
        env = "KEYROTOR_OWNER_TAG",
        default_value = "Owner",
        global = true
    )]
    pub owner_tag: String,
    /// Where accounts come from: `organizations` or `table` (the registry).
    #[arg(
        long,
        env = "KEYROTOR_ACCOUNT_SOURCE",
        default_value = "organizations",
        global = true
    )]
    pub account_source: String,
    /// Comma-separated OU ids (or the root id) whose accounts are in scope, recursively.
    #[arg(long, env = "KEYROTOR_OUS", global = true)]
    pub ous: Option<String>,
    /// Comma-separated account ids: only these are in scope.
    #[arg(long, env = "KEYROTOR_ACCOUNTS", global = true)]
    pub accounts: Option<String>,
    /// Comma-separated account ids that are never touched.
    #[arg(long, env = "KEYROTOR_EXCLUDE_ACCOUNTS", global = true)]
    pub exclude_accounts: Option<String>,
    /// Secret name template; placeholders `{account_id}` and `{user_name}`.
    #[arg(
        long,
        env = "KEYROTOR_SECRET_NAME_TEMPLATE",
        default_value = "Account_{account_id}_User_{user_name}_AccessKey",
        global = true
    )]
    pub secret_name_template: String,
    /// Central account that holds every secret (default: the user's own account).
    #[arg(long, env = "KEYROTOR_SECRETS_ACCOUNT", global = true)]
    pub secrets_account: Option<String>,
    /// KMS key (id, alias or ARN) that encrypts the secrets (required with a central secrets account).
    #[arg(long, env = "KEYROTOR_KMS_KEY_ID", global = true)]
    pub kms_key_id: Option<String>,
    /// Comma-separated regions the secrets are replicated to.
    #[arg(long, env = "KEYROTOR_REPLICA_REGIONS", global = true)]
    pub replica_regions: Option<String>,
    /// Check a new key with STS `GetCallerIdentity` before recording it (`true`/`false`).
    #[arg(
        long,
        env = "KEYROTOR_VERIFY_NEW_KEY",
        default_value = "true",
        global = true
    )]
    pub verify_new_key: String,
    /// Role the producer assumes to list the Organization (`keyrotor-org-reader` in the management or delegated-administrator account); default: its own credentials.
    #[arg(long, env = "KEYROTOR_ORG_ROLE_ARN", global = true)]
    pub org_role_arn: Option<String>,
    /// Accounts the producer enumerates at once (each a few calls that mostly wait).
    #[arg(
        long,
        env = "KEYROTOR_ACCOUNT_CONCURRENCY",
        default_value = "32",
        global = true
    )]
    pub account_concurrency: String,
    /// FIFO message groups per account (K): K users of one account are worked at once, each
    /// group taking 1/K of the account's IAM rate; `auto` sizes K from the IAM rate.
    #[arg(
        long,
        env = "KEYROTOR_SHARDS_PER_ACCOUNT",
        default_value = "auto",
        global = true
    )]
    pub shards_per_account: String,
    /// FIFO message groups the whole worker fleet works at once (the worker Lambda's
    /// MaximumConcurrency; pools x --concurrency); with `auto` shards, an account gets no
    /// more groups than its share of them (this / the run's accounts, at least 1).
    #[arg(long, env = "KEYROTOR_FLEET_GROUPS", global = true)]
    pub fleet_groups: Option<String>,
    /// IAM calls per second per member account (IAM's own limit is unpublished).
    #[arg(long, env = "KEYROTOR_IAM_RATE", default_value = "5", global = true)]
    pub iam_rate: String,
    /// IAM calls one account may burst above its rate.
    #[arg(long, env = "KEYROTOR_IAM_BURST", default_value = "10", global = true)]
    pub iam_burst: String,
    /// Secrets Manager writes per second per member account, fleet-wide (per process into a central secrets account; AWS allows 50 per account and region).
    #[arg(
        long,
        env = "KEYROTOR_SECRETS_RATE",
        default_value = "20",
        global = true
    )]
    pub secrets_rate: String,
    /// SES emails per second across the worker (your account's sending rate).
    #[arg(long, env = "KEYROTOR_SES_RATE", default_value = "1", global = true)]
    pub ses_rate: String,
    /// Publish `noop` results to SNS too (`true`/`false`); they are always counted.
    #[arg(
        long,
        env = "KEYROTOR_PUBLISH_NOOP",
        default_value = "false",
        global = true
    )]
    pub publish_noop: String,
    /// Directory with digest templates overriding the built-in ones.
    #[arg(long, env = "KEYROTOR_TEMPLATE_DIR", global = true)]
    pub template_dir: Option<String>,
    /// Seconds a user lock is leased for before another worker may take it.
    #[arg(
        long,
        env = "KEYROTOR_LOCK_LEASE_SECS",
        default_value = "300",
        global = true
    )]
    pub lock_lease_secs: String,
    /// Allow enforce mode with an evaluation time in the future (`true`/`false`): only for emulators whose clock is moved; the evaluation time is then trusted as the real clock.
    #[arg(
        long,
        env = "KEYROTOR_ALLOW_FUTURE_AS_OF",
        default_value = "false",
        global = true
    )]
    pub allow_future_as_of: String,
    /// Hours after its run started that an enforce message is still acted on; older work is reported `failed` (stale) and left to the next run.
    #[arg(
        long,
        env = "KEYROTOR_MAX_MESSAGE_AGE_HOURS",
        default_value = "36",
        global = true
    )]
    pub max_message_age_hours: String,
    /// The work queue's redrive `maxReceiveCount`: on its last receive a message that still fails records a `failed` result instead of reaching the DLQ unrecorded.
    #[arg(
        long,
        env = "KEYROTOR_MAX_RECEIVES",
        default_value = "5",
        global = true
    )]
    pub max_receives: String,
}

/// A setting that could not be used; names the environment variable and the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {env} (--{flag}): {message}")]
pub struct ConfigError {
    /// The environment variable, e.g. `KEYROTOR_DELETE_DAYS`.
    pub env: &'static str,
    /// The flag, without dashes, e.g. `delete-days`.
    pub flag: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn bad(env: &'static str, flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        env,
        flag,
        message: message.into(),
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// SQS work queue URL.
    pub queue_url: Option<String>,
    /// DynamoDB table name.
    pub table: String,
    /// SNS results topic ARN.
    pub topic_arn: Option<String>,
    /// SESv2 sender address.
    pub sender: Option<String>,
    /// Member-account role name.
    pub role_name: String,
    /// Member-account role name the producer assumes (read-only listing).
    pub producer_role_name: String,
    /// Audit or enforce.
    pub mode: Mode,
    /// The rotation policy's parameters.
    pub policy: PolicyConfig,
    /// Exemption IAM group.
    pub exempt_group: Option<String>,
    /// Exemption user tag key (value `true` exempts).
    pub exempt_tag: String,
    /// Exempt IAM path prefixes.
    pub exempt_paths: Vec<String>,
    /// Owner email tag key.
    pub owner_tag: String,
    /// Account source for the producer.
    pub account_source: AccountSource,
    /// OUs in scope.
    pub ous: Vec<String>,
    /// Accounts in scope (empty: all).
    pub accounts: Vec<AccountId>,
    /// Accounts never touched.
    pub exclude_accounts: Vec<AccountId>,
    /// Secret name template.
    pub secret_name_template: String,
    /// Central secrets account.
    pub secrets_account: Option<AccountId>,
    /// KMS key for the secrets.
    pub kms_key_id: Option<String>,
    /// Secret replica regions.
    pub replica_regions: Vec<String>,
    /// Verify new keys with STS before recording them.
    pub verify_new_key: bool,
    /// User lock lease.
    pub lock_lease: std::time::Duration,
    /// Role assumed for Organizations calls.
    pub org_role_arn: Option<String>,
    /// Accounts enumerated at once by the producer.
    pub account_concurrency: usize,
    /// FIFO message groups per account; `None` for `auto` (see
    /// [`Settings::shards_for`]).
    pub shards_per_account: Option<u32>,
    /// Groups the worker fleet works at once, if set (see
    /// [`Settings::shards_for`]).
    pub fleet_groups: Option<u32>,
    /// IAM calls per second per account.
    pub iam_rate: std::num::NonZeroU32,
    /// IAM burst per account.
    pub iam_burst: std::num::NonZeroU32,
    /// Secrets Manager writes per second.
    pub secrets_rate: std::num::NonZeroU32,
    /// SES sends per second.
    pub ses_rate: std::num::NonZeroU32,
    /// Publish noop results.
    pub publish_noop: bool,
    /// Template override directory.
    pub template_dir: Option<std::path::PathBuf>,
    /// Trust the evaluation time as the real clock: enforce may run at a
    /// future `as_of`, and the ledger records evaluation times as they are.
    pub allow_future_as_of: bool,
    /// How long after its run started an enforce message is acted on.
    pub max_message_age: chrono::Duration,
    /// The queue's `maxReceiveCount`.
    pub max_receives: u32,
}

/// Parses env-only settings for the Lambda binaries.
#[derive(Parser, Debug)]
struct EnvOnly {
    #[command(flatten)]
    settings: SettingsArgs,
}

fn list(raw: &Option<String>) -> Vec<String> {
    raw.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn accounts(
    env: &'static str,
    flag: &'static str,
    raw: &Option<String>,
) -> Result<Vec<AccountId>, ConfigError> {
    list(raw)
        .iter()
        .map(|a| a.parse().map_err(|e: String| bad(env, flag, e)))
        .collect()
}

fn days(env: &'static str, flag: &'static str, raw: &str) -> Result<i64, ConfigError> {
    raw.trim().parse::<i64>().map_err(|_| {
        bad(
            env,
            flag,
            format!("expected a whole number of days, got `{raw}`"),
        )
    })
}

fn boolean(env: &'static str, flag: &'static str, raw: &str) -> Result<bool, ConfigError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(bad(
            env,
            flag,
            format!("expected `true` or `false`, got `{raw}`"),
        )),
    }
}

fn non_empty(env: &'static str, flag: &'static str, raw: &Option<String>) -> Option<String> {
    let _ = (env, flag);
    raw.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// An IAM role name: 1–64 of `[A-Za-z0-9+=,.@_-]`.
fn valid_role_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE` with the given service.
fn valid_arn(arn: &str, service: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == service
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty()
}

/// `arn:PARTITION:SERVICE::ACCOUNT:RESOURCE` for global services (no region).
fn valid_arn_global(arn: &str, service: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == service
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty()
}

fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c == ',')
}

fn valid_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Settings {
    /// Reads and validates the settings from `KEYROTOR_*` environment
    /// variables only (the Lambda functions' way).
    pub fn from_env() -> Result<Settings, ConfigError> {
        let parsed = EnvOnly::try_parse_from(["keyrotor"]).map_err(|e| {
            bad(
                "KEYROTOR_*",
                "",
                format!("could not read the environment: {e}"),
            )
        })?;
        Settings::from_args(&parsed.settings)
    }

    /// Validates raw settings; the first bad one is named in the error.
    pub fn from_args(a: &SettingsArgs) -> Result<Settings, ConfigError> {
        let queue_url = non_empty("KEYROTOR_QUEUE_URL", "queue-url", &a.queue_url);
        if let Some(url) = &queue_url {
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url
                    .splitn(4, '/')
                    .nth(3)
                    .is_some_and(|path| path.contains('/'));
            if !ok {
                return Err(bad(
                    "KEYROTOR_QUEUE_URL",
                    "queue-url",
                    format!("`{url}` is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"),
                ));
            }
        }
        let table = a.table.trim().to_string();
        if !(3..=255).contains(&table.len())
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(bad(
                "KEYROTOR_TABLE",
                "table",
                format!("`{table}` is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)"),
            ));
        }
        let topic_arn = non_empty("KEYROTOR_TOPIC_ARN", "topic-arn", &a.topic_arn);
        if let Some(arn) = &topic_arn {
            if !valid_arn(arn, "sns") {
                return Err(bad(
                    "KEYROTOR_TOPIC_ARN",
                    "topic-arn",
                    format!("`{arn}` is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"),
                ));
            }
        }
        let sender = non_empty("KEYROTOR_SENDER", "sender", &a.sender);
        if let Some(s) = &sender {
            if !valid_email(s) {
                return Err(bad(
                    "KEYROTOR_SENDER",
                    "sender",
                    format!("`{s}` is not an email address"),
                ));
            }
        }
        let role_name = a.role_name.trim().to_string();
        if !valid_role_name(&role_name) {
            return Err(bad(
                "KEYROTOR_ROLE_NAME",
                "role-name",
                format!("`{role_name}` is not an IAM role name"),
            ));
        }
        // Unset (or empty) keeps a single-role setup working: the producer
        // then assumes the same role as the worker.
        let producer_role_name = match non_empty(
            "KEYROTOR_PRODUCER_ROLE_NAME",
            "producer-role-name",
            &a.producer_role_name,
        ) {
            None => role_name.clone(),
            Some(name) if valid_role_name(&name) => name,
            Some(name) => {
                return Err(bad(
                    "KEYROTOR_PRODUCER_ROLE_NAME",
                    "producer-role-name",
                    format!("`{name}` is not an IAM role name"),
                ))
            }
        };
        let mode = a
            .mode
            .parse::<Mode>()
            .map_err(|e| bad("KEYROTOR_MODE", "mode", e))?;

        let r = days("KEYROTOR_ROTATE_DAYS", "rotate-days", &a.rotate_days)?;
        let d = days(
            "KEYROTOR_DEACTIVATE_DAYS",
            "deactivate-days",
            &a.deactivate_days,
        )?;
        let x = days("KEYROTOR_DELETE_DAYS", "delete-days", &a.delete_days)?;
        let w = days("KEYROTOR_WARN_DAYS", "warn-days", &a.warn_days)?;
        let h = days("KEYROTOR_MAX_HOLD_DAYS", "max-hold-days", &a.max_hold_days)?;
        if r < 1 {
            return Err(bad(
                "KEYROTOR_ROTATE_DAYS",
                "rotate-days",
                format!("must be at least 1, got {r}"),
            ));
        }
        if d <= r {
            return Err(bad(
                "KEYROTOR_DEACTIVATE_DAYS",
                "deactivate-days",
                format!("must be greater than KEYROTOR_ROTATE_DAYS ({r}), got {d}"),
            ));
        }
        if x <= d {
            return Err(bad(
                "KEYROTOR_DELETE_DAYS",
                "delete-days",
                format!("must be greater than KEYROTOR_DEACTIVATE_DAYS ({d}), got {x}"),
            ));
        }
        if x > 3650 {
            return Err(bad(
                "KEYROTOR_DELETE_DAYS",
                "delete-days",
                format!("must be at most 3650, got {x}"),
            ));
        }
        if !(0..r).contains(&w) {
            return Err(bad(
                "KEYROTOR_WARN_DAYS",
                "warn-days",
                format!(
                    "must be between 0 and KEYROTOR_ROTATE_DAYS - 1 ({}), got {w}",
                    r - 1
                ),
            ));
        }
        if h < 0 {
            return Err(bad(
                "KEYROTOR_MAX_HOLD_DAYS",
                "max-hold-days",
                format!("must not be negative, got {h}"),
            ));
        }
        let unused_keys = a
            .unused_keys
            .parse::<UnusedKeys>()
            .map_err(|e| bad("KEYROTOR_UNUSED_KEYS", "unused-keys", e))?;
        let adoption_check = boolean(
            "KEYROTOR_ADOPTION_CHECK",
            "adoption-check",
            &a.adoption_check,
        )?;
        let policy = PolicyConfig {
            rotate_after: Duration::days(r),
            deactivate_after: Duration::days(d),
            delete_after: Duration::days(x),
            warn_within: Duration::days(w),
            max_hold: Duration::days(h),
            unused_keys,
            adoption_check,
        };

        let exempt_paths = list(&a.exempt_paths);
        if let Some(p) = exempt_paths.iter().find(|p| !p.starts_with('/')) {
            return Err(bad(
                "KEYROTOR_EXEMPT_PATHS",
                "exempt-paths",
                format!("IAM paths start with `/`, got `{p}`"),
            ));
        }
        let exempt_tag = a.exempt_tag.trim().to_string();
        if exempt_tag.is_empty() || exempt_tag.len() > 128 {
            return Err(bad(
                "KEYROTOR_EXEMPT_TAG",
                "exempt-tag",
                "must be a tag key of 1-128 characters",
            ));
        }
        let owner_tag = a.owner_tag.trim().to_string();
        if owner_tag.is_empty() || owner_tag.len() > 128 {
            return Err(bad(
                "KEYROTOR_OWNER_TAG",
                "owner-tag",
                "must be a tag key of 1-128 characters",
            ));
        }
        let account_source = match a.account_source.trim().to_ascii_lowercase().as_str() {
            "organizations" => AccountSource::Organizations,
            "table" => AccountSource::Table,
            other => {
                return Err(bad(
                    "KEYROTOR_ACCOUNT_SOURCE",
                    "account-source",
                    format!("expected `organizations` or `table`, got `{other}`"),
                ))
            }
        };
        let ous = list(&a.ous);
        if let Some(ou) = ous
            .iter()
            .find(|o| !(o.starts_with("ou-") || o.starts_with("r-")))
        {
            return Err(bad(
                "KEYROTOR_OUS",
                "ous",
                format!("`{ou}` is not an OU id (ou-...) or root id (r-...)"),
            ));
        }
        let accounts = accounts("KEYROTOR_ACCOUNTS", "accounts", &a.accounts)?;
        let exclude_accounts = accounts_excluded(&a.exclude_accounts)?;

        let secret_name_template = a.secret_name_template.trim().to_string();
        validate_template(&secret_name_template)?;
        let secrets_account = match non_empty(
            "KEYROTOR_SECRETS_ACCOUNT",
            "secrets-account",
            &a.secrets_account,
        ) {
            Some(s) => Some(
                s.parse::<AccountId>()
                    .map_err(|e| bad("KEYROTOR_SECRETS_ACCOUNT", "secrets-account", e))?,
            ),
            None => None,
        };
        let kms_key_id = non_empty("KEYROTOR_KMS_KEY_ID", "kms-key-id", &a.kms_key_id);
        if secrets_account.is_some() && kms_key_id.is_none() {
            return Err(bad(
                "KEYROTOR_KMS_KEY_ID",
                "kms-key-id",
                "a central KEYROTOR_SECRETS_ACCOUNT needs a customer managed KMS key: the default aws/secretsmanager key cannot be shared across accounts",
            ));
        }
        if secrets_account.is_some() {
            // One central namespace: without the account id, same-named users
            // of two accounts would share one secret.
            if !secret_name_template.contains("{account_id}") {
                return Err(bad(
                    "KEYROTOR_SECRET_NAME_TEMPLATE",
                    "secret-name-template",
                    "must contain {account_id} when KEYROTOR_SECRETS_ACCOUNT is set",
                ));
            }
            // The users' inline policies must name the key for kms:Decrypt.
            if !kms_key_id.as_deref().is_some_and(|k| valid_arn(k, "kms")) {
                return Err(bad(
                    "KEYROTOR_KMS_KEY_ID",
                    "kms-key-id",
                    "must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID) when KEYROTOR_SECRETS_ACCOUNT is set",
                ));
            }
        }
        let replica_regions = list(&a.replica_regions);
        if let Some(r) = replica_regions.iter().find(|r| !valid_region(r)) {
            return Err(bad(
                "KEYROTOR_REPLICA_REGIONS",
                "replica-regions",
                format!("`{r}` is not a region name"),
            ));
        }
        let verify_new_key = boolean(
            "KEYROTOR_VERIFY_NEW_KEY",
            "verify-new-key",
            &a.verify_new_key,
        )?;
        let lease: u64 = a.lock_lease_secs.trim().parse().map_err(|_| {
            bad(
                "KEYROTOR_LOCK_LEASE_SECS",
                "lock-lease-secs",
                format!("expected seconds, got `{}`", a.lock_lease_secs),
            )
        })?;
        if !(2..=3600).contains(&lease) {
            return Err(bad(
                "KEYROTOR_LOCK_LEASE_SECS",
                "lock-lease-secs",
                format!("must be between 2 and 3600, got {lease}"),
            ));
        }

        let account_concurrency = bounded(
            "KEYROTOR_ACCOUNT_CONCURRENCY",
            "account-concurrency",
            &a.account_concurrency,
            1..=256,
        )? as usize;
        let shards_per_account = match a.shards_per_account.trim() {
            "auto" => None,
            raw => Some(bounded(
                "KEYROTOR_SHARDS_PER_ACCOUNT",
                "shards-per-account",
                raw,
                1..=100,
            )? as u32),
        };
        let fleet_groups = a
            .fleet_groups
            .as_deref()
            .map(str::trim)
            .filter(|raw| !raw.is_empty())
            .map(|raw| bounded("KEYROTOR_FLEET_GROUPS", "fleet-groups", raw, 1..=100_000))
            .transpose()?
            .map(|v| v as u32);

        let rate = |env, flag, raw: &str, max| -> Result<std::num::NonZeroU32, ConfigError> {
            let v = bounded(env, flag, raw, 1..=max)? as u32;
            Ok(std::num::NonZeroU32::new(v).expect("at least 1"))
        };
        let iam_rate = rate("KEYROTOR_IAM_RATE", "iam-rate", &a.iam_rate, 1000)?;
        let iam_burst = rate("KEYROTOR_IAM_BURST", "iam-burst", &a.iam_burst, 1000)?;
        let secrets_rate = rate("KEYROTOR_SECRETS_RATE", "secrets-rate", &a.secrets_rate, 50)?;
        let ses_rate = rate("KEYROTOR_SES_RATE", "ses-rate", &a.ses_rate, 1000)?;
        let publish_noop = boolean("KEYROTOR_PUBLISH_NOOP", "publish-noop", &a.publish_noop)?;
        let template_dir = non_empty("KEYROTOR_TEMPLATE_DIR", "template-dir", &a.template_dir)
            .map(std::path::PathBuf::from);
        if let Some(dir) = &template_dir {
            if !dir.is_dir() {
                return Err(bad(
                    "KEYROTOR_TEMPLATE_DIR",
                    "template-dir",
                    format!("`{}` is not a directory", dir.display()),
                ));
            }
        }

        let org_role_arn = non_empty("KEYROTOR_ORG_ROLE_ARN", "org-role-arn", &a.org_role_arn);
        if let Some(arn) = &org_role_arn {
            if !(valid_arn_global(arn, "iam") && arn.contains(":role/")) {
                return Err(bad(
                    "KEYROTOR_ORG_ROLE_ARN",
                    "org-role-arn",
                    format!("`{arn}` is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
                ));
            }
        }

        let allow_future_as_of = boolean(
            "KEYROTOR_ALLOW_FUTURE_AS_OF",
            "allow-future-as-of",
            &a.allow_future_as_of,
        )?;
        let max_message_age = Duration::hours(bounded(
            "KEYROTOR_MAX_MESSAGE_AGE_HOURS",
            "max-message-age-hours",
            &a.max_message_age_hours,
            1..=24 * 365,
        )? as i64);
        let max_receives = bounded(
            "KEYROTOR_MAX_RECEIVES",
            "max-receives",
            &a.max_receives,
            1..=1000,
        )? as u32;

        Ok(Settings {
            allow_future_as_of,
            max_message_age,
            max_receives,
            org_role_arn,
            iam_rate,
            iam_burst,
            secrets_rate,
            ses_rate,
            publish_noop,
            template_dir,
            account_concurrency,
            shards_per_account,
            fleet_groups,
            queue_url,
            table,
            topic_arn,
            sender,
            role_name,
            producer_role_name,
            mode,
            policy,
            exempt_group: non_empty("KEYROTOR_EXEMPT_GROUP", "exempt-group", &a.exempt_group),
            exempt_tag,
            exempt_paths,
            owner_tag,
            account_source,
            ous,
            accounts,
            exclude_accounts,
            secret_name_template,
            secrets_account,
            kms_key_id,
            replica_regions,
            verify_new_key,
            lock_lease: std::time::Duration::from_secs(lease),
        })
    }

    /// How many FIFO groups an account's messages are spread over, given
    /// its user count when the producer knows it (an account listed in one
    /// page) and the run's account count: the setting, or for `auto` the
    /// IAM rate (one group per call a second, at most the IAM burst and
    /// [`AUTO_SHARDS_MAX`]) and, with `KEYROTOR_FLEET_GROUPS`, at most the
    /// account's share of the fleet's groups; never more than its users.
    pub fn shards_for(&self, users: Option<usize>, accounts: usize) -> u32 {
        // One group per IAM call a second: a group's chain of calls and
        // waits makes a few calls a second at most, so the groups together
        // can use the whole rate; more would only spread it thinner. Each
        // group may burst one call, so more groups than the burst would
        // let the groups together burst past the account's.
        let wanted = self.shards_per_account.unwrap_or_else(|| {
            let by_rate = self
                .iam_rate
                .get()
                .min(self.iam_burst.get())
                .min(AUTO_SHARDS_MAX);
            // Groups beyond what the fleet works at once wait in the queue
            // with their share of the account's rate unspent: a worker
            // Lambda's invocation mostly holds one group (SQS gives a FIFO
            // receive one group's messages), so 1,000 accounts of 10 groups
            // behind a MaximumConcurrency of 1,000 used a tenth of their
            // budgets.
            match self.fleet_groups {
                Some(fleet) => by_rate.min((fleet / accounts.max(1) as u32).max(1)),
                None => by_rate,
            }
        });
        match users {
            Some(users) => wanted.min(users.max(1) as u32),
            None => wanted,
        }
    }

    /// The secret name for one user, from the template.
    pub fn secret_name(&self, account_id: &str, user_name: &str) -> String {
        self.secret_name_template
            .replace("{account_id}", account_id)
            .replace("{user_name}", user_name)
    }
}

fn bounded(
    env: &'static str,
    flag: &'static str,
    raw: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let value: u64 = raw
        .trim()
        .parse()
        .map_err(|_| bad(env, flag, format!("expected a whole number, got `{raw}`")))?;
    if !range.contains(&value) {
        return Err(bad(
            env,
            flag,
            format!(
                "must be between {} and {}, got {value}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(value)
}

fn accounts_excluded(raw: &Option<String>) -> Result<Vec<AccountId>, ConfigError> {
    accounts("KEYROTOR_EXCLUDE_ACCOUNTS", "exclude-accounts", raw)
}

fn validate_template(t: &str) -> Result<(), ConfigError> {
    let err = |m: String| bad("KEYROTOR_SECRET_NAME_TEMPLATE", "secret-name-template", m);
    // One secret per user: without the user name two users would share a secret.
    if !t.contains("{user_name}") {
        return Err(err(format!("`{t}` must contain {{user_name}}")));
    }
    let stripped = t.replace("{account_id}", "").replace("{user_name}", "");
    if stripped.contains('{') || stripped.contains('}') {
        return Err(err(format!(
            "`{t}` has an unknown placeholder (only {{account_id}} and {{user_name}})"
        )));
    }
    if !stripped
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
    {
        return Err(err(format!(
            "`{t}` has characters a secret name cannot hold"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        s: SettingsArgs,
    }

    fn parse(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["keyrotor"];
        argv.extend_from_slice(args);
        Settings::from_args(&Cli::try_parse_from(argv).unwrap().s)
    }

    #[test]
    fn defaults_are_the_designs() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.mode, Mode::Audit);
        assert_eq!(s.policy.rotate_after, Duration::days(90));
        assert_eq!(s.policy.deactivate_after, Duration::days(100));
        assert_eq!(s.policy.delete_after, Duration::days(110));
        assert_eq!(s.policy.warn_within, Duration::days(7));
        assert_eq!(s.role_name, "keyrotor-member");
        assert_eq!(
            s.producer_role_name, "keyrotor-member",
            "follows the role name"
        );
        assert_eq!(s.owner_tag, "Owner");
        assert_eq!(s.account_source, AccountSource::Organizations);
        assert_eq!(
            s.secret_name("111122223333", "ci"),
            "Account_111122223333_User_ci_AccessKey"
        );
    }

    #[test]
    fn delete_before_deactivate_names_the_setting() {
        let e = parse(&["--delete-days", "50"]).unwrap_err();
        assert_eq!(e.env, "KEYROTOR_DELETE_DAYS");
        assert!(e.to_string().contains("KEYROTOR_DELETE_DAYS"), "{e}");
    }

    #[test]
    fn each_bad_value_names_its_setting() {
        let cases: &[(&[&str], &str)] = &[
            (&["--rotate-days", "0"], "KEYROTOR_ROTATE_DAYS"),
            (&["--rotate-days", "ninety"], "KEYROTOR_ROTATE_DAYS"),
            (&["--deactivate-days", "80"], "KEYROTOR_DEACTIVATE_DAYS"),
            (&["--warn-days", "90"], "KEYROTOR_WARN_DAYS"),
            (&["--mode", "yolo"], "KEYROTOR_MODE"),
            (&["--queue-url", "not a url"], "KEYROTOR_QUEUE_URL"),
            (
                &["--topic-arn", "arn:aws:sqs:us-east-1:123456789012:q"],
                "KEYROTOR_TOPIC_ARN",
            ),
            (&["--sender", "nobody"], "KEYROTOR_SENDER"),
            (&["--accounts", "123"], "KEYROTOR_ACCOUNTS"),
            (
                &["--exclude-accounts", "12345678901x"],
                "KEYROTOR_EXCLUDE_ACCOUNTS",
            ),
            (&["--ous", "sales"], "KEYROTOR_OUS"),
            (&["--account-source", "ldap"], "KEYROTOR_ACCOUNT_SOURCE"),
            (&["--unused-keys", "keep"], "KEYROTOR_UNUSED_KEYS"),
            (
                &["--secret-name-template", "shared-secret"],
                "KEYROTOR_SECRET_NAME_TEMPLATE",
            ),
            (
                &["--secret-name-template", "{account}/{user_name}"],
                "KEYROTOR_SECRET_NAME_TEMPLATE",
            ),
            (
                &["--secrets-account", "111122223333"],
                "KEYROTOR_KMS_KEY_ID",
            ),
            (&["--replica-regions", "Mars"], "KEYROTOR_REPLICA_REGIONS"),
            (
                &[
                    "--secrets-account",
                    "111122223333",
                    "--kms-key-id",
                    "alias/keyrotor",
                ],
                "KEYROTOR_KMS_KEY_ID",
            ),
            (
                &[
                    "--secrets-account",
                    "111122223333",
                    "--kms-key-id",
                    "arn:aws:kms:us-east-1:111122223333:key/k",
                    "--secret-name-template",
                    "keys/{user_name}",
                ],
                "KEYROTOR_SECRET_NAME_TEMPLATE",
            ),
            (&["--exempt-paths", "svc/"], "KEYROTOR_EXEMPT_PATHS"),
            (&["--table", "x"], "KEYROTOR_TABLE"),
            (&["--role-name", "bad role"], "KEYROTOR_ROLE_NAME"),
            (
                &["--producer-role-name", "bad/role"],
                "KEYROTOR_PRODUCER_ROLE_NAME",
            ),
            (&["--adoption-check", "maybe"], "KEYROTOR_ADOPTION_CHECK"),
            (&["--lock-lease-secs", "1"], "KEYROTOR_LOCK_LEASE_SECS"),
            (
                &["--account-concurrency", "0"],
                "KEYROTOR_ACCOUNT_CONCURRENCY",
            ),
            (
                &["--shards-per-account", "many"],
                "KEYROTOR_SHARDS_PER_ACCOUNT",
            ),
        ];
        for (args, env) in cases {
            let e = parse(args).expect_err(&format!("{args:?} should fail"));
            assert_eq!(&e.env, env, "{args:?}: {e}");
        }
    }

    #[test]
    fn the_producer_role_follows_the_role_name_unless_set() {
        let s = parse(&["--role-name", "rotor"]).unwrap();
        assert_eq!(s.producer_role_name, "rotor");
        let s = parse(&["--role-name", "rotor", "--producer-role-name", " "]).unwrap();
        assert_eq!(s.producer_role_name, "rotor", "empty counts as unset");
        let s = parse(&["--producer-role-name", "keyrotor-member-reader"]).unwrap();
        assert_eq!(s.producer_role_name, "keyrotor-member-reader");
        assert_eq!(s.role_name, "keyrotor-member");
    }

    #[test]
    fn good_values_parse() {
        let s = parse(&[
            "--queue-url",
            "https://sqs.eu-west-1.amazonaws.com/111122223333/keyrotor.fifo",
            "--topic-arn",
            "arn:aws:sns:eu-west-1:111122223333:keyrotor",
            "--sender",
            "keyrotor@example.com",
            "--mode",
            "enforce",
            "--accounts",
            "111122223333, 444455556666",
            "--replica-regions",
            "eu-central-1",
            "--secrets-account",
            "777788889999",
            "--kms-key-id",
            "arn:aws:kms:eu-west-1:777788889999:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ])
        .unwrap();
        assert_eq!(s.mode, Mode::Enforce);
        assert_eq!(s.accounts.len(), 2);
        assert_eq!(s.replica_regions, vec!["eu-central-1"]);
    }

    #[test]
    fn every_setting_is_a_keyrotor_env_var_documented_in_the_readme() {
        let readme = include_str!("../../README.md");
        let cmd = Cli::command();
        let mut n = 0;
        for arg in cmd.get_arguments() {
            let Some(env) = arg.get_env() else { continue };
            let env = env.to_string_lossy();
            assert!(env.starts_with("KEYROTOR_"), "{env}");
            assert!(readme.contains(&format!("`{env}`")), "README lacks {env}");
            n += 1;
        }
        assert!(n >= 27, "only {n} settings found");
    }

    #[test]
    fn auto_shards_follow_the_iam_rate_burst_user_count_and_fleet() {
        let settings = |args: &[&str]| parse(args);
        let auto = settings(&["--iam-rate", "10"]).unwrap();
        assert_eq!(auto.shards_per_account, None, "auto is the default");
        assert_eq!(
            auto.shards_for(None, 1000),
            10,
            "one group per IAM call a second"
        );
        assert_eq!(auto.shards_for(Some(3), 1), 3, "no more groups than users");
        assert_eq!(auto.shards_for(Some(0), 1), 1);
        let fast = settings(&["--iam-rate", "500", "--iam-burst", "500"]).unwrap();
        assert_eq!(fast.shards_for(None, 1), AUTO_SHARDS_MAX);
        let small_burst = settings(&["--iam-rate", "20", "--iam-burst", "6"]).unwrap();
        assert_eq!(
            small_burst.shards_for(None, 1),
            6,
            "one call of burst per group at most"
        );
        let fixed = settings(&["--shards-per-account", "4"]).unwrap();
        assert_eq!(fixed.shards_for(None, 1), 4);
        let fleet = settings(&["--iam-rate", "10", "--fleet-groups", "1000"]).unwrap();
        assert_eq!(fleet.fleet_groups, Some(1000));
        assert_eq!(
            fleet.shards_for(None, 1000),
            1,
            "one group each for 1,000 accounts"
        );
        assert_eq!(fleet.shards_for(None, 250), 4, "the fleet shared out");
        assert_eq!(fleet.shards_for(None, 3), 10, "never more than auto");
        assert_eq!(fleet.shards_for(None, 5000), 1, "at least one");
        let fixed_in_fleet =
            settings(&["--shards-per-account", "4", "--fleet-groups", "10"]).unwrap();
        assert_eq!(fixed_in_fleet.shards_for(None, 1000), 4, "a number is kept");
        let bad = settings(&["--fleet-groups", "0"]).unwrap_err();
        assert_eq!(bad.env, "KEYROTOR_FLEET_GROUPS");
        let bad = settings(&["--shards-per-account", "many"]).unwrap_err();
        assert_eq!(bad.env, "KEYROTOR_SHARDS_PER_ACCOUNT");
    }
}
