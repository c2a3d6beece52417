//! The settings as clap reads them: one typed field per `KEYROTOR_*`
//! variable and flag, its default beside it, and a value parser that checks
//! the value alone (a number's range, an ARN's shape). A value that fails
//! becomes a [`ConfigError`] naming the environment variable
//! ([`ConfigError::from_clap`]); the rules between settings are in
//! [`super::validate`].

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Args;

use super::validate::{
    secret_name_template, valid_arn, valid_arn_global, valid_email, valid_event_bus,
    valid_queue_url, valid_region, valid_role_name, valid_table_name, valid_tag_key,
};
use super::ConfigError;
use crate::breaker::BreakerThreshold;
use crate::domain::{AccountId, AccountSource, Mode};
use crate::incident::ExposedKeyAction;
use crate::policy::UnusedKeys;
use crate::waves::Waves;

/// Raw settings as flags and environment variables. Parse with
/// [`super::Settings::from_args`].
#[derive(Args, Debug, Clone)]
pub struct SettingsArgs {
    /// SQS work queue URL (FIFO if it ends in `.fifo`).
    #[arg(long, env = "KEYROTOR_QUEUE_URL", value_parser = checked(valid_queue_url, "an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"), global = true)]
    pub queue_url: Option<String>,
    /// DynamoDB table holding locks, the ledger, runs and results.
    #[arg(
        long,
        env = "KEYROTOR_TABLE",
        default_value = "keyrotor",
        value_parser = required(valid_table_name, "a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)"), global = true
    )]
    pub table: String,
    /// SNS topic ARN that receives every result event.
    #[arg(long, env = "KEYROTOR_TOPIC_ARN", value_parser = checked(|s| valid_arn(s, "sns"), "an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"), global = true)]
    pub topic_arn: Option<String>,
    /// EventBridge bus (name or ARN) that also receives every result, run and breaker event (source `keyrotor`, detail-type the event type).
    #[arg(long, env = "KEYROTOR_EVENT_BUS", value_parser = checked(valid_event_bus, "an EventBridge bus name or ARN (arn:aws:events:REGION:ACCOUNT:event-bus/NAME)"), global = true)]
    pub event_bus: Option<String>,
    /// Verified SESv2 sender address for owner emails.
    #[arg(long, env = "KEYROTOR_SENDER", value_parser = checked(valid_email, "an email address"), global = true)]
    pub sender: Option<String>,
    /// Role assumed in every member account.
    #[arg(
        long,
        env = "KEYROTOR_ROLE_NAME",
        default_value = "keyrotor-member",
        value_parser = required(valid_role_name, "an IAM role name"), global = true
    )]
    pub role_name: String,
    /// Role the producer assumes in every member account to list users
    /// (`keyrotor-member-reader` in the hub stack); default: KEYROTOR_ROLE_NAME.
    #[arg(long, env = "KEYROTOR_PRODUCER_ROLE_NAME", value_parser = checked(valid_role_name, "an IAM role name"), global = true)]
    pub producer_role_name: Option<String>,
    /// `audit` (report only, the default) or `enforce` (change keys).
    #[arg(long, env = "KEYROTOR_MODE", default_value = "audit", value_parser = trimmed::<Mode>, global = true)]
    pub mode: Mode,
    /// Age in days at which a key is rotated (R).
    #[arg(
        long,
        env = "KEYROTOR_ROTATE_DAYS",
        default_value = "90",
        value_parser = days(1), global = true
    )]
    pub rotate_days: u16,
    /// Age in days at which the previous key is deactivated (D).
    #[arg(
        long,
        env = "KEYROTOR_DEACTIVATE_DAYS",
        default_value = "100",
        value_parser = days(1), global = true
    )]
    pub deactivate_days: u16,
    /// Age in days at which an inactive key is deleted (X).
    #[arg(
        long,
        env = "KEYROTOR_DELETE_DAYS",
        default_value = "110",
        value_parser = days(1), global = true
    )]
    pub delete_days: u16,
    /// Days before a due action that its one warning goes out (W).
    #[arg(long, env = "KEYROTOR_WARN_DAYS", default_value = "7", value_parser = days(0), global = true)]
    pub warn_days: u16,
    /// Days an adoption hold may delay a deactivation at most.
    #[arg(
        long,
        env = "KEYROTOR_MAX_HOLD_DAYS",
        default_value = "14",
        value_parser = within(0u16, u16::MAX), global = true
    )]
    pub max_hold_days: u16,
    /// What to do with a never-used key past its rotation age: `retire`, `rotate` or `ignore`.
    #[arg(
        long,
        env = "KEYROTOR_UNUSED_KEYS",
        default_value = "retire",
        value_parser = trimmed::<UnusedKeys>, global = true
    )]
    pub unused_keys: UnusedKeys,
    /// Hold a deactivation while the old key is still the one in use (`true`/`false`).
    #[arg(
        long,
        env = "KEYROTOR_ADOPTION_CHECK",
        default_value = "true",
        action = clap::ArgAction::Set, value_parser = boolean, global = true
    )]
    pub adoption_check: bool,
    /// IAM group whose members are exempt.
    #[arg(long, env = "KEYROTOR_EXEMPT_GROUP", global = true)]
    pub exempt_group: Option<String>,
    /// User tag that exempts a user when its value is `true`.
    #[arg(
        long,
        env = "KEYROTOR_EXEMPT_TAG",
        default_value = "keyrotor:exempt",
        value_parser = required(valid_tag_key, "a tag key of 1-128 characters"), global = true
    )]
    pub exempt_tag: String,
    /// Comma-separated IAM path prefixes whose users are exempt.
    #[arg(long, env = "KEYROTOR_EXEMPT_PATHS", value_parser = list_of(|p| p.starts_with('/'), "an IAM path (it starts with `/`)"), global = true)]
    pub exempt_paths: Option<CommaList<String>>,
    /// User tag holding the owner's email address.
    #[arg(
        long,
        env = "KEYROTOR_OWNER_TAG",
        default_value = "Owner",
        value_parser = required(valid_tag_key, "a tag key of 1-128 characters"), global = true
    )]
    pub owner_tag: String,
    /// Where accounts come from: `organizations` or `table` (the registry).
    #[arg(
        long,
        env = "KEYROTOR_ACCOUNT_SOURCE",
        default_value = "organizations",
        value_parser = trimmed::<AccountSource>, global = true
    )]
    pub account_source: AccountSource,
    /// Comma-separated OU ids (or the root id) whose accounts are in scope, recursively.
    #[arg(long, env = "KEYROTOR_OUS", value_parser = list_of(|o| o.starts_with("ou-") || o.starts_with("r-"), "an OU id (ou-...) or root id (r-...)"), global = true)]
    pub ous: Option<CommaList<String>>,
    /// Comma-separated account ids: only these are in scope.
    #[arg(long, env = "KEYROTOR_ACCOUNTS", value_parser = trimmed::<CommaList<AccountId>>, global = true)]
    pub accounts: Option<CommaList<AccountId>>,
    /// Comma-separated account ids that are never touched.
    #[arg(long, env = "KEYROTOR_EXCLUDE_ACCOUNTS", value_parser = trimmed::<CommaList<AccountId>>, global = true)]
    pub exclude_accounts: Option<CommaList<AccountId>>,
    /// Secret name template; placeholders `{account_id}` and `{user_name}`.
    #[arg(
        long,
        env = "KEYROTOR_SECRET_NAME_TEMPLATE",
        default_value = "Account_{account_id}_User_{user_name}_AccessKey",
        value_parser = secret_name_template, global = true
    )]
    pub secret_name_template: String,
    /// Central account that holds every secret (default: the user's own account).
    #[arg(long, env = "KEYROTOR_SECRETS_ACCOUNT", value_parser = trimmed::<OrBlank<AccountId>>, global = true)]
    pub secrets_account: Option<OrBlank<AccountId>>,
    /// KMS key (id, alias or ARN) that encrypts the secrets (required with a central secrets account).
    #[arg(long, env = "KEYROTOR_KMS_KEY_ID", global = true)]
    pub kms_key_id: Option<String>,
    /// Comma-separated regions the secrets are replicated to.
    #[arg(long, env = "KEYROTOR_REPLICA_REGIONS", value_parser = list_of(valid_region, "a region name"), global = true)]
    pub replica_regions: Option<CommaList<String>>,
    /// Check a new key with STS `GetCallerIdentity` before recording it (`true`/`false`).
    #[arg(
        long,
        env = "KEYROTOR_VERIFY_NEW_KEY",
        default_value = "true",
        action = clap::ArgAction::Set, value_parser = boolean, global = true
    )]
    pub verify_new_key: bool,
    /// Role the producer assumes to list the Organization (`keyrotor-org-reader` in the management or delegated-administrator account); default: its own credentials.
    #[arg(long, env = "KEYROTOR_ORG_ROLE_ARN", value_parser = checked(|a| valid_arn_global(a, "iam") && a.contains(":role/"), "an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"), global = true)]
    pub org_role_arn: Option<String>,
    /// Accounts the producer enumerates at once (each a few calls that mostly wait).
    #[arg(
        long,
        env = "KEYROTOR_ACCOUNT_CONCURRENCY",
        default_value = "32",
        value_parser = within(1usize, 256), global = true
    )]
    pub account_concurrency: usize,
    /// FIFO message groups per account (K): K users of one account are worked at once, each
    /// group taking 1/K of the account's IAM rate; `auto` sizes K from the IAM rate.
    #[arg(
        long,
        env = "KEYROTOR_SHARDS_PER_ACCOUNT",
        default_value = "auto",
        value_parser = trimmed::<Shards>, global = true
    )]
    pub shards_per_account: Shards,
    /// FIFO message groups the whole worker fleet works at once (the worker Lambda's
    /// MaximumConcurrency; pools x --concurrency); with `auto` shards, an account gets no
    /// more groups than its share of them (this / the run's accounts, at least 1, or this
    /// times its part of the run's users if more).
    #[arg(long, env = "KEYROTOR_FLEET_GROUPS", value_parser = blank_or_within(1, 100_000), global = true)]
    pub fleet_groups: Option<OrBlank<u32>>,
    /// IAM calls per second per member account (IAM's own limit is unpublished).
    #[arg(long, env = "KEYROTOR_IAM_RATE", default_value = "5", value_parser = rate(1000), global = true)]
    pub iam_rate: NonZeroU32,
    /// IAM calls one account may burst above its rate.
    #[arg(long, env = "KEYROTOR_IAM_BURST", default_value = "10", value_parser = rate(1000), global = true)]
    pub iam_burst: NonZeroU32,
    /// Secrets Manager writes per second per member account, fleet-wide (per process into a central secrets account; AWS allows 50 per account and region).
    #[arg(
        long,
        env = "KEYROTOR_SECRETS_RATE",
        default_value = "20",
        value_parser = rate(50), global = true
    )]
    pub secrets_rate: NonZeroU32,
    /// SES emails per second for this process alone: used with KEYROTOR_SES_FLEET_RATE=off, or
    /// while no fleet rate is recorded.
    #[arg(long, env = "KEYROTOR_SES_RATE", default_value = "1", value_parser = rate(1000), global = true)]
    pub ses_rate: NonZeroU32,
    /// SES emails per second for the whole worker fleet: each digest books its emails' send
    /// times on one DynamoDB item, so digests of accounts that finish together go out at this
    /// rate instead of being throttled and retried. `auto`: the account's own sending rate, which
    /// the producer reads from SES (`sesv2:GetAccount`) each run; `off` (or blank): each worker
    /// at KEYROTOR_SES_RATE; or 1-1000.
    #[arg(
        long,
        env = "KEYROTOR_SES_FLEET_RATE",
        default_value = "auto",
        global = true
    )]
    pub ses_fleet_rate: SesFleetRate,
    /// Publish `noop` results to SNS too (`true`/`false`); they are always counted.
    #[arg(
        long,
        env = "KEYROTOR_PUBLISH_NOOP",
        default_value = "false",
        action = clap::ArgAction::Set, value_parser = boolean, global = true
    )]
    pub publish_noop: bool,
    /// Directory with digest templates overriding the built-in ones.
    #[arg(long, env = "KEYROTOR_TEMPLATE_DIR", global = true)]
    pub template_dir: Option<String>,
    /// Seconds a user lock is leased for before another worker may take it.
    #[arg(
        long,
        env = "KEYROTOR_LOCK_LEASE_SECS",
        default_value = "300",
        value_parser = within(2u64, 3600), global = true
    )]
    pub lock_lease_secs: u64,
    /// Allow enforce mode with an evaluation time in the future (`true`/`false`): only for emulators whose clock is moved; the evaluation time is then trusted as the real clock.
    #[arg(
        long,
        env = "KEYROTOR_ALLOW_FUTURE_AS_OF",
        default_value = "false",
        action = clap::ArgAction::Set, value_parser = boolean, global = true
    )]
    pub allow_future_as_of: bool,
    /// Hours after its run started that an enforce message is still acted on; older work is reported `failed` (stale) and left to the next run.
    #[arg(
        long,
        env = "KEYROTOR_MAX_MESSAGE_AGE_HOURS",
        default_value = "36",
        value_parser = within(1i64, 24 * 365), global = true
    )]
    pub max_message_age_hours: i64,
    /// The work queue's redrive `maxReceiveCount`: on its last receive a message that still fails records a `failed` result instead of reaching the DLQ unrecorded.
    #[arg(
        long,
        env = "KEYROTOR_MAX_RECEIVES",
        default_value = "5",
        value_parser = within(1u32, 1000), global = true
    )]
    pub max_receives: u32,
    /// Failed results of an enforce run that open the circuit breaker (the rest of the run, and later runs, act in audit mode until `keyrotor breaker reset`): a count like `3`, a share of the run's users like `5%`, or `off`.
    #[arg(
        long,
        env = "KEYROTOR_BREAKER_FAILURES",
        default_value = "5%",
        value_parser = trimmed::<BreakerThreshold>, global = true
    )]
    pub breaker_failures: BreakerThreshold,
    /// Staged rollout: waves separated by `;`, each a comma-separated list of account ids and OU ids (an OU with every account under it); accounts in no wave belong to the last. Enforce runs enforce only released waves and audit the rest. Unset or blank: no waves.
    #[arg(long, env = "KEYROTOR_WAVES", value_parser = trimmed::<Waves>, global = true)]
    pub waves: Option<Waves>,
    /// Days a released wave must run clean in enforce mode (no failed result, no adoption hold that ran out) before the next wave is released.
    #[arg(
        long,
        env = "KEYROTOR_WAVE_SOAK_DAYS",
        default_value = "7",
        value_parser = within(0u16, 3650), global = true
    )]
    pub wave_soak_days: u16,
    /// What happens to a key AWS Health reported exposed, once its replacement is stored: `deactivate` it at once (no install grace, no adoption hold) or `hold` it to the usual grace.
    #[arg(
        long,
        env = "KEYROTOR_EXPOSED_KEY_ACTION",
        default_value = "deactivate",
        value_parser = trimmed::<ExposedKeyAction>, global = true
    )]
    pub exposed_key_action: ExposedKeyAction,
}

