//! The pass-through: listeners in front of one upstream server (an emulator), one per process so
//! faults and observations are per process, each serving a client connection over an upstream
//! connection of its own (one shared upstream connection would serialize every process behind one
//! HTTP/2 flow-control window).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::gate::{Gate, Gated};
use crate::plan::{Fault, FaultKind, Plan, Rule};
use crate::tap::{AnswerTap, Tapped};

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Client-streaming methods: their request never ends while the call lives, so it is not read whole
/// (no body for rules and observers) and a lost answer is the stream cut once the server answered.
const STREAMING_REQUESTS: [&str; 3] = ["StreamingPull", "Listen", "Write"];

/// One call as an [`Observer`] sees it, once its answer (or injected error) is on its way.
#[derive(Debug)]
pub struct Call<'a> {
    pub label: &'a str,
    pub method: &'a str,
    /// The whole gRPC-framed request, for methods whose request is not a stream.
    pub request: Option<&'a Bytes>,
    /// Request received -> answer headers (includes injected latency and freezes).
    pub elapsed: Duration,
    pub fault: Option<FaultKind>,
}

/// A forwarded call's whole answer, once its last frame passed (not for client-streaming methods,
/// whose answers never end while the call lives, nor for injected errors).
#[derive(Debug)]
pub struct Answer<'a> {
    pub label: &'a str,
    pub method: &'a str,
    /// The whole gRPC-framed request (as in [`Call::request`]).
    pub request: Option<&'a Bytes>,
    /// The gRPC-framed answer messages (a server-streaming answer's every message); empty for an
    /// error.
    pub response: &'a Bytes,
    /// Request received -> last frame of the answer.
    pub elapsed: Duration,
}

/// Watches every gRPC call (the benchmark counts requests and written documents this way).
pub trait Observer: Send + Sync + 'static {
    fn observe(&self, call: &Call<'_>);

    /// Whether [`Observer::answered`] wants answers (they are buffered for it when so).
    fn wants_answers(&self) -> bool {
        false
    }

    /// Sees each answer whole, when [`Observer::wants_answers`] (the benchmark counts documents read
    /// and bytes this way).
    fn answered(&self, _answer: &Answer<'_>) {}
}

/// One injected fault, for the log a failing run is replayed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Injected {
    /// Order of injection across the proxy.
    pub sequence: u64,
    pub label: String,
    pub method: String,
    /// The call number (per label and method) the plan decided on; `None` for a scripted rule.
    pub call: Option<u64>,
    pub kind: FaultKind,
    pub delay: Duration,
    pub at: Duration,
}

impl std::fmt::Display for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let call = self.call.map_or_else(|| "rule".to_string(), |n| format!("call {n}"));
        write!(
            f,
            "#{} +{:.3}s {} {} ({call}) {}",
            self.sequence,
            self.at.as_secs_f64(),
            self.label,
            self.method,
            self.kind
        )?;
        if matches!(self.kind, FaultKind::Latency | FaultKind::Outage) {
            write!(f, " {}ms", self.delay.as_millis())?;
        }
        Ok(())
    }
}

struct Shared {
    upstream: String,
    plan: Mutex<Plan>,
    rules: Mutex<Vec<Rule>>,
    calls: Mutex<HashMap<(String, String), u64>>,
    injected: Mutex<Vec<Injected>>,
    observer: Option<Arc<dyn Observer>>,
    gate: Gate,
    started: Instant,
    /// Every fault is printed to stderr as it happens when set.
    verbose: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// The fault for this call (scripted rules first, then the plan), logged when there is one.
    fn decide(&self, label: &str, method: &str, body: Option<&[u8]>) -> Option<Fault> {
        let scripted = {
            let mut rules = lock(&self.rules);
            rules.iter_mut().find(|r| r.applies(label, method, body)).map(|rule| {
                rule.times -= 1;
                rule.fault
            })
        };
        let (fault, call) = match scripted {
            Some(fault) => (Some(fault), None),
            None => {
                let call = {
                    let mut calls = lock(&self.calls);
                    let counter = calls.entry((label.to_string(), method.to_string())).or_default();
                    *counter += 1;
                    *counter - 1
                };
                (lock(&self.plan).decide(label, method, call), Some(call))
            }
        };
        let fault = fault?;
        if fault.kind == FaultKind::Outage {
            self.gate.freeze_until(Instant::now() + fault.delay);
        }
        self.log(label, method, call, fault);
        Some(fault)
    }

    fn log(&self, label: &str, method: &str, call: Option<u64>, fault: Fault) {
        let mut injected = lock(&self.injected);
        let record = Injected {
            sequence: injected.len() as u64,
            label: label.to_string(),
            method: method.to_string(),
            call,
            kind: fault.kind,
            delay: fault.delay,
            at: self.started.elapsed(),
        };
        if self.verbose {
            eprintln!("grpc-faults: {record}");
        }
        injected.push(record);
    }
}

