//! The scale simulator (DESIGN §9): the real producer, worker pool and
//! executor, run over simulated adapters of every AWS port on tokio's
//! paused clock, so that hours of AWS time take seconds and a seed gives
//! the same run every time. What is modelled, and what is not, is in
//! `loadtest/README.md`.

pub mod aws;
pub mod chart;
pub mod lambda;
pub mod model;
pub mod queue;
pub mod reference;
pub mod report;
pub mod table;
pub mod world;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use clap::Parser;
use keyrotor_producer::enqueue::Enqueuer;
use keyrotor_producer::run::{ProduceRequest, Producer, ProducerParts};
use keyrotor_producer::ses_rate::SesRateRecorder;
use keyrotor_shared::aws::Limits;
use keyrotor_shared::config::{SesFleetRate, Settings, SettingsArgs};
use keyrotor_shared::domain::Mode;
use keyrotor_shared::events::EventSink;
use keyrotor_shared::executor::Executor;
use keyrotor_worker::digest::Templates;
use keyrotor_worker::pool::{run_pool, PoolConfig, PoolStats};
use keyrotor_worker::process::{Email, Worker};
use keyrotor_worker::setup::digest_mailer;
use tokio_util::sync::CancellationToken;

use self::aws::{Sim, SimDirectory, SimEvents, SimInventory, SimMailer, SimPorts, SimSesAccount};
use self::lambda::LambdaConfig;
use self::model::{Model, ModelConfig};
use self::queue::SimQueue;
use self::report::Report;
use self::table::SimTable;
use self::world::{Shape, World};

/// One simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The Organization.
    pub shape: Shape,
    /// The model of AWS.
    pub model: ModelConfig,
    /// Worker processes (each its own pool, rate limits and sessions).
    pub workers: usize,
    /// Messages in flight per worker.
    pub concurrency: usize,
    /// `KEYROTOR_*` settings on top of the simulator's own (as
    /// `--flag value` pairs; the environment applies too).
    pub settings: Vec<String>,
    /// Crash one worker process (round robin) this often, replacing it.
    pub crash_every: Option<Duration>,
    /// Run the worker as the Lambda function behind its event source
    /// mapping instead of `workers` pools (`workers`, `concurrency` and
    /// `crash_every` do not apply then).
    pub lambda: Option<LambdaConfig>,
}

/// The settings every simulated process runs with: the IAM rate is the
/// model's (an operator sets it to their accounts' budget), then `extra`.
fn settings(model: &ModelConfig, extra: &[String]) -> anyhow::Result<Settings> {
    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        settings: SettingsArgs,
    }
    let mut argv: Vec<String> = [
        "sim",
        "--queue-url",
        "https://sqs.us-east-1.amazonaws.com/123456789012/keyrotor-work.fifo",
        "--table",
        "keyrotor-sim",
        "--mode",
        "enforce",
        "--topic-arn",
        "arn:aws:sns:us-east-1:123456789012:keyrotor-events",
        "--sender",
        "keyrotor@example.com",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let rate = (model.iam_rps.floor() as u32).max(1).to_string();
    for flag in ["--iam-rate", "--iam-burst"] {
        if !extra.iter().any(|e| e == flag) {
            argv.extend([flag.to_string(), rate.clone()]);
        }
    }
    argv.extend(extra.iter().cloned());
    let args = Args::try_parse_from(argv)?;
    Ok(Settings::from_args(&args.settings)?)
}

