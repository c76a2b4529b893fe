//! Loading the real NBA playoff game logs and turning them into slates with synthetic prop lines.
//!
//! Everything here is pure: files in, plain values out (no Firestore, no async).
//!
//! # Sources
//! The data lives in `shared/data/nba/` (see its README for provenance and licences; the stats
//! originate from NBA.com). [`load_logs`] reads two formats, detected from the header:
//!
//! 1. `playoff_player_games_2011_2024.csv` (derived from NocturneBear/NBA-Data-2010-2024):
//!    `season,season_type,game_date,game_id,player_id,player,team,opponent,home,minutes,pts,reb,ast,fg3m,...`
//! 2. `playoffs_2021_2025/P*.csv` (from spon7ge/NBA-Prop-Predictor, originally stats.nba.com): a
//!    leading unnamed index column and dozens of box-score columns, of which `PLAYER_NAME`,
//!    `PLAYER_ID`, `TEAM_ABBREVIATION`, `OPP_ABBREVIATION`, `HOME_GAME`, `GAME_ID`, `GAME_DATE`, `MIN`,
//!    `PTS`, `AST`, `REB` and `FG3M` are used. It has no season column: a playoff game in calendar
//!    year `Y` belongs to season `"(Y-1)-YY"` (2023-05-02 -> "2022-23").
//!
//! Columns are always looked up by header name, never by position. Game ids are normalized to
//! NBA.com's 10-digit form (source 1 drops the leading zeros: `41100307` -> `0041100307`).
//!
//! # Malformed rows
//! A row with an unparsable or negative number, a non-finite number, a bad date (not
//! `YYYY-MM-DD`), an empty player name, team or opponent, a home flag other than 0/1, or the wrong
//! number of fields is a [`BadRow`] (file name and 1-based line number, the header being line 1).
//! [`load_logs`] either fails on them ([`DataError::BadRows`]) or skips and reports them.
//!
//! # Player identity and de-duplication
//! * A few players changed the spelling of their name between sources ("Jimmy Butler" vs
//!   "Jimmy Butler III", "Reggie Bullock" vs "Reggie Bullock Jr."). The NBA.com player id is
//!   stable, so before de-duplicating, every row of a player id takes the name (and so the
//!   `player_lookup`) of that player's most recent row; that keeps one history per player.
//! * Seasons 2020-21 to 2023-24 appear in both sources. Rows are de-duplicated by
//!   `(player_lookup, game_date)`: the first row wins, sources being read in the order source 1,
//!   then `P21.csv`, `P22.csv`, ... So when both sources hold a game, **source 1's row is kept**.
//!   Every dropped row is counted in [`LoadedLogs::duplicates_dropped`].
//!
//! # Synthetic lines
//! No sportsbook lines ship with the data (their redistribution terms are unclear), so the lines
//! on a slate are **synthetic**, set by a fair line-setter from the logs alone (see [`lines`]): the
//! half point nearest the median of the player's last 20 games played before the date (at least 5),
//! priced from the smoothed share of those games above it with a standard vig. Only games before the
//! date are used, never the game on the date itself or later ones (no look-ahead). Real lines can
//! be supplied to the backtest instead ([`crate::nba::backtest::PostedLines`]).
//!
//! [`Stat`]: crate::nba::types::Stat

mod csv_source;
pub mod lines;
mod load;
mod slate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_real;

use std::path::PathBuf;

pub use csv_source::parse_source;
pub use lines::{
    MARKET_GAMES, MIN_MARKET_GAMES, STANDARD_ODDS, STANDARD_OVERROUND, american_odds, fair_p_over, market_line,
    market_lines, market_prop, median,
};
pub use load::{SOURCE_2011_2024, SOURCE_2021_2025_DIR, load_logs};
pub use slate::{build_slate, game_dates, roster_slate};

use crate::nba::types::GameLog;

/// A malformed row: which file, which line (1-based, counting the header as line 1), and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct BadRow {
    pub file: String,
    pub line: u64,
    pub reason: String,
}

/// Why the logs could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: CSV error: {source}")]
    Csv {
        file: String,
        #[source]
        source: csv::Error,
    },
    #[error("{file}: missing required column {column:?}")]
    MissingColumn { file: String, column: String },
    #[error("{count} malformed row(s), the first at {first}")]
    BadRows { count: usize, first: BadRow },
    #[error("no data: {0}")]
    NoData(String),
}

/// What [`load_logs`] read.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedLogs {
    /// De-duplicated logs, sorted by `(game_date, player_lookup)`.
    pub logs: Vec<GameLog>,
    /// Malformed rows that were skipped (empty unless `skip_bad_rows` was true).
    pub bad_rows: Vec<BadRow>,
    /// Rows dropped because an earlier source already had the same `(player_lookup, game_date)`.
    pub duplicates_dropped: usize,
    /// The files read, relative to the data directory, in reading order.
    pub files: Vec<String>,
}
