//! `keyrotor status [RUN_ID]`: a run's progress and its results per outcome,
//! from the run items of the state table (DESIGN §6). Without a run id, the
//! newest run. Exit 0 whenever the run could be read, whatever its results
//! (`report` is the command for the results themselves); exit 1 when there
//! is no such run (or no run at all).

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use clap::Args;
use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::Settings;
use keyrotor_shared::store::runs::{RunAccount, RunRecord, RunStore};
use serde::Serialize;

use crate::{output, Cli, CliError};

/// `status` arguments.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The run (default: the newest run).
    #[arg(env = "KEYROTOR_STATUS_RUN_ID")]
    pub run_id: Option<String>,
}

/// What `--output json` prints: the run record, plus whether it is complete.
#[derive(Serialize)]
struct Status<'a> {
    #[serde(flatten)]
    run: &'a RunRecord,
    complete: bool,
}

/// Runs `status`.
pub async fn run(cli: &Cli, args: &StatusArgs) -> Result<ExitCode, CliError> {
    let settings = Settings::from_args(&cli.settings)?;
    let aws = AwsContext::load(&settings.role_name).await;
    let runs = RunStore::new(
        aws_sdk_dynamodb::Client::new(aws.base()),
        settings.table.clone(),
    );
    let run_id = match &args.run_id {
        Some(id) => id.clone(),
        None => runs
            .latest()
            .await
            .with_context(|| format!("listing the runs in table {}", settings.table))?
            .ok_or_else(|| anyhow!("no runs yet (table {})", settings.table))?,
    };
    let record = runs
        .get(&run_id)
        .await
        .with_context(|| format!("reading run {run_id} in table {}", settings.table))?
        .ok_or_else(|| anyhow!("no run {run_id}"))?;
    let status = Status {
        run: &record,
        complete: record.complete(),
    };
    output::print(cli.output, &status, |s| status_text(s.run));
    Ok(ExitCode::SUCCESS)
}

fn percent(done: i64, expected: i64) -> i64 {
    if expected <= 0 || done >= expected {
        100
    } else {
        // Never show 100% before the last message is done.
        (done * 100 / expected).min(99)
    }
}

fn counts_text(counts: &std::collections::BTreeMap<String, i64>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n != 0)
        .map(|(outcome, n)| format!("{outcome} {n}"))
        .collect();
    if parts.is_empty() {
        "none yet".into()
    } else {
        parts.join(", ")
    }
}

fn account_status(a: &RunAccount) -> String {
    if a.status == "failed" {
        match &a.error {
            Some(e) => format!("failed: {e}"),
            None => "failed".into(),
        }
    } else if !a.enqueued {
        "enqueueing".into()
    } else if a.complete() {
        "done".into()
    } else {
        "working".into()
    }
}

/// The run as a table.
fn status_text(r: &RunRecord) -> String {
    let mut s = String::new();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(s, "run        {}", r.run_id);
    let _ = writeln!(s, "mode       {}", r.mode);
    let _ = writeln!(s, "as of      {}", r.as_of);
    let _ = writeln!(s, "started    {}", r.started_at);
    let _ = writeln!(
        s,
        "progress   {}/{} ({}%){}",
        r.done,
        r.expected,
        percent(r.done, r.expected),
        if r.enqueue_done {
            ""
        } else {
            ", still enqueueing"
        }
    );
    let _ = writeln!(s, "complete   {}", yes_no(r.complete()));
    let _ = writeln!(s, "outcomes   {}", counts_text(&r.counts));
    let _ = writeln!(
        s,
        "failed     {}",
        if r.failed_accounts.is_empty() {
            "no account".to_string()
        } else {
            format!(
                "{} account{}: {}",
                r.failed_accounts.len(),
                if r.failed_accounts.len() == 1 {
                    ""
                } else {
                    "s"
                },
                r.failed_accounts.join(", ")
            )
        }
    );
    let _ = writeln!(
        s,
        "summary    {}",
        if r.summary_sent { "sent" } else { "not sent" }
    );
    if r.per_account.is_empty() {
        return s;
    }
    let name_width = r
        .per_account
        .iter()
        .map(|a| a.account_name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let _ = writeln!(
        s,
        "\n{:<12}  {:<name_width$}  {:>13}  {:<6}  STATUS",
        "ACCOUNT", "NAME", "DONE/EXPECTED", "DIGEST"
    );
    for a in &r.per_account {
        let _ = writeln!(
            s,
            "{:<12}  {:<name_width$}  {:>13}  {:<6}  {}",
            a.account_id,
            a.account_name,
            format!("{}/{}", a.done, a.expected),
            if a.digest_sent { "sent" } else { "-" },
            account_status(a)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn account(id: &str, done: i64, expected: i64) -> RunAccount {
        RunAccount {
            account_id: id.into(),
            account_name: format!("name-{id}"),
            expected,
            done,
            counts: BTreeMap::new(),
            enqueued: true,
            status: "ok".into(),
            error: None,
            digest_sent: done == expected,
        }
    }

    #[test]
    fn the_table_shows_progress_counts_and_accounts() {
        let record = RunRecord {
            run_id: "r1".into(),
            as_of: "2026-06-01T00:00:00.000Z".into(),
            mode: "enforce".into(),
            started_at: "2026-06-01T00:00:01.000Z".into(),
            accounts: 2,
            expected: 6,
            enqueue_done: true,
            done: 4,
            counts: BTreeMap::from([
                ("rotated".into(), 3),
                ("noop".into(), 1),
                ("held".into(), 0),
            ]),
            summary_sent: false,
            failed_accounts: vec!["999".into()],
            per_account: vec![
                account("111", 3, 3),
                account("222", 1, 3),
                RunAccount {
                    status: "failed".into(),
                    error: Some("sts:AssumeRole: access denied".into()),
                    ..account("999", 0, 0)
                },
            ],
        };
        let t = status_text(&record);
        assert!(t.contains("progress   4/6 (66%)"), "{t}");
        assert!(t.contains("complete   no"), "{t}");
        assert!(t.contains("outcomes   noop 1, rotated 3"), "{t}");
        assert!(!t.contains("held"), "zero counts are left out: {t}");
        assert!(t.contains("failed     1 account: 999"), "{t}");
        assert!(
            t.lines().any(|l| l.starts_with("111")
                && l.contains("3/3")
                && l.contains("sent")
                && l.ends_with("done")),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.starts_with("222") && l.contains("1/3") && l.ends_with("working")),
            "{t}"
        );
        assert!(t.contains("failed: sts:AssumeRole: access denied"), "{t}");
    }

    #[test]
    fn percent_never_rounds_up_to_done() {
        assert_eq!(percent(0, 6), 0);
        assert_eq!(percent(999, 1000), 99);
        assert_eq!(percent(6, 6), 100);
        assert_eq!(percent(0, 0), 100);
    }
}
