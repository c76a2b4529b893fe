//! Parsing one CSV file of either source format into [`GameLog`]s.

use std::io::Read;

use chrono::{Datelike, NaiveDate};
use csv::{ReaderBuilder, StringRecord};

use super::{BadRow, DataError};
use crate::nba::types::{GameLog, player_lookup};

/// Which of the two known layouts a file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `playoff_player_games_2011_2024.csv`: lowercase headers, a season column, decimal minutes.
    Games2011,
    /// `playoffs_2021_2025/P*.csv`: stats.nba.com uppercase headers, no season column.
    NbaStats2021,
}

/// Header names of the fields we use, in the order of [`Columns`]' fields.
const GAMES_2011: [&str; 12] =
    ["player", "player_id", "team", "opponent", "home", "game_id", "game_date", "minutes", "pts", "reb", "ast", "fg3m"];
const NBA_STATS_2021: [&str; 12] = [
    "PLAYER_NAME",
    "PLAYER_ID",
    "TEAM_ABBREVIATION",
    "OPP_ABBREVIATION",
    "HOME_GAME",
    "GAME_ID",
    "GAME_DATE",
    "MIN",
    "PTS",
    "REB",
    "AST",
    "FG3M",
];

/// Column indexes of the fields we use.
struct Columns {
    /// Indexes in the order of the `GAMES_2011` / `NBA_STATS_2021` names.
    idx: [usize; 12],
    /// Source 1's optional season column.
    season: Option<usize>,
}

const PLAYER: usize = 0;
const PLAYER_ID: usize = 1;
const TEAM: usize = 2;
const OPPONENT: usize = 3;
const HOME: usize = 4;
const GAME_ID: usize = 5;
const GAME_DATE: usize = 6;
const MINUTES: usize = 7;
const PTS: usize = 8;
const REB: usize = 9;
const AST: usize = 10;
const FG3M: usize = 11;

impl Columns {
    fn find(file: &str, headers: &StringRecord) -> Result<(Format, Columns), DataError> {
        let names: Vec<&str> = headers.iter().map(|h| h.trim().trim_start_matches('\u{feff}')).collect();
        let position = |name: &str| names.iter().position(|h| *h == name);
        let format = if position("PLAYER_NAME").is_some() || position("GAME_DATE").is_some() {
            Format::NbaStats2021
        } else {
            Format::Games2011
        };
        let wanted = match format {
            Format::Games2011 => &GAMES_2011,
            Format::NbaStats2021 => &NBA_STATS_2021,
        };
        let mut idx = [0; 12];
        for (slot, name) in idx.iter_mut().zip(wanted) {
            *slot = position(name)
                .ok_or_else(|| DataError::MissingColumn { file: file.to_string(), column: name.to_string() })?;
        }
        let season = match format {
            Format::Games2011 => position("season"),
            Format::NbaStats2021 => None,
        };
        Ok((format, Columns { idx, season }))
    }
}

/// Parses one file of either format (detected from its header) from `reader`. `name` is used in
/// errors and [`BadRow`]s. Logs come back in file order; malformed rows are returned, not fatal.
pub fn parse_source(name: &str, reader: impl Read) -> Result<(Vec<GameLog>, Vec<BadRow>), DataError> {
    let mut rows = 0;
    parse_counting(name, reader, &mut rows, &mut |_| {})
}

/// [`parse_source`], adding every row read (good or bad) to `rows` and calling `progress(*rows)`
/// each time it reaches a multiple of 1000.
pub(super) fn parse_counting(
    name: &str,
    reader: impl Read,
    rows: &mut u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(Vec<GameLog>, Vec<BadRow>), DataError> {
    let csv_err = |source| DataError::Csv { file: name.to_string(), source };
    let mut rdr = ReaderBuilder::new().flexible(true).from_reader(reader);
    let headers = rdr.headers().map_err(csv_err)?.clone();
    let (format, cols) = Columns::find(name, &headers)?;
    let (mut logs, mut bad) = (Vec::new(), Vec::new());
    let mut record = StringRecord::new();
    loop {
        let outcome = match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                if record.len() != headers.len() {
                    Err((line, format!("expected {} fields, found {}", headers.len(), record.len())))
                } else {
                    parse_row(&record, &cols, format).map(|log| logs.push(log)).map_err(|reason| (line, reason))
                }
            }
            Err(e) if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) => {
                Err((e.position().map_or(0, |p| p.line()), "invalid UTF-8".to_string()))
            }
            Err(e) => return Err(csv_err(e)),
        };
        if let Err((line, reason)) = outcome {
            bad.push(BadRow { file: name.to_string(), line, reason });
        }
        *rows += 1;
        if rows.is_multiple_of(1000) {
            progress(*rows);
        }
    }
    Ok((logs, bad))
}

