//! Counts every Firestore request a process makes: an observer of the h2c (plaintext gRPC) pass-through
//! of `crates/grpc-faults` (with no faults) between the process and the Firestore emulator, one listener
//! per process so the counts are per role.
//!
//! Counting on the wire rather than in the pipeline's code means nothing can be missed: every read,
//! query, transaction, commit and batch write the processes make passes here. Request and answer
//! bodies are decoded to count what Firestore would bill (see [`billed_reads`]; a write is billed when
//! its commit applied) and which documents were written when (the commit time the server answered, for
//! the hottest document).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes};
use firestore::gcloud_sdk::google::firestore::v1::{
    BatchGetDocumentsRequest, BatchWriteRequest, BatchWriteResponse, CommitRequest, CommitResponse,
    ListDocumentsResponse, RunQueryResponse, Write, write::Operation,
};
use firestore::gcloud_sdk::prost::Message;
use grpc_faults::{Answer, Call, FaultProxy, Observer, Plan};

/// Requests by gRPC method (`Commit`, `RunQuery`, ...), the time the emulator took to answer them, and
/// documents read, written and deleted as Firestore bills them, for one process.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Counts {
    pub requests: BTreeMap<String, u64>,
    /// Request received -> answer headers, summed per method (a unary call's answer comes whole).
    pub answer_secs: BTreeMap<String, f64>,
    /// Writes in Commit and BatchWrite requests, deletes included.
    pub documents_written: u64,
    pub documents_deleted: u64,
    /// Writes and deletes applied (a failed commit is not billed), from the answers.
    pub billed_writes: u64,
    pub billed_deletes: u64,
    /// Reads as billed (see [`billed_reads`]).
    pub reads: u64,
    pub request_bytes: u64,
    pub answer_bytes: u64,
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
        Counts {
            requests,
            answer_secs,
            documents_written: self.documents_written - earlier.documents_written,
            documents_deleted: self.documents_deleted - earlier.documents_deleted,
            billed_writes: self.billed_writes - earlier.billed_writes,
            billed_deletes: self.billed_deletes - earlier.billed_deletes,
            reads: self.reads - earlier.reads,
            request_bytes: self.request_bytes - earlier.request_bytes,
            answer_bytes: self.answer_bytes - earlier.answer_bytes,
        }
    }

    pub fn add(&mut self, other: &Counts) {
        for (method, count) in &other.requests {
            *self.requests.entry(method.clone()).or_default() += count;
        }
        for (method, secs) in &other.answer_secs {
            *self.answer_secs.entry(method.clone()).or_default() += secs;
        }
        self.documents_written += other.documents_written;
        self.documents_deleted += other.documents_deleted;
        self.billed_writes += other.billed_writes;
        self.billed_deletes += other.billed_deletes;
        self.reads += other.reads;
        self.request_bytes += other.request_bytes;
        self.answer_bytes += other.answer_bytes;
    }
}

/// One request or answer on the wire, timed by when the proxy received the request.
#[derive(Debug, Clone)]
pub struct WireEvent {
    pub label: Arc<str>,
    pub received: SystemTime,
    /// Set on the request's event; the answer's event has none.
    pub method: Option<String>,
    pub bytes: u64,
    pub reads: u64,
}

/// One document written, at the server's commit time.
#[derive(Debug, Clone)]
pub struct DocumentWrite {
    pub at: SystemTime,
    pub document: Arc<str>,
}

#[derive(Default)]
struct Log {
    counts: BTreeMap<String, Counts>,
    events: Vec<WireEvent>,
    writes: Vec<DocumentWrite>,
}

/// A counting proxy in front of one Firestore emulator: the shared fault injector with no faults,
/// this counter its observer. [`FirestoreCounter::listen`] adds a labelled listener (one per process).
pub struct FirestoreCounter {
    proxy: FaultProxy,
    log: Arc<Mutex<Log>>,
}

/// Where the logs of a counter stood: [`FirestoreCounter::snapshot`] and what came after a mark.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mark {
    events: usize,
    writes: usize,
}

impl FirestoreCounter {
    pub fn new(upstream: &str) -> Self {
        let log: Arc<Mutex<Log>> = Arc::default();
        let observer = Arc::new(CountingObserver { log: Arc::clone(&log) });
        Self { proxy: FaultProxy::observed(upstream, Plan::none(), observer), log }
    }