/// Runs the keyrotor shape: the producer and `workers` pools at once,
/// until every message has a result (or went to the DLQ).
pub async fn simulate(config: &SimConfig) -> anyhow::Result<Report> {
    if config.lambda.is_some() && config.crash_every.is_some() {
        anyhow::bail!("crashes are simulated for worker pools only, not the Lambda shape");
    }
    let mut extra = config.settings.clone();
    if let Some(lambda) = config.lambda {
        // As the hub stack sets it for the producer.
        if !extra.iter().any(|e| e == "--fleet-groups") {
            extra.extend(["--fleet-groups".into(), lambda.max_concurrency.to_string()]);
        }
    }
    let settings = Arc::new(settings(&config.model, &extra)?);
    let as_of = Utc::now().trunc_subsecs(3);
    let model = Arc::new(Model::new(config.model.clone(), as_of));
    let world = World::build(&config.shape, as_of);
    let users = (world.users(), world.due_users(as_of) as u64);
    let sim = Sim {
        model: model.clone(),
        world: Arc::new(Mutex::new(world)),
    };
    let table = SimTable::new(model.clone());
    let queue = SimQueue::new(model.clone(), settings.max_receives);
    let events = Arc::new(SimEvents {
        sim: sim.clone(),
        published: Mutex::new(Default::default()),
        summaries: Default::default(),
    });
    let templates = Arc::new(Templates::load(None)?);

    let producer = Producer::from_parts(
        settings.clone(),
        ProducerParts {
            inventory: Box::new(SimInventory { sim: sim.clone() }),
            directory: Arc::new(SimDirectory { sim: sim.clone() }),
            runs: Arc::new(table.clone()),
            enqueuer: Enqueuer::new(Arc::new(queue.clone())),
            events: Some(events.clone() as Arc<dyn EventSink>),
            breaker: None,
            waves: None,
            ses_rate: (settings.ses_fleet_rate == SesFleetRate::Auto).then(|| {
                SesRateRecorder::new(
                    Arc::new(SimSesAccount { sim: sim.clone() }),
                    Arc::new(table.clone()),
                )
            }),
        },
    );
    let run_id = "sim-run".to_string();
    let request = ProduceRequest {
        run_id: Some(run_id.clone()),
        as_of,
        mode: Mode::Enforce,
        force_users: Vec::new(),
        accounts: None,
    };

    let shutdown = CancellationToken::new();
    let process = Process {
        settings: settings.clone(),
        sim: sim.clone(),
        table: table.clone(),
        queue: queue.clone(),
        events: events.clone(),
        templates,
        concurrency: config.concurrency,
        shutdown: shutdown.clone(),
    };
    let mut pools = tokio::task::JoinSet::new();
    let timeouts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut handles: Vec<tokio::task::AbortHandle> = match config.lambda {
        Some(lambda) => {
            let environments = process.clone();
            pools.spawn(lambda::run_mapping(
                lambda,
                queue.clone(),
                move || environments.worker(),
                timeouts.clone(),
                shutdown.clone(),
            ));
            Vec::new()
        }
        None => (0..config.workers)
            .map(|_| pools.spawn(process.run()))
            .collect(),
    };
    // A crash: one process dies at once (its tasks, heartbeats and unsent
    // deletes with it) and a fresh one takes its place, as an instance
    // replaced by Lambda or an orchestrator would.
    let crashed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let crashes = config.crash_every.map(|every| {
        let process = process.clone();
        let count = crashed.clone();
        tokio::spawn(async move {
            let mut replacements = tokio::task::JoinSet::new();
            let mut crashed = 0usize;
            loop {
                tokio::time::sleep(every).await;
                let victim = crashed % handles.len();
                handles[victim].abort();
                handles[victim] = replacements.spawn(process.run());
                crashed += 1;
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    process = victim,
                    crashed,
                    "a worker process crashed and was replaced"
                );
            }
        })
    });
    let produced = producer.produce(&request, &|_, _| {}).await?;
    // Done when nothing is left on the queue: a message leaves it once its
    // result is recorded and the digest or summary it owed went out, or for
    // the DLQ. A message reaches the DLQ when each of its receives died
    // with its process or found the user locked by a dead one: the DLQ's
    // alarm then has an operator redrive it, which is modelled once here;
    // what is left unrecorded after that is lost.
    let mut redriven = false;
    loop {
        while queue.left() > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if redriven || queue.redrive() == 0 {
            break;
        }
        redriven = true;
    }
    if let Some(crashes) = crashes {
        crashes.abort();
    }
    shutdown.cancel();
    while let Some(pool) = pools.join_next().await {
        match pool {
            Ok(result) => result?,
            Err(e) if e.is_cancelled() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut report = Report::keyrotor(
        config,
        users,
        produced.enqueued,
        &sim,
        &table,
        &run_id,
        &queue.stats(),
    );
    report.crashes = crashed.load(std::sync::atomic::Ordering::Relaxed);
    report.dead_lettered = queue.stats().dead;
    report.timeouts = timeouts.load(std::sync::atomic::Ordering::Relaxed);
    report.summaries = events.summaries.load(std::sync::atomic::Ordering::Relaxed);
    Ok(report)
}

/// What a simulated worker process is made of: each run of it is a fresh
/// process (its own limits, sessions and lock owner id).
#[derive(Clone)]
struct Process {
    settings: Arc<Settings>,
    sim: Sim,
    table: SimTable,
    queue: SimQueue,
    events: Arc<SimEvents>,
    templates: Arc<Templates>,
    concurrency: usize,
    shutdown: CancellationToken,
}

impl Process {
    /// A fresh process's worker: its own limits, sessions and owner id.
    fn worker(&self) -> Worker {
        let p = self;
        let limits = Limits::new(&p.settings);
        let executor = Arc::new(Executor::new(
            p.settings.clone(),
            Arc::new(SimPorts::new(p.sim.clone(), limits.clone())),
            Arc::new(p.table.clone()),
            Executor::process_owner_id(),
        ));
        Worker::new(
            p.settings.clone(),
            executor,
            Arc::new(p.table.clone()),
            Arc::new(p.table.clone()),
            Some(p.events.clone() as Arc<dyn EventSink>),
            Some(Email {
                sender: "keyrotor@example.com".into(),
                mailer: digest_mailer(
                    &p.settings,
                    Arc::new(SimMailer::new(p.sim.clone())),
                    limits,
                    Arc::new(p.table.clone()),
                ),
                templates: p.templates.clone(),
            }),
        )
        .with_queue(Arc::new(p.queue.clone()))
    }

    /// Starts the process: its pool, until shutdown.
    fn run(&self) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static {
        let p = self.clone();
        let worker = p.worker();
        let pool = PoolConfig {
            concurrency: p.concurrency,
            until_idle: None,
            visibility: Duration::from_secs(120),
        };
        run_pool(
            Arc::new(worker),
            Arc::new(p.queue.clone()),
            pool,
            p.shutdown.clone(),
            Arc::new(PoolStats::default()),
        )
    }
}

/// Runs `f` on a single-threaded runtime whose clock starts paused: time
/// jumps to the next timer whenever every task waits, and the run is
/// deterministic for the model's seed.
pub fn on_paused_clock<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
        .block_on(f)
}
