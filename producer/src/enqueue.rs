//! Sending messages: `SendMessageBatch` of 10, with FIFO group and
//! deduplication ids when the queue is FIFO (detected from its URL). The
//! entries SQS refused for a passing reason (its `InternalError`, throttling)
//! are sent again as a batch, with backoff (`backon`); a failed request is
//! not retried here, since the SDK has already retried it.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use sha2::Digest;

use keyrotor_shared::error::AwsError;
use keyrotor_shared::message::WorkMessage;
use keyrotor_shared::queue::{Outgoing, QueuePort};

/// SQS's batch limit.
pub const BATCH: usize = 10;

/// Resends of the entries that failed inside a batch: 200 ms doubling,
/// jittered, three times.
fn entry_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(3)
        .with_jitter()
}

/// A batch that was sent only in part.
#[derive(Debug, thiserror::Error)]
#[error("{error} ({sent} of the batch sent)")]
pub struct PartialSend {
    /// Messages of the batch that were sent.
    pub sent: usize,
    /// The index in the batch of one message that was sent, if any.
    pub one_sent: Option<usize>,
    /// Why the rest were not.
    pub error: AwsError,
}

/// Sends work messages to one queue.
#[derive(Clone)]
pub struct Enqueuer {
    queue: Arc<dyn QueuePort>,
}

impl Enqueuer {
    /// An enqueuer for `queue`.
    pub fn new(queue: Arc<dyn QueuePort>) -> Enqueuer {
        Enqueuer { queue }
    }

    /// Whether the queue is FIFO.
    pub fn is_fifo(&self) -> bool {
        self.queue.is_fifo()
    }

    fn outgoing(&self, m: &WorkMessage) -> Outgoing {
        Outgoing {
            body: m.encode(),
            fifo: self.is_fifo().then(|| (m.group_id(), m.deduplication_id())),
        }
    }

    /// Sends `m` again, to be delivered once more: a worker finds its
    /// result recorded and runs the completion check, which sends the
    /// account's digest or the run's summary if they are owed. The
    /// producer does this when its own mark (an account enqueued, the run
    /// enqueued) came after every result, so that no worker saw the
    /// account or run complete. `why` keeps the deduplication id apart
    /// from the message's first sending and from another nudge.
    pub async fn nudge(&self, m: &WorkMessage, why: &str) -> Result<(), AwsError> {
        let mut outgoing = self.outgoing(m);
        if let Some((_, dedup)) = &mut outgoing.fifo {
            // Hashed: SQS takes at most 128 characters, and a user name
            // alone may have 64.
            let digest = sha2::Sha256::digest(format!("{dedup}#{why}").as_bytes());
            *dedup = format!("{why}-{}", hex::encode(digest));
        }
        self.queue.send(&outgoing).await
    }

