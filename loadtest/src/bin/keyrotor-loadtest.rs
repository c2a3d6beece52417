//! `keyrotor-loadtest sim`: the scale simulator's command line.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use keyrotor_loadtest::sim::lambda::LambdaConfig;
use keyrotor_loadtest::sim::model::{ModelConfig, QuotaScope};
use keyrotor_loadtest::sim::world::Shape;
use keyrotor_loadtest::sim::{self, chart, on_paused_clock, SimConfig};

#[derive(Parser)]
#[command(name = "keyrotor-loadtest", about = "keyrotor's load tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulates a sweep of an Organization on tokio's paused clock.
    Sim(SimArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShapeArg {
    /// keyrotor: the real producer, pools and executor.
    Keyrotor,
    /// The reference pattern: one sequential function per account.
    Reference,
    /// Both, side by side.
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Lines for a person.
    Text,
    /// One JSON object (an array of two for `--shape both`).
    Json,
}

#[derive(clap::Args)]
struct SimArgs {
    /// Member accounts.
    #[arg(long, default_value_t = 20)]
    accounts: usize,
    /// IAM users in each account.
    #[arg(long, default_value_t = 100)]
    users_per_account: usize,
    /// Fraction of users whose key is due for rotation.
    #[arg(long, default_value_t = 0.3)]
    due: f64,
    /// IAM calls per second each account allows.
    #[arg(long, default_value_t = 10.0)]
    iam_rps: f64,
    /// Users in the first account instead (a skewed Organization).
    #[arg(long)]
    skew: Option<usize>,
    /// Which pattern to simulate.
    #[arg(long, value_enum, default_value = "keyrotor")]
    shape: ShapeArg,
    /// The RNG seed: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker processes (pools).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// FIFO groups worked at once per worker (`keyrotor work --concurrency`).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Probability that a call answers a 5xx (the SDK retries it).
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Throttling bursts, as `EVERY:LENGTH` in seconds: every EVERY s,
    /// each account's IAM answers every call `Throttling` for LENGTH s (at
    /// an offset of its own), as when another tool spends its budget.
    #[arg(long, value_parser = parse_bursts)]
    throttle_bursts: Option<(std::time::Duration, std::time::Duration)>,
    /// Probability that `CreateAccessKey` makes the key and its answer is
    /// lost (a timeout).
    #[arg(long, default_value_t = 0.0)]
    lost_create_rate: f64,
    /// SES sends per second for the hub.
    #[arg(long, default_value_t = 14.0)]
    ses_rps: f64,
    /// Each process's SES sends spend the SDK's default retry quota (500
    /// tokens, 5 a retry), as before keyrotor gave them a retry partition
    /// of their own.
    #[arg(long)]
    ses_retry_quota: bool,
    /// The SDK's retry quota that each process's IAM retries spend: one per
    /// member account (keyrotor's retry partitions) or one for the process
    /// (the SDK's default partition).
    #[arg(long, value_enum, default_value = "account")]
    iam_retry_quota: QuotaScope,
    /// SQS API calls per second per action on the work queue.
    #[arg(long, default_value_t = 3000.0)]
    sqs_rps: f64,
    /// Crash one worker process this often (seconds, round robin) and start
    /// a fresh one in its place.
    #[arg(long)]
    crash_every: Option<u64>,
    /// Run the worker as the hub stack deploys it, a Lambda function behind
    /// an SQS event source mapping with this `MaximumConcurrency` (batches
    /// of 10, a 300 s timeout, visibility 1,800 s), instead of `--workers`
    /// pools of `--concurrency`.
    #[arg(long, value_parser = clap::value_parser!(u16).range(2..=1000))]
    lambda_max_concurrency: Option<u16>,
    /// With `--lambda-max-concurrency`: the function's timeout in seconds
    /// (one of the hub stack's `WorkerTimeoutSeconds`), the queue's
    /// visibility timeout 6 times it, as the stack derives it.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=900))]
    lambda_timeout: u64,
    /// A `KEYROTOR_*` setting for every simulated process, as
    /// `--set iam-rate=10` (the flag's name without `--`); repeatable.
    #[arg(long = "set", value_name = "FLAG=VALUE")]
    set: Vec<String>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    /// Writes an SVG chart of progress over time here.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Logs keyrotor's own events (`RUST_LOG` filter, e.g. `info`) to
    /// stderr, stamped with simulated seconds.
    #[arg(long)]
    trace: bool,
}

/// `EVERY:LENGTH` seconds, LENGTH shorter than EVERY.
fn parse_bursts(s: &str) -> Result<(std::time::Duration, std::time::Duration), String> {
    let (every, length) = s
        .split_once(':')
        .ok_or_else(|| format!("{s}: expected EVERY:LENGTH (seconds)"))?;
    let secs = |v: &str| {
        v.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| format!("{v}: expected a positive number of seconds"))
    };
    let (every, length) = (secs(every)?, secs(length)?);
    if length >= every {
        return Err(format!("{s}: a burst must be shorter than its period"));
    }
    Ok((every, length))
}

