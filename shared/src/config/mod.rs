//! Every `KEYROTOR_*` setting, in one place: its flag, its environment
//! variable, its default, its meaning and its validation.
//!
//! - [`args`]: [`SettingsArgs`], the typed fields as clap reads them (the CLI
//!   flattens it into every command, so each setting is a flag with an
//!   environment variable; the Lambda binaries read it from the environment
//!   alone, [`Settings::from_env`]), each with its default and a value
//!   parser; a bad value is a [`ConfigError`] naming the environment
//!   variable ([`ConfigError::from_clap`]), not clap's message naming only
//!   the flag.
//! - [`validate`]: what values look like, and the rules between settings.
//! - here: [`Settings`], the validated whole, and what is derived from it.
//!
//! The README's configuration table is checked against these settings by a
//! test.

pub mod args;
pub mod validate;

use chrono::Duration;
use clap::{CommandFactory, Parser};

pub use args::{CommaList, OrBlank, SesFleetRate, SettingsArgs, Shards};

use crate::domain::{AccountId, AccountSource, Mode};
use crate::policy::PolicyConfig;

/// The most groups `KEYROTOR_SHARDS_PER_ACCOUNT=auto` spreads an account over.
pub const AUTO_SHARDS_MAX: u32 = 32;

/// A setting that could not be used; names the environment variable and the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {env} (--{flag}): {message}")]
pub struct ConfigError {
    /// The environment variable, e.g. `KEYROTOR_DELETE_DAYS`.
    pub env: String,
    /// The flag, without dashes, e.g. `delete-days`.
    pub flag: String,
    /// What is wrong with it.
    pub message: String,
}

/// The error for setting `env` (flag `flag`).
pub fn bad(env: &str, flag: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        env: env.to_string(),
        flag: flag.to_string(),
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
    /// EventBridge bus that also receives every event.
    pub event_bus: Option<String>,
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
    /// SES sends per second for the whole fleet, paced through the table.
    pub ses_fleet_rate: SesFleetRate,
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
    /// When the circuit breaker opens.
    pub breaker_failures: crate::breaker::BreakerThreshold,
    /// The rollout waves (empty: none).
    pub waves: crate::waves::Waves,
    /// How long a released wave must run clean before the next is released.
    pub wave_soak: chrono::Duration,
    /// What happens to an exposed key once its replacement is stored.
    pub exposed_key_action: crate::incident::ExposedKeyAction,
}

/// Parses env-only settings for the Lambda binaries.
#[derive(Parser, Debug)]
struct EnvOnly {
    #[command(flatten)]
    settings: SettingsArgs,
}

/// A given, non-blank text.
fn given(raw: &Option<String>) -> Option<String> {
    raw.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A list's entries (none when unset).
fn entries<T: Clone>(list: &Option<CommaList<T>>) -> Vec<T> {
    list.as_ref().map(|l| l.0.clone()).unwrap_or_default()
}

/// The size of a run as the producer knows it when it picks an account's
/// FIFO groups ([`Settings::shards_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSize {
    /// The run's accounts.
    pub accounts: usize,
    /// Its users, estimated from the accounts listed so far; `None` when
    /// not known.
    pub users: Option<usize>,
}

impl RunSize {
    /// A run of `accounts` accounts, its users not known.
    pub fn accounts(accounts: usize) -> RunSize {
        RunSize {
            accounts,
            users: None,
        }
    }
}

impl Settings {
    /// Reads and validates the settings from `KEYROTOR_*` environment
    /// variables only (the Lambda functions' way).
    pub fn from_env() -> Result<Settings, ConfigError> {
        let parsed = EnvOnly::try_parse_from(["keyrotor"]).map_err(|e| {
            ConfigError::from_clap(e, &EnvOnly::command()).unwrap_or_else(|e| {
                bad(
                    "KEYROTOR_*",
                    "",
                    format!("could not read the environment: {e}"),
                )
            })
        })?;
        Settings::from_args(&parsed.settings)
    }

