use chrono::{Days, NaiveDate};

use super::*;
use crate::nba::types::{PropLine, Recommendation};

fn day(n: u64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 1).expect("valid test date") + Days::new(n)
}

/// The game date of every test entry; player games fall on even days before it.
const GAME_DAY: u64 = 100;

fn log(player: &str, date: NaiveDate, opponent: &str, minutes: f64, stats: [f64; 4]) -> GameLog {
    GameLog {
        player_lookup: player.into(),
        player_name: player.to_uppercase(),
        player_id: "1".into(),
        team: "AAA".into(),
        opponent: opponent.into(),
        home: true,
        game_date: date,
        game_id: format!("{player}-{date}"),
        season: "2023-24".into(),
        minutes,
        points: stats[0],
        rebounds: stats[1],
        assists: stats[2],
        threes: stats[3],
    }
}

/// League per minute: points 0.5, rebounds 0.2, assists 0.1, threes 0.05. "MID" allows exactly the
/// league rates, "SOFT" 1.5x the points and "HARD" half, which keeps the league at 0.5.
fn league() -> LeagueContext {
    let mut logs = Vec::new();
    for d in 0..GAME_DAY {
        logs.push(log("other", day(d), "MID", 20.0, [10.0, 4.0, 2.0, 1.0]));
    }
    for d in 0..10 {
        logs.push(log("soft", day(d), "SOFT", 20.0, [15.0, 4.0, 2.0, 1.0]));
        logs.push(log("hard", day(d), "HARD", 20.0, [5.0, 4.0, 2.0, 1.0]));
    }
    LeagueContext::build(&logs, day(GAME_DAY))
}

/// `n` games, the latest `gap` days before the game, every other day before that.
fn history(n: u64, gap: u64, minutes: f64, stats: impl Fn(u64) -> [f64; 4]) -> Vec<GameLog> {
    (0..n).map(|i| log("star", day(GAME_DAY - gap - 2 * i), "MID", minutes, stats(i))).collect()
}

fn entry(home: bool, opponent: &str, lines: Vec<PropLine>) -> SlateEntry {
    SlateEntry {
        player_lookup: "star".into(),
        player_name: "STAR".into(),
        team: "AAA".into(),
        opponent: opponent.into(),
        home,
        game_date: day(GAME_DAY),
        lines,
    }
}

fn line(stat: Stat, line: f64) -> PropLine {
    PropLine { stat, line, over_odds: -110, under_odds: -110 }
}

fn neutral() -> ModelConfig {
    ModelConfig { home_factor: 1.0, min_games: 3, ..ModelConfig::default() }
}

fn points_projection(history: &[GameLog], entry: &SlateEntry, config: &ModelConfig) -> f64 {
    let dist = *project(history, entry, &league(), config)
        .expect("enough history")
        .distribution(Stat::Points)
        .expect("fitted");
    dist.mean()
}

#[test]
fn ignores_games_on_and_after_the_date() {
    let past = history(12, 2, 30.0, |i| [20.0 + i as f64, 5.0 + (i % 3) as f64, 4.0, 2.0]);
    let mut polluted = past.clone();
    polluted.push(log("star", day(GAME_DAY), "MID", 48.0, [90.0, 30.0, 30.0, 15.0]));
    polluted.insert(3, log("star", day(GAME_DAY + 1), "MID", 48.0, [90.0, 30.0, 30.0, 15.0]));
    polluted.insert(0, log("star", day(GAME_DAY + 30), "MID", 48.0, [0.0, 0.0, 0.0, 0.0]));
    polluted.reverse();
    let e = entry(true, "SOFT", vec![line(Stat::Points, 22.5), line(Stat::Rebounds, 5.5), line(Stat::Threes, 1.5)]);
    let config = ModelConfig::default();
    let clean = predict(&past, &e, &league(), &config).expect("prediction");
    assert_eq!(predict(&polluted, &e, &league(), &config).expect("prediction"), clean);
    assert_eq!(clean.games_used, 12);
}

#[test]
fn insufficient_history_counts_only_usable_past_games() {
    let mut games = history(2, 2, 30.0, |_| [20.0, 5.0, 4.0, 2.0]);
    games.push(log("star", day(GAME_DAY - 10), "MID", 0.0, [0.0; 4])); // DNP
    games.push(log("star", day(GAME_DAY), "MID", 30.0, [20.0, 5.0, 4.0, 2.0])); // the game itself
    let e = entry(true, "MID", vec![line(Stat::Points, 20.5)]);
    let config = ModelConfig { min_games: 3, ..ModelConfig::default() };
    let expected = ModelError::InsufficientHistory { player: "star".into(), games: 2, required: 3 };
    assert_eq!(predict(&games, &e, &league(), &config), Err(expected));
    games.push(log("star", day(GAME_DAY - 20), "MID", 30.0, [20.0, 5.0, 4.0, 2.0]));
    assert!(predict(&games, &e, &league(), &config).is_ok());
}

