//! Real (posted) prop lines, for users who have them: a CSV that replaces the synthetic market in
//! the backtest.
//!
//! ```text
//! game_date,player,stat,line,over_odds,under_odds
//! 2025-06-22,Shai Gilgeous-Alexander,points,31.5,-115,-105
//! 2025-06-22,shaigilgeousalexander,threes,1.5,+120,-150
//! ```
//!
//! `player` is a name or a `player_lookup` (both normalize to the same id); `stat` is `points`,
//! `rebounds`, `assists` or `threes`; odds are American (`+120` or `120`, `-150`). One row per
//! (date, player, stat); a later duplicate replaces an earlier one. With posted lines, only the props
//! they list are scored: a slate player without a posted line for a stat has no prop for it.

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;

use crate::nba::model::implied_probability;
use crate::nba::types::{PropLine, Stat, player_lookup};

/// Why a posted-lines file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PostedLinesError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: CSV error: {source}")]
    Csv { path: String, source: csv::Error },
    #[error("{path}: missing column {column:?} (need game_date,player,stat,line,over_odds,under_odds)")]
    MissingColumn { path: String, column: &'static str },
    #[error("{path}:{line}: {reason}")]
    BadRow { path: String, line: u64, reason: String },
}

/// Posted lines by (date, player_lookup), each player's lines in [`Stat::ALL`] order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PostedLines {
    lines: HashMap<(NaiveDate, String), Vec<PropLine>>,
}

const COLUMNS: [&str; 6] = ["game_date", "player", "stat", "line", "over_odds", "under_odds"];

impl PostedLines {
    pub fn read(path: &Path) -> Result<PostedLines, PostedLinesError> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| PostedLinesError::Io { path: name.clone(), source })?;
        Self::parse(&name, file)
    }

    pub fn parse(name: &str, input: impl std::io::Read) -> Result<PostedLines, PostedLinesError> {
        let csv_error = |source| PostedLinesError::Csv { path: name.to_string(), source };
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(input);
        let headers = reader.headers().map_err(csv_error)?.clone();
        let mut idx = [0; 6];
        for (slot, column) in idx.iter_mut().zip(COLUMNS) {
            *slot = headers
                .iter()
                .position(|h| h == column)
                .ok_or(PostedLinesError::MissingColumn { path: name.to_string(), column })?;
        }
        let mut posted = PostedLines::default();
        for (row, record) in reader.records().enumerate() {
            let record = record.map_err(csv_error)?;
            let field = |i: usize| record.get(idx[i]).unwrap_or_default();
            let bad =
                |reason: String| PostedLinesError::BadRow { path: name.to_string(), line: row as u64 + 2, reason };
            let date: NaiveDate = field(0).parse().map_err(|_| bad(format!("bad game_date {:?}", field(0))))?;
            let player = player_lookup(field(1));
            if player.is_empty() {
                return Err(bad("empty player".into()));
            }
            let stat = Stat::ALL
                .into_iter()
                .find(|s| s.as_str() == field(2))
                .ok_or_else(|| bad(format!("unknown stat {:?}", field(2))))?;
            let line: f64 = field(3)
                .parse()
                .ok()
                .filter(|l: &f64| l.is_finite() && *l >= 0.0)
                .ok_or_else(|| bad(format!("bad line {:?}", field(3))))?;
            let odds = |i: usize| -> Result<i32, PostedLinesError> {
                let text = field(i).trim_start_matches('+');
                text.parse()
                    .ok()
                    .filter(|o| implied_probability(*o).is_some())
                    .ok_or_else(|| bad(format!("bad American odds {:?}", field(i))))
            };
            let prop = PropLine { stat, line, over_odds: odds(4)?, under_odds: odds(5)? };
            let lines = posted.lines.entry((date, player)).or_default();
            lines.retain(|l| l.stat != stat);
            lines.push(prop);
            lines.sort_by_key(|l| Stat::ALL.iter().position(|s| *s == l.stat));
        }
        Ok(posted)
    }

    /// The posted lines of a player on a date (empty when none were posted).
    pub fn for_player(&self, date: NaiveDate, player_lookup: &str) -> Vec<PropLine> {
        self.lines.get(&(date, player_lookup.to_string())).cloned().unwrap_or_default()
    }

    /// How many props the file posts.
    pub fn len(&self) -> usize {
        self.lines.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_or_lookups_and_american_odds() {
        let text = "game_date,player,stat,line,over_odds,under_odds\n\
            2025-06-22,Shai Gilgeous-Alexander,points,31.5,-115,-105\n\
            2025-06-22,shaigilgeousalexander,threes,1.5,+120,-150\n\
            2025-06-22,shaigilgeousalexander,points,30.5,-110,-110\n";
        let posted = PostedLines::parse("t.csv", text.as_bytes()).unwrap();
        let date = "2025-06-22".parse().unwrap();
        let lines = posted.for_player(date, "shaigilgeousalexander");
        assert_eq!(lines.len(), 2, "the later points row replaced the first");
        assert_eq!((lines[0].stat, lines[0].line, lines[0].over_odds), (Stat::Points, 30.5, -110));
        assert_eq!((lines[1].stat, lines[1].over_odds, lines[1].under_odds), (Stat::Threes, 120, -150));
        assert!(posted.for_player(date, "someoneelse").is_empty());
        assert_eq!(posted.len(), 2);
    }

    #[test]
    fn names_the_bad_row() {
        let text = "game_date,player,stat,line,over_odds,under_odds\n2025-06-22,A,steals,1.5,-110,-110\n";
        let error = PostedLines::parse("t.csv", text.as_bytes()).unwrap_err().to_string();
        assert!(error.contains("t.csv:2") && error.contains("steals"), "{error}");
        let odds = "game_date,player,stat,line,over_odds,under_odds\n2025-06-22,A,points,1.5,50,-110\n";
        assert!(PostedLines::parse("t.csv", odds.as_bytes()).is_err(), "+50 is not American odds");
        let missing = "game_date,player,stat,line\n";
        assert!(matches!(PostedLines::parse("t.csv", missing.as_bytes()), Err(PostedLinesError::MissingColumn { .. })));
    }
}
