//! `keyrotor import-accounts FILE.csv`: loading the account registry (the
//! account source `KEYROTOR_ACCOUNT_SOURCE=table`) from a CSV file.
//!
//! The file has a header row naming its columns, in any order and any case:
//! `account_id` and `email` are required, `name` and `enabled`
//! (`true`/`false`, default `true`) are optional; any other column is an
//! error, so a typo never silently drops data. Every row is validated (a
//! 12-digit account id, a plausible email address, no duplicate account id,
//! no empty required cell, the header's number of cells) and every problem is
//! reported with its line number in the file (the header is line 1). If any
//! row is bad, nothing is imported. Blank lines are skipped, a UTF-8 byte
//! order mark is ignored, CRLF line endings and quoted cells are accepted.
//!
//! Importing writes each account's registry item whole, so importing the same
//! file again changes nothing. Accounts absent from the file are left as they
//! are: to stop rotating one, import it with `enabled` set to `false`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use keyrotor_shared::domain::AccountId;
use keyrotor_shared::error::AwsError;
use keyrotor_shared::store::registry::{AccountRegistry, RegistryAccount};
use serde::Serialize;

/// The columns the header may name.
const ACCOUNT_ID: &str = "account_id";
const EMAIL: &str = "email";
const NAME: &str = "name";
const ENABLED: &str = "enabled";
const KNOWN_COLUMNS: [&str; 4] = [ACCOUNT_ID, EMAIL, NAME, ENABLED];

/// One problem of one row of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The 1-based line of the file where the row starts (the header is line 1).
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Why a CSV file could not be imported. Nothing was imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The header row is missing a required column or is malformed.
    #[error("bad header row: {0}")]
    BadHeader(String),
    /// The header names columns keyrotor does not know.
    #[error(
        "unknown column(s) in the header row: {}; the columns are account_id, email, name (optional), enabled (optional)",
        .0.join(", ")
    )]
    UnknownColumns(Vec<String>),
    /// Some rows are invalid; every problem is listed.
    #[error("{}", bad_rows_text(.0))]
    BadRows(Vec<RowError>),
    /// The file has no account rows.
    #[error("the file has no account rows (expected a header row `account_id,email[,name]` and one row per account)")]
    Empty,
}

fn bad_rows_text(rows: &[RowError]) -> String {
    let mut lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
    lines.dedup();
    let mut text = format!(
        "{} bad row{} in the file, nothing was imported:",
        lines.len(),
        if lines.len() == 1 { "" } else { "s" }
    );
    for r in rows {
        text.push('\n');
        text.push_str(&r.to_string());
    }
    text
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportFailure {
    /// The file is invalid; nothing was written.
    #[error(transparent)]
    Invalid(#[from] ImportError),
    /// Writing to the registry failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// What an import wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// How many accounts were written.
    pub imported: usize,
    /// Their ids, in file order.
    pub accounts: Vec<String>,
}

/// Where each known column sits in the rows.
struct Columns {
    count: usize,
    account_id: usize,
    email: usize,
    name: Option<usize>,
    enabled: Option<usize>,
}

fn is_blank(record: &csv::StringRecord) -> bool {
    record.iter().all(|cell| cell.trim().is_empty())
}

/// The 1-based line of `text` where the record at `position` starts.
///
/// Computed from the byte offset rather than taken from
/// [`csv::Position::line`], which reports the line of a skipped blank line
/// for the record that follows it (BurntSushi/rust-csv#208). The offset may
/// likewise point at skipped blank lines, so line breaks there are passed over.
fn line_at(text: &str, position: Option<&csv::Position>) -> usize {
    let Some(position) = position else {
        return 0;
    };
    let bytes = text.as_bytes();
    let mut at = usize::try_from(position.byte())
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    while at < bytes.len() && matches!(bytes[at], b'\r' | b'\n') {
        at += 1;
    }
    1 + bytes[..at].iter().filter(|&&b| b == b'\n').count()
}

fn header(record: &csv::StringRecord) -> Result<Columns, ImportError> {
    let names: Vec<String> = record
        .iter()
        .map(|cell| cell.trim().to_ascii_lowercase())
        .collect();
    let shown = record
        .iter()
        .map(|c| format!("{:?}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(ImportError::BadHeader(format!(
                "column {} has no name (header: {shown})",
                i + 1
            )));
        }
        if at.insert(name.as_str(), i).is_some() {
            return Err(ImportError::BadHeader(format!(
                "column {name} appears twice (header: {shown})"
            )));
        }
    }
    let missing: Vec<&str> = [ACCOUNT_ID, EMAIL]
        .into_iter()
        .filter(|c| !at.contains_key(c))
        .collect();
    if !missing.is_empty() {
        return Err(ImportError::BadHeader(format!(
            "the first row must name the columns account_id and email; missing {} (header: {shown})",
            missing.join(" and ")
        )));
    }
    let unknown: Vec<String> = record
        .iter()
        .map(str::trim)
        .filter(|c| !KNOWN_COLUMNS.contains(&c.to_ascii_lowercase().as_str()))
        .map(str::to_string)
        .collect();
    if !unknown.is_empty() {
        return Err(ImportError::UnknownColumns(unknown));
    }
    Ok(Columns {
        count: names.len(),
        account_id: at[ACCOUNT_ID],
        email: at[EMAIL],
        name: at.get(NAME).copied(),
        enabled: at.get(ENABLED).copied(),
    })
}