    /// Sends up to [`BATCH`] messages; every one is sent, or the error says
    /// how many were sent before it (the run's expected count must include
    /// exactly those).
    pub async fn send(&self, messages: &[WorkMessage]) -> Result<(), PartialSend> {
        debug_assert!(messages.len() <= BATCH);
        // (index in `messages`, what is sent)
        let mut pending: Vec<(usize, Outgoing)> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (i, self.outgoing(m)))
            .collect();
        let mut delays = entry_backoff().build();
        while !pending.is_empty() {
            let partial = |pending: &[(usize, Outgoing)], error| PartialSend {
                sent: messages.len() - pending.len(),
                one_sent: (0..messages.len()).find(|i| pending.iter().all(|(p, _)| p != i)),
                error,
            };
            let batch: Vec<Outgoing> = pending.iter().map(|(_, o)| o.clone()).collect();
            let failed = self
                .queue
                .send_batch(&batch)
                .await
                .map_err(|error| partial(&pending, error))?;
            let Some((_, code)) = failed.first() else {
                return Ok(());
            };
            let error = AwsError::from_code(
                "sqs:SendMessageBatch",
                code,
                format!("{} of {} entries refused", failed.len(), pending.len()),
            );
            tracing::warn!(code = %code, refused = failed.len(), "messages refused in their batch");
            let retry = failed.iter().all(|(_, code)| {
                AwsError::from_code("sqs:SendMessageBatch", code, String::new()).is_retryable()
            });
            pending = failed
                .into_iter()
                .filter_map(|(i, _)| pending.get(i).cloned())
                .collect();
            match delays.next() {
                Some(delay) if retry => tokio::time::sleep(delay).await,
                _ => return Err(partial(&pending, error)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use keyrotor_shared::queue::Received;

    use super::*;

    /// A queue that refuses entries with the codes given, batch by batch,
    /// and records what each batch carried.
    #[derive(Default)]
    struct Refusing {
        refusals: Mutex<Vec<Vec<(usize, String)>>>,
        batches: Mutex<Vec<Vec<String>>>,
        fail_request: bool,
    }

    #[async_trait]
    impl QueuePort for Refusing {
        fn is_fifo(&self) -> bool {
            false
        }
        async fn receive(
            &self,
            _: usize,
            _: Duration,
            _: Duration,
        ) -> Result<Vec<Received>, AwsError> {
            unreachable!()
        }
        async fn delete_batch(&self, _: &[String]) -> Result<Vec<String>, AwsError> {
            unreachable!()
        }
        async fn delete(&self, _: &str) -> Result<(), AwsError> {
            unreachable!()
        }
        async fn set_visibility(&self, _: &str, _: Duration) -> Result<(), AwsError> {
            unreachable!()
        }
        async fn send_batch(
            &self,
            messages: &[Outgoing],
        ) -> Result<Vec<(usize, String)>, AwsError> {
            self.batches
                .lock()
                .unwrap()
                .push(messages.iter().map(|m| m.body.clone()).collect());
            if self.fail_request {
                return Err(AwsError::Transport {
                    op: "sqs:SendMessageBatch",
                    message: "connection reset".into(),
                    source: None,
                });
            }
            let mut refusals = self.refusals.lock().unwrap();
            Ok(if refusals.is_empty() {
                Vec::new()
            } else {
                refusals.remove(0)
            })
        }
        async fn send(&self, _: &Outgoing) -> Result<(), AwsError> {
            unreachable!("entries are resent as a batch")
        }
        async fn depth(&self) -> Result<u64, AwsError> {
            unreachable!()
        }
    }

    fn messages(n: usize) -> Vec<WorkMessage> {
        (0..n)
            .map(|i| WorkMessage {
                v: 1,
                run_id: "r".into(),
                account_id: "111122223333".into(),
                account_name: "a".into(),
                owner_email: None,
                user_name: format!("u{i}"),
                as_of: chrono::DateTime::UNIX_EPOCH,
                mode: keyrotor_shared::domain::Mode::Audit,
                force: false,
                exempt: false,
                shard: None,
                shards: None,
                wave: None,
                audit_only: false,
                incident: false,
                exposed_key: None,
                sig: None,
            })
            .collect()
    }

    fn sent(queue: &Refusing) -> Vec<usize> {
        queue.batches.lock().unwrap().iter().map(Vec::len).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn refused_entries_are_resent_alone_until_they_go() {
        let queue = Arc::new(Refusing {
            refusals: Mutex::new(vec![
                vec![
                    (1, "InternalError".into()),
                    (3, "ThrottlingException".into()),
                ],
                vec![(0, "InternalError".into())],
            ]),
            ..Refusing::default()
        });
        Enqueuer::new(queue.clone())
            .send(&messages(5))
            .await
            .unwrap();
        assert_eq!(sent(&queue), [5, 2, 1]);
        let batches = queue.batches.lock().unwrap();
        assert!(batches[1][0].contains("\"u1\"") && batches[1][1].contains("\"u3\""));
        assert!(batches[2][0].contains("\"u1\""));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lasting_refusal_stops_after_three_resends_and_counts_what_went() {
        let always = vec![(0, "InternalError".into())];
        let queue = Arc::new(Refusing {
            refusals: Mutex::new(vec![always.clone(); 10]),
            ..Refusing::default()
        });
        let err = Enqueuer::new(queue.clone())
            .send(&messages(3))
            .await
            .unwrap_err();
        assert_eq!(sent(&queue), [3, 1, 1, 1]);
        assert_eq!(err.sent, 2);
        assert_eq!(err.one_sent, Some(1), "the first refused, the second went");
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_refused_for_good_and_a_failed_request_are_not_retried_here() {
        let queue = Arc::new(Refusing {
            refusals: Mutex::new(vec![vec![(2, "InvalidParameterValue".into())]]),
            ..Refusing::default()
        });
        let err = Enqueuer::new(queue.clone())
            .send(&messages(3))
            .await
            .unwrap_err();
        assert_eq!((sent(&queue), err.sent), (vec![3], 2));

        let queue = Arc::new(Refusing {
            fail_request: true,
            ..Refusing::default()
        });
        let err = Enqueuer::new(queue.clone())
            .send(&messages(3))
            .await
            .unwrap_err();
        assert_eq!(sent(&queue), [3], "the SDK retried the request already");
        assert_eq!(err.sent, 0);
    }
}
