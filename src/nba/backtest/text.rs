//! The report as an aligned plain-text table (what `props-pipeline backtest` prints).

use std::fmt::Write;

use super::report::{BacktestReport, StatSummary};

fn fixed(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{:.2}%", 100.0 * v))
}

fn rows(report: &BacktestReport) -> impl Iterator<Item = &StatSummary> {
    report.per_stat.iter().chain(std::iter::once(&report.overall))
}

/// Renders every figure of `report` as aligned text tables, ending with a newline.
pub fn render_text(report: &BacktestReport) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_report(&mut out, report);
    out
}

fn write_report(out: &mut String, report: &BacktestReport) -> std::fmt::Result {
    let c = &report.counts;
    writeln!(out, "Walk-forward backtest, game dates {} .. {}", report.from, report.to)?;
    writeln!(out, "Lines are synthetic (last-10-game mean floored to the half point), not sportsbook lines.")?;
    writeln!(out)?;
    for (label, value) in [
        ("game dates", c.dates),
        ("slate players", c.slate_players),
        ("predicted players", c.predicted_players),
        ("skipped (insufficient history)", c.skipped_insufficient_history),
        ("void props (did not play)", c.void_props),
        ("pushes", c.pushes),
        ("props scored", c.props_scored),
    ] {
        writeln!(out, "  {label:<32}{value:>8}")?;
    }

    writeln!(out)?;
    writeln!(out, "Brier score (lower is better; always 50% scores 0.2500)")?;
    writeln!(
        out,
        "  {:<10}{:>7}{:>11}{:>9}{:>12}{:>16}",
        "stat", "props", "over rate", "model", "always 50%", "line as median"
    )?;
    for row in rows(report) {
        writeln!(
            out,
            "  {:<10}{:>7}{:>11}{:>9}{:>12}{:>16}",
            row.stat,
            row.props,
            percent(row.over_rate),
            fixed(row.model.brier, 4),
            fixed(row.always_half.brier, 4),
            fixed(row.market.brier, 4)
        )?;
    }

    writeln!(out)?;
    writeln!(out, "Log loss (lower is better; always 50% scores ln 2 = 0.6931)")?;
    writeln!(out, "  {:<10}{:>7}{:>9}{:>12}{:>16}", "stat", "props", "model", "always 50%", "line as median")?;
    for row in rows(report) {
        writeln!(
            out,
            "  {:<10}{:>7}{:>9}{:>12}{:>16}",
            row.stat,
            row.props,
            fixed(row.model.log_loss, 4),
            fixed(row.always_half.log_loss, 4),
            fixed(row.market.log_loss, 4)
        )?;
    }
    writeln!(out)?;
    if report.baselines_coincide {
        writeln!(out, "Note: every line is priced at even odds on both sides (-110/-110), so the de-vigged market")?;
        writeln!(out, "probability is 0.5 on every prop: \"line as median\" coincides with \"always 50%\".")?;
    } else {
        writeln!(out, "\"line as median\" uses each line's de-vigged market probability; \"always 50%\" uses 0.5.")?;
    }

    writeln!(out)?;
    writeln!(
        out,
        "Model picks, OVER/UNDER (PASS excluded); break-even hit rate at {} odds: {}",
        report.standard_odds,
        percent(report.break_even_hit_rate)
    )?;
    writeln!(out, "  {:<10}{:>7}{:>7}{:>10}{:>10}{:>9}", "stat", "picks", "wins", "hit rate", "units", "ROI")?;
    for row in rows(report) {
        let p = &row.picks;
        writeln!(
            out,
            "  {:<10}{:>7}{:>7}{:>10}{:>10.2}{:>9}",
            row.stat,
            p.picks,
            p.wins,
            percent(p.hit_rate),
            p.units,
            percent(p.roi)
        )?;
    }

    writeln!(out)?;
    writeln!(out, "Calibration of the model's P(over) (all stats)")?;
    writeln!(out, "  {:<12}{:>7}{:>16}{:>20}", "bucket", "count", "mean predicted", "observed over rate")?;
    for (i, bucket) in report.calibration.iter().enumerate() {
        let close = if i + 1 == report.calibration.len() { ']' } else { ')' };
        let range = format!("[{:.1}, {:.1}{close}", bucket.lower, bucket.upper);
        writeln!(
            out,
            "  {:<12}{:>7}{:>16}{:>20}",
            range,
            bucket.count,
            fixed(bucket.mean_predicted, 3),
            fixed(bucket.observed_over_rate, 3)
        )?;
    }
    Ok(())
}