/// Why `email` is not a plausible address, if it is not.
fn email_problem(email: &str) -> Option<&'static str> {
    if email.chars().any(char::is_whitespace) {
        return Some("contains a space");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Some("has no @");
    };
    if domain.contains('@') {
        return Some("has more than one @");
    }
    if local.is_empty() {
        return Some("has nothing before the @");
    }
    if !domain.contains('.') {
        return Some("has no dot in its domain");
    }
    if domain.split('.').any(str::is_empty) {
        return Some("has an empty part in its domain");
    }
    None
}

/// Validates one data row, pushing its problems onto `errors`.
fn row(
    cols: &Columns,
    record: &csv::StringRecord,
    line: usize,
    errors: &mut Vec<RowError>,
) -> Option<RegistryAccount> {
    let mut problem = |message: String| errors.push(RowError { line, message });
    if record.len() != cols.count {
        problem(format!(
            "expected {} cells (as in the header), found {}",
            cols.count,
            record.len()
        ));
        return None;
    }
    let cell = |i: usize| record.get(i).unwrap_or_default().trim();
    let mut ok = true;

    let raw_id = cell(cols.account_id);
    let account_id = if raw_id.is_empty() {
        problem("account_id is empty".into());
        None
    } else {
        match AccountId::from_str(raw_id) {
            Ok(id) => Some(id),
            Err(_) => {
                let hint = if raw_id.bytes().all(|b| b.is_ascii_digit()) && raw_id.len() < 12 {
                    " (a spreadsheet may have dropped its leading zeros)"
                } else {
                    ""
                };
                problem(format!(
                    "account id {raw_id:?} is not a 12-digit account id{hint}"
                ));
                None
            }
        }
    };

    let email = cell(cols.email);
    if email.is_empty() {
        problem("email is empty".into());
        ok = false;
    } else if let Some(why) = email_problem(email) {
        problem(format!(
            "email {email:?} is not a plausible address: it {why}"
        ));
        ok = false;
    }

    let name = cols
        .name
        .map(cell)
        .filter(|n| !n.is_empty())
        .map(str::to_string);

    let enabled = match cols.enabled.map(cell) {
        None | Some("") => true,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            problem(format!("enabled {v:?} is neither true nor false"));
            ok = false;
            true
        }
    };

    match account_id {
        Some(account_id) if ok => Some(RegistryAccount {
            account_id,
            email: email.to_string(),
            name,
            enabled,
        }),
        _ => None,
    }
}

/// Parses and validates a registry CSV file (see the module documentation).
/// Returns every account, in file order, or every problem found.
pub fn parse_accounts_csv(text: &str) -> Result<Vec<RegistryAccount>, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();

    let cols = loop {
        match records.next() {
            None => return Err(ImportError::Empty),
            Some(Err(e)) => return Err(ImportError::BadHeader(e.to_string())),
            Some(Ok(r)) if is_blank(&r) => continue,
            Some(Ok(r)) => break header(&r)?,
        }
    };

    let mut accounts = Vec::new();
    let mut errors = Vec::new();
    let mut first_line: HashMap<AccountId, usize> = HashMap::new();
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = line_at(text, e.position());
                errors.push(RowError {
                    line,
                    message: format!("not valid CSV: {e}"),
                });
                continue;
            }
        };
        if is_blank(&record) {
            continue;
        }
        let line = line_at(text, record.position());
        let Some(account) = row(&cols, &record, line, &mut errors) else {
            continue;
        };
        if let Some(first) = first_line.get(&account.account_id) {
            errors.push(RowError {
                line,
                message: format!(
                    "account id \"{}\" is a duplicate: it is already on line {first}",
                    account.account_id
                ),
            });
            continue;
        }
        first_line.insert(account.account_id.clone(), line);
        accounts.push(account);
    }

    if !errors.is_empty() {
        return Err(ImportError::BadRows(errors));
    }
    if accounts.is_empty() {
        return Err(ImportError::Empty);
    }
    Ok(accounts)
}