#[test]
fn shrinkage_pulls_short_histories_toward_the_league() {
    // 1.0 points per minute against a league 0.5, always 30 minutes: raw 30, prior 15.
    let e = entry(true, "MID", vec![]);
    let short = points_projection(&history(3, 2, 30.0, |_| [30.0, 6.0, 3.0, 1.5]), &e, &neutral());
    let long = points_projection(&history(30, 2, 30.0, |_| [30.0, 6.0, 3.0, 1.5]), &e, &neutral());
    assert!(short > 15.0 && short < 30.0, "{short}");
    assert!(long > short && long < 30.0, "{long} vs {short}");
    let w: f64 = (0..3).map(|i| 0.5f64.powf(i as f64 / 8.0)).sum();
    let k = ModelConfig::default().prior_games;
    assert!((short - 30.0 * (w * 1.0 + k * 0.5) / (w + k)).abs() < 1e-9, "{short}");
}

#[test]
fn back_to_back_cuts_minutes_by_the_factor() {
    let e = entry(true, "MID", vec![line(Stat::Points, 15.5)]);
    let config = ModelConfig::default();
    let rested = predict(&history(8, 2, 32.0, |_| [16.0, 6.0, 3.0, 1.0]), &e, &league(), &config).expect("ok");
    let tired = predict(&history(8, 1, 32.0, |_| [16.0, 6.0, 3.0, 1.0]), &e, &league(), &config).expect("ok");
    assert!((rested.projected_minutes - 32.0).abs() < 1e-9);
    assert!((tired.projected_minutes - 32.0 * 0.96).abs() < 1e-9);
    let ratio = tired.props[0].projection / rested.props[0].projection;
    assert!((ratio - 0.96).abs() < 1e-9, "{ratio}");
}

#[test]
fn home_and_away_differ_by_the_venue_factor() {
    let games = history(10, 2, 30.0, |_| [18.0, 6.0, 3.0, 1.0]);
    let config = ModelConfig::default();
    let home = points_projection(&games, &entry(true, "MID", vec![]), &config);
    let away = points_projection(&games, &entry(false, "MID", vec![]), &config);
    let neutral_venue = points_projection(&games, &entry(true, "MID", vec![]), &neutral());
    assert!((home / neutral_venue - 1.01).abs() < 1e-12);
    assert!((neutral_venue / away - 1.01).abs() < 1e-12);
}

#[test]
fn opponent_factor_scales_and_is_clamped() {
    let games = history(10, 2, 30.0, |_| [18.0, 6.0, 3.0, 1.0]);
    let mid = points_projection(&games, &entry(true, "MID", vec![]), &neutral());
    let soft = points_projection(&games, &entry(true, "SOFT", vec![]), &neutral());
    let hard = points_projection(&games, &entry(true, "HARD", vec![]), &neutral());
    // SOFT allows 0.75 per minute and HARD 0.25 against a league 0.5: factors 1.5 and 0.5, clamped.
    assert!((soft / mid - 1.15).abs() < 1e-12, "{}", soft / mid);
    assert!((hard / mid - 0.85).abs() < 1e-12, "{}", hard / mid);
    let unknown = points_projection(&games, &entry(true, "NEW", vec![]), &neutral());
    assert!((unknown - mid).abs() < 1e-9);
}

#[test]
fn dispersion_picks_the_count_distribution() {
    let lines = vec![line(Stat::Rebounds, 7.5), line(Stat::Assists, 3.5), line(Stat::Points, 20.5)];
    let e = entry(true, "MID", lines);
    // Rebounds swing 0/16 (variance >> mean); assists barely move (variance < mean).
    let games =
        history(12, 2, 30.0, |i| [20.0, if i % 2 == 0 { 0.0 } else { 16.0 }, [3.0, 4.0, 3.0][i as usize % 3], 1.0]);
    let p = predict(&games, &e, &league(), &ModelConfig::default()).expect("ok");
    let names: Vec<&str> = p.props.iter().map(|prop| prop.distribution.as_str()).collect();
    assert_eq!(names, ["negative_binomial", "poisson", "normal"]);
}