    /// A new listener on a free loopback port whose requests are counted under `label`; returns the
    /// address to give the process as `FIRESTORE_EMULATOR_HOST`.
    pub async fn listen(&self, label: &str) -> std::io::Result<SocketAddr> {
        self.log.lock().expect("counts lock").counts.entry(label.to_string()).or_default();
        self.proxy.listen(label).await
    }

    /// Every label's counts so far, and where the event logs stand.
    pub fn snapshot(&self) -> (BTreeMap<String, Counts>, Mark) {
        let log = self.log.lock().expect("counts lock");
        (log.counts.clone(), Mark { events: log.events.len(), writes: log.writes.len() })
    }

    /// The wire events and document writes logged since `mark`.
    pub fn since(&self, mark: Mark) -> (Vec<WireEvent>, Vec<DocumentWrite>) {
        let log = self.log.lock().expect("counts lock");
        (
            log.events[mark.events.min(log.events.len())..].to_vec(),
            log.writes[mark.writes.min(log.writes.len())..].to_vec(),
        )
    }
}

struct CountingObserver {
    log: Arc<Mutex<Log>>,
}

impl Observer for CountingObserver {
    fn observe(&self, call: &Call<'_>) {
        let now = SystemTime::now();
        let written = match (call.method, call.request) {
            ("Commit" | "BatchWrite", Some(body)) => written_documents(call.method, body),
            _ => Vec::new(),
        };
        let deletes = written.iter().filter(|(_, delete)| *delete).count() as u64;
        let reads = match (call.method, call.request) {
            ("BatchGetDocuments", Some(body)) => requested_documents(body),
            _ => 0,
        };
        let bytes = call.request.map_or(0, |b| b.len() as u64);
        let mut log = self.log.lock().expect("counts lock");
        let counts = log.counts.entry(call.label.to_string()).or_default();
        *counts.requests.entry(call.method.to_string()).or_default() += 1;
        *counts.answer_secs.entry(call.method.to_string()).or_default() += call.elapsed.as_secs_f64();
        counts.documents_written += written.len() as u64;
        counts.documents_deleted += deletes;
        counts.reads += reads;
        counts.request_bytes += bytes;
        log.events.push(WireEvent {
            label: Arc::from(call.label),
            received: now.checked_sub(call.elapsed).unwrap_or(now),
            method: Some(call.method.to_string()),
            bytes,
            reads,
        });
    }

    fn wants_answers(&self) -> bool {
        true
    }

    fn answered(&self, answer: &Answer<'_>) {
        let now = SystemTime::now();
        let reads = billed_reads(answer.method, answer.response);
        let bytes = answer.response.len() as u64;
        let applied = match (answer.method, answer.request) {
            ("Commit" | "BatchWrite", Some(request)) => applied_writes(answer.method, request, answer.response, now),
            _ => Vec::new(),
        };
        let mut log = self.log.lock().expect("counts lock");
        let counts = log.counts.entry(answer.label.to_string()).or_default();
        counts.reads += reads;
        counts.answer_bytes += bytes;
        counts.billed_deletes += applied.iter().filter(|w| w.delete).count() as u64;
        counts.billed_writes += applied.iter().filter(|w| !w.delete).count() as u64;
        log.writes.extend(applied.into_iter().map(|w| DocumentWrite { at: w.at, document: w.document.into() }));
        log.events.push(WireEvent {
            label: Arc::from(answer.label),
            received: now.checked_sub(answer.elapsed).unwrap_or(now),
            method: None,
            bytes,
            reads,
        });
    }
}

/// Reads Firestore bills for an answer (BatchGetDocuments is billed from its request, one read per
/// document asked for):
/// - `GetDocument`: 1;
/// - `RunQuery`: one per document returned, and 1 for a query that returns none;
/// - `RunAggregationQuery`: one per 1,000 index entries it covers, at least 1; the engine aggregates
///   over a batch's counter shards (at most 400), so 1;
/// - `ListDocuments`: one per document returned, at least 1.
fn billed_reads(method: &str, answer: &Bytes) -> u64 {
    match method {
        "GetDocument" | "RunAggregationQuery" => 1,
        "RunQuery" => {
            frames(answer).filter(|f| RunQueryResponse::decode(*f).is_ok_and(|r| r.document.is_some())).count().max(1)
                as u64
        }
        "ListDocuments" => frames(answer)
            .map(|f| ListDocumentsResponse::decode(f).map(|r| r.documents.len()).unwrap_or(0))
            .sum::<usize>()
            .max(1) as u64,
        _ => 0,
    }
}

fn requested_documents(body: &[u8]) -> u64 {
    frames(body).map(|f| BatchGetDocumentsRequest::decode(f).map(|r| r.documents.len()).unwrap_or(0)).sum::<usize>()
        as u64
}

