//! The simulated work queue: SQS FIFO with message groups (a group gives
//! out its next message only once none of its messages is in flight),
//! visibility timeouts, receive counts, redrive to a DLQ after
//! `maxReceiveCount`, deduplication ids and long polling.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
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

#[derive(Debug, Default)]
struct State {
    /// Messages not yet deleted, by group, in order.
    groups: BTreeMap<String, VecDeque<Message>>,
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
            left: state.groups.values().map(|g| g.len() as u64).sum(),
        }
    }

    /// Moves every message on the DLQ back to the end of its group, as an
    /// operator's redrive does (`StartMessageMoveTask`: sent again, with
    /// no receives); how many.
    pub fn redrive(&self) -> usize {
        let mut state = self.state();
        let dlq = std::mem::take(&mut state.dlq);
        let moved = dlq.len();
        for (group, mut message) in dlq {
            message.receives = 0;
            message.receipt = None;
            message.visible_at = self.model.elapsed();
            state.groups.entry(group).or_default().push_back(message);
        }
        drop(state);
        self.notify.notify_waiters();
        moved
    }

    fn take(&self, max: usize, visibility: Duration) -> (Vec<Received>, Option<Duration>) {
        let now = self.model.elapsed();
        let mut state = self.state();
        let mut out = Vec::new();
        let mut next_visible: Option<Duration> = None;
        let mut dead = Vec::new();
        let State {
            groups, receipts, ..
        } = &mut *state;
        for (group, messages) in groups.iter_mut() {
            if out.len() >= max {
                break;
            }
            // A group with a message in flight gives out nothing.
            if messages
                .iter()
                .any(|m| m.receipt.is_some() && m.visible_at > now)
            {
                for m in messages.iter().filter(|m| m.visible_at > now) {
                    next_visible = Some(next_visible.map_or(m.visible_at, |n| n.min(m.visible_at)));
                }
                continue;
            }
            for m in messages.iter_mut() {
                if out.len() >= max {
                    break;
                }
                if m.visible_at > now {
                    next_visible = Some(next_visible.map_or(m.visible_at, |n| n.min(m.visible_at)));
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
            if let Some(messages) = state.groups.get_mut(&group) {
                if let Some(at) = messages.iter().position(|m| m.id == id) {
                    let mut message = messages.remove(at).expect("found");
                    // Its last receipt dies with it: SQS refuses a delete
                    // with it once the message is redriven.
                    if let Some(receipt) = message.receipt.take() {
                        state.receipts.remove(&receipt);
                    }
                    state.dlq.push((group.clone(), message));
                }
                if state.groups.get(&group).is_some_and(VecDeque::is_empty) {
                    state.groups.remove(&group);
                }
            }
            state.dead += 1;
        }
        (out, next_visible)
    }

    fn remove(&self, receipt: &str) -> bool {
        let now = self.model.elapsed();
        let mut state = self.state();
        let Some((group, id)) = state.receipts.remove(receipt) else {
            return false;
        };
        let Some(messages) = state.groups.get_mut(&group) else {
            return false;
        };
        let Some(at) = messages.iter().position(|m| m.id == id) else {
            return false;
        };
        let m = messages.remove(at).expect("found");
        tracing::debug!(group = %group, id = m.id, "deleted");
        if messages.is_empty() {
            state.groups.remove(&group);
        }
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
        let mut made_visible = false;
        if let Some(m) = state
            .groups
            .get_mut(&group)
            .and_then(|g| g.iter_mut().find(|m| m.id == id))
        {
            m.visible_at = now + timeout;
            if timeout.is_zero() {
                made_visible = true;
            }
        }
        if made_visible {
            state.receipts.remove(receipt);
            if let Some(m) = state
                .groups
                .get_mut(&group)
                .and_then(|g| g.iter_mut().find(|m| m.id == id))
            {
                m.receipt = None;
            }
            drop(state);
            self.notify.notify_one();
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
                state
                    .groups
                    .entry(group.clone())
                    .or_default()
                    .push_back(Message {
                        id,
                        body: m.body.clone(),
                        receives: 0,
                        visible_at: now,
                        receipt: None,
                        first_received: None,
                    });
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