#[test]
fn recommendations_follow_the_edge() {
    // Points swing 0/60 so sd is large and a line at the projection is close to a coin flip.
    let games = history(20, 2, 30.0, |i| [if i % 2 == 0 { 0.0 } else { 60.0 }, 6.0, 3.0, 1.0]);
    let mean = points_projection(&games, &entry(true, "MID", vec![]), &ModelConfig::default());
    let at_mean = mean.floor() + 0.5;
    let lines = vec![line(Stat::Points, 0.5), line(Stat::Points, 99.5), line(Stat::Points, at_mean)];
    let p = predict(&games, &entry(true, "MID", lines), &league(), &ModelConfig::default()).expect("ok");
    let recs: Vec<Recommendation> = p.props.iter().map(|prop| prop.recommendation).collect();
    assert_eq!(recs, [Recommendation::Over, Recommendation::Under, Recommendation::Pass]);
    for prop in &p.props {
        assert_eq!(prop.market_p_over, 0.5);
        assert!((prop.edge - (prop.p_over - 0.5)).abs() < 1e-15);
        assert!((0.0..=1.0).contains(&prop.confidence));
        assert!(prop.p_over >= 1e-6 && prop.p_over <= 1.0 - 1e-6);
    }
    assert!(p.props[0].confidence > p.props[2].confidence);
    // The same near coin flip against a market leaning hard to the over is a clear UNDER.
    let leaning = PropLine { stat: Stat::Points, line: at_mean, over_odds: -400, under_odds: 300 };
    let p = predict(&games, &entry(true, "MID", vec![leaning]), &league(), &ModelConfig::default()).expect("ok");
    assert_eq!(p.props[0].recommendation, Recommendation::Under);
}

#[test]
fn output_mirrors_the_entry_and_line_order() {
    let games = history(10, 2, 30.0, |_| [18.0, 6.0, 3.0, 1.0]);
    let lines =
        vec![line(Stat::Threes, 0.5), line(Stat::Points, 17.5), line(Stat::Threes, 1.5), line(Stat::Assists, 2.5)];
    let e = entry(false, "MID", lines.clone());
    let p = predict(&games, &e, &league(), &ModelConfig::default()).expect("ok");
    assert_eq!((p.player_lookup.as_str(), p.player_name.as_str(), p.team.as_str()), ("star", "STAR", "AAA"));
    assert_eq!((p.opponent.as_str(), p.game_date), ("MID", day(GAME_DAY)));
    let got: Vec<(Stat, f64)> = p.props.iter().map(|prop| (prop.stat, prop.line)).collect();
    let want: Vec<(Stat, f64)> = lines.iter().map(|l| (l.stat, l.line)).collect();
    assert_eq!(got, want);
    // Same stat, higher line: lower over probability.
    assert!(p.props[0].p_over > p.props[2].p_over);
}

#[test]
fn rejects_bad_inputs() {
    let games = history(10, 2, 30.0, |_| [18.0, 6.0, 3.0, 1.0]);
    let bad_odds = PropLine { stat: Stat::Assists, line: 2.5, over_odds: 50, under_odds: -110 };
    let err = predict(&games, &entry(true, "MID", vec![bad_odds]), &league(), &ModelConfig::default());
    assert!(matches!(err, Err(ModelError::InvalidOdds { over_odds: 50, .. })), "{err:?}");
    let err =
        predict(&games, &entry(true, "MID", vec![line(Stat::Points, f64::NAN)]), &league(), &ModelConfig::default());
    assert!(matches!(err, Err(ModelError::InvalidLine { .. })), "{err:?}");
    let leaky = LeagueContext::build(&[], day(GAME_DAY + 1));
    let err = predict(&games, &entry(true, "MID", vec![]), &leaky, &ModelConfig::default());
    assert!(matches!(err, Err(ModelError::LookAhead { .. })), "{err:?}");
    let config = ModelConfig { half_life_games: 0.0, ..ModelConfig::default() };
    let err = predict(&games, &entry(true, "MID", vec![]), &league(), &config);
    assert!(matches!(err, Err(ModelError::InvalidConfig(_))), "{err:?}");
}

#[test]
fn the_league_context_names_the_version_its_predictions_carry() {
    let games = history(10, 2, 30.0, |_| [18.0, 6.0, 3.0, 1.0]);
    let e = entry(true, "MID", vec![line(Stat::Points, 17.5)]);
    let raw = league();
    assert_eq!(league_model_version(&raw), MODEL_VERSION, "no map: the code's version");
    let calibrated = league().with_calibration(Calibration::identity(day(GAME_DAY)));
    let p = predict(&games, &e, &calibrated, &ModelConfig::default()).expect("ok");
    assert_eq!(p.model_version, league_model_version(&calibrated));
    assert_ne!(league_model_version(&calibrated), league_model_version(&raw), "the map changes the version");
}
