//! AWS errors mapped to what they mean for keyrotor. Call sites match on the
//! variant (retry, report, give up), never on strings.

use std::error::Error as StdError;
use std::fmt::{self, Debug};
use std::sync::Arc;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The SDK's error behind an [`AwsError`], kept as its `source()`. Errors
/// compare by meaning, so any two sources are equal.
#[derive(Clone)]
pub struct SdkSource(Arc<dyn StdError + Send + Sync>);

impl SdkSource {
    /// Keeps `err` as a source.
    pub fn new(err: impl StdError + Send + Sync + 'static) -> SdkSource {
        SdkSource(Arc::new(err))
    }
}

impl Debug for SdkSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for SdkSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl StdError for SdkSource {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

impl PartialEq for SdkSource {
    fn eq(&self, _: &SdkSource) -> bool {
        true
    }
}

impl Eq for SdkSource {}

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
        /// The SDK's own error, when the SDK raised it (its chain of
        /// causes and the request id).
        #[source]
        source: Option<SdkSource>,
    },
    /// The user, key, secret or item does not exist.
    #[error("{op}: not found: {message}")]
    NotFound {
        /// The operation.
        op: &'static str,
        /// AWS's message.
        message: String,
        /// The SDK's own error, when the SDK raised it (its chain of
        /// causes and the request id).
        #[source]
        source: Option<SdkSource>,
    },
    /// A quota was hit, e.g. the two-access-keys-per-user limit.
    #[error("{op}: limit exceeded: {message}")]
    LimitExceeded {
        /// The operation.
        op: &'static str,
        /// AWS's message.
        message: String,
        /// The SDK's own error, when the SDK raised it (its chain of
        /// causes and the request id).
        #[source]
        source: Option<SdkSource>,
    },
    /// The caller is not allowed (or the member role cannot be assumed).
    #[error("{op}: access denied: {message}")]
    AccessDenied {
        /// The operation.
        op: &'static str,
        /// AWS's message.
        message: String,
        /// The SDK's own error, when the SDK raised it (its chain of
        /// causes and the request id).
        #[source]
        source: Option<SdkSource>,
    },
    /// A DynamoDB condition did not hold: an answer, not a fault.
    #[error("{op}: condition not met")]
    ConditionFailed {
        /// The operation.
        op: &'static str,
        /// The SDK's own error, when the SDK raised it (its chain of
        /// causes and the request id).
        #[source]
        source: Option<SdkSource>,
    },
    /// The resource exists already (e.g. `CreateSecret` lost a race).
    #[error("{op}: already exists: {message}")]
    AlreadyExists {
        /// The operation.
        op: &'static str,
        /// AWS's message.
        message: String,
        /// The SDK's own error, when the SDK raised it (its chain of
        /// causes and the request id).
        #[source]
        source: Option<SdkSource>,
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
        /// The SDK's own error, when the SDK raised it (its chain of
        /// causes and the request id).
        #[source]
        source: Option<SdkSource>,
    },
    /// No answer: connection, timeout or credential resolution failure.
    #[error("{op}: request failed: {message}")]
    Transport {
        /// The operation.
        op: &'static str,
        /// What went wrong.
        message: String,
        /// The SDK's own error, when the SDK raised it (its chain of
        /// causes and the request id).
        #[source]
        source: Option<SdkSource>,
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
        let error = match code {
            Some(code) => AwsError::from_code(op, &code, message),
            None => AwsError::Transport {
                op,
                message: DisplayErrorContext(&err).to_string(),
                source: None,
            },
        };
        error.with_source(SdkSource::new(err))
    }

    /// This error, with `source` as its cause.
    pub fn with_source(mut self, source: SdkSource) -> AwsError {
        match &mut self {
            AwsError::Throttled { source: s, .. }
            | AwsError::NotFound { source: s, .. }
            | AwsError::LimitExceeded { source: s, .. }
            | AwsError::AccessDenied { source: s, .. }
            | AwsError::ConditionFailed { source: s, .. }
            | AwsError::AlreadyExists { source: s, .. }
            | AwsError::Service { source: s, .. }
            | AwsError::Transport { source: s, .. } => *s = Some(source),
        }
        self
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
            | "TooManyRequests" => AwsError::Throttled {
                op,
                message,
                source: None,
            },
            "NoSuchEntity"
            | "ResourceNotFoundException"
            | "NotFound"
            | "AccountNotFoundException" => AwsError::NotFound {
                op,
                message,
                source: None,
            },
            "LimitExceeded" | "LimitExceededException" => AwsError::LimitExceeded {
                op,
                message,
                source: None,
            },
            "AccessDenied"
            | "AccessDeniedException"
            | "UnauthorizedOperation"
            | "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "AWSOrganizationsNotInUseException" => AwsError::AccessDenied {
                op,
                message,
                source: None,
            },
            "ConditionalCheckFailedException" => AwsError::ConditionFailed { op, source: None },
            "ResourceExistsException" | "EntityAlreadyExists" => AwsError::AlreadyExists {
                op,
                message,
                source: None,
            },
            _ => AwsError::Service {
                op,
                code: code.to_string(),
                message,
                source: None,
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
        assert!(
            StdError::source(&m("AccessDenied")).is_none(),
            "no SDK error behind"
        );
        assert!(matches!(m("Weird"), AwsError::Service { .. }));
    }

    #[test]
    fn an_sdk_error_keeps_its_meaning_request_id_and_source() {
        use aws_sdk_sts::operation::assume_role::AssumeRoleError;
        use aws_smithy_runtime_api::http::{Response, StatusCode};
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;

        let meta = ErrorMetadata::builder()
            .code("AccessDenied")
            .message("not authorized to perform sts:AssumeRole")
            .custom("aws_request_id", "0f5c-req")
            .build();
        let err = SdkError::service_error(
            AssumeRoleError::generic(meta),
            Response::new(StatusCode::try_from(403).unwrap(), SdkBody::empty()),
        );
        let mapped = AwsError::from_sdk("sts:AssumeRole", err);
        assert!(matches!(mapped, AwsError::AccessDenied { .. }), "{mapped}");
        assert!(
            mapped.to_string().contains("(request id 0f5c-req)"),
            "{mapped}"
        );
        let source = StdError::source(&mapped).expect("the SDK error is kept");
        assert!(source.to_string().contains("service error"), "{source}");
        assert_eq!(mapped.clone(), mapped, "errors compare by meaning");
    }
}
