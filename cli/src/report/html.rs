//! The report as one self-contained HTML page (no scripts, no external
//! assets): the run's header, its failures first of all, the outcome totals,
//! two inline SVG charts, and one collapsible section per account with its
//! users. Rendered by `minijinja` with HTML autoescaping on, since user
//! names and reasons come from the accounts and are not trusted.
//!
//! A page of a very large run stays usable: it lists at most
//! [`MAX_LISTED`] users; beyond that the users with nothing to report
//! (`noop`) are counted rather than listed, and the page says so and points
//! to the CSV, which always holds every user.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use keyrotor_shared::domain::Outcome;
use keyrotor_shared::policy::PolicyConfig;
use minijinja::{context, AutoEscape, Environment, Value};
use serde::Serialize;

use super::charts::{age_bands, ages_svg, count_in_bands, Progress};
use super::{Report, ResultRow};

const TEMPLATE: &str = "report.html.j2";

/// The most user rows one page lists.
pub const MAX_LISTED: usize = 20_000;

/// Up to this many accounts, every account's section starts open; beyond,
/// only those with failures do.
const OPEN_ACCOUNTS: usize = 5;

/// One failed user, as the failures list shows it.
#[derive(Debug, Serialize)]
struct FailureLine<'a> {
    account_id: &'a str,
    account_name: &'a str,
    user_name: &'a str,
    reason: &'a str,
}

/// One account's section.
#[derive(Debug, Serialize)]
struct AccountSection<'a> {
    account_id: &'a str,
    account_name: &'a str,
    expected: i64,
    done: i64,
    outcomes: Vec<(&'a str, i64)>,
    failures: usize,
    error: Option<&'a str>,
    rows: Vec<&'a ResultRow>,
    unlisted: usize,
}

