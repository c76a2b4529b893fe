//! `props-pipeline setup`

use anyhow::Context;
use clap::Args;
use props_pipeline::config::{GcpSettings, SubscriptionPolicy, TopicNames};
use props_pipeline::setup::ensure_topology;
use props_pipeline::topology::Topology;

#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub policy: SubscriptionPolicy,
}

pub async fn run(gcp: &GcpSettings, topics: &TopicNames, args: SetupArgs) -> anyhow::Result<()> {
    args.policy.validate().context("invalid subscription policy")?;
    let pubsub = super::connect_pubsub(gcp).await?;
    let topology = Topology::new(topics);
    let report = ensure_topology(&pubsub, &topology, &args.policy)
        .await
        .with_context(|| format!("setup of project {} failed", gcp.project))?;
    println!("{report}");
    Ok(())
}
