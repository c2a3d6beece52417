//! The CloudFormation templates in `infra/`: they pass the pinned cfn-lint,
//! the member roles allow exactly the IAM and Secrets Manager actions the
//! code calls, and the least-privilege
//! boundaries hold: the producer's role only lists,
//! the worker's role attaches one managed policy and writes no inline
//! policy, and only the producer and operators may send work.
//!
//! None of these tests needs the emulator.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use keyrotor_e2e::project_root;

#[test]
fn every_template_passes_cfn_lint() {
    let root = project_root();
    let out = Command::new(root.join("scripts/cfn-lint"))
        .current_dir(&root)
        .output()
        .expect("run scripts/cfn-lint");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/cfn-lint failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    println!("{stdout}");
}

/// Actions the code needs without naming them in an operation string: one
/// SDK call is authorized as several IAM actions. Each comes with a piece of
/// source (in `shared/src/aws/secrets.rs`) that proves the reason still
/// holds, so the entry goes stale loudly when the code changes.
const IMPLIED: &[(&str, &str, &str)] = &[
    (
        "secretsmanager:TagResource",
        ".tags(Tag::builder()",
        "CreateSecret with Tags is also authorized as secretsmanager:TagResource \
         (the executor always tags new secrets with keyrotor:account and keyrotor:user)",
    ),
    (
        "secretsmanager:ReplicateSecretToRegions",
        ".add_replica_regions(",
        "CreateSecret with AddReplicaRegions (KEYROTOR_REPLICA_REGIONS) is also \
         authorized as secretsmanager:ReplicateSecretToRegions",
    ),
];

/// The services whose actions the member role grants.
const SERVICES: &[&str] = &["iam", "secretsmanager"];

#[test]
fn member_role_allows_exactly_the_actions_the_code_calls() {
    let root = project_root();

    // 1. What the two member roles allow (the worker's and the producer's
    //    reader). Not the managed policy keyrotor attaches to users: its
    //    actions are the users' own, and keyrotor never calls them.
    let template = member_template();
    let mut allowed = policy_actions(resource_block(&template, "MemberRole"));
    allowed.extend(policy_actions(resource_block(&template, "ReaderRole")));

    // 2. What the code calls: every SDK error is mapped with
    //    `AwsError::from_sdk("service:Operation", e)`, which names the call.
    let mut sources = Vec::new();
    for dir in ["shared/src", "producer/src", "worker/src", "cli/src"] {
        rust_files(&root.join(dir), &mut sources);
    }
    assert!(!sources.is_empty(), "no Rust sources found under {root:?}");
    let mut called = BTreeSet::new();
    let mut unnamed_calls = Vec::new();
    for path in &sources {
        let text = std::fs::read_to_string(path).expect("read a source file");
        let named = from_sdk_ops(&text);
        // Cross-check: in a file that uses only the IAM or only the Secrets
        // Manager SDK, every fluent SDK call must have its operation string
        // (otherwise the scan above would miss it).
        if let Some(service) = single_sdk_service(&text) {
            for op in sdk_calls(&text) {
                let action = format!("{service}:{op}");
                if !named.contains(&action) {
                    unnamed_calls.push(format!(
                        "{} calls {action} without from_sdk(\"{action}\", ..)",
                        rel(&root, path)
                    ));
                }
                called.insert(action);
            }
        }
        called.extend(named);
    }
    assert!(
        unnamed_calls.is_empty(),
        "SDK calls without an operation string:\n  {}",
        unnamed_calls.join("\n  ")
    );

    // 3. Plus what those calls imply.
    let secrets_rs = std::fs::read_to_string(root.join("shared/src/aws/secrets.rs"))
        .expect("read shared/src/aws/secrets.rs");
    let mut expected = called.clone();
    for (action, witness, why) in IMPLIED {
        assert!(
            secrets_rs.contains(witness),
            "{action} is listed as implied because {why}, but shared/src/aws/secrets.rs \
             no longer contains `{witness}`: update IMPLIED in tests/tests/infra.rs and \
             infra/member-role.yaml"
        );
        expected.insert(action.to_string());
    }

    let missing: Vec<_> = expected.difference(&allowed).collect();
    let extra: Vec<_> = allowed.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "infra/member-role.yaml does not match the code.\n\
         called by the code but not allowed by the role: {missing:?}\n\
         allowed by the role but never called by the code: {extra:?}\n\
         role allows: {allowed:?}\n\
         code calls:  {called:?}\n\
         implied:     {:?}",
        IMPLIED.iter().map(|(a, _, _)| *a).collect::<Vec<_>>()
    );
    // The scan found something real (a broken scan would find nothing on
    // both sides and pass).
    assert!(
        allowed.iter().filter(|a| a.starts_with("iam:")).count() >= 5
            && allowed.iter().any(|a| a.starts_with("secretsmanager:")),
        "implausibly few actions found: {allowed:?}"
    );
}

