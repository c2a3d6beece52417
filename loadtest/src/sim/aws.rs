//! The simulated adapters of keyrotor's AWS ports: IAM, Secrets Manager,
//! STS verification, the member directory and account inventory the
//! producer reads, SNS and SES. Each call goes through the [`Model`]
//! (latency, buckets, faults, SDK retries) and then changes the [`World`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use keyrotor_producer::inventory::{AccountInfo, AccountInventory};
use keyrotor_producer::users::{MemberDirectory, UserPage};
use keyrotor_shared::aws::verify::{until_propagated, VERIFY_WAITS};
use keyrotor_shared::aws::{
    IamPort, IamShare, KeyVerifier, Limits, NewKey, SecretInfo, SecretsPort, StoreSecret,
    StoredSecret, UserInfo,
};
use keyrotor_shared::domain::{KeyState, KeyStatus, LastUsed};
use keyrotor_shared::error::AwsError;
use keyrotor_shared::events::{BreakerEvent, EventSink, ResultEvent, RunEvent};
use keyrotor_shared::executor::{AccountPorts, PortsFactory};
use keyrotor_shared::store::pace::SendQuota;
use keyrotor_worker::digest::{Mailer, RenderedEmail};
use secrecy::SecretString;

use super::model::{Model, QuotaScope, Retry, RetryQuota, Service};
use super::world::{Key, World};

/// The shared simulated world and model.
#[derive(Clone)]
pub struct Sim {
    /// The model of AWS's behaviour.
    pub model: Arc<Model>,
    /// The state of the Organization.
    pub world: Arc<Mutex<World>>,
}

impl Sim {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().expect("not poisoned")
    }

    async fn iam(&self, op: &'static str, account: &str) -> Result<(), AwsError> {
        self.model.call(Service::Iam, op, account, Retry::Sdk).await
    }

    /// An IAM read of the producer's (patient retries).
    async fn listing(&self, op: &'static str, account: &str) -> Result<(), AwsError> {
        self.model
            .call(Service::Iam, op, account, Retry::Listing)
            .await
    }
}

fn not_found(op: &'static str, what: &str) -> AwsError {
    AwsError::NotFound {
        op,
        message: format!("{what} not found"),
        source: None,
    }
}

/// IAM of one account.
pub struct SimIam {
    sim: Sim,
    account: String,
    /// The SDK retry quota its retries spend, when modelled.
    quota: Option<Arc<RetryQuota>>,
}

impl SimIam {
    /// One IAM call of the worker's, the SDK's retries spending `quota`.
    async fn call(&self, op: &'static str) -> Result<(), AwsError> {
        self.sim
            .model
            .call_with_quota(
                Service::Iam,
                op,
                &self.account,
                Retry::Sdk,
                self.quota.as_deref(),
            )
            .await
    }
}

#[async_trait]
impl IamPort for SimIam {
    async fn get_user(&self, user_name: &str) -> Result<UserInfo, AwsError> {
        // GetUser answers the tags too (ListUserTags only past 50 tags).
        self.call("GetUser").await?;
        let world = self.sim.world();
        let account = &world.accounts[&self.account];
        if !account.users.contains_key(user_name) {
            return Err(not_found("iam:GetUser", user_name));
        }
        Ok(UserInfo {
            user_name: user_name.to_string(),
            arn: format!("arn:aws:iam::{}:user/{user_name}", self.account),
            path: "/".into(),
            tags: Vec::new(),
        })
    }

    async fn list_groups_for_user(&self, _user_name: &str) -> Result<Vec<String>, AwsError> {
        self.call("ListGroupsForUser").await?;
        Ok(Vec::new())
    }

    async fn list_user_names(&self) -> Result<Vec<String>, AwsError> {
        let names: Vec<String> = self.sim.world().accounts[&self.account]
            .users
            .keys()
            .cloned()
            .collect();
        for _ in 0..names.len().div_ceil(100).max(1) {
            self.call("ListUsers").await?;
        }
        Ok(names)
    }

