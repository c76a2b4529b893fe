//! The figures of one benchmark run: per batch size, summaries of its batches, the table printed at
//! the end and the JSON written beside it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::batch_run::{BatchFigures, FinalizeWork};
use crate::ceiling::CeilingFigures;
use crate::firestore_count::{Counts, HottestDocument};
use crate::fleet::Usage;
use crate::raw::RawFigures;

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub parameters: Parameters,
    pub sizes: Vec<SizeResult>,
    /// Finalize latency over every batch of the run.
    pub finalize_ms_p50: f64,
    pub finalize_ms_p99: f64,
    pub finalize_samples: usize,
    /// Issue 14's targets, each with what this run measured and whether it met it.
    pub targets: Vec<crate::targets::Check>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub os: String,
    pub started_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    pub items: Vec<usize>,
    pub repeats: usize,
    pub worker_processes: usize,
    /// Handler slots per consumer (`PROPS_CONCURRENCY`).
    pub concurrency: usize,
    pub project: String,
}

/// CPU and memory of one process over the measured batches of a size.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessFigures {
    pub name: String,
    pub role: String,
    pub peak_rss_mib: f64,
    pub cpu_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct SizeResult {
    pub items: usize,
    pub raw: RawFigures,
    /// The same work per item with no engine around it (`ceiling.rs`).
    pub ceiling: CeilingFigures,
    /// Pipeline items/s over ceiling items/s.
    pub ratio_to_ceiling: f64,
    /// The timed batches (processes on the emulator itself).
    pub batches: Vec<BatchFigures>,
    /// The batches run through the counting proxy, for the Firestore figures only.
    pub counted_batches: Vec<BatchFigures>,
    /// Median over the timed batches.
    pub pipeline_items_per_sec: f64,
    /// Pipeline items/s over raw messages/s.
    pub ratio_to_raw: f64,
    /// Every process's Firestore requests (and documents written) per item, over the counted batches.
    pub firestore_requests_per_item: f64,
    pub firestore_writes_per_item: f64,
    pub firestore_requests_per_item_by_method: BTreeMap<String, f64>,
    /// Mean time the emulator took to answer, per method.
    pub firestore_answer_ms_by_method: BTreeMap<String, f64>,
    pub firestore_requests_per_item_by_process: BTreeMap<String, f64>,
    pub firestore_writes_per_item_by_process: BTreeMap<String, f64>,
    /// Billed reads, writes (deletes apart) and deletes per 1,000 items, and their list price.
    pub cost: Cost,
    /// The finalize step of each counted batch (the coordinator's traffic from the header read of the
    /// check that finalized the batch to the ready event).
    pub finalize_work: Vec<FinalizeWork>,
    /// The most writes one document took in any 10 s, over the counted batches.
    pub hottest_document: HottestDocument,
    /// Items/s of the counted batches (the proxy slows them): the hottest document's rate was taken there.
    pub counted_items_per_sec: f64,
    /// The largest peak RSS of each role's processes.
    pub peak_rss_mib_by_role: BTreeMap<String, f64>,
    pub header_writes: Vec<u64>,
    pub max_shard_share: f64,
    pub finalize_ms_p50: f64,
    pub finalize_ms_p99: f64,
    pub processes: Vec<ProcessFigures>,
    pub profile: Profile,
    /// Batches that did not finish within the bench's deadline.
    pub errors: Vec<String>,
}

/// Where the time of the measured batches went: CPU seconds of every process and of the emulators
/// over the wall time of the batches, and the mean handler time per subscription.
#[derive(Debug, Default, Serialize)]
pub struct Profile {
    pub wall_secs: f64,
    pub cpu_secs: BTreeMap<String, f64>,
    /// CPU seconds / (wall seconds x cores): the share of the machine each one used.
    pub machine_share: BTreeMap<String, f64>,
    /// The same over a few seconds with the fleet started and no batch running.
    pub idle_machine_share: BTreeMap<String, f64>,
    pub handler_mean_ms: BTreeMap<String, f64>,
    pub handled_messages: BTreeMap<String, f64>,
    pub transaction_retries: f64,
}

/// Firestore's list prices (regional), in US dollars per 100,000 operations.
const USD_PER_100K_READS: f64 = 0.03;
const USD_PER_100K_WRITES: f64 = 0.09;
const USD_PER_100K_DELETES: f64 = 0.01;

#[derive(Debug, Default, Serialize)]
pub struct Cost {
    pub reads_per_1000_items: f64,
    pub writes_per_1000_items: f64,
    pub deletes_per_1000_items: f64,
    pub usd_per_1000_items: f64,
}

