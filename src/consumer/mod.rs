//! The consumer runtime shared by every role: streaming pull with bounded concurrency, ack only after
//! the handler returned, dead-lettering of rejected input, stream re-opening, and a graceful drain.
//!
//! # Delivery semantics
//! At least once. A message is acked only after its handler returned [`Outcome::Ack`] (the handler's
//! writes are committed by then) or after its dead-letter copy was published. Everything else (a
//! [`Outcome::Retry`], a panic, a failed dead-letter publish, the end of the shutdown grace period) nacks
//! it, and Pub/Sub redelivers it, to this process or another. Handlers must therefore be idempotent.
//!
//! # Tasks
//! [`Consumer::run`] owns one streaming pull and a `JoinSet` of handler tasks. A semaphore permit is
//! taken before a message is handed to a handler, so at most `concurrency` handlers run; messages are
//! read from the stream as they come (the client leases only what was read) and wait in a queue, which
//! the client's flow control bounds to about `concurrency` more. The client
//! extends leases while a handler runs, up to `max_lease`.
//!
//! # Telemetry
//! Each handler call runs in a `message` span (subscription, message id, delivery attempt). Every
//! message taken from the stream ends in exactly one `props_messages_total` outcome: `ack`, `reject`
//! (acked after its dead-letter copy was published, or on a subscription without one), or `retry`
//! (nacked: a Retry, a panic, a failed dead-letter publish, or abandoned at the end of the drain).

mod dead_letter;
mod handler;
mod shutdown;
mod stats;

pub use dead_letter::{DELIVERY_ATTEMPT, ORIGINAL_MESSAGE_ID, REJECT_REASON, SOURCE_SUBSCRIPTION};
pub use handler::{Delivery, MessageHandler, Outcome};
pub use shutdown::cancel_on_signals;
pub use stats::{ConsumerStats, StatsSnapshot};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use google_cloud_gax::error::rpc::Code;
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::handler::Handler as AckHandle;
use google_cloud_pubsub::subscriber::{MessageStream, ShutdownBehavior};
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::ConsumerSettings;
use crate::gcp::GcpError;
use crate::gcp::errors::with_timeout;
use crate::gcp::pubsub::PubSub;
use crate::ops::metrics::ConsumerMetrics;
use crate::ops::readiness::SubscriptionState;

/// How far each lease extension reaches. The client re-extends well before expiry while a handler
/// runs, so a short extension costs only a few more ModifyAckDeadline calls; in exchange a message
/// stranded on a stream that died (process killed, stream reset, pushed to a stream being shut down)
/// is redelivered after 10 s instead of the 60 s default. 10 s is the server's minimum.
const LEASE_EXTENSION: Duration = Duration::from_secs(10);

/// How long the client may take to flush pending acks and nacks once the handlers are done.
const ACK_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Which subscription a consumer reads and where its rejects go.
#[derive(Debug, Clone)]
pub struct ConsumerTarget {
    /// Short subscription id.
    pub subscription: String,
    /// Short topic id for [`Outcome::Reject`]ed messages. `None` for a subscription with nowhere further
    /// to send them (a dead-letter subscription): a reject there is logged at ERROR with the message
    /// body and acked, so it cannot loop.
    pub dead_letter_topic: Option<String>,
}

#[derive(Debug, Error)]
pub enum ConsumerError {
    #[error("subscription {0} does not exist; run `props-pipeline setup` first")]
    SubscriptionMissing(String),
    #[error(transparent)]
    Gcp(#[from] GcpError),
}

/// A consumer of one subscription.
pub struct Consumer<H> {
    pubsub: PubSub,
    target: ConsumerTarget,
    settings: ConsumerSettings,
    handler: Arc<H>,
    stats: Arc<ConsumerStats>,
    /// Told when this consumer is pulling, for `/readyz`.
    readiness: SubscriptionState,
    /// Backoff between stream re-opens after the client ended a stream.
    reopen_backoff: ExponentialBuilder,
}

impl<H: MessageHandler> Consumer<H> {
    pub fn new(pubsub: PubSub, target: ConsumerTarget, settings: ConsumerSettings, handler: H) -> Self {
        let readiness = SubscriptionState::detached(&target.subscription);
        Self {
            pubsub,
            target,
            settings,
            handler: Arc::new(handler),
            stats: Arc::default(),
            readiness,
            reopen_backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(250))
                .with_max_delay(Duration::from_secs(30))
                .with_jitter()
                .without_max_times(),
        }
    }

