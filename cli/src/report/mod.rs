//! A run's report, as auditors ask for it: the run, its accounts (failures
//! first) and one result per user, built from the run items and the result
//! items of the state table (key ids and ARNs only, never secret material).
//! [`Report::csv`] writes the RFC 4180 file, one row per user; the JSON is
//! the report serialised; [`html::render`] writes the page.

pub mod charts;
pub mod html;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keyrotor_shared::domain::{shown_actions, KeyAction, Outcome};
use keyrotor_shared::store::results::{KeyAges, ResultItem};
use keyrotor_shared::store::runs::{RunAccount, RunRecord};
use serde::Serialize;

/// The run's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunHeader {
    /// The run.
    pub run_id: String,
    /// `audit` or `enforce`.
    pub mode: String,
    /// The evaluation time.
    pub as_of: String,
    /// When the producer started it.
    pub started: String,
    /// When its last result was recorded, once it is complete.
    pub finished: Option<DateTime<Utc>>,
    /// Every expected message has a result and no more are coming.
    pub complete: bool,
    /// Messages expected.
    pub expected: i64,
    /// Results recorded.
    pub done: i64,
}

/// One user whose processing failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The user.
    pub user_name: String,
    /// Why.
    pub reason: String,
}

/// One account of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountReport {
    /// The account.
    pub account_id: String,
    /// Its name.
    pub account_name: String,
    /// Messages expected.
    pub expected: i64,
    /// Results recorded.
    pub done: i64,
    /// Results per outcome.
    pub outcomes: BTreeMap<String, i64>,
    /// The users that failed, with why.
    pub failures: Vec<Failure>,
    /// Why the account itself could not be enumerated, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One user's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResultRow {
    /// The account.
    pub account_id: String,
    /// Its name.
    pub account_name: String,
    /// The user.
    pub user_name: String,
    /// What happened.
    pub outcome: Outcome,
    /// What was done (for `planned`: what an enforce run would do).
    pub actions: Vec<KeyAction>,
    /// The key created, if one was.
    pub new_key_id: Option<String>,
    /// The secret holding it.
    pub secret_arn: Option<String>,
    /// Why.
    pub reason: String,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The ages of the user's active keys before and after (the HTML
    /// page's chart; not part of the JSON or the CSV).
    #[serde(skip)]
    pub key_ages: Option<KeyAges>,
}

/// A run's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The run.
    pub run: RunHeader,
    /// Its accounts: those with failures first, then by id.
    pub accounts: Vec<AccountReport>,
    /// One result per user, by account and user.
    pub results: Vec<ResultRow>,
}

/// The CSV header (one row per user result follows).
pub const CSV_HEADER: [&str; 9] = [
    "account_id",
    "account_name",
    "user_name",
    "outcome",
    "actions",
    "new_key_id",
    "secret_arn",
    "reason",
    "at",
];

