//! What every page shares: the frame (navigation, the CLI commands for the page's actions, the reads
//! footer) and small pieces (state badges, progress bars, cursors' "next page" links).

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::batch::state::BatchState;
use crate::batch::status::BatchStatus;

const CSS: &str = r#"
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
nav{background:#1d232a;padding:.6em 1.2em}nav a{color:#e8eaed;margin-right:1.4em;text-decoration:none;font-weight:600}
main{padding:1em 1.4em;max-width:1400px}h1{font-size:1.35em;margin:.2em 0 .6em}h2{font-size:1.1em;margin:1.4em 0 .5em}
table{border-collapse:collapse;background:#fff;width:100%}th,td{padding:.3em .6em;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top}
th{background:#eef0f3;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.state{padding:.1em .45em;border-radius:3px;font-size:.85em;font-weight:700;background:#dde2e8}
.state.RUNNING,.state.PUBLISHING,.state.FINALIZING{background:#cfe3ff}.state.COMPLETE{background:#cdeccf}
.state.FAILED{background:#f8d0cc}.state.SUPERSEDED{background:#ece3c8}
.bar{display:flex;width:160px;height:10px;background:#e3e6ea;border-radius:2px;overflow:hidden}
.bar.big{width:100%;height:18px}.bar .done{background:#3c9a4a}.bar .failed{background:#d0453a}.bar .skipped{background:#b9a26a}
form.filters{display:flex;gap:.8em;flex-wrap:wrap;align-items:end;margin-bottom:1em}form.filters label{display:flex;flex-direction:column;font-size:.85em}
.cli{background:#fff;border-left:3px solid #1d232a;padding:.2em 1em}.cli pre{margin:.4em 0;white-space:pre-wrap}
.note{background:#fff7d6;border-left:3px solid #d9a400;padding:.5em 1em}.error{background:#fde4e1;border-left:3px solid #d0453a;padding:.5em 1em}
footer{color:#68717c;padding:1em 1.4em;font-size:.85em}dl.facts{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dl.facts dt{color:#68717c}
ol.timeline li{margin:.2em 0}.muted{color:#68717c}
"#;

/// A whole page: `title`, `body`, the CLI commands for its actions and the Firestore reads it cost.
pub fn frame(title: &str, reads: u64, commands: &[String], body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · props-pipeline" }
                style { (PreEscaped(CSS)) }
            }
            body {
                nav { a href="/" { "Batches" } a href="/dead-letters" { "Dead letters" } a href="/audit" { "Audit" } }
                main {
                    h1 { (title) }
                    (body)
                    @if !commands.is_empty() {
                        h2 { "From the CLI" }
                        section.cli {
                            p.muted { "The dashboard only reads. Actions run from the CLI, where they are audited:" }
                            @for command in commands { pre { code { (command) } } }
                        }
                    }
                }
                footer {
                    "Firestore reads for this page: " span #reads { (reads) }
                    " · JSON of every page under " code { "/api/" }
                }
            }
        }
    }
}

/// An error page's body (the status code is set by the caller).
pub fn error_body(message: &str) -> Markup {
    html! { p.error #error { (message) } p { a href="/" { "Back to the batches" } } }
}

pub fn state_badge(state: BatchState) -> Markup {
    html! { span class={ "state " (state.as_str()) } { (state.as_str()) } }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 { "0%".into() } else { format!("{:.1}%", part as f64 * 100.0 / whole as f64) }
}

/// Done (green), failed (red) and skipped (khaki) as shares of the expected items; `ids` names the parts for live updates.
pub fn progress_bar(status: &BatchStatus, big: bool) -> Markup {
    let title = format!(
        "{} done, {} failed, {} skipped, {} pending of {}",
        status.done, status.failed, status.skipped, status.pending, status.expected
    );
    html! {
        div class=(if big { "bar big" } else { "bar" }) title=(title) {
            div.done id=[big.then_some("bar-done")] style={ "width:" (percent(status.done, status.expected)) } {}
            div.failed id=[big.then_some("bar-failed")] style={ "width:" (percent(status.failed, status.expected)) } {}
            div.skipped id=[big.then_some("bar-skipped")] style={ "width:" (percent(status.skipped, status.expected)) } {}
        }
    }
}

pub fn coverage(fraction: Option<f64>) -> String {
    fraction.map_or_else(|| "-".to_string(), |f| format!("{:.1}%", f * 100.0))
}

/// A "next page" link, or nothing on the last page.
pub fn next_link(path: &str, query: Option<String>) -> Markup {
    html! {
        @if let Some(query) = query {
            p { a #next rel="next" href={ (path) "?" (query) } { "Next page →" } }
        }
    }
}

/// Text cut to `max` characters, with an ellipsis when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}