/// Simulated seconds since the first event (tokio's paused clock).
struct SimTime(std::sync::OnceLock<tokio::time::Instant>);

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let start = *self.0.get_or_init(tokio::time::Instant::now);
        write!(w, "{:>10.3}s", start.elapsed().as_secs_f64())
    }
}

fn main() -> anyhow::Result<()> {
    let Command::Sim(args) = Cli::parse().command;
    if args.trace {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_timer(SimTime(std::sync::OnceLock::new()))
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .init();
    }
    let mut settings = Vec::new();
    for s in &args.set {
        let (flag, value) = s
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--set {s}: expected FLAG=VALUE"))?;
        settings.push(format!("--{flag}"));
        settings.push(value.to_string());
    }
    let config = SimConfig {
        shape: Shape {
            accounts: args.accounts,
            users_per_account: args.users_per_account,
            skew_users: args.skew,
            due: args.due,
        },
        model: ModelConfig {
            iam_rps: args.iam_rps,
            ses_rps: args.ses_rps,
            sqs_api_rps: args.sqs_rps,
            fault_rate: args.fault_rate,
            throttle_bursts: args.throttle_bursts,
            lost_create_rate: args.lost_create_rate,
            ses_retry_quota: args.ses_retry_quota,
            iam_retry_quota: Some(args.iam_retry_quota),
            seed: args.seed,
            ..ModelConfig::default()
        },
        workers: args.workers,
        concurrency: args.concurrency,
        settings,
        crash_every: args.crash_every.map(std::time::Duration::from_secs),
        lambda: args.lambda_max_concurrency.map(|n| LambdaConfig {
            timeout: std::time::Duration::from_secs(args.lambda_timeout),
            visibility: std::time::Duration::from_secs(6 * args.lambda_timeout),
            ..LambdaConfig::with_max_concurrency(usize::from(n))
        }),
    };
    let started = std::time::Instant::now();
    let mut reports = Vec::new();
    if args.shape != ShapeArg::Reference {
        reports.push(on_paused_clock(sim::simulate(&config))?);
    }
    if args.shape != ShapeArg::Keyrotor {
        reports.push(on_paused_clock(sim::reference::simulate(&config)));
    }
    let wall = started.elapsed();
    let printed = match args.output {
        Output::Json if reports.len() == 1 => serde_json::to_string_pretty(&reports[0])? + "\n",
        Output::Json => serde_json::to_string_pretty(&reports)? + "\n",
        Output::Text => reports.iter().map(|r| r.text() + "\n").collect(),
    };
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().lock().write_all(printed.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    if args.output == Output::Text {
        eprintln!("simulated in {:.1} s of wall time", wall.as_secs_f64());
    }
    if let Some(path) = &args.chart {
        let users = match args.skew {
            Some(first) => format!("{} users (the first of {first})", args.users_per_account),
            None => format!("{} users", args.users_per_account),
        };
        let title = format!(
            "{} accounts × {users}, {:.0}% due, IAM {} rps per account",
            args.accounts,
            args.due * 100.0,
            args.iam_rps
        );
        let refs: Vec<_> = reports.iter().collect();
        std::fs::write(path, chart::svg(&title, &refs))?;
    }
    Ok(())
}
