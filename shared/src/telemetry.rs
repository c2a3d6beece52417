//! Logging setup for every binary: `tracing` to stderr, JSON inside Lambda
//! (CloudWatch Logs Insights can query fields), plain text elsewhere, with
//! colours only on a terminal (piped output, as `scripts/demo`'s, stays free
//! of escape codes).
//!
//! The filter: `RUST_LOG` when set; else Lambda's `AWS_LAMBDA_LOG_LEVEL`
//! (the function's application log level) for keyrotor's own crates, the
//! others staying at `info` (or going quieter with it); else `info`. The SDK's own output stays at `warn` unless `RUST_LOG` says
//! otherwise: its wire traces are noise for operators. In Lambda,
//! `AWS_LAMBDA_LOG_FORMAT=Text` asks for text instead of JSON.
//!
//! Per-message context (run, account, user, SQS message id) comes from
//! spans opened by the pool and the Lambda handler, so log lines need not
//! repeat it; JSON lines carry the whole list of spans.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The SDK crates held at `warn` by default.
const QUIET_SDK: &str = "aws_config=warn,aws_smithy_runtime=warn,aws_sdk_sts=warn";

/// keyrotor's own crates (library and binary targets).
const OWN: [&str; 6] = [
    "keyrotor_shared",
    "keyrotor_producer",
    "keyrotor_worker",
    "keyrotor_cli",
    "producer_lambda",
    "worker_lambda",
];

/// How logs are written, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSetup {
    /// The `EnvFilter` directives.
    pub filter: String,
    /// JSON lines (else text).
    pub json: bool,
    /// ANSI colours (text on a terminal only).
    pub ansi: bool,
}

impl LogSetup {
    /// The setup for these environment values: `RUST_LOG`,
    /// `AWS_LAMBDA_LOG_LEVEL`, `AWS_LAMBDA_LOG_FORMAT`, whether this runs
    /// in Lambda and whether stderr is a terminal.
    pub fn choose(
        rust_log: Option<&str>,
        lambda_level: Option<&str>,
        lambda_format: Option<&str>,
        in_lambda: bool,
        terminal: bool,
    ) -> LogSetup {
        let filter = match rust_log.filter(|v| !v.trim().is_empty()) {
            Some(directives) => directives.to_string(),
            None => {
                // Lambda's levels: TRACE DEBUG INFO WARN ERROR FATAL.
                let level = match lambda_level
                    .map(|l| l.trim().to_ascii_uppercase())
                    .as_deref()
                {
                    Some("TRACE") => "trace",
                    Some("DEBUG") => "debug",
                    Some("WARN") => "warn",
                    Some("ERROR") | Some("FATAL") => "error",
                    _ => "info",
                };
                // More detail for keyrotor only: DEBUG must not turn on
                // every HTTP and TLS crate's traces.
                let others = if matches!(level, "warn" | "error") {
                    level
                } else {
                    "info"
                };
                let own: Vec<String> = OWN.iter().map(|c| format!("{c}={level}")).collect();
                format!("{others},{},{QUIET_SDK}", own.join(","))
            }
        };
        let json =
            in_lambda && !lambda_format.is_some_and(|f| f.trim().eq_ignore_ascii_case("text"));
        LogSetup {
            filter,
            json,
            ansi: !json && terminal,
        }
    }

    /// The setup of this process.
    pub fn from_env() -> LogSetup {
        let var = |name| std::env::var(name).ok();
        LogSetup::choose(
            var("RUST_LOG").as_deref(),
            var("AWS_LAMBDA_LOG_LEVEL").as_deref(),
            var("AWS_LAMBDA_LOG_FORMAT").as_deref(),
            std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some(),
            std::io::stderr().is_terminal(),
        )
    }
}

/// Installs the global subscriber; call once at the start of `main`.
pub fn init() {
    let setup = LogSetup::from_env();
    let filter = EnvFilter::try_new(&setup.filter)
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET_SDK}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(setup.ansi);
    if setup.json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        builder.with_target(false).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_then_lambdas_level_then_info() {
        let setup = |rust_log, level| LogSetup::choose(rust_log, level, None, true, false).filter;
        assert_eq!(
            setup(Some("debug,hyper=warn"), Some("ERROR")),
            "debug,hyper=warn"
        );
        let debug = setup(None, Some("DEBUG"));
        assert!(debug.starts_with("info,keyrotor_shared=debug,"), "{debug}");
        assert!(debug.contains("worker_lambda=debug") && debug.ends_with(QUIET_SDK));
        let fatal = setup(None, Some("fatal"));
        assert!(fatal.starts_with("error,keyrotor_shared=error,"), "{fatal}");
        let default = setup(Some(" "), None);
        assert!(
            default.starts_with("info,keyrotor_shared=info,"),
            "{default}"
        );
        assert_eq!(setup(None, Some("nonsense")), default);
        for directives in [debug, fatal, default] {
            assert!(EnvFilter::try_new(&directives).is_ok(), "{directives}");
        }
    }

    #[test]
    fn json_in_lambda_unless_text_is_asked_and_colour_only_on_a_terminal() {
        let lambda = LogSetup::choose(None, None, None, true, true);
        assert!(lambda.json && !lambda.ansi);
        let text = LogSetup::choose(None, None, Some("Text"), true, false);
        assert!(!text.json && !text.ansi);
        let piped = LogSetup::choose(None, None, None, false, false);
        assert!(!piped.json && !piped.ansi, "no escape codes in a pipe");
        let terminal = LogSetup::choose(None, None, None, false, true);
        assert!(!terminal.json && terminal.ansi);
    }
}
