//! The walk end to end: no look-ahead, summing, rendering, and a run over real playoff dates.

use std::path::PathBuf;

use chrono::NaiveDate;

use super::*;
use crate::nba::data::load_logs;
use crate::nba::types::{Recommendation, Stat};

fn date(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 4, day).expect("valid test date")
}

fn log(player: &str, team: &str, opponent: &str, day: u32, minutes: f64, points: f64) -> GameLog {
    GameLog {
        player_lookup: player.into(),
        player_name: player.to_uppercase(),
        player_id: player.into(),
        team: team.into(),
        opponent: opponent.into(),
        home: day.is_multiple_of(2),
        game_date: date(day),
        game_id: format!("{team}{opponent}{day}"),
        season: "2023-24".into(),
        minutes,
        points,
        rebounds: (points / 3.0).round(),
        assists: f64::from((day * 3 + points as u32) % 7),
        threes: f64::from((day + points as u32) % 4),
    }
}

/// Days 1..=8: AAA-BBB and CCC-DDD every day; rookie r1 debuts on day 6; d1 sits out day 8.
fn season() -> Vec<GameLog> {
    let mut logs = Vec::new();
    for day in 1..=8u32 {
        let swing = f64::from((day * 5) % 9);
        logs.push(log("a1", "AAA", "BBB", day, 34.0, 20.0 + swing));
        logs.push(log("a2", "AAA", "BBB", day, 22.0, 8.0 + swing / 2.0));
        logs.push(log("b1", "BBB", "AAA", day, 36.0, 26.0 - swing));
        logs.push(log("b2", "BBB", "AAA", day, 18.0, 5.0 + swing));
        logs.push(log("c1", "CCC", "DDD", day, 30.0, 15.0 + swing));
        logs.push(log("d1", "DDD", "CCC", day, if day == 8 { 0.0 } else { 28.0 }, 12.0 + swing));
        if day >= 6 {
            logs.push(log("r1", "AAA", "BBB", day, 12.0, 4.0 + swing));
        }
    }
    logs
}

/// Games after day 8 that would move every prior if they leaked: huge stat lines, a new opponent,
/// a new player, and an extra game for every existing player.
fn future() -> Vec<GameLog> {
    let mut logs = Vec::new();
    for day in 9..=12u32 {
        for (player, team) in [("a1", "AAA"), ("a2", "AAA"), ("b1", "BBB"), ("c1", "CCC"), ("r1", "AAA")] {
            logs.push(log(player, team, "ZZZ", day, 48.0, 70.0));
        }
        logs.push(log("z1", "ZZZ", "AAA", day, 40.0, 1.0));
    }
    logs
}

#[test]
fn adding_later_games_changes_nothing_up_to_the_date() {
    let past = season();
    // Future games first, so input order cannot hide a leak either.
    let all: Vec<GameLog> = future().into_iter().chain(past.iter().cloned()).collect();
    let config = ModelConfig::default();
    let without = Backtester::new(&past, config.clone()).expect("valid config");
    let with = Backtester::new(&all, config.clone()).expect("valid config");

    let on_eight = without.score_date(date(8)).expect("scores");
    assert_eq!(on_eight, with.score_date(date(8)).expect("scores"));
    // The date is not trivial: predictions, a skipped rookie and a voided player.
    assert_eq!(on_eight.slate_players, 7, "{on_eight:?}");
    assert_eq!(on_eight.skipped_insufficient_history, 1, "r1 has 2 earlier games, 5 required");
    assert_eq!(on_eight.predicted_players, 6);
    assert_eq!(on_eight.void_props, 4, "d1 played 0 minutes");
    assert_eq!(on_eight.props.len(), 20);
    for day in 1..=8 {
        assert_eq!(without.score_date(date(day)), with.score_date(date(day)), "day {day}");
    }
    let report = |logs: &[GameLog]| run_backtest(logs, date(1), date(8), &config, None, &mut |_, _| {});
    assert_eq!(report(&past), report(&all));

    // The comparison can fail: once day 9 is in the past (scoring day 10), those games matter.
    let without_day_nine: Vec<GameLog> = all.iter().filter(|l| l.game_date != date(9)).cloned().collect();
    let ten = Backtester::new(&without_day_nine, config).expect("valid").score_date(date(10)).expect("scores");
    assert_ne!(ten, with.score_date(date(10)).expect("scores"));
}