/// The documents a gRPC-framed Commit or BatchWrite request writes, and whether each is a delete.
fn written_documents(method: &str, body: &[u8]) -> Vec<(String, bool)> {
    let writes: Vec<Write> = frames(body)
        .flat_map(|frame| match method {
            "Commit" => CommitRequest::decode(frame).map(|r| r.writes).unwrap_or_default(),
            _ => BatchWriteRequest::decode(frame).map(|r| r.writes).unwrap_or_default(),
        })
        .collect();
    writes
        .into_iter()
        .filter_map(|write| match write.operation? {
            Operation::Update(document) => Some((document.name, false)),
            Operation::Delete(name) => Some((name, true)),
            Operation::Transform(transform) => Some((transform.document, false)),
        })
        .collect()
}

struct Applied {
    document: String,
    delete: bool,
    at: SystemTime,
}

/// The writes a Commit or BatchWrite answer says were applied, each at the server's commit time (a
/// failed Commit answers no message: none applied; a BatchWrite answers a status per write).
fn applied_writes(method: &str, request: &[u8], answer: &[u8], fallback: SystemTime) -> Vec<Applied> {
    let Some(frame) = frames(answer).next() else { return Vec::new() };
    let written = written_documents(method, request);
    let times: Vec<Option<SystemTime>> = match method {
        "Commit" => {
            let Ok(response) = CommitResponse::decode(frame) else { return Vec::new() };
            vec![Some(response.commit_time.as_ref().map_or(fallback, system_time)); written.len()]
        }
        _ => {
            let Ok(response) = BatchWriteResponse::decode(frame) else { return Vec::new() };
            let ok = |i: usize| response.status.get(i).is_none_or(|status| status.code == 0);
            (0..written.len())
                .map(|i| {
                    ok(i).then(|| {
                        response.write_results.get(i).and_then(|r| r.update_time.as_ref()).map_or(fallback, system_time)
                    })
                })
                .collect()
        }
    };
    written
        .into_iter()
        .zip(times)
        .filter_map(|((document, delete), at)| Some(Applied { document, delete, at: at? }))
        .collect()
}

fn system_time(timestamp: &firestore::gcloud_sdk::prost_types::Timestamp) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(timestamp.seconds.max(0) as u64, timestamp.nanos.max(0) as u32)
}

/// The messages of a gRPC-framed body (uncompressed frames: neither side compresses here).
fn frames(mut body: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if body.len() < 5 {
            return None;
        }
        let compressed = body.get_u8() != 0;
        let length = body.get_u32() as usize;
        if compressed || body.len() < length {
            return None;
        }
        let (frame, rest) = body.split_at(length);
        body = rest;
        Some(frame)
    })
}

/// The most writes one document took in any `window`, which document, and its kind (its path with
/// the ids replaced by `*`: `batches/*/counters/*`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HottestDocument {
    pub writes: usize,
    pub document: String,
    pub kind: String,
    pub window_secs: f64,
}

pub fn hottest_document(writes: &[DocumentWrite], window: Duration) -> HottestDocument {
    let mut by_document: BTreeMap<&str, Vec<SystemTime>> = BTreeMap::new();
    for write in writes {
        by_document.entry(&write.document).or_default().push(write.at);
    }
    let mut hottest = HottestDocument { window_secs: window.as_secs_f64(), ..Default::default() };
    for (document, mut times) in by_document {
        times.sort();
        let most = most_in_window(&times, window);
        if most > hottest.writes {
            hottest.writes = most;
            hottest.document = relative_path(document).to_string();
            hottest.kind = document_kind(document);
        }
    }
    hottest
}

/// The most of the sorted `times` within any span of `window` (two pointers).
fn most_in_window(times: &[SystemTime], window: Duration) -> usize {
    let mut start = 0;
    let mut most = 0;
    for (end, at) in times.iter().enumerate() {
        while at.duration_since(times[start]).unwrap_or_default() >= window {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}

/// `projects/p/databases/d/documents/batches/b/counters/3` -> `batches/b/counters/3`.
fn relative_path(name: &str) -> &str {
    name.split_once("/documents/").map_or(name, |(_, path)| path)
}

fn document_kind(name: &str) -> String {
    let parts: Vec<&str> = relative_path(name).split('/').collect();
    parts.iter().enumerate().map(|(i, part)| if i % 2 == 1 { "*" } else { part }).collect::<Vec<_>>().join("/")
}
