//! The account digest email (DESIGN §3 step 5, issue #4 item 5): when an
//! account's messages are all done, one email to the account owner with
//! every line worth saying, and one to each user owner (the owner-tag email)
//! with only the lines of that owner's users.
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
//! - **Wording**: each line's `headline` is worded here, in Rust, so that the
//!   three templates agree: audit mode says what *would* happen on the next
//!   enforce run, enforce mode what happened. An override can ignore it and
//!   word lines from the raw fields (`outcome`, `actions`, `reason`, ...).
//! - **No secrets**: the inputs carry key ids and secret ARNs only.
//! - **Sending** tries every recipient even when one fails (a bad owner-tag
//!   address must not cost the account owner their email) and reports how
//!   many were sent and failed. Exactly-once is the caller's conditional
//!   write (`digest_sent` on the run's account item).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyrotor_shared::config::Mode;
use keyrotor_shared::error::AwsError;
use minijinja::{AutoEscape, Environment};
use serde::Serialize;

/// The built-in subject template.
pub const SUBJECT_TEMPLATE: &str = "digest.subject.j2";
/// The built-in HTML body template.
pub const HTML_TEMPLATE: &str = "digest.html.j2";
/// The built-in text body template.
pub const TEXT_TEMPLATE: &str = "digest.text.j2";

const BUILT_IN: [(&str, &str); 3] = [
    (
        SUBJECT_TEMPLATE,
        include_str!("../templates/digest.subject.j2"),
    ),
    (HTML_TEMPLATE, include_str!("../templates/digest.html.j2")),
    (TEXT_TEMPLATE, include_str!("../templates/digest.text.j2")),
];

/// Outcomes that are not worth an email.
const SILENT: [&str; 2] = ["noop", "skipped"];

/// One user's result, as the digest shows it (read from the run's result
/// items; key ids and ARNs only, never secret material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigestLine {
    /// The IAM user.
    pub user_name: String,
    /// `rotated | deactivated | deleted | retired | warned | held | skipped |
    /// planned | noop | failed`.
    pub outcome: String,
    /// The one-line explanation of the result.
    pub reason: String,
    /// What was done (enforce) or is due (audit): `(action, key_id)`.
    pub actions: Vec<(String, String)>,
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

fn template_error(name: &str, e: minijinja::Error) -> DigestError {
    DigestError::Template {
        name: name.to_string(),
        message: format!("{e:#}"),
    }
}

/// The subject, HTML and text templates, compiled.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The built-in templates, each overridden by a file of the same name
    /// (`digest.subject.j2`, `digest.html.j2`, `digest.text.j2`) in `dir`
    /// (`KEYROTOR_TEMPLATE_DIR`) when there is one. Every template is
    /// compiled here, so a broken override fails at start.
    pub fn load(dir: Option<&Path>) -> Result<Templates, DigestError> {
        if let Some(dir) = dir {
            if !dir.is_dir() {
                return Err(DigestError::TemplateDir {
                    path: dir.to_path_buf(),
                    message: "not a directory".into(),
                });
            }
        }
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|name| {
            if name == HTML_TEMPLATE {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        for (name, built_in) in BUILT_IN {
            let source = match dir {
                Some(dir) => {
                    let path = dir.join(name);
                    match std::fs::read_to_string(&path) {
                        Ok(text) => {
                            tracing::info!(template = name, path = %path.display(), "template overridden");
                            text
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => built_in.to_string(),
                        Err(e) => {
                            return Err(DigestError::TemplateDir {
                                path,
                                message: e.to_string(),
                            })
                        }
                    }
                }
                None => built_in.to_string(),
            };
            env.add_template_owned(name, source)
                .map_err(|e| template_error(name, e))?;
        }
        Ok(Templates { env })
    }

    /// Renders `digest` (all its lines: see [`plan_emails`] for who gets
    /// which).
    pub fn render(&self, digest: &AccountDigest) -> Result<RenderedEmail, DigestError> {
        let mut ctx = Context::of(digest);
        let subject = self.render_one(SUBJECT_TEMPLATE, &ctx)?;
        // One line, whatever an override does with whitespace.
        ctx.subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        Ok(RenderedEmail {
            html: self.render_one(HTML_TEMPLATE, &ctx)?,
            text: self.render_one(TEXT_TEMPLATE, &ctx)?,
            subject: ctx.subject,
        })
    }

    fn render_one(&self, name: &str, ctx: &Context) -> Result<String, DigestError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| template_error(name, e))
    }
}