    /// Reports to `readiness` whether this consumer is pulling (see [`crate::ops::readiness`]).
    pub fn with_readiness(mut self, readiness: SubscriptionState) -> Self {
        self.readiness = readiness;
        self
    }

    /// Counters that stay readable while [`Consumer::run`] runs and after it returns.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        Arc::clone(&self.stats)
    }

    /// Pulls and handles messages until `shutdown` is cancelled, then drains: in-flight handlers get
    /// the grace period to finish, what is left is nacked, and pending acks are flushed.
    ///
    /// Fails fast only when the subscription does not exist; once running, stream errors are logged,
    /// counted and answered by re-opening the stream with backoff.
    pub async fn run(self, shutdown: CancellationToken) -> Result<StatsSnapshot, ConsumerError> {
        self.check_subscription().await?;
        let subscription = self.target.subscription.clone();
        tracing::info!(subscription, concurrency = self.settings.concurrency, "consumer started");
        // Registered here, not in `new`, so the handles bind to the recorder the process installed.
        let metrics = ConsumerMetrics::new(&subscription);
        let semaphore = Arc::new(Semaphore::new(self.settings.concurrency));
        let mut in_flight = JoinSet::new();
        let mut reopen_delays = self.reopen_backoff.build();
        let mut stream = self.open_stream();
        self.readiness.set_subscribed(true);
        // Messages read from the stream, waiting for a handler slot. The client leases (and extends) a
        // message only once it is read, so the loop reads ahead instead of leaving the backlog in the
        // stream's buffers, where the stream's 10 s deadline expired behind slow handlers: each expiry
        // a redelivery, whose stale copy was then handled and acked in vain (tests/faults.rs, seed
        // 3400458520: ~1,000 completions dead-lettered after 10 attempts though every one was recorded).
        let mut queued: VecDeque<(Message, AckHandle)> = VecDeque::new();
        loop {
            reap_finished(&mut in_flight, &self.stats, &metrics);
            while !queued.is_empty() {
                let Ok(permit) = Arc::clone(&semaphore).try_acquire_owned() else { break };
                if let Some((message, ack)) = queued.pop_front() {
                    self.spawn_handler(&mut in_flight, message, ack, permit, &metrics);
                }
            }
            let next = tokio::select! {
                // Shutdown first: once cancelled, no new message may be taken.
                biased;
                _ = shutdown.cancelled() => break,
                // A slot freed for a queued message: back to the top to hand it over.
                permit = Arc::clone(&semaphore).acquire_owned(), if !queued.is_empty() => {
                    drop(permit);
                    continue;
                }
                next = stream.next() => next,
            };
            match next {
                Some(Ok((message, ack))) => {
                    reopen_delays = self.reopen_backoff.build();
                    self.stats.record_received();
                    queued.push_back((message, ack));
                    self.stats.record_queued(queued.len());
                }
                Some(Err(error)) => {
                    // The client closed the stream after a permanent error; the next pull ends it.
                    self.readiness.set_subscribed(false);
                    if judge_failed_get(error.status().map(|s| s.code)) == FailedGet::Missing {
                        // Reached when the start-up check could not read the subscription.
                        self.drain(in_flight, stream, &metrics).await;
                        return Err(ConsumerError::SubscriptionMissing(
                            self.pubsub.settings().subscription_path(&subscription),
                        ));
                    }
                    self.stats.record_stream_error();
                    let transient =
                        crate::gcp::errors::classify_pubsub(&error) == crate::gcp::errors::Retryability::Retry;
                    tracing::warn!(subscription, %error, transient, "streaming pull error");
                }
                None => {
                    // The client ends the stream after a permanent error; open a fresh one after a pause.
                    self.readiness.set_subscribed(false);
                    let delay = reopen_delays.next().unwrap_or(Duration::from_secs(30));
                    tracing::warn!(subscription, delay_ms = delay.as_millis() as u64, "stream ended; re-opening");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    self.stats.record_stream_reopen();
                    stream = self.open_stream();
                    self.readiness.set_subscribed(true);
                }
            }
        }
        self.readiness.set_subscribed(false);
        // Read but never handed to a handler (none started, so none abandoned): dropping the handles
        // nacks them.
        for _ in queued.drain(..) {
            self.stats.record_retried();
            metrics.retried();
        }
        self.drain(in_flight, stream, &metrics).await;
        let snapshot = self.stats.snapshot();
        tracing::info!(subscription, ?snapshot, "consumer stopped");
        Ok(snapshot)
    }

    fn open_stream(&self) -> MessageStream {
        let path = self.pubsub.settings().subscription_path(&self.target.subscription);
        // Twice the handler slots: a freed slot finds a message already leased, yet most of the
        // backlog stays on the server for other replicas.
        let max_outstanding = (self.settings.concurrency * 2) as i64;
        self.pubsub
            .subscriber
            .subscribe(path)
            .set_max_outstanding_messages(max_outstanding)
            .set_max_lease_extension(LEASE_EXTENSION)
            .set_max_lease(self.settings.max_lease())
            .set_shutdown_behavior(ShutdownBehavior::WaitForProcessing)
            .build()
    }

    async fn check_subscription(&self) -> Result<(), ConsumerError> {
        let path = self.pubsub.settings().subscription_path(&self.target.subscription);
        let operation = format!("reading subscription {path}");
        let result = with_timeout(&operation, self.pubsub.settings().rpc_timeout(), async {
            Ok(self.pubsub.subscription_admin.get_subscription().set_subscription(&path).send().await)
        })
        .await?;
        match result {
            Ok(_) => Ok(()),
            Err(source) => match judge_failed_get(source.status().map(|s| s.code)) {
                FailedGet::Missing => Err(ConsumerError::SubscriptionMissing(path)),
                FailedGet::Unverifiable => {
                    tracing::warn!(
                        subscription = path,
                        "not allowed to read the subscription (no pubsub.subscriptions.get); pulling without checking it"
                    );
                    Ok(())
                }
                FailedGet::Failed => Err(GcpError::Pubsub { operation, source }.into()),
            },
        }
    }

    fn spawn_handler(
        &self,
        in_flight: &mut JoinSet<()>,
        message: Message,
        ack: AckHandle,
        permit: OwnedSemaphorePermit,
        metrics: &ConsumerMetrics,
    ) {
        let delivery = Delivery {
            message_id: message.message_id,
            data: message.data,
            attributes: message.attributes,
            delivery_attempt: ack.delivery_attempt(),
            subscription: self.target.subscription.clone(),
        };
        let span = tracing::info_span!(
            "message",
            subscription = %delivery.subscription,
            message_id = %delivery.message_id,
            delivery_attempt = delivery.delivery_attempt,
        );
        let task = HandlerTask {
            handler: Arc::clone(&self.handler),
            pubsub: self.pubsub.clone(),
            dead_letter_topic: self.target.dead_letter_topic.clone(),
            stats: Arc::clone(&self.stats),
            metrics: metrics.clone(),
        };
        in_flight.spawn(
            async move {
                task.run(delivery, ack).await;
                drop(permit);
            }
            .instrument(span),
        );
    }

    async fn drain(&self, mut in_flight: JoinSet<()>, stream: MessageStream, metrics: &ConsumerMetrics) {
        // The stream stays open, unread, until the acks and nacks are flushed, as Google's own
        // shutdown does. Closing it first was tried: the emulator mishandles a client's RST_STREAM
        // (a NoSuchMethodError in its onRstStreamRead) and then lost track of the messages nacked
        // after it (see docs/ARCHITECTURE.md).
        let grace = self.settings.shutdown_grace();
        let pending = in_flight.len();
        tracing::info!(subscription = self.target.subscription, pending, grace_secs = grace.as_secs(), "draining");
        let finished = tokio::time::timeout(grace, async {
            while let Some(result) = in_flight.join_next().await {
                record_join_result(result, &self.stats, metrics);
            }
        })
        .await;
        if finished.is_err() {
            let abandoned = in_flight.len();
            tracing::warn!(
                subscription = self.target.subscription,
                abandoned,
                "grace period over; nacking unfinished messages"
            );
            // Aborting a task drops its ack handle, and dropping a handle nacks the message.
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {
                self.stats.record_abandoned();
                metrics.retried();
            }
        }
        // Every handle is consumed now, so the client can flush the acks and nacks and close.
        let token = stream.shutdown_token();
        if tokio::time::timeout(ACK_FLUSH_TIMEOUT, token.shutdown()).await.is_err() {
            tracing::warn!(
                subscription = self.target.subscription,
                "acks not flushed in time; Pub/Sub will redeliver those messages"
            );
        }
        drop(stream);
    }
}