/// `KEYROTOR_SHARDS_PER_ACCOUNT`: `auto` or a number of groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shards {
    /// Sized from the IAM rate (see [`super::Settings::shards_for`]).
    Auto,
    /// This many groups (1–100).
    Fixed(u32),
}

impl FromStr for Shards {
    type Err = String;
    fn from_str(s: &str) -> Result<Shards, String> {
        match s.trim() {
            "auto" => Ok(Shards::Auto),
            n => within(1u32, 100)(n).map(Shards::Fixed),
        }
    }
}

/// `KEYROTOR_SES_FLEET_RATE`: the digests' pace across the whole worker fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SesFleetRate {
    /// SES's own sending rate for the account, read by the producer each
    /// run and recorded in the table.
    Auto,
    /// This many emails a second (1–1000).
    Fixed(NonZeroU32),
    /// No fleet pace: each worker sends at `KEYROTOR_SES_RATE`.
    Off,
}

impl FromStr for SesFleetRate {
    type Err = String;
    fn from_str(s: &str) -> Result<SesFleetRate, String> {
        match s.trim() {
            "auto" => Ok(SesFleetRate::Auto),
            // Blank is what the stack passed for "off" before `auto` existed.
            "" | "off" => Ok(SesFleetRate::Off),
            n => within(1u32, 1000)(n)
                .map(|n| SesFleetRate::Fixed(NonZeroU32::new(n).expect("at least 1")))
                .map_err(|e| format!("{e}, or `auto` or `off`")),
        }
    }
}