/// What the templates see.
#[derive(Serialize)]
struct Context {
    run_id: String,
    account_id: String,
    account_name: String,
    mode: &'static str,
    audit: bool,
    as_of: String,
    /// e.g. "3 keys rotated, 1 held".
    summary: String,
    /// outcome -> number of lines.
    counts: BTreeMap<String, usize>,
    /// Whether any line rotated a key (for the "switch to the new key" note).
    rotated: bool,
    /// The rendered subject (empty while the subject itself renders).
    subject: String,
    lines: Vec<LineContext>,
}

#[derive(Serialize)]
struct ActionContext {
    action: String,
    key_id: String,
}

#[derive(Serialize)]
struct LineContext {
    user_name: String,
    outcome: String,
    reason: String,
    actions: Vec<ActionContext>,
    new_key_id: Option<String>,
    secret_arn: Option<String>,
    owner_email: Option<String>,
    /// The key a rotation replaced.
    old_key_id: Option<String>,
    /// Whether the actions were carried out (else they are due).
    changed: bool,
    /// One or two sentences: what happened, or what would.
    headline: String,
}

impl Context {
    fn of(digest: &AccountDigest) -> Context {
        let audit = digest.mode == Mode::Audit;
        let mut counts = BTreeMap::new();
        for line in &digest.lines {
            *counts.entry(line.outcome.clone()).or_insert(0) += 1;
        }
        Context {
            run_id: digest.run_id.clone(),
            account_id: digest.account_id.clone(),
            account_name: if digest.account_name.is_empty() {
                digest.account_id.clone()
            } else {
                digest.account_name.clone()
            },
            mode: digest.mode.as_str(),
            audit,
            as_of: digest.as_of.format("%Y-%m-%d %H:%M UTC").to_string(),
            summary: summary(&counts),
            rotated: counts.contains_key("rotated"),
            counts,
            subject: String::new(),
            lines: digest
                .lines
                .iter()
                .map(|l| LineContext::of(l, audit))
                .collect(),
        }
    }
}

/// Outcomes in the order a reader cares about, with their wording.
const SUMMARY_ORDER: [(&str, &str, &str); 10] = [
    ("rotated", "key rotated", "keys rotated"),
    ("deactivated", "key deactivated", "keys deactivated"),
    ("deleted", "key deleted", "keys deleted"),
    ("retired", "unused key retired", "unused keys retired"),
    ("planned", "user with changes due", "users with changes due"),
    ("warned", "warning", "warnings"),
    ("held", "held", "held"),
    ("failed", "failed", "failed"),
    ("skipped", "exempt", "exempt"),
    ("noop", "unchanged", "unchanged"),
];

fn summary(counts: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = SUMMARY_ORDER
        .iter()
        .filter_map(|(outcome, one, many)| {
            counts
                .get(*outcome)
                .map(|&n| format!("{n} {}", if n == 1 { one } else { many }))
        })
        .collect();
    parts.extend(
        counts
            .iter()
            .filter(|(o, _)| !SUMMARY_ORDER.iter().any(|(k, _, _)| k == o))
            .map(|(o, n)| format!("{n} {o}")),
    );
    if parts.is_empty() {
        "nothing to report".into()
    } else {
        parts.join(", ")
    }
}