fn parse_row(record: &StringRecord, cols: &Columns, format: Format) -> Result<GameLog, String> {
    let get = |field: usize| record.get(cols.idx[field]).unwrap_or("").trim();
    let names = match format {
        Format::Games2011 => &GAMES_2011,
        Format::NbaStats2021 => &NBA_STATS_2021,
    };
    let required = |field: usize| match get(field) {
        "" => Err(format!("{} is empty", names[field])),
        value => Ok(value.to_string()),
    };
    let number = |field: usize| parse_count(names[field], get(field));

    let player_name = required(PLAYER)?;
    let lookup = player_lookup(&player_name);
    if lookup.is_empty() {
        return Err(format!("{} {player_name:?} has no letters or digits", names[PLAYER]));
    }
    let game_date = parse_date(get(GAME_DATE)).ok_or_else(|| format!("bad date {:?}", get(GAME_DATE)))?;
    let season = match cols.season.and_then(|i| record.get(i)).map(str::trim) {
        Some(season) if !season.is_empty() => season.to_string(),
        _ => season_of(game_date),
    };
    Ok(GameLog {
        player_lookup: lookup,
        player_name,
        player_id: get(PLAYER_ID).to_string(),
        team: required(TEAM)?,
        opponent: required(OPPONENT)?,
        home: parse_home(get(HOME)).ok_or_else(|| format!("{}: {:?} is not 0 or 1", names[HOME], get(HOME)))?,
        game_date,
        game_id: normalize_game_id(get(GAME_ID)),
        season,
        minutes: parse_minutes(names[MINUTES], get(MINUTES))?,
        points: number(PTS)?,
        rebounds: number(REB)?,
        assists: number(AST)?,
        threes: number(FG3M)?,
    })
}

/// The season label of a playoff game: calendar year `Y` -> `"(Y-1)-YY"`.
pub(super) fn season_of(date: NaiveDate) -> String {
    let year = date.year();
    format!("{}-{:02}", year - 1, year.rem_euclid(100))
}

/// `YYYY-MM-DD`, optionally followed by a time (`2023-05-02T00:00:00`).
fn parse_date(value: &str) -> Option<NaiveDate> {
    let day = match value.split_once(['T', ' ']) {
        Some((day, _)) => day,
        None => value,
    };
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
}

fn parse_home(value: &str) -> Option<bool> {
    match value {
        "1" | "1.0" | "true" | "True" | "TRUE" => Some(true),
        "0" | "0.0" | "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// A finite, non-negative number.
fn parse_count(column: &str, value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        Ok(x) if x < 0.0 => Err(format!("{column}: {value:?} is negative")),
        _ => Err(format!("{column}: {value:?} is not a number")),
    }
}

/// Minutes as a decimal (`34`, `27.5`) or as `MM:SS`.
fn parse_minutes(column: &str, value: &str) -> Result<f64, String> {
    match value.split_once(':') {
        Some((m, s)) => match (m.parse::<u32>(), s.parse::<u32>()) {
            (Ok(m), Ok(s)) if s < 60 => Ok(f64::from(m) + f64::from(s) / 60.0),
            _ => Err(format!("{column}: {value:?} is not minutes")),
        },
        None => parse_count(column, value),
    }
}

/// NBA.com game ids are 10 digits with leading zeros (`0042200131`); source 1 drops the zeros.
fn normalize_game_id(value: &str) -> String {
    if !value.is_empty() && value.len() < 10 && value.bytes().all(|b| b.is_ascii_digit()) {
        format!("{value:0>10}")
    } else {
        value.to_string()
    }
}