/// A comma-separated list (blank entries skipped), each entry parsed as `T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommaList<T>(pub Vec<T>);

impl<T: FromStr> FromStr for CommaList<T>
where
    T::Err: fmt::Display,
{
    type Err = String;
    fn from_str(s: &str) -> Result<CommaList<T>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| T::from_str(e).map_err(|err| err.to_string()))
            .collect::<Result<Vec<T>, String>>()
            .map(CommaList)
    }
}

/// A value that may be left blank (an empty CloudFormation parameter):
/// blank reads as unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrBlank<T>(pub Option<T>);

impl<T: FromStr> FromStr for OrBlank<T>
where
    T::Err: fmt::Display,
{
    type Err = String;
    fn from_str(s: &str) -> Result<OrBlank<T>, String> {
        match s.trim() {
            "" => Ok(OrBlank(None)),
            v => v
                .parse()
                .map(|v| OrBlank(Some(v)))
                .map_err(|e: T::Err| e.to_string()),
        }
    }
}

/// Parses the trimmed value as `T`.
fn trimmed<T: FromStr<Err = String>>(s: &str) -> Result<T, String> {
    s.trim().parse()
}

/// The trimmed value if `ok` holds for it; blank passes (it reads as unset).
fn checked(
    ok: impl Fn(&str) -> bool + Clone + Send + Sync + 'static,
    what: &'static str,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let s = s.trim();
        if s.is_empty() || ok(s) {
            Ok(s.to_string())
        } else {
            Err(format!("`{s}` is not {what}"))
        }
    }
}

