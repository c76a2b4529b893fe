//! `props-pipeline setup`: creates every topic and subscription of the [`Topology`], idempotently.
//!
//! A resource that already exists is left alone and reported; a subscription whose settings differ from
//! the requested policy is reported with the difference (Pub/Sub cannot change a subscription's topic,
//! and silently rewriting a live subscription's policy is an operator's decision, not setup's).

use std::fmt;

use google_cloud_gax::error::rpc::Code;
use google_cloud_pubsub::model::{DeadLetterPolicy, RetryPolicy, Subscription};
use google_cloud_wkt::Duration as WireDuration;

use crate::config::SubscriptionPolicy;
use crate::gcp::GcpError;
use crate::gcp::errors::with_timeout;
use crate::gcp::pubsub::PubSub;
use crate::topology::Topology;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Topic,
    Subscription,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupStatus {
    Created,
    AlreadyExisted,
    /// Exists, but its settings differ from the policy; left unchanged.
    Differs(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupEntry {
    pub kind: ResourceKind,
    pub name: String,
    pub status: SetupStatus,
}

/// What `setup` did, one entry per resource, in creation order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupReport {
    pub entries: Vec<SetupEntry>,
}

impl SetupReport {
    pub fn created(&self) -> usize {
        self.entries.iter().filter(|e| e.status == SetupStatus::Created).count()
    }

    pub fn differing(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e.status, SetupStatus::Differs(_))).count()
    }
}

impl fmt::Display for SetupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            let kind = match entry.kind {
                ResourceKind::Topic => "topic",
                ResourceKind::Subscription => "subscription",
            };
            match &entry.status {
                SetupStatus::Created => writeln!(f, "created         {kind:<13} {}", entry.name)?,
                SetupStatus::AlreadyExisted => writeln!(f, "already existed {kind:<13} {}", entry.name)?,
                SetupStatus::Differs(diffs) => {
                    writeln!(f, "DIFFERS         {kind:<13} {} (left unchanged): {}", entry.name, diffs.join("; "))?
                }
            }
        }
        write!(
            f,
            "{} created, {} already existed, {} differ from the requested settings",
            self.created(),
            self.entries.len() - self.created(),
            self.differing()
        )
    }
}

/// Creates the topics, then the subscriptions (a dead-letter policy needs its topic to exist).
pub async fn ensure_topology(
    pubsub: &PubSub,
    topology: &Topology,
    policy: &SubscriptionPolicy,
) -> Result<SetupReport, GcpError> {
    let mut report = SetupReport::default();
    for channel in topology.channels() {
        for topic in [&channel.topic, &channel.dead_letter_topic] {
            let status = ensure_topic(pubsub, topic).await?;
            report.entries.push(SetupEntry { kind: ResourceKind::Topic, name: topic.clone(), status });
        }
    }
    for channel in topology.channels() {
        let settings = pubsub.settings();
        let main = desired_subscription(
            settings.subscription_path(&channel.subscription),
            settings.topic_path(&channel.topic),
            policy,
            Some(settings.topic_path(&channel.dead_letter_topic)),
        );
        // A dead-letter subscription gets no dead-letter policy of its own: its messages have nowhere
        // further to go, and operators read them from here.
        let dead_letter = desired_subscription(
            settings.subscription_path(&channel.dead_letter_subscription),
            settings.topic_path(&channel.dead_letter_topic),
            policy,
            None,
        );
        for (name, desired) in [(&channel.subscription, main), (&channel.dead_letter_subscription, dead_letter)] {
            let status = ensure_subscription(pubsub, desired).await?;
            report.entries.push(SetupEntry { kind: ResourceKind::Subscription, name: name.clone(), status });
        }
    }
    Ok(report)
}

/// The subscription `setup` wants, as Pub/Sub would report it back.
pub fn desired_subscription(
    name: String,
    topic: String,
    policy: &SubscriptionPolicy,
    dead_letter_topic: Option<String>,
) -> Subscription {
    let mut subscription = Subscription::new()
        .set_name(name)
        .set_topic(topic)
        .set_ack_deadline_seconds(policy.ack_deadline_secs as i32)
        .set_retry_policy(
            RetryPolicy::new()
                .set_minimum_backoff(WireDuration::clamp(policy.min_backoff_secs as i64, 0))
                .set_maximum_backoff(WireDuration::clamp(policy.max_backoff_secs as i64, 0)),
        );
    if let Some(dead_letter_topic) = dead_letter_topic {
        subscription = subscription.set_dead_letter_policy(
            DeadLetterPolicy::new()
                .set_dead_letter_topic(dead_letter_topic)
                .set_max_delivery_attempts(policy.max_delivery_attempts as i32),
        );
    }
    subscription
}

