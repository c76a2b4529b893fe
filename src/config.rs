//! Settings shared by every subcommand: where Google Cloud is, what the topics and subscriptions are
//! called, and how subscriptions and consumers behave.
//!
//! Every field is a clap flag with an environment fallback, so the same binary is configured by flags on
//! a terminal and by a ConfigMap in Kubernetes. Emulator hosts follow the names the Google tools use
//! (`PUBSUB_EMULATOR_HOST`, `FIRESTORE_EMULATOR_HOST`); everything of our own is `PROPS_*`.

use std::time::Duration;

use clap::Args;
use thiserror::Error;

/// A setting that cannot work, found before anything talks to Google Cloud.
#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("invalid project id {0:?}: expected 6-30 lowercase letters, digits or hyphens")]
    InvalidProject(String),
    #[error("invalid emulator host {0:?}: expected HOST:PORT, e.g. 127.0.0.1:8085")]
    InvalidEmulatorHost(String),
    #[error("invalid {name} {value:?}: expected 3-255 letters, digits, '-', '_', '.', starting with a letter")]
    InvalidResourceName { name: &'static str, value: String },
    #[error("{name} must be between {min} and {max}, got {value}")]
    OutOfRange { name: &'static str, value: u64, min: u64, max: u64 },
    #[error("a fraction must be between 0 and 1, got {0}")]
    Fraction(f64),
    #[error("min backoff ({min}s) must not exceed max backoff ({max}s)")]
    BackoffOrder { min: u64, max: u64 },
}

/// Where the Google Cloud project is and how to reach it. The binary fills it from the flag groups of
/// `src/cli/args.rs`, each command with only the services it uses.
#[derive(Debug, Clone)]
pub struct GcpSettings {
    /// Google Cloud project id (emulators accept any well-formed id).
    pub project: String,
    /// Pub/Sub emulator HOST:PORT. When set, no credentials are used; otherwise Application Default
    /// Credentials (Workload Identity on GKE).
    pub pubsub_emulator_host: Option<String>,
    /// Firestore emulator HOST:PORT. When set, no credentials are used.
    pub firestore_emulator_host: Option<String>,
    /// Longest wait for one administrative or publish call before giving up with an error.
    pub rpc_timeout_secs: u64,
}

impl GcpSettings {
    /// Settings for a project, with hosts given explicitly (tests and tools; the CLI uses clap).
    pub fn new(project: impl Into<String>, pubsub_host: Option<String>, firestore_host: Option<String>) -> Self {
        Self {
            project: project.into(),
            pubsub_emulator_host: pubsub_host,
            firestore_emulator_host: firestore_host,
            rpc_timeout_secs: 20,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_project(&self.project)?;
        for host in [&self.pubsub_emulator_host, &self.firestore_emulator_host].into_iter().flatten() {
            validate_host(host)?;
        }
        check_range("rpc timeout (seconds)", self.rpc_timeout_secs, 1, 600)
    }

    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_secs(self.rpc_timeout_secs)
    }

    pub fn topic_path(&self, topic: &str) -> String {
        format!("projects/{}/topics/{topic}", self.project)
    }

    pub fn subscription_path(&self, subscription: &str) -> String {
        format!("projects/{}/subscriptions/{subscription}", self.project)
    }
}

/// Names of the four topics of the design. Subscriptions and dead-letter topics derive from them
/// (see [`crate::topology`]), so renaming a topic renames its whole family consistently. The binary's
/// flags for them are in `src/cli/args.rs`.
#[derive(Debug, Clone)]
pub struct TopicNames {
    /// Topic operators publish triggers to.
    pub trigger_topic: String,
    /// Topic of the coordinator's fan-out: one request per item.
    pub request_topic: String,
    /// Topic workers report completions to.
    pub completion_topic: String,
    /// Topic announcing a consolidated batch.
    pub ready_topic: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        Self {
            trigger_topic: "prediction-trigger".into(),
            request_topic: "prediction-requests".into(),
            completion_topic: "prediction-completions".into(),
            ready_topic: "predictions-ready".into(),
        }
    }
}

impl TopicNames {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("trigger topic", &self.trigger_topic),
            ("request topic", &self.request_topic),
            ("completion topic", &self.completion_topic),
            ("ready topic", &self.ready_topic),
        ] {
            validate_resource_name(name, value)?;
        }
        Ok(())
    }
}

/// How every subscription created by `setup` behaves on the server.
#[derive(Debug, Clone, Args)]
pub struct SubscriptionPolicy {
    /// Ack deadline (10-600 s). The consumer extends leases while a handler runs, so this only bounds
    /// how soon a crashed consumer's messages are redelivered.
    #[arg(long, env = "PROPS_ACK_DEADLINE_SECS", default_value_t = 60)]
    pub ack_deadline_secs: u64,
    /// Deliveries before Pub/Sub moves a message to the dead-letter topic (5-100).
    #[arg(long, env = "PROPS_MAX_DELIVERY_ATTEMPTS", default_value_t = 5)]
    pub max_delivery_attempts: u64,
    /// Smallest redelivery delay after a nack (0-600 s).
    #[arg(long, env = "PROPS_MIN_BACKOFF_SECS", default_value_t = 10)]
    pub min_backoff_secs: u64,
    /// Largest redelivery delay after repeated nacks (0-600 s).
    #[arg(long, env = "PROPS_MAX_BACKOFF_SECS", default_value_t = 600)]
    pub max_backoff_secs: u64,
}

