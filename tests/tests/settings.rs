//! A bad setting fails at start, with exit code 2, naming the setting.

use keyrotor_e2e::{keyrotor_bin, run};

#[test]
fn delete_days_below_deactivate_days_exits_2_naming_it() {
    let mut cmd = std::process::Command::new(keyrotor_bin());
    cmd.env("KEYROTOR_DELETE_DAYS", "50")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    let ran = run(cmd, &["plan", "--account", "111122223333"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(
        ran.stderr.contains("KEYROTOR_DELETE_DAYS"),
        "{}",
        ran.stderr
    );
}

#[test]
fn a_bad_mode_exits_2_naming_it() {
    let mut cmd = std::process::Command::new(keyrotor_bin());
    cmd.env("KEYROTOR_MODE", "yes-please");
    let ran = run(cmd, &["rotate", "--account", "111122223333", "--user", "u"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("KEYROTOR_MODE"), "{}", ran.stderr);
}

#[test]
fn a_bad_account_id_is_a_usage_error() {
    let ran = run(
        std::process::Command::new(keyrotor_bin()),
        &["plan", "--account", "12"],
    );
    assert_eq!(ran.code, 2, "{ran:?}");
}