fn member_template() -> String {
    std::fs::read_to_string(project_root().join("infra/member-role.yaml"))
        .expect("read infra/member-role.yaml")
}

fn hub_template() -> String {
    std::fs::read_to_string(project_root().join("infra/hub.yaml")).expect("read infra/hub.yaml")
}

/// The text of `text` after the first `start`, up to the next `end`.
fn between<'t>(text: &'t str, start: &str, end: &str) -> &'t str {
    text.split(start)
        .nth(1)
        .and_then(|rest| rest.split(end).next())
        .unwrap_or_else(|| panic!("no `{start}` in {text}"))
}

/// The `iam:` operations named in `from_sdk(..)` by the sources under `dir`.
fn iam_calls_under(dir: &str) -> BTreeSet<String> {
    let mut sources = Vec::new();
    rust_files(&project_root().join(dir), &mut sources);
    assert!(!sources.is_empty(), "no Rust sources under {dir}");
    sources
        .iter()
        .flat_map(|p| from_sdk_ops(&std::fs::read_to_string(p).expect("read a source file")))
        .filter(|op| op.starts_with("iam:"))
        .collect()
}

#[test]
fn the_reader_role_allows_exactly_what_the_producer_calls() {
    let template = member_template();
    let reader = policy_actions(resource_block(&template, "ReaderRole"));
    let producer = iam_calls_under("producer/src");
    assert_eq!(
        reader, producer,
        "the producer's read-only member role (ReaderRole) must allow exactly the IAM \
         calls of producer/src"
    );
    assert!(
        producer.contains("iam:ListUsers"),
        "implausible producer calls: {producer:?}"
    );
    // Trusted by the producer's role alone.
    let block = resource_block(&template, "ReaderRole");
    assert!(
        block.contains("role/${HubProducerRoleName}") && !block.contains("HubWorkerRoleName"),
        "{block}"
    );
}

#[test]
fn only_the_worker_role_writes_keys_and_it_attaches_one_policy() {
    let template = member_template();
    let member = resource_block(&template, "MemberRole");
    let actions = policy_actions(member);
    assert!(
        !actions.contains("iam:PutUserPolicy"),
        "the worker's role may not write inline policies: {actions:?}"
    );
    assert!(actions.contains("iam:AttachUserPolicy"), "{actions:?}");
    // The attachable policy is the one the code derives, by the same name.
    let documents =
        std::fs::read_to_string(project_root().join("shared/src/executor/documents.rs"))
            .expect("read documents.rs");
    let name = between(
        &documents,
        "pub const READ_OWN_SECRET_POLICY: &str = \"",
        "\"",
    );
    let condition = format!(
        "iam:PolicyARN: !Sub \"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:policy/{name}\""
    );
    assert!(
        member.contains(&condition),
        "no `{condition}` in MemberRole"
    );
    let policy = resource_block(&template, "ReadOwnSecretPolicy");
    assert!(
        policy.contains(&format!("ManagedPolicyName: {name}")),
        "{policy}"
    );
    assert_eq!(
        policy_actions(policy).into_iter().collect::<Vec<_>>(),
        [
            "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue"
        ]
    );
    for tag in [
        "keyrotor:user: \"${aws:username}\"",
        "keyrotor:account: \"${aws:PrincipalAccount}\"",
    ] {
        assert!(policy.contains(tag), "no {tag} condition: {policy}");
    }
    // The executor tags every secret with the keys the conditions read.
    let steps = std::fs::read_to_string(project_root().join("shared/src/executor/steps.rs"))
        .expect("read steps.rs");
    for key in ["\"keyrotor:account\"", "\"keyrotor:user\""] {
        assert!(
            steps.contains(key),
            "steps.rs no longer tags secrets with {key}"
        );
    }
    // No other role of the member stack writes keys.
    let reader = policy_actions(resource_block(&template, "ReaderRole"));
    assert!(
        reader
            .iter()
            .all(|a| a.starts_with("iam:List") || a.starts_with("iam:Get")),
        "{reader:?}"
    );
    // Exempt users' keys are denied by IAM itself.
    let deny = between(member, "- Sid: NeverWriteKeysOfExemptUsers", "- Sid:");
    for needle in [
        "Effect: Deny",
        "iam:CreateAccessKey",
        "iam:UpdateAccessKey",
        "iam:DeleteAccessKey",
        "StringEqualsIgnoreCase",
        "iam:ResourceTag/keyrotor:exempt: \"true\"",
    ] {
        assert!(deny.contains(needle), "no `{needle}` in: {deny}");
    }
}