#[test]
fn the_days_own_rows_only_settle_the_props() {
    let mut changed = season();
    for log in changed.iter_mut().filter(|l| l.game_date == date(8) && l.player_lookup == "a1") {
        log.points = 99.0;
    }
    let config = ModelConfig::default();
    let original = Backtester::new(&season(), config.clone()).expect("valid").score_date(date(8)).expect("scores");
    let altered = Backtester::new(&changed, config).expect("valid").score_date(date(8)).expect("scores");
    assert_eq!(original.props.len(), altered.props.len());
    for (a, b) in original.props.iter().zip(&altered.props) {
        assert_eq!(
            (a.p_over, a.line, a.projection, a.recommendation),
            (b.p_over, b.line, b.projection, b.recommendation)
        );
    }
    let points = |r: &DateResult| r.props.iter().find(|p| p.player_lookup == "a1" && p.stat == Stat::Points).cloned();
    let altered_points = points(&altered).expect("a1 points");
    assert_eq!((altered_points.actual, altered_points.over), (99.0, true));
    assert_ne!(points(&original).expect("a1 points").actual, 99.0);
}

fn scored(stat: Stat, p_over: f64, market_p_over: f64, recommendation: Recommendation, over: bool) -> ScoredProp {
    ScoredProp {
        game_date: date(1),
        player_lookup: "x".into(),
        stat,
        line: 10.5,
        over_odds: -110,
        under_odds: -110,
        projection: 10.0,
        p_over,
        raw_p_over: p_over,
        market_p_over,
        recommendation,
        actual: if over { 11.0 } else { 10.0 },
        over,
        model_crps: 1.0,
        naive_crps: 2.0,
    }
}

#[test]
fn summary_by_hand() {
    let day = |props: Vec<ScoredProp>| DateResult {
        date: date(1),
        slate_players: 3,
        predicted_players: 2,
        skipped_insufficient_history: 1,
        void_props: 0,
        pushes: 0,
        props,
    };
    let results = [
        day(vec![
            scored(Stat::Points, 0.8, 0.5, Recommendation::Over, true),
            scored(Stat::Points, 0.4, 0.5, Recommendation::Under, true),
        ]),
        day(vec![scored(Stat::Threes, 0.3, 0.5, Recommendation::Pass, false)]),
    ];
    let report = summarize(date(1), date(2), &results);
    assert_eq!(
        report.counts,
        Counts {
            dates: 2,
            slate_players: 6,
            predicted_players: 4,
            skipped_insufficient_history: 2,
            void_props: 0,
            pushes: 0,
            props_scored: 3
        }
    );
    assert!(report.baselines_coincide);
    let points = &report.per_stat[0];
    assert_eq!((points.stat.as_str(), points.props, points.over_rate), ("points", 2, Some(1.0)));
    assert!((points.model.brier.expect("brier") - (0.04 + 0.36) / 2.0).abs() < 1e-12);
    assert_eq!(points.always_half.brier, Some(0.25));
    assert_eq!((points.picks.picks, points.picks.wins), (2, 1));
    assert_eq!(report.per_stat[1].props, 0);
    assert_eq!(report.per_stat[1].model.brier, None);
    let overall = &report.overall;
    assert!((overall.model.brier.expect("brier") - (0.04 + 0.36 + 0.09) / 3.0).abs() < 1e-12);
    assert_eq!((overall.picks.picks, overall.picks.hit_rate), (2, Some(0.5)));
    assert_eq!(report.calibration.iter().map(|b| b.count).sum::<usize>(), 3);
    assert_eq!(report.calibration[8].count, 1);
    assert!((report.break_even_hit_rate.expect("odds") - 0.5238).abs() < 1e-4);

    let text = render_text(&report);
    assert!(text.contains("52.38%"), "{text}");
    assert!(text.contains("coincides"), "{text}");
    assert!(text.contains("[0.9, 1.0]") && text.contains("[0.0, 0.1)"), "{text}");

    let uneven = summarize(date(1), date(1), &[day(vec![scored(Stat::Points, 0.8, 0.6, Recommendation::Over, true)])]);
    assert!(!uneven.baselines_coincide);
    assert!((uneven.overall.market.brier.expect("brier") - 0.16).abs() < 1e-12);
    assert!(!render_text(&uneven).contains("coincides"));
}

#[test]
fn inverted_range_is_an_error() {
    let result = run_backtest(&season(), date(5), date(4), &ModelConfig::default(), None, &mut |_, _| {});
    assert_eq!(result, Err(BacktestError::InvalidRange { from: date(5), to: date(4) }));
}

