//! The SDK configuration and one assumed-role session per member account.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::error::display::DisplayErrorContext;
use tokio::sync::Mutex;

use crate::error::{AwsError, SdkSource};

/// The hub's SDK configuration plus a cache of member-account sessions.
///
/// Each member account gets an [`AssumeRoleProvider`] for
/// `arn:PARTITION:iam::ACCOUNT:role/ROLE_NAME` and an identity cache of its
/// own, which keeps the credentials until shortly before they expire, so an
/// account is assumed once per hour at most however many users it has.
///
/// The cache is the account's own because the SDK's shared cache (the one
/// `aws-config` puts in the base configuration) holds at most 64
/// credentials providers and then evicts an arbitrary one: a worker serving
/// more accounts than that, or verifying more new keys, would assume roles
/// again and again (docs/DECISIONS.md, "Assumed-role sessions").
#[derive(Clone)]
pub struct AwsContext {
    base: SdkConfig,
    role_name: String,
    sessions: Arc<Mutex<HashMap<String, SdkConfig>>>,
}

/// The SDK's retry settings, chosen deliberately: adaptive mode slows the
/// client down when throttled (IAM's per-account rate is unpublished), and
/// five attempts ride out short bursts without hiding a real outage.
pub fn retry_config() -> RetryConfig {
    RetryConfig::adaptive().with_max_attempts(5)
}

/// The SDK retry partition of a member account's `service` clients
/// (`iam`, `secretsmanager`): one per account, as its quotas are.
///
/// The SDK keeps a retry quota (500 tokens; a retry takes 5, or 10 after a
/// timeout) and, in adaptive mode, a client-side rate limiter per retry
/// partition, process-wide. The default partition is the service and
/// region, so all the IAM clients of a worker that serves a thousand
/// accounts would share one of each: throttling in one account (another
/// tool spending its budget, a quota lower than `KEYROTOR_IAM_RATE`) would
/// slow every account's calls and spend the retries they need.
pub fn member_retry_partition(
    service: &str,
    account_id: &str,
) -> aws_sdk_iam::config::retry::RetryPartition {
    aws_sdk_iam::config::retry::RetryPartition::new(format!("keyrotor-{service}-{account_id}"))
}

/// How long one attempt of any call may take before the SDK gives it up
/// (and retries it, as a transient error). The SDK sets none by default, so
/// a connection that stalls without closing would hold a worker slot until
/// the Lambda timeout or the message's visibility ran out. Longer than
/// SQS's longest long poll (20 s), which is one attempt too.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The SDK's timeouts: [`ATTEMPT_TIMEOUT`] per attempt, and the SDK's own
/// connect timeout.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(std::time::Duration::from_millis(3100))
        .build()
}

/// One HTTPS client for every SDK client of the process: the SDK's default
/// (rustls with aws-lc, the proxy from `HTTPS_PROXY`/`NO_PROXY`), built once.
/// Without it every service client builds its own: a worker makes IAM,
/// Secrets Manager and STS clients per message, and each built a TLS
/// configuration (parsing the trusted roots: 29 % of a worker's
/// instructions against the emulator) and opened new connections, a TLS
/// handshake per message and service on real AWS. Clients of one
/// configuration share the connection pool; a connection carries no
/// credentials (each request is signed), so sessions of different accounts
/// may share it.
pub fn shared_http_client() -> SharedHttpClient {
    use aws_smithy_http_client::{proxy::ProxyConfig, tls, Builder, ConnectorBuilder};
    let https = Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    SharedHttpClient::new(ValidatedOnce(https))
}

/// The shared client without its check at each client's construction: the
/// SDK's hyper client builds a whole TLS connector there and drops it (to
/// load the trusted roots early), once per service client, which cost as
/// much as the sharing saved. Its connectors are built, and cached, at the
/// first request instead.
#[derive(Debug)]
struct ValidatedOnce(SharedHttpClient);

impl HttpClient for ValidatedOnce {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

impl AwsContext {
    /// Loads the standard AWS configuration (region, profile, credentials,
    /// `AWS_ENDPOINT_URL`, ...) as the SDK does, with keyrotor's retry and
    /// timeout settings and one [`shared_http_client`].
    pub async fn load(role_name: &str) -> AwsContext {
        let base = aws_config::defaults(BehaviorVersion::latest())
            .http_client(shared_http_client())
            .retry_config(retry_config())
            .timeout_config(timeout_config())
            .load()
            .await;
        AwsContext::from_config(base, role_name)
    }

