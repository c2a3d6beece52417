//! The Lambda zips `scripts/package-lambdas` writes, run as Lambda runs
//! them.
//!
//! The zips are deployed in the hub stack in the emulator's CloudFormation.
//! Each `bootstrap` is taken out of its zip, given the environment the
//! emulator's Lambda holds for its function (every `KEYROTOR_*` setting as
//! the stack resolved it, empty strings included), and started against a
//! local Lambda Runtime API. The producer gets the schedule's event and
//! enqueues the due user; the worker gets an SQS event built from the message
//! the producer sent, plus a malformed record, and rotates the key.
//!
//! Only two things differ from Lambda: `AWS_ENDPOINT_URL` points at the
//! emulator, and the credentials are the emulator's instead of the execution
//! role's (Lambda passes those in the same variables).
//!
//! `scripts/test` runs `scripts/package-lambdas` first; the zips are read from
//! `dist/lambda/x86_64`, or from `$KEYROTOR_LAMBDA_DIR`.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use keyrotor_e2e::hub::{deploy_hub, function_configuration, output, HubCode};
use keyrotor_e2e::runtime_api::{Answer, RuntimeApi};
use keyrotor_e2e::world::Org;
use keyrotor_e2e::{project_root, today, Emulator};
use serde_json::{json, Value};

/// Amazon Linux 2023's glibc: no binary may need a newer symbol version.
const AL2023_GLIBC: (u32, u32) = (2, 34);
/// `e_machine` of an x86-64 ELF.
const EM_X86_64: u16 = 62;
/// How long one invocation may take here (cold start included).
const INVOCATION: Duration = Duration::from_secs(120);

fn zips_dir() -> PathBuf {
    std::env::var_os("KEYROTOR_LAMBDA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("dist/lambda/x86_64"))
}

fn zip_path(name: &str) -> PathBuf {
    let path = zips_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/package-lambdas (scripts/test does)",
        path.display()
    );
    path
}

fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("lambda-package-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The highest `GLIBC_x.y` symbol version named in a binary.
fn highest_glibc(binary: &[u8]) -> Option<(u32, u32)> {
    let needle = b"GLIBC_2.";
    binary
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .filter_map(|(i, _)| {
            let digits: Vec<u8> = binary[i + needle.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            std::str::from_utf8(&digits).ok()?.parse().ok()
        })
        .max()
        .map(|minor| (2, minor))
}

/// Checks that `zip` holds exactly one executable `bootstrap` for x86-64
/// Amazon Linux 2023, and writes it into `dir` with its mode.
fn unpack_bootstrap(zip: &Path, dir: &Path) -> PathBuf {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap())
        .unwrap_or_else(|e| panic!("{}: not a zip: {e}", zip.display()));
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.expect("a readable entry name").into_owned())
        .collect();
    assert_eq!(names, ["bootstrap"], "{}: entries", zip.display());
    let mut entry = archive.by_name("bootstrap").unwrap();
    let mode = entry.unix_mode().unwrap_or(0);
    assert_eq!(
        mode & 0o111,
        0o111,
        "{}: bootstrap must be executable by all (mode {mode:o}); Lambda runs it as another user",
        zip.display()
    );
    let mut binary = Vec::new();
    entry.read_to_end(&mut binary).unwrap();
    assert_eq!(&binary[..4], b"\x7fELF", "{}: not an ELF", zip.display());
    assert_eq!(
        u16::from_le_bytes([binary[18], binary[19]]),
        EM_X86_64,
        "{}: not built for x86_64",
        zip.display()
    );
    let glibc = highest_glibc(&binary).expect("a glibc binary names GLIBC_2.x versions");
    assert!(
        glibc <= AL2023_GLIBC,
        "{}: needs GLIBC_{}.{}, but provided.al2023 has {}.{}",
        zip.display(),
        glibc.0,
        glibc.1,
        AL2023_GLIBC.0,
        AL2023_GLIBC.1
    );
    // One task root per function: producer.zip -> <dir>/producer/bootstrap.
    let task_root = dir.join(zip.file_stem().expect("a zip file name"));
    std::fs::create_dir_all(&task_root).unwrap();
    let bootstrap = task_root.join("bootstrap");
    std::fs::write(&bootstrap, &binary).unwrap();
    std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(mode & 0o7777)).unwrap();
    bootstrap
}

