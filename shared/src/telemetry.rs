//! Logging setup for every binary: `tracing` to stderr, JSON inside Lambda
//! (CloudWatch Logs Insights can query fields), plain text on a terminal.
//! `RUST_LOG` overrides the default `info` filter. The SDK's own debug output
//! is left at `warn`: its wire traces are noise for operators.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; call once at the start of `main`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn,aws_sdk_sts=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        builder.json().with_current_span(false).init();
    } else {
        builder.with_target(false).init();
    }
}
