//! Printing results as a table (for people) or JSON (for scripts), and the
//! text rendering of a user's plan.

use std::fmt::Write as _;

use keyrotor_shared::executor::{UserPlan, UserResult};
use serde::Serialize;

use crate::Output;

/// Prints `value` as pretty JSON or through `table`.
pub fn print<T: Serialize>(output: Output, value: &T, table: impl FnOnce(&T) -> String) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).expect("plain data serialises")
        ),
        Output::Table => print!("{}", table(value)),
    }
}

/// Prints one JSON object on one line (for streams of users).
pub fn print_line<T: Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string(value).expect("plain data serialises")
    );
}

fn date(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// A user's plan as text.
pub fn plan_text(plan: &UserPlan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} / {}{}",
        plan.account_id,
        plan.user_name,
        if plan.exempt { "  (exempt)" } else { "" }
    );
    for k in &plan.keys {
        let _ = writeln!(
            s,
            "  key {}  {:<8}  created {}  last used {}",
            k.key_id,
            k.status,
            date(&k.created),
            k.last_used
                .as_ref()
                .map(date)
                .unwrap_or_else(|| "never".into())
        );
    }
    if plan.actions.is_empty() {
        let _ = writeln!(s, "  nothing due");
    }
    for a in &plan.actions {
        let _ = writeln!(
            s,
            "  {:<10} {}  due {}  {}",
            a.action.as_str(),
            a.key_id,
            date(&a.due),
            a.reason
        );
    }
    s
}

/// A rotate result as text.
pub fn result_text(r: &UserResult) -> String {
    let mut s = plan_text(&r.plan);
    let _ = writeln!(s, "  outcome: {} — {}", r.outcome.as_str(), r.reason);
    for p in &r.performed {
        let _ = writeln!(s, "  done: {} {}", p.action, p.key_id);
    }
    if let (Some(k), Some(arn)) = (&r.new_key_id, &r.secret_arn) {
        let _ = writeln!(s, "  new key {k} stored in {arn}");
    }
    s
}