/// A function's environment value as the process sees it. Lambda's values
/// are strings; moto hands a `Number` parameter back as a JSON number, which
/// Lambda would have turned into its decimal text.
fn env_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("an environment value Lambda cannot hold: {other}"),
    }
}

/// A packaged function, started as Lambda starts it.
struct Running {
    child: tokio::process::Child,
    stderr: PathBuf,
}

impl Running {
    /// Starts `bootstrap` with the environment Lambda gives the function
    /// `config` describes, polling `runtime_api`.
    fn start(
        bootstrap: &Path,
        config: &Value,
        runtime_api: &RuntimeApi,
        emu: &Emulator,
    ) -> Running {
        let name = config["FunctionName"].as_str().expect("FunctionName");
        let variables = config["Environment"]["Variables"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} has no environment: {config}"));
        let task_root = bootstrap.parent().unwrap();
        let stderr = task_root.join("stderr.log");
        let mut cmd = tokio::process::Command::new(bootstrap);
        cmd.env_clear()
            .current_dir(task_root)
            .envs(variables.iter().map(|(k, v)| (k.clone(), env_value(v))))
            // What Lambda itself sets for a provided.al2023 function.
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                config["MemorySize"].to_string(),
            )
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/06/01/[$LATEST]local")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_SESSION_TOKEN", "testing")
            .env(
                "_HANDLER",
                config["Handler"].as_str().unwrap_or("bootstrap"),
            )
            .env("LAMBDA_TASK_ROOT", task_root)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("TZ", ":UTC")
            // The one local difference.
            .env("AWS_ENDPOINT_URL", &emu.endpoint)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bootstrap.display()));
        Running { child, stderr }
    }

    /// Stops the function and returns what it logged.
    async fn stop(mut self) -> String {
        let _ = self.child.kill().await;
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// Waits for the function's answer to its one invocation.
async fn response(api: &mut RuntimeApi, mut function: Running, what: &str) -> (Value, String) {
    let answer = tokio::select! {
        answer = api.next_answer(INVOCATION) => Ok(answer),
        exit = function.child.wait() => Err(exit),
    };
    let logs = function.stop().await;
    match answer {
        Ok(Some(Answer::Response { body, .. })) => (body, logs),
        Ok(other) => panic!("{what} answered {other:?}; its log:\n{logs}"),
        Err(exit) => panic!("{what} exited ({exit:?}) without answering; its log:\n{logs}"),
    }
}

/// The checks every packaged function's log must pass: JSON lines (as
/// CloudWatch Logs Insights reads them) and no secret.
fn assert_clean_json_log(logs: &str, what: &str, secret: &str) {
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "{what} logged nothing");
    for line in &lines {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{what} logged a line that is not JSON ({e}): {line}"));
        assert!(parsed["level"].is_string(), "{what}: no level in {line}");
    }
    assert!(!logs.contains(secret), "{what} logged the new secret key");
    assert!(
        !logs.contains("SecretAccessKey"),
        "{what} logged secret material:\n{logs}"
    );
}