async fn ensure_topic(pubsub: &PubSub, topic: &str) -> Result<SetupStatus, GcpError> {
    let path = pubsub.settings().topic_path(topic);
    let operation = format!("creating topic {path}");
    let result = with_timeout(&operation, pubsub.settings().rpc_timeout(), async {
        Ok(pubsub.topic_admin.create_topic().set_name(&path).send().await)
    })
    .await?;
    match result {
        Ok(_) => Ok(SetupStatus::Created),
        Err(e) if e.status().map(|s| s.code) == Some(Code::AlreadyExists) => Ok(SetupStatus::AlreadyExisted),
        Err(source) => Err(GcpError::Pubsub { operation, source }),
    }
}

async fn ensure_subscription(pubsub: &PubSub, desired: Subscription) -> Result<SetupStatus, GcpError> {
    let timeout = pubsub.settings().rpc_timeout();
    let operation = format!("creating subscription {}", desired.name);
    let request = pubsub
        .subscription_admin
        .create_subscription()
        .set_name(&desired.name)
        .set_topic(&desired.topic)
        .set_ack_deadline_seconds(desired.ack_deadline_seconds)
        .set_or_clear_retry_policy(desired.retry_policy.clone())
        .set_or_clear_dead_letter_policy(desired.dead_letter_policy.clone());
    let result = with_timeout(&operation, timeout, async { Ok(request.send().await) }).await?;
    match result {
        Ok(_) => Ok(SetupStatus::Created),
        Err(e) if e.status().map(|s| s.code) == Some(Code::AlreadyExists) => {
            let operation = format!("reading subscription {}", desired.name);
            let existing = with_timeout(&operation, timeout, async {
                pubsub
                    .subscription_admin
                    .get_subscription()
                    .set_subscription(&desired.name)
                    .send()
                    .await
                    .map_err(|source| GcpError::Pubsub { operation: operation.clone(), source })
            })
            .await?;
            let diffs = subscription_differences(&desired, &existing);
            Ok(if diffs.is_empty() { SetupStatus::AlreadyExisted } else { SetupStatus::Differs(diffs) })
        }
        Err(source) => Err(GcpError::Pubsub { operation, source }),
    }
}

/// Human-readable differences between the wanted and the actual subscription, in the fields setup owns.
pub fn subscription_differences(desired: &Subscription, actual: &Subscription) -> Vec<String> {
    let mut diffs = Vec::new();
    if desired.topic != actual.topic {
        diffs.push(format!("topic is {} (want {})", actual.topic, desired.topic));
    }
    if desired.ack_deadline_seconds != actual.ack_deadline_seconds {
        diffs
            .push(format!("ack deadline is {}s (want {}s)", actual.ack_deadline_seconds, desired.ack_deadline_seconds));
    }
    let backoff = |p: &Option<RetryPolicy>| match p {
        None => "none".to_string(),
        Some(p) => {
            let secs = |d: &Option<WireDuration>| d.as_ref().map(|d| d.seconds()).unwrap_or(0);
            format!("{}s..{}s", secs(&p.minimum_backoff), secs(&p.maximum_backoff))
        }
    };
    if backoff(&desired.retry_policy) != backoff(&actual.retry_policy) {
        diffs.push(format!(
            "retry backoff is {} (want {})",
            backoff(&actual.retry_policy),
            backoff(&desired.retry_policy)
        ));
    }
    let dead_letter = |p: &Option<DeadLetterPolicy>| match p {
        None => "none".to_string(),
        Some(p) => format!("{} after {} attempts", p.dead_letter_topic, p.max_delivery_attempts),
    };
    if dead_letter(&desired.dead_letter_policy) != dead_letter(&actual.dead_letter_policy) {
        diffs.push(format!(
            "dead-letter policy is {} (want {})",
            dead_letter(&actual.dead_letter_policy),
            dead_letter(&desired.dead_letter_policy)
        ));
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(policy: &SubscriptionPolicy) -> Subscription {
        desired_subscription(
            "projects/p/subscriptions/s".into(),
            "projects/p/topics/t".into(),
            policy,
            Some("projects/p/topics/t-dead-letter".into()),
        )
    }

    #[test]
    fn identical_subscriptions_have_no_differences() {
        let policy = SubscriptionPolicy::default();
        assert!(subscription_differences(&subscription(&policy), &subscription(&policy)).is_empty());
    }

    #[test]
    fn reports_each_differing_setting() {
        let wanted = subscription(&SubscriptionPolicy::default());
        let actual = subscription(&SubscriptionPolicy {
            ack_deadline_secs: 30,
            max_delivery_attempts: 10,
            ..Default::default()
        });
        let diffs = subscription_differences(&wanted, &actual);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert!(diffs[0].contains("ack deadline is 30s (want 60s)"));
        assert!(diffs[1].contains("dead-letter policy"));
    }
}
