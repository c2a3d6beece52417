//! The account digest email: when an account's messages are all done, one
//! email to the account owner with every line worth saying, and one to each
//! user owner (the owner-tag email) with only the lines of that owner's
//! users.
//!
//! - **Worth saying**: every outcome but `noop` and `skipped`. A recipient
//!   with nothing to say gets no email, so an account where nothing happened
//!   sends nothing.
//! - **Recipients** are trimmed and compared without regard to case; a value
//!   that is not an address (no `@`, or with spaces: owner tags are free
//!   text) is ignored. An owner who is also the account owner gets the full
//!   email only.
//! - **Templates**: subject, HTML and text are `minijinja` templates built
//!   into the binary (`worker/templates/digest.*.j2`); a deployment can
//!   override any of them with a file of the same name in
//!   `KEYROTOR_TEMPLATE_DIR` (a missing file falls back to the built-in one;
//!   a missing directory is an error). The HTML template autoescapes.
//! - **Wording**: each line's `headline` is worded in Rust, so that the
//!   three templates agree: audit mode says what *would* happen on the next
//!   enforce run, enforce mode what happened. An override can ignore it and
//!   word lines from the raw fields (`outcome`, `actions`, `reason`, ...).
//! - **No secrets**: the inputs carry key ids and secret ARNs only.
//! - **Sending** tries every recipient even when one fails (a bad owner-tag
//!   address must not cost the account owner their email) and reports how
//!   many were sent and failed. Exactly-once is the caller's conditional
//!   write (`digest_sent` on the run's account item).
//!
//! One concern per module: [`templates`] (loading and rendering),
//! [`context`] (what the templates see), [`wording`] (every sentence),
//! [`recipients`] (who gets which lines), [`mailer`] (SES and sending),
//! [`paced`] (the fleet's SES pace).

pub mod context;
pub mod mailer;
pub mod paced;
pub mod recipients;
pub mod templates;
pub mod wording;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use keyrotor_shared::domain::{KeyAction, Mode, Outcome};
use keyrotor_shared::error::AwsError;
use serde::Serialize;

pub use mailer::{send_digest, send_digest_to, Booking, Mailer, SentMarker, SesMailer};
pub use paced::PacedMailer;
pub use recipients::plan_emails;
pub use templates::{Templates, HTML_TEMPLATE, SUBJECT_TEMPLATE, TEXT_TEMPLATE};

/// One user's result, as the digest shows it (read from the run's result
/// items; key ids and ARNs only, never secret material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigestLine {
    /// The IAM user.
    pub user_name: String,
    /// What happened to the user.
    pub outcome: Outcome,
    /// The one-line explanation of the result.
    pub reason: String,
    /// What was done.
    pub actions: Vec<KeyAction>,
    /// For a `planned` line (audit): what an enforce run would do.
    pub due: Vec<KeyAction>,
    /// The key created, where one was.
    pub new_key_id: Option<String>,
    /// The secret holding the new key, where one was created.
    pub secret_arn: Option<String>,
    /// The user's owner-tag email, if the user has one.
    pub owner_email: Option<String>,
}

/// One account's results in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDigest {
    /// The run.
    pub run_id: String,
    /// The account id.
    pub account_id: String,
    /// The account's name.
    pub account_name: String,
    /// The account owner's email, if known.
    pub owner_email: Option<String>,
    /// Audit (nothing changed) or enforce.
    pub mode: Mode,
    /// The run's evaluation time.
    pub as_of: DateTime<Utc>,
    /// One line per user, in the order to show them.
    pub lines: Vec<DigestLine>,
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// One line.
    pub subject: String,
    /// The HTML body.
    pub html: String,
    /// The plain-text body.
    pub text: String,
}

/// Why a digest could not be rendered or sent.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The override directory cannot be read.
    #[error("KEYROTOR_TEMPLATE_DIR {}: {message}", path.display())]
    TemplateDir {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A template does not compile or does not render.
    #[error("template {name}: {message}")]
    Template {
        /// The template's file name.
        name: String,
        /// minijinja's message (with the line).
        message: String,
    },
    /// Some emails could not be sent (the others were).
    #[error("digest for account {account_id}: {failed} email(s) not sent ({sent} sent): {first}")]
    Send {
        /// The account.
        account_id: String,
        /// Emails sent.
        sent: usize,
        /// Emails that failed.
        failed: usize,
        /// The first failure (in the message, not a `source()`, so that
        /// error chains do not print it twice).
        first: AwsError,
    },
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Digests for the tests of every digest module.

    use super::*;

    /// A line of `outcome` for `user`, owned by `owner`, nothing done.
    pub fn line(user: &str, outcome: Outcome, owner: Option<&str>) -> DigestLine {
        DigestLine {
            user_name: user.into(),
            outcome,
            reason: format!("{outcome} because"),
            actions: Vec::new(),
            due: Vec::new(),
            new_key_id: None,
            secret_arn: None,
            owner_email: owner.map(str::to_string),
        }
    }

    /// A `rotated` line: `old` replaced by `new`, stored in its secret.
    pub fn rotated(user: &str, old: &str, new: &str) -> DigestLine {
        DigestLine {
            actions: vec![KeyAction::new(keyrotor_shared::domain::Action::Rotate, old)],
            new_key_id: Some(new.into()),
            secret_arn: Some(format!(
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:Account_111122223333_User_{user}_AccessKey-AbCdEf"
            )),
            reason: format!("rotate {old}: key is 95 days old (rotate at 90)"),
            ..line(user, Outcome::Rotated, None)
        }
    }

    /// The digest of account `prod` (111122223333) in `mode`.
    pub fn digest(mode: Mode, lines: Vec<DigestLine>) -> AccountDigest {
        AccountDigest {
            run_id: "20260601T000000Z-abcd".into(),
            account_id: "111122223333".into(),
            account_name: "prod".into(),
            owner_email: Some("owner@example.com".into()),
            mode,
            as_of: DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            lines,
        }
    }
}
