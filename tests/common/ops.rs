//! Helpers for the ops tests: a `run` process with its parsed log lines, a tiny HTTP GET, a metric
//! reader, and a TCP proxy that holds connections until it is opened.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// `GET path` over HTTP/1.0 (the server closes the connection after the answer): status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// The value of one series (`name{labels}` exactly as rendered) in Prometheus text, if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A `props-pipeline` process whose stderr (JSON logs) is collected line by line.
pub struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `binary` (a [`super::TestEnv::binary`] with its arguments), JSON logs on stderr.
    pub fn start(binary: &mut Command) -> Self {
        let mut child = binary
            .env("PROPS_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start props-pipeline");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// Every log line so far, parsed; a line that is not a JSON object fails the test.
    pub fn logs(&self) -> Vec<serde_json::Map<String, Value>> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|line| match serde_json::from_str(line) {
                Ok(Value::Object(object)) => object,
                _ => panic!("log line is not a JSON object: {line}"),
            })
            .collect()
    }

    /// The first log line with `message`, waiting up to `within`.
    pub fn wait_for_log(&self, message: &str, within: Duration) -> serde_json::Map<String, Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| l["message"] == message) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no {message:?} log within {within:?}: {:#?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The address of the HTTP server, from its `http listening` log line.
    pub fn http_addr(&self) -> SocketAddr {
        let line = self.wait_for_log("http listening", Duration::from_secs(30));
        line["http_addr"].as_str().and_then(|a| a.parse().ok()).expect("http_addr is an address")
    }

    /// Sends SIGTERM and waits for a successful exit.
    pub fn stop(mut self) -> Vec<serde_json::Map<String, Value>> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait for props-pipeline");
        assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
        self.logs()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A failed test must not leave the process running; after `stop` it has exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `GET path` until `accept(status, body)` or `within` passed; returns the last answer.
pub fn poll_http(addr: SocketAddr, path: &str, within: Duration, accept: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        let answer = http_get(addr, path).unwrap_or((0, String::new()));
        if accept(answer.0, &answer.1) || Instant::now() >= deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP proxy to `upstream` that accepts connections at once but forwards nothing until
/// [`GatedProxy::open`]: a server that is reachable yet has not answered.
pub struct GatedProxy {
    pub addr: SocketAddr,
    gate: watch::Sender<bool>,
}

impl GatedProxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (gate, opened) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (upstream, mut opened) = (upstream.clone(), opened.clone());
                tokio::spawn(async move {
                    if opened.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { addr, gate }
    }

    pub fn open(&self) {
        self.gate.send_replace(true);
    }
}
