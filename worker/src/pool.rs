//! The long-running worker pool (`keyrotor work`): long-poll receives of up
//! to 10 messages, at most `concurrency` groups worked at once, a visibility heartbeat
//! per message (stopped before the delete, so a late extension cannot
//! revive a deleted message's receipt), batched deletes whose every entry is
//! checked, failed messages made visible again with backoff, and a clean
//! stop on a signal (no new receives; what is in flight finishes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use keyrotor_shared::domain::Outcome;
use keyrotor_shared::queue::{QueuePort, Received};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::process::{Handled, MessageFailure, Worker, GROUP_WINDOW};

/// How the pool runs.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// FIFO groups worked at once at most (a standard queue's messages are
    /// groups of one). A group's messages are worked in order,
    /// [`GROUP_WINDOW`] at a time; a receive may hand over up to 10 of a
    /// group's messages, which wait their turn (in flight, not worked).
    pub concurrency: usize,
    /// Stop once no message has arrived for this long and none is in flight.
    pub until_idle: Option<Duration>,
    /// Visibility timeout each heartbeat extends to.
    pub visibility: Duration,
}

/// Counters, for progress and the final report.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Messages received.
    pub received: AtomicU64,
    /// Messages processed and deleted.
    pub done: AtomicU64,
    /// Of those, users whose processing failed for good (recorded as `failed`).
    pub failed: AtomicU64,
    /// Duplicates deleted without work.
    pub duplicates: AtomicU64,
    /// Messages left for retry (transient failures).
    pub retried: AtomicU64,
    /// Malformed messages left for the DLQ.
    pub malformed: AtomicU64,
    /// Messages that contradicted their run record: not acted on, deleted.
    pub rejected: AtomicU64,
    /// Messages in flight now.
    pub in_flight: AtomicU64,
    /// Done messages whose delete has not gone out yet.
    pub pending_deletes: AtomicU64,
}

impl PoolStats {
    /// A one-line summary.
    pub fn line(&self) -> String {
        format!(
            "received {} · done {} (failed {}) · duplicates {} · retried {} · malformed {} · rejected {} · in flight {}",
            self.received.load(Ordering::Relaxed),
            self.done.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.duplicates.load(Ordering::Relaxed),
            self.retried.load(Ordering::Relaxed),
            self.malformed.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
        )
    }
}

/// Retry delay for a message received `receive_count` times: 10 s doubling,
/// at most 15 minutes, so a busy user or a throttled account is revisited
/// soon but a persistent failure does not spin.
pub fn retry_delay(receive_count: u32) -> Duration {
    let secs = 10u64.saturating_mul(1 << receive_count.saturating_sub(1).min(7));
    Duration::from_secs(secs.min(900))
}

/// The retry delay of a failed message: none for a malformed body (it goes
/// to the DLQ after its last receive); until the time the failure named (a
/// busy user's lease end, plus a second); or else the backoff ladder. The
/// pool and the Lambda handler both time retries with it.
pub fn delay_for(failure: &MessageFailure, receive_count: u32) -> Duration {
    match failure {
        // It will never decode: let redrive move it to the DLQ soon.
        MessageFailure::Malformed(_) => Duration::ZERO,
        MessageFailure::Retry {
            not_before: Some(at),
            ..
        } => {
            let wait = (*at - keyrotor_shared::time::now())
                .num_milliseconds()
                .max(0) as u64;
            Duration::from_millis(wait + 1_000).min(Duration::from_secs(900))
        }
        _ => retry_delay(receive_count),
    }
}

/// Whether the queue holds nothing at all: no visible message, none in
/// flight (here or in another pool, or left invisible by a process that
/// died) and none delayed. Only then may an idle pool stop: a FIFO group
/// whose message a dead pool held comes back when its visibility ends.
async fn queue_is_empty(queue: &dyn QueuePort) -> bool {
    match queue.depth().await {
        Ok(0) => true,
        Ok(total) => {
            tracing::info!(
                messages = total,
                "queue idle here but not empty; waiting for the rest"
            );
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell whether the queue is empty; still waiting");
            false
        }
    }
}

