//! Exposed keys: the AWS Health events that report a leaked or suspected
//! access key, and what keyrotor does with the exposed key once its
//! replacement is stored (`KEYROTOR_EXPOSED_KEY_ACTION`). Pure.
//!
//! AWS sends these to the affected account's default event bus with source
//! `aws.health`; the key is an affected entity. Users have seen each of
//! [`RISK_CODES`] for the same situation, so a rule that matched only the
//! first missed some.

use std::str::FromStr;

use serde::Serialize;

/// The `detail.eventTypeCode`s that report an exposed access key.
pub const RISK_CODES: [&str; 5] = [
    "AWS_RISK_CREDENTIALS_EXPOSED",
    "AWS_RISK_CREDENTIALS_COMPROMISED",
    "AWS_RISK_CREDENTIALS_COMPROMISE_SUSPECTED",
    "AWS_RISK_CREDENTIALS_EXPOSURE_SUSPECTED",
    "AWS_RISK_IAM_QUARANTINE",
];

/// The name prefix of the policies AWS attaches to a user whose key leaked
/// (`AWSCompromisedKeyQuarantine`, `...V2`, `...V3`).
pub const QUARANTINE_POLICY_PREFIX: &str = "AWSCompromisedKeyQuarantine";

/// What a Health event reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exposure {
    /// The account the key belongs to.
    pub account_id: String,
    /// The exposed access key ids.
    pub key_ids: Vec<String>,
    /// The event type code.
    pub code: String,
}

/// Why an event is not an exposure keyrotor acts on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnExposure {
    /// Another source or type.
    #[error("not an AWS Health exposed-key event: {0}")]
    Other(String),
    /// An exposure without a usable account or key.
    #[error("an exposed-key event without {0}")]
    Incomplete(&'static str),
}

/// Whether `text` looks like an access key id (`AKIA...`, 16–128 of A-Z
/// and 0-9).
pub fn is_key_id(text: &str) -> bool {
    text.starts_with("AKIA")
        && (16..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

impl Exposure {
    /// The exposure an EventBridge event (as delivered to a Lambda
    /// target) reports.
    pub fn of_event(event: &serde_json::Value) -> Result<Exposure, NotAnExposure> {
        let source = event["source"].as_str().unwrap_or_default();
        let code = event["detail"]["eventTypeCode"]
            .as_str()
            .unwrap_or_default();
        if source != "aws.health" || !RISK_CODES.contains(&code) {
            return Err(NotAnExposure::Other(format!(
                "source `{source}`, type `{code}`"
            )));
        }
        // The account of the key: the event's, or the affected account's
        // (organizational view).
        let account_id = event["account"]
            .as_str()
            .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
            .or_else(|| event["detail"]["affectedAccount"].as_str())
            .ok_or(NotAnExposure::Incomplete("an account id"))?
            .to_string();
        let mut key_ids: Vec<String> = event["detail"]["affectedEntities"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["entityValue"].as_str())
            .chain(
                event["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.as_str()),
            )
            .filter(|k| is_key_id(k))
            .map(str::to_string)
            .collect();
        key_ids.sort();
        key_ids.dedup();
        if key_ids.is_empty() {
            return Err(NotAnExposure::Incomplete("an access key id"));
        }
        Ok(Exposure {
            account_id,
            key_ids,
            code: code.to_string(),
        })
    }
}

/// What happens to an exposed key once its replacement is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExposedKeyAction {
    /// Switch it off at once (the default): no install grace, no adoption
    /// hold.
    #[default]
    Deactivate,
    /// Leave it to the usual grace and hold (the owners are told).
    Hold,
}

impl FromStr for ExposedKeyAction {
    type Err = String;
    fn from_str(s: &str) -> Result<ExposedKeyAction, String> {
        match s.trim() {
            "deactivate" => Ok(ExposedKeyAction::Deactivate),
            "hold" => Ok(ExposedKeyAction::Hold),
            other => Err(format!("expected `deactivate` or `hold`, got `{other}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the AWS Health documentation ("AWS Health events
    /// for risk"), with a key id that looks like one.
    pub(crate) fn sample(code: &str) -> serde_json::Value {
        serde_json::json!({
            "version": "0",
            "id": "121345678-1234-1234-1234-123456789012",
            "detail-type": "AWS Health Event",
            "source": "aws.health",
            "account": "123456789012",
            "time": "2016-06-05T06:27:57Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "eventArn": "arn:aws:health:global::event/AWS_RISK_CREDENTIALS_EXPOSED_XXXXXXXXXXXXXXXXX",
                "service": "RISK",
                "eventTypeCode": code,
                "eventTypeCategory": "issue",
                "startTime": "Sat, 05 Jun 2016 15:10:09 GMT",
                "eventDescription": [{
                    "language": "en_US",
                    "latestDescription": "A description of the event will be provided here"
                }],
                "affectedEntities": [{"entityValue": "AKIAIOSFODNN7EXAMPLE", "tags": {}}]
            }
        })
    }

    #[test]
    fn every_risk_code_is_an_exposure_and_others_are_not() {
        for code in RISK_CODES {
            let e = Exposure::of_event(&sample(code)).unwrap();
            assert_eq!(e.account_id, "123456789012");
            assert_eq!(e.key_ids, ["AKIAIOSFODNN7EXAMPLE"]);
            assert_eq!(e.code, code);
        }
        assert!(matches!(
            Exposure::of_event(&sample("AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED")),
            Err(NotAnExposure::Other(_))
        ));
        let mut no_key = sample(RISK_CODES[0]);
        no_key["detail"]["affectedEntities"] = serde_json::json!([{"entityValue": "not-a-key"}]);
        assert_eq!(
            Exposure::of_event(&no_key),
            Err(NotAnExposure::Incomplete("an access key id"))
        );
        assert_eq!("hold".parse(), Ok(ExposedKeyAction::Hold));
        assert!("remove".parse::<ExposedKeyAction>().is_err());
    }
}
