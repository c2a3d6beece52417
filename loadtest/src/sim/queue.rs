//! The simulated work queue: SQS FIFO with message groups (a group gives
//! out its next message only once none of its messages is in flight),
//! visibility timeouts, receive counts, redrive to a DLQ after
//! `maxReceiveCount`, deduplication ids and long polling.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use keyrotor_shared::error::AwsError;
use keyrotor_shared::queue::{Outgoing, QueuePort, Received};
use tokio::sync::Notify;

use super::model::{Model, Retry, Service};

#[derive(Debug)]
struct Message {
    id: u64,
    body: String,
    receives: u32,
    visible_at: Duration,
    /// The receipt of the current delivery.
    receipt: Option<String>,
    first_received: Option<Duration>,
}

/// One message group: its messages in order, and until when it gives out
/// nothing (the latest visibility of a message in flight).
#[derive(Debug, Default)]
struct Group {
    messages: VecDeque<Message>,
    blocked_until: Duration,
}

impl Group {
    /// Until when a message in flight at `now` holds the group back (`now`
    /// or earlier when none is).
    fn in_flight_until(&self, now: Duration) -> Duration {
        self.messages
            .iter()
            .filter(|m| m.receipt.is_some())
            .map(|m| m.visible_at)
            .fold(now, Duration::max)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Messages not yet deleted, by group.
    groups: HashMap<String, Group>,
    /// Groups that may give out a message now, in the order SQS is modelled
    /// to serve them (by name). With `blocked`, this spares a receive a scan
    /// of every group: 10,000 groups with 40 pools polling made the
    /// simulator spend nine tenths of its time there.
    ready: BTreeSet<String>,
    /// Groups with a message in flight, by when the last one's visibility
    /// ends.
    blocked: BTreeSet<(Duration, String)>,
    /// Messages on the queue (not deleted, not on the DLQ).
    left: u64,
    /// Receipt → (group, message id).
    receipts: HashMap<String, (String, u64)>,
    dedup: HashSet<String>,
    next_id: u64,
    dead: u64,
    /// Messages on the DLQ, with their groups, until a redrive.
    dlq: Vec<(String, Message)>,
    /// Seconds from first receive to delete, per deleted message.
    user_seconds: Vec<f64>,
}

impl State {
    /// Files `group` under `ready` or `blocked` by its messages in flight
    /// at `now`, or forgets it once it has none left.
    fn refile(&mut self, group: &str, now: Duration) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        self.blocked.remove(&(g.blocked_until, group.to_string()));
        if g.messages.is_empty() {
            self.groups.remove(group);
            self.ready.remove(group);
            return;
        }
        g.blocked_until = g.in_flight_until(now);
        if g.blocked_until > now {
            self.ready.remove(group);
            self.blocked.insert((g.blocked_until, group.to_string()));
        } else {
            self.ready.insert(group.to_string());
        }
    }

    /// Adds `message` at the end of `group`.
    fn push(&mut self, group: &str, message: Message, now: Duration) {
        self.left += 1;
        let g = self.groups.entry(group.to_string()).or_default();
        g.messages.push_back(message);
        if g.messages.len() == 1 {
            self.refile(group, now);
        }
    }
}

/// One FIFO queue.
#[derive(Clone)]
pub struct SimQueue {
    model: Arc<Model>,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    max_receives: u32,
}

/// What the queue measured.
#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    /// Moves to the DLQ (a message dead-lettered again after a redrive
    /// counts twice).
    pub dead: u64,
    /// Seconds from each message's first receive to its delete.
    pub user_seconds: Vec<f64>,
    /// Messages still on the queue.
    pub left: u64,
}

