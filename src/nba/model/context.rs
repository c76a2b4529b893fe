//! Game context: league per-minute rates (the shrinkage prior), what each opponent allows, rest and
//! venue. Everything here is computed from games strictly before a date.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::calibration::Calibration;

use crate::nba::types::{GameLog, Stat};

/// Summed minutes and stats of a set of player-games.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatTotals {
    pub minutes: f64,
    pub points: f64,
    pub rebounds: f64,
    pub assists: f64,
    pub threes: f64,
}

impl StatTotals {
    fn add(&mut self, log: &GameLog) {
        self.minutes += log.minutes;
        self.points += log.points;
        self.rebounds += log.rebounds;
        self.assists += log.assists;
        self.threes += log.threes;
    }

    fn total(&self, stat: Stat) -> f64 {
        match stat {
            Stat::Points => self.points,
            Stat::Rebounds => self.rebounds,
            Stat::Assists => self.assists,
            Stat::Threes => self.threes,
        }
    }

    /// Stat per minute played, None without minutes.
    pub fn rate(&self, stat: Stat) -> Option<f64> {
        (self.minutes > 0.0).then(|| self.total(stat) / self.minutes)
    }
}

/// What every player facing `team` produced against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpponentAllowed {
    pub team: String,
    /// Distinct dates the team was faced; a team plays at most once a day.
    pub games: u32,
    pub allowed: StatTotals,
}

/// League-wide per-minute rates and per-opponent allowed totals from games strictly before `before`.
///
/// Opponents are a sorted list rather than a map so the context serializes into stores whose map
/// keys are restricted (Firestore field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeagueContext {
    before: NaiveDate,
    league: StatTotals,
    opponents: Vec<OpponentAllowed>,
    /// The walk-forward P(over) calibration of the date; absent: raw probabilities.
    #[serde(default)]
    calibration: Option<Calibration>,
}

impl LeagueContext {
    /// League per-minute rates per Stat (the prior) and per-opponent allowed-per-minute factors, from
    /// `logs` whose game_date < `before`. Games on or after `before` are ignored, as are games
    /// without minutes (DNPs say nothing about rates).
    pub fn build(logs: &[GameLog], before: NaiveDate) -> LeagueContext {
        let mut league = StatTotals::default();
        let mut by_team: BTreeMap<&str, (BTreeSet<NaiveDate>, StatTotals)> = BTreeMap::new();
        for log in logs.iter().filter(|l| l.game_date < before && l.minutes > 0.0) {
            league.add(log);
            let (dates, allowed) = by_team.entry(log.opponent.as_str()).or_default();
            dates.insert(log.game_date);
            allowed.add(log);
        }
        let opponents = by_team
            .into_iter()
            .map(|(team, (dates, allowed))| OpponentAllowed {
                team: team.to_string(),
                games: u32::try_from(dates.len()).unwrap_or(u32::MAX),
                allowed,
            })
            .collect();
        LeagueContext { before, league, opponents, calibration: None }
    }

    /// The context with the date's calibration (fitted from props settled before the date).
    pub fn with_calibration(mut self, calibration: Calibration) -> LeagueContext {
        self.calibration = Some(calibration);
        self
    }

    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    /// The date the context was built for; it holds only games before it.
    pub fn before(&self) -> NaiveDate {
        self.before
    }

    /// League stat per minute, None when no earlier minutes exist.
    pub fn league_rate(&self, stat: Stat) -> Option<f64> {
        self.league.rate(stat)
    }

    pub fn opponent(&self, team: &str) -> Option<&OpponentAllowed> {
        self.opponents.binary_search_by(|o| o.team.as_str().cmp(team)).ok().map(|i| &self.opponents[i])
    }

    /// (stat per minute allowed by `team`) / (league stat per minute), clamped to `clamp`. 1.0 when
    /// the team has fewer than `min_games` games or either rate is missing: a few games of opponent
    /// data are mostly noise about who happened to play them.
    pub fn opponent_factor(&self, stat: Stat, team: &str, clamp: (f64, f64), min_games: usize) -> f64 {
        let Some(opponent) = self.opponent(team) else { return 1.0 };
        if (opponent.games as usize) < min_games {
            return 1.0;
        }
        match (opponent.allowed.rate(stat), self.league_rate(stat)) {
            (Some(allowed), Some(league)) if league > 0.0 => (allowed / league).clamp(clamp.0, clamp.1),
            _ => 1.0,
        }
    }
}

