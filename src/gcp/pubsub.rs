//! Pub/Sub clients for one project: admin (topics, subscriptions), a shared publisher connection with
//! one batching publisher per topic, and the streaming-pull subscriber.
//!
//! Google's crate does not read `PUBSUB_EMULATOR_HOST` itself; [`PubSub::connect`] maps it to a
//! plaintext endpoint with anonymous credentials, and otherwise uses Application Default Credentials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use google_cloud_auth::credentials::Credentials;
use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_pubsub::client::{BasePublisher, Publisher, Subscriber, SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::Message;

use super::errors::{GcpError, with_timeout};
use crate::config::GcpSettings;

/// Every Pub/Sub client the pipeline uses, cheap to clone.
#[derive(Clone)]
pub struct PubSub {
    settings: GcpSettings,
    pub topic_admin: TopicAdmin,
    pub subscription_admin: SubscriptionAdmin,
    pub subscriber: Subscriber,
    base_publisher: BasePublisher,
    /// One publisher per topic: each batches its own messages over the shared connection.
    publishers: Arc<Mutex<HashMap<String, Publisher>>>,
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub").field("project", &self.settings.project).finish_non_exhaustive()
    }
}

/// Applies the emulator endpoint and anonymous credentials to any of the crate's client builders.
macro_rules! connect_builder {
    ($builder:expr, $endpoint:expr, $credentials:expr) => {{
        let mut builder = $builder;
        if let Some(endpoint) = $endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if let Some(credentials) = $credentials {
            builder = builder.with_credentials(credentials.clone());
        }
        builder
    }};
}

impl PubSub {
    /// Builds the clients. Building does not talk to the server; the first call does.
    pub async fn connect(settings: &GcpSettings) -> Result<Self, GcpError> {
        let (endpoint, credentials) = endpoint_and_credentials(settings);
        let connect_error = |source: google_cloud_gax::client_builder::Error| GcpError::Connect {
            service: "Pub/Sub",
            source: anyhow::Error::new(source),
        };
        let topic_admin =
            connect_builder!(TopicAdmin::builder(), &endpoint, &credentials).build().await.map_err(connect_error)?;
        let subscription_admin = connect_builder!(SubscriptionAdmin::builder(), &endpoint, &credentials)
            .build()
            .await
            .map_err(connect_error)?;
        let subscriber =
            connect_builder!(Subscriber::builder(), &endpoint, &credentials).build().await.map_err(connect_error)?;
        let base_publisher =
            connect_builder!(BasePublisher::builder(), &endpoint, &credentials).build().await.map_err(connect_error)?;
        Ok(Self {
            settings: settings.clone(),
            topic_admin,
            subscription_admin,
            subscriber,
            base_publisher,
            publishers: Arc::default(),
        })
    }

    pub fn settings(&self) -> &GcpSettings {
        &self.settings
    }

    /// The batching publisher for `topic` (a short topic id, not a path).
    pub fn publisher(&self, topic: &str) -> Publisher {
        // A poisoned lock only means another thread panicked while inserting; the map is still valid.
        let mut publishers = self.publishers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        publishers
            .entry(topic.to_string())
            .or_insert_with(|| self.base_publisher.publisher(self.settings.topic_path(topic)).build())
            .clone()
    }

    /// Publishes one message and waits for the server's message id.
    pub async fn publish(&self, topic: &str, message: Message) -> Result<String, GcpError> {
        let publisher = self.publisher(topic);
        with_timeout(format!("publishing to {topic}"), self.settings.rpc_timeout(), async {
            publisher.publish(message).await.map_err(|source| GcpError::Publish { topic: topic.to_string(), source })
        })
        .await
    }
}

fn endpoint_and_credentials(settings: &GcpSettings) -> (Option<String>, Option<Credentials>) {
    match &settings.pubsub_emulator_host {
        Some(host) => (Some(format!("http://{host}")), Some(Anonymous::new().build())),
        None => (None, None),
    }
}
