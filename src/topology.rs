//! The Pub/Sub resources of the design, derived from the four topic names.
//!
//! Each topic has exactly one consuming subscription, a dead-letter topic `<topic>-dead-letter`, and a
//! subscription of the same name on that dead-letter topic: a dead-letter topic without a subscription
//! would silently drop what lands on it.

use crate::config::TopicNames;

/// Which stream of the design a channel carries; roles name the channels they consume by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Trigger,
    Request,
    Completion,
    Ready,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 4] = [Self::Trigger, Self::Request, Self::Completion, Self::Ready];

    /// The role that consumes this channel, used as the subscription suffix.
    fn consumer_role(self) -> &'static str {
        match self {
            Self::Trigger | Self::Completion => "coordinator",
            Self::Request => "worker",
            Self::Ready => "exporter",
        }
    }
}

/// One topic with its consuming subscription and its dead-letter pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub kind: ChannelKind,
    pub topic: String,
    pub subscription: String,
    pub dead_letter_topic: String,
    pub dead_letter_subscription: String,
}

impl Channel {
    fn new(kind: ChannelKind, topic: &str) -> Self {
        let dead_letter_topic = format!("{topic}-dead-letter");
        Self {
            kind,
            topic: topic.to_string(),
            subscription: format!("{topic}-{}", kind.consumer_role()),
            dead_letter_subscription: dead_letter_topic.clone(),
            dead_letter_topic,
        }
    }
}

/// Every channel of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    trigger: Channel,
    request: Channel,
    completion: Channel,
    ready: Channel,
}

impl Topology {
    pub fn new(names: &TopicNames) -> Self {
        Self {
            trigger: Channel::new(ChannelKind::Trigger, &names.trigger_topic),
            request: Channel::new(ChannelKind::Request, &names.request_topic),
            completion: Channel::new(ChannelKind::Completion, &names.completion_topic),
            ready: Channel::new(ChannelKind::Ready, &names.ready_topic),
        }
    }

    /// All channels, in the order of the design's table.
    pub fn channels(&self) -> [&Channel; 4] {
        [&self.trigger, &self.request, &self.completion, &self.ready]
    }

    pub fn channel(&self, kind: ChannelKind) -> &Channel {
        match kind {
            ChannelKind::Trigger => &self.trigger,
            ChannelKind::Request => &self.request,
            ChannelKind::Completion => &self.completion,
            ChannelKind::Ready => &self.ready,
        }
    }

    /// The channel whose consuming subscription is `subscription`, if any.
    pub fn by_subscription(&self, subscription: &str) -> Option<&Channel> {
        self.channels().into_iter().find(|c| c.subscription == subscription)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_match_the_design() {
        let topology = Topology::new(&TopicNames::default());
        let names: Vec<_> = topology.channels().iter().map(|c| (c.topic.as_str(), c.subscription.as_str())).collect();
        assert_eq!(
            names,
            [
                ("prediction-trigger", "prediction-trigger-coordinator"),
                ("prediction-requests", "prediction-requests-worker"),
                ("prediction-completions", "prediction-completions-coordinator"),
                ("predictions-ready", "predictions-ready-exporter"),
            ]
        );
        let ready = topology.channel(ChannelKind::Ready);
        assert_eq!(ready.dead_letter_topic, "predictions-ready-dead-letter");
        assert_eq!(ready.dead_letter_subscription, "predictions-ready-dead-letter");
    }
}
