//! Issue 14's targets, each beside what the run measured: met, missed, or no target (a figure only).
//! Where the issue names a batch size (N = 1,000 or 5,000) and the run did not measure it, the check
//! is made at the sizes the run has (the largest for N = 5,000, the one nearest 1,000 as the base).

use serde::Serialize;

use crate::report::SizeResult;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub target: String,
    pub measured: String,
    /// `None`: a figure with no target, or nothing measured to judge.
    pub met: Option<bool>,
}

impl Check {
    fn new(target: &str, measured: String, met: Option<bool>) -> Self {
        Self { target: target.to_string(), measured, met }
    }
}

/// The size the "N = 1,000" figures are taken at (the nearest the run has) and the largest
/// (its "N = 5,000"), when they differ.
pub fn largest_and_base(sizes: &[SizeResult]) -> Option<(&SizeResult, &SizeResult)> {
    let largest = sizes.iter().max_by_key(|s| s.items)?;
    let base = sizes.iter().filter(|s| s.items != largest.items).min_by_key(|s| s.items.abs_diff(1000))?;
    Some((largest, base))
}

fn nearest_1000(sizes: &[SizeResult]) -> Option<&SizeResult> {
    sizes.iter().min_by_key(|s| s.items.abs_diff(1000))
}

fn per_size(sizes: &[SizeResult], figure: impl Fn(&SizeResult) -> String) -> String {
    sizes.iter().map(|s| format!("N = {}: {}", s.items, figure(s))).collect::<Vec<_>>().join("; ")
}

pub fn evaluate(sizes: &[SizeResult]) -> Vec<Check> {
    let mut checks = Vec::new();
    let counted: Vec<&SizeResult> = sizes.iter().filter(|s| !s.counted_batches.is_empty()).collect();
    let base = nearest_1000(sizes).filter(|s| !s.counted_batches.is_empty());
    checks.push(Check::new(
        "Firestore requests per item <= 3 at N = 1,000",
        per_size(sizes, |s| format!("{:.2}", s.firestore_requests_per_item)),
        base.map(|s| s.firestore_requests_per_item <= 3.0),
    ));
    checks.push(Check::new(
        "Firestore writes per item <= 4 at N = 1,000",
        per_size(sizes, |s| format!("{:.2}", s.firestore_writes_per_item)),
        base.map(|s| s.firestore_writes_per_item <= 4.0),
    ));
    let finalize: Vec<(usize, u64, u64)> =
        counted.iter().filter_map(|s| s.finalize_requests_and_bytes().map(|(r, b)| (s.items, r, b))).collect();
    let independent = match (finalize.iter().min_by_key(|f| f.0), finalize.iter().max_by_key(|f| f.0)) {
        (Some(small), Some(large)) if small.0 != large.0 => {
            Some(large.1 <= small.1 && large.2 as f64 <= small.2 as f64 * 1.1)
        }
        _ => None,
    };
    checks.push(Check::new(
        "finalize requests and bytes the same at the smallest and largest N (bytes within 10%)",
        finalize.iter().map(|(n, r, b)| format!("N = {n}: {r} requests, {b} bytes")).collect::<Vec<_>>().join("; "),
        independent,
    ));
    let large: Vec<&SizeResult> = sizes.iter().filter(|s| s.items >= 1000).collect();
    let judged = if large.is_empty() { sizes.iter().collect() } else { large };
    checks.push(Check::new(
        "finalize latency p50 < 200 ms and p99 < 1 s at N = 1,000 and 5,000",
        per_size(sizes, |s| format!("{:.0} / {:.0} ms", s.finalize_ms_p50, s.finalize_ms_p99)),
        (!judged.is_empty()).then(|| judged.iter().all(|s| s.finalize_ms_p50 < 200.0 && s.finalize_ms_p99 < 1000.0)),
    ));
    if let Some(largest) = sizes.iter().max_by_key(|s| s.items) {
        let (role, peak) = largest
            .peak_rss_mib_by_role
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(r, p)| (r.clone(), *p))
            .unwrap_or_default();
        checks.push(Check::new(
            "peak RSS < 64 MiB for every role at N = 5,000",
            format!("N = {}: largest {role} {peak:.1} MiB", largest.items),
            Some(peak < 64.0),
        ));
    }
    if let Some((largest, base)) = largest_and_base(sizes) {
        let ratios: Vec<(String, f64)> = largest
            .peak_rss_mib_by_role
            .iter()
            .map(|(role, peak)| (role.clone(), peak / base.peak_rss_mib(role).max(f64::MIN_POSITIVE)))
            .collect();
        let worst = ratios.iter().max_by(|a, b| a.1.total_cmp(&b.1)).cloned().unwrap_or_default();
        checks.push(Check::new(
            "peak RSS at N = 5,000 within 10% of N = 1,000, every role",
            format!("N = {} / N = {}: largest ratio {} {:.2}", largest.items, base.items, worst.0, worst.1),
            Some(worst.1 <= 1.10),
        ));
    }
    checks.push(Check::new(
        "pipeline items/s >= 0.8 of the ceiling of the primitives",
        per_size(sizes, |s| {
            format!(
                "{:.0} / {:.0} = {:.2} (raw Pub/Sub ratio {:.3})",
                s.pipeline_items_per_sec, s.ceiling.items_per_sec, s.ratio_to_ceiling, s.ratio_to_raw
            )
        }),
        (!sizes.is_empty()).then(|| sizes.iter().all(|s| s.ratio_to_ceiling >= 0.8)),
    ));
    checks.push(Check::new(
        "cost: billed reads, writes and deletes per 1,000 items at list prices",
        per_size(sizes, |s| {
            format!(
                "{:.0} reads, {:.0} writes, {:.0} deletes = ${:.4}",
                s.cost.reads_per_1000_items,
                s.cost.writes_per_1000_items,
                s.cost.deletes_per_1000_items,
                s.cost.usd_per_1000_items
            )
        }),
        None,
    ));
    if let Some(largest) = counted.iter().max_by_key(|s| s.items) {
        let hot = &largest.hottest_document;
        checks.push(Check::new(
            "<= 10 writes per document per 10 s at N = 5,000",
            format!(
                "N = {}: {} writes to {} ({}) at {:.0} items/s (counted batch)",
                largest.items, hot.writes, hot.document, hot.kind, largest.counted_items_per_sec
            ),
            Some(hot.writes <= 10),
        ));
    }
    checks
}

pub fn table(checks: &[Check]) -> String {
    let mut out = String::from("\n| target | measured | verdict |\n|---|---|---|\n");
    for check in checks {
        let verdict = match check.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "-",
        };
        out.push_str(&format!("| {} | {} | {verdict} |\n", check.target, check.measured));
    }
    out
}