    async fn list_key_metadata(&self, user_name: &str) -> Result<Vec<KeyState>, AwsError> {
        self.call("ListAccessKeys").await?;
        let world = self.sim.world();
        let user = world.accounts[&self.account]
            .users
            .get(user_name)
            .ok_or_else(|| not_found("iam:ListAccessKeys", user_name))?;
        Ok(user
            .keys
            .iter()
            .map(|k| KeyState {
                key_id: k.key_id.clone(),
                status: k.status,
                created: k.created,
                last_used: None,
            })
            .collect())
    }

    async fn key_last_used(&self, key_id: &str) -> Result<Option<LastUsed>, AwsError> {
        self.call("GetAccessKeyLastUsed").await?;
        let world = self.sim.world();
        world.accounts[&self.account]
            .users
            .values()
            .flat_map(|u| &u.keys)
            .find(|k| k.key_id == key_id)
            .map(|k| k.last_used.clone())
            .ok_or_else(|| not_found("iam:GetAccessKeyLastUsed", key_id))
    }

    async fn create_key(&self, user_name: &str) -> Result<NewKey, AwsError> {
        self.sim
            .model
            .call(
                Service::Iam,
                "CreateAccessKey",
                &self.account,
                Retry::ThrottlingOnly,
            )
            .await?;
        let usable_from =
            self.sim.model.elapsed() + self.sim.model.between(self.sim.model.config().propagation);
        let created = self.sim.model.now_utc();
        let mut world = self.sim.world();
        let key_id = world.new_key_id();
        world.key_index.insert(
            key_id.clone(),
            (self.account.clone(), user_name.to_string()),
        );
        let user = world
            .accounts
            .get_mut(&self.account)
            .and_then(|a| a.users.get_mut(user_name))
            .ok_or_else(|| not_found("iam:CreateAccessKey", user_name))?;
        if user.keys.len() >= 2 {
            return Err(AwsError::LimitExceeded {
                op: "iam:CreateAccessKey",
                message: "Cannot exceed quota for AccessKeysPerUser: 2".into(),
                source: None,
            });
        }
        user.keys_created += 1;
        user.created_ids.insert(key_id.clone());
        user.keys.push(Key {
            key_id: key_id.clone(),
            status: KeyStatus::Active,
            created,
            last_used: None,
            usable_from,
        });
        drop(world);
        if self.sim.model.lose_create_answer() {
            return Err(AwsError::Transport {
                op: "iam:CreateAccessKey",
                message: "operation timed out (the key was created)".into(),
                source: None,
            });
        }
        Ok(NewKey {
            key_id,
            // Not a credential: the simulator never checks it.
            secret: SecretString::from("simulated".to_string()),
            created,
        })
    }

    async fn deactivate_key(&self, user_name: &str, key_id: &str) -> Result<(), AwsError> {
        self.call("UpdateAccessKey").await?;
        let mut world = self.sim.world();
        if let Some(key) = world
            .accounts
            .get_mut(&self.account)
            .and_then(|a| a.users.get_mut(user_name))
            .and_then(|u| u.keys.iter_mut().find(|k| k.key_id == key_id))
        {
            key.status = KeyStatus::Inactive;
        }
        Ok(())
    }

    async fn delete_key(&self, user_name: &str, key_id: &str) -> Result<(), AwsError> {
        self.call("DeleteAccessKey").await?;
        let mut world = self.sim.world();
        if let Some(user) = world
            .accounts
            .get_mut(&self.account)
            .and_then(|a| a.users.get_mut(user_name))
        {
            user.keys.retain(|k| k.key_id != key_id);
            if user.created_ids.contains(key_id) {
                user.orphans_deleted += 1;
            }
        }
        Ok(())
    }

    async fn attach_read_policy(&self, user_name: &str, policy_arn: &str) -> Result<(), AwsError> {
        self.call("AttachUserPolicy").await?;
        let mut world = self.sim.world();
        if let Some(user) = world
            .accounts
            .get_mut(&self.account)
            .and_then(|a| a.users.get_mut(user_name))
        {
            user.policies.insert(policy_arn.to_string());
        }
        Ok(())
    }

