//! `keyrotor import-accounts FILE.csv` against the emulator's DynamoDB: a
//! good file imports and re-imports idempotently; a file with one bad row
//! imports nothing and names the line.

use std::path::PathBuf;

use keyrotor_e2e::{keyrotor_bin, run, Emulator};
use keyrotor_shared::store::registry::{AccountRegistry, RegistryAccount};

const TABLE: &str = "keyrotor-import";

/// Writes `text` to a file of its own under the temporary directory.
fn csv_file(text: &str) -> TempFile {
    let path = std::env::temp_dir().join(format!("keyrotor-import-{}.csv", uuid::Uuid::new_v4()));
    std::fs::write(&path, text).expect("write the CSV file");
    TempFile(path)
}

/// A file removed when the test ends.
struct TempFile(PathBuf);

impl TempFile {
    fn arg(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn registry(emu: &Emulator) -> Vec<RegistryAccount> {
    let config = emu.hub_config().await;
    AccountRegistry::new(aws_sdk_dynamodb::Client::new(&config), TABLE)
        .list()
        .await
        .expect("list the registry")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_csv_imports_and_reimports_idempotently() {
    let emu = Emulator::start();
    let init = run(emu.keyrotor(TABLE), &["init"]);
    assert_eq!(init.code, 0, "{init:?}");

    // 30 accounts: more than one BatchWriteItem of 25. Columns reordered, CRLF.
    let mut text = String::from("email,name,account_id,enabled\r\n");
    for i in 0..30u64 {
        let id = format!("{:012}", 210_000_000_000 + i * 7);
        let name = if i % 3 == 0 {
            String::new()
        } else {
            format!("team {i}")
        };
        let enabled = if i == 5 { "false" } else { "true" };
        text.push_str(&format!("owner{i}@example.com,{name},{id},{enabled}\r\n"));
    }
    let file = csv_file(&text);

    let ran = run(
        emu.keyrotor(TABLE),
        &["import-accounts", file.arg(), "--output", "json"],
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    let summary: serde_json::Value = serde_json::from_str(&ran.stdout).expect("JSON summary");
    assert_eq!(summary["imported"], 30, "{summary}");
    assert_eq!(
        summary["accounts"].as_array().map(Vec::len),
        Some(30),
        "{summary}"
    );

    let first = registry(&emu).await;
    assert_eq!(first.len(), 30);
    let a = first
        .iter()
        .find(|a| a.account_id.as_str() == "210000000000")
        .expect("the first row");
    assert_eq!(a.email, "owner0@example.com");
    assert_eq!(a.name, None);
    assert!(a.enabled);
    let b = first
        .iter()
        .find(|a| a.account_id.as_str() == "210000000035")
        .expect("the sixth row");
    assert_eq!(b.name.as_deref(), Some("team 5"));
    assert!(!b.enabled);

    // The same file again: exit 0, the very same registry.
    let again = run(
        emu.keyrotor(TABLE),
        &["import-accounts", file.arg(), "--output", "json"],
    );
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(registry(&emu).await, first);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_with_one_bad_row_imports_nothing_and_names_the_line() {
    let emu = Emulator::start();
    let init = run(emu.keyrotor(TABLE), &["init"]);
    assert_eq!(init.code, 0, "{init:?}");

    let file = csv_file(
        "account_id,email,name\n\
         111122223333,prod@example.com,prod\n\
         11112222333,dev@example.com,dev\n\
         444455556666,qa@example.com,qa\n",
    );
    let ran = run(emu.keyrotor(TABLE), &["import-accounts", file.arg()]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(ran.stderr.contains("line 3"), "{}", ran.stderr);
    assert!(ran.stderr.contains("11112222333"), "{}", ran.stderr);
    assert!(
        registry(&emu).await.is_empty(),
        "nothing may be imported from a file with a bad row"
    );
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let mut cmd = std::process::Command::new(keyrotor_bin());
    cmd.env_clear().env("KEYROTOR_TABLE", TABLE);
    let missing =
        std::env::temp_dir().join(format!("keyrotor-missing-{}.csv", uuid::Uuid::new_v4()));
    let ran = run(cmd, &["import-accounts", missing.to_str().unwrap()]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("cannot read"), "{}", ran.stderr);
}
