//! AWS errors mapped to what they mean for keyrotor. Call sites match on the
//! variant (retry, report, give up), never on strings.

use std::error::Error as StdError;
use std::fmt::Debug;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// A failed AWS call, by meaning. Every variant names the operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsError {
    /// The service asked us to slow down; retry with backoff.
    #[error("{op}: throttled by AWS: {message}")]
    Throttled {
        /// The operation, e.g. `iam:CreateAccessKey`.
        op: &'static str,
        /// AWS's message.
        message: String,
    },
    /// The user, key, secret or item does not exist.
    #[error("{op}: not found: {message}")]
    NotFound {
        /// The operation.
        op: &'static str,
        /// AWS's message.
        message: String,
    },
    /// A quota was hit, e.g. the two-access-keys-per-user limit.
    #[error("{op}: limit exceeded: {message}")]
    LimitExceeded {
        /// The operation.
        op: &'static str,
        /// AWS's message.
        message: String,
    },
    /// The caller is not allowed (or the member role cannot be assumed).
    #[error("{op}: access denied: {message}")]
    AccessDenied {
        /// The operation.
        op: &'static str,
        /// AWS's message.
        message: String,
    },
    /// A DynamoDB condition did not hold: an answer, not a fault.
    #[error("{op}: condition not met")]
    ConditionFailed {
        /// The operation.
        op: &'static str,
    },
    /// The resource exists already (e.g. `CreateSecret` lost a race).
    #[error("{op}: already exists: {message}")]
    AlreadyExists {
        /// The operation.
        op: &'static str,
        /// AWS's message.
        message: String,
    },
    /// Any other error answered by the service.
    #[error("{op}: {code}: {message}")]
    Service {
        /// The operation.
        op: &'static str,
        /// AWS's error code.
        code: String,
        /// AWS's message.
        message: String,
    },
    /// No answer: connection, timeout or credential resolution failure.
    #[error("{op}: request failed: {message}")]
    Transport {
        /// The operation.
        op: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl AwsError {
    /// Whether trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            AwsError::Throttled { .. } | AwsError::Transport { .. }
        ) || matches!(self, AwsError::Service { code, .. } if code.starts_with("Internal")
            || code.contains("ServiceUnavailable")
            || code == "ServiceFailure"
            || code == "TransactionConflictException"
            || code == "TransactionConflict")
    }

    /// Maps an SDK error of operation `op` to its meaning.
    pub fn from_sdk<E, R>(op: &'static str, err: SdkError<E, R>) -> AwsError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        R: Debug + Send + Sync + 'static,
    {
        let code = err.code().map(str::to_string);
        let mut message = err.message().unwrap_or_default().to_string();
        // The request id is what AWS support asks for.
        if let Some(id) = err.meta().extra("aws_request_id") {
            message = format!("{message} (request id {id})");
        }
        match code {
            Some(code) => AwsError::from_code(op, &code, message),
            None => AwsError::Transport {
                op,
                message: DisplayErrorContext(&err).to_string(),
            },
        }
    }

    /// Maps an AWS error code (as the services spell them) to its meaning.
    pub fn from_code(op: &'static str, code: &str, message: String) -> AwsError {
        match code {
            "Throttling"
            | "ThrottlingException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "ProvisionedThroughputExceededException"
            | "RequestThrottled"
            | "SlowDown"
            | "TooManyRequests" => AwsError::Throttled { op, message },
            "NoSuchEntity"
            | "ResourceNotFoundException"
            | "NotFound"
            | "AccountNotFoundException" => AwsError::NotFound { op, message },
            "LimitExceeded" | "LimitExceededException" => AwsError::LimitExceeded { op, message },
            "AccessDenied"
            | "AccessDeniedException"
            | "UnauthorizedOperation"
            | "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "AWSOrganizationsNotInUseException" => AwsError::AccessDenied { op, message },
            "ConditionalCheckFailedException" => AwsError::ConditionFailed { op },
            "ResourceExistsException" | "EntityAlreadyExists" => {
                AwsError::AlreadyExists { op, message }
            }
            _ => AwsError::Service {
                op,
                code: code.to_string(),
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_meanings() {
        let m = |c: &str| AwsError::from_code("x:Y", c, "m".into());
        assert!(matches!(m("Throttling"), AwsError::Throttled { .. }));
        assert!(m("Throttling").is_retryable());
        assert!(matches!(m("NoSuchEntity"), AwsError::NotFound { .. }));
        assert!(matches!(m("LimitExceeded"), AwsError::LimitExceeded { .. }));
        assert!(matches!(m("AccessDenied"), AwsError::AccessDenied { .. }));
        assert!(matches!(
            m("ConditionalCheckFailedException"),
            AwsError::ConditionFailed { .. }
        ));
        assert!(matches!(
            m("ResourceExistsException"),
            AwsError::AlreadyExists { .. }
        ));
        assert!(!m("AccessDenied").is_retryable());
        assert!(matches!(m("Weird"), AwsError::Service { .. }));
    }
}