#[test]
fn only_the_producer_and_operators_may_send_work() {
    let hub = hub_template();
    let policy = resource_block(&hub, "WorkQueuePolicy");
    for needle in [
        "Type: AWS::SQS::QueuePolicy",
        "Queues: [!Ref WorkQueue]",
        "Effect: Deny",
        "Principal: \"*\"",
        "Action: sqs:SendMessage",
        "ArnNotLike:",
        "aws:PrincipalArn:",
        "role/${ProducerRoleName},${Operators}",
        "- - !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${ProducerRoleName}\"",
        "!Ref OperatorRoleArns",
    ] {
        assert!(
            policy.contains(needle),
            "no `{needle}` in WorkQueuePolicy:\n{policy}"
        );
    }
    // OrganizationId is required in both stacks that take it.
    for (file, text) in [
        ("hub.yaml", hub.as_str()),
        ("member-role.yaml", &member_template()),
    ] {
        let param = resource_block(text, "OrganizationId");
        assert!(
            param.contains("AllowedPattern: \"^o-[a-z0-9]{10,32}$\"")
                && !param.contains("Default:"),
            "{file}: OrganizationId must be required: {param}"
        );
    }
}

/// The lines of the two-space-indented mapping entry `name:` (a resource,
/// or a parameter), up to the next line indented two spaces or less.
fn resource_block<'t>(template: &'t str, name: &str) -> &'t str {
    let head = format!("\n  {name}:\n");
    let start = template
        .find(&head)
        .unwrap_or_else(|| panic!("no `{name}:` entry in the template"))
        + 1;
    let body = start + head.len() - 1;
    let mut end = template.len();
    let mut at = body;
    for line in template[body..].split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if !line.trim().is_empty() && indent <= 2 {
            end = at;
            break;
        }
        at += line.len();
    }
    &template[start..end]
}

/// `iam:Xxx` and `secretsmanager:Xxx` tokens in a YAML template, outside
/// comments. ARNs (`:iam::`, `:secretsmanager:*:`) do not match, since an
/// action name starts with a letter; nor do condition keys.
fn policy_actions(template: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in template.lines() {
        let line = strip_yaml_comment(line);
        for service in SERVICES {
            let needle = format!("{service}:");
            let mut from = 0;
            while let Some(i) = line[from..].find(&needle) {
                let start = from + i;
                from = start + needle.len();
                let before = line[..start].chars().next_back();
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let name: String = line[from..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                // A condition key (`iam:PolicyARN:`, `iam:ResourceTag/k:`)
                // is a YAML key or has a tag suffix; an action is neither.
                let next = line[from + name.len()..].chars().next();
                let condition_key = matches!(next, Some(':') | Some('/'));
                if name.starts_with(|c: char| c.is_ascii_uppercase()) && !condition_key {
                    out.insert(format!("{service}:{name}"));
                }
            }
        }
    }
    out
}

/// A YAML line without its comment (`#` at the start or after a blank,
/// outside quotes; good enough for these templates).
fn strip_yaml_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return &line[..i],
            None => {}
        }
        prev = c;
    }
    line
}

/// The `"iam:Op"` / `"secretsmanager:Op"` first arguments of `from_sdk(`.
fn from_sdk_ops(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("from_sdk(") {
        let rest = text[i + "from_sdk(".len()..].trim_start();
        let Some(rest) = rest.strip_prefix('"') else {
            continue;
        };
        let Some(end) = rest.find('"') else { continue };
        let op = &rest[..end];
        if SERVICES
            .iter()
            .any(|s| op.strip_prefix(s).is_some_and(|r| r.starts_with(':')))
        {
            out.insert(op.to_string());
        }
    }
    out
}

