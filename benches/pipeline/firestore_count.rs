//! Counts every Firestore request a process makes: an observer of the h2c (plaintext gRPC) pass-through
//! of `crates/grpc-faults` (with no faults) between the process and the Firestore emulator, one listener
//! per process so the counts are per role.
//!
//! Counting on the wire rather than in the pipeline's code means nothing can be missed: every read,
//! query, transaction, commit and batch write the processes make passes here. Commit and BatchWrite
//! request bodies are decoded to count the documents they write as well.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Buf;
use firestore::gcloud_sdk::google::firestore::v1::{BatchWriteRequest, CommitRequest};
use firestore::gcloud_sdk::prost::Message;
use grpc_faults::{Call, FaultProxy, Observer, Plan};

/// Requests by gRPC method (`Commit`, `RunQuery`, ...), the time the emulator took to answer them, and
/// documents written, for one process.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Counts {
    pub requests: BTreeMap<String, u64>,
    /// Request received -> answer headers, summed per method (a unary call's answer comes whole).
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

/// A counting proxy in front of one Firestore emulator: the shared fault injector with no faults,
/// this counter its observer. [`FirestoreCounter::listen`] adds a labelled listener (one per process).
pub struct FirestoreCounter {
    proxy: FaultProxy,
    counts: Arc<Mutex<BTreeMap<String, Counts>>>,
}

impl FirestoreCounter {
    pub fn new(upstream: &str) -> Self {
        let counts: Arc<Mutex<BTreeMap<String, Counts>>> = Arc::default();
        let observer = Arc::new(CountingObserver { counts: Arc::clone(&counts) });
        Self { proxy: FaultProxy::observed(upstream, Plan::none(), observer), counts }
    }

    /// A new listener on a free loopback port whose requests are counted under `label`; returns the
    /// address to give the process as `FIRESTORE_EMULATOR_HOST`.
    pub async fn listen(&self, label: &str) -> std::io::Result<SocketAddr> {
        self.counts.lock().expect("counts lock").entry(label.to_string()).or_default();
        self.proxy.listen(label).await
    }

    /// Every label's counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, Counts> {
        self.counts.lock().expect("counts lock").clone()
    }
}

struct CountingObserver {
    counts: Arc<Mutex<BTreeMap<String, Counts>>>,
}

impl Observer for CountingObserver {
    fn observe(&self, call: &Call<'_>) {
        let documents = match (call.method, call.request) {
            ("Commit" | "BatchWrite", Some(body)) => documents_written(call.method, body),
            _ => 0,
        };
        let mut counts = self.counts.lock().expect("counts lock");
        let counts = counts.entry(call.label.to_string()).or_default();
        *counts.requests.entry(call.method.to_string()).or_default() += 1;
        *counts.answer_secs.entry(call.method.to_string()).or_default() += call.elapsed.as_secs_f64();
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
