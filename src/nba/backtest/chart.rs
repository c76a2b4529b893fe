//! A reliability diagram of the calibration table as a self-contained SVG (written by hand, no
//! plotting crate): mean predicted P(over) against observed over rate per bucket, with the diagonal
//! of perfect calibration.

use std::fmt::Write;

use super::calibration::CalibrationBucket;

const LEFT: f64 = 70.0;
const TOP: f64 = 50.0;
const SIDE: f64 = 400.0;
const WIDTH: f64 = LEFT + SIDE + 30.0;
const HEIGHT: f64 = TOP + SIDE + 70.0;

fn x(p: f64) -> f64 {
    LEFT + SIDE * p.clamp(0.0, 1.0)
}

fn y(p: f64) -> f64 {
    TOP + SIDE * (1.0 - p.clamp(0.0, 1.0))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The diagram as an SVG document. Each non-empty bucket is a point whose area grows with its count,
/// joined in bucket order; empty buckets are left out.
pub fn calibration_svg(buckets: &[CalibrationBucket], title: &str) -> String {
    let mut svg = String::new();
    // Writing into a String cannot fail.
    let _ = write_svg(&mut svg, buckets, title);
    svg
}

fn write_svg(svg: &mut String, buckets: &[CalibrationBucket], title: &str) -> std::fmt::Result {
    writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    )?;
    writeln!(svg, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#)?;
    writeln!(svg, r#"<text x="{}" y="28" text-anchor="middle" font-size="14">{}</text>"#, WIDTH / 2.0, escape(title))?;
    for k in 0..=10 {
        let p = f64::from(k) / 10.0;
        let (gx, gy) = (x(p), y(p));
        writeln!(svg, r##"<line x1="{gx}" y1="{TOP}" x2="{gx}" y2="{}" stroke="#e5e5e5"/>"##, TOP + SIDE)?;
        writeln!(svg, r##"<line x1="{LEFT}" y1="{gy}" x2="{}" y2="{gy}" stroke="#e5e5e5"/>"##, LEFT + SIDE)?;
        if k % 2 == 0 {
            writeln!(svg, r#"<text x="{gx}" y="{}" text-anchor="middle">{p:.1}</text>"#, TOP + SIDE + 18.0)?;
            writeln!(svg, r#"<text x="{}" y="{}" text-anchor="end">{p:.1}</text>"#, LEFT - 8.0, gy + 4.0)?;
        }
    }
    writeln!(svg, r#"<rect x="{LEFT}" y="{TOP}" width="{SIDE}" height="{SIDE}" fill="none" stroke="black"/>"#)?;
    writeln!(
        svg,
        r##"<line class="diagonal" x1="{}" y1="{}" x2="{}" y2="{}" stroke="#888" stroke-dasharray="6 4"/>"##,
        x(0.0),
        y(0.0),
        x(1.0),
        y(1.0)
    )?;
    writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">predicted P(over), bucket mean</text>"#,
        LEFT + SIDE / 2.0,
        TOP + SIDE + 40.0
    )?;
    writeln!(
        svg,
        r#"<text transform="translate(22 {}) rotate(-90)" text-anchor="middle">observed over rate</text>"#,
        TOP + SIDE / 2.0
    )?;

    let points: Vec<(f64, f64, usize)> = buckets
        .iter()
        .filter_map(|b| Some((b.mean_predicted?, b.observed_over_rate?, b.count)))
        .filter(|&(_, _, count)| count > 0)
        .collect();
    let largest = points.iter().map(|&(_, _, count)| count).max().unwrap_or(1) as f64;
    if points.len() > 1 {
        let path: Vec<String> = points.iter().map(|&(p, o, _)| format!("{:.2},{:.2}", x(p), y(o))).collect();
        writeln!(svg, r##"<polyline points="{}" fill="none" stroke="#1f77b4" stroke-width="2"/>"##, path.join(" "))?;
    }
    for &(p, o, count) in &points {
        let radius = 3.0 + 9.0 * (count as f64 / largest).sqrt();
        let (cx, cy) = (x(p), y(o));
        writeln!(
            svg,
            r##"<circle cx="{cx:.2}" cy="{cy:.2}" r="{radius:.2}" fill="#1f77b4" fill-opacity="0.75"><title>predicted {p:.3}, observed {o:.3}, {count} props</title></circle>"##
        )?;
        writeln!(svg, r#"<text x="{:.2}" y="{:.2}" font-size="10">{count}</text>"#, cx + radius + 2.0, cy - 2.0)?;
    }

    let legend_y = TOP + SIDE + 60.0;
    writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="#888" stroke-dasharray="6 4"/>"##,
        LEFT + 24.0
    )?;
    writeln!(svg, r#"<text x="{}" y="{}">perfect calibration</text>"#, LEFT + 30.0, legend_y + 4.0)?;
    writeln!(svg, r##"<circle cx="{}" cy="{legend_y}" r="5" fill="#1f77b4"/>"##, LEFT + 180.0)?;
    writeln!(svg, r#"<text x="{}" y="{}">model (label = props in bucket)</text>"#, LEFT + 190.0, legend_y + 4.0)?;
    writeln!(svg, "</svg>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nba::backtest::Calibration;

    #[test]
    fn one_point_per_non_empty_bucket_and_the_diagonal() {
        let mut calibration = Calibration::default();
        for (p, over) in [(0.15, false), (0.12, true), (0.55, true), (0.95, true), (0.92, true)] {
            calibration.add(p, over);
        }
        let svg = calibration_svg(&calibration.buckets(), "A & B <test>");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("A &amp; B &lt;test&gt;"));
        // 3 non-empty buckets + the legend's circle.
        assert_eq!(svg.matches("<circle").count(), 4);
        // The diagonal runs from (0, 0) at the bottom left to (1, 1) at the top right.
        assert!(svg.contains(r#"class="diagonal" x1="70" y1="450" x2="470" y2="50""#), "{svg}");
        // Bucket [0.1, 0.2): mean 0.135, observed 0.5 -> (70 + 54, 50 + 200).
        assert!(svg.contains(r#"cx="124.00" cy="250.00""#), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 1);
    }

    #[test]
    fn empty_table_still_draws_axes() {
        let svg = calibration_svg(&Calibration::default().buckets(), "empty");
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(!svg.contains("<polyline"));
        assert!(svg.contains("class=\"diagonal\""));
    }
}