/// Validates `text` (see [`parse_accounts_csv`]) and, only if every row is
/// good, writes every account to `registry`.
pub async fn import_accounts(
    registry: &AccountRegistry,
    text: &str,
) -> Result<ImportSummary, ImportFailure> {
    let accounts = parse_accounts_csv(text)?;
    registry.put_all(&accounts).await?;
    Ok(ImportSummary {
        imported: accounts.len(),
        accounts: accounts.iter().map(|a| a.account_id.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> AccountId {
        s.parse().unwrap()
    }

    fn bad_rows(text: &str) -> Vec<RowError> {
        match parse_accounts_csv(text) {
            Err(ImportError::BadRows(rows)) => rows,
            other => panic!("expected bad rows, got {other:?}"),
        }
    }

    #[test]
    fn import_good_file_with_reordered_columns_and_crlf() {
        let text = "\u{feff}Email , NAME,account_id,enabled\r\n\
                    ops@example.com,\"Prod, EU\",111122223333,true\r\n\
                    \r\n\
                    dev@example.org,,444455556666,FALSE\r\n\
                    qa@example.net,QA, 012345678901 ,\r\n";
        let accounts = parse_accounts_csv(text).unwrap();
        assert_eq!(
            accounts,
            vec![
                RegistryAccount {
                    account_id: id("111122223333"),
                    email: "ops@example.com".into(),
                    name: Some("Prod, EU".into()),
                    enabled: true,
                },
                RegistryAccount {
                    account_id: id("444455556666"),
                    email: "dev@example.org".into(),
                    name: None,
                    enabled: false,
                },
                RegistryAccount {
                    account_id: id("012345678901"),
                    email: "qa@example.net".into(),
                    name: Some("QA".into()),
                    enabled: true,
                },
            ]
        );
    }

    #[test]
    fn import_minimal_file_without_trailing_newline() {
        let accounts = parse_accounts_csv("account_id,email\n111122223333,a@b.co").unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0].name, None);
        assert!(accounts[0].enabled);
    }

    #[test]
    fn import_bad_rows_are_all_reported_with_their_lines() {
        let text = "account_id,email,name\n\
                    111122223333,ok@example.com,fine\n\
                    12345,short@example.com,x\n\
                    \n\
                    222233334444,not-an-email,y\n\
                    333344445555,a b@example.com,z\n\
                    444455556666,,empty\n\
                    ,nobody@example.com,no id\n\
                    555566667777,ok@example.com\n\
                    666677778888,x@@example.com,w\n\
                    777788889999,x@localhost,v\n\
                    888899990000,@example.com,u\n";
        let rows = bad_rows(text);
        let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 5, 6, 7, 8, 9, 10, 11, 12], "{rows:?}");
        assert_eq!(
            rows[0].to_string(),
            "line 3: account id \"12345\" is not a 12-digit account id (a spreadsheet may have dropped its leading zeros)"
        );
        assert!(rows[4].message.contains("account_id is empty"), "{rows:?}");
        assert!(rows[5].message.contains("expected 3 cells"), "{rows:?}");
        let shown = ImportError::BadRows(rows).to_string();
        assert!(shown.starts_with("9 bad rows"), "{shown}");
        assert_eq!(shown.lines().count(), 10, "one line per row error: {shown}");
        assert!(
            shown.contains("\nline 5: email \"not-an-email\""),
            "{shown}"
        );
    }

    #[test]
    fn import_line_numbers_count_blank_lines_and_multiline_cells() {
        let text = "\n\r\naccount_id,email,name\r\n\r\n\n\
                    111122223333,a@example.com,\"two\nlines\"\r\n\
                    \r\n\
                    1,b@example.com,x\n\
                    \n\
                    \n\
                    444455556666,bad,y\n";
        let rows = bad_rows(text);
        let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![9, 12], "{rows:?}");
    }

    #[test]
    fn import_a_row_with_two_problems_reports_both() {
        let rows = bad_rows("account_id,email,enabled\n1,x,maybe\n");
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(rows.iter().all(|r| r.line == 2));
        assert!(ImportError::BadRows(rows)
            .to_string()
            .starts_with("1 bad row in"));
    }

    #[test]
    fn import_duplicate_ids_name_both_lines() {
        let text = "account_id,email\n\
                    111122223333,a@example.com\n\
                    444455556666,b@example.com\n\
                    111122223333,c@example.com\n";
        let rows = bad_rows(text);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].line, 4);
        assert!(rows[0].message.contains("line 2"), "{rows:?}");
        assert!(rows[0].message.contains("111122223333"), "{rows:?}");
    }

    #[test]
    fn import_bad_header() {
        for text in [
            "111122223333,a@example.com\n",
            "account_id,mail\n111122223333,a@example.com\n",
            "account_id,email,\n111122223333,a@example.com,\n",
            "account_id,email,Email\n111122223333,a@example.com,b@example.com\n",
        ] {
            match parse_accounts_csv(text) {
                Err(ImportError::BadHeader(m)) => assert!(!m.is_empty()),
                other => panic!("{text:?}: expected a bad header, got {other:?}"),
            }
        }
        let err = parse_accounts_csv("id,mail\n1,2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("account_id and email"), "{err}");
    }

    #[test]
    fn import_unknown_columns_are_named() {
        let err =
            parse_accounts_csv("account_id,email,Owner,team\n111122223333,a@example.com,x,y\n")
                .unwrap_err();
        match &err {
            ImportError::UnknownColumns(c) => assert_eq!(c, &["Owner", "team"]),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("Owner, team"), "{err}");
    }

    #[test]
    fn import_empty_file() {
        for text in [
            "",
            "\n\n",
            "\u{feff}",
            "account_id,email\n",
            "account_id,email\r\n\r\n,\n",
        ] {
            assert!(
                matches!(parse_accounts_csv(text), Err(ImportError::Empty)),
                "{text:?}: {:?}",
                parse_accounts_csv(text)
            );
        }
    }
}