/// A fault-injecting pass-through in front of one server; its listeners and connections end when
/// [`FaultProxy::stop`] is called or the proxy is dropped.
pub struct FaultProxy {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl FaultProxy {
    /// A proxy to `upstream` (`host:port`) injecting by `plan`.
    pub fn new(upstream: &str, plan: Plan) -> Self {
        Self::build(upstream, plan, None)
    }

    /// A proxy whose every gRPC call is also shown to `observer`.
    pub fn observed(upstream: &str, plan: Plan, observer: Arc<dyn Observer>) -> Self {
        Self::build(upstream, plan, Some(observer))
    }

    fn build(upstream: &str, plan: Plan, observer: Option<Arc<dyn Observer>>) -> Self {
        let shared = Shared {
            upstream: upstream.to_string(),
            plan: Mutex::new(plan),
            rules: Mutex::default(),
            calls: Mutex::default(),
            injected: Mutex::default(),
            observer,
            gate: Gate::default(),
            started: Instant::now(),
            verbose: std::env::var_os("GRPC_FAULTS_VERBOSE").is_some(),
        };
        Self { shared: Arc::new(shared), stop: CancellationToken::new() }
    }

    /// A new listener on a free loopback port whose calls are labelled `label` (one per process);
    /// returns the address to give the process instead of the server's.
    pub async fn listen(&self, label: &str) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (label, shared, stop) = (Arc::<str>::from(label), Arc::clone(&self.shared), self.stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let connection =
                    Connection { label: Arc::clone(&label), shared: Arc::clone(&shared), h2: Arc::default() };
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = connection.serve(stream) => {}
                    }
                });
            }
        });
        Ok(address)
    }

    /// Replaces the random plan (calls already counted keep their numbers).
    pub fn set_plan(&self, plan: Plan) {
        *lock(&self.shared.plan) = plan;
    }

    pub fn plan(&self) -> Plan {
        lock(&self.shared.plan).clone()
    }

    /// Adds a scripted fault, tried before the plan.
    pub fn add_rule(&self, rule: Rule) {
        lock(&self.shared.rules).push(rule);
    }

    /// Disarms every scripted rule.
    pub fn clear_rules(&self) {
        lock(&self.shared.rules).clear();
    }

    /// How many times the rules still armed would fire.
    pub fn rules_armed(&self) -> u32 {
        lock(&self.shared.rules).iter().map(|r| r.times).sum()
    }

    /// Holds all traffic of every listener for `duration` from now: an outage.
    pub fn freeze(&self, duration: Duration) {
        self.shared.gate.freeze_until(Instant::now() + duration);
        self.shared.log("*", "*", None, Fault { kind: FaultKind::Outage, delay: duration });
    }

    pub fn is_frozen(&self) -> bool {
        self.shared.gate.frozen_until().is_some()
    }

    /// Every fault injected so far, in order.
    pub fn injected(&self) -> Vec<Injected> {
        lock(&self.shared.injected).clone()
    }

    /// How many calls each label made of each method (faulted or not; scripted ones excluded).
    pub fn calls(&self) -> HashMap<(String, String), u64> {
        lock(&self.shared.calls).clone()
    }

    /// Closes every listener and connection.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One client connection: HTTP/2 (gRPC) over one upstream HTTP/2 connection opened on first use,