impl Report {
    /// The report of `run` from its accounts' result items.
    pub fn build(run: &RunRecord, results: Vec<ResultItem>) -> Report {
        let mut rows: Vec<ResultRow> = results.into_iter().map(row).collect();
        rows.sort_by(|a, b| {
            (a.account_id.as_str(), a.user_name.as_str())
                .cmp(&(b.account_id.as_str(), b.user_name.as_str()))
        });
        let mut failures: BTreeMap<&str, Vec<Failure>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.outcome == Outcome::Failed) {
            failures
                .entry(r.account_id.as_str())
                .or_default()
                .push(Failure {
                    user_name: r.user_name.clone(),
                    reason: r.reason.clone(),
                });
        }
        let mut accounts: Vec<AccountReport> = run
            .per_account
            .iter()
            .map(|a| {
                account(
                    a,
                    failures.remove(a.account_id.as_str()).unwrap_or_default(),
                )
            })
            .collect();
        accounts.sort_by(|a, b| {
            let failing = |r: &AccountReport| r.failures.is_empty() && r.error.is_none();
            (failing(a), a.account_id.as_str()).cmp(&(failing(b), b.account_id.as_str()))
        });
        let complete = run.complete();
        Report {
            run: RunHeader {
                run_id: run.run_id.clone(),
                mode: run.mode.clone(),
                as_of: run.as_of.clone(),
                started: run.started_at.clone(),
                finished: complete.then(|| rows.iter().map(|r| r.at).max()).flatten(),
                complete,
                expected: run.expected,
                done: run.done,
            },
            accounts,
            results: rows,
        }
    }

    /// The results as RFC 4180 CSV with [`CSV_HEADER`]; a row's actions
    /// are `action:key_id` pairs separated by spaces.
    pub fn csv(&self) -> Result<String, csv::Error> {
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record(CSV_HEADER)?;
        for r in &self.results {
            let actions: Vec<String> = r
                .actions
                .iter()
                .map(|a| format!("{}:{}", a.action, a.key_id))
                .collect();
            out.write_record([
                r.account_id.as_str(),
                r.account_name.as_str(),
                r.user_name.as_str(),
                r.outcome.as_str(),
                actions.join(" ").as_str(),
                r.new_key_id.as_deref().unwrap_or(""),
                r.secret_arn.as_deref().unwrap_or(""),
                r.reason.as_str(),
                r.at.to_rfc3339().as_str(),
            ])?;
        }
        let bytes = out
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))?;
        Ok(String::from_utf8(bytes).expect("the fields are text"))
    }
}

fn row(r: ResultItem) -> ResultRow {
    let actions = shown_actions(r.outcome, &r.actions, &r.due).to_vec();
    ResultRow {
        account_id: r.account_id,
        account_name: r.account_name,
        user_name: r.user_name,
        outcome: r.outcome,
        actions,
        new_key_id: r.new_key_id,
        secret_arn: r.secret_arn,
        reason: r.reason,
        at: r.at,
        key_ages: r.key_ages,
    }
}

fn account(a: &RunAccount, failures: Vec<Failure>) -> AccountReport {
    AccountReport {
        account_id: a.account_id.clone(),
        account_name: a.account_name.clone(),
        expected: a.expected,
        done: a.done,
        outcomes: a.counts.clone(),
        failures,
        error: a.error.clone(),
    }
}

