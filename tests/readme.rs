//! Every ```sh block of README.md and docs/OPERATIONS.md, read from the files themselves, is either run as
//! written (bash, the freshly built binary first on `PATH`, the emulators, a project of its own) and its
//! exit code and one line of its output checked, or skipped for the reason given in `PLAN`. A block the
//! plan does not name, or a plan entry no block matches, fails the test: the docs cannot drift from the
//! binary, nor the plan from the docs.
//!
//! trycmd/snapbox compare whole transcripts; these blocks are commented examples whose output carries
//! message ids and timestamps, so the plan checks one stable line instead.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What the test does with a block.
enum Action {
    /// Not run; the reason is part of the contract of this file.
    Skip(&'static str),
    /// Run to its end: its exit code, and a line of stdout or stderr that contains the text.
    Run { exit: i32, line: &'static str },
    /// Started in the background until every other block ran (the pipeline's roles), then stopped with
    /// SIGTERM, which must end it with 0. It must print the line first.
    Serve { line: &'static str },
}

use Action::{Run, Serve, Skip};

const README: &str = "README.md";
const OPERATIONS: &str = "docs/OPERATIONS.md";
const REAL_GCP: &str = "needs a real Google Cloud project, credentials or a GKE cluster";

/// Every block, by file and first command line (its comment left out), in the order they run: the
/// README's own order of work (set up, load, start the roles, trigger, watch, repair).
const PLAN: &[(&str, &str, Action)] = &[
    (README, "cargo build", Skip("the test runs the binary cargo built for it, first on PATH")),
    (
        README,
        "make emulators",
        Skip("the test runs on the emulators `make test` started; stopping them would stop every other test"),
    ),
    (README, "props-pipeline setup", Run { exit: 0, line: "16 created, 0 already existed" }),
    (
        README,
        "props-pipeline load --game-date 2025-06-19 --game-date 2025-06-22",
        Run { exit: 0, line: "slates: 2 written" },
    ),
    (
        README,
        "props-pipeline load",
        Skip("writes all 670 slates (minutes on the emulator); the block above is the same load for two dates"),
    ),
    // The test sets PROPS_HTTP_ADDR=127.0.0.1:0 so that 8080 need not be free on the test machine.
    (README, "props-pipeline run all --export-dir out/exports", Serve { line: "http listening" }),
    (
        README,
        "PROPS_HTTP_ADDR=127.0.0.1:0 props-pipeline run coordinator dead-letter sweeper &",
        Skip("the roles `run all` already runs; background jobs would outlive the block"),
    ),
    (
        README,
        "props-pipeline trigger --game-date 2025-06-22 --reason \"morning run\" --wait",
        Run { exit: 0, line: " COMPLETE: " },
    ),
    (
        README,
        "props-pipeline trigger --game-date 2025-06-22 --reason \"morning run\"",
        Run { exit: 0, line: "published to prediction-trigger" },
    ),
    (README, "props-pipeline status", Run { exit: 0, line: " COMPLETE: " }),
    (
        README,
        "props-pipeline dashboard",
        Skip("serves until stopped, the second line on port 8080; tests/dashboard.rs runs `dashboard` in a browser"),
    ),
    // Players with too little history are skipped, not failed: the date completes.
    (README, "props-pipeline load --game-date 2024-04-22", Run { exit: 0, line: "skipped (state COMPLETE" }),
    (README, "props-pipeline missing --game-date 2024-04-22", Run { exit: 0, line: "5 required" }),
    (
        README,
        "props-pipeline redrive 2024-04-22-m1234",
        Skip("needs a stalled RUNNING batch; tests/repair_cli.rs runs `redrive` on one"),
    ),
    (README, "props-pipeline audit", Run { exit: 0, line: "\"outcome\": \"superseding\"" }),
    (
        README,
        "props-pipeline predictions --game-date 2024-04-22",
        Run { exit: 0, line: "COMPLETE, published): 45 players" },
    ),
    (
        README,
        "props-pipeline backfill --from 2025-06-19 --to 2025-06-22 --reason \"rebuild after model fix\"",
        Run { exit: 0, line: "2025-06-22 COMPLETE" },
    ),
    (
        README,
        "props-pipeline backtest --from 2025-04-19 --to 2025-06-22 --chart calibration.svg",
        Run { exit: 0, line: "Brier score" },
    ),
    (
        README,
        "gcloud pubsub topics publish prediction-trigger --project \"$GOOGLE_CLOUD_PROJECT\" \\",
        Skip("publishes to real Pub/Sub; the next block runs the same command on the emulator"),
    ),
    (README, "set -a; . .emulators/env; set +a", Run { exit: 0, line: "messageIds:" }),
    (README, "make bench", Skip("about 30 minutes of a release build; `make bench` is its own target")),
    (OPERATIONS, "PROJECT=props-pipeline-prod", Skip(REAL_GCP)),
    (OPERATIONS, "gcloud auth application-default login", Skip(REAL_GCP)),
    (OPERATIONS, "PUBSUB_AGENT=service-$PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com", Skip(REAL_GCP)),
    (
        OPERATIONS,
        "gcloud iam service-accounts create props-pipeline --project $PROJECT --display-name \"props-pipeline runtime\"",
        Skip(REAL_GCP),
    ),
    (OPERATIONS, "gcloud iam service-accounts create keda-operator --project $PROJECT", Skip(REAL_GCP)),
    (
        OPERATIONS,
        "gcloud firestore fields ttls update expire_at --collection-group=batches --enable-ttl --project $PROJECT",
        Skip(REAL_GCP),
    ),
    (OPERATIONS, "GOOGLE_CLOUD_PROJECT=$PROJECT props-pipeline load --data ../shared/data/nba", Skip(REAL_GCP)),
    (OPERATIONS, "IMAGE=$REGION-docker.pkg.dev/$PROJECT/props/props-pipeline", Skip(REAL_GCP)),
    (OPERATIONS, "scripts/check_k8s.sh", Skip("`make k8s-check` runs it in CI, with its own pinned tools")),
    (OPERATIONS, "gcloud pubsub topics publish prediction-trigger --project $PROJECT \\", Skip(REAL_GCP)),
    (OPERATIONS, "props-pipeline status", Skip("names a batch of a real project (BATCH) and runs kubectl")),
    (OPERATIONS, "firebase deploy --only firestore:indexes --project $PROJECT", Skip(REAL_GCP)),
    (OPERATIONS, "gcloud compute addresses create props-dashboard --global --project $PROJECT", Skip(REAL_GCP)),
    (OPERATIONS, "for f in k8s/alert-policies/*.yaml; do", Skip(REAL_GCP)),
];

/// A block longer than this is stuck (the slowest, the backtest, takes about 20 s in a debug build).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(300);

struct Block {
    file: &'static str,
    key: String,
    text: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The ```sh blocks of a file, keyed by their first line without its comment.
fn blocks(file: &'static str) -> Vec<Block> {
    let text = fs::read_to_string(repo().join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(lines), "```") => {
                let key = lines.first().map(|l| l.split(" #").next().unwrap_or_default().trim().to_string());
                blocks.push(Block { file, key: key.unwrap_or_default(), text: lines.join("\n") + "\n" });
                current = None;
            }
            (Some(lines), _) => lines.push(line),
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "{file}: a ```sh block is not closed");
    blocks
}

/// Where the blocks run: a scratch folder with the emulators' `.emulators/env`, so relative paths in
/// the examples (out/exports, calibration.svg) stay out of the checkout.
struct Workspace {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Workspace {
    fn new(binary_env: Vec<(&'static str, String)>) -> Self {
        let dir = std::env::temp_dir().join(format!("props-readme-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join(".emulators")).expect("scratch folder");
        let hosts: String = binary_env
            .iter()
            .filter(|(name, _)| name.ends_with("_EMULATOR_HOST"))
            .map(|(name, value)| format!("{name}={value}\n"))
            .collect();
        fs::write(dir.join(".emulators/env"), hosts).expect("write .emulators/env");
        let binary_dir = Path::new(common::BINARY).parent().expect("binary folder").to_owned();
        let path = format!("{}:{}", binary_dir.display(), std::env::var("PATH").unwrap_or_default());
        let mut env: Vec<(String, String)> = binary_env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        env.extend(
            [
                ("PATH", path),
                ("PROPS_DATA_DIR", common::nba::data_dir().display().to_string()),
                ("PROPS_HTTP_ADDR", "127.0.0.1:0".to_string()),
                ("PROPS_LOG_FORMAT", "text".to_string()),
                // gcloud keeps its configuration and logs here instead of the user's ~/.config/gcloud.
                ("CLOUDSDK_CONFIG", dir.join("gcloud").display().to_string()),
                ("CLOUDSDK_CORE_DISABLE_PROMPTS", "1".to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        Self { dir, env }
    }

    fn spawn(&self, block: &Block, name: &str) -> Child {
        let out = |stream: &str| fs::File::create(self.dir.join(format!("{name}.{stream}"))).expect("output file");
        Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", &block.text])
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out("stdout"))
            .stderr(out("stderr"))
            .spawn()
            .expect("start bash")
    }

    fn output(&self, name: &str) -> String {
        let read = |stream: &str| fs::read_to_string(self.dir.join(format!("{name}.{stream}"))).unwrap_or_default();
        read("stdout") + &read("stderr")
    }
}

fn wait(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("poll the block") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn has_line(output: &str, expected: &str) -> bool {
    output.lines().any(|line| line.contains(expected))
}

fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[test]
fn every_plan_entry_names_a_block_and_every_block_has_one() {
    let blocks: Vec<Block> = [README, OPERATIONS].into_iter().flat_map(blocks).collect();
    let mut problems = Vec::new();
    for block in &blocks {
        let matches = PLAN.iter().filter(|(file, key, _)| *file == block.file && *key == block.key).count();
        if matches != 1 {
            problems.push(format!("{}: block `{}` has {matches} PLAN entries (needs 1)", block.file, block.key));
        }
    }
    for (file, key, _) in PLAN {
        if !blocks.iter().any(|b| b.file == *file && b.key == *key) {
            problems.push(format!("{file}: PLAN entry `{key}` matches no block"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_block_runs_as_written_or_says_why_not() {
    let env = common::TestEnv::new("readme").await;
    let workspace = Workspace::new(env.binary_env());
    let blocks: Vec<Block> = [README, OPERATIONS].into_iter().flat_map(blocks).collect();
    let gcloud = Command::new("gcloud").arg("--version").output().is_ok_and(|o| o.status.success());
    let mut failures = Vec::new();
    let mut served = Vec::new();
    for (index, (file, key, action)) in PLAN.iter().enumerate() {
        let Some(block) = blocks.iter().find(|b| b.file == *file && b.key == *key) else { continue };
        let name = format!("block{index:02}");
        let started = Instant::now();
        match action {
            Skip(reason) => println!("skip {file}: {key} ({reason})"),
            Run { .. } if block.text.contains("gcloud ") && !gcloud => {
                println!("skip {file}: {key} (gcloud is not installed here)");
            }
            Run { exit, line } => {
                let mut child = workspace.spawn(block, &name);
                let status = tokio::task::block_in_place(|| wait(&mut child, BLOCK_TIMEOUT));
                let output = workspace.output(&name);
                let code = status.and_then(|s| s.code());
                println!("ran {file}: {key} -> exit {code:?} in {:.1}s", started.elapsed().as_secs_f64());
                if code != Some(*exit) || !has_line(&output, line) {
                    failures.push(format!(
                        "{file}: `{key}` exited {code:?} (expected {exit}), expected a line with {line:?}:\n{}",
                        tail(&output)
                    ));
                }
            }
            Serve { line } => {
                let exec = Block { file: block.file, key: block.key.clone(), text: format!("exec {}", block.text) };
                let mut child = workspace.spawn(&exec, &name);
                // Until the line shows, the process exits, or 60 s passed; the line is checked below.
                common::poll_until(Duration::from_secs(60), async || {
                    let exited = child.try_wait().expect("poll").is_some();
                    (exited || has_line(&workspace.output(&name), line)).then_some(())
                })
                .await;
                println!("started {file}: {key}");
                if !has_line(&workspace.output(&name), line) {
                    failures
                        .push(format!("{file}: `{key}` did not print {line:?}:\n{}", tail(&workspace.output(&name))));
                }
                served.push((*file, key, name, child));
            }
        }
    }
    for (file, key, name, mut child) in served {
        // SIGTERM, as Kubernetes and ctrl-c stop it.
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let status = tokio::task::block_in_place(|| wait(&mut child, Duration::from_secs(60)));
        if status.and_then(|s| s.code()) != Some(0) {
            failures
                .push(format!("{file}: `{key}` ended {status:?} after SIGTERM:\n{}", tail(&workspace.output(&name))));
        }
    }
    assert!(failures.is_empty(), "outputs kept in {}:\n{}", workspace.dir.display(), failures.join("\n\n"));
    let _ = fs::remove_dir_all(&workspace.dir);
}