/// Receives a pool sends at once, at most. A FIFO receive hands over the
/// messages of one group (as many as it can, up to 10), so a pool that
/// sent one receive at a time took on one group a round trip (some 50 a
/// second), and a large pool took seconds to fill its permits and to
/// refill those its groups freed. (In the load simulator this came with
/// the filling delete batches below, which made most of the difference.)
pub const RECEIVES_AT_ONCE: usize = 8;

/// The sizes of the receives to send with `available` free permits: one
/// receive when the pool is quiet (an idle pool long-polls once), else up
/// to [`RECEIVES_AT_ONCE`] of 10 messages, never asking for more messages
/// than there are free permits, so that every group received has one.
fn receive_sizes(available: usize, quiet: bool) -> Vec<usize> {
    let receives = if quiet {
        1
    } else {
        (available / 10).clamp(1, RECEIVES_AT_ONCE)
    };
    let each = (available / receives).clamp(1, 10);
    vec![each; receives]
}

/// Runs the pool until `shutdown` is cancelled or the queue stays idle.
pub async fn run_pool(
    worker: Arc<Worker>,
    queue: Arc<dyn QueuePort>,
    config: PoolConfig,
    shutdown: CancellationToken,
    stats: Arc<PoolStats>,
) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(config.concurrency));
    let (delete_tx, delete_rx) = mpsc::channel::<String>(config.concurrency * 2 + 10);
    // Aborted with the pool if the pool itself is dropped mid-way.
    let mut deleter = AbortOnDropHandle::new(tokio::spawn(deleter(
        queue.clone(),
        delete_rx,
        stats.clone(),
    )));
    let mut tasks = JoinSet::new();
    // When the queue was first seen empty with nothing in flight.
    let mut idle_since: Option<Instant> = None;
    let wait = config
        .until_idle
        .map(|d| d.as_secs().clamp(1, 20))
        .unwrap_or(20);

    loop {
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
        let available = permits.available_permits();
        if available == 0 {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tasks.join_next() => continue,
            }
        }
        // Quiet: nothing in flight and every done message deleted. Only a
        // quiet empty receive means the queue is idle: a FIFO group holds
        // its next message back while one of its messages is in flight.
        let quiet = tasks.is_empty() && stats.pending_deletes.load(Ordering::SeqCst) == 0;
        let poll_started = Instant::now();
        // While work is in flight, poll briefly to notice freed groups.
        let poll = Duration::from_secs(if quiet { wait } else { 1 });
        let asks = receive_sizes(available, quiet);
        let receives = futures::future::join_all(
            asks.iter()
                .map(|&max| queue.receive(max, poll, config.visibility)),
        );
        let outs = tokio::select! {
            _ = shutdown.cancelled() => break,
            outs = receives => outs,
        };
        let mut messages = Vec::new();
        let mut failed = false;
        for out in outs {
            match out {
                Ok(received) => messages.extend(received),
                Err(e) => {
                    tracing::warn!(error = %e, "receive failed");
                    failed = true;
                }
            }
        }
        // Back off only when no receive of the round brought anything.
        if failed && messages.is_empty() {
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        if messages.is_empty() {
            if quiet {
                let since = *idle_since.get_or_insert(poll_started);
                if let Some(idle) = config.until_idle {
                    if since.elapsed() >= idle {
                        if queue_is_empty(queue.as_ref()).await {
                            tracing::info!("queue idle for {idle:?} and empty; stopping");
                            break;
                        }
                        idle_since = Some(Instant::now());
                    }
                }
            }
            continue;
        }
        idle_since = None;
        // One task per FIFO group, its messages in order, as the Lambda
        // handler does; a standard queue's messages are groups of one.
        let mut groups: Vec<(Option<String>, Vec<Received>)> = Vec::new();
        for message in messages {
            stats.received.fetch_add(1, Ordering::Relaxed);
            let group = message.group_id.clone();
            match groups.iter_mut().find(|(g, _)| g.is_some() && *g == group) {
                Some((_, list)) => list.push(message),
                None => groups.push((group, vec![message])),
            }
        }
        // One permit per group: counting its waiting messages would idle
        // the pool (a receive of 10 from one group would take 10 permits
        // for the work of two). The receive asked for no more messages than
        // there were free permits, so this never waits.
        for (_, group) in groups {
            let n = group.len() as u32;
            let permit = permits.clone().acquire_owned().await.expect("never closed");
            let (worker, queue, config, stats, delete_tx) = (
                worker.clone(),
                queue.clone(),
                config.clone(),
                stats.clone(),
                delete_tx.clone(),
            );
            stats.in_flight.fetch_add(n as u64, Ordering::Relaxed);
            tasks.spawn(async move {
                handle_group(&worker, &queue, &config, &stats, &delete_tx, group).await;
                drop(permit);
            });
        }
    }
    // Stop: no new receives; let what is in flight finish (each user's work
    // is bounded by its lock lease), then flush the deletes.
    while tasks.join_next().await.is_some() {}
    drop(delete_tx);
    (&mut deleter).await?;
    Ok(())
}