/// The trimmed value if `ok` holds for it (blank fails).
fn required(
    ok: impl Fn(&str) -> bool + Clone + Send + Sync + 'static,
    what: &'static str,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let s = s.trim();
        if ok(s) {
            Ok(s.to_string())
        } else {
            Err(format!("`{s}` is not {what}"))
        }
    }
}

/// A comma-separated list whose every entry `ok` accepts.
fn list_of(
    ok: impl Fn(&str) -> bool + Clone + Send + Sync + 'static,
    what: &'static str,
) -> impl Fn(&str) -> Result<CommaList<String>, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let list: CommaList<String> = s.parse()?;
        match list.0.iter().find(|e| !ok(e)) {
            Some(bad) => Err(format!("`{bad}` is not {what}")),
            None => Ok(list),
        }
    }
}

/// A whole number in `min..=max`.
fn within<T>(min: T, max: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + fmt::Display + Copy + Send + Sync + 'static,
{
    move |s: &str| {
        let v: T = s
            .trim()
            .parse()
            .map_err(|_| format!("expected a whole number, got `{s}`"))?;
        if v < min || v > max {
            return Err(format!("must be between {min} and {max}, got {v}"));
        }
        Ok(v)
    }
}

/// [`within`], blank reading as unset.
fn blank_or_within(
    min: u32,
    max: u32,
) -> impl Fn(&str) -> Result<OrBlank<u32>, String> + Clone + Send + Sync + 'static {
    move |s: &str| match s.trim() {
        "" => Ok(OrBlank(None)),
        v => within(min, max)(v).map(|v| OrBlank(Some(v))),
    }
}

