//! The end-to-end harness: one moto emulator per test (started by
//! `scripts/emulator.py`, with a movable clock), an organisation built with
//! small helpers, and the `keyrotor` binary run against it.
//!
//! Each test starts its own emulator on a free port, so tests never share
//! state or clocks; the emulator exits when the test process does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use chrono::{DateTime, Utc};

/// The project's root (the workspace).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `keyrotor` binary built beside this test binary (`scripts/test`
/// builds it first), or `$KEYROTOR_BIN`.
pub fn keyrotor_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYROTOR_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let bin = dir.join("keyrotor");
    assert!(
        bin.exists(),
        "{} is missing: run the suite with scripts/test, which builds it",
        bin.display()
    );
    bin
}

/// A running emulator.
pub struct Emulator {
    child: Child,
    now: std::sync::Mutex<DateTime<Utc>>,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

/// A fixed "today" for scenarios, so ages in days are exact.
pub fn today() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// `today() + days` (negative for the past).
pub fn day(days: i64) -> DateTime<Utc> {
    today() + chrono::Duration::days(days)
}

impl Emulator {
    /// Starts an emulator whose clock reads `today()`.
    pub fn start() -> Emulator {
        let root = project_root();
        let python = root.join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/setup (scripts/test does)",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(root.join("scripts/emulator.py"))
            .arg("--start")
            .arg(today().to_rfc3339())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the emulator");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the emulator's ready line");
        let ready: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("emulator said: {line:?}"));
        Emulator {
            child,
            now: std::sync::Mutex::new(today()),
            endpoint: ready["endpoint"].as_str().expect("endpoint").to_string(),
        }
    }

    fn http(&self, method: &str, path: &str, body: &str) -> String {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).expect("connect to the emulator");
        stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }

    /// Moves the emulator's clock (it keeps ticking from there).
    pub fn set_clock(&self, t: DateTime<Utc>) {
        let body = serde_json::json!({"now": t.to_rfc3339()}).to_string();
        self.http("POST", "/_keyrotor/clock", &body);
        *self.now.lock().unwrap() = t;
    }

    /// The time the clock was last set to (it has ticked a little since).
    pub fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap()
    }

    /// moto's backend state (`/moto-api/data.json`).
    pub fn backend_state(&self) -> serde_json::Value {
        serde_json::from_str(&self.http("GET", "/moto-api/data.json", "")).unwrap_or_default()
    }

    /// SDK configuration for the hub (management) account.
    pub async fn hub_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .load()
            .await
    }

    /// A `keyrotor` command wired to this emulator and `table`.
    pub fn keyrotor(&self, table: &str) -> Command {
        let mut cmd = Command::new(keyrotor_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("KEYROTOR_TABLE", table)
            // The emulator's clock is moved: its time, which the tests pass
            // as --as-of, is the real clock of that world.
            .env("KEYROTOR_ALLOW_FUTURE_AS_OF", "true")
            // Tests of failures go on to enforce runs that must act; the
            // circuit breaker (default 5%) would hold them after one failure
            // in a small run. tests/tests/breaker.rs sets it.
            .env("KEYROTOR_BREAKER_FAILURES", "off")
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A finished command's exit code and text.
#[derive(Debug)]
pub struct Ran {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(o: Output) -> Ran {
        Ran {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `cmd` with `args` and collects its output.
pub fn run(mut cmd: Command, args: &[&str]) -> Ran {
    cmd.args(args).output().expect("run keyrotor").into()
}

pub mod browser;
pub mod hub;
pub mod runtime_api;
pub mod world;

/// Every item of `table`, as one debug string (to search for leaks).
pub async fn scan_table(config: &SdkConfig, table: &str) -> String {
    let out = aws_sdk_dynamodb::Client::new(config)
        .scan()
        .table_name(table)
        .send()
        .await
        .expect("scan");
    format!("{:?}", out.items())
}

/// The message a run's digest claim for `account` is held for
/// (`account/user`), read from the run's account item; `None` when it names
/// none.
pub async fn digest_holder(
    config: &SdkConfig,
    table: &str,
    run_id: &str,
    account: &str,
) -> Option<String> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let item = aws_sdk_dynamodb::Client::new(config)
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("RUN#{run_id}")))
        .key("sk", AttributeValue::S(format!("ACCOUNT#{account}")))
        .send()
        .await
        .expect("get the run's account item")
        .item
        .unwrap_or_default();
    item.get("digest_holder")
        .and_then(|v| v.as_s().ok())
        .cloned()
}

/// The arguments of `keyrotor rotate ... --output json` for one user.
pub fn rotate_args(account: &str, user: &str, as_of: DateTime<Utc>, mode: &str) -> Vec<String> {
    [
        "rotate",
        "--account",
        account,
        "--user",
        user,
        "--as-of",
        &as_of.to_rfc3339(),
        "--mode",
        mode,
        "--output",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Emulator {
    /// Runs `keyrotor rotate` for one user at `as_of` and returns its JSON
    /// result; fails the test unless it exits 0.
    pub fn rotate(
        &self,
        table: &str,
        account: &str,
        user: &str,
        as_of: DateTime<Utc>,
        mode: &str,
    ) -> (serde_json::Value, Ran) {
        let args = rotate_args(account, user, as_of, mode);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ran = run(self.keyrotor(table), &args);
        assert_eq!(ran.code, 0, "{user}: {}\n{}", ran.stdout, ran.stderr);
        let value = serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("{user}: {e}: {}", ran.stdout));
        (value, ran)
    }
}

/// Every message body on `queue_url`, received and deleted until the queue
/// is empty (FIFO groups hold back their next message until one is deleted).
pub async fn drain_queue(config: &SdkConfig, queue_url: &str) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let mut bodies = Vec::new();
    let mut empty_polls = 0;
    while empty_polls < 2 {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(300)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            empty_polls += 1;
            continue;
        }
        empty_polls = 0;
        for m in messages {
            bodies.push(m.body.unwrap_or_default());
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle.unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }
    bodies
}

/// `keyrotor init --prefix PREFIX` and the queue URL it made.
pub fn init_queue(emu: &Emulator, table: &str, prefix: &str) -> String {
    init_stack(emu, table, prefix).queue_url
}

/// What `keyrotor init` made: the work queue and the results topic.
pub struct Stack {
    /// `KEYROTOR_QUEUE_URL`.
    pub queue_url: String,
    /// `KEYROTOR_TOPIC_ARN`.
    pub topic_arn: String,
}

/// Runs `keyrotor init --prefix PREFIX` for `table`; what it made.
pub fn init_stack(emu: &Emulator, table: &str, prefix: &str) -> Stack {
    let ran = run(
        emu.keyrotor(table),
        &["init", "--prefix", prefix, "--output", "json"],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let made: serde_json::Value = serde_json::from_str(&ran.stdout).expect("init json");
    let text = |name: &str| made[name].as_str().expect(name).to_string();
    Stack {
        queue_url: text("queue_url"),
        topic_arn: text("topic_arn"),
    }
}

impl Emulator {
    /// Sets the waiting latency and IAM's rate limit (`/_keyrotor/latency`
    /// in scripts/emulator.py; `{}` turns both off). Panics if refused.
    pub fn set_latency(&self, settings: serde_json::Value) {
        let body = self.http("POST", "/_keyrotor/latency", &settings.to_string());
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert!(answer.get("error").is_none(), "latency refused: {body}");
    }

    /// Injects error answers: `rule` is one rule object or `{"rules": [...]}`
    /// (see `Faults` in scripts/emulator.py; `{}` clears). Panics if the
    /// emulator refuses the rules.
    pub fn inject_faults(&self, rule: serde_json::Value) {
        let body = self.http("POST", "/_keyrotor/faults", &rule.to_string());
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert!(
            answer.get("injected").is_some(),
            "the emulator refused the fault rules {rule}: {body}"
        );
    }

    /// Replaces the emulator's fault rules with `faults`, checked in order
    /// (an empty slice clears them). Resets the counters.
    pub fn inject(&self, faults: &[Fault]) {
        let rules: Vec<serde_json::Value> = faults.iter().map(Fault::to_json).collect();
        self.inject_faults(serde_json::json!({ "rules": rules }));
    }

    fn fault_counts(&self) -> serde_json::Value {
        serde_json::from_str(&self.http("GET", "/_keyrotor/faults", "")).unwrap_or_default()
    }

    /// How many error answers have been injected so far, by all rules.
    pub fn faults_injected(&self) -> u64 {
        self.fault_counts()["injected"].as_u64().unwrap_or(0)
    }

    /// How many error answers each rule has injected, in the order given.
    pub fn faults_by_rule(&self) -> Vec<u64> {
        self.fault_counts()["by_rule"]
            .as_array()
            .map(|counts| counts.iter().filter_map(|n| n.as_u64()).collect())
            .unwrap_or_default()
    }

    /// The requests the emulator has served since the last reset, by
    /// `service:Action` (the SigV4 service name), and resets the counts
    /// when `reset`.
    pub fn calls(&self, reset: bool) -> std::collections::BTreeMap<String, u64> {
        let body = self.http(if reset { "POST" } else { "GET" }, "/_keyrotor/calls", "");
        serde_json::from_str(&body).unwrap_or_default()
    }

    /// Every email the emulator's SES has accepted: `{source, destinations, subject, body}`.
    pub fn sent_emails(&self) -> Vec<serde_json::Value> {
        self.backend_state()["ses"]["Message"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Verifies `address` as an SES sender (SES refuses unverified senders).
pub async fn verify_sender(config: &SdkConfig, address: &str) {
    aws_sdk_sesv2::Client::new(config)
        .create_email_identity()
        .email_identity(address)
        .send()
        .await
        .expect("create email identity");
}

/// Creates a queue subscribed to `topic` (raw delivery), optionally with a
/// filter policy; returns its URL.
pub async fn subscribe_queue(
    config: &SdkConfig,
    topic: &str,
    name: &str,
    filter_policy: Option<serde_json::Value>,
) -> String {
    let sqs = aws_sdk_sqs::Client::new(config);
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("url");
    let mut subscribe = aws_sdk_sns::Client::new(config)
        .subscribe()
        .topic_arn(topic)
        .protocol("sqs")
        .endpoint(format!("arn:aws:sqs:us-east-1:123456789012:{name}"))
        .attributes("RawMessageDelivery", "true");
    if let Some(policy) = filter_policy {
        subscribe = subscribe.attributes("FilterPolicy", policy.to_string());
    }
    subscribe.send().await.expect("subscribe");
    url
}

/// A policy document as IAM returns it (URL-encoded, form style: `+` is a
/// space), parsed.
///
/// The emulator's CloudFormation stores a role's inline policies as a
/// Python `repr` of the document (`{'Version': ...}`); such a document,
/// whose strings hold no quotes of either kind, is read by swapping the
/// quotes.
pub fn policy_document(encoded: &str) -> serde_json::Value {
    let text = percent_encoding::percent_decode_str(&encoded.replace('+', " "))
        .decode_utf8()
        .expect("a UTF-8 policy document")
        .into_owned();
    let text = if text.starts_with("{'") && !text.contains('"') {
        text.replace('\'', "\"")
    } else {
        text
    };
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// One fault rule for [`Emulator::inject`]: requests to `service` (the
/// SigV4 signing name: `iam`, `sts`, `dynamodb`, `sns`, `ses` for SESv2,
/// `sqs`, `secretsmanager`...), optionally only one `action`, answer `code`
/// in the service's own protocol instead of reaching moto.
///
/// Without [`Fault::rate`] or [`Fault::count`] the rule fires once, on the
/// first matching request.
///
/// ```ignore
/// emu.inject(&[Fault::new("dynamodb", "TransactionConflict")
///     .action("TransactWriteItems")
///     .rate(0.3)
///     .seed(7)]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    service: String,
    code: String,
    action: Option<String>,
    status: Option<u16>,
    count: Option<u64>,
    every: Option<u64>,
    rate: Option<f64>,
    seed: Option<u64>,
    after: bool,
    item: Option<usize>,
}

impl Fault {
    /// A rule answering `code` to requests signed for `service`. Codes with
    /// a default status of 500 (503 for `ServiceUnavailable`):
    /// `InternalServerError`, `InternalError`, `InternalFailure`; 400 for
    /// the others. On DynamoDB, `TransactionConflict` answers a `Transact*`
    /// action with `TransactionCanceledException` and cancellation reasons,
    /// and other actions with `TransactionConflictException`.
    pub fn new(service: &str, code: &str) -> Fault {
        Fault {
            service: service.to_string(),
            code: code.to_string(),
            action: None,
            status: None,
            count: None,
            every: None,
            rate: None,
            seed: None,
            after: false,
            item: None,
        }
    }

    /// Only requests for this action (`UpdateItem`, `Publish`, `SendEmail`,
    /// `CreateAccessKey`...); without it, every action of the service.
    pub fn action(mut self, action: &str) -> Fault {
        self.action = Some(action.to_string());
        self
    }

    /// The HTTP status, instead of the code's default.
    pub fn status(mut self, status: u16) -> Fault {
        self.status = Some(status);
        self
    }

    /// At most `count` answers from this rule (with [`Fault::rate`], a
    /// cap; otherwise the number to send, default 1).
    pub fn count(mut self, count: u64) -> Fault {
        self.count = Some(count);
        self
    }

    /// Every `every`-th matching request fires (deterministic; not with
    /// [`Fault::rate`]).
    pub fn every(mut self, every: u64) -> Fault {
        self.every = Some(every);
        self
    }

    /// Each matching request fires with probability `rate` (0..1), drawn
    /// from the rule's own generator seeded by [`Fault::seed`] (default 0),
    /// so one sequence of requests always gets the same faults.
    pub fn rate(mut self, rate: f64) -> Fault {
        self.rate = Some(rate);
        self
    }

    /// The seed of the rule's generator (with [`Fault::rate`]).
    pub fn seed(mut self, seed: u64) -> Fault {
        self.seed = Some(seed);
        self
    }

    /// The request reaches moto first and its answer is replaced by the
    /// error: a write applied whose answer was lost. Without it the error
    /// answers before moto sees the request (no side effect).
    pub fn after(mut self) -> Fault {
        self.after = true;
        self
    }

    /// For `TransactionConflict` on a `Transact*` action: the index of the
    /// item that conflicted (default 1, or 0 for a one-item transaction).
    pub fn item(mut self, item: usize) -> Fault {
        self.item = Some(item);
        self
    }

    /// The rule as the emulator's JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let mut rule = serde_json::json!({"service": self.service, "code": self.code});
        let fields = [
            ("action", self.action.as_ref().map(|a| serde_json::json!(a))),
            ("status", self.status.map(|v| serde_json::json!(v))),
            ("count", self.count.map(|v| serde_json::json!(v))),
            ("every", self.every.map(|v| serde_json::json!(v))),
            ("rate", self.rate.map(|v| serde_json::json!(v))),
            ("seed", self.seed.map(|v| serde_json::json!(v))),
            ("after", self.after.then_some(serde_json::json!(true))),
            ("item", self.item.map(|v| serde_json::json!(v))),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                rule[key] = value;
            }
        }
        rule
    }
}