/// A FIFO group's messages of one receive, in order, [`GROUP_WINDOW`] at a
/// time. Once one fails, the rest not started yet are put back with the
/// same delay, so that the group keeps its order as far as it can.
async fn handle_group(
    worker: &Worker,
    queue: &Arc<dyn QueuePort>,
    config: &PoolConfig,
    stats: &PoolStats,
    delete_tx: &mpsc::Sender<String>,
    group: Vec<Received>,
) {
    // Every message of the group is ours from the receive on: each keeps
    // its visibility while it waits its turn, or another pool would get it.
    // A heartbeat dies with its work (aborted on drop), as it would with the
    // process, so that dropped work is redelivered.
    let heartbeats: Vec<_> = group
        .iter()
        .map(|m| {
            AbortOnDropHandle::new(tokio::spawn(visibility_heartbeat(
                queue.clone(),
                m.receipt_handle.clone(),
                config.visibility,
            )))
        })
        .collect();
    let failed_delay = std::sync::Mutex::new(None::<Duration>);
    let failed_delay = &failed_delay;
    in_window(
        group.into_iter().zip(heartbeats),
        |(message, heartbeat)| async move {
            // Put back behind a failure, unless this is its last receive:
            // then it is worked now (the order within an account does not
            // matter to keyrotor; a result does), rather than reaching the DLQ
            // without ever being tried.
            let last = message.receive_count >= worker.max_receives();
            let behind = *failed_delay.lock().expect("not poisoned");
            match behind {
                Some(delay) if !last => {
                    stop(heartbeat).await;
                    set_visibility(queue.as_ref(), &message.receipt_handle, delay).await;
                }
                _ => {
                    let failed =
                        handle_one(worker, queue.as_ref(), stats, delete_tx, message, heartbeat)
                            .await;
                    let mut first = failed_delay.lock().expect("not poisoned");
                    *first = first.or(failed);
                }
            }
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        },
    )
    .await;
}

/// Starts `items` in order, [`GROUP_WINDOW`] at a time, the next as soon as
/// any one finishes. Not finishing in order (`buffered`): there a rotation
/// waiting seconds for its new key to reach STS held back the messages
/// behind it, and the group worked one message at a time (the load
/// simulator, two at a time: an account of one group took 114 s, now 81 s).
async fn in_window<T, F, Fut>(items: impl IntoIterator<Item = T>, work: F)
where
    F: FnMut(T) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    futures::stream::iter(items)
        .map(work)
        .buffer_unordered(GROUP_WINDOW)
        .collect::<Vec<()>>()
        .await;
}

/// Stops a message's visibility heartbeat before anything else touches it.
async fn stop(mut heartbeat: AbortOnDropHandle<()>) {
    heartbeat.abort();
    let _ = (&mut heartbeat).await;
}