/// A number of days from `min` to 3650 (ten years).
fn days(min: u16) -> impl Fn(&str) -> Result<u16, String> + Clone + Send + Sync + 'static {
    within(min, 3650)
}

/// A rate: 1 to `max` a second.
fn rate(max: u32) -> impl Fn(&str) -> Result<NonZeroU32, String> + Clone + Send + Sync + 'static {
    move |s: &str| within(1, max)(s).map(|v| NonZeroU32::new(v).expect("at least 1"))
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`).
fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("expected `true` or `false`, got `{s}`")),
    }
}

impl ConfigError {
    /// The setting a clap error is about, as the error naming its
    /// environment variable; other errors (help, an unknown flag) are
    /// clap's to print, and come back unchanged.
    pub fn from_clap(
        err: clap::Error,
        command: &clap::Command,
    ) -> Result<ConfigError, clap::Error> {
        if !matches!(
            err.kind(),
            ErrorKind::ValueValidation | ErrorKind::InvalidValue | ErrorKind::InvalidUtf8
        ) {
            return Err(err);
        }
        let Some(ContextValue::String(shown)) = err.get(ContextKind::InvalidArg) else {
            return Err(err);
        };
        // A flag given without its value is a usage error, not a setting's.
        if err.kind() == ErrorKind::InvalidValue
            && matches!(err.get(ContextKind::InvalidValue), Some(ContextValue::String(v)) if v.is_empty())
        {
            return Err(err);
        }
        // "--delete-days <DELETE_DAYS>"
        let long = shown
            .trim_start_matches("--")
            .split([' ', '='])
            .next()
            .unwrap_or_default()
            .to_string();
        let Some(arg) = all_args(command).find(|a| a.get_long() == Some(long.as_str())) else {
            return Err(err);
        };
        let Some(env) = arg.get_env() else {
            return Err(err);
        };
        let reason = std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_else(|| match err.get(ContextKind::InvalidValue) {
                Some(ContextValue::String(v)) => format!("`{v}` is not a valid value"),
                _ => "not a valid value".to_string(),
            });
        Ok(ConfigError {
            env: env.to_string_lossy().into_owned(),
            flag: long,
            message: reason,
        })
    }
}

/// Every argument of `command` and of its subcommands.
fn all_args(command: &clap::Command) -> Box<dyn Iterator<Item = &clap::Arg> + '_> {
    Box::new(
        command
            .get_arguments()
            .chain(command.get_subcommands().flat_map(all_args)),
    )
}
