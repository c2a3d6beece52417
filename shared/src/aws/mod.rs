//! Access to AWS: the SDK configuration, a session per member account, and
//! the small ports (traits) the executor talks through, with their SDK
//! adapters.

pub mod iam;
pub mod limits;
pub mod secrets;
pub mod sessions;
pub mod verify;

pub use iam::{IamPort, NewKey, SdkIam, UserInfo};
pub use limits::{IamShare, Limits};
pub use secrets::{SdkSecrets, SecretInfo, SecretsPort, StoreSecret, StoredSecret};
pub use sessions::{member_retry_partition, AwsContext};
pub use verify::{KeyVerifier, StsVerifier};