async fn set_visibility(queue: &dyn QueuePort, receipt: &str, delay: Duration) {
    if let Err(e) = queue.set_visibility(receipt, delay).await {
        tracing::warn!(error = %e, "could not set the retry delay");
    }
}

/// Handles one message; returns its retry delay when it failed.
async fn handle_one(
    worker: &Worker,
    queue: &dyn QueuePort,
    stats: &PoolStats,
    delete_tx: &mpsc::Sender<String>,
    message: Received,
    heartbeat: AbortOnDropHandle<()>,
) -> Option<Duration> {
    let Received {
        message_id,
        receipt_handle: receipt,
        body,
        receive_count,
        ..
    } = message;
    let result = worker
        .handle(&body, receive_count)
        .instrument(tracing::info_span!("sqs", message_id = %message_id))
        .await;
    stop(heartbeat).await;
    match result {
        Ok(handled) => {
            match handled {
                Handled::Done(outcome) => {
                    if outcome == Outcome::Failed {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    stats.done.fetch_add(1, Ordering::Relaxed)
                }
                Handled::Duplicate => stats.duplicates.fetch_add(1, Ordering::Relaxed),
                Handled::Rejected(_) => stats.rejected.fetch_add(1, Ordering::Relaxed),
            };
            stats.pending_deletes.fetch_add(1, Ordering::SeqCst);
            let _ = delete_tx.send(receipt).await;
            None
        }
        Err(failure) => {
            let delay = delay_for(&failure, receive_count);
            match &failure {
                MessageFailure::Malformed(e) => {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(message_id, receive_count, error = %e, "malformed message; it will reach the DLQ after its last receive");
                }
                MessageFailure::Retry { reason, .. } => {
                    stats.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(message_id, receive_count, retry_in = ?delay, error = %reason, "message will be retried");
                }
            }
            set_visibility(queue, &receipt, delay).await;
            Some(delay)
        }
    }
}

/// Extends the message's visibility every third of the timeout while it is
/// worked, so a long rotation is not delivered to a second worker.
async fn visibility_heartbeat(queue: Arc<dyn QueuePort>, receipt: String, visibility: Duration) {
    loop {
        tokio::time::sleep(visibility / 3).await;
        if let Err(e) = queue.set_visibility(&receipt, visibility).await {
            tracing::warn!(error = %e, "visibility heartbeat failed");
        }
    }
}

/// `DeleteMessageBatch` requests a pool has in flight at once, at most.
pub const DELETES_AT_ONCE: usize = 8;

/// How long a delete batch waits for more done messages before it goes out
/// short of 10.
const DELETE_LINGER: Duration = Duration::from_millis(10);

/// Deletes done messages in batches of up to 10 (what is waiting, plus what
/// arrives within [`DELETE_LINGER`]), up to [`DELETES_AT_ONCE`] batches at
/// a time, checking every entry; a failed entry is retried alone once.
///
/// A FIFO group's next messages stay hidden until its last ones are
/// deleted, so deletes pace the whole pool. One batch at a time, each
/// sent as soon as its first message arrived, deleted one message a round
/// trip: about 60 a second per pool, which held a pool of 820 groups to a
/// third of the speed of four pools of 205 (the load simulator).
async fn deleter(queue: Arc<dyn QueuePort>, rx: mpsc::Receiver<String>, stats: Arc<PoolStats>) {
    let batches = futures::stream::unfold(rx, |mut rx| async move {
        let mut batch = vec![rx.recv().await?];
        let linger = tokio::time::sleep(DELETE_LINGER);
        tokio::pin!(linger);
        while batch.len() < 10 {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(receipt) => batch.push(receipt),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        Some((batch, rx))
    });
    batches
        .map(|batch| {
            let (queue, stats) = (queue.clone(), stats.clone());
            async move {
                let n = batch.len() as u64;
                delete_batch(queue.as_ref(), batch).await;
                stats.pending_deletes.fetch_sub(n, Ordering::SeqCst);
            }
        })
        .buffer_unordered(DELETES_AT_ONCE)
        .collect::<()>()
        .await;
}

async fn delete_batch(queue: &dyn QueuePort, receipts: Vec<String>) {
    let failed = match queue.delete_batch(&receipts).await {
        Ok(failed) => failed,
        Err(e) => {
            tracing::warn!(error = %e, "batch delete failed; deleting one by one");
            receipts
        }
    };
    for receipt in failed {
        if let Err(e) = queue.delete(&receipt).await {
            // The message will come back; its recorded result makes it a no-op.
            tracing::error!(error = %e, "could not delete a done message");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receives_never_ask_for_more_messages_than_free_permits() {
        for available in 1..=2_000 {
            let busy = receive_sizes(available, false);
            assert!(busy.len() <= RECEIVES_AT_ONCE, "{available}: {busy:?}");
            assert!(
                busy.iter().all(|&n| (1..=10).contains(&n)),
                "{available}: {busy:?}"
            );
            assert!(
                busy.iter().sum::<usize>() <= available,
                "{available}: {busy:?}"
            );
        }
        // A large pool fills several groups a round trip; a quiet one polls once.
        assert_eq!(receive_sizes(256, false), vec![10; RECEIVES_AT_ONCE]);
        assert_eq!(receive_sizes(25, false), vec![10, 10]);
        assert_eq!(receive_sizes(4, false), vec![4]);
        assert_eq!(receive_sizes(256, true), vec![10]);
    }

    #[test]
    fn a_busy_user_is_retried_when_the_holders_lease_ends() {
        let at = keyrotor_shared::time::now() + chrono::Duration::seconds(30);
        let busy = MessageFailure::Retry {
            reason: "busy".into(),
            not_before: Some(at),
        };
        let delay = delay_for(&busy, 3);
        assert!(
            (Duration::from_secs(29)..=Duration::from_secs(31)).contains(&delay),
            "{delay:?}"
        );
        let past = MessageFailure::Retry {
            reason: "busy".into(),
            not_before: Some(keyrotor_shared::time::now() - chrono::Duration::seconds(5)),
        };
        assert_eq!(
            delay_for(&past, 3),
            Duration::from_secs(1),
            "at once, plus a second"
        );
        let throttled = MessageFailure::Retry {
            reason: "throttled".into(),
            not_before: None,
        };
        assert_eq!(delay_for(&throttled, 3), retry_delay(3), "the ladder");
        let malformed =
            MessageFailure::Malformed(keyrotor_shared::message::MessageError::Version(2));
        assert_eq!(delay_for(&malformed, 1), Duration::ZERO, "to the DLQ soon");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_message_does_not_hold_back_the_rest_of_its_window() {
        let start = tokio::time::Instant::now();
        let started = std::sync::Mutex::new(Vec::new());
        // The first waits 60 s (a key reaching STS); the rest take 1 s each.
        let waits = [60, 1, 1, 1, 1, 1];
        in_window(waits.iter().enumerate(), |(i, &secs)| {
            let started = &started;
            async move {
                started.lock().unwrap().push((i, start.elapsed().as_secs()));
                tokio::time::sleep(Duration::from_secs(secs)).await;
            }
        })
        .await;
        let started = started.into_inner().unwrap();
        let order: Vec<usize> = started.iter().map(|&(i, _)| i).collect();
        assert_eq!(order, [0, 1, 2, 3, 4, 5], "started in order");
        let last = started.last().unwrap().1;
        assert!(
            last < 10,
            "the five short ones went on beside the slow one: {started:?}"
        );
        let at_once = started.iter().filter(|&&(_, at)| at == 0).count();
        assert_eq!(at_once, GROUP_WINDOW, "{started:?}");
    }

    #[test]
    fn retry_delays_grow_and_are_capped() {
        assert_eq!(retry_delay(1), Duration::from_secs(10));
        assert_eq!(retry_delay(2), Duration::from_secs(20));
        assert_eq!(retry_delay(4), Duration::from_secs(80));
        assert_eq!(retry_delay(50), Duration::from_secs(900));
    }
}
