//! The producer Lambda's event: the JSON input an EventBridge Scheduler
//! schedule is given, with optional overrides of the configured run.
//!
//! ```json
//! {"mode": "enforce", "as_of": "2026-06-01", "accounts": ["111122223333"],
//!  "force_user": ["111122223333:ci"], "run_id": "..."}
//! ```
//! Every field is optional; `{}` runs with the function's settings.
//!
//! The same function takes the AWS Health events of exposed keys (source
//! `aws.health`, routed by the EventBridge rules of `infra/`): see
//! [`handle`].

use keyrotor_shared::config::Settings;
use keyrotor_shared::domain::{AccountId, Mode};
use keyrotor_shared::time::parse_as_of;
use serde::Deserialize;

use keyrotor_shared::incident::Exposure;

use crate::{ProduceRequest, Producer};

/// The schedule's input.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEvent {
    /// `audit` or `enforce` (default: `KEYROTOR_MODE`).
    pub mode: Option<String>,
    /// RFC 3339 time or `YYYY-MM-DD` (default: now).
    pub as_of: Option<String>,
    /// Only these accounts (default: `KEYROTOR_ACCOUNTS`).
    pub accounts: Option<Vec<String>>,
    /// `ACCOUNT:USER` pairs to rotate now.
    #[serde(default)]
    pub force_user: Vec<String>,
    /// Reuse a run id.
    pub run_id: Option<String>,
}

/// Parses an `ACCOUNT:USER` pair.
pub fn parse_force_user(s: &str) -> Result<(String, String), String> {
    let (account, user) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not ACCOUNT:USER"))?;
    let account: AccountId = account.parse()?;
    if user.is_empty() {
        return Err(format!("`{s}` has no user name"));
    }
    Ok((account.to_string(), user.to_string()))
}

impl ScheduleEvent {
    /// The run this event asks for, given the function's settings.
    pub fn request(&self, settings: &Settings) -> Result<ProduceRequest, String> {
        let mode = match &self.mode {
            Some(m) => m.parse::<Mode>()?,
            None => settings.mode,
        };
        let as_of = match &self.as_of {
            Some(t) => parse_as_of(t)?,
            None => keyrotor_shared::time::now(),
        };
        let accounts = match &self.accounts {
            Some(list) => Some(
                list.iter()
                    .map(|a| a.parse::<AccountId>())
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let force_users = self
            .force_user
            .iter()
            .map(|s| parse_force_user(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProduceRequest {
            run_id: self.run_id.clone(),
            as_of,
            mode,
            accounts,
            force_users,
        })
    }
}

/// What the producer function was invoked with.
#[derive(Debug, Clone)]
pub enum ProducerEvent {
    /// The schedule's input: one run.
    Schedule(ScheduleEvent),
    /// An AWS Health event reporting exposed keys.
    Exposure(Exposure),
}

impl ProducerEvent {
    /// Reads an invocation's payload: an `aws.health` event is an exposure
    /// (any other Health event is refused, naming it); anything else is a
    /// schedule input.
    pub fn parse(payload: serde_json::Value) -> Result<ProducerEvent, String> {
        if payload.get("source").and_then(|s| s.as_str()) == Some("aws.health") {
            return Exposure::of_event(&payload)
                .map(ProducerEvent::Exposure)
                .map_err(|e| e.to_string());
        }
        serde_json::from_value(payload)
            .map(ProducerEvent::Schedule)
            .map_err(|e| format!("not a schedule input: {e}"))
    }
}

/// The function's handler: a run for a schedule input, an incident run
/// for an exposure (in `KEYROTOR_MODE`, now); the answer is the summary.
pub async fn handle(
    producer: &Producer,
    settings: &Settings,
    payload: serde_json::Value,
) -> Result<serde_json::Value, anyhow::Error> {
    let answer = match ProducerEvent::parse(payload).map_err(anyhow::Error::msg)? {
        ProducerEvent::Schedule(event) => {
            let req = event.request(settings).map_err(anyhow::Error::msg)?;
            serde_json::to_value(producer.produce(&req, &|_, _| {}).await?)
        }
        ProducerEvent::Exposure(exposure) => serde_json::to_value(
            producer
                .incident(&exposure, settings.mode, keyrotor_shared::time::now())
                .await?,
        ),
    };
    Ok(answer.expect("plain data"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        s: keyrotor_shared::config::SettingsArgs,
    }

    fn settings() -> Settings {
        Settings::from_args(&Cli::parse_from(["x"]).s).unwrap()
    }

    #[test]
    fn an_empty_event_runs_with_the_settings() {
        let req: ScheduleEvent = serde_json::from_str("{}").unwrap();
        let req = req.request(&settings()).unwrap();
        assert_eq!(req.mode, Mode::Audit);
        assert!(req.accounts.is_none());
        assert!(req.force_users.is_empty());
    }

    #[test]
    fn overrides_are_applied_and_bad_ones_rejected() {
        let event: ScheduleEvent = serde_json::from_value(serde_json::json!({
            "mode": "enforce", "as_of": "2026-06-01", "accounts": ["111122223333"],
            "force_user": ["111122223333:ci"]
        }))
        .unwrap();
        let req = event.request(&settings()).unwrap();
        assert_eq!(req.mode, Mode::Enforce);
        assert_eq!(req.as_of.to_rfc3339(), "2026-06-01T00:00:00+00:00");
        assert_eq!(req.force_users, vec![("111122223333".into(), "ci".into())]);
        let bad: ScheduleEvent =
            serde_json::from_value(serde_json::json!({"force_user": ["ci"]})).unwrap();
        assert!(bad.request(&settings()).is_err());
        assert!(serde_json::from_str::<ScheduleEvent>(r#"{"moed": "enforce"}"#).is_err());
    }

    #[test]
    fn health_events_are_exposures_and_the_rest_schedules() {
        let health = serde_json::json!({
            "source": "aws.health", "account": "111122223333",
            "detail": {"eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED",
                       "affectedEntities": [{"entityValue": "AKIAIOSFODNN7EXAMPLE"}]}
        });
        assert!(matches!(
            ProducerEvent::parse(health),
            Ok(ProducerEvent::Exposure(e)) if e.key_ids == ["AKIAIOSFODNN7EXAMPLE"]
        ));
        let other = serde_json::json!({"source": "aws.health", "detail": {"eventTypeCode": "AWS_EC2_MAINTENANCE"}});
        assert!(ProducerEvent::parse(other)
            .unwrap_err()
            .contains("not an AWS Health exposed-key event"));
        assert!(matches!(
            ProducerEvent::parse(serde_json::json!({"mode": "audit"})),
            Ok(ProducerEvent::Schedule(_))
        ));
        assert!(ProducerEvent::parse(serde_json::json!({"moed": "x"})).is_err());
    }
}