    /// Wraps an existing SDK configuration.
    pub fn from_config(base: SdkConfig, role_name: &str) -> AwsContext {
        AwsContext {
            base,
            role_name: role_name.to_string(),
            sessions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The same base configuration, assuming `role_name` in member accounts
    /// instead: the producer lists users through its own read-only role
    /// (`KEYROTOR_PRODUCER_ROLE_NAME`), never the worker's, which writes
    /// keys. Sessions are not shared with `self` (they are another role's).
    pub fn with_role_name(&self, role_name: &str) -> AwsContext {
        AwsContext::from_config(self.base.clone(), role_name)
    }

    /// The hub account's own configuration.
    pub fn base(&self) -> &SdkConfig {
        &self.base
    }

    /// Who this process is: the ARN `sts:GetCallerIdentity` gives (any
    /// identity may call it), recorded with an operator's decisions.
    pub async fn caller_arn(&self) -> Result<String, AwsError> {
        let me = aws_sdk_sts::Client::new(&self.base)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sts:GetCallerIdentity", e))?;
        Ok(me.arn.unwrap_or_else(|| "unknown".into()))
    }

    /// The partition of the configured region (`aws`, `aws-cn`, `aws-us-gov`).
    pub fn partition(&self) -> &'static str {
        match self.base.region().map(|r| r.as_ref()) {
            Some(r) if r.starts_with("cn-") => "aws-cn",
            Some(r) if r.starts_with("us-gov-") => "aws-us-gov",
            _ => "aws",
        }
    }

    /// The member role's ARN in `account_id`.
    pub fn role_arn(&self, account_id: &str) -> String {
        format!(
            "arn:{}:iam::{}:role/{}",
            self.partition(),
            account_id,
            self.role_name
        )
    }

    /// A configuration whose credentials are those of `role_arn` (for the
    /// Organizations reader role; not cached, the producer builds it once).
    pub async fn for_role_arn(&self, role_arn: &str) -> SdkConfig {
        let provider = AssumeRoleProvider::builder(role_arn)
            .session_name("keyrotor-producer")
            .configure(&self.base)
            .build()
            .await;
        self.with_own_cache(provider)
    }

    /// The base configuration with `provider`'s credentials, cached in a
    /// cache of their own (see [`AwsContext`]).
    fn with_own_cache(&self, provider: AssumeRoleProvider) -> SdkConfig {
        self.base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .identity_cache(IdentityCache::lazy().build())
            .build()
    }

    /// Like [`AwsContext::for_account`], but assumes the role at once, so
    /// that a missing role or a refused trust is reported for the account
    /// (as `AccessDenied`) before any work starts.
    pub async fn checked_for_account(&self, account_id: &str) -> Result<SdkConfig, AwsError> {
        let config = self.for_account(account_id).await;
        let provider = config
            .credentials_provider()
            .expect("for_account sets a credentials provider");
        if let Err(e) = provider.provide_credentials().await {
            let message = DisplayErrorContext(&e).to_string();
            let op = "sts:AssumeRole";
            // STS's answer (its error code) is inside the provider's error.
            return Err(match assume_role_code(&e) {
                Some(code) => match AwsError::from_code(op, &code, message) {
                    AwsError::AccessDenied { op, message, .. } => AwsError::AccessDenied {
                        op,
                        message: format!("cannot assume {}: {message}", self.role_arn(account_id)),
                        source: None,
                    },
                    other => other,
                },
                None => AwsError::Transport {
                    op,
                    message,
                    source: None,
                },
            }
            .with_source(SdkSource::new(e)));
        }
        Ok(config)
    }

    /// IAM in `account_id` through the member role, in the account's own
    /// retry partition ([`member_retry_partition`]).
    pub async fn iam_in(&self, account_id: &str) -> aws_sdk_iam::Client {
        let config = aws_sdk_iam::config::Builder::from(&self.for_account(account_id).await)
            .retry_partition(member_retry_partition("iam", account_id))
            .build();
        aws_sdk_iam::Client::from_conf(config)
    }

    /// Secrets Manager in `account_id` (a member or the central secrets
    /// account) through the member role, in the account's own retry
    /// partition ([`member_retry_partition`]).
    pub async fn secrets_in(&self, account_id: &str) -> aws_sdk_secretsmanager::Client {
        let config =
            aws_sdk_secretsmanager::config::Builder::from(&self.for_account(account_id).await)
                .retry_partition(member_retry_partition("secretsmanager", account_id))
                .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    /// A configuration whose credentials are the member role's in `account_id`.
    pub async fn for_account(&self, account_id: &str) -> SdkConfig {
        let mut sessions = self.sessions.lock().await;
        if let Some(config) = sessions.get(account_id) {
            return config.clone();
        }
        let provider = AssumeRoleProvider::builder(self.role_arn(account_id))
            .session_name("keyrotor")
            .configure(&self.base)
            .build()
            .await;
        let config = self.with_own_cache(provider);
        sessions.insert(account_id.to_string(), config.clone());
        config
    }
}

/// The error code STS answered `AssumeRole` with, found in the chain of
/// sources of a credentials provider's error; `None` when STS did not
/// answer (no connection, a timeout).
fn assume_role_code(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(answer) = e.downcast_ref::<AssumeRoleError>() {
            return answer.code().map(str::to_string);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture};
    use aws_smithy_runtime_api::client::identity::{
        IdentityFuture, ResolveCachedIdentity, SharedIdentityCache, SharedIdentityResolver,
    };
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::config_bag::ConfigBag;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    #[test]
    fn service_clients_of_the_shared_client_build_no_connector_each() {
        use aws_smithy_http_client::{Builder, ConnectorBuilder};
        let counting = |built: Arc<AtomicUsize>| {
            Builder::new().build_with_connector_fn(move |_, _| {
                built.fetch_add(1, SeqCst);
                ConnectorBuilder::default().build_http()
            })
        };
        let config = |client: SharedHttpClient| {
            SdkConfig::builder()
                .region(aws_config::Region::new("eu-west-1"))
                .behavior_version(BehaviorVersion::latest())
                .http_client(client)
                .build()
        };
        let by_sdk = Arc::new(AtomicUsize::new(0));
        let by_ours = Arc::new(AtomicUsize::new(0));
        let sdk_config = config(counting(by_sdk.clone()));
        let our_config = config(SharedHttpClient::new(ValidatedOnce(counting(
            by_ours.clone(),
        ))));
        for _ in 0..3 {
            aws_sdk_iam::Client::new(&sdk_config);
            aws_sdk_iam::Client::new(&our_config);
        }
        assert_eq!(by_sdk.load(SeqCst), 3, "the SDK's check builds one each");
        assert_eq!(by_ours.load(SeqCst), 0, "built at the first request");
    }

    #[test]
    fn another_role_name_changes_only_the_role() {
        let base = SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .behavior_version(BehaviorVersion::latest())
            .build();
        let worker = AwsContext::from_config(base, "keyrotor-member");
        let producer = worker.with_role_name("keyrotor-member-reader");
        assert_eq!(
            producer.role_arn("111122223333"),
            "arn:aws:iam::111122223333:role/keyrotor-member-reader"
        );
        assert_eq!(
            worker.role_arn("111122223333"),
            "arn:aws:iam::111122223333:role/keyrotor-member"
        );
        assert_eq!(producer.base().region(), worker.base().region());
    }

    const USER_ARN: &str = "arn:aws:iam::111122223333:user/alice";

    /// STS's answer to `AssumeRole`.
    const ASSUMED: &str = "<AssumeRoleResponse><AssumeRoleResult><Credentials>\
        <AccessKeyId>ASIAMEMBER</AccessKeyId><SecretAccessKey>member-secret</SecretAccessKey>\
        <SessionToken>token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>\
        </Credentials><AssumedRoleUser><Arn>arn:aws:sts::111122223333:assumed-role/m/keyrotor</Arn>\
        <AssumedRoleId>AROAMEMBER:keyrotor</AssumedRoleId></AssumedRoleUser></AssumeRoleResult>\
        </AssumeRoleResponse>";

    /// STS answering as AWS does (any caller is `USER_ARN`), counting the
    /// `AssumeRole` calls.
    #[derive(Debug, Clone, Default)]
    struct FakeSts {
        assumed: Arc<AtomicUsize>,
    }

    impl FakeSts {
        fn assumed(&self) -> usize {
            self.assumed.load(SeqCst)
        }
    }

    impl HttpConnector for FakeSts {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let form = String::from_utf8_lossy(request.body().bytes().unwrap_or_default());
            let xml = if form.contains("Action=AssumeRole") {
                self.assumed.fetch_add(1, SeqCst);
                ASSUMED.to_string()
            } else {
                format!(
                    "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>{USER_ARN}</Arn>\
                     <UserId>AIDAALICE</UserId><Account>111122223333</Account>\
                     </GetCallerIdentityResult></GetCallerIdentityResponse>"
                )
            };
            let status = 200.try_into().expect("a status");
            let answer = HttpResponse::new(status, SdkBody::from(xml));
            HttpConnectorFuture::ready(Ok(answer))
        }
    }

    impl HttpClient for FakeSts {
        fn http_connector(
            &self,
            _settings: &HttpConnectorSettings,
            _components: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(self.clone())
        }
    }

    /// The hub's configuration as `aws-config` loads it, answered by `sts`,
    /// with fixed credentials behind the shared identity cache `cache`.
    async fn hub_config(sts: &FakeSts, cache: impl ResolveCachedIdentity + 'static) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .http_client(sts.clone())
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKIAHUB",
                "hub-secret",
                None,
                None,
                "hub",
            ))
            .identity_cache(cache)
            .load()
            .await
    }

