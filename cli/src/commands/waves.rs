//! `keyrotor waves [--output json]` shows the rollout waves
//! (`KEYROTOR_WAVES`) and where each stands; `keyrotor waves release N` and
//! `keyrotor waves halt N` record an operator's decision, with who (the
//! caller's ARN) and when. The rules are in `keyrotor_shared::waves`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::Settings;
use keyrotor_shared::store::waves::{WaveStore, WavesPort};
use keyrotor_shared::waves::{states, WaveRecord, WaveState, Waves};
use serde::Serialize;

use crate::{output, Cli, CliError};

/// `waves` arguments.
#[derive(Args, Debug)]
pub struct WavesArgs {
    /// What to do (default: show them).
    #[command(subcommand)]
    pub action: Option<WavesAction>,
}

/// An operator's decision about a wave.
#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavesAction {
    /// Release wave N now: enforce runs enforce its accounts.
    Release {
        /// The wave, from 1.
        wave: u32,
    },
    /// Halt wave N: enforce runs audit its accounts, and no later wave is
    /// released, until it is released again.
    Halt {
        /// The wave, from 1.
        wave: u32,
    },
}

/// One wave as `waves --output json` prints it.
#[derive(Debug, Serialize)]
pub struct WaveView {
    /// The wave, from 1.
    pub wave: u32,
    /// Its account and OU ids.
    pub scopes: Vec<String>,
    /// `released`, `pending` or `halted`.
    pub state: WaveState,
    /// When it was released (null for wave 1 released from the start).
    pub released_at: Option<DateTime<Utc>>,
    /// The last decision's maker: an operator's ARN or `keyrotor (soak)`.
    pub decided_by: Option<String>,
    /// When that decision was made.
    pub decided_at: Option<DateTime<Utc>>,
    /// The first enforce run that enforced it since its release.
    pub enforced_since: Option<DateTime<Utc>>,
    /// Its last trouble (a failed result, a hold that ran out), and what.
    pub trouble_at: Option<DateTime<Utc>>,
    /// What that trouble was.
    pub trouble: Option<String>,
}

/// The waves from the settings and their records.
pub fn views(waves: &Waves, records: &BTreeMap<u32, WaveRecord>) -> Vec<WaveView> {
    let states = states(waves.0.len() as u32, records);
    waves
        .0
        .iter()
        .zip(states)
        .enumerate()
        .map(|(i, (scopes, state))| {
            let wave = i as u32 + 1;
            let record = records.get(&wave).cloned().unwrap_or_default();
            WaveView {
                wave,
                scopes: scopes.iter().map(ToString::to_string).collect(),
                state,
                released_at: (record.decision == Some(WaveState::Released))
                    .then_some(record.decided_at)
                    .flatten(),
                decided_by: record.decided_by,
                decided_at: record.decided_at,
                enforced_since: record.enforced_since,
                trouble_at: record.trouble_at,
                trouble: record.trouble,
            }
        })
        .collect()
}

fn table(views: &Vec<WaveView>) -> String {
    if views.is_empty() {
        return "no waves: KEYROTOR_WAVES is unset, so enforce runs enforce every account\n".into();
    }
    let day = |t: &Option<DateTime<Utc>>| t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string());
    let mut text = String::new();
    for v in views {
        text += &format!(
            "wave {}  {:<8}  {}\n",
            v.wave,
            v.state.as_str(),
            v.scopes.join(", ")
        );
        if let (Some(at), Some(by)) = (day(&v.decided_at), &v.decided_by) {
            text += &format!("        {} {at} by {by}\n", v.state.as_str());
        }
        if let Some(since) = day(&v.enforced_since) {
            text += &format!("        enforced since {since}\n");
        }
        if let (Some(at), Some(what)) = (day(&v.trouble_at), &v.trouble) {
            text += &format!("        last trouble {at}: {what}\n");
        }
    }
    text
}

/// Runs `waves`.
pub async fn run(cli: &Cli, args: &WavesArgs) -> Result<ExitCode, CliError> {
    let settings = Settings::from_args(&cli.settings)?;
    let waves = &settings.waves;
    if let Some(action) = args.action {
        let (WavesAction::Release { wave } | WavesAction::Halt { wave }) = action;
        if waves.is_empty() {
            return Err(CliError::Usage(
                "KEYROTOR_WAVES is unset: there are no waves to release or halt".into(),
            ));
        }
        if wave == 0 || wave as usize > waves.0.len() {
            return Err(CliError::Usage(format!(
                "no wave {wave}: KEYROTOR_WAVES has waves 1 to {}",
                waves.0.len()
            )));
        }
    }
    let aws = AwsContext::load(&settings.role_name).await;
    let store = WaveStore::new(aws_sdk_dynamodb::Client::new(aws.base()), &settings.table);
    if let Some(action) = args.action {
        let (wave, state) = match action {
            WavesAction::Release { wave } => (wave, WaveState::Released),
            WavesAction::Halt { wave } => (wave, WaveState::Halted),
        };
        let by = aws.caller_arn().await.context("finding who decides")?;
        store
            .decide(wave, state, &by)
            .await
            .with_context(|| format!("recording the decision about wave {wave}"))?;
        eprintln!("wave {wave} {} by {by}", state.as_str());
    }
    let records = if waves.is_empty() {
        BTreeMap::new()
    } else {
        store
            .records()
            .await
            .with_context(|| format!("reading the waves in table {}", settings.table))?
    };
    output::print(cli.output, &views(waves, &records), table);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_show_their_scopes_state_and_decisions() {
        let waves: Waves = "111111111111;ou-ab12-cdef3456,222222222222;333333333333"
            .parse()
            .unwrap();
        let at = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let records = BTreeMap::from([(
            2,
            WaveRecord {
                wave: 2,
                decision: Some(WaveState::Released),
                decided_at: Some(at),
                decided_by: Some("arn:aws:iam::123456789012:user/ops".into()),
                ..WaveRecord::default()
            },
        )]);
        let shown = views(&waves, &records);
        let json = serde_json::to_value(&shown).unwrap();
        assert_eq!(json[0]["state"], "released");
        assert_eq!(json[0]["released_at"], serde_json::Value::Null);
        assert_eq!(
            json[1]["scopes"],
            serde_json::json!(["ou-ab12-cdef3456", "222222222222"])
        );
        assert_eq!(json[1]["state"], "released");
        assert!(json[1]["released_at"].is_string());
        assert_eq!(json[2]["state"], "pending");
        let text = table(&shown);
        assert!(text.contains("wave 3  pending "), "{text}");
        assert!(
            text.contains("released 2026-05-28 20:26 UTC by arn:aws:iam::123456789012:user/ops"),
            "{text}"
        );
        assert!(table(&Vec::new()).starts_with("no waves"));
    }
}