/// or HTTP/1 (REST) forwarded request by request.
#[derive(Clone)]
struct Connection {
    label: Arc<str>,
    shared: Arc<Shared>,
    h2: Arc<tokio::sync::Mutex<Option<SendRequest<ProxyBody>>>>,
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let service = hyper::service::service_fn(move |request| self.clone().call(request));
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http2().adaptive_window(true);
        // A client that goes away mid-stream ends its connection with an error: not ours to report.
        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
    }

    async fn call(self, request: Request<Incoming>) -> Result<Response<ProxyBody>, hyper::Error> {
        let received = Instant::now();
        let gate = self.shared.gate.clone();
        gate.pass().await;
        let is_grpc = request.version() == Version::HTTP_2
            && request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if !is_grpc {
            return self.forward_plain(request).await;
        }
        let method = request.uri().path().rsplit('/').next().unwrap_or_default().to_string();
        let streaming = STREAMING_REQUESTS.contains(&method.as_str());
        let (parts, body) = request.into_parts();
        let (body, whole): (ProxyBody, Option<Bytes>) = if streaming {
            (Gated::new(body, gate.clone()).boxed(), None)
        } else {
            match body.collect().await {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    (Full::new(bytes.clone()).map_err(|never| match never {}).boxed(), Some(bytes))
                }
                // The client gave up sending: nothing to forward.
                Err(error) => return Err(error),
            }
        };
        let fault = self.shared.decide(&self.label, &method, whole.as_deref());
        // An outage this very call started holds it too.
        gate.pass().await;
        let result = self.forward_grpc(parts, body, fault, streaming).await;
        gate.pass().await;
        if let Some(observer) = &self.shared.observer {
            let call = Call {
                label: &self.label,
                method: &method,
                request: whole.as_ref(),
                elapsed: received.elapsed(),
                fault: fault.map(|f| f.kind),
            };
            observer.observe(&call);
        }
        let tap = match &self.shared.observer {
            Some(observer)
                if observer.wants_answers()
                    && !streaming
                    && fault.is_none_or(|f| matches!(f.kind, FaultKind::Latency | FaultKind::Outage)) =>
            {
                Some(AnswerTap {
                    observer: Arc::clone(observer),
                    label: Arc::clone(&self.label),
                    method,
                    request: whole,
                    received,
                })
            }
            _ => None,
        };
        result.map(|response| {
            response.map(|body| match tap {
                Some(tap) => Tapped::new(Gated::new(body, gate), tap).boxed(),
                None => Gated::new(body, gate).boxed(),
            })
        })
    }

    async fn forward_grpc(
        &self,
        mut parts: http::request::Parts,
        body: ProxyBody,
        fault: Option<Fault>,
        streaming: bool,
    ) -> Result<Response<ProxyBody>, hyper::Error> {
        match fault.map(|f| f.kind) {
            Some(kind) if !kind.forwards() => return Ok(grpc_error(kind)),
            Some(FaultKind::Latency) => tokio::time::sleep(fault.map(|f| f.delay).unwrap_or_default()).await,
            _ => {}
        }
        parts.uri =
            format!("http://{}{}", self.shared.upstream, parts.uri.path()).parse().expect("a valid upstream uri");
        let mut sender = match self.upstream().await {
            Ok(sender) => sender,
            // The server is unreachable: what a client of a dead server gets.
            Err(_) => return Ok(grpc_error(FaultKind::Unavailable)),
        };
        let response = match sender.send_request(Request::from_parts(parts, body)).await {
            Ok(response) => response,
            // The upstream connection broke under the call: the client learns it as UNAVAILABLE.
            Err(_) => return Ok(grpc_error(FaultKind::Unavailable)),
        };
        if fault.is_some_and(|f| f.kind == FaultKind::LostAnswer) {
            // Let the server finish the call (a unary answer comes whole), then drop what it said.
            if !streaming {
                let _ = response.into_body().collect().await;
            }
            return Ok(grpc_error(FaultKind::LostAnswer));
        }
        Ok(response.map(BodyExt::boxed))
    }

    /// The upstream HTTP/2 connection of this client connection, opened on first use and again
    /// when the server closed it.
    async fn upstream(&self) -> Result<SendRequest<ProxyBody>, Box<dyn std::error::Error + Send + Sync>> {
        let mut h2 = self.h2.lock().await;
        if let Some(sender) = h2.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let stream = TcpStream::connect(&self.shared.upstream).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .adaptive_window(true)
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(connection);
        *h2 = Some(sender.clone());
        Ok(sender)
    }

    /// Anything that is not gRPC (the emulators' REST endpoints): forwarded as is, no faults.
    async fn forward_plain(&self, request: Request<Incoming>) -> Result<Response<ProxyBody>, hyper::Error> {
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        parts.uri = format!("http://{}{}", self.shared.upstream, path).parse().expect("a valid upstream uri");
        let response = if parts.version == Version::HTTP_2 {
            let Ok(mut sender) = self.upstream().await else { return Ok(plain_status(StatusCode::BAD_GATEWAY)) };
            sender.send_request(Request::from_parts(parts, body.boxed())).await?
        } else {
            let Ok(stream) = TcpStream::connect(&self.shared.upstream).await else {
                return Ok(plain_status(StatusCode::BAD_GATEWAY));
            };
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            sender.send_request(Request::from_parts(parts, body)).await?
        };
        Ok(response.map(|body| Gated::new(body, self.shared.gate.clone()).boxed()))
    }
}

/// A trailers-only gRPC answer: HTTP 200 with `grpc-status` in the only HEADERS frame.
pub fn grpc_error(kind: FaultKind) -> Response<ProxyBody> {
    let status = kind.grpc_status().unwrap_or(14);
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(status));
    let message = format!("injected fault: {kind}");
    headers.insert("grpc-message", HeaderValue::from_str(&message).expect("an ASCII message"));
    response
}

fn plain_status(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response
}