    #[tokio::test]
    async fn each_account_is_assumed_once_however_many_accounts_a_worker_serves() {
        let sts = FakeSts::default();
        let context = AwsContext::from_config(
            hub_config(&sts, IdentityCache::lazy().build()).await,
            "keyrotor-member",
        );
        // More accounts than the SDK's shared cache holds (64), twice over.
        let accounts: Vec<String> = (0..200u64)
            .map(|i| (100_000_000_000 + i).to_string())
            .collect();
        for _ in 0..2 {
            for account in &accounts {
                let member = context.for_account(account).await;
                aws_sdk_sts::Client::new(&member)
                    .get_caller_identity()
                    .send()
                    .await
                    .expect("answered");
            }
        }
        assert_eq!(sts.assumed(), accounts.len());
    }

    /// An identity cache that counts the lookups made through it.
    #[derive(Debug, Clone)]
    struct CountingCache {
        inner: SharedIdentityCache,
        lookups: Arc<AtomicUsize>,
    }

    impl ResolveCachedIdentity for CountingCache {
        fn resolve_cached_identity<'a>(
            &'a self,
            resolver: SharedIdentityResolver,
            components: &'a RuntimeComponents,
            bag: &'a ConfigBag,
        ) -> IdentityFuture<'a> {
            self.lookups.fetch_add(1, SeqCst);
            self.inner
                .resolve_cached_identity(resolver, components, bag)
        }
    }

    #[tokio::test]
    async fn verifying_new_keys_stays_out_of_the_hub_cache() {
        use crate::aws::verify::{KeyVerifier, StsVerifier};
        let sts = FakeSts::default();
        let hub_cache = CountingCache {
            inner: IdentityCache::lazy().build(),
            lookups: Arc::default(),
        };
        let verifier = StsVerifier::new(&hub_config(&sts, hub_cache.clone()).await);
        for i in 0..100 {
            let secret = secrecy::SecretString::from(format!("new-secret-{i}"));
            verifier
                .verify(&format!("AKIANEW{i:05}"), &secret, USER_ARN)
                .await
                .expect("the key signs as the user");
        }
        // Each key would otherwise take a slot of that cache, and past 64
        // evict the hub's own credentials or a member account's session.
        assert_eq!(hub_cache.lookups.load(SeqCst), 0);
    }

    #[tokio::test]
    async fn every_attempt_has_a_timeout_longer_than_a_long_poll() {
        let context = AwsContext::load("keyrotor-member").await;
        let timeouts = context.base().timeout_config().expect("set");
        assert_eq!(timeouts.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert!(ATTEMPT_TIMEOUT > std::time::Duration::from_secs(20));
        // Member sessions are built from the base: they keep it.
        let member = context.for_account("111122223333").await;
        assert_eq!(
            member
                .timeout_config()
                .and_then(|t| t.operation_attempt_timeout()),
            Some(ATTEMPT_TIMEOUT)
        );
    }

    /// STS assuming any role, and member accounts' IAM answering
    /// `ListUsers` with throttling (`throttling` set) or else a 500 to a
    /// call's first attempt and the answer to its retry; counts IAM attempts.
    #[derive(Debug, Clone, Default)]
    struct FakeMembers {
        throttling: Arc<std::sync::atomic::AtomicBool>,
        iam_attempts: Arc<AtomicUsize>,
    }

    impl HttpConnector for FakeMembers {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let form = String::from_utf8_lossy(request.body().bytes().unwrap_or_default());
            let first_attempt = request
                .headers()
                .get("amz-sdk-request")
                .is_some_and(|h| h.starts_with("attempt=1;"));
            let (status, xml) = if form.contains("Action=AssumeRole") {
                (200, ASSUMED)
            } else {
                self.iam_attempts.fetch_add(1, SeqCst);
                if self.throttling.load(SeqCst) {
                    (
                        400,
                        "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
                         <Message>Rate exceeded</Message></Error></ErrorResponse>",
                    )
                } else if first_attempt {
                    (
                        500,
                        "<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceFailure</Code>\
                         <Message>try again</Message></Error></ErrorResponse>",
                    )
                } else {
                    (
                        200,
                        "<ListUsersResponse><ListUsersResult><Users/><IsTruncated>false\
                         </IsTruncated></ListUsersResult></ListUsersResponse>",
                    )
                }
            };
            let answer =
                HttpResponse::new(status.try_into().expect("a status"), SdkBody::from(xml));
            HttpConnectorFuture::ready(Ok(answer))
        }
    }

    impl HttpClient for FakeMembers {
        fn http_connector(
            &self,
            _settings: &HttpConnectorSettings,
            _components: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(self.clone())
        }
    }

    /// Spends `a`'s retry quota on throttling (until a call is not retried
    /// any more), then makes one call of `b` and one of `a` whose first
    /// attempts fail with a 500: whether each was retried to success.
    async fn starve_a_then_call_both(
        fake: &FakeMembers,
        a: &aws_sdk_iam::Client,
        b: &aws_sdk_iam::Client,
    ) -> (bool, bool) {
        fake.throttling.store(true, SeqCst);
        let mut starved = false;
        for _ in 0..200 {
            let before = fake.iam_attempts.load(SeqCst);
            assert!(a.list_users().send().await.is_err(), "throttled");
            if fake.iam_attempts.load(SeqCst) - before == 1 {
                starved = true;
                break;
            }
        }
        assert!(starved, "a's retries were never refused");
        fake.throttling.store(false, SeqCst);
        let b_ok = b.list_users().send().await.is_ok();
        let a_ok = a.list_users().send().await.is_ok();
        (b_ok, a_ok)
    }

    #[tokio::test]
    async fn throttling_in_one_account_spends_no_other_accounts_retries() {
        let fake = FakeMembers::default();
        let retries = aws_config::retry::RetryConfig::standard()
            .with_max_attempts(5)
            .with_initial_backoff(std::time::Duration::from_millis(1))
            .with_max_backoff(std::time::Duration::from_millis(1));
        let base = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .http_client(fake.clone())
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKIAHUB",
                "hub-secret",
                None,
                None,
                "hub",
            ))
            .retry_config(retries)
            .load()
            .await;
        let context = AwsContext::from_config(base, "keyrotor-member");

        // As the SDK partitions by default (service and region): one quota
        // for every account's client, so one account's throttling starves
        // the others. The name is this test's own; the map is process-wide.
        let shared = |config: SdkConfig| {
            aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(&config)
                    .retry_partition(aws_sdk_iam::config::retry::RetryPartition::new(
                        "keyrotor-test-shared-iam",
                    ))
                    .build(),
            )
        };
        let (a, b) = (
            shared(context.for_account("210000000001").await),
            shared(context.for_account("210000000002").await),
        );
        assert_eq!(starve_a_then_call_both(&fake, &a, &b).await, (false, false));

        // keyrotor's member clients: each account keeps its own.
        let (a, b) = (
            context.iam_in("210000000003").await,
            context.iam_in("210000000004").await,
        );
        assert_eq!(
            starve_a_then_call_both(&fake, &a, &b).await,
            (true, false),
            "b retried, a's quota spent"
        );
        assert_ne!(
            member_retry_partition("secretsmanager", "210000000003"),
            member_retry_partition("iam", "210000000003")
        );
    }
}