    async fn attached_policy_names(&self, user_name: &str) -> Result<Vec<String>, AwsError> {
        self.sim
            .iam("ListAttachedUserPolicies", &self.account)
            .await?;
        let world = self.sim.world();
        Ok(world
            .accounts
            .get(&self.account)
            .and_then(|a| a.users.get(user_name))
            .map(|u| {
                u.policies
                    .iter()
                    .filter_map(|arn| arn.rsplit('/').next().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// Secrets Manager of one account.
pub struct SimSecrets {
    sim: Sim,
    account: String,
}

impl SimSecrets {
    fn arn(&self, name: &str) -> String {
        format!(
            "arn:aws:secretsmanager:us-east-1:{}:secret:{name}-AbCdEf",
            self.account
        )
    }
}

#[async_trait]
impl SecretsPort for SimSecrets {
    async fn describe(&self, name: &str) -> Result<Option<SecretInfo>, AwsError> {
        self.sim
            .model
            .call(
                Service::Secrets,
                "DescribeSecret",
                &self.account,
                Retry::Sdk,
            )
            .await?;
        let world = self.sim.world();
        Ok(world.accounts[&self.account]
            .secrets
            .get(name)
            .map(|versions| SecretInfo {
                arn: self.arn(name),
                version_ids: versions.clone(),
                scheduled_for_deletion: false,
            }))
    }

    async fn store(&self, req: StoreSecret<'_>) -> Result<StoredSecret, AwsError> {
        let exists = self.sim.world().accounts[&self.account]
            .secrets
            .contains_key(req.name);
        let op = if exists {
            "PutSecretValue"
        } else {
            "CreateSecret"
        };
        // A stale hint: the other write is tried first, and refused.
        if req.exists == Some(!exists) {
            let refused = if exists {
                "CreateSecret"
            } else {
                "PutSecretValue"
            };
            self.sim
                .model
                .call(Service::Secrets, refused, &self.account, Retry::Sdk)
                .await?;
        }
        self.sim
            .model
            .call(Service::Secrets, op, &self.account, Retry::Sdk)
            .await?;
        let mut world = self.sim.world();
        let versions = world
            .accounts
            .get_mut(&self.account)
            .expect("account exists")
            .secrets
            .entry(req.name.to_string())
            .or_default();
        if !versions.iter().any(|v| v == req.client_request_token) {
            versions.push(req.client_request_token.to_string());
        }
        Ok(StoredSecret {
            arn: self.arn(req.name),
            version_id: req.client_request_token.to_string(),
        })
    }

    async fn put_resource_policy(&self, _arn: &str, _document: &str) -> Result<(), AwsError> {
        self.sim
            .model
            .call(
                Service::Secrets,
                "PutResourcePolicy",
                &self.account,
                Retry::Sdk,
            )
            .await
    }
}

/// STS verification of new keys, waiting out their propagation the way the
/// STS adapter does.
pub struct SimVerifier {
    sim: Sim,
}

#[async_trait]
impl KeyVerifier for SimVerifier {
    async fn verify(
        &self,
        key_id: &str,
        _secret: &SecretString,
        user_arn: &str,
    ) -> Result<(), AwsError> {
        until_propagated(&VERIFY_WAITS, key_id, user_arn, || async {
            self.sim
                .model
                .call(Service::Sts, "GetCallerIdentity", "hub", Retry::Sdk)
                .await?;
            let world = self.sim.world();
            let usable = world.key_index.get(key_id).and_then(|(account, user)| {
                let key = world.accounts[account].users[user]
                    .keys
                    .iter()
                    .find(|k| k.key_id == key_id)?;
                (key.usable_from <= self.sim.model.elapsed())
                    .then(|| format!("arn:aws:iam::{account}:user/{user}"))
            });
            usable.ok_or_else(|| AwsError::AccessDenied {
                op: "sts:GetCallerIdentity",
                message: "InvalidClientTokenId: the key has not propagated yet".into(),
                source: None,
            })
        })
        .await
    }
}

/// The executor's ports, behind the worker's real rate limits (one
/// [`Limits`] per simulated worker process, as in a real one).
pub struct SimPorts {
    sim: Sim,
    limits: Limits,
    /// One member-account session per account per worker (an AssumeRole
    /// call the first time).
    sessions: Mutex<HashSet<String>>,
    /// The process's SDK retry quotas for IAM, by account ("" for the
    /// process's one), when modelled.
    iam_quotas: Mutex<HashMap<String, Arc<RetryQuota>>>,
}

impl SimPorts {
    /// Ports for one worker process.
    pub fn new(sim: Sim, limits: Limits) -> SimPorts {
        SimPorts {
            sim,
            limits,
            sessions: Mutex::new(HashSet::new()),
            iam_quotas: Mutex::new(HashMap::new()),
        }
    }

    /// The retry quota that IAM calls in `account` spend, if modelled.
    fn iam_quota(&self, account: &str) -> Option<Arc<RetryQuota>> {
        let key = match self.sim.model.config().iam_retry_quota? {
            QuotaScope::Process => "",
            QuotaScope::Account => account,
        };
        let mut quotas = self.iam_quotas.lock().expect("not poisoned");
        Some(quotas.entry(key.to_string()).or_default().clone())
    }

    async fn session(&self, account: &str) {
        let new = self
            .sessions
            .lock()
            .expect("not poisoned")
            .insert(account.to_string());
        if new {
            // A failed assume is retried by the next call in the real SDK;
            // the model's AssumeRole has no bucket, so it only waits.
            let _ = self
                .sim
                .model
                .call(Service::Sts, "AssumeRole", "hub", Retry::Sdk)
                .await;
        }
    }

    fn secrets(&self, account: &str, member: Option<(&str, IamShare)>) -> Arc<dyn SecretsPort> {
        self.limits.secrets(
            member,
            Arc::new(SimSecrets {
                sim: self.sim.clone(),
                account: account.to_string(),
            }),
        )
    }
}

#[async_trait]
impl PortsFactory for SimPorts {
    async fn ports(&self, account_id: &str, share: IamShare) -> AccountPorts {
        self.session(account_id).await;
        AccountPorts {
            iam: self.limits.iam(
                account_id,
                share,
                Arc::new(SimIam {
                    sim: self.sim.clone(),
                    account: account_id.to_string(),
                    quota: self.iam_quota(account_id),
                }),
            ),
            secrets: self.secrets(account_id, Some((account_id, share))),
            verifier: Arc::new(SimVerifier {
                sim: self.sim.clone(),
            }),
        }
    }

    async fn secrets_in(
        &self,
        account_id: &str,
        secrets_account: Option<&str>,
    ) -> Arc<dyn SecretsPort> {
        match secrets_account {
            Some(central) => self.secrets(central, None),
            None => self.secrets(account_id, Some((account_id, IamShare::WHOLE))),
        }
    }
}

/// The Organization as the producer lists it.
pub struct SimInventory {
    /// The world.
    pub sim: Sim,
}

#[async_trait]
impl AccountInventory for SimInventory {
    async fn accounts(&self) -> Result<Vec<AccountInfo>, AwsError> {
        let accounts: Vec<AccountInfo> = self
            .sim
            .world()
            .accounts
            .iter()
            .map(|(id, a)| AccountInfo {
                id: id.clone(),
                name: a.name.clone(),
                email: Some(format!("owner+{id}@example.com")),
                active: true,
                in_organizations: true,
                wave: None,
            })
            .collect();
        for _ in 0..accounts.len().div_ceil(20).max(1) {
            self.sim
                .model
                .call(Service::Organizations, "ListAccounts", "hub", Retry::Sdk)
                .await?;
        }
        Ok(accounts)
    }

    async fn excluded(&self, _account: &AccountInfo) -> Result<bool, AwsError> {
        self.sim
            .model
            .call(
                Service::Organizations,
                "ListTagsForResource",
                "hub",
                Retry::Sdk,
            )
            .await?;
        Ok(false)
    }
}

/// Member accounts' users as the producer reads them.
pub struct SimDirectory {
    /// The world.
    pub sim: Sim,
}

#[async_trait]
impl MemberDirectory for SimDirectory {
    async fn open(&self, _account_id: &str) -> Result<(), AwsError> {
        self.sim
            .model
            .call(Service::Sts, "AssumeRole", "hub", Retry::Sdk)
            .await
    }

    async fn exempt_members(
        &self,
        account_id: &str,
        _group: &str,
    ) -> Result<HashSet<String>, AwsError> {
        self.sim.listing("GetGroup", account_id).await?;
        Ok(HashSet::new())
    }

    async fn users_page(
        &self,
        account_id: &str,
        marker: Option<String>,
    ) -> Result<UserPage, AwsError> {
        self.sim.listing("ListUsers", account_id).await?;
        let world = self.sim.world();
        let users = &world.accounts[account_id].users;
        let page: Vec<String> = match &marker {
            Some(after) => users
                .range::<String, _>((
                    std::ops::Bound::Excluded(after.clone()),
                    std::ops::Bound::Unbounded,
                ))
                .take(100)
                .map(|(n, _)| n.clone())
                .collect(),
            None => users.keys().take(100).cloned().collect(),
        };
        let next = (page.len() == 100)
            .then(|| page.last().cloned())
            .flatten()
            .filter(|last| users.keys().next_back() != Some(last));
        Ok((page, next))
    }

    /// The simulator models no incidents: no key is reported exposed.
    async fn owner_of_key(
        &self,
        _account_id: &str,
        _key_id: &str,
    ) -> Result<Option<String>, AwsError> {
        Ok(None)
    }
}

/// SNS: events are counted, not kept.
pub struct SimEvents {
    /// The world.
    pub sim: Sim,
    /// Result events published, by outcome.
    pub published: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Run summary events published.
    pub summaries: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl EventSink for SimEvents {
    async fn publish_result(&self, event: &ResultEvent) -> Result<(), AwsError> {
        self.sim
            .model
            .call(Service::Sns, "Publish", "hub", Retry::Sdk)
            .await?;
        *self
            .published
            .lock()
            .expect("not poisoned")
            .entry(event.outcome.as_str().to_string())
            .or_default() += 1;
        Ok(())
    }

    async fn publish_run(&self, _event: &RunEvent) -> Result<(), AwsError> {
        self.sim
            .model
            .call(Service::Sns, "Publish", "hub", Retry::Sdk)
            .await?;
        self.summaries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The simulated deployment runs without a circuit breaker (its worker
    /// has none), so this is never called; it costs a publish if it is.
    async fn publish_breaker(&self, _event: &BreakerEvent) -> Result<(), AwsError> {
        self.sim
            .model
            .call(Service::Sns, "Publish", "hub", Retry::Sdk)
            .await
    }
}

/// SES: sends are counted against the hub's send rate; with
/// `ses_retry_quota`, their retries spend the process's quota.
pub struct SimMailer {
    /// The world.
    pub sim: Sim,
    /// The process's SDK retry quota for SES, when modelled.
    pub quota: Option<RetryQuota>,
}

impl SimMailer {
    /// A process's mailer, with a full retry quota when the model keeps one.
    pub fn new(sim: Sim) -> SimMailer {
        let quota = sim.model.config().ses_retry_quota.then(RetryQuota::default);
        SimMailer { sim, quota }
    }
}

/// [`SendQuota`]: SES's account answer (`GetAccount`), the model's SES
/// rate, which the producer records with `KEYROTOR_SES_FLEET_RATE=auto`.
pub struct SimSesAccount {
    /// The world.
    pub sim: Sim,
}

#[async_trait]
impl SendQuota for SimSesAccount {
    async fn max_send_rate(&self) -> Result<f64, AwsError> {
        self.sim
            .model
            .call(Service::Ses, "GetAccount", "hub", Retry::Sdk)
            .await?;
        Ok(self.sim.model.config().ses_rps)
    }
}

#[async_trait]
impl Mailer for SimMailer {
    async fn send(&self, _from: &str, _to: &str, _email: &RenderedEmail) -> Result<(), AwsError> {
        self.sim
            .model
            .call_with_quota(
                Service::Ses,
                "SendEmail",
                "hub",
                Retry::Send,
                self.quota.as_ref(),
            )
            .await
    }
}
