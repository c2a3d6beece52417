//! Message v1 (DESIGN §7): the SQS body for one (account, user) of a run.
//! Unknown fields are ignored, so fields can be added compatibly; a body that
//! does not decode is an error of that message only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aws::limits::IamShare;
use crate::domain::Mode;

/// The version this code writes and reads.
pub const MESSAGE_VERSION: u8 = 1;

/// One unit of work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkMessage {
    /// Always 1.
    pub v: u8,
    /// The run this message belongs to.
    pub run_id: String,
    /// The member account.
    pub account_id: String,
    /// The account's name.
    pub account_name: String,
    /// The account owner's email (the Organizations account email, or the
    /// registry's), if known.
    pub owner_email: Option<String>,
    /// The IAM user.
    pub user_name: String,
    /// The run's evaluation time.
    pub as_of: DateTime<Utc>,
    /// Audit or enforce.
    pub mode: Mode,
    /// Rotate now whatever the age.
    pub force: bool,
    /// The producer saw the user in the exemption group.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exempt: bool,
    /// The shard of the account's message group, when sharded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    /// How many shards the account's messages are spread over, when more
    /// than one: each group's worker takes that share of the account's IAM
    /// budget (`KEYROTOR_IAM_RATE`), so the fleet as a whole stays under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// The account's rollout wave, when `KEYROTOR_WAVES` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<u32>,
    /// The account's wave is not released (or is halted): an enforce run
    /// evaluates this user in audit mode.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub audit_only: bool,
    /// An incident: AWS reported `exposed_key` exposed. The user's key is
    /// replaced at once and the exposed one handled by
    /// `KEYROTOR_EXPOSED_KEY_ACTION`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incident: bool,
    /// The exposed key, in an incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_key: Option<String>,
    /// HMAC-SHA256 of the message's fields under its run's message key
    /// (hex): only the producer, which drew the key, can make a message the
    /// workers accept for that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

/// Why a body is not a usable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not JSON, or a required field is missing or of the wrong type.
    #[error("not a keyrotor message v1: {0}")]
    Malformed(String),
    /// A version this code does not read.
    #[error("unsupported message version {0} (this worker reads version 1)")]
    Version(u64),
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

impl WorkMessage {
    /// The MAC of every field that decides what a worker does, under `key`
    /// (hex), or `None` for a key that is not hex.
    fn mac(&self, key: &str) -> Option<HmacSha256> {
        use hmac::{KeyInit, Mac};
        let key = hex::decode(key).ok()?;
        let mut mac = HmacSha256::new_from_slice(&key).ok()?;
        // A JSON array: unambiguous, whatever the names contain.
        let fields = serde_json::to_vec(&(
            self.v,
            &self.run_id,
            &self.account_id,
            &self.account_name,
            &self.owner_email,
            &self.user_name,
            self.as_of
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            self.mode,
            self.force,
            self.exempt,
        ))
        .expect("plain data serialises");
        mac.update(&fields);
        // Signed when present, so that a replayed message cannot claim a
        // larger share of its account's IAM budget; messages without it
        // keep the signature they always had.
        if let Some(shards) = self.shards {
            mac.update(format!("#shards={shards}").as_bytes());
        }
        // Likewise the wave, and the hold on it: a copy without the hold
        // fails the signature.
        if let Some(wave) = self.wave {
            mac.update(format!("#wave={wave}").as_bytes());
        }
        if self.audit_only {
            mac.update(b"#audit_only");
        }
        if self.incident {
            mac.update(b"#incident");
        }
        if let Some(key) = &self.exposed_key {
            mac.update(format!("#exposed_key={key}").as_bytes());
        }
        Some(mac)
    }

    /// Signs the message with its run's message key (hex).
    pub fn sign(&mut self, key: &str) {
        use hmac::Mac;
        self.sig = self
            .mac(key)
            .map(|mac| hex::encode(mac.finalize().into_bytes()));
    }

    /// Whether the message carries a valid signature under `key` (compared
    /// in constant time).
    pub fn verify(&self, key: &str) -> bool {
        use hmac::Mac;
        match (&self.sig, self.mac(key)) {
            (Some(sig), Some(mac)) => hex::decode(sig)
                .map(|sig| mac.verify_slice(&sig).is_ok())
                .unwrap_or(false),
            _ => false,
        }
    }

