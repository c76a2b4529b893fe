//! Counts every Firestore request a process makes: an h2c (plaintext gRPC) pass-through proxy between
//! the process and the Firestore emulator, one listener per process so the counts are per role.
//!
//! Counting on the wire rather than in the pipeline's code means nothing can be missed: every read,
//! query, transaction, commit and batch write the processes make passes here. Commit and BatchWrite
//! request bodies are decoded to count the documents they write as well.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Buf, Bytes};
use firestore::gcloud_sdk::google::firestore::v1::{BatchWriteRequest, CommitRequest};
use firestore::gcloud_sdk::prost::Message;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Requests by gRPC method (`Commit`, `RunQuery`, ...), the time the emulator took to answer them, and
/// documents written, for one process.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Counts {
    pub requests: BTreeMap<String, u64>,
    /// Request sent -> response headers, summed per method (a unary call's answer comes whole).
    pub answer_secs: BTreeMap<String, f64>,
    pub documents_written: u64,
}

impl Counts {
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }

    pub fn method(&self, name: &str) -> u64 {
        self.requests.get(name).copied().unwrap_or(0)
    }

    /// What was counted after `earlier` (a snapshot of the same counter).
    pub fn since(&self, earlier: &Counts) -> Counts {
        let requests = self
            .requests
            .iter()
            .map(|(method, count)| (method.clone(), count - earlier.method(method)))
            .filter(|(_, count)| *count > 0)
            .collect();
        let answer_secs = self
            .answer_secs
            .iter()
            .map(|(method, secs)| (method.clone(), secs - earlier.answer_secs.get(method).copied().unwrap_or(0.0)))
            .filter(|(_, secs)| *secs > 0.0)
            .collect();
        Counts { requests, answer_secs, documents_written: self.documents_written - earlier.documents_written }
    }

    pub fn add(&mut self, other: &Counts) {
        for (method, count) in &other.requests {
            *self.requests.entry(method.clone()).or_default() += count;
        }
        for (method, secs) in &other.answer_secs {
            *self.answer_secs.entry(method.clone()).or_default() += secs;
        }
        self.documents_written += other.documents_written;
    }
}

/// A counting proxy in front of one Firestore emulator; [`FirestoreCounter::listen`] adds a labelled
/// listener (one per process).
pub struct FirestoreCounter {
    upstream: String,
    counts: Arc<Mutex<BTreeMap<String, Counts>>>,
    stop: CancellationToken,
}

impl FirestoreCounter {
    pub fn new(upstream: &str) -> Self {
        Self { upstream: upstream.to_string(), counts: Arc::default(), stop: CancellationToken::new() }
    }

    /// A new listener on a free loopback port whose requests are counted under `label`; returns the
    /// address to give the process as `FIRESTORE_EMULATOR_HOST`.
    pub async fn listen(&self, label: &str) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        self.counts.lock().expect("counts lock").entry(label.to_string()).or_default();
        let (label, upstream, counts, stop) =
            (label.to_string(), self.upstream.clone(), Arc::clone(&self.counts), self.stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let (label, upstream, counts) = (label.clone(), upstream.clone(), Arc::clone(&counts));
                tokio::spawn(async move {
                    if let Err(error) = serve(stream, label, upstream, counts).await {
                        eprintln!("firestore counter: {error}");
                    }
                });
            }
        });
        Ok(address)
    }

    /// Every label's counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, Counts> {
        self.counts.lock().expect("counts lock").clone()
    }
}

impl Drop for FirestoreCounter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves one connection of a process over a connection of its own to the emulator, so the proxy
/// keeps the process's connection pattern (one shared upstream connection would serialize every
/// process's requests behind one HTTP/2 flow-control window and cut the pipeline's rate five-fold).
async fn serve(
    stream: TcpStream,
    label: String,
    upstream: String,
    counts: Arc<Mutex<BTreeMap<String, Counts>>>,
) -> anyhow::Result<()> {
    let upstream_stream = TcpStream::connect(&upstream).await?;
    upstream_stream.set_nodelay(true)?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .adaptive_window(true)
        .handshake(TokioIo::new(upstream_stream))
        .await?;
    tokio::spawn(connection);
    let forward = Forward { label, upstream, sender, counts };
    let service = hyper::service::service_fn(move |request| forward.clone().call(request));
    // A process that exits mid-stream ends its connection with an error: not ours to report.
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .adaptive_window(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    Ok(())
}

#[derive(Clone)]
struct Forward {
    label: String,
    upstream: String,
    sender: SendRequest<ProxyBody>,
    counts: Arc<Mutex<BTreeMap<String, Counts>>>,
}

impl Forward {
    async fn call(mut self, request: Request<Incoming>) -> Result<Response<ProxyBody>, hyper::Error> {
        let path = request.uri().path().to_string();
        let method = path.rsplit('/').next().unwrap_or_default().to_string();
        let (mut parts, body) = request.into_parts();
        parts.uri = format!("http://{}{}", self.upstream, path).parse().expect("a valid upstream uri");
        // Unary writes are small and whole: read them to count their documents. Everything else
        // (streaming reads above all) is forwarded as it arrives.
        let (body, documents): (ProxyBody, u64) = if method == "Commit" || method == "BatchWrite" {
            let bytes = body.collect().await.map(|collected| collected.to_bytes()).unwrap_or_default();
            let documents = documents_written(&method, &bytes);
            (Full::new(bytes).map_err(|never| match never {}).boxed(), documents)
        } else {
            (body.boxed(), 0)
        };
        let sent = Instant::now();
        let response = self.sender.send_request(Request::from_parts(parts, body)).await;
        self.record(&method, documents, sent.elapsed().as_secs_f64());
        Ok(response?.map(BodyExt::boxed))
    }

    fn record(&self, method: &str, documents: u64, answer_secs: f64) {
        let mut counts = self.counts.lock().expect("counts lock");
        let counts = counts.entry(self.label.clone()).or_default();
        *counts.requests.entry(method.to_string()).or_default() += 1;
        *counts.answer_secs.entry(method.to_string()).or_default() += answer_secs;
        counts.documents_written += documents;
    }
}

/// Writes in a gRPC-framed Commit or BatchWrite request (uncompressed frames: the client sends no
/// compression flag).
fn documents_written(method: &str, mut body: &[u8]) -> u64 {
    let mut writes = 0;
    while body.len() >= 5 {
        let compressed = body.get_u8() != 0;
        let length = body.get_u32() as usize;
        if compressed || body.len() < length {
            break;
        }
        let (frame, rest) = body.split_at(length);
        writes += match method {
            "Commit" => CommitRequest::decode(frame).map(|r| r.writes.len()).unwrap_or(0),
            _ => BatchWriteRequest::decode(frame).map(|r| r.writes.len()).unwrap_or(0),
        } as u64;
        body = rest;
    }
    writes
}
