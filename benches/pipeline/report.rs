//! The figures of one benchmark run: per batch size, summaries of its batches, the table printed at
//! the end and the JSON written beside it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::batch_run::BatchFigures;
use crate::firestore_count::Counts;
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

impl SizeResult {
    pub fn summarize(
        items: usize,
        raw: RawFigures,
        batches: Vec<BatchFigures>,
        counted: Vec<BatchFigures>,
        usage: &[(String, &'static str, Usage)],
        profile: Profile,
    ) -> Self {
        let mut total = Counts::default();
        let mut by_process: BTreeMap<String, f64> = BTreeMap::new();
        for batch in &counted {
            for (process, counts) in &batch.firestore {
                total.add(counts);
                *by_process.entry(process.clone()).or_default() += counts.total_requests() as f64;
            }
        }
        let item_count = (items * counted.len()).max(1) as f64;
        let rate = median(batches.iter().map(|b| b.items_per_sec).collect());
        let finalize: Vec<f64> = batches.iter().map(|b| b.finalize_latency_ms).collect();
        Self {
            items,
            pipeline_items_per_sec: rate,
            ratio_to_raw: rate / raw.messages_per_sec,
            raw,
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
        self.processes.iter().filter(|p| p.role == role).map(|p| p.peak_rss_mib).fold(0.0, f64::max)
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
            "| items | raw msg/s | pipeline items/s | ratio | Firestore req/item | writes/item | header writes/batch | max shard share | finalize p50 / p99 ms | peak RSS MiB coord / worker / exporter / dead-letter / sweeper |\n",
        );
        out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for size in &self.sizes {
            let writes: Vec<String> = size.header_writes.iter().map(u64::to_string).collect();
            out.push_str(&format!(
                "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.3} | {:.0} / {:.0} | {:.1} / {:.1} / {:.1} / {:.1} / {:.1} |\n",
                size.items,
                size.raw.messages_per_sec,
                size.pipeline_items_per_sec,
                size.ratio_to_raw,
                size.firestore_requests_per_item,
                size.firestore_writes_per_item,
                writes.join(", "),
                size.max_shard_share,
                size.finalize_ms_p50,
                size.finalize_ms_p99,
                size.peak_rss_mib("coordinator"),
                size.peak_rss_mib("worker"),
                size.peak_rss_mib("exporter"),
                size.peak_rss_mib("dead-letter"),
                size.peak_rss_mib("sweeper"),
            ));
        }
        out.push_str(&format!(
            "\nfinalize latency over all {} batches: p50 {:.0} ms, p99 {:.0} ms\n",
            self.finalize_samples, self.finalize_ms_p50, self.finalize_ms_p99
        ));
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
            for error in &size.errors {
                out.push_str(&format!("  DID NOT FINISH: {error}\n"));
            }
        }
        out
    }
}
