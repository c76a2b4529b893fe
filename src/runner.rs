//! Runs a set of roles in one process, each role one or more consumers on the shared runtime, all
//! stopped by one shutdown token. `props-pipeline run` is a thin wrapper over [`Roles::run`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batch::dead_letters::DeadLetterRole;
use crate::batch::domain::{BatchDomain, ItemHandler};
use crate::batch::engine::BatchEngine;
use crate::batch::roles::{CompletionRole, TriggerRole, WorkerRole};
use crate::batch::sweep_policy::SweepSettings;
use crate::batch::sweeper::Sweeper;
use crate::config::ConsumerSettings;
use crate::consumer::{Consumer, ConsumerError, ConsumerTarget, MessageHandler, StatsSnapshot};
use crate::gcp::pubsub::PubSub;
use crate::ops::readiness::Readiness;
use crate::topology::{ChannelKind, Topology};

/// A role of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Triggers and completions: creates, tracks and finalizes batches.
    Coordinator,
    /// Requests: predicts one item each and reports its completion.
    Worker,
    /// Ready events: writes the front-end file of a consolidated batch.
    Exporter,
    /// Every dead-letter subscription: fails the items of dead requests, records every dead letter.
    DeadLetter,
    /// Periodic pass over unsettled batches: finalize, redrive, alert, re-announce, expire.
    Sweeper,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Coordinator, Role::Worker, Role::Exporter, Role::DeadLetter, Role::Sweeper];
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "coordinator" => Ok(Role::Coordinator),
            "worker" => Ok(Role::Worker),
            "exporter" => Ok(Role::Exporter),
            "dead-letter" => Ok(Role::DeadLetter),
            "sweeper" => Ok(Role::Sweeper),
            other => Err(format!(
                "unknown role {other:?}: expected coordinator, worker, exporter, dead-letter, sweeper or all"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Coordinator => "coordinator",
            Role::Worker => "worker",
            Role::Exporter => "exporter",
            Role::DeadLetter => "dead-letter",
            Role::Sweeper => "sweeper",
        })
    }
}

/// Everything the roles of one process share: the engine and the domain's worker and exporter.
pub struct Roles<D, H, X> {
    pub pubsub: PubSub,
    pub topology: Topology,
    pub consumer: ConsumerSettings,
    pub engine: Arc<BatchEngine<D>>,
    pub item_handler: Arc<H>,
    pub exporter: Arc<X>,
    pub completion_topic: String,
    pub sweep: SweepSettings,
}

impl<D: BatchDomain, H: ItemHandler, X: MessageHandler> Roles<D, H, X> {
    /// Runs `roles` until `shutdown` is cancelled or one consumer fails to start; on a failure the
    /// others are stopped too and the first error is returned. Returns the consumers' statistics.
    pub async fn run(&self, roles: &[Role], shutdown: CancellationToken) -> Result<Vec<StatsSnapshot>, ConsumerError> {
        self.run_observed(roles, shutdown, &Readiness::default()).await
    }

    /// [`Roles::run`], registering every consumer with `readiness` (what `/readyz` reads).
    pub async fn run_observed(
        &self,
        roles: &[Role],
        shutdown: CancellationToken,
        readiness: &Readiness,
    ) -> Result<Vec<StatsSnapshot>, ConsumerError> {
        let mut consumers = JoinSet::new();
        let mut sweeper = None;
        for role in roles {
            match role {
                Role::Coordinator => {
                    self.spawn(
                        &mut consumers,
                        ChannelKind::Trigger,
                        TriggerRole(Arc::clone(&self.engine)),
                        &shutdown,
                        readiness,
                    );
                    self.spawn(
                        &mut consumers,
                        ChannelKind::Completion,
                        CompletionRole(Arc::clone(&self.engine)),
                        &shutdown,
                        readiness,
                    );
                }
                Role::Worker => {
                    let worker = WorkerRole::new(
                        Arc::clone(&self.item_handler),
                        self.engine.store().clone(),
                        self.pubsub.clone(),
                        self.completion_topic.clone(),
                    );
                    self.spawn(&mut consumers, ChannelKind::Request, worker, &shutdown, readiness);
                }
                Role::Exporter => {
                    self.spawn(&mut consumers, ChannelKind::Ready, Arc::clone(&self.exporter), &shutdown, readiness);
                }
                Role::DeadLetter => {
                    for kind in ChannelKind::ALL {
                        let role = DeadLetterRole { engine: Arc::clone(&self.engine), channel: kind };
                        // A dead-letter subscription has no dead-letter topic of its own: the runtime
                        // logs a reject there at ERROR and acks it, so nothing loops.
                        let target = ConsumerTarget {
                            subscription: self.topology.channel(kind).dead_letter_subscription.clone(),
                            dead_letter_topic: None,
                        };
                        self.spawn_on(&mut consumers, target, role, &shutdown, readiness);
                    }
                }
                Role::Sweeper => {
                    let pass = Sweeper::new(Arc::clone(&self.engine), self.sweep.clone());
                    sweeper = Some(tokio::spawn(pass.run(shutdown.clone())));
                }
            }
        }
        readiness.mark_started();
        let mut stats = Vec::new();
        let mut first_error = None;
        while let Some(joined) = consumers.join_next().await {
            match joined {
                Ok(Ok(snapshot)) => stats.push(snapshot),
                Ok(Err(error)) => {
                    tracing::error!(%error, "a consumer stopped with an error; stopping the others");
                    shutdown.cancel();
                    first_error.get_or_insert(error);
                }
                Err(join_error) => {
                    tracing::error!(%join_error, "a consumer task panicked; stopping the others");
                    shutdown.cancel();
                }
            }
        }
        // The sweeper never fails on its own; it ends with the shutdown token (cancelled above when a
        // consumer failed).
        if let Some(sweeper) = sweeper
            && let Err(join_error) = sweeper.await
        {
            tracing::error!(%join_error, "the sweeper task panicked");
        }
        // Handlers aborted at the end of the grace period may have held a finalize claim: give those
        // up now, so the next completion or sweep elsewhere takes over at once, not after the lease.
        let released = self.engine.release_held_claims().await;
        if released > 0 {
            tracing::info!(released, "released the finalize claims this process could not finish");
        }
        first_error.map_or(Ok(stats), Err)
    }

    fn spawn<M: MessageHandler>(
        &self,
        consumers: &mut JoinSet<Result<StatsSnapshot, ConsumerError>>,
        kind: ChannelKind,
        handler: M,
        shutdown: &CancellationToken,
        readiness: &Readiness,
    ) {
        let channel = self.topology.channel(kind);
        let target = ConsumerTarget {
            subscription: channel.subscription.clone(),
            dead_letter_topic: Some(channel.dead_letter_topic.clone()),
        };
        self.spawn_on(consumers, target, handler, shutdown, readiness);
    }

    fn spawn_on<M: MessageHandler>(
        &self,
        consumers: &mut JoinSet<Result<StatsSnapshot, ConsumerError>>,
        target: ConsumerTarget,
        handler: M,
        shutdown: &CancellationToken,
        readiness: &Readiness,
    ) {
        let subscribed = readiness.register(&target.subscription);
        let consumer =
            Consumer::new(self.pubsub.clone(), target, self.consumer.clone(), handler).with_readiness(subscribed);
        consumers.spawn(consumer.run(shutdown.clone()));
    }
}