/// Renders `report` as HTML; `policy` gives the key-age chart its bands.
pub fn render(report: &Report, policy: &PolicyConfig) -> Result<String, minijinja::Error> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.add_filter("when", |t: String| when(&t));
    env.add_template(TEMPLATE, include_str!("../../templates/report.html.j2"))?;

    let run = &report.run;
    let started = parse_time(&run.started);
    let listing_all = report.results.len() <= MAX_LISTED;
    let mut listed = 0;
    let mut by_account: HashMap<&str, Vec<&ResultRow>> = HashMap::new();
    for r in &report.results {
        by_account.entry(r.account_id.as_str()).or_default().push(r);
    }
    let accounts: Vec<AccountSection> = report
        .accounts
        .iter()
        .map(|a| {
            let rows = by_account.remove(a.account_id.as_str()).unwrap_or_default();
            let total = rows.len();
            let rows: Vec<&ResultRow> = rows
                .into_iter()
                .filter(|r| listing_all || r.outcome != Outcome::Noop)
                .take(MAX_LISTED - listed)
                .collect();
            listed += rows.len();
            AccountSection {
                account_id: &a.account_id,
                account_name: &a.account_name,
                expected: a.expected,
                done: a.done,
                outcomes: a.outcomes.iter().map(|(o, n)| (o.as_str(), *n)).collect(),
                failures: a.failures.len(),
                error: a.error.as_deref(),
                unlisted: total - rows.len(),
                rows,
            }
        })
        .collect();
    let failures: Vec<FailureLine> = report
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .map(|r| FailureLine {
            account_id: &r.account_id,
            account_name: &r.account_name,
            user_name: &r.user_name,
            reason: &r.reason,
        })
        .collect();
    let totals: Vec<(&str, usize)> = Outcome::ALL
        .iter()
        .map(|o| {
            let n = report.results.iter().filter(|r| r.outcome == *o).count();
            (o.as_str(), n)
        })
        .filter(|(_, n)| *n > 0)
        .collect();

    let progress = Progress::of(
        started.unwrap_or_else(|| {
            report
                .results
                .iter()
                .map(|r| r.at)
                .min()
                .unwrap_or_default()
        }),
        report.results.iter().map(|r| r.at),
    );
    let bands = age_bands(
        policy.rotate_after.num_days(),
        policy.deactivate_after.num_days(),
        policy.delete_after.num_days(),
    );
    let ages = report.results.iter().filter_map(|r| r.key_ages.as_ref());
    let before = count_in_bands(&bands, ages.clone().flat_map(|a| a.before.iter().copied()));
    let after = count_in_bands(&bands, ages.clone().flat_map(|a| a.after.iter().copied()));
    let users_with_ages = ages.count();

    let duration = match (started, run.finished) {
        (Some(s), Some(f)) => Some(duration_words(f - s)),
        _ => None,
    };
    env.get_template(TEMPLATE)?.render(context! {
        run,
        duration,
        totals,
        results => report.results.len(),
        failures,
        account_errors => report.accounts.iter().filter(|a| a.error.is_some()).count(),
        open_all => report.accounts.len() <= OPEN_ACCOUNTS,
        accounts,
        listed,
        listing_all,
        max_listed => MAX_LISTED,
        users_with_ages,
        progress_svg => Value::from_safe_string(progress.svg(usize::try_from(run.expected).unwrap_or(0))),
        ages_svg => Value::from_safe_string(ages_svg(&bands, &before, &after)),
    })
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// An RFC 3339 time as a reader wants it, `2026-06-01 10:00:00 UTC`; text
/// that is not such a time is shown as it is.
fn when(text: &str) -> String {
    parse_time(text).map_or_else(
        || text.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// `3 min 12 s`, `2 h 5 min`.
fn duration_words(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use keyrotor_shared::domain::KeyAction;
    use keyrotor_shared::store::results::{KeyAges, ResultItem};

    use super::super::fixtures::{item, report, run_record};
    use super::*;

    fn page(report: &Report) -> String {
        render(report, &PolicyConfig::default()).unwrap()
    }

    #[test]
    fn the_page_has_the_run_its_failures_first_and_its_totals() {
        let html = page(&report());
        assert!(html.contains(r#"<code id="run-id">r1</code>"#), "{html}");
        assert!(html.contains("4 of 4 results"));
        assert!(html.contains("As of 2026-06-01 00:00:00 UTC"), "{html}");
        assert!(html.contains("<b>4</b> results"));
        assert!(html.contains(r#"<div class="total o-failed"><b>1</b> failed</div>"#));
        assert!(
            html.contains("Took 6 min 59 s"),
            "from the start to the last result"
        );
        let failures = html.find("<h2>Failures (1)").unwrap();
        let outcomes = html.find("<h2>Outcomes").unwrap();
        let accounts = html.find("<h2>Accounts (2)").unwrap();
        assert!(failures < outcomes && outcomes < accounts);
        // The failing account comes first and is open.
        let first = &html[accounts..];
        let open = first.find("<details open>").unwrap();
        assert!(
            first[open..].find("222222222222").unwrap()
                < first[open..].find("111111111111").unwrap()
        );
        assert_eq!(html.matches("<svg").count(), 2, "two inline charts");
        assert!(!html.contains("<script"), "works with JavaScript off");
        assert!(
            !html.contains("src=") && !html.contains("<link") && !html.contains("https://"),
            "no external assets"
        );
    }

    #[test]
    fn untrusted_names_and_reasons_are_escaped() {
        let mut r = report();
        r.results[3].user_name = "<script>alert(1)</script>".into();
        r.results[3].reason = "<img src=x onerror=alert(1)> & more".into();
        let html = page(&r);
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt; &amp; more"));
    }

    #[test]
    fn key_ages_are_charted_before_and_after() {
        let rotated = ResultItem {
            actions: vec![KeyAction::new(
                keyrotor_shared::domain::Action::Rotate,
                "AKIAOLD",
            )],
            key_ages: Some(KeyAges {
                before: vec![95],
                after: vec![95, 0],
            }),
            ..item("111111111111", "ci", Outcome::Rotated, 3)
        };
        let html = page(&Report::build(&run_record(), vec![rotated]));
        assert!(html.contains("<title>1 keys before</title>"));
        // Bands of 0–29 and 90–99 days: the old key stays active until its
        // deactivation, the new one joins it.
        assert_eq!(html.matches("<title>1 keys before</title>").count(), 1);
        assert_eq!(html.matches("<title>1 keys after</title>").count(), 2);
        assert!(html.contains("the 1 users with a recorded result"));
    }

    #[test]
    fn a_very_large_run_lists_what_matters_and_counts_the_rest() {
        let mut run = run_record();
        run.per_account.truncate(1);
        let account = run.per_account[0].account_id.clone();
        let results: Vec<ResultItem> = (0..100_000)
            .map(|i| {
                let outcome = match i % 10 {
                    0 => Outcome::Rotated,
                    1 if i % 1000 == 1 => Outcome::Failed,
                    _ => Outcome::Noop,
                };
                item(&account, &format!("user-{i:06}"), outcome, (i % 60) as u32)
            })
            .collect();
        let report = Report::build(&run, results);
        let html = page(&report);
        let rows = html.matches("<tr><td").count();
        let failed = 100;
        assert_eq!(
            rows,
            10_000 + failed + failed,
            "rotated and failed users, and the failures list"
        );
        assert!(
            html.contains("the page lists 10100 of them"),
            "{}",
            &html[..2000]
        );
        assert!(html.contains("89900 more users not listed here"));
        assert!(html.len() < 8 * 1024 * 1024, "{} bytes", html.len());
    }
}