const ACTION_KINDS: [&str; 7] = [
    "rotate",
    "deactivate",
    "delete",
    "retire",
    "delete-orphan",
    "warn",
    "hold",
];

/// The due actions named in an audit reason (`rotate AKIA...: why; ...`),
/// for results that carry no action list.
fn actions_in_reason(reason: &str) -> Vec<(String, String)> {
    reason
        .split("; ")
        .filter_map(|part| {
            let (head, _) = part.split_once(": ")?;
            let (kind, key) = head.split_once(' ')?;
            (ACTION_KINDS.contains(&kind) && !key.is_empty() && !key.contains(' '))
                .then(|| (kind.to_string(), key.to_string()))
        })
        .filter(|(kind, _)| kind != "warn" && kind != "hold")
        .collect()
}

fn past(action: &str, key: &str) -> String {
    match action {
        "rotate" => format!("key {key} was replaced by a new key"),
        "deactivate" => format!("key {key} was deactivated"),
        "delete" => format!("inactive key {key} was deleted"),
        "retire" => format!("never-used key {key} was deactivated without a replacement"),
        "delete-orphan" => {
            format!("key {key}, left behind by an interrupted rotation, was deleted")
        }
        other => format!("{other} {key}"),
    }
}

fn future(action: &str, key: &str) -> String {
    match action {
        "rotate" => format!("key {key} would be rotated on the next enforce run"),
        "deactivate" => format!("key {key} would be deactivated on the next enforce run"),
        "delete" => format!("inactive key {key} would be deleted on the next enforce run"),
        "retire" => format!(
            "never-used key {key} would be deactivated (retired) on the next enforce run, without a replacement"
        ),
        "delete-orphan" => format!(
            "key {key}, left behind by an interrupted rotation, would be deleted on the next enforce run"
        ),
        other => format!("{other} {key} is planned"),
    }
}

fn sentence(mut parts: Vec<String>) -> String {
    if parts.is_empty() {
        return String::new();
    }
    let mut s = parts.remove(0);
    if let Some(first) = s.get(..1) {
        let upper = first.to_uppercase();
        s.replace_range(..1, &upper);
    }
    for p in parts {
        s.push_str("; ");
        s.push_str(&p);
    }
    s.push('.');
    s
}

impl LineContext {
    fn of(line: &DigestLine, audit: bool) -> LineContext {
        let mut actions = line.actions.clone();
        if actions.is_empty() && line.outcome == "planned" {
            actions = actions_in_reason(&line.reason);
        }
        let old_key_id = actions
            .iter()
            .find(|(a, _)| a == "rotate")
            .map(|(_, k)| k.clone());
        // What happened is said in the past, what is due in the future:
        // by the outcome (a `planned` line changed nothing), else the mode.
        let changed = match line.outcome.as_str() {
            "rotated" | "deactivated" | "deleted" | "retired" => true,
            "planned" => false,
            _ => !audit,
        };
        let said: Vec<String> = actions
            .iter()
            .map(|(a, k)| if changed { past(a, k) } else { future(a, k) })
            .collect();
        let headline = match line.outcome.as_str() {
            "rotated" => {
                let mut s = sentence(said);
                let new = line
                    .new_key_id
                    .as_deref()
                    .map(|k| format!("The new key {k}"))
                    .unwrap_or_else(|| "The new key".into());
                let stored = line
                    .secret_arn
                    .as_deref()
                    .map(|arn| format!(" is stored in Secrets Manager at {arn}"))
                    .unwrap_or_else(|| " is stored in Secrets Manager".into());
                let old = old_key_id
                    .as_deref()
                    .map(|k| format!("the old key {k}"))
                    .unwrap_or_else(|| "the old key".into());
                if !s.is_empty() {
                    s.push(' ');
                }
                s.push_str(&format!(
                    "{new}{stored}. The application must switch to the new key before {old} is deactivated."
                ));
                s
            }
            "deactivated" | "deleted" | "retired" if !said.is_empty() => sentence(said),
            "deactivated" => "A key was deactivated.".into(),
            "deleted" => "An inactive key was deleted.".into(),
            "retired" => "A never-used key was deactivated without a replacement.".into(),
            "planned" if said.is_empty() => {
                "Changes are due; nothing was changed (audit). The next enforce run would carry them out.".into()
            }
            "planned" => format!("Nothing was changed (audit). {}", sentence(said)),
            "warned" => "Advance warning: an action on this user's keys is coming up.".into(),
            "held" => "A due action is held back; see the reason.".into(),
            "failed" => "Processing this user failed; it will be retried on the next run.".into(),
            "skipped" => "The user is exempt from rotation.".into(),
            "noop" => "Nothing was due.".into(),
            _ if !said.is_empty() => sentence(said),
            other => format!("Outcome: {other}."),
        };
        LineContext {
            user_name: line.user_name.clone(),
            outcome: line.outcome.clone(),
            reason: line.reason.clone(),
            actions: actions
                .into_iter()
                .map(|(action, key_id)| ActionContext { action, key_id })
                .collect(),
            new_key_id: line.new_key_id.clone(),
            secret_arn: line.secret_arn.clone(),
            owner_email: line.owner_email.clone(),
            old_key_id,
            changed,
            headline,
        }
    }
}