    /// The settings of values that each parsed, once the rules between
    /// them hold; the first broken rule is named in the error.
    pub fn from_args(a: &SettingsArgs) -> Result<Settings, ConfigError> {
        validate::ages(a.rotate_days, a.deactivate_days, a.delete_days, a.warn_days)?;
        if let Some(waves) = &a.waves {
            if a.account_source == AccountSource::Table && !waves.ous().is_empty() {
                return Err(ConfigError {
                    env: "KEYROTOR_WAVES".into(),
                    flag: "waves".into(),
                    message: format!(
                        "names OUs ({}), but with KEYROTOR_ACCOUNT_SOURCE=table accounts have no OU: list account ids",
                        waves.ous().join(", ")
                    ),
                });
            }
        }
        let policy = PolicyConfig {
            rotate_after: Duration::days(a.rotate_days.into()),
            deactivate_after: Duration::days(a.deactivate_days.into()),
            delete_after: Duration::days(a.delete_days.into()),
            warn_within: Duration::days(a.warn_days.into()),
            max_hold: Duration::days(a.max_hold_days.into()),
            unused_keys: a.unused_keys,
            adoption_check: a.adoption_check,
        };
        let secrets_account = a.secrets_account.clone().and_then(|s| s.0);
        let kms_key_id = given(&a.kms_key_id);
        if secrets_account.is_some() {
            validate::central_secrets(&a.secret_name_template, kms_key_id.as_deref())?;
        }
        let template_dir = given(&a.template_dir).map(std::path::PathBuf::from);
        if let Some(dir) = &template_dir {
            if !dir.is_dir() {
                return Err(bad(
                    "KEYROTOR_TEMPLATE_DIR",
                    "template-dir",
                    format!("`{}` is not a directory", dir.display()),
                ));
            }
        }
        // Unset (or blank) keeps a single-role setup working: the producer
        // then assumes the same role as the worker.
        let producer_role_name =
            given(&a.producer_role_name).unwrap_or_else(|| a.role_name.clone());
        Ok(Settings {
            queue_url: given(&a.queue_url),
            table: a.table.clone(),
            topic_arn: given(&a.topic_arn),
            event_bus: given(&a.event_bus),
            sender: given(&a.sender),
            role_name: a.role_name.clone(),
            producer_role_name,
            mode: a.mode,
            policy,
            exempt_group: given(&a.exempt_group),
            exempt_tag: a.exempt_tag.clone(),
            exempt_paths: entries(&a.exempt_paths),
            owner_tag: a.owner_tag.clone(),
            account_source: a.account_source,
            ous: entries(&a.ous),
            accounts: entries(&a.accounts),
            exclude_accounts: entries(&a.exclude_accounts),
            secret_name_template: a.secret_name_template.clone(),
            secrets_account,
            kms_key_id,
            replica_regions: entries(&a.replica_regions),
            verify_new_key: a.verify_new_key,
            lock_lease: std::time::Duration::from_secs(a.lock_lease_secs),
            org_role_arn: given(&a.org_role_arn),
            account_concurrency: a.account_concurrency,
            shards_per_account: match a.shards_per_account {
                Shards::Auto => None,
                Shards::Fixed(n) => Some(n),
            },
            fleet_groups: a.fleet_groups.clone().and_then(|f| f.0),
            iam_rate: a.iam_rate,
            iam_burst: a.iam_burst,
            secrets_rate: a.secrets_rate,
            ses_rate: a.ses_rate,
            ses_fleet_rate: a.ses_fleet_rate,
            publish_noop: a.publish_noop,
            template_dir,
            allow_future_as_of: a.allow_future_as_of,
            max_message_age: Duration::hours(a.max_message_age_hours),
            max_receives: a.max_receives,
            breaker_failures: a.breaker_failures,
            waves: a.waves.clone().unwrap_or_default(),
            wave_soak: Duration::days(a.wave_soak_days.into()),
            exposed_key_action: a.exposed_key_action,
        })
    }