impl Cost {
    fn of(total: &Counts, items: f64) -> Self {
        let per_1000 = |count: u64| count as f64 * 1000.0 / items;
        let (reads, writes, deletes) =
            (per_1000(total.reads), per_1000(total.billed_writes), per_1000(total.billed_deletes));
        Self {
            reads_per_1000_items: reads,
            writes_per_1000_items: writes,
            deletes_per_1000_items: deletes,
            usd_per_1000_items: (reads * USD_PER_100K_READS
                + writes * USD_PER_100K_WRITES
                + deletes * USD_PER_100K_DELETES)
                / 100_000.0,
        }
    }
}

impl SizeResult {
    #[allow(clippy::too_many_arguments)]
    pub fn summarize(
        items: usize,
        raw: RawFigures,
        ceiling: CeilingFigures,
        batches: Vec<BatchFigures>,
        counted: Vec<BatchFigures>,
        usage: &[(String, &'static str, Usage)],
        profile: Profile,
    ) -> Self {
        let mut total = Counts::default();
        let mut by_process: BTreeMap<String, f64> = BTreeMap::new();
        let mut writes_by_process: BTreeMap<String, f64> = BTreeMap::new();
        for batch in &counted {
            for (process, counts) in &batch.firestore {
                total.add(counts);
                *by_process.entry(process.clone()).or_default() += counts.total_requests() as f64;
                *writes_by_process.entry(process.clone()).or_default() += counts.documents_written as f64;
            }
        }
        let hottest =
            counted.iter().filter_map(|b| b.hottest_document.clone()).max_by_key(|h| h.writes).unwrap_or_default();
        let mut peak_rss_mib_by_role: BTreeMap<String, f64> = BTreeMap::new();
        for (_, role, usage) in usage {
            let peak = peak_rss_mib_by_role.entry(role.to_string()).or_default();
            *peak = peak.max(usage.peak_rss_kib as f64 / 1024.0);
        }
        let item_count = (items * counted.len()).max(1) as f64;
        let rate = median(batches.iter().map(|b| b.items_per_sec).collect());
        let finalize: Vec<f64> = batches.iter().map(|b| b.finalize_latency_ms).collect();
        Self {
            items,
            pipeline_items_per_sec: rate,
            ratio_to_raw: rate / raw.messages_per_sec,
            raw,
            ratio_to_ceiling: rate / ceiling.items_per_sec,
            ceiling,
            cost: Cost::of(&total, item_count),
            finalize_work: counted.iter().filter_map(|b| b.finalize.clone()).collect(),
            hottest_document: hottest,
            counted_items_per_sec: median(counted.iter().map(|b| b.items_per_sec).collect()),
            peak_rss_mib_by_role,
            firestore_writes_per_item_by_process: writes_by_process
                .into_iter()
                .map(|(p, c)| (p, c / item_count))
                .collect(),
            firestore_requests_per_item: total.total_requests() as f64 / item_count,
            firestore_writes_per_item: total.documents_written as f64 / item_count,
            firestore_requests_per_item_by_method: total
                .requests
                .iter()
                .map(|(method, count)| (method.clone(), *count as f64 / item_count))
                .collect(),
            firestore_answer_ms_by_method: total
                .answer_secs
                .iter()
                .map(|(method, secs)| (method.clone(), secs * 1000.0 / total.method(method).max(1) as f64))
                .collect(),
            firestore_requests_per_item_by_process: by_process.into_iter().map(|(p, c)| (p, c / item_count)).collect(),
            header_writes: batches.iter().chain(&counted).map(|b| b.header_writes).collect(),
            max_shard_share: batches.iter().chain(&counted).map(|b| b.max_shard_share).fold(0.0, f64::max),
            finalize_ms_p50: percentile(finalize.clone(), 50.0),
            finalize_ms_p99: percentile(finalize, 99.0),
            processes: usage
                .iter()
                .map(|(name, role, usage)| ProcessFigures {
                    name: name.clone(),
                    role: role.to_string(),
                    peak_rss_mib: usage.peak_rss_kib as f64 / 1024.0,
                    cpu_secs: usage.cpu_secs,
                })
                .collect(),
            batches,
            counted_batches: counted,
            profile,
            errors: Vec::new(),
        }
    }

    /// The largest peak RSS among the processes of `role`.
    pub fn peak_rss_mib(&self, role: &str) -> f64 {
        self.peak_rss_mib_by_role.get(role).copied().unwrap_or(0.0)
    }

    /// The finalize step's requests and bytes: the largest over the counted batches.
    pub fn finalize_requests_and_bytes(&self) -> Option<(u64, u64)> {
        let requests = self.finalize_work.iter().map(|w| w.requests).max()?;
        let bytes = self.finalize_work.iter().map(|w| w.bytes).max()?;
        Some((requests, bytes))
    }
}

/// Nearest-rank percentile (0 for no samples). With few samples p99 is the largest of them.
pub fn percentile(mut samples: Vec<f64>, p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

pub fn median(samples: Vec<f64>) -> f64 {
    percentile(samples, 50.0)
}

/// Mean handler time and message count per subscription (named without the phase's `prefix`), from
/// the processes' Prometheus text.
pub fn handler_means(metrics: &[(String, String)], prefix: &str) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (_, text) in metrics {
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let Some(subscription) = label(series, "subscription") else { continue };
            let subscription = subscription.strip_prefix(prefix).map(str::to_string).unwrap_or(subscription);
            if series.starts_with("props_handler_seconds_sum{") {
                sums.entry(subscription).or_default().0 += value;
            } else if series.starts_with("props_handler_seconds_count{") {
                sums.entry(subscription).or_default().1 += value;
            }
        }
    }
    let means = sums.iter().filter(|(_, (_, n))| *n > 0.0).map(|(s, (sum, n))| (s.clone(), sum / n * 1000.0)).collect();
    let counts = sums.into_iter().map(|(s, (_, n))| (s, n)).collect();
    (means, counts)
}

/// The sum of every series of `metric` over the processes.
pub fn metric_total(metrics: &[(String, String)], metric: &str) -> f64 {
    metrics
        .iter()
        .flat_map(|(_, text)| text.lines())
        .filter(|line| line.starts_with(&format!("{metric}{{")) || line.starts_with(&format!("{metric} ")))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        // An empty f64 sum is -0.0, which prints as "-0".
        .fold(0.0, |total, value| total + value)
}

fn label(series: &str, name: &str) -> Option<String> {
    let start = series.find(&format!("{name}=\""))? + name.len() + 2;
    let end = series[start..].find('"')?;
    Some(series[start..start + end].to_string())
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = String::new();
        let p = &self.parameters;
        out.push_str(&format!(
            "props-pipeline benchmark: {} cores, {} worker process(es) x concurrency {}, {} batch(es) per size\n\n",
            self.machine.cores, p.worker_processes, p.concurrency, p.repeats
        ));
        out.push_str(
            "| items | raw msg/s | ceiling items/s | pipeline items/s | ratio to raw | ratio to ceiling | Firestore req/item | writes/item | finalize requests / KiB | finalize p50 / p99 ms | most writes to one doc in 10 s | $ per 1,000 items | header writes/batch | max shard share |\n",
        );
        out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for size in &self.sizes {
            let writes: Vec<String> = size.header_writes.iter().map(u64::to_string).collect();
            let finalize = size
                .finalize_requests_and_bytes()
                .map_or("-".to_string(), |(requests, bytes)| format!("{requests} / {:.1}", bytes as f64 / 1024.0));
            out.push_str(&format!(
                "| {} | {:.0} | {:.0} | {:.0} | {:.3} | {:.2} | {:.2} | {:.2} | {} | {:.0} / {:.0} | {} | {:.4} | {} | {:.3} |\n",
                size.items,
                size.raw.messages_per_sec,
                size.ceiling.items_per_sec,
                size.pipeline_items_per_sec,
                size.ratio_to_raw,
                size.ratio_to_ceiling,
                size.firestore_requests_per_item,
                size.firestore_writes_per_item,
                finalize,
                size.finalize_ms_p50,
                size.finalize_ms_p99,
                size.hottest_document.writes,
                size.cost.usd_per_1000_items,
                writes.join(", "),
                size.max_shard_share,
            ));
        }
        out.push_str(&self.rss_table());
        out.push_str(&format!(
            "\nfinalize latency over all {} batches: p50 {:.0} ms, p99 {:.0} ms\n",
            self.finalize_samples, self.finalize_ms_p50, self.finalize_ms_p99
        ));
        out.push_str(&crate::targets::table(&self.targets));
        for size in &self.sizes {
            out.push_str(&format!(
                "\nN = {}: where the time went ({:.1} s of batches)\n",
                size.items, size.profile.wall_secs
            ));
            let mut shares: Vec<(&String, &f64)> = size.profile.machine_share.iter().collect();
            shares.sort_by(|a, b| b.1.total_cmp(a.1));
            let shares: Vec<String> =
                shares.iter().map(|(who, share)| format!("{who} {:.0}%", *share * 100.0)).collect();
            out.push_str(&format!("  machine CPU share: {}\n", shares.join(", ")));
            let idle: Vec<String> = size
                .profile
                .idle_machine_share
                .iter()
                .filter(|(_, share)| **share >= 0.005)
                .map(|(who, share)| format!("{who} {:.0}%", share * 100.0))
                .collect();
            out.push_str(&format!("  machine CPU share, fleet idle: {}\n", idle.join(", ")));
            let handlers: Vec<String> =
                size.profile.handler_mean_ms.iter().map(|(sub, ms)| format!("{sub} {ms:.1} ms")).collect();
            out.push_str(&format!("  mean handler time: {}\n", handlers.join(", ")));
            let methods: Vec<String> = size
                .firestore_requests_per_item_by_method
                .iter()
                .map(|(method, per_item)| {
                    let answer = size.firestore_answer_ms_by_method.get(method).copied().unwrap_or(0.0);
                    format!("{method} {per_item:.2} ({answer:.1} ms)")
                })
                .collect();
            out.push_str(&format!("  Firestore requests per item (mean answer time): {}\n", methods.join(", ")));
            out.push_str(&format!("  transaction retries (ABORTED): {:.0}\n", size.profile.transaction_retries));
            out.push_str(&size.firestore_details());
            for error in &size.errors {
                out.push_str(&format!("  DID NOT FINISH: {error}\n"));
            }
        }
        out
    }
}