/// An address worth sending to: trimmed, with an `@` and no spaces.
fn address(raw: Option<&str>) -> Option<String> {
    let a = raw?.trim();
    (a.len() >= 3 && a.contains('@') && !a.chars().any(char::is_whitespace)).then(|| a.to_string())
}

/// The emails to send: the account owner gets every line worth saying; each
/// distinct user owner (owner-tag email) gets only the lines of their users.
/// Lines with outcome `noop` or `skipped` are not worth saying; a recipient
/// with nothing to say gets no email; an account with nothing to say sends
/// nothing. Emails are deduplicated (an owner who is also the account owner
/// gets the full one only). Returns (recipient, digest-with-that-recipient's-
/// lines): the account owner first, then the user owners by address.
pub fn plan_emails(digest: &AccountDigest) -> Vec<(String, AccountDigest)> {
    let worth: Vec<&DigestLine> = digest
        .lines
        .iter()
        .filter(|l| !SILENT.contains(&l.outcome.as_str()))
        .collect();
    if worth.is_empty() {
        return Vec::new();
    }
    let with_lines = |lines: Vec<DigestLine>| AccountDigest {
        lines,
        ..digest.clone()
    };
    let mut emails = Vec::new();
    let owner = address(digest.owner_email.as_deref());
    if let Some(owner) = &owner {
        emails.push((
            owner.clone(),
            with_lines(worth.iter().map(|l| (*l).clone()).collect()),
        ));
    }
    // Keyed by the lowercased address; the first spelling seen is kept.
    let mut by_owner: BTreeMap<String, (String, Vec<DigestLine>)> = BTreeMap::new();
    for line in &worth {
        let Some(to) = address(line.owner_email.as_deref()) else {
            continue;
        };
        let key = to.to_lowercase();
        if owner.as_ref().is_some_and(|o| o.to_lowercase() == key) {
            continue;
        }
        by_owner
            .entry(key)
            .or_insert_with(|| (to, Vec::new()))
            .1
            .push((*line).clone());
    }
    emails.extend(
        by_owner
            .into_values()
            .map(|(to, lines)| (to, with_lines(lines))),
    );
    emails
}

/// Sends one email.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends `email` from `from` to the single address `to`.
    async fn send(&self, from: &str, to: &str, email: &RenderedEmail) -> Result<(), AwsError>;
}

/// [`Mailer`] over SESv2 `SendEmail` (simple content: subject, HTML and
/// text bodies, UTF-8).
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
}