    /// Decodes an SQS body.
    pub fn decode(body: &str) -> Result<WorkMessage, MessageError> {
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(|e| MessageError::Malformed(e.to_string()))?;
        match value.get("v").and_then(|v| v.as_u64()) {
            Some(1) => {}
            Some(other) => return Err(MessageError::Version(other)),
            None => return Err(MessageError::Malformed("missing field `v`".into())),
        }
        serde_json::from_value(value).map_err(|e| MessageError::Malformed(e.to_string()))
    }

    /// The SQS body.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }

    /// The FIFO deduplication id: one message per (run, account, user).
    /// At most 25 + 1 + 12 + 1 + 64 characters, within SQS's 128.
    pub fn deduplication_id(&self) -> String {
        format!("{}:{}:{}", self.run_id, self.account_id, self.user_name)
    }

    /// This message's group's share of its account's IAM budget.
    pub fn iam_share(&self) -> IamShare {
        IamShare {
            group: self.shard.unwrap_or(0),
            of: self.shards.unwrap_or(1).max(1),
        }
    }

    /// The FIFO message group: the account (or `account#shard`), which
    /// bounds the work in flight per account across the whole fleet.
    pub fn group_id(&self) -> String {
        match self.shard {
            Some(shard) => format!("{}#{shard}", self.account_id),
            None => self.account_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> WorkMessage {
        WorkMessage {
            v: 1,
            run_id: "20260601T000000Z-0a1b2c3d".into(),
            account_id: "111122223333".into(),
            account_name: "prod".into(),
            owner_email: Some("owner@example.com".into()),
            user_name: "ci".into(),
            as_of: "2026-06-01T00:00:00Z".parse().unwrap(),
            mode: Mode::Audit,
            force: false,
            exempt: false,
            shard: None,
            shards: None,
            wave: None,
            audit_only: false,
            incident: false,
            exposed_key: None,
            sig: None,
        }
    }

    #[test]
    fn only_a_message_signed_with_its_runs_key_verifies() {
        let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let mut m = sample();
        assert!(!m.verify(key), "unsigned");
        m.sign(key);
        assert!(m.verify(key));
        let body = m.encode();
        assert!(
            WorkMessage::decode(&body).unwrap().verify(key),
            "survives the wire"
        );
        assert!(!m.verify(&key.replace('0', "1")), "another key");
        for tamper in [
            |m: &mut WorkMessage| m.force = true,
            |m: &mut WorkMessage| m.mode = Mode::Enforce,
            |m: &mut WorkMessage| m.user_name = "other".into(),
            |m: &mut WorkMessage| m.account_id = "444455556666".into(),
            |m: &mut WorkMessage| m.as_of += chrono::Duration::days(30),
            |m: &mut WorkMessage| m.owner_email = Some("attacker@example.com".into()),
            |m: &mut WorkMessage| m.exempt = true,
        ] {
            let mut forged = m.clone();
            tamper(&mut forged);
            assert!(!forged.verify(key), "{forged:?}");
        }
        assert!(!m.verify("not hex"));
    }

    #[test]
    fn a_message_round_trips_and_has_the_v1_fields() {
        let m = sample();
        let body = m.encode();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        for field in [
            "v",
            "run_id",
            "account_id",
            "account_name",
            "owner_email",
            "user_name",
            "as_of",
            "mode",
            "force",
        ] {
            assert!(json.get(field).is_some(), "{field} missing from {body}");
        }
        assert_eq!(json["mode"], "audit");
        assert!(
            json.get("exempt").is_none(),
            "optional fields are left out when unset"
        );
        assert_eq!(WorkMessage::decode(&body).unwrap(), m);
    }

    #[test]
    fn unknown_fields_are_ignored_and_bad_bodies_are_errors() {
        let mut json: serde_json::Value = serde_json::from_str(&sample().encode()).unwrap();
        json["future_field"] = serde_json::json!({"x": 1});
        assert!(WorkMessage::decode(&json.to_string()).is_ok());
        assert!(matches!(
            WorkMessage::decode("not json"),
            Err(MessageError::Malformed(_))
        ));
        json.as_object_mut().unwrap().remove("user_name");
        assert!(matches!(
            WorkMessage::decode(&json.to_string()),
            Err(MessageError::Malformed(_))
        ));
        json["v"] = 2.into();
        assert_eq!(
            WorkMessage::decode(&json.to_string()),
            Err(MessageError::Version(2))
        );
    }

    #[test]
    fn ids_fit_sqs_limits() {
        let mut m = sample();
        m.user_name = "u".repeat(64);
        assert!(m.deduplication_id().len() <= 128);
        assert_eq!(m.group_id(), "111122223333");
        m.shard = Some(3);
        assert_eq!(m.group_id(), "111122223333#3");
    }
}
