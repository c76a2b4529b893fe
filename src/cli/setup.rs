//! `props-pipeline setup`

use anyhow::Context;
use clap::Args;
use props_pipeline::config::SubscriptionPolicy;
use props_pipeline::setup::ensure_topology;
use props_pipeline::topology::Topology;

use super::args::{PubsubOnly, TopicArgs};
use super::output::outln;

#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub policy: SubscriptionPolicy,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub google: PubsubOnly,
}

pub async fn run(args: SetupArgs) -> anyhow::Result<()> {
    let gcp = &args.google.settings();
    args.policy.validate().context("invalid subscription policy")?;
    let pubsub = super::connect_pubsub(gcp).await?;
    let topology = Topology::new(&args.topics.names()?);
    let report = ensure_topology(&pubsub, &topology, &args.policy)
        .await
        .with_context(|| format!("setup of project {} failed", gcp.project))?;
    outln!("{report}")?;
    Ok(())
}