impl Default for SubscriptionPolicy {
    fn default() -> Self {
        Self { ack_deadline_secs: 60, max_delivery_attempts: 5, min_backoff_secs: 10, max_backoff_secs: 600 }
    }
}

impl SubscriptionPolicy {
    /// The ranges are Pub/Sub's own; checking them here turns a server error into a clear message.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("ack deadline (seconds)", self.ack_deadline_secs, 10, 600)?;
        check_range("max delivery attempts", self.max_delivery_attempts, 5, 100)?;
        check_range("min backoff (seconds)", self.min_backoff_secs, 0, 600)?;
        check_range("max backoff (seconds)", self.max_backoff_secs, 0, 600)?;
        if self.min_backoff_secs > self.max_backoff_secs {
            return Err(ConfigError::BackoffOrder { min: self.min_backoff_secs, max: self.max_backoff_secs });
        }
        Ok(())
    }
}

/// How one consumer process pulls and handles messages.
#[derive(Debug, Clone, Args)]
pub struct ConsumerSettings {
    /// Messages handled at once per subscription (1-1000).
    #[arg(long, env = "PROPS_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
    /// On SIGTERM, how long in-flight handlers may run before their messages are nacked. Keep it below
    /// the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "PROPS_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Longest a message is held (leases extended) before the client gives it up for redelivery.
    #[arg(long, env = "PROPS_MAX_LEASE_SECS", default_value_t = 600)]
    pub max_lease_secs: u64,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self { concurrency: 16, shutdown_grace_secs: 20, max_lease_secs: 600 }
    }
}

impl ConsumerSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("concurrency", self.concurrency as u64, 1, 1000)?;
        check_range("shutdown grace (seconds)", self.shutdown_grace_secs, 0, 3600)?;
        check_range("max lease (seconds)", self.max_lease_secs, 10, 3600)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn max_lease(&self) -> Duration {
        Duration::from_secs(self.max_lease_secs)
    }
}

fn check_range(name: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) { Ok(()) } else { Err(ConfigError::OutOfRange { name, value, min, max }) }
}

/// Google's rule for project ids: 6-30 characters, lowercase letters, digits and hyphens, starting with a
/// letter and not ending with a hyphen.
fn validate_project(project: &str) -> Result<(), ConfigError> {
    let ok = (6..=30).contains(&project.len())
        && project.starts_with(|c: char| c.is_ascii_lowercase())
        && !project.ends_with('-')
        && project.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok { Ok(()) } else { Err(ConfigError::InvalidProject(project.to_string())) }
}

fn validate_host(host: &str) -> Result<(), ConfigError> {
    let invalid = || ConfigError::InvalidEmulatorHost(host.to_string());
    let (name, port) = host.rsplit_once(':').ok_or_else(invalid)?;
    if name.is_empty() || name.contains('/') || port.parse::<u16>().is_err() {
        return Err(invalid());
    }
    Ok(())
}

/// Pub/Sub's rule for topic and subscription ids (the "goog" prefix is reserved).
pub fn validate_resource_name(name: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok = (3..=255).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_alphabetic())
        && !value.starts_with("goog")
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c));
    if ok { Ok(()) } else { Err(ConfigError::InvalidResourceName { name, value: value.to_string() }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_defaults() {
        GcpSettings::new("props-local", Some("127.0.0.1:8085".into()), None).validate().unwrap();
        TopicNames::default().validate().unwrap();
        SubscriptionPolicy::default().validate().unwrap();
        ConsumerSettings::default().validate().unwrap();
    }

    #[test]
    fn rejects_malformed_project_ids() {
        for bad in ["", "short", "Upper-case-project", "ends-with-hyphen-", "9starts-with-digit", "has_underscore"] {
            assert_eq!(
                GcpSettings::new(bad, None, None).validate(),
                Err(ConfigError::InvalidProject(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejects_emulator_hosts_without_a_port() {
        for bad in ["localhost", "http://127.0.0.1:8085", "127.0.0.1:notaport", ":8085"] {
            let settings = GcpSettings::new("props-local", Some(bad.into()), None);
            assert_eq!(settings.validate(), Err(ConfigError::InvalidEmulatorHost(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn rejects_out_of_range_subscription_policies() {
        let too_short = SubscriptionPolicy { ack_deadline_secs: 5, ..Default::default() };
        assert!(matches!(too_short.validate(), Err(ConfigError::OutOfRange { name: "ack deadline (seconds)", .. })));
        let too_few = SubscriptionPolicy { max_delivery_attempts: 4, ..Default::default() };
        assert!(matches!(too_few.validate(), Err(ConfigError::OutOfRange { name: "max delivery attempts", .. })));
        let inverted = SubscriptionPolicy { min_backoff_secs: 60, max_backoff_secs: 10, ..Default::default() };
        assert_eq!(inverted.validate(), Err(ConfigError::BackoffOrder { min: 60, max: 10 }));
    }

    #[test]
    fn rejects_bad_topic_names() {
        let names = TopicNames { trigger_topic: "goog-reserved".into(), ..Default::default() };
        assert!(matches!(names.validate(), Err(ConfigError::InvalidResourceName { name: "trigger topic", .. })));
        let names = TopicNames { ready_topic: "has space".into(), ..Default::default() };
        assert!(matches!(names.validate(), Err(ConfigError::InvalidResourceName { name: "ready topic", .. })));
    }

    #[test]
    fn rejects_zero_concurrency() {
        let settings = ConsumerSettings { concurrency: 0, ..Default::default() };
        assert!(matches!(settings.validate(), Err(ConfigError::OutOfRange { name: "concurrency", .. })));
    }
}