/// A small worked run shared by the report's tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use keyrotor_shared::domain::{Action, Mode};

    use super::*;

    pub(crate) fn run_record() -> RunRecord {
        let account = |id: &str, done, counts: &[(&str, i64)]| RunAccount {
            account_id: id.into(),
            account_name: format!("name-{id}"),
            expected: 2,
            done,
            counts: counts.iter().map(|(o, n)| (o.to_string(), *n)).collect(),
            enqueued: true,
            status: "ok".into(),
            error: None,
            digest_sent: false,
        };
        RunRecord {
            run_id: "r1".into(),
            as_of: "2026-06-01T00:00:00Z".into(),
            mode: "enforce".into(),
            started_at: "2026-06-01T00:00:01Z".into(),
            accounts: 2,
            expected: 4,
            enqueue_done: true,
            done: 4,
            counts: BTreeMap::new(),
            summary_sent: true,
            failed_accounts: Vec::new(),
            per_account: vec![
                account("111111111111", 2, &[("rotated", 1), ("noop", 1)]),
                account("222222222222", 2, &[("failed", 1), ("planned", 1)]),
            ],
        }
    }

    pub(crate) fn item(account: &str, user: &str, outcome: Outcome, minute: u32) -> ResultItem {
        ResultItem {
            run_id: "r1".into(),
            account_id: account.into(),
            account_name: format!("name-{account}"),
            account_email: None,
            user_name: user.into(),
            outcome,
            mode: Mode::Enforce,
            reason: format!("{outcome} because"),
            actions: Vec::new(),
            due: Vec::new(),
            new_key_id: None,
            secret_arn: None,
            owner_email: None,
            key_ages: None,
            incident: false,
            quarantine_policy: None,
            at: DateTime::parse_from_rfc3339(&format!("2026-06-01T00:{minute:02}:00Z"))
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    pub(crate) fn report() -> Report {
        let rotated = ResultItem {
            actions: vec![KeyAction::new(Action::Rotate, "AKIAOLD")],
            new_key_id: Some("AKIANEW".into()),
            secret_arn: Some("arn:aws:secretsmanager:us-east-1:111111111111:secret:k".into()),
            ..item("111111111111", "ci", Outcome::Rotated, 3)
        };
        let planned = ResultItem {
            due: vec![KeyAction::new(Action::Delete, "AKIAGONE")],
            ..item("222222222222", "batch", Outcome::Planned, 1)
        };
        let failed = ResultItem {
            reason: "iam:GetUser: access denied, \"quoted\"\nsecond line".into(),
            ..item("222222222222", "etl", Outcome::Failed, 7)
        };
        Report::build(
            &run_record(),
            vec![
                failed,
                rotated,
                planned,
                item("111111111111", "idle", Outcome::Noop, 2),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use keyrotor_shared::domain::Action;

    use super::fixtures::report;
    use super::*;

    #[test]
    fn accounts_with_failures_come_first_and_results_are_ordered() {
        let r = report();
        let ids: Vec<&str> = r.accounts.iter().map(|a| a.account_id.as_str()).collect();
        assert_eq!(ids, ["222222222222", "111111111111"]);
        assert_eq!(r.accounts[0].failures.len(), 1);
        assert_eq!(r.accounts[0].failures[0].user_name, "etl");
        assert_eq!(r.accounts[1].outcomes["rotated"], 1);
        let users: Vec<&str> = r.results.iter().map(|r| r.user_name.as_str()).collect();
        assert_eq!(users, ["ci", "idle", "batch", "etl"]);
        assert!(r.run.complete);
        assert_eq!(
            r.run.finished.unwrap().to_rfc3339(),
            "2026-06-01T00:07:00+00:00",
            "the last result"
        );
        assert_eq!(
            r.results[2].actions,
            [KeyAction::new(Action::Delete, "AKIAGONE")],
            "a planned result shows what is due"
        );
    }

    #[test]
    fn the_json_has_the_documented_shape() {
        let v = serde_json::to_value(report()).unwrap();
        for key in [
            "run_id", "mode", "as_of", "started", "finished", "complete", "expected", "done",
        ] {
            assert!(v["run"].get(key).is_some(), "run.{key}: {v}");
        }
        let account = &v["accounts"][0];
        for key in [
            "account_id",
            "account_name",
            "expected",
            "done",
            "outcomes",
            "failures",
        ] {
            assert!(account.get(key).is_some(), "accounts[].{key}: {account}");
        }
        let ci = &v["results"][0];
        assert_eq!(ci["outcome"], "rotated");
        assert_eq!(ci["actions"][0]["action"], "rotate");
        assert_eq!(ci["actions"][0]["key_id"], "AKIAOLD");
        assert_eq!(ci["new_key_id"], "AKIANEW");
        assert!(ci.get("at").is_some() && ci.get("reason").is_some());
    }

    #[test]
    fn the_csv_is_rfc_4180_with_one_row_per_user() {
        let text = report().csv().unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            reader.headers().unwrap(),
            &csv::StringRecord::from(CSV_HEADER.to_vec())
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(&rows[0][4], "rotate:AKIAOLD");
        assert_eq!(&rows[0][5], "AKIANEW");
        assert_eq!(
            &rows[3][7], "iam:GetUser: access denied, \"quoted\"\nsecond line",
            "commas, quotes and newlines survive"
        );
        assert!(
            text.contains("\"iam:GetUser: access denied, \"\"quoted\"\""),
            "{text}"
        );
    }
}
