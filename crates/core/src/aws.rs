//! AWS client set-up and the one place that decides which SDK errors are worth retrying.
//!
//! Production code knows nothing of emulators: endpoints come from the SDK's standard
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables or an explicit
//! `endpoint_url` in the config, exactly as with the AWS CLI.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Deserialize;

/// AWS settings shared by every daemon's config file (`[aws]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region; when absent the SDK's default chain decides (AWS_REGION, profile, IMDS).
    #[serde(default)]
    pub region: Option<String>,
    /// One endpoint for every service (tests and emulators). When set it wins over the
    /// `AWS_ENDPOINT_URL_<SERVICE>` variables; leave it out to use those per service.
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

/// Loads the SDK configuration from the default chain plus `cfg`.
pub async fn sdk_config(cfg: &AwsConfig) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &cfg.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &cfg.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// How a failed AWS call should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Throttling, 5xx, timeouts, connection failures: try again after a backoff.
    Transient,
    /// Validation, missing resources, auth: retrying cannot help.
    Permanent,
}

/// Error codes AWS services use for "slow down" and "try again".
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "InternalServiceError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "KMSThrottlingException",
    "TransactionConflictException",
    "LimitExceededException",
];

/// Classifies one per-record or per-request error code (as in PutRecords results).
pub fn classify_code(code: &str) -> Retry {
    if RETRYABLE_CODES.contains(&code) {
        Retry::Transient
    } else {
        Retry::Permanent
    }
}

/// Classifies an SDK error: the single rule every AWS integration in sameday uses.
pub fn classify<E: ProvideErrorMetadata>(err: &SdkError<E, Response>) -> Retry {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Retry::Transient,
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            if status >= 500 || status == 429 {
                return Retry::Transient;
            }
            se.err().code().map(classify_code).unwrap_or(Retry::Permanent)
        }
        SdkError::ConstructionFailure(_) => Retry::Permanent,
        _ => Retry::Transient,
    }
}

/// A short, log-friendly description of an SDK error: code, message and HTTP status.
pub fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(err: &SdkError<E, Response>) -> String {
    match err {
        SdkError::ServiceError(se) => format!(
            "{} (HTTP {}): {}",
            se.err().code().unwrap_or("unknown error"),
            se.raw().status().as_u16(),
            se.err().message().unwrap_or("no message")
        ),
        other => {
            let mut s = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(e) = src {
                s.push_str(": ");
                s.push_str(&e.to_string());
                src = e.source();
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_transient_validation_is_not() {
        assert_eq!(classify_code("ProvisionedThroughputExceededException"), Retry::Transient);
        assert_eq!(classify_code("InternalFailure"), Retry::Transient);
        assert_eq!(classify_code("ValidationException"), Retry::Permanent);
        assert_eq!(classify_code("ResourceNotFoundException"), Retry::Permanent);
    }
}