impl SesMailer {
    /// A mailer sending through `client`.
    pub fn new(client: aws_sdk_sesv2::Client) -> SesMailer {
        SesMailer { client }
    }
}

const SEND_EMAIL: &str = "sesv2:SendEmail";

fn content(data: &str) -> Result<aws_sdk_sesv2::types::Content, AwsError> {
    aws_sdk_sesv2::types::Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| AwsError::Service {
            op: SEND_EMAIL,
            code: "InvalidRequest".into(),
            message: e.to_string(),
        })
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, from: &str, to: &str, email: &RenderedEmail) -> Result<(), AwsError> {
        use aws_sdk_sesv2::types::{Body, Destination, EmailContent, Message};
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(
                Body::builder()
                    .html(content(&email.html)?)
                    .text(content(&email.text)?)
                    .build(),
            )
            .build();
        self.client
            .send_email()
            .from_email_address(from)
            .destination(Destination::builder().to_addresses(to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(SEND_EMAIL, e))?;
        Ok(())
    }
}

/// Renders and sends every planned email; returns how many were sent.
/// Every recipient is tried even when one fails; any failure is returned as
/// [`DigestError::Send`] with the numbers sent and failed. A rendering error
/// is returned before anything is sent.
pub async fn send_digest(
    mailer: &dyn Mailer,
    templates: &Templates,
    sender: &str,
    digest: &AccountDigest,
) -> Result<usize, DigestError> {
    send_digest_to(
        mailer,
        templates,
        sender,
        digest,
        &BTreeSet::new(),
        &NoMarker,
    )
    .await
}

/// Remembers each recipient a digest went to, so that a worker taking over
/// an interrupted digest sends only what is missing.
#[async_trait]
pub trait SentMarker: Send + Sync {
    /// Records that the digest reached `to`.
    async fn mark_sent(&self, to: &str) -> Result<(), AwsError>;
}

struct NoMarker;

#[async_trait]
impl SentMarker for NoMarker {
    async fn mark_sent(&self, _: &str) -> Result<(), AwsError> {
        Ok(())
    }
}

