//! A fleet of real `props-pipeline` processes for chaos tests: started, SIGKILLed, restarted and
//! finally SIGTERMed, each with its own log file (JSON lines) that survives its restarts.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use rand::Rng;
use rand::seq::SliceRandom;
use tokio::process::{Child, Command};

use super::TestEnv;

struct Member {
    name: String,
    args: Vec<String>,
    /// Set after the fleet's own (a process's own emulator addresses, say).
    env: Vec<(String, String)>,
    child: Option<Child>,
    incarnation: u32,
    kills: u32,
}

pub struct Fleet {
    env: Vec<(String, String)>,
    dir: PathBuf,
    members: Vec<Member>,
    /// Who dies next in this round (popped from the back).
    order: Vec<usize>,
}

impl Fleet {
    /// A fleet on `env`'s project, with chaos-friendly settings: short sweeps, stalls and leases.
    pub fn new(env: &TestEnv, seed: u64) -> Self {
        let dir = std::env::temp_dir().join(format!("props-chaos-{}-{seed}", env.gcp.project));
        std::fs::create_dir_all(dir.join("logs")).expect("create the fleet's folder");
        let mut vars: Vec<(String, String)> = env.binary_env().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        for (key, value) in [
            ("PROPS_LOG_FORMAT", "json"),
            ("RUST_LOG", "info,firestore=warn"),
            ("PROPS_HTTP_ADDR", "127.0.0.1:0"),
            ("PROPS_CONCURRENCY", "8"),
            ("PROPS_SHUTDOWN_GRACE_SECS", "5"),
            ("PROPS_FINALIZE_LEASE_SECS", "10"),
            ("PROPS_SWEEP_INTERVAL_SECS", "2"),
            ("PROPS_STALL_AFTER_SECS", "15"),
            ("PROPS_STUCK_AFTER_SECS", "300"),
            ("PROPS_MAX_REDRIVES", "50"),
        ] {
            vars.push((key.to_string(), value.to_string()));
        }
        vars.push(("PROPS_EXPORT_DIR".into(), dir.join("exports").display().to_string()));
        println!("fleet: logs and exports in {}", dir.display());
        Self { env: vars, dir, members: Vec::new(), order: Vec::new() }
    }

    pub fn add(&mut self, name: &str, args: &[&str]) {
        self.add_with_env(name, args, Vec::new());
    }

    /// A member with variables of its own, set after the fleet's.
    pub fn add_with_env(&mut self, name: &str, args: &[&str], env: Vec<(String, String)>) {
        let args = args.iter().map(|a| a.to_string()).collect();
        self.members.push(Member { name: name.to_string(), args, env, child: None, incarnation: 0, kills: 0 });
    }

    /// Sets (or replaces) a variable for every member started from now on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    pub fn export_dir(&self) -> PathBuf {
        self.dir.join("exports")
    }

    pub fn start_all(&mut self) {
        for index in 0..self.members.len() {
            self.restart(index);
        }
    }

    /// (Re)starts member `index`, appending to its log file.
    pub fn restart(&mut self, index: usize) {
        let log_path = self.log_dir().join(format!("{}.log", self.members[index].name));
        let member = &mut self.members[index];
        member.incarnation += 1;
        let log = File::options().create(true).append(true).open(&log_path).expect("open a log file");
        // The project's variables are among the fleet's own (`Fleet::new`), which `set_env` may replace.
        let child = Command::from(super::binary())
            .args(&member.args)
            .envs(self.env.iter().chain(&member.env).map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PROPS_INSTANCE_ID", format!("{}-{}", member.name, member.incarnation))
            .stdout(log.try_clone().expect("clone a log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start props-pipeline");
        member.child = Some(child);
    }

    /// SIGKILLs the next member of a random order that is reshuffled once everyone was killed (so every
    /// member dies once per round), and returns its index (to restart).
    pub async fn kill_next(&mut self, rng: &mut impl Rng) -> usize {
        if self.order.is_empty() {
            self.order = (0..self.members.len()).collect();
            self.order.shuffle(rng);
        }
        let index = self.order.pop().unwrap_or(0);
        let member = &mut self.members[index];
        if let Some(mut child) = member.child.take() {
            child.start_kill().expect("SIGKILL");
            let _ = child.wait().await;
            member.kills += 1;
        }
        index
    }

    /// Removes the logs and exports (after a passing run; a failing one keeps them to read).
    pub fn remove_files(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    pub fn kills(&self) -> u32 {
        self.members.iter().map(|m| m.kills).sum()
    }

    pub fn kills_by_process(&self) -> BTreeMap<String, u32> {
        self.members.iter().map(|m| (m.name.clone(), m.kills)).collect()
    }

    /// SIGTERMs every member at once and waits for each (at most 30 s); `None` when one did not exit.
    pub async fn terminate_all(&mut self) -> Vec<(String, Option<ExitStatus>)> {
        for member in &self.members {
            if let Some(pid) = member.child.as_ref().and_then(Child::id) {
                let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
                assert!(status.is_ok_and(|s| s.success()), "send SIGTERM to {}", member.name);
            }
        }
        let mut results = Vec::new();
        for member in &mut self.members {
            let status = match member.child.as_mut() {
                Some(child) => {
                    tokio::time::timeout(Duration::from_secs(30), child.wait()).await.ok().and_then(Result::ok)
                }
                None => None,
            };
            results.push((member.name.clone(), status));
        }
        results
    }
}

/// Every JSON log line of every process in `dir` (lines that are not JSON are skipped).
pub fn log_lines(dir: &Path) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the log folder").flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        lines.extend(text.lines().filter_map(|line| serde_json::from_str(line).ok()));
    }
    lines
}

/// How many lines of all logs in `dir` contain `needle` (JSON or not: a panic message is plain text).
pub fn raw_log_mentions(dir: &Path, needle: &str) -> usize {
    std::fs::read_dir(dir)
        .expect("read the log folder")
        .flatten()
        .map(|entry| {
            std::fs::read_to_string(entry.path()).unwrap_or_default().lines().filter(|l| l.contains(needle)).count()
        })
        .sum()
}