/// What a failed subscription GET at start-up means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailedGet {
    /// NOT_FOUND: `setup` was not run; a clear error.
    Missing,
    /// PERMISSION_DENIED: a least-privilege account (`roles/pubsub.subscriber` lacks
    /// `subscriptions.get`) may still pull; start, and let the pull prove the subscription.
    Unverifiable,
    /// Anything else (unreachable, timeout): fail start-up with the error.
    Failed,
}

fn judge_failed_get(code: Option<Code>) -> FailedGet {
    match code {
        Some(Code::NotFound) => FailedGet::Missing,
        Some(Code::PermissionDenied) => FailedGet::Unverifiable,
        _ => FailedGet::Failed,
    }
}

/// Everything one handler task needs, moved into the task.
struct HandlerTask<H> {
    handler: Arc<H>,
    pubsub: PubSub,
    dead_letter_topic: Option<String>,
    stats: Arc<ConsumerStats>,
    metrics: ConsumerMetrics,
}

impl<H: MessageHandler> HandlerTask<H> {
    async fn run(self, delivery: Delivery, ack: AckHandle) {
        let started = Instant::now();
        let outcome = self.handler.handle(&delivery).await;
        let elapsed = started.elapsed();
        self.metrics.handled_in(elapsed);
        tracing::debug!(?outcome, elapsed_ms = elapsed.as_millis() as u64, "message handled");
        match outcome {
            Outcome::Ack => {
                ack.ack();
                self.stats.record_acked();
                self.metrics.acked();
            }
            Outcome::Retry(reason) => {
                tracing::debug!(reason, "handler asked for a retry; nacking");
                ack.nack();
                self.stats.record_retried();
                self.metrics.retried();
            }
            Outcome::Reject(reason) => self.reject(delivery, ack, &reason).await,
        }
    }