/// The roles in the order the tables show them.
const ROLES: [&str; 5] = ["coordinator", "worker", "exporter", "dead-letter", "sweeper"];

impl Report {
    /// Peak RSS per role and size, and each role's largest size over its N = 1,000 figure.
    fn rss_table(&self) -> String {
        let mut out = String::from("\n| peak RSS MiB | ");
        out.push_str(&ROLES.join(" | "));
        out.push_str(" |\n|---|");
        out.push_str(&"---:|".repeat(ROLES.len()));
        out.push('\n');
        for size in &self.sizes {
            let cells: Vec<String> = ROLES.iter().map(|role| format!("{:.1}", size.peak_rss_mib(role))).collect();
            out.push_str(&format!("| N = {} | {} |\n", size.items, cells.join(" | ")));
        }
        if let Some((largest, base)) = crate::targets::largest_and_base(&self.sizes) {
            let cells: Vec<String> = ROLES
                .iter()
                .map(|role| {
                    format!("{:.2}", largest.peak_rss_mib(role) / base.peak_rss_mib(role).max(f64::MIN_POSITIVE))
                })
                .collect();
            out.push_str(&format!("| N = {} / N = {} | {} |\n", largest.items, base.items, cells.join(" | ")));
        }
        out
    }
}

impl SizeResult {
    /// Per process requests and writes per item, cost, the finalize step and the hottest document.
    fn firestore_details(&self) -> String {
        let mut out = String::new();
        let per_process: Vec<String> = self
            .firestore_requests_per_item_by_process
            .iter()
            .map(|(process, requests)| {
                let writes = self.firestore_writes_per_item_by_process.get(process).copied().unwrap_or(0.0);
                format!("{process} {requests:.2} / {writes:.2}")
            })
            .collect();
        out.push_str(&format!("  Firestore requests / writes per item by process: {}\n", per_process.join(", ")));
        out.push_str(&format!(
            "  billed per 1,000 items: {:.0} reads, {:.0} writes, {:.0} deletes: ${:.4}\n",
            self.cost.reads_per_1000_items,
            self.cost.writes_per_1000_items,
            self.cost.deletes_per_1000_items,
            self.cost.usd_per_1000_items
        ));
        for work in &self.finalize_work {
            let methods: Vec<String> = work.requests_by_method.iter().map(|(m, n)| format!("{m} {n}")).collect();
            out.push_str(&format!(
                "  finalize step: {} requests ({}), {} bytes, {} reads\n",
                work.requests,
                methods.join(", "),
                work.bytes,
                work.reads
            ));
        }
        let hot = &self.hottest_document;
        out.push_str(&format!(
            "  hottest document: {} writes in {:.0} s to {} ({}), in a counted batch at {:.0} items/s\n",
            hot.writes, hot.window_secs, hot.document, hot.kind, self.counted_items_per_sec
        ));
        out.push_str(&format!(
            "  ceiling of the primitives: {} items in {:.2} s ({:.0} items/s, {} failed)\n",
            self.ceiling.items, self.ceiling.secs, self.ceiling.items_per_sec, self.ceiling.failed
        ));
        out
    }
}