/// The SQS event the event source mapping would deliver for `message`.
fn sqs_record(message: &aws_sdk_sqs::types::Message, queue_arn: &str) -> Value {
    let attributes: HashMap<&str, &str> = message
        .attributes()
        .map(|a| a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
        .unwrap_or_default();
    json!({
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body(),
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": message.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    })
}

#[test]
fn both_zips_hold_one_bootstrap_for_provided_al2023() {
    let dir = scratch_dir();
    for name in ["producer.zip", "worker.zip"] {
        let bootstrap = unpack_bootstrap(&zip_path(name), &dir);
        let mode = std::fs::metadata(&bootstrap).unwrap().permissions().mode();
        assert_ne!(mode & 0o100, 0, "{name}: unpacked bootstrap is executable");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_glibc_check_reads_the_highest_version() {
    assert_eq!(
        highest_glibc(b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0"),
        Some((2, 34))
    );
    assert_eq!(highest_glibc(b"\0GLIBC_2.39\0"), Some((2, 39)));
    assert_eq!(highest_glibc(b"no versions"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_packaged_functions_produce_and_rotate_as_lambda_runs_them() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("packaged").await;
    let user = acct.user("app").await;
    let old = user.used_key_aged(95).await;
    emu.set_clock(today());

    let (producer_zip, worker_zip) = (zip_path("producer.zip"), zip_path("worker.zip"));
    let outputs = deploy_hub(
        &emu,
        &HubCode::Zips {
            producer: producer_zip.clone(),
            worker: worker_zip.clone(),
        },
    );
    let queue = output(&outputs, "QueueUrl").to_string();
    let queue_arn = output(&outputs, "QueueArn").to_string();
    let producer = function_configuration(&emu, output(&outputs, "ProducerFunctionName"));
    let worker = function_configuration(&emu, output(&outputs, "WorkerFunctionName"));
    for (config, zip) in [(&producer, &producer_zip), (&worker, &worker_zip)] {
        assert_eq!(config["Runtime"], "provided.al2023", "{config}");
        assert_eq!(config["Handler"], "bootstrap", "{config}");
        assert_eq!(config["Architectures"], json!(["x86_64"]), "{config}");
        assert_eq!(
            config["CodeSize"],
            std::fs::metadata(zip).unwrap().len(),
            "the stack deployed {}",
            zip.display()
        );
    }
    let dir = scratch_dir();

    // The producer, invoked as the schedule invokes it (its input plus an
    // as-of date, so the emulator's clock and the policy agree).
    let bootstrap = unpack_bootstrap(&producer_zip, &dir);
    let mut api = RuntimeApi::start(
        "arn:aws:lambda:us-east-1:123456789012:function:keyrotor-producer",
        vec![json!({ "as_of": today().to_rfc3339() })],
    )
    .await;
    let running = Running::start(&bootstrap, &producer, &api, &emu);
    let (summary, producer_logs) = response(&mut api, running, "the producer").await;
    assert_eq!(summary["enqueued"], 1, "{summary}\n{producer_logs}");
    assert_eq!(summary["failed_accounts"], json!([]), "{summary}");

    // The message it sent, as the event source mapping would pass it, and a
    // malformed record in another group.
    let sqs = aws_sdk_sqs::Client::new(&org.hub);
    let received = sqs
        .receive_message()
        .queue_url(&queue)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let messages = received.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let good = sqs_record(&messages[0], &queue_arn);
    assert!(good["attributes"]["MessageGroupId"].is_string(), "{good}");
    let mut bad = good.clone();
    bad["messageId"] = json!("malformed-1");
    bad["body"] = json!("{not json");
    bad["attributes"]["MessageGroupId"] = json!("another-group");
    let event = json!({ "Records": [good, bad] });

    let bootstrap = unpack_bootstrap(&worker_zip, &dir);
    let mut api = RuntimeApi::start(
        "arn:aws:lambda:us-east-1:123456789012:function:keyrotor-worker",
        vec![event],
    )
    .await;
    let running = Running::start(&bootstrap, &worker, &api, &emu);
    let (answer, worker_logs) = response(&mut api, running, "the worker").await;
    assert_eq!(
        answer,
        json!({ "batchItemFailures": [{ "itemIdentifier": "malformed-1" }] }),
        "only the malformed record fails; the worker logged:\n{worker_logs}"
    );

    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 2, "a new key was created: {keys:?}");
    assert_eq!(keys[0].id, old.id);
    let secret = acct
        .secret_json(&format!("Account_{}_User_app_AccessKey", acct.id))
        .await;
    assert_eq!(secret["AccessKeyId"], keys[1].id.as_str(), "{secret}");
    let secret_key = secret["SecretAccessKey"].as_str().expect("a secret key");

    assert_clean_json_log(&producer_logs, "the producer", secret_key);
    assert_clean_json_log(&worker_logs, "the worker", secret_key);
    assert!(
        !answer.to_string().contains(secret_key) && !summary.to_string().contains(secret_key),
        "a response carried the secret"
    );
    std::fs::remove_dir_all(dir).ok();
}