/// `iam` or `secretsmanager` when the file uses that SDK crate and no other
/// `aws_sdk_*` crate.
fn single_sdk_service(text: &str) -> Option<&'static str> {
    let mut crates = BTreeSet::new();
    for (i, _) in text.match_indices("aws_sdk_") {
        let name: String = text[i + "aws_sdk_".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        crates.insert(name);
    }
    match crates.into_iter().collect::<Vec<_>>().as_slice() {
        [only] if only == "iam" => Some("iam"),
        [only] if only == "secretsmanager" => Some("secretsmanager"),
        _ => None,
    }
}

/// Fluent SDK calls: `client.snake_op()` or `iam.snake_op()` followed by a
/// builder method (`.user_name(..)`, `.send()`, `.into_paginator()`), as
/// `CamelOp`. A port method (`iam.list_user_names().await`) is not one.
fn sdk_calls(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for receiver in ["client", "iam"] {
        for (i, _) in text.match_indices(receiver) {
            let before = text[..i].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let rest = text[i + receiver.len()..].trim_start();
            let Some(rest) = rest.strip_prefix('.') else {
                continue;
            };
            let rest = rest.trim_start();
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if name.is_empty() {
                continue;
            }
            let Some(after) = rest[name.len()..].strip_prefix("()") else {
                continue;
            };
            let Some(next) = after.trim_start().strip_prefix('.') else {
                continue;
            };
            let next = next.trim_start();
            let is_method = next
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .is_some_and(|end| end > 0 && next[end..].starts_with('('));
            if is_method {
                out.insert(camel(&name));
            }
        }
    }
    out
}

fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut cs = w.chars();
            match cs.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + cs.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn the_scanners_read_what_they_should() {
    let yaml = "  # iam:CommentedOut\n  Action: iam:ListUsers # iam:AlsoComment\n  \
                - secretsmanager:DescribeSecret\n  Resource: !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:user/*\"\n  \
                Resource: arn:aws:secretsmanager:*:1:secret:Account_*\n  \
                iam:PolicyARN: !Sub \"arn\"\n  iam:ResourceTag/keyrotor:exempt: \"true\"\n  \
                secretsmanager:ResourceTag/keyrotor:user: x\n";
    assert_eq!(
        policy_actions(yaml).into_iter().collect::<Vec<_>>(),
        ["iam:ListUsers", "secretsmanager:DescribeSecret"]
    );
    let rust = "let out = self\n    .client\n    .get_access_key_last_used()\n    .access_key_id(&k)\n    \
                .send()\n    .await\n    .map_err(|e| AwsError::from_sdk(\"iam:GetAccessKeyLastUsed\", e))?;\n\
                let names = iam.list_user_names().await?;\n\
                let x = AwsError::from_sdk(\"sqs:SendMessage\", e);\n";
    assert_eq!(
        sdk_calls(rust).into_iter().collect::<Vec<_>>(),
        ["GetAccessKeyLastUsed"]
    );
    assert_eq!(
        from_sdk_ops(rust).into_iter().collect::<Vec<_>>(),
        ["iam:GetAccessKeyLastUsed"]
    );
    assert_eq!(
        single_sdk_service("use aws_sdk_iam::types::StatusType;"),
        Some("iam")
    );
    assert_eq!(
        single_sdk_service("aws_sdk_iam::Client; aws_sdk_sts::Client"),
        None
    );
    let template = "Resources:\n  A:\n    Type: X\n    # iam:Commented\n\n    Action: iam:GetUser\n  # next\n  B:\n    Action: iam:ListUsers\nOutputs:\n";
    assert_eq!(
        resource_block(template, "A"),
        "  A:\n    Type: X\n    # iam:Commented\n\n    Action: iam:GetUser\n"
    );
    assert_eq!(
        resource_block(template, "B"),
        "  B:\n    Action: iam:ListUsers\n"
    );
}

/// The statement `sid` of a policy `block`, up to the `!Ref AWS::NoValue`
/// that ends its `!If`.
fn conditional_statement<'b>(block: &'b str, sid: &str) -> &'b str {
    between(block, &format!("- Sid: {sid}\n"), "- !Ref AWS::NoValue")
}

