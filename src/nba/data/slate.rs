//! Who plays on a date, with synthetic lines built only from earlier games.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;

use super::lines::market_lines;
use crate::nba::types::{GameLog, SlateEntry};

/// Dates that have at least one game, ascending and unique.
pub fn game_dates(logs: &[GameLog]) -> Vec<NaiveDate> {
    logs.iter().map(|log| log.game_date).collect::<BTreeSet<_>>().into_iter().collect()
}

/// The slate of `date`: every player who played on `date` (team, opponent and home from that row)
/// AND has at least one game strictly before `date`; players without prior games get no line and
/// are not on the slate. Each entry has one fair synthetic line per stat ([`market_lines`]) from the
/// player's games before `date`, none under 5 games played. Sorted by `player_lookup`.
///
/// `logs` need not be sorted. Should a player have two rows on `date`, the first one is used.
pub fn build_slate(logs: &[GameLog], date: NaiveDate) -> Vec<SlateEntry> {
    let mut today: BTreeMap<&str, &GameLog> = BTreeMap::new();
    for log in logs.iter().filter(|log| log.game_date == date) {
        today.entry(&log.player_lookup).or_insert(log);
    }
    let mut history: HashMap<&str, Vec<&GameLog>> = HashMap::new();
    for log in logs.iter().filter(|log| log.game_date < date && today.contains_key(log.player_lookup.as_str())) {
        history.entry(&log.player_lookup).or_default().push(log);
    }
    today
        .into_iter()
        .filter_map(|(lookup, row)| {
            let past = history.get_mut(lookup)?;
            // Most recent first; the sort is stable, so same-date rows keep their input order.
            past.sort_by_key(|log| std::cmp::Reverse(log.game_date));
            Some(SlateEntry {
                player_lookup: row.player_lookup.clone(),
                player_name: row.player_name.clone(),
                team: row.team.clone(),
                opponent: row.opponent.clone(),
                home: row.home,
                game_date: date,
                lines: market_lines(past),
            })
        })
        .collect()
}

/// A fixture slate for `date`: the `max_players` most recently active players with at least
/// `min_prior_games` games before `date`, as if each played on `date` for the team and against the
/// opponent of their latest game. Real histories, a synthetic schedule: large batches (hundreds of
/// players) for chaos tests and benchmarks, which a real playoff date (at most ~80 players) cannot give.
pub fn roster_slate(logs: &[GameLog], date: NaiveDate, min_prior_games: usize, max_players: usize) -> Vec<SlateEntry> {
    let mut history: HashMap<&str, Vec<&GameLog>> = HashMap::new();
    for log in logs.iter().filter(|log| log.game_date < date) {
        history.entry(&log.player_lookup).or_default().push(log);
    }
    let mut players: Vec<(&str, Vec<&GameLog>)> =
        history.into_iter().filter(|(_, games)| games.len() >= min_prior_games).collect();
    for (_, games) in &mut players {
        games.sort_by_key(|log| std::cmp::Reverse(log.game_date));
    }
    // Most recently active first; ties by id, so the fixture is deterministic.
    players.sort_by(|(a, ga), (b, gb)| gb[0].game_date.cmp(&ga[0].game_date).then(a.cmp(b)));
    players.truncate(max_players);
    let mut entries: Vec<SlateEntry> = players
        .into_iter()
        .map(|(lookup, games)| {
            let latest = games[0];
            SlateEntry {
                player_lookup: lookup.to_string(),
                player_name: latest.player_name.clone(),
                team: latest.team.clone(),
                opponent: latest.opponent.clone(),
                home: latest.home,
                game_date: date,
                lines: market_lines(&games),
            }
        })
        .collect();
    entries.sort_by(|a, b| a.player_lookup.cmp(&b.player_lookup));
    entries
}
