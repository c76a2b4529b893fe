//! Reading every known file of a data directory, unifying player names and de-duplicating.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use chrono::NaiveDate;

use super::csv_source::parse_counting;
use super::{DataError, LoadedLogs};
use crate::nba::types::{GameLog, player_lookup};

/// Source 1, relative to the data directory.
pub const SOURCE_2011_2024: &str = "playoff_player_games_2011_2024.csv";
/// Directory of source 2's per-season files (`P21.csv` .. `P25.csv`), relative to the data directory.
pub const SOURCE_2021_2025_DIR: &str = "playoffs_2021_2025";

/// Reads every known file under `dir`: [`SOURCE_2011_2024`] and `playoffs_2021_2025/P*.csv` (in name
/// order), each when present; at least one must exist, else [`DataError::NoData`].
///
/// A malformed row (unparsable number, bad date, empty player, negative minutes, ...) is collected
/// in `bad_rows`; when `skip_bad_rows` is false and there is at least one, this returns
/// [`DataError::BadRows`] with the count and the first one (after reading every file).
/// Calls `progress(rows_read_so_far)` every 1000 rows, and once more with the total at the end.
///
/// Rows of one NBA.com player id all take the name of that player's most recent row; rows are then
/// de-duplicated by `(player_lookup, game_date)`, the first source read winning (source 1 over
/// source 2). The result is sorted by `(game_date, player_lookup)`.
pub fn load_logs(dir: &Path, skip_bad_rows: bool, progress: &mut dyn FnMut(u64)) -> Result<LoadedLogs, DataError> {
    let files = known_files(dir)?;
    if files.is_empty() {
        return Err(DataError::NoData(format!(
            "neither {SOURCE_2011_2024} nor {SOURCE_2021_2025_DIR}/P*.csv under {}",
            dir.display()
        )));
    }
    let mut rows = 0;
    let mut logs = Vec::new();
    let mut bad_rows = Vec::new();
    for name in &files {
        let path = dir.join(name);
        let file = File::open(&path).map_err(|source| DataError::Io { path: path.clone(), source })?;
        let (parsed, bad) = parse_counting(name, BufReader::new(file), &mut rows, progress)?;
        logs.extend(parsed);
        bad_rows.extend(bad);
    }
    progress(rows);
    if !skip_bad_rows && let Some(first) = bad_rows.first() {
        return Err(DataError::BadRows { count: bad_rows.len(), first: first.clone() });
    }
    unify_names(&mut logs);
    let (mut logs, duplicates_dropped) = dedupe(logs);
    if logs.is_empty() {
        return Err(DataError::NoData(format!("no valid rows in {} file(s) under {}", files.len(), dir.display())));
    }
    logs.sort_by(|a, b| (a.game_date, &a.player_lookup).cmp(&(b.game_date, &b.player_lookup)));
    Ok(LoadedLogs { logs, bad_rows, duplicates_dropped, files })
}

/// The known files present under `dir`, relative to it, in reading (= priority) order.
fn known_files(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut files = Vec::new();
    if dir.join(SOURCE_2011_2024).is_file() {
        files.push(SOURCE_2011_2024.to_string());
    }
    let season_dir = dir.join(SOURCE_2021_2025_DIR);
    let entries = match std::fs::read_dir(&season_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(source) => return Err(DataError::Io { path: season_dir, source }),
    };
    let mut seasons = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DataError::Io { path: season_dir.clone(), source })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('P') && name.ends_with(".csv") && entry.path().is_file() {
            seasons.push(name);
        }
    }
    seasons.sort();
    files.extend(seasons.into_iter().map(|name| format!("{SOURCE_2021_2025_DIR}/{name}")));
    Ok(files)
}

/// Gives every row of a player id the name of that id's most recent row (ties: the first row read).
/// Returns how many rows were renamed. Rows without a player id keep their name.
pub(super) fn unify_names(logs: &mut [GameLog]) -> usize {
    let mut latest: HashMap<&str, (NaiveDate, &str)> = HashMap::new();
    for log in logs.iter().filter(|log| !log.player_id.is_empty()) {
        let entry = latest.entry(&log.player_id).or_insert((log.game_date, &log.player_name));
        if log.game_date > entry.0 {
            *entry = (log.game_date, &log.player_name);
        }
    }
    let canonical: HashMap<String, String> =
        latest.into_iter().map(|(id, (_, name))| (id.to_string(), name.to_string())).collect();
    let mut renamed = 0;
    for log in logs.iter_mut() {
        if let Some(name) = canonical.get(&log.player_id)
            && *name != log.player_name
        {
            log.player_lookup = player_lookup(name);
            log.player_name = name.clone();
            renamed += 1;
        }
    }
    renamed
}

/// Keeps the first row of each `(player_lookup, game_date)`; returns the rows kept and the number dropped.
pub(super) fn dedupe(logs: Vec<GameLog>) -> (Vec<GameLog>, usize) {
    let mut seen = HashSet::new();
    let before = logs.len();
    let kept: Vec<GameLog> =
        logs.into_iter().filter(|log| seen.insert((log.player_lookup.clone(), log.game_date))).collect();
    let dropped = before - kept.len();
    (kept, dropped)
}
