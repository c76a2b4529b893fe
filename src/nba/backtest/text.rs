//! The report as an aligned plain-text table (what `props-pipeline backtest` prints).

use std::fmt::Write;

use super::report::{BacktestReport, StatSummary, WELL_FILLED_BUCKET};

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
    writeln!(out, "Lines are synthetic (a fair line-setter on each player's last 20 games), not sportsbook lines,")?;
    writeln!(out, "unless --lines supplied posted ones.")?;
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
        "stat", "props", "over rate", "model", "always 50%", "market"
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
    writeln!(out, "  {:<10}{:>7}{:>9}{:>12}{:>9}", "stat", "props", "model", "always 50%", "market")?;
    for row in rows(report) {
        writeln!(
            out,
            "  {:<10}{:>7}{:>9}{:>12}{:>9}",
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
        writeln!(out, "probability is 0.5 on every prop: \"market\" coincides with \"always 50%\".")?;
    } else {
        writeln!(out, "\"market\" uses each line's de-vigged market probability; \"always 50%\" uses 0.5.")?;
    }

    write_picks(out, report)?;
    write_crps(out, report)?;
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
    write_calibration_summary(out, report)
}

fn write_picks(out: &mut String, report: &BacktestReport) -> std::fmt::Result {
    writeln!(out)?;
    writeln!(
        out,
        "Model picks, OVER/UNDER (PASS excluded), at each side's odds (break-even at {}: {}), beside the best",
        report.standard_odds,
        percent(report.break_even_hit_rate)
    )?;
    writeln!(out, "constant strategy (every prop OVER, or every prop UNDER)")?;
    writeln!(
        out,
        "  {:<10}{:>7}{:>7}{:>10}{:>10}{:>9}   {:<6}{:>10}{:>9}",
        "stat", "picks", "wins", "hit rate", "units", "ROI", "always", "hit rate", "ROI"
    )?;
    for row in rows(report) {
        let p = &row.picks;
        let constant = if row.best_constant == "OVER" { &row.always_over } else { &row.always_under };
        writeln!(
            out,
            "  {:<10}{:>7}{:>7}{:>10}{:>10.2}{:>9}   {:<6}{:>10}{:>9}",
            row.stat,
            p.picks,
            p.wins,
            percent(p.hit_rate),
            p.units,
            percent(p.roi),
            row.best_constant,
            percent(constant.hit_rate),
            percent(constant.roi)
        )?;
    }
    Ok(())
}

fn write_crps(out: &mut String, report: &BacktestReport) -> std::fmt::Result {
    writeln!(out)?;
    writeln!(out, "Distribution score: mean CRPS, in the stat's units (lower is better); naive = the player's")?;
    writeln!(out, "own last 20 games as an empirical distribution")?;
    writeln!(out, "  {:<10}{:>7}{:>9}{:>9}{:>12}", "stat", "props", "model", "naive", "model/naive")?;
    for row in rows(report) {
        let ratio = row.crps.model.zip(row.crps.naive).filter(|(_, n)| *n > 0.0).map(|(m, n)| m / n);
        writeln!(
            out,
            "  {:<10}{:>7}{:>9}{:>9}{:>12}",
            row.stat,
            row.crps.count,
            fixed(row.crps.model, 3),
            fixed(row.crps.naive, 3),
            fixed(ratio, 3)
        )?;
    }
    Ok(())
}

fn write_calibration_summary(out: &mut String, report: &BacktestReport) -> std::fmt::Result {
    let pp = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.2} pp", 100.0 * v));
    writeln!(
        out,
        "  expected calibration error {}; worst bucket of {}+ props {}",
        pp(report.calibration_ece),
        WELL_FILLED_BUCKET,
        pp(report.worst_bucket_gap)
    )
}

/// The per-season report: one compact table per season, then the overall one in full.
pub fn render_seasons(report: &BacktestReport) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_seasons(&mut out, report);
    out
}

fn write_seasons(out: &mut String, report: &BacktestReport) -> std::fmt::Result {
    for season in &report.seasons {
        let c = &season.counts;
        writeln!(
            out,
            "Season {} ({} .. {}): {} dates, {} players predicted, {} skipped, {} props",
            season.label,
            season.from,
            season.to,
            c.dates,
            c.predicted_players,
            c.skipped_insufficient_history,
            c.props_scored
        )?;
        writeln!(
            out,
            "  {:<10}{:>6}{:>8}{:>8}  {:>7}{:>7}{:>7}  {:>7}{:>7}{:>7}  {:>7}{:>7}  {:>7}{:>8}  {:>14}",
            "stat",
            "props",
            "over",
            "mkt p",
            "Brier",
            "50%",
            "market",
            "logloss",
            "50%",
            "market",
            "CRPS",
            "naive",
            "hit",
            "ROI",
            "best constant"
        )?;
        for row in rows(season) {
            let constant = if row.best_constant == "OVER" { &row.always_over } else { &row.always_under };
            writeln!(
                out,
                "  {:<10}{:>6}{:>8}{:>8}  {:>7}{:>7}{:>7}  {:>7}{:>7}{:>7}  {:>7}{:>7}  {:>7}{:>8}  {:>5} {:>8}",
                row.stat,
                row.props,
                percent1(row.over_rate),
                percent1(row.market_mean_p_over),
                fixed(row.model.brier, 4),
                fixed(row.always_half.brier, 4),
                fixed(row.market.brier, 4),
                fixed(row.model.log_loss, 4),
                fixed(row.always_half.log_loss, 4),
                fixed(row.market.log_loss, 4),
                fixed(row.crps.model, 3),
                fixed(row.crps.naive, 3),
                percent1(row.picks.hit_rate),
                percent1(row.picks.roi),
                row.best_constant,
                percent1(constant.roi)
            )?;
        }
        write_calibration_summary(out, season)?;
        writeln!(out)?;
    }
    writeln!(out, "All seasons together")?;
    write_report(out, report)
}

fn percent1(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{:.1}%", 100.0 * v))
}