/// [`send_digest`] that leaves out the recipients in `already_sent` and
/// marks each new recipient as soon as its email is accepted.
pub async fn send_digest_to(
    mailer: &dyn Mailer,
    templates: &Templates,
    sender: &str,
    digest: &AccountDigest,
    already_sent: &BTreeSet<String>,
    marker: &dyn SentMarker,
) -> Result<usize, DigestError> {
    let mut planned = plan_emails(digest);
    planned.retain(|(to, _)| !already_sent.contains(to));
    let rendered = planned
        .iter()
        .map(|(to, d)| Ok((to.as_str(), templates.render(d)?)))
        .collect::<Result<Vec<_>, DigestError>>()?;
    let mut sent = 0;
    let mut failures = Vec::new();
    for (to, email) in &rendered {
        match mailer.send(sender, to, email).await {
            Ok(()) => {
                sent += 1;
                if let Err(e) = marker.mark_sent(to).await {
                    // The claim's owner may resend to this address after a
                    // takeover; one duplicate email beats a lost digest.
                    tracing::warn!(account_id = %digest.account_id, error = %e, "could not record a digest recipient");
                }
            }
            Err(e) => {
                tracing::warn!(account_id = %digest.account_id, error = %e, "digest email not sent");
                failures.push(e);
            }
        }
    }
    tracing::info!(account_id = %digest.account_id, run_id = %digest.run_id, sent, failed = failures.len(), "digest sent");
    match failures.len() {
        0 => Ok(sent),
        failed => Err(DigestError::Send {
            account_id: digest.account_id.clone(),
            sent,
            failed,
            first: failures.swap_remove(0),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn line(user: &str, outcome: &str, owner: Option<&str>) -> DigestLine {
        DigestLine {
            user_name: user.into(),
            outcome: outcome.into(),
            reason: format!("{outcome} because"),
            actions: Vec::new(),
            new_key_id: None,
            secret_arn: None,
            owner_email: owner.map(str::to_string),
        }
    }

    fn rotated(user: &str, old: &str, new: &str) -> DigestLine {
        DigestLine {
            actions: vec![("rotate".into(), old.into())],
            new_key_id: Some(new.into()),
            secret_arn: Some(format!(
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:Account_111122223333_User_{user}_AccessKey-AbCdEf"
            )),
            reason: format!("rotate {old}: key is 95 days old (rotate at 90)"),
            ..line(user, "rotated", None)
        }
    }

    fn digest(mode: Mode, lines: Vec<DigestLine>) -> AccountDigest {
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

    fn users(d: &AccountDigest) -> Vec<&str> {
        d.lines.iter().map(|l| l.user_name.as_str()).collect()
    }

    #[test]
    fn account_owner_gets_all_lines_user_owners_their_own() {
        let d = digest(
            Mode::Enforce,
            vec![
                line("a", "rotated", Some("alice@example.com")),
                line("b", "held", Some("bob@example.com")),
                line("c", "warned", Some("alice@example.com")),
                line("d", "failed", None),
            ],
        );
        let emails = plan_emails(&d);
        let to: Vec<&str> = emails.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            to,
            ["owner@example.com", "alice@example.com", "bob@example.com"]
        );
        assert_eq!(users(&emails[0].1), ["a", "b", "c", "d"]);
        assert_eq!(users(&emails[1].1), ["a", "c"]);
        assert_eq!(users(&emails[2].1), ["b"]);
        // The rest of the digest is the account's.
        assert_eq!(emails[2].1.account_id, "111122223333");
        assert_eq!(emails[2].1.owner_email, d.owner_email);
    }

    #[test]
    fn an_owner_who_is_the_account_owner_gets_the_full_email_only() {
        let d = digest(
            Mode::Enforce,
            vec![
                line("a", "rotated", Some(" Owner@Example.com ")),
                line("b", "rotated", Some("bob@example.com")),
                line("c", "rotated", Some("BOB@example.com")),
            ],
        );
        let emails = plan_emails(&d);
        let to: Vec<&str> = emails.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(to, ["owner@example.com", "bob@example.com"]);
        assert_eq!(users(&emails[0].1), ["a", "b", "c"]);
        assert_eq!(users(&emails[1].1), ["b", "c"]);
    }

    #[test]
    fn noop_and_skipped_are_not_worth_an_email() {
        let d = digest(
            Mode::Enforce,
            vec![
                line("a", "noop", Some("alice@example.com")),
                line("b", "skipped", Some("bob@example.com")),
            ],
        );
        assert!(plan_emails(&d).is_empty(), "nothing to say sends nothing");

        let d = digest(
            Mode::Enforce,
            vec![
                line("a", "noop", Some("alice@example.com")),
                line("b", "skipped", Some("bob@example.com")),
                line("c", "deleted", Some("carol@example.com")),
            ],
        );
        let emails = plan_emails(&d);
        let to: Vec<&str> = emails.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            to,
            ["owner@example.com", "carol@example.com"],
            "alice and bob have nothing to hear"
        );
        assert_eq!(users(&emails[0].1), ["c"]);
        assert_eq!(users(&emails[1].1), ["c"]);
    }

    #[test]
    fn no_account_owner_and_bad_addresses() {
        let mut d = digest(
            Mode::Audit,
            vec![
                line("a", "planned", Some("team-payments")),
                line("b", "planned", Some("")),
                line("c", "planned", Some("carol@example.com")),
            ],
        );
        d.owner_email = None;
        let emails = plan_emails(&d);
        assert_eq!(emails.len(), 1);
        assert_eq!(emails[0].0, "carol@example.com");
        assert_eq!(users(&emails[0].1), ["c"]);
        d.lines.pop();
        assert!(plan_emails(&d).is_empty());
    }

    #[test]
    fn enforce_wording_names_users_keys_and_the_secret() {
        let t = Templates::load(None).unwrap();
        let d = digest(
            Mode::Enforce,
            vec![
                rotated("ci", "AKIAOLD0000000000001", "AKIANEW0000000000001"),
                rotated("deploy", "AKIAOLD0000000000002", "AKIANEW0000000000002"),
                rotated("etl", "AKIAOLD0000000000003", "AKIANEW0000000000003"),
                DigestLine {
                    reason: "hold AKIAOLD0000000000004: the old key is still in use".into(),
                    ..line("legacy", "held", None)
                },
            ],
        );
        let email = t.render(&d).unwrap();
        assert_eq!(
            email.subject,
            "[keyrotor] prod (111122223333): 3 keys rotated, 1 held"
        );
        for s in [&email.text, &email.html] {
            for needle in [
                "ci",
                "deploy",
                "legacy",
                "AKIAOLD0000000000001",
                "AKIANEW0000000000003",
                "Account_111122223333_User_ci_AccessKey",
                "must switch to the new key before the old key AKIAOLD0000000000002 is deactivated",
                "the old key is still in use",
            ] {
                assert!(s.contains(needle), "{needle} missing from\n{s}");
            }
            assert!(!s.contains("would be"), "enforce says what happened:\n{s}");
        }
        assert!(email
            .text
            .contains("This run changed the access keys below."));
        assert!(email.html.starts_with("<!DOCTYPE html>"));
    }

    #[test]
    fn audit_wording_says_what_would_happen() {
        let t = Templates::load(None).unwrap();
        let d = digest(
            Mode::Audit,
            vec![
                DigestLine {
                    reason: "rotate AKIAOLD0000000000001: key is 95 days old (rotate at 90)".into(),
                    ..line("ci", "planned", None)
                },
                DigestLine {
                    actions: vec![("delete".into(), "AKIAOLD0000000000009".into())],
                    ..line("batch", "planned", None)
                },
            ],
        );
        let email = t.render(&d).unwrap();
        assert_eq!(
            email.subject,
            "[keyrotor audit] prod (111122223333): 2 users with changes due"
        );
        for s in [&email.text, &email.html] {
            for needle in [
                "ci",
                "batch",
                "AKIAOLD0000000000001 would be rotated on the next enforce run",
                "Inactive key AKIAOLD0000000000009 would be deleted on the next enforce run",
                "planned",
            ] {
                assert!(s.contains(needle), "{needle} missing from\n{s}");
            }
        }
        assert!(email.text.contains("NOTHING WAS CHANGED"));
        assert!(email.text.contains("Actions due:"));
    }

    #[test]
    fn html_escapes_user_names_text_does_not() {
        let t = Templates::load(None).unwrap();
        let d = digest(
            Mode::Enforce,
            vec![rotated(
                "<script>alert(1)</script>",
                "AKIAOLD0000000000001",
                "AKIANEW0000000000001",
            )],
        );
        let email = t.render(&d).unwrap();
        assert!(!email.html.contains("<script>"), "{}", email.html);
        assert!(email.html.contains("&lt;script&gt;"), "{}", email.html);
        assert!(email.text.contains("<script>alert(1)</script>"));
        assert!(!email.subject.contains('\n'));
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "keyrotor-digest-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_override_file_replaces_only_its_template() {
        let dir = temp_dir("override");
        std::fs::write(
            dir.join(SUBJECT_TEMPLATE),
            "Key report for {{ account_name }}\n{{ summary }}\n",
        )
        .unwrap();
        let built_in = Templates::load(None).unwrap();
        let t = Templates::load(Some(&dir)).unwrap();
        let d = digest(
            Mode::Enforce,
            vec![rotated(
                "ci",
                "AKIAOLD0000000000001",
                "AKIANEW0000000000001",
            )],
        );
        let email = t.render(&d).unwrap();
        assert_eq!(email.subject, "Key report for prod 1 key rotated");
        let plain = built_in.render(&d).unwrap();
        assert_eq!(email.text, plain.text);
        // The HTML title shows the subject; the rest is the built-in body.
        assert_eq!(
            email.html.replace(&email.subject, "S"),
            plain.html.replace(&plain.subject, "S")
        );

        std::fs::write(dir.join(TEXT_TEMPLATE), "{% for l in lines %}").unwrap();
        let err = Templates::load(Some(&dir)).unwrap_err();
        assert!(
            matches!(&err, DigestError::Template { name, .. } if name == TEXT_TEMPLATE),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        let err = Templates::load(Some(&dir)).unwrap_err();
        assert!(matches!(err, DigestError::TemplateDir { .. }), "{err}");
    }

    #[derive(Default)]
    struct FakeMailer {
        sent: Mutex<Vec<(String, String, RenderedEmail)>>,
        reject: Option<String>,
    }

    #[async_trait]
    impl Mailer for FakeMailer {
        async fn send(&self, from: &str, to: &str, email: &RenderedEmail) -> Result<(), AwsError> {
            if self.reject.as_deref() == Some(to) {
                return Err(AwsError::from_code(
                    SEND_EMAIL,
                    "MessageRejected",
                    "Email address is not verified.".into(),
                ));
            }
            self.sent
                .lock()
                .unwrap()
                .push((from.into(), to.into(), email.clone()));
            Ok(())
        }
    }

    #[tokio::test]
    async fn send_digest_sends_each_planned_email() {
        let t = Templates::load(None).unwrap();
        let mut alice = rotated("ci", "AKIAOLD0000000000001", "AKIANEW0000000000001");
        alice.owner_email = Some("alice@example.com".into());
        let d = digest(
            Mode::Enforce,
            vec![
                alice,
                line("idle", "noop", Some("bob@example.com")),
                DigestLine {
                    actions: vec![("deactivate".into(), "AKIAOLD0000000000002".into())],
                    ..line("web", "deactivated", None)
                },
            ],
        );
        let mailer = FakeMailer::default();
        let sent = send_digest(&mailer, &t, "keyrotor@example.com", &d)
            .await
            .unwrap();
        assert_eq!(sent, 2);
        {
            let calls = mailer.sent.lock().unwrap();
            assert_eq!(calls.len(), 2);
            assert!(calls
                .iter()
                .all(|(from, _, _)| from == "keyrotor@example.com"));
            assert_eq!(calls[0].1, "owner@example.com");
            assert!(calls[0].2.text.contains("ci") && calls[0].2.text.contains("web"));
            assert!(calls[0]
                .2
                .text
                .contains("Key AKIAOLD0000000000002 was deactivated."));
            assert!(!calls[0].2.text.contains("idle"));
            assert_eq!(calls[1].1, "alice@example.com");
            assert!(calls[1].2.text.contains("ci") && !calls[1].2.text.contains("web"));
            assert_eq!(
                calls[1].2.subject,
                "[keyrotor] prod (111122223333): 1 key rotated"
            );
        }

        let quiet = digest(Mode::Enforce, vec![line("idle", "noop", None)]);
        let mailer = FakeMailer::default();
        assert_eq!(
            send_digest(&mailer, &t, "k@example.com", &quiet)
                .await
                .unwrap(),
            0
        );
        assert!(mailer.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn one_failed_recipient_does_not_stop_the_others() {
        let t = Templates::load(None).unwrap();
        let d = digest(
            Mode::Enforce,
            vec![line("a", "held", Some("alice@example.com"))],
        );
        let mailer = FakeMailer {
            reject: Some("owner@example.com".into()),
            ..FakeMailer::default()
        };
        let err = send_digest(&mailer, &t, "k@example.com", &d)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                DigestError::Send {
                    sent: 1,
                    failed: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(mailer.sent.lock().unwrap()[0].1, "alice@example.com");
    }
}
