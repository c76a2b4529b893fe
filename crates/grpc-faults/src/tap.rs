//! Answers shown whole to an [`Observer`] that wants them: the body passes through frame by frame
//! and a copy of its data is kept until the answer ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::proxy::{Answer, Observer};

/// Who sees a tapped answer, and what the call was.
pub struct AnswerTap {
    pub observer: Arc<dyn Observer>,
    pub label: Arc<str>,
    pub method: String,
    pub request: Option<Bytes>,
    pub received: Instant,
}

/// A body whose data frames are also kept, and shown whole to the observer when it ends.
pub struct Tapped<B> {
    body: B,
    tap: Option<AnswerTap>,
    kept: BytesMut,
}

impl<B> Tapped<B> {
    pub fn new(body: B, tap: AnswerTap) -> Self {
        Self { body, tap: Some(tap), kept: BytesMut::new() }
    }
}

impl<B> Body for Tapped<B>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.kept.extend_from_slice(data);
                }
                // Trailers end a gRPC answer.
                if frame.is_trailers() {
                    this.show();
                }
            }
            None => this.show(),
            Some(Err(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Tapped<B> {
    /// Shows the answer once.
    fn show(&mut self) {
        if let Some(tap) = self.tap.take() {
            let response = std::mem::take(&mut self.kept).freeze();
            tap.observer.answered(&Answer {
                label: &tap.label,
                method: &tap.method,
                request: tap.request.as_ref(),
                response: &response,
                elapsed: tap.received.elapsed(),
            });
        }
    }
}