#[test]
fn real_playoff_dates() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/nba"));
    let loaded = load_logs(&dir, false, &mut |_| {}).expect("real data loads");
    let (from, to) = (NaiveDate::from_ymd_opt(2023, 5, 1).unwrap(), NaiveDate::from_ymd_opt(2023, 5, 3).unwrap());
    let mut calls = Vec::new();
    let report = run_backtest(&loaded.logs, from, to, &ModelConfig::default(), None, &mut |done, total| {
        calls.push((done, total))
    })
    .expect("backtest runs");
    let c = report.counts;
    assert!(c.dates >= 2, "{c:?}");
    assert_eq!(calls.first(), Some(&(0, c.dates)));
    assert_eq!(calls.last(), Some(&(c.dates, c.dates)));
    assert!(c.props_scored > 0, "{c:?}");
    assert_eq!(c.predicted_players + c.skipped_insufficient_history, c.slate_players);
    let brier = report.overall.model.brier.expect("brier");
    assert!(brier > 0.0 && brier < 0.5, "{brier}");
    assert_eq!(report.overall.props, c.props_scored);
    assert_eq!(report.per_stat.iter().map(|s| s.props).sum::<usize>(), c.props_scored);
    assert_eq!(report.calibration.iter().map(|b| b.count).sum::<usize>(), c.props_scored);
    // Synthetic lines are half points priced from each player's games: nothing pushes, and the
    // market is not a coin.
    assert!(!report.baselines_coincide);
    assert_eq!(report.overall.always_half.brier, Some(0.25));
    assert_eq!(c.pushes, 0);
    assert!(report.overall.crps.model.is_some() && report.overall.crps.naive.is_some());
}

/// The target, on the real logs: changing any game on or after a prediction date (every stat
/// and minute of the day's rows and later ones, plus new later games) leaves that date's predictions,
/// calibration included, bit for bit unchanged.
#[test]
fn no_look_ahead_games_on_or_after_the_date_change_nothing() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/nba"));
    let start = NaiveDate::from_ymd_opt(2022, 4, 1).unwrap();
    let logs: Vec<GameLog> = load_logs(&dir, false, &mut |_| {})
        .expect("real data loads")
        .logs
        .into_iter()
        .filter(|l| l.game_date >= start)
        .collect();
    let day = NaiveDate::from_ymd_opt(2023, 5, 10).unwrap();
    let mut changed = logs.clone();
    for (i, log) in changed.iter_mut().enumerate().filter(|(_, l)| l.game_date >= day) {
        let bump = (i % 7) as f64;
        log.points = 3.0 * log.points + 11.0 + bump;
        log.rebounds += 5.0 + bump;
        log.assists = (log.assists - 3.0).max(0.0);
        log.threes += 2.0;
        log.minutes = 48.0 - log.minutes.min(47.0);
    }
    let mut later = changed.iter().find(|l| l.game_date == day).cloned().expect("a game on the date");
    later.game_date = day + chrono::Days::new(1);
    later.points = 99.0;
    changed.push(later);

    let predictions = |logs: &[GameLog]| {
        let backtester = Backtester::new(logs, ModelConfig::default()).expect("valid config");
        let calibration = backtester.calibration_for(day).expect("calibration fits");
        assert!(calibration.per_stat.iter().all(|c| c.props > 0), "a real map, not the identity: {calibration:?}");
        backtester.predict_date(day, Some(calibration)).expect("predicts")
    };
    let original = predictions(&logs);
    assert!(original.players.len() >= 10, "{} players predicted", original.players.len());
    let after = predictions(&changed);
    assert_eq!(format!("{original:?}"), format!("{after:?}"), "bit for bit (Debug prints every f64 exactly)");
    assert!(original.players.iter().all(|(_, _, p)| p.model_version.starts_with("props-model-2+cal.")));

    // The comparison can fail: a change the day before moves the predictions.
    let mut day_before = logs.clone();
    let previous = day_before.iter().filter(|l| l.game_date < day).map(|l| l.game_date).max().unwrap();
    day_before.iter_mut().filter(|l| l.game_date == previous).for_each(|l| l.points += 10.0);
    assert_ne!(format!("{original:?}"), format!("{:?}", predictions(&day_before)));
}

#[test]
fn the_walk_fits_each_date_as_load_does() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/nba"));
    let start = NaiveDate::from_ymd_opt(2023, 4, 1).unwrap();
    let logs: Vec<GameLog> = load_logs(&dir, false, &mut |_| {})
        .expect("real data loads")
        .logs
        .into_iter()
        .filter(|l| l.game_date >= start)
        .collect();
    let backtester = Backtester::new(&logs, ModelConfig::default()).expect("valid config");
    let dates =
        backtester.dates(NaiveDate::from_ymd_opt(2023, 5, 20).unwrap(), NaiveDate::from_ymd_opt(2023, 5, 24).unwrap());
    let mut history = SampleHistory::default();
    for date in dates {
        let walked = backtester.calibration_with(date, &mut history).expect("fits");
        assert_eq!(walked, backtester.calibration_for(date).expect("fits"), "{date}");
        history.insert(date, samples_of(&backtester.score_date_with(date, Some(walked)).expect("scores")));
    }
}