#[test]
fn the_functions_may_put_events_on_the_chosen_bus_alone() {
    let hub = hub_template();
    for role in ["ProducerPolicy", "WorkerPolicy"] {
        let block = resource_block(&hub, role);
        let statement = conditional_statement(block, "PutEventsOnTheBus");
        for needle in [
            "Action: events:PutEvents",
            "- EventBusIsArn",
            "- !Ref EventBus",
            "event-bus/${EventBus}",
        ] {
            assert!(
                statement.contains(needle),
                "{role}: no `{needle}` in {statement}"
            );
        }
        assert!(
            block.contains("- HasEventBus\n            - Sid: PutEventsOnTheBus"),
            "{role}: the statement exists only with a bus"
        );
        assert!(!statement.contains('*'), "{role}: no wildcard: {statement}");
    }
}

#[test]
fn only_the_producer_reads_the_ses_rate_and_only_when_it_is_asked_for() {
    let hub = hub_template();
    let producer = resource_block(&hub, "ProducerPolicy");
    let statement = conditional_statement(producer, "ReadTheSesSendingRate");
    assert!(
        statement.contains("Action: ses:GetAccount\n"),
        "GetAccount alone: {statement}"
    );
    assert!(
        producer.contains("- ReadsSesRate\n            - Sid: ReadTheSesSendingRate"),
        "the statement exists only under ReadsSesRate"
    );
    let condition = between(&hub, "  ReadsSesRate: !And\n", "\n\n");
    for needle in [
        "- !Condition HasSender",
        "- !Equals [!Ref SesFleetRate, auto]",
    ] {
        assert!(condition.contains(needle), "no `{needle}` in {condition}");
    }
    assert!(
        !resource_block(&hub, "WorkerPolicy").contains("ses:GetAccount"),
        "workers read the rate from the table, not from SES"
    );
}

#[test]
fn the_producer_gets_fleet_groups_when_set_and_maximum_concurrency_otherwise() {
    let hub = hub_template();
    let producer = resource_block(&hub, "ProducerFunction");
    assert!(
        producer.contains(
            "KEYROTOR_FLEET_GROUPS: !If [HasFleetGroups, !Ref FleetGroups, !Ref MaximumConcurrency]\n"
        ),
        "pools' slots when given, the Lambda's otherwise: {producer}"
    );
    assert!(
        hub.contains("\n  HasFleetGroups: !Not [!Equals [!Ref FleetGroups, \"\"]]\n"),
        "blank means MaximumConcurrency"
    );
    let parameter = resource_block(&hub, "FleetGroups");
    assert!(parameter.contains("Default: \"\"\n"), "{parameter}");
    assert!(
        parameter.contains("AllowedPattern: '^([1-9][0-9]{0,4}|100000)?$'\n"),
        "blank or 1-100000, the setting's own range: {parameter}"
    );
    let groups = between(
        &hub,
        "Label: { default: Queue and event source mapping }",
        "- Label:",
    );
    assert!(
        groups.contains("- MaximumConcurrency\n          - FleetGroups\n"),
        "shown beside MaximumConcurrency: {groups}"
    );
    assert!(
        !resource_block(&hub, "WorkerFunction").contains("KEYROTOR_FLEET_GROUPS"),
        "only the producer shares out the fleet's groups"
    );
}

#[test]
fn the_exposed_key_rules_match_every_risk_code_and_reach_the_producer() {
    let codes = keyrotor_shared::incident::RISK_CODES;
    let hub = hub_template();
    let member = member_template();
    for (file, template, rules) in [
        (
            "hub.yaml",
            hub.as_str(),
            &["IncidentRule", "LocalIncidentRule"][..],
        ),
        ("member-role.yaml", member.as_str(), &["ExposedKeyRule"][..]),
    ] {
        for rule in rules {
            let block = resource_block(template, rule);
            assert!(
                block.contains("source: [aws.health]"),
                "{file} {rule}: {block}"
            );
            for code in codes {
                assert!(
                    block.contains(&format!("- {code}\n")),
                    "{file} {rule} misses {code}: {block}"
                );
            }
        }
    }
    for permission in ["IncidentInvokePermission", "LocalIncidentInvokePermission"] {
        let block = resource_block(&hub, permission);
        assert!(block.contains("Principal: events.amazonaws.com"), "{block}");
        assert!(
            block.contains("FunctionName: !Ref ProducerFunction"),
            "{block}"
        );
    }
    let bus = resource_block(&hub, "IncidentBus");
    assert!(
        bus.contains("aws:PrincipalOrgID: !Ref OrganizationId"),
        "{bus}"
    );
    let forwarder = resource_block(&member, "IncidentForwarderRole");
    assert!(
        forwarder.contains("Resource: !Ref HubIncidentBusArn"),
        "{forwarder}"
    );
}
