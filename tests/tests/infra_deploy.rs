//! The hub stack (`infra/hub.yaml`) deployed in the emulator's
//! CloudFormation, then used by `keyrotor produce` and `keyrotor work`
//! (issue #5, "what must be shown").
//!
//! The event source mapping is disabled (`EventSourceMappingEnabled=false`):
//! the emulator would otherwise try to run the worker Lambda itself. The
//! tests crate has no CloudFormation or S3 SDK, so the stack is created with
//! boto3 from the emulator's virtualenv.

use std::process::Command;

use keyrotor_e2e::world::Org;
use keyrotor_e2e::{project_root, run, today, Emulator};
use serde_json::Value;

const MANAGEMENT: &str = "123456789012";
const STACK: &str = "keyrotor-hub";

/// Uploads two placeholder zips, creates the hub stack, waits for
/// CREATE_COMPLETE and prints the outputs as one JSON object.
const DEPLOY: &str = r##"
import io, json, sys, time, zipfile
import boto3

template_path, stack = sys.argv[1], sys.argv[2]
with open(template_path) as f:
    body = f.read()

def code_zip(name):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        z.writestr(info, "#!/bin/sh\necho %s\n" % name)
    return buf.getvalue()

bucket = "keyrotor-code"
s3 = boto3.client("s3")
s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key="keyrotor/producer.zip", Body=code_zip("producer"))
s3.put_object(Bucket=bucket, Key="keyrotor/worker.zip", Body=code_zip("worker"))

params = {
    "CodeS3Bucket": bucket,
    "ProducerCodeS3Key": "keyrotor/producer.zip",
    "WorkerCodeS3Key": "keyrotor/worker.zip",
    "EventSourceMappingEnabled": "false",
    "Mode": "enforce",
    "ExcludeAccounts": "123456789012",
}
cfn = boto3.client("cloudformation")
cfn.create_stack(
    StackName=stack,
    TemplateBody=body,
    Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
    Capabilities=["CAPABILITY_NAMED_IAM"],
)
deadline = time.time() + 120
while True:
    s = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    status = s["StackStatus"]
    if status == "CREATE_COMPLETE":
        break
    if not status.endswith("IN_PROGRESS") or time.time() > deadline:
        print("stack %s: %s (%s)" % (stack, status, s.get("StackStatusReason")), file=sys.stderr)
        for e in cfn.describe_stack_events(StackName=stack)["StackEvents"]:
            print("  %s %s %s %s" % (e.get("LogicalResourceId"), e.get("ResourceType"),
                  e.get("ResourceStatus"), e.get("ResourceStatusReason")), file=sys.stderr)
        sys.exit(1)
    time.sleep(0.5)
print(json.dumps({o["OutputKey"]: o["OutputValue"] for o in s.get("Outputs", [])}))
"##;

/// Creates the hub stack and returns its outputs.
fn deploy_hub(emu: &Emulator) -> Value {
    let root = project_root();
    let out = Command::new(root.join(".venv/bin/python"))
        .arg("-c")
        .arg(DEPLOY)
        .arg(root.join("infra/hub.yaml"))
        .arg(STACK)
        .env("AWS_ENDPOINT_URL", &emu.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run the deployment script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "creating the hub stack failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn output<'v>(outputs: &'v Value, name: &str) -> &'v str {
    outputs[name]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("the stack has no {name} output: {outputs}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_stack_deploys_and_keyrotor_rotates_through_it() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("deployed").await;
    let user = acct.user("app").await;
    let old = user.used_key_aged(95).await;
    emu.set_clock(today());

    let outputs = deploy_hub(&emu);
    let queue = output(&outputs, "QueueUrl").to_string();
    let table = output(&outputs, "TableName").to_string();
    let topic = output(&outputs, "TopicArn").to_string();
    output(&outputs, "DlqUrl");
    assert!(
        queue.ends_with(".fifo"),
        "the default queue type is FIFO: {queue}"
    );
    assert!(topic.starts_with("arn:aws:sns:"), "{topic}");

    let keyrotor = || {
        let mut cmd = emu.keyrotor(&table);
        cmd.env("KEYROTOR_QUEUE_URL", &queue)
            .env("KEYROTOR_TOPIC_ARN", &topic)
            .env("KEYROTOR_EXCLUDE_ACCOUNTS", MANAGEMENT)
            .env("KEYROTOR_MODE", "enforce");
        cmd
    };

    // The producer enqueues the due user on the stack's queue and records
    // its run in the stack's table (no `keyrotor init`).
    let as_of = today().to_rfc3339();
    let produced = run(
        keyrotor(),
        &["produce", "--as-of", &as_of, "--output", "json"],
    );
    assert_eq!(produced.code, 0, "{}\n{}", produced.stdout, produced.stderr);
    let summary: Value = serde_json::from_str(&produced.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", produced.stdout));
    assert_eq!(summary["enqueued"], 1, "{summary}");

    // The worker drains it and rotates the key.
    let worked = run(keyrotor(), &["work", "--until-idle", "3"]);
    assert_eq!(worked.code, 0, "{}\n{}", worked.stdout, worked.stderr);

    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 2, "a new key was created: {keys:?}");
    assert_eq!(keys[0].id, old.id);
    assert_ne!(keys[1].id, old.id);
    let secret = acct
        .secret_json(&format!("Account_{}_User_app_AccessKey", acct.id))
        .await;
    assert_eq!(secret["AccessKeyId"], keys[1].id.as_str(), "{secret}");
}
