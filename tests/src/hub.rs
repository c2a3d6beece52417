//! The hub stack (`infra/hub.yaml`) created in the emulator's CloudFormation,
//! and what the emulator's Lambda service says about the functions it made.
//!
//! The tests crate has no CloudFormation, S3 or Lambda SDK (three more heavy
//! crates for a few calls), so these run boto3 from the emulator's
//! virtualenv, with the same endpoint and credentials as the SDK clients.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{project_root, Emulator};

/// The stack's name.
pub const STACK: &str = "keyrotor-hub";

/// The management (hub) account the emulator's Organization has.
pub const MANAGEMENT: &str = "123456789012";

/// What the functions' code is.
pub enum HubCode {
    /// Two tiny zips whose `bootstrap` is a shell script: enough for a stack
    /// that is never invoked.
    Placeholders,
    /// The zips `scripts/package-lambdas` wrote.
    Zips {
        /// `producer.zip`.
        producer: PathBuf,
        /// `worker.zip`.
        worker: PathBuf,
    },
}

/// Creates a stack, waits for CREATE_COMPLETE and prints the outputs as one
/// JSON object (shared by the scripts below). `create_stack(cfn, stack,
/// body, params)`; `wait_for(cfn, stack, done)` waits for any operation.
const CREATE_STACK: &str = r##"
import json, sys, time

def wait_for(cfn, stack, done):
    deadline = time.time() + 120
    while True:
        s = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        status = s["StackStatus"]
        if status == done:
            return s
        if not status.endswith("IN_PROGRESS") or time.time() > deadline:
            print("stack %s: %s (%s)" % (stack, status, s.get("StackStatusReason")), file=sys.stderr)
            for e in cfn.describe_stack_events(StackName=stack)["StackEvents"]:
                print("  %s %s %s %s" % (e.get("LogicalResourceId"), e.get("ResourceType"),
                      e.get("ResourceStatus"), e.get("ResourceStatusReason")), file=sys.stderr)
            sys.exit(1)
        time.sleep(0.5)

def create_stack(cfn, stack, body, params):
    cfn.create_stack(
        StackName=stack,
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    s = wait_for(cfn, stack, "CREATE_COMPLETE")
    print(json.dumps({o["OutputKey"]: o["OutputValue"] for o in s.get("Outputs", [])}))
"##;

/// Uploads the code and creates the hub stack (see [`CREATE_STACK`]). argv:
/// template, stack, then either nothing (placeholders) or the producer and
/// worker zip paths. The Organization must exist: its id is a parameter.
const DEPLOY: &str = r##"
import io, zipfile
import boto3

template_path, stack = sys.argv[1], sys.argv[2]
zips = sys.argv[3:5]
with open(template_path) as f:
    body = f.read()

def placeholder(name):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        z.writestr(info, "#!/bin/sh\necho %s\n" % name)
    return buf.getvalue()

def code(i, name):
    if zips:
        with open(zips[i], "rb") as f:
            return f.read()
    return placeholder(name)

bucket = "keyrotor-code"
s3 = boto3.client("s3")
s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key="keyrotor/producer.zip", Body=code(0, "producer"))
s3.put_object(Bucket=bucket, Key="keyrotor/worker.zip", Body=code(1, "worker"))

params = {
    "CodeS3Bucket": bucket,
    "ProducerCodeS3Key": "keyrotor/producer.zip",
    "WorkerCodeS3Key": "keyrotor/worker.zip",
    "EventSourceMappingEnabled": "false",
    "Mode": "enforce",
    "ExcludeAccounts": "123456789012",
    "OrganizationId": boto3.client("organizations").describe_organization()["Organization"]["Id"],
    "OperatorRoleArns": "arn:aws:iam::123456789012:role/keyrotor-operator",
}
create_stack(boto3.client("cloudformation"), stack, body, params)
"##;

/// Creates `infra/member-role.yaml` as a stack in a member account, as the
/// StackSet would, with the session of its `OrganizationAccountAccessRole`.
/// argv: template, account id, then `Key=Value` parameters (the hub account
/// and the Organization's id are filled in).
const DEPLOY_MEMBER: &str = r##"
import boto3

template_path, account = sys.argv[1], sys.argv[2]
with open(template_path) as f:
    body = f.read()
