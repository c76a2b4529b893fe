//! The pipeline as it is deployed: one real `props-pipeline run <role>` process per role (W worker
//! processes), each with its own Firestore counting listener, its own log file and its own `/metrics`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::firestore_count::FirestoreCounter;

/// One process to start: its name (also its counting label) and its roles.
pub struct ProcessSpec {
    pub name: String,
    pub role: &'static str,
}

/// How the processes reach Firestore.
pub enum FirestoreRoute<'a> {
    /// The emulator itself (timed runs).
    Direct(&'a str),
    /// A counting listener of their own each (slower: counted runs only).
    Counted(&'a FirestoreCounter),
}

pub struct RoleProcess {
    pub name: String,
    pub role: &'static str,
    child: Child,
    pid: u32,
    log: PathBuf,
    http: Option<SocketAddr>,
}

/// CPU time and memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    pub cpu_secs: f64,
    /// VmHWM: the peak resident set size.
    pub peak_rss_kib: u64,
}

pub struct Fleet {
    pub processes: Vec<RoleProcess>,
}

impl Fleet {
    pub async fn start(
        binary: &Path,
        specs: &[ProcessSpec],
        env: &[(String, String)],
        firestore: &FirestoreRoute<'_>,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(log_dir)?;
        let mut processes = Vec::new();
        for spec in specs {
            let firestore = match firestore {
                FirestoreRoute::Direct(host) => host.to_string(),
                FirestoreRoute::Counted(counter) => counter.listen(&spec.name).await?.to_string(),
            };
            let log = log_dir.join(format!("{}.log", spec.name));
            let file = File::create(&log)?;
            let child = Command::new(binary)
                .args(["run", spec.role])
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("FIRESTORE_EMULATOR_HOST", firestore)
                .env("PROPS_INSTANCE_ID", &spec.name)
                .env("PROPS_HTTP_ADDR", "127.0.0.1:0")
                .env("PROPS_LOG_FORMAT", "json")
                .stdout(file.try_clone()?)
                .stderr(file)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            let pid = child.id().context("a just-started process has a pid")?;
            processes.push(RoleProcess { name: spec.name.clone(), role: spec.role, child, pid, log, http: None });
        }
        Ok(Self { processes })
    }

    /// Waits until every process answers `/readyz` with 200 (subscribed and Firestore reachable).
    pub async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for process in &mut self.processes {
            loop {
                if let Some(status) = process.child.try_wait()? {
                    bail!("{} exited during start-up ({status}); log: {}", process.name, process.log.display());
                }
                if process.http.is_none() {
                    process.http = http_address(&process.log);
                }
                if let Some(address) = process.http
                    && http_get(address, "/readyz").is_ok_and(|(status, _)| status == 200)
                {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{} not ready within {within:?}; log: {}", process.name, process.log.display());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    pub fn usage(&self) -> Vec<(String, &'static str, Usage)> {
        self.processes.iter().map(|p| (p.name.clone(), p.role, usage(p.pid))).collect()
    }

    /// Every process's `/metrics` text.
    pub fn metrics(&self) -> Vec<(String, String)> {
        self.processes.iter().filter_map(|p| Some((p.name.clone(), http_get(p.http?, "/metrics").ok()?.1))).collect()
    }

    /// SIGTERMs every process and waits for each; an exit other than 0 is an error.
    pub async fn terminate(mut self) -> anyhow::Result<()> {
        for process in &self.processes {
            std::process::Command::new("kill").args(["-TERM", &process.pid.to_string()]).status()?;
        }
        for process in &mut self.processes {
            let status = tokio::time::timeout(Duration::from_secs(60), process.child.wait())
                .await
                .with_context(|| format!("{} did not stop within 60 s of SIGTERM", process.name))??;
            anyhow::ensure!(status.success(), "{} exited with {status}; log: {}", process.name, process.log.display());
        }
        Ok(())
    }
}

/// The address a process logged as `http listening` (it binds port 0).
fn http_address(log: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok()).find_map(|line| {
        (line.get("message")?.as_str()? == "http listening").then_some(())?;
        line.get("http_addr")?.as_str()?.parse().ok()
    })
}

/// `GET path` over HTTP/1.0: status and body.
pub fn http_get(address: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// CPU seconds (user + system) and peak RSS of `pid`; zeros once it is gone.
pub fn usage(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces, hence the last ')'): utime and stime are
    // the 12th and 13th of them, in clock ticks.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu_secs = (ticks(11) + ticks(12)) / clock_ticks_per_sec();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak_rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Usage { cpu_secs, peak_rss_kib }
}

fn clock_ticks_per_sec() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            // Linux's USER_HZ is 100 on every mainstream architecture.
            .unwrap_or(100.0)
    })
}
