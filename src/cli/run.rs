//! `props-pipeline run <role>...`

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use props_pipeline::batch::engine::BatchEngine;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::batch::sweep_policy::SweepSettings;
use props_pipeline::config::ConsumerSettings;
use props_pipeline::consumer::cancel_on_signals;
use props_pipeline::dashboard::Dashboard;
use props_pipeline::gcp::pubsub::PubSub;
use props_pipeline::nba::domain::{NbaDomain, NbaWorker};
use props_pipeline::nba::export::{ExportRole, Exporter};
use props_pipeline::nba::model::ModelConfig;
use props_pipeline::ops;
use props_pipeline::runner::{Role, Roles};
use props_pipeline::topology::Topology;

use super::args::{HttpArgs, PubsubAndFirestore, TopicArgs};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Roles to run in this process: coordinator, worker, exporter, dead-letter, sweeper, or all; and
    /// `dashboard` (not part of all) to serve the read-only web UI on the same HTTP address.
    #[arg(required = true, value_name = "ROLE")]
    pub roles: Vec<String>,
    #[command(flatten)]
    pub consumer: ConsumerSettings,
    #[command(flatten)]
    pub engine: EngineSettings,
    #[command(flatten)]
    pub sweep: SweepSettings,
    /// Folder the exporter writes `{date}.json` files to.
    #[arg(long, env = "PROPS_EXPORT_DIR", default_value = "out/exports")]
    pub export_dir: PathBuf,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub google: PubsubAndFirestore,
}

fn parse_roles(names: &[String]) -> anyhow::Result<Vec<Role>> {
    let mut roles = Vec::new();
    for name in names {
        let expanded = if name == "all" { Role::ALL.to_vec() } else { vec![name.parse().map_err(anyhow::Error::msg)?] };
        for role in expanded {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
    }
    Ok(roles)
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let gcp = &args.google.settings();
    let topics = &args.topics.names()?;
    let dashboard = args.roles.iter().any(|name| name == "dashboard");
    let names: Vec<String> = args.roles.iter().filter(|name| *name != "dashboard").cloned().collect();
    let roles = parse_roles(&names)?;
    args.consumer.validate().context("invalid consumer settings")?;
    args.engine.validate().context("invalid engine settings")?;
    args.sweep.validate().context("invalid sweeper settings")?;
    let metrics = ops::metrics::install()?;
    let shutdown = cancel_on_signals();
    let pubsub = PubSub::connect(gcp).await?;
    let store = BatchStore::new(props_pipeline::gcp::firestore::connect(gcp).await?);
    let ready = ready_check(&store);
    let consumers = ready.consumers.clone();
    let pages = match dashboard {
        true => Dashboard::new(store.clone(), args.sweep.clone()).router(),
        false => axum::Router::new(),
    };
    let http = ops::http::serve_with(args.http.http_addr, ready, metrics, shutdown.clone(), pages)
        .await
        .map_err(|error| super::errors::http_error(error, args.http.http_addr))?;
    let engine = BatchEngine::new(
        store.clone(),
        pubsub.clone(),
        topics.clone(),
        Arc::new(NbaDomain::new(store.clone())),
        args.engine,
    );
    tracing::info!(roles = ?roles, instance_id = engine.instance_id(), project = gcp.project, "starting");
    let runner = Roles {
        pubsub,
        topology: Topology::new(topics),
        consumer: args.consumer,
        engine: Arc::new(engine),
        item_handler: Arc::new(NbaWorker::new(store.clone(), ModelConfig::default())),
        exporter: Arc::new(ExportRole(Exporter::new(store.db().clone(), args.export_dir))),
        completion_topic: topics.completion_topic.clone(),
        sweep: args.sweep,
    };
    let result = if roles.is_empty() {
        // Only the dashboard: nothing to consume, serve until the shutdown signal.
        consumers.mark_started();
        shutdown.cancelled().await;
        Ok(Vec::new())
    } else {
        runner.run_observed(&roles, shutdown.clone(), &consumers).await
    };
    // The runner returns after a shutdown signal or a failed consumer; either way the server stops.
    shutdown.cancel();
    match http.task.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "http server stopped with an error"),
        Err(error) => tracing::warn!(%error, "http server task failed"),
    }
    result?;
    tracing::info!("stopped");
    Ok(())
}

/// `/readyz`'s check: consumers subscribed (none for a dashboard-only process) and Firestore answering.
pub(super) fn ready_check(store: &BatchStore) -> ops::readiness::ReadyCheck {
    ops::readiness::ReadyCheck {
        consumers: ops::readiness::Readiness::default(),
        firestore: Arc::new(ops::readiness::CachedProbe::new(
            ops::readiness::FirestoreProbe(store.db().clone()),
            FIRESTORE_PROBE_TTL,
            FIRESTORE_PROBE_TIMEOUT,
        )),
    }
}

/// How long a Firestore readiness probe's answer is reused: kubelet probes every few seconds, and each
/// probe is a billed read.
const FIRESTORE_PROBE_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// A probe slower than this counts as unreachable. Below kubelet's default probe timeout (1 s), so
/// `/readyz` answers with its reason instead of kubelet giving up on it.
const FIRESTORE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_expands_and_duplicates_collapse() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_roles(&names(&["all"])).unwrap(), Role::ALL.to_vec());
        assert_eq!(parse_roles(&names(&["worker", "worker"])).unwrap(), vec![Role::Worker]);
        assert_eq!(parse_roles(&names(&["exporter", "coordinator"])).unwrap(), vec![Role::Exporter, Role::Coordinator]);
        let error = parse_roles(&names(&["exporter2"])).unwrap_err().to_string();
        assert!(error.contains("unknown role \"exporter2\""), "{error}");
    }
}