    /// How many FIFO groups an account's messages are spread over, given
    /// its user count when the producer knows it and the run's size: the
    /// setting, or for `auto` the IAM rate (one group per call a second, at
    /// most the IAM burst and [`AUTO_SHARDS_MAX`]) and, with
    /// `KEYROTOR_FLEET_GROUPS`, at most the account's share of the fleet's
    /// groups; never more than its users. The share is the fleet's groups
    /// divided by the run's accounts, or, when the account and the run's
    /// users are known, its part of the run's users if that is more.
    pub fn shards_for(&self, users: Option<usize>, run: RunSize) -> u32 {
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
            // Shared out by users, not only by accounts: a big account's
            // groups are worked long after the small ones are done, and
            // one group (a batch at a time) spends only part of its budget.
            match self.fleet_groups {
                Some(fleet) => {
                    let even = (fleet / run.accounts.max(1) as u32).max(1);
                    let by_users = match (users, run.users) {
                        (Some(users), Some(all)) if all > 0 => {
                            (u64::from(fleet) * users as u64 / all as u64) as u32
                        }
                        _ => 0,
                    };
                    by_rate.min(even.max(by_users))
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        s: SettingsArgs,
    }

    fn parse(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["keyrotor"];
        argv.extend_from_slice(args);
        let parsed = Cli::try_parse_from(argv)
            .map_err(|e| ConfigError::from_clap(e, &Cli::command()).unwrap())?;
        Settings::from_args(&parsed.s)
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
        assert_eq!(s.ses_fleet_rate, SesFleetRate::Auto);
        assert_eq!(
            parse(&["--ses-fleet-rate", "off"]).unwrap().ses_fleet_rate,
            SesFleetRate::Off
        );
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
            (&["--event-bus", "bus name"], "KEYROTOR_EVENT_BUS"),
            (
                &["--exposed-key-action", "delete"],
                "KEYROTOR_EXPOSED_KEY_ACTION",
            ),
            (
                &["--event-bus", "arn:aws:sns:us-east-1:123456789012:topic"],
                "KEYROTOR_EVENT_BUS",
            ),
            (&["--breaker-failures", "0%"], "KEYROTOR_BREAKER_FAILURES"),
            (&["--breaker-failures", "many"], "KEYROTOR_BREAKER_FAILURES"),
            (
                &["--waves", "111111111111;;ou-ab12-cdef3456"],
                "KEYROTOR_WAVES",
            ),
            (&["--waves", "prod"], "KEYROTOR_WAVES"),
            (
                &["--account-source", "table", "--waves", "ou-ab12-cdef3456"],
                "KEYROTOR_WAVES",
            ),
            (&["--wave-soak-days", "a week"], "KEYROTOR_WAVE_SOAK_DAYS"),
            (&["--queue-url", "not a url"], "KEYROTOR_QUEUE_URL"),
            (
                &["--topic-arn", "arn:aws:sqs:us-east-1:123456789012:q"],
                "KEYROTOR_TOPIC_ARN",
            ),
            (&["--sender", "nobody"], "KEYROTOR_SENDER"),
            (&["--ses-fleet-rate", "0"], "KEYROTOR_SES_FLEET_RATE"),
            (&["--ses-fleet-rate", "fast"], "KEYROTOR_SES_FLEET_RATE"),
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
    fn blank_values_read_as_unset_as_an_empty_stack_parameter_gives_them() {
        let s = parse(&[
            "--accounts",
            "",
            "--exclude-accounts",
            " , ",
            "--secrets-account",
            " ",
            "--fleet-groups",
            "",
            "--ses-fleet-rate",
            "",
            "--queue-url",
            "",
        ])
        .unwrap();
        assert!(s.accounts.is_empty() && s.exclude_accounts.is_empty());
        assert_eq!(s.secrets_account, None);
        assert_eq!(s.fleet_groups, None);
        assert_eq!(s.ses_fleet_rate, SesFleetRate::Off);
        assert_eq!(s.queue_url, None);
    }

    #[test]
    fn a_clap_error_about_a_value_names_the_variable_and_others_stay_claps() {
        let e = parse(&["--iam-rate", "0"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid setting KEYROTOR_IAM_RATE (--iam-rate): must be between 1 and 1000, got 0"
        );
        let e = parse(&["--mode", "yolo"]).unwrap_err();
        assert!(e.message.contains("`audit` or `enforce`"), "{e}");
        let no_value = Cli::try_parse_from(["keyrotor", "--mode"]).unwrap_err();
        assert!(
            ConfigError::from_clap(no_value, &Cli::command()).is_err(),
            "a flag without its value is a usage error"
        );
        assert_eq!(
            parse(&["--max-hold-days", "5000"]).unwrap().policy.max_hold,
            Duration::days(5000),
            "no upper limit to speak of"
        );
        let help = Cli::try_parse_from(["keyrotor", "--help"]).unwrap_err();
        let help = ConfigError::from_clap(help, &Cli::command()).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
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
            "--ses-fleet-rate",
            "14",
        ])
        .unwrap();
        assert_eq!(s.mode, Mode::Enforce);
        assert_eq!(s.accounts.len(), 2);
        assert_eq!(s.replica_regions, vec!["eu-central-1"]);
        assert_eq!(
            s.ses_fleet_rate,
            SesFleetRate::Fixed(std::num::NonZeroU32::new(14).unwrap())
        );
    }

    #[test]
    fn every_setting_is_a_keyrotor_env_var_documented_in_the_readme() {
        let readme = include_str!("../../../README.md");
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
            auto.shards_for(None, RunSize::accounts(1000)),
            10,
            "one group per IAM call a second"
        );
        assert_eq!(
            auto.shards_for(Some(3), RunSize::accounts(1)),
            3,
            "no more groups than users"
        );
        assert_eq!(auto.shards_for(Some(0), RunSize::accounts(1)), 1);
        let fast = settings(&["--iam-rate", "500", "--iam-burst", "500"]).unwrap();
        assert_eq!(fast.shards_for(None, RunSize::accounts(1)), AUTO_SHARDS_MAX);
        let small_burst = settings(&["--iam-rate", "20", "--iam-burst", "6"]).unwrap();
        assert_eq!(
            small_burst.shards_for(None, RunSize::accounts(1)),
            6,
            "one call of burst per group at most"
        );
        let fixed = settings(&["--shards-per-account", "4"]).unwrap();
        assert_eq!(fixed.shards_for(None, RunSize::accounts(1)), 4);
        let fleet = settings(&["--iam-rate", "10", "--fleet-groups", "1000"]).unwrap();
        assert_eq!(fleet.fleet_groups, Some(1000));
        assert_eq!(
            fleet.shards_for(None, RunSize::accounts(1000)),
            1,
            "one group each for 1,000 accounts"
        );
        assert_eq!(
            fleet.shards_for(None, RunSize::accounts(250)),
            4,
            "the fleet shared out"
        );
        assert_eq!(
            fleet.shards_for(None, RunSize::accounts(3)),
            10,
            "never more than auto"
        );
        assert_eq!(
            fleet.shards_for(None, RunSize::accounts(5000)),
            1,
            "at least one"
        );
        // 1,000 accounts, one of 20,000 users among 999 of 100: the big one
        // holds a sixth of the users, so its share is not one group but
        // auto's 10; the small ones keep their one.
        let skewed = RunSize {
            accounts: 1000,
            users: Some(119_900),
        };
        assert_eq!(fleet.shards_for(Some(20_000), skewed), 10);
        assert_eq!(fleet.shards_for(Some(100), skewed), 1);
        // Alike accounts: by users is by accounts.
        let alike = RunSize {
            accounts: 250,
            users: Some(250_000),
        };
        assert_eq!(fleet.shards_for(Some(1000), alike), 4);
        let unknown = RunSize {
            accounts: 1000,
            users: Some(0),
        };
        assert_eq!(fleet.shards_for(Some(0), unknown), 1);
        let fixed_in_fleet =
            settings(&["--shards-per-account", "4", "--fleet-groups", "10"]).unwrap();
        assert_eq!(
            fixed_in_fleet.shards_for(None, RunSize::accounts(1000)),
            4,
            "a number is kept"
        );
        let bad = settings(&["--fleet-groups", "0"]).unwrap_err();
        assert_eq!(bad.env, "KEYROTOR_FLEET_GROUPS");
        let bad = settings(&["--shards-per-account", "many"]).unwrap_err();
        assert_eq!(bad.env, "KEYROTOR_SHARDS_PER_ACCOUNT");
    }
}
