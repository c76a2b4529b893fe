//! An outage: while frozen, no request is forwarded and no answer (or streamed frame) is delivered, in
//! either direction; everything held resumes when the freeze ends, as after a network partition heals.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep, sleep_until};

/// Shared by every listener of one proxy.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    frozen_until: Arc<Mutex<Option<Instant>>>,
}

impl Gate {
    /// Holds all traffic until `until` (a later freeze extends an earlier one, never shortens it).
    pub fn freeze_until(&self, until: Instant) {
        let mut frozen = self.frozen_until.lock().unwrap_or_else(|p| p.into_inner());
        if frozen.is_none_or(|current| current < until) {
            *frozen = Some(until);
        }
    }

    /// When the current freeze ends, if one is in force.
    pub fn frozen_until(&self) -> Option<Instant> {
        let frozen = *self.frozen_until.lock().unwrap_or_else(|p| p.into_inner());
        frozen.filter(|until| *until > Instant::now())
    }

    /// Waits out the freeze in force (and any that starts while waiting).
    pub async fn pass(&self) {
        while let Some(until) = self.frozen_until() {
            sleep_until(until).await;
        }
    }
}

/// A body whose frames are held while the gate is frozen.
pub struct Gated<B> {
    body: B,
    gate: Gate,
    wait: Option<Pin<Box<Sleep>>>,
    /// A frame (or the end) that arrived during a freeze.
    held: Option<Option<Result<Frame<Bytes>, hyper::Error>>>,
}

impl<B> Gated<B> {
    pub fn new(body: B, gate: Gate) -> Self {
        Self { body, gate, wait: None, held: None }
    }
}

impl<B> Body for Gated<B>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(wait) = this.wait.as_mut() {
                ready!(wait.as_mut().poll(cx));
                this.wait = None;
            }
            if let Some(until) = this.gate.frozen_until() {
                this.wait = Some(Box::pin(sleep_until(until)));
                continue;
            }
            if let Some(frame) = this.held.take() {
                return Poll::Ready(frame);
            }
            // Read first, then check the gate again: a frame that arrives during a freeze waits.
            let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
            this.held = Some(frame);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pass_waits_for_the_freeze_to_end() {
        let gate = Gate::default();
        let start = Instant::now();
        gate.pass().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "an open gate does not wait");
        gate.freeze_until(start + Duration::from_secs(30));
        gate.pass().await;
        assert!(start.elapsed() >= Duration::from_secs(30));
        assert!(gate.frozen_until().is_none(), "the freeze is over");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_freeze_never_cuts_a_longer_one() {
        let gate = Gate::default();
        let start = Instant::now();
        gate.freeze_until(start + Duration::from_secs(30));
        gate.freeze_until(start + Duration::from_secs(5));
        assert_eq!(gate.frozen_until(), Some(start + Duration::from_secs(30)));
    }
}