    async fn reject(&self, delivery: Delivery, ack: AckHandle, reason: &str) {
        let Some(topic) = &self.dead_letter_topic else {
            tracing::error!(
                reason,
                data = %String::from_utf8_lossy(&delivery.data),
                attributes = ?delivery.attributes,
                "rejected a message on a subscription without a dead-letter topic; acking so it cannot loop"
            );
            ack.ack();
            self.stats.record_rejected();
            self.metrics.rejected();
            return;
        };
        match dead_letter::publish_rejected(&self.pubsub, topic, &delivery, reason).await {
            Ok(dead_letter_id) => {
                tracing::warn!(reason, dead_letter_topic = topic, dead_letter_id, "message rejected and dead-lettered");
                ack.ack();
                self.stats.record_rejected();
                self.metrics.rejected();
                self.metrics.dead_lettered();
            }
            Err(error) => {
                tracing::error!(reason, %error, "could not publish a rejected message to its dead-letter topic; nacking");
                ack.nack();
                self.stats.record_dead_letter_failure();
                // Nacked: Pub/Sub redelivers it, so its outcome this time is a retry.
                self.metrics.retried();
            }
        }
    }
}

fn reap_finished(in_flight: &mut JoinSet<()>, stats: &ConsumerStats, metrics: &ConsumerMetrics) {
    while let Some(result) = in_flight.try_join_next() {
        record_join_result(result, stats, metrics);
    }
}

fn record_join_result(result: Result<(), tokio::task::JoinError>, stats: &ConsumerStats, metrics: &ConsumerMetrics) {
    if let Err(error) = result
        && error.is_panic()
    {
        // The task's ack handle was dropped during unwinding, which nacked the message.
        tracing::error!(%error, "message handler panicked; message nacked");
        stats.record_panic();
        metrics.retried();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_subscription_get_starts_the_consumer_and_a_missing_subscription_does_not() {
        assert_eq!(judge_failed_get(Some(Code::PermissionDenied)), FailedGet::Unverifiable);
        assert_eq!(judge_failed_get(Some(Code::NotFound)), FailedGet::Missing);
        assert_eq!(judge_failed_get(Some(Code::Unavailable)), FailedGet::Failed);
        assert_eq!(judge_failed_get(None), FailedGet::Failed);
    }
}