/// A back-to-back: the player's previous game was the day before.
pub fn is_back_to_back(previous_game: NaiveDate, game_date: NaiveDate) -> bool {
    game_date.signed_duration_since(previous_game).num_days() == 1
}

/// `home_factor` at home, its reciprocal away, so home and away differ by home_factor² and a
/// neutral average stays at 1.
pub fn venue_factor(home: bool, home_factor: f64) -> f64 {
    if home { home_factor } else { 1.0 / home_factor }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(day: u32, opponent: &str, minutes: f64, points: f64) -> GameLog {
        GameLog {
            player_lookup: format!("p{day}{opponent}"),
            player_name: "P".into(),
            player_id: "1".into(),
            team: "AAA".into(),
            opponent: opponent.into(),
            home: true,
            game_date: date(day),
            game_id: format!("g{day}{opponent}"),
            season: "2023-24".into(),
            minutes,
            points,
            rebounds: 1.0,
            assists: 1.0,
            threes: 1.0,
        }
    }

    fn date(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, day).expect("valid test date")
    }

    #[test]
    fn league_rates_and_opponent_factors() {
        let mut logs = Vec::new();
        for day in 1..=6 {
            logs.push(log(day, "SOFT", 10.0, 6.0)); // allows 0.6 per minute
            logs.push(log(day, "HARD", 10.0, 2.0)); // allows 0.2 per minute
        }
        logs.push(log(7, "RARE", 10.0, 10.0));
        let ctx = LeagueContext::build(&logs, date(20));
        let league = (6.0 * 6.0 + 6.0 * 2.0 + 10.0) / 130.0;
        assert!((ctx.league_rate(Stat::Points).expect("rate") - league).abs() < 1e-12);
        let clamp = (0.85, 1.15);
        assert_eq!(ctx.opponent_factor(Stat::Points, "SOFT", clamp, 5), 1.15);
        assert_eq!(ctx.opponent_factor(Stat::Points, "HARD", clamp, 5), 0.85);
        let unclamped = ctx.opponent_factor(Stat::Points, "SOFT", (0.0, 10.0), 5);
        assert!((unclamped - 0.6 / league).abs() < 1e-12);
        assert_eq!(ctx.opponent_factor(Stat::Points, "RARE", clamp, 5), 1.0);
        assert_eq!(ctx.opponent_factor(Stat::Points, "NONE", clamp, 5), 1.0);
        assert_eq!(ctx.opponent("SOFT").expect("known").games, 6);
    }

    #[test]
    fn build_ignores_games_on_and_after_the_date() {
        let past: Vec<GameLog> = (1..=9).map(|d| log(d, if d % 2 == 0 { "X" } else { "Y" }, 20.0, d as f64)).collect();
        let mut all = past.clone();
        all.push(log(10, "X", 30.0, 90.0)); // on the date
        all.push(log(12, "Y", 30.0, 90.0)); // after
        all.insert(0, log(11, "Z", 30.0, 90.0));
        let with_future = LeagueContext::build(&all, date(10));
        assert_eq!(with_future, LeagueContext::build(&past, date(10)));
        assert!(with_future.opponent("Z").is_none());
        assert_ne!(with_future, LeagueContext::build(&all, date(11)));
    }

    #[test]
    fn empty_context_has_no_rates() {
        let ctx = LeagueContext::build(&[], date(1));
        assert_eq!(ctx.league_rate(Stat::Assists), None);
        assert_eq!(ctx.opponent_factor(Stat::Assists, "X", (0.85, 1.15), 0), 1.0);
    }

    #[test]
    fn rest_and_venue() {
        assert!(is_back_to_back(date(4), date(5)));
        assert!(!is_back_to_back(date(3), date(5)));
        assert!(!is_back_to_back(date(5), date(5)));
        assert_eq!(venue_factor(true, 1.01), 1.01);
        assert!((venue_factor(true, 1.01) / venue_factor(false, 1.01) - 1.01 * 1.01).abs() < 1e-15);
    }

    #[test]
    fn serializes_round_trip() {
        let ctx = LeagueContext::build(&[log(1, "X", 10.0, 5.0)], date(2));
        let json = serde_json::to_string(&ctx).expect("serializable");
        assert_eq!(serde_json::from_str::<LeagueContext>(&json).expect("deserializable"), ctx);
    }
}