creds = boto3.client("sts").assume_role(
    RoleArn="arn:aws:iam::%s:role/OrganizationAccountAccessRole" % account,
    RoleSessionName="stackset",
)["Credentials"]
session = boto3.Session(
    aws_access_key_id=creds["AccessKeyId"],
    aws_secret_access_key=creds["SecretAccessKey"],
    aws_session_token=creds["SessionToken"],
)
params = {
    "HubAccountId": "123456789012",
    "OrganizationId": boto3.client("organizations").describe_organization()["Organization"]["Id"],
}
params.update(dict(p.split("=", 1) for p in sys.argv[3:]))
create_stack(session.client("cloudformation"), "keyrotor-member", body, params)
"##;

/// Prints one function's configuration (`GetFunctionConfiguration`).
const FUNCTION_CONFIGURATION: &str = r##"
import json, sys
import boto3
config = boto3.client("lambda").get_function_configuration(FunctionName=sys.argv[1])
config.pop("ResponseMetadata", None)
print(json.dumps(config, default=str))
"##;

/// Runs a boto3 script against the emulator and parses the JSON it prints.
fn boto3(emu: &Emulator, what: &str, script: &str, args: &[&Path]) -> Value {
    let root = project_root();
    let out = Command::new(root.join(".venv/bin/python"))
        .arg("-c")
        .arg(format!("{CREATE_STACK}\n{script}"))
        .args(args)
        .env("AWS_ENDPOINT_URL", &emu.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap_or_else(|e| panic!("run the script that does {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {stdout}"))
}

/// Updates a stack's parameters in place, as an operator's `cloudformation
/// deploy --parameter-overrides` does: the same template, every other
/// parameter at its previous value. argv: template path, stack, `Key=Value`...
const UPDATE_PARAMETERS: &str = r##"
import boto3

template_path, stack = sys.argv[1], sys.argv[2]
overrides = dict(arg.split("=", 1) for arg in sys.argv[3:])
with open(template_path) as f:
    body = f.read()
cfn = boto3.client("cloudformation")
before = cfn.describe_stacks(StackName=stack)["Stacks"][0]
# The previous values spelled out: moto fails on UsePreviousValue.
params = [{"ParameterKey": p["ParameterKey"], "ParameterValue": p["ParameterValue"]}
          for p in before.get("Parameters", []) if p["ParameterKey"] not in overrides]
params += [{"ParameterKey": k, "ParameterValue": v} for k, v in overrides.items()]
cfn.update_stack(StackName=stack, TemplateBody=body, Parameters=params,
                 Capabilities=["CAPABILITY_NAMED_IAM"])
wait_for(cfn, stack, "UPDATE_COMPLETE")
print("{}")
"##;

/// Sets `params` (`Key=Value`) on the hub stack [`deploy_hub`] created,
/// keeping every other parameter.
pub fn update_hub(emu: &Emulator, params: &[&str]) {
    let template = project_root().join("infra/hub.yaml");
    let mut args = vec![template.as_path(), Path::new(STACK)];
    args.extend(params.iter().map(Path::new));
    boto3(emu, "updating the hub stack", UPDATE_PARAMETERS, &args);
}

/// Creates the hub stack (event source mapping disabled, mode enforce, the
/// management account excluded, one operator role) and returns its outputs.
pub fn deploy_hub(emu: &Emulator, code: &HubCode) -> Value {
    let template = project_root().join("infra/hub.yaml");
    let mut args = vec![template.as_path(), Path::new(STACK)];
    if let HubCode::Zips { producer, worker } = code {
        args.extend([producer.as_path(), worker.as_path()]);
    }
    boto3(emu, "creating the hub stack", DEPLOY, &args)
}

/// Creates the member stack (`infra/member-role.yaml`, named
/// `keyrotor-member`) in `account_id`, trusting this hub, with `params`
/// (`Key=Value`) on top, and returns its outputs.
pub fn deploy_member_stack(emu: &Emulator, account_id: &str, params: &[&str]) -> Value {
    let template = project_root().join("infra/member-role.yaml");
    let mut args = vec![template.as_path(), Path::new(account_id)];
    args.extend(params.iter().map(Path::new));
    boto3(emu, "creating the member stack", DEPLOY_MEMBER, &args)
}

/// A function's configuration as the emulator's Lambda holds it (its
/// environment as CloudFormation resolved it, runtime, handler, ...).
pub fn function_configuration(emu: &Emulator, name: &str) -> Value {
    boto3(
        emu,
        "GetFunctionConfiguration",
        FUNCTION_CONFIGURATION,
        &[Path::new(name)],
    )
}

/// One named output of the stack, which must be there and not empty.
pub fn output<'v>(outputs: &'v Value, name: &str) -> &'v str {
    outputs[name]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("the stack has no {name} output: {outputs}"))
}
