//! `keyrotor report`: a worked run's report as JSON, as CSV and as an HTML
//! page opened in headless Chromium, one result per user, with the run's
//! totals, and no secret material in any of them.

use keyrotor_e2e::browser;
use keyrotor_e2e::world::Org;
use keyrotor_e2e::{init_stack, run, today, Emulator};
use serde_json::Value;

const MANAGEMENT: &str = "123456789012";
const TABLE: &str = "keyrotor-report";

#[tokio::test(flavor = "multi_thread")]
async fn a_worked_run_reports_every_user_once_in_json_csv_and_html() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let made = init_stack(&emu, TABLE, "report");
    let queue = made.queue_url;
    let acct = org.account("report0").await;
    for (i, age) in [95, 30, 120].into_iter().enumerate() {
        acct.user(&format!("user{i}"))
            .await
            .used_key_aged(age)
            .await;
    }
    emu.set_clock(today());
    let keyrotor = || {
        let mut cmd = emu.keyrotor(TABLE);
        cmd.env("KEYROTOR_QUEUE_URL", &queue)
            .env("KEYROTOR_EXCLUDE_ACCOUNTS", MANAGEMENT)
            .env("KEYROTOR_MODE", "enforce");
        cmd
    };
    let as_of = today().to_rfc3339();
    let produced = run(
        keyrotor(),
        &["produce", "--as-of", as_of.as_str(), "--output", "json"],
    );
    assert_eq!(produced.code, 0, "{}", produced.stderr);
    let produced: Value = serde_json::from_str(&produced.stdout).unwrap();
    let run_id = produced["run_id"].as_str().unwrap().to_string();
    let worked = run(keyrotor(), &["work", "--until-idle", "4"]);
    assert_eq!(worked.code, 0, "{}", worked.stderr);

    let json = run(keyrotor(), &["report", run_id.as_str(), "--format", "json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["run"]["run_id"], run_id.as_str());
    assert_eq!(report["run"]["complete"], true, "{report}");
    assert_eq!(report["run"]["done"], 3);
    let results = report["results"].as_array().unwrap();
    let users: Vec<&str> = results
        .iter()
        .map(|r| r["user_name"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["user0", "user1", "user2"]);
    assert_eq!(results[0]["outcome"], "rotated", "{report}");
    assert_eq!(results[1]["outcome"], "noop", "{report}");
    assert_eq!(report["accounts"][0]["outcomes"]["rotated"], 2, "{report}");

    let out = std::env::temp_dir().join(format!("keyrotor-report-{}.csv", std::process::id()));
    let csv = run(
        keyrotor(),
        &[
            "report",
            run_id.as_str(),
            "--format",
            "csv",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(csv.code, 0, "{}", csv.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("account_id,account_name,user_name,outcome,actions,new_key_id,secret_arn,reason,at")
    );
    assert_eq!(lines.count(), 3, "{text}");
    assert!(text.contains(",rotated,rotate:AKIA"), "{text}");

    let page = std::env::temp_dir().join(format!("keyrotor-report-{}.html", std::process::id()));
    let html = run(
        keyrotor(),
        &[
            "report",
            run_id.as_str(),
            "--format",
            "html",
            "--out",
            page.to_str().unwrap(),
        ],
    );
    assert_eq!(html.code, 0, "{}", html.stderr);
    let source = std::fs::read_to_string(&page).unwrap();
    // What a reader sees once the browser has parsed the page.
    let seen = browser::page_text(&page);
    for expected in [
        format!("Run {run_id} enforce complete"),
        "3 of 3 results".to_string(),
        "3 results 2 rotated 1 noop".to_string(),
        "Failures (0) None.".to_string(),
        "report0".to_string(),
        "user0 rotated rotate AKIA".to_string(),
    ] {
        assert!(
            seen.contains(&expected),
            "{expected:?} not in the page: {seen}"
        );
    }
    let png = page.with_extension("png");
    browser::screenshot(&page, &png, 1200, 1600);
    let shot = std::fs::read(&png).unwrap();
    std::fs::remove_file(&png).unwrap();
    std::fs::remove_file(&page).unwrap();
    assert!(shot.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        shot.len() > 20_000,
        "a page drawn, not a blank: {} bytes",
        shot.len()
    );

    // Key ids and ARNs only: no stored secret access key appears.
    for arn in acct.secret_arns().await {
        let secret: Value = acct.secret_json(&arn).await;
        let key = secret["SecretAccessKey"].as_str().unwrap();
        assert!(!json.stdout.contains(key) && !text.contains(key) && !source.contains(key));
    }
}