impl SimQueue {
    /// An empty queue with the DLQ's `maxReceiveCount`.
    pub fn new(model: Arc<Model>, max_receives: u32) -> SimQueue {
        SimQueue {
            model,
            state: Arc::new(Mutex::new(State::default())),
            notify: Arc::new(Notify::new()),
            max_receives,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// What the queue measured so far.
    pub fn stats(&self) -> QueueStats {
        let state = self.state();
        QueueStats {
            dead: state.dead,
            user_seconds: state.user_seconds.clone(),
            left: state.left,
        }
    }

    /// Messages still on the queue (not deleted, not on the DLQ).
    pub fn left(&self) -> u64 {
        self.state().left
    }

    /// Moves every message on the DLQ back to the end of its group, as an
    /// operator's redrive does (`StartMessageMoveTask`: sent again, with
    /// no receives); how many.
    pub fn redrive(&self) -> usize {
        let now = self.model.elapsed();
        let mut state = self.state();
        let dlq = std::mem::take(&mut state.dlq);
        let moved = dlq.len();
        for (group, mut message) in dlq {
            message.receives = 0;
            message.receipt = None;
            message.visible_at = now;
            state.push(&group, message, now);
        }
        drop(state);
        self.notify.notify_waiters();
        moved
    }

    /// Gives out up to `max` messages of the groups with none in flight
    /// (in order, from each group's front), and when the next blocked group
    /// is freed.
    fn take(&self, max: usize, visibility: Duration) -> (Vec<Received>, Option<Duration>) {
        let now = self.model.elapsed();
        let mut state = self.state();
        while let Some((until, _)) = state.blocked.first() {
            if *until > now {
                break;
            }
            let (_, group) = state.blocked.pop_first().expect("a first");
            state.ready.insert(group);
        }
        let mut out = Vec::new();
        let mut dead = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        let State {
            groups,
            ready,
            receipts,
            ..
        } = &mut *state;
        for group in ready.iter() {
            if out.len() >= max {
                break;
            }
            let Some(g) = groups.get_mut(group) else {
                continue;
            };
            touched.push(group.clone());
            for m in g.messages.iter_mut() {
                if out.len() >= max {
                    break;
                }
                if m.receives >= self.max_receives {
                    tracing::warn!(group = %group, id = m.id, receives = m.receives, "moved to the DLQ");
                    dead.push((group.clone(), m.id));
                    continue;
                }
                if let Some(old) = m.receipt.take() {
                    receipts.remove(&old);
                }
                m.receives += 1;
                m.visible_at = now + visibility;
                m.first_received.get_or_insert(now);
                let receipt = format!("{}-{}", m.id, m.receives);
                m.receipt = Some(receipt.clone());
                receipts.insert(receipt.clone(), (group.clone(), m.id));
                tracing::debug!(group = %group, id = m.id, receives = m.receives, "received");
                out.push(Received {
                    message_id: m.id.to_string(),
                    receipt_handle: receipt,
                    body: m.body.clone(),
                    group_id: Some(group.clone()),
                    receive_count: m.receives,
                });
            }
        }
        for (group, id) in dead {
            if let Some(g) = state.groups.get_mut(&group) {
                if let Some(at) = g.messages.iter().position(|m| m.id == id) {
                    let mut message = g.messages.remove(at).expect("found");
                    // Its last receipt dies with it: SQS refuses a delete
                    // with it once the message is redriven.
                    if let Some(receipt) = message.receipt.take() {
                        state.receipts.remove(&receipt);
                    }
                    state.dlq.push((group.clone(), message));
                    state.left -= 1;
                }
            }
            state.dead += 1;
        }
        for group in touched {
            state.refile(&group, now);
        }
        let next_visible = state.blocked.first().map(|(until, _)| *until);
        (out, next_visible)
    }

    fn remove(&self, receipt: &str) -> bool {
        let now = self.model.elapsed();
        let mut state = self.state();
        let Some((group, id)) = state.receipts.remove(receipt) else {
            return false;
        };
        let Some(g) = state.groups.get_mut(&group) else {
            return false;
        };
        let Some(at) = g.messages.iter().position(|m| m.id == id) else {
            return false;
        };
        let m = g.messages.remove(at).expect("found");
        tracing::debug!(group = %group, id = m.id, "deleted");
        state.left -= 1;
        state.refile(&group, now);
        if let Some(first) = m.first_received {
            state.user_seconds.push((now - first).as_secs_f64());
        }
        drop(state);
        // The group may have its next message ready now: one receiver is
        // enough to take it (waking every pool, each scanning every group,
        // would cost the simulator quadratic time in pools and groups).
        self.notify.notify_one();
        true
    }

    async fn request(&self, op: &'static str) -> Result<(), AwsError> {
        self.model.call(Service::Sqs, op, "hub", Retry::Sdk).await
    }
}

#[async_trait]
impl QueuePort for SimQueue {
    fn is_fifo(&self) -> bool {
        true
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, AwsError> {
        self.request("ReceiveMessage").await?;
        let deadline = self.model.elapsed() + wait;
        loop {
            let notified = self.notify.notified();
            let (out, next_visible) = self.take(max.clamp(1, 10), visibility);
            let now = self.model.elapsed();
            if !out.is_empty() || now >= deadline {
                return Ok(out);
            }
            let until = next_visible.map_or(deadline, |v| v.min(deadline));
            tokio::select! {
                biased;
                _ = notified => {}
                _ = tokio::time::sleep(until.saturating_sub(now).max(Duration::from_millis(1))) => {}
            }
        }
    }

    async fn delete_batch(&self, receipts: &[String]) -> Result<Vec<String>, AwsError> {
        self.request("DeleteMessageBatch").await?;
        for r in receipts {
            self.remove(r);
        }
        Ok(Vec::new())
    }

    async fn delete(&self, receipt: &str) -> Result<(), AwsError> {
        self.request("DeleteMessage").await?;
        self.remove(receipt);
        Ok(())
    }

    async fn set_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), AwsError> {
        self.request("ChangeMessageVisibility").await?;
        let now = self.model.elapsed();
        let mut state = self.state();
        let Some((group, id)) = state.receipts.get(receipt).cloned() else {
            return Err(AwsError::Service {
                op: "sqs:ChangeMessageVisibility",
                code: "ReceiptHandleIsInvalid".into(),
                message: "not in flight".into(),
                source: None,
            });
        };
        let mut sooner = false;
        if let Some(m) = state
            .groups
            .get_mut(&group)
            .and_then(|g| g.messages.iter_mut().find(|m| m.id == id))
        {
            sooner = now + timeout < m.visible_at;
            m.visible_at = now + timeout;
            if timeout.is_zero() {
                m.receipt = None;
            }
        }
        if timeout.is_zero() {
            state.receipts.remove(receipt);
        }
        state.refile(&group, now);
        drop(state);
        if timeout.is_zero() {
            self.notify.notify_one();
        } else if sooner {
            // Receivers asleep until the group's old visibility, or to the
            // end of their long poll, must see it come back sooner.
            self.notify.notify_waiters();
        }
        Ok(())
    }

    async fn send_batch(&self, messages: &[Outgoing]) -> Result<Vec<(usize, String)>, AwsError> {
        self.request("SendMessageBatch").await?;
        let now = self.model.elapsed();
        {
            let mut state = self.state();
            for m in messages {
                let (group, dedup) = m.fifo.clone().expect("a FIFO queue");
                if !state.dedup.insert(dedup) {
                    continue;
                }
                state.next_id += 1;
                let id = state.next_id;
                let message = Message {
                    id,
                    body: m.body.clone(),
                    receives: 0,
                    visible_at: now,
                    receipt: None,
                    first_received: None,
                };
                state.push(&group, message, now);
            }
        }
        self.notify.notify_waiters();
        Ok(Vec::new())
    }

    async fn send(&self, message: &Outgoing) -> Result<(), AwsError> {
        self.send_batch(std::slice::from_ref(message))
            .await
            .map(|_| ())
    }

    async fn depth(&self) -> Result<u64, AwsError> {
        self.request("GetQueueAttributes").await?;
        Ok(self.stats().left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::model::ModelConfig;
    use crate::sim::on_paused_clock;

    fn queue(max_receives: u32) -> SimQueue {
        let model = Model::new(ModelConfig::default(), chrono::Utc::now());
        SimQueue::new(Arc::new(model), max_receives)
    }

    fn outgoing(group: &str, n: usize) -> Vec<Outgoing> {
        (0..n)
            .map(|i| Outgoing {
                body: format!("{group}-{i}"),
                fifo: Some((group.to_string(), format!("{group}-{i}"))),
            })
            .collect()
    }

    fn bodies(received: &[Received]) -> Vec<&str> {
        received.iter().map(|r| r.body.as_str()).collect()
    }

    const NO_WAIT: Duration = Duration::ZERO;
    const HIDDEN: Duration = Duration::from_secs(30);

    #[test]
    fn a_group_gives_out_nothing_while_a_message_of_it_is_in_flight() {
        on_paused_clock(async {
            let q = queue(5);
            q.send_batch(&outgoing("b", 2)).await.unwrap();
            q.send_batch(&outgoing("a", 3)).await.unwrap();
            let first = q.receive(2, NO_WAIT, HIDDEN).await.unwrap();
            assert_eq!(
                bodies(&first),
                ["a-0", "a-1"],
                "groups in order, front first"
            );
            // Group a still holds a-2, but two of its messages are in flight.
            let second = q.receive(10, NO_WAIT, HIDDEN).await.unwrap();
            assert_eq!(bodies(&second), ["b-0", "b-1"]);
            assert!(q.receive(10, NO_WAIT, HIDDEN).await.unwrap().is_empty());
            // One of a's two deleted: the other still holds the group.
            q.delete(&first[0].receipt_handle).await.unwrap();
            assert!(q.receive(10, NO_WAIT, HIDDEN).await.unwrap().is_empty());
            // Made visible again: the group gives it out first, then a-2.
            q.set_visibility(&first[1].receipt_handle, Duration::ZERO)
                .await
                .unwrap();
            let third = q.receive(10, NO_WAIT, HIDDEN).await.unwrap();
            assert_eq!(bodies(&third), ["a-1", "a-2"]);
            assert_eq!(third[0].receive_count, 2);
            assert_eq!(q.left(), 4);
        });
    }

    #[test]
    fn a_group_is_freed_when_its_last_visibility_ends_and_a_long_poll_sees_it() {
        on_paused_clock(async {
            let q = queue(5);
            q.send_batch(&outgoing("a", 2)).await.unwrap();
            let first = q.receive(1, NO_WAIT, HIDDEN).await.unwrap();
            // Extended: the group stays held until the later end.
            q.set_visibility(&first[0].receipt_handle, Duration::from_secs(50))
                .await
                .unwrap();
            let started = tokio::time::Instant::now();
            let again = q
                .receive(10, Duration::from_secs(20), HIDDEN)
                .await
                .unwrap();
            assert!(again.is_empty(), "held past a 20 s long poll");
            let again = q
                .receive(10, Duration::from_secs(60), HIDDEN)
                .await
                .unwrap();
            assert_eq!(bodies(&again), ["a-0", "a-1"]);
            let waited = started.elapsed();
            assert!(
                waited >= Duration::from_secs(50) && waited < Duration::from_secs(52),
                "given out when the visibility ended: {waited:?}"
            );
        });
    }

    #[test]
    fn a_visibility_shortened_during_a_long_poll_gives_the_group_out_when_it_ends() {
        on_paused_clock(async {
            let q = queue(5);
            q.send_batch(&outgoing("a", 1)).await.unwrap();
            let first = q
                .receive(1, NO_WAIT, Duration::from_secs(30))
                .await
                .unwrap();
            let started = tokio::time::Instant::now();
            let (again, ()) = tokio::join!(q.receive(10, Duration::from_secs(20), HIDDEN), async {
                // A failed message's retry: back in 5 s, not 30.
                tokio::time::sleep(Duration::from_secs(1)).await;
                q.set_visibility(&first[0].receipt_handle, Duration::from_secs(5))
                    .await
                    .unwrap();
            });
            assert_eq!(bodies(&again.unwrap()), ["a-0"]);
            let waited = started.elapsed();
            assert!(
                waited >= Duration::from_secs(6) && waited < Duration::from_secs(7),
                "given out when the shortened visibility ended: {waited:?}"
            );
        });
    }

    #[test]
    fn a_message_past_its_receives_goes_to_the_dlq_and_a_redrive_brings_it_back() {
        on_paused_clock(async {
            let q = queue(2);
            q.send_batch(&outgoing("a", 1)).await.unwrap();
            for _ in 0..2 {
                let got = q.receive(10, NO_WAIT, HIDDEN).await.unwrap();
                assert_eq!(bodies(&got), ["a-0"]);
                q.set_visibility(&got[0].receipt_handle, Duration::ZERO)
                    .await
                    .unwrap();
            }
            assert!(q.receive(10, NO_WAIT, HIDDEN).await.unwrap().is_empty());
            assert_eq!((q.left(), q.stats().dead), (0, 1));
            assert_eq!(q.redrive(), 1);
            let got = q.receive(10, NO_WAIT, HIDDEN).await.unwrap();
            assert_eq!(bodies(&got), ["a-0"]);
            assert_eq!(got[0].receive_count, 1);
        });
    }
}
