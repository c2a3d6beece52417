//! `keyrotor work`: the long-running worker pool.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::{ConfigError, Settings};
use keyrotor_shared::queue::SqsQueue;
use keyrotor_worker::pool::{run_pool, PoolConfig, PoolStats};
use keyrotor_worker::setup::build_worker;
use tokio_util::sync::CancellationToken;

use crate::{Cli, CliError};

/// `work` flags.
#[derive(Args, Debug)]
pub struct WorkArgs {
    /// FIFO message groups worked at once (each three of its messages at a time).
    #[arg(long, env = "KEYROTOR_WORK_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Exit once the queue has been empty this many seconds (default: run until a signal).
    #[arg(long, env = "KEYROTOR_UNTIL_IDLE")]
    pub until_idle: Option<u64>,
    /// Visibility timeout of a message being worked, renewed by a heartbeat.
    #[arg(long, env = "KEYROTOR_VISIBILITY_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(5..=43200))]
    pub visibility_secs: u64,
}

/// Runs `work`.
pub async fn run(cli: &Cli, args: &WorkArgs) -> Result<ExitCode, CliError> {
    let settings = Arc::new(Settings::from_args(&cli.settings)?);
    let queue_url = settings.queue_url.clone().ok_or(ConfigError {
        env: "KEYROTOR_QUEUE_URL".into(),
        flag: "queue-url".into(),
        message: "is required to work (the work queue; `keyrotor init` prints it)".into(),
    })?;
    let aws = AwsContext::load(&settings.role_name).await;
    let worker = Arc::new(build_worker(settings.clone(), &aws).map_err(CliError::Failed)?);
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("signal received: finishing the messages in flight, receiving no more");
        signals.cancel();
    });
    let stats = Arc::new(PoolStats::default());
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(250));
        let (bar2, stats2) = (bar.clone(), stats.clone());
        let ticker = tokio::spawn(async move {
            loop {
                bar2.set_message(stats2.line());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        (bar, ticker)
    });
    let config = PoolConfig {
        concurrency: args.concurrency as usize,
        until_idle: args.until_idle.map(Duration::from_secs),
        visibility: Duration::from_secs(args.visibility_secs),
    };
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(aws.base()),
        queue_url,
    ));
    run_pool(worker, queue, config, shutdown, stats.clone())
        .await
        .map_err(CliError::Failed)?;
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    eprintln!("work: {}", stats.line());
    // Users that failed for good, and messages on their way to the DLQ, are
    // failures; a retry (a busy user, throttling) is not.
    let failed = stats.failed.load(Ordering::Relaxed)
        + stats.malformed.load(Ordering::Relaxed)
        + stats.rejected.load(Ordering::Relaxed);
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
