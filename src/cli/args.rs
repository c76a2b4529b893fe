//! Flag groups, one per concern. Each subcommand flattens only the groups it uses, so its `--help` lists
//! what it reads and nothing else (`backtest` is offline and has none; `status` reads Firestore only).
//! Every flag has an environment fallback, so a ConfigMap configures the same binary as flags do.

use std::net::SocketAddr;

use clap::Args;
use props_pipeline::config::{ConfigError, GcpSettings, TopicNames, validate_resource_name};

/// The project, and how long one call to Google Cloud may take: every command that talks to it.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Google Cloud")]
pub struct ProjectArgs {
    /// Google Cloud project id (emulators accept any well-formed id).
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT", default_value = "props-local")]
    pub project: String,
    /// Longest wait for one administrative, publish or Firestore call before giving up with an error.
    #[arg(long, env = "PROPS_RPC_TIMEOUT_SECS", default_value_t = 20)]
    pub rpc_timeout_secs: u64,
}

/// Where Firestore is.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Google Cloud")]
pub struct FirestoreArgs {
    /// Firestore emulator HOST:PORT. Unset: Firestore itself, with Application Default Credentials.
    #[arg(long, env = "FIRESTORE_EMULATOR_HOST", value_name = "HOST:PORT")]
    pub firestore_emulator_host: Option<String>,
}

/// Where Pub/Sub is.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Google Cloud")]
pub struct PubsubArgs {
    /// Pub/Sub emulator HOST:PORT. Unset: Pub/Sub itself, with Application Default Credentials
    /// (Workload Identity on GKE).
    #[arg(long, env = "PUBSUB_EMULATOR_HOST", value_name = "HOST:PORT")]
    pub pubsub_emulator_host: Option<String>,
}

/// Commands that read or write Firestore only.
#[derive(Debug, Clone, Args)]
pub struct FirestoreOnly {
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(flatten)]
    pub firestore: FirestoreArgs,
}

/// Commands that use Pub/Sub only.
#[derive(Debug, Clone, Args)]
pub struct PubsubOnly {
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(flatten)]
    pub pubsub: PubsubArgs,
}

/// Commands that use both Pub/Sub and Firestore.
#[derive(Debug, Clone, Args)]
pub struct PubsubAndFirestore {
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(flatten)]
    pub pubsub: PubsubArgs,
    #[command(flatten)]
    pub firestore: FirestoreArgs,
}

impl FirestoreOnly {
    pub fn settings(&self) -> GcpSettings {
        settings(&self.project, None, Some(&self.firestore))
    }
}

impl PubsubOnly {
    pub fn settings(&self) -> GcpSettings {
        settings(&self.project, Some(&self.pubsub), None)
    }
}

impl PubsubAndFirestore {
    pub fn settings(&self) -> GcpSettings {
        settings(&self.project, Some(&self.pubsub), Some(&self.firestore))
    }
}

/// A service a command does not use stays `None`, so nothing probes or exports its emulator host.
fn settings(project: &ProjectArgs, pubsub: Option<&PubsubArgs>, firestore: Option<&FirestoreArgs>) -> GcpSettings {
    let mut gcp = GcpSettings::new(
        project.project.clone(),
        pubsub.and_then(|p| p.pubsub_emulator_host.clone()),
        firestore.and_then(|f| f.firestore_emulator_host.clone()),
    );
    gcp.rpc_timeout_secs = project.rpc_timeout_secs;
    gcp
}

/// The topic triggers are published to: `trigger` and `backfill`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Topics")]
pub struct TriggerTopicArgs {
    /// Topic operators publish triggers to.
    #[arg(long, env = "PROPS_TRIGGER_TOPIC", default_value_t = TopicNames::default().trigger_topic)]
    pub trigger_topic: String,
}

/// All four topics: `setup`, `run` and `redrive` (the engine publishes to the others).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Topics")]
pub struct TopicArgs {
    #[command(flatten)]
    pub trigger: TriggerTopicArgs,
    /// Topic of the coordinator's fan-out: one request per item.
    #[arg(long, env = "PROPS_REQUEST_TOPIC", default_value_t = TopicNames::default().request_topic)]
    pub request_topic: String,
    /// Topic workers report completions to.
    #[arg(long, env = "PROPS_COMPLETION_TOPIC", default_value_t = TopicNames::default().completion_topic)]
    pub completion_topic: String,
    /// Topic announcing a consolidated batch.
    #[arg(long, env = "PROPS_READY_TOPIC", default_value_t = TopicNames::default().ready_topic)]
    pub ready_topic: String,
}

impl TriggerTopicArgs {
    /// The topic's name, checked against Pub/Sub's naming rules.
    pub fn name(&self) -> Result<&str, ConfigError> {
        validate_resource_name("trigger topic", &self.trigger_topic)?;
        Ok(&self.trigger_topic)
    }
}

impl TopicArgs {
    /// The four names, checked against Pub/Sub's naming rules.
    pub fn names(&self) -> Result<TopicNames, ConfigError> {
        let names = TopicNames {
            trigger_topic: self.trigger.trigger_topic.clone(),
            request_topic: self.request_topic.clone(),
            completion_topic: self.completion_topic.clone(),
            ready_topic: self.ready_topic.clone(),
        };
        names.validate()?;
        Ok(names)
    }
}

/// The per-process HTTP server of `run`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpArgs {
    /// Where `/healthz`, `/readyz` and `/metrics` are served. Port 0 picks a free port (logged as
    /// `http listening`), so several processes can share a host.
    #[arg(long, env = "PROPS_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_the_command_does_not_use_has_no_host() {
        let project = ProjectArgs { project: "props-test".into(), rpc_timeout_secs: 7 };
        let firestore = FirestoreArgs { firestore_emulator_host: Some("127.0.0.1:1".into()) };
        let pubsub = PubsubArgs { pubsub_emulator_host: Some("127.0.0.1:2".into()) };
        let only = FirestoreOnly { project: project.clone(), firestore: firestore.clone() }.settings();
        assert_eq!((only.pubsub_emulator_host, only.firestore_emulator_host.as_deref()), (None, Some("127.0.0.1:1")));
        assert_eq!(only.rpc_timeout_secs, 7);
        let only = PubsubOnly { project: project.clone(), pubsub: pubsub.clone() }.settings();
        assert_eq!((only.pubsub_emulator_host.as_deref(), only.firestore_emulator_host), (Some("127.0.0.1:2"), None));
        let both = PubsubAndFirestore { project, pubsub, firestore }.settings();
        assert!(both.pubsub_emulator_host.is_some() && both.firestore_emulator_host.is_some());
    }
}
