//! Tests on small inline CSVs and hand-built logs.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::*;
use crate::nba::types::{GameLog, SlateEntry, Stat};

const HEADER_1: &str = "season,season_type,game_date,game_id,player_id,player,team,opponent,home,minutes,pts,reb,ast,fg3m,fga,fta,tov,stl,blk";
/// Source 2's header, trimmed to a few extra columns; note AST comes before REB.
const HEADER_2: &str = ",PLAYER_NAME,PLAYER_ID,MATCHUP,TEAM_ABBREVIATION,OPP_ABBREVIATION,HOME_GAME,GAME_ID,GAME_DATE,WL,MIN,PTS,AST,REB,FG3M,USG_PCT";

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn parse(name: &str, text: &str) -> Result<(Vec<GameLog>, Vec<BadRow>), DataError> {
    parse_source(name, text.as_bytes())
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("props-nba-data-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join(SOURCE_2021_2025_DIR)).unwrap();
        TempDir(path)
    }
    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load(dir: &Path, skip: bool) -> Result<LoadedLogs, DataError> {
    load_logs(dir, skip, &mut |_| {})
}

#[test]
fn parses_source_1_fields() {
    let text = format!(
        "{HEADER_1}\n2022-23,Playoffs,2023-05-02,42200201,1628983,Shai Gilgeous-Alexander,OKC,DEN,1,36.5,31,5,7,2,20,9,3,1,0\n\
         2010-11,Playoffs,2011-06-05,41000403,436,Juwan Howard,MIA,DAL,0,6.42,1,2,3,0,0,2,0,0,0\n"
    );
    let (logs, bad) = parse("one.csv", &text).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(logs.len(), 2);
    let shai = &logs[0];
    assert_eq!(shai.player_lookup, "shaigilgeousalexander");
    assert_eq!(shai.player_name, "Shai Gilgeous-Alexander");
    assert_eq!(shai.player_id, "1628983");
    assert_eq!((shai.team.as_str(), shai.opponent.as_str(), shai.home), ("OKC", "DEN", true));
    assert_eq!(shai.game_date, d("2023-05-02"));
    assert_eq!(shai.game_id, "0042200201");
    assert_eq!(shai.season, "2022-23");
    assert_eq!(shai.minutes, 36.5);
    assert_eq!((shai.points, shai.rebounds, shai.assists, shai.threes), (31.0, 5.0, 7.0, 2.0));
    let juwan = &logs[1];
    assert!(!juwan.home);
    assert_eq!(juwan.minutes, 6.42);
    assert_eq!(juwan.season, "2010-11");
    assert_eq!((juwan.points, juwan.rebounds, juwan.assists), (1.0, 2.0, 3.0));
}

#[test]
fn parses_source_2_fields_by_header_name() {
    let text = format!(
        "{HEADER_2}\n0,Luka Dončić,1629029,DAL vs. PHX,DAL,PHX,1,0042200131,2023-05-02,W,43,35,9,12,4,0.35\n\
         1,Jamal Murray,1627750,DEN @ LAL,DEN,LAL,0,0042300101,2020-09-18,L,27.5,20,3,6,1,0.2\n"
    );
    let (logs, bad) = parse("playoffs_2021_2025/P23.csv", &text).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let luka = &logs[0];
    assert_eq!(luka.player_lookup, "lukadoncic");
    assert_eq!((luka.team.as_str(), luka.opponent.as_str(), luka.home), ("DAL", "PHX", true));
    assert_eq!(luka.game_id, "0042200131");
    assert_eq!(luka.season, "2022-23", "season derived from the calendar year of the date");
    assert_eq!(luka.minutes, 43.0);
    assert_eq!((luka.points, luka.rebounds, luka.assists, luka.threes), (35.0, 12.0, 9.0, 4.0));
    let jamal = &logs[1];
    assert!(!jamal.home);
    assert_eq!(jamal.minutes, 27.5);
    assert_eq!(jamal.season, "2019-20", "the 2020 bubble playoffs");
}

#[test]
fn malformed_rows_name_file_and_line() {
    let text = format!(
        "{HEADER_1}\n2022-23,Playoffs,2023-05-02,1,1,Good Player,OKC,DEN,1,30,10,5,3,1,0,0,0,0,0\n\
         2022-23,Playoffs,2023-05-02,1,2,Bad Points,OKC,DEN,1,30,abc,5,3,1,0,0,0,0,0\n\
         2022-23,Playoffs,2023-13-40,1,3,Bad Date,OKC,DEN,1,30,10,5,3,1,0,0,0,0,0\n\
         2022-23,Playoffs,2023-05-02,1,4,,OKC,DEN,1,30,10,5,3,1,0,0,0,0,0\n\
         2022-23,Playoffs,2023-05-02,1,5,Negative Minutes,OKC,DEN,1,-3,10,5,3,1,0,0,0,0,0\n\
         2022-23,Playoffs,2023-05-02,1,6,\"Quoted\nName\",OKC,DEN,1,30,NaN,5,3,1,0,0,0,0,0\n\
         2022-23,Playoffs,2023-05-02,1,7,Short Row,OKC\n"
    );
    let (logs, bad) = parse("f.csv", &text).unwrap();
    assert_eq!(logs.len(), 1);
    let lines: Vec<(u64, &str)> = bad.iter().map(|b| (b.line, b.file.as_str())).collect();
    assert_eq!(lines, [(3, "f.csv"), (4, "f.csv"), (5, "f.csv"), (6, "f.csv"), (7, "f.csv"), (9, "f.csv")]);
    assert!(bad[0].reason.contains("pts") && bad[0].reason.contains("abc"), "{}", bad[0].reason);
    assert!(bad[1].reason.contains("date"), "{}", bad[1].reason);
    assert!(bad[2].reason.contains("player"), "{}", bad[2].reason);
    assert!(bad[3].reason.contains("negative"), "{}", bad[3].reason);
    assert!(bad[4].reason.contains("NaN"), "{}", bad[4].reason);
    assert!(bad[5].reason.contains("fields"), "{}", bad[5].reason);
    assert_eq!(bad[0].to_string(), format!("f.csv:3: {}", bad[0].reason));
}

#[test]
fn missing_column_is_named() {
    let no_pts = HEADER_1.replace(",pts,", ",points,");
    match parse("a.csv", &format!("{no_pts}\n")) {
        Err(DataError::MissingColumn { file, column }) => {
            assert_eq!((file.as_str(), column.as_str()), ("a.csv", "pts"))
        }
        other => panic!("expected MissingColumn, got {other:?}"),
    }
    let no_fg3m = HEADER_2.replace(",FG3M,", ",FG3A,");
    match parse("P23.csv", &format!("{no_fg3m}\n")) {
        Err(DataError::MissingColumn { column, .. }) => assert_eq!(column, "FG3M"),
        other => panic!("expected MissingColumn, got {other:?}"),
    }
}

fn row_1(date: &str, id: &str, name: &str, pts: u32) -> String {
    format!("2022-23,Playoffs,{date},42200201,{id},{name},MIA,NYK,1,35.5,{pts},5,4,2,0,0,0,0,0\n")
}

fn row_2(date: &str, id: &str, name: &str, pts: u32) -> String {
    format!("0,{name},{id},MIA @ NYK,MIA,NYK,0,0042200201,{date},W,36,{pts},4,5,2,0.2\n")
}

#[test]
fn load_dedupes_across_sources_preferring_source_1() {
    let dir = TempDir::new("dedupe");
    let src1 = [row_1("2023-05-02", "202710", "Jimmy Butler", 27), row_1("2023-04-30", "1", "Bam Adebayo", 9)];
    dir.write(SOURCE_2011_2024, &format!("{HEADER_1}\n{}", src1.concat()));
    let p23 = [
        row_2("2023-05-02", "202710", "Jimmy Butler III", 99), // same game, other spelling: dropped
        row_2("2023-04-30", "1", "Bam Adebayo", 99),           // same game: dropped
        row_2("2023-05-04", "1", "Bam Adebayo", 18),
        row_2("2023-05-04", "202710", "Jimmy Butler III", 25),
    ];
    dir.write("playoffs_2021_2025/P23.csv", &format!("{HEADER_2}\n{}", p23.concat()));
    dir.write("playoffs_2021_2025/notes.txt", "not a source");
    let loaded = load(&dir.0, false).unwrap();
    assert_eq!(loaded.files, [SOURCE_2011_2024, "playoffs_2021_2025/P23.csv"]);
    assert_eq!(loaded.duplicates_dropped, 2);
    assert!(loaded.bad_rows.is_empty());
    let got: Vec<(NaiveDate, &str, f64, bool)> =
        loaded.logs.iter().map(|l| (l.game_date, l.player_lookup.as_str(), l.points, l.home)).collect();
    assert_eq!(
        got,
        [
            (d("2023-04-30"), "bamadebayo", 9.0, true),
            (d("2023-05-02"), "jimmybutleriii", 27.0, true), // source 1's row, under the latest name
            (d("2023-05-04"), "bamadebayo", 18.0, false),
            (d("2023-05-04"), "jimmybutleriii", 25.0, false),
        ]
    );
    assert!(loaded.logs.iter().filter(|l| l.player_id == "202710").all(|l| l.player_name == "Jimmy Butler III"));
}

#[test]
fn load_fails_or_skips_bad_rows() {
    let dir = TempDir::new("bad");
    dir.write(SOURCE_2011_2024, &format!("{HEADER_1}\n{}", row_1("2023-05-02", "1", "A Player", 10)));
    let p23 = [row_2("2023-05-04", "1", "A Player", 12), row_2("2023-05-06", "2", "B Player", 0)];
    let broken = p23[1].replace(",2,0.2", ",abc,0.2");
    dir.write("playoffs_2021_2025/P23.csv", &format!("{HEADER_2}\n{}{broken}{broken}", p23[0]));
    match load(&dir.0, false) {
        Err(DataError::BadRows { count, first }) => {
            assert_eq!(count, 2);
            assert_eq!((first.file.as_str(), first.line), ("playoffs_2021_2025/P23.csv", 3));
            assert!(first.reason.contains("FG3M"), "{}", first.reason);
        }
        other => panic!("expected BadRows, got {other:?}"),
    }
    let loaded = load(&dir.0, true).unwrap();
    assert_eq!(loaded.logs.len(), 2);
    assert_eq!(loaded.bad_rows.len(), 2);
    assert_eq!(loaded.bad_rows[1].line, 4);
}

#[test]
fn load_reports_progress_and_no_data() {
    let dir = TempDir::new("progress");
    let rows: String = (0..2500u32).map(|i| row_1("2023-05-02", &i.to_string(), &format!("Player {i}"), i)).collect();
    dir.write(SOURCE_2011_2024, &format!("{HEADER_1}\n{rows}"));
    let mut calls = Vec::new();
    let loaded = load_logs(&dir.0, false, &mut |n| calls.push(n)).unwrap();
    assert_eq!(loaded.logs.len(), 2500);
    assert_eq!(calls, [1000, 2000, 2500]);

    let empty = TempDir::new("empty");
    assert!(matches!(load(&empty.0, true), Err(DataError::NoData(_))));
}

fn log(name: &str, date: &str, points: f64) -> GameLog {
    GameLog {
        player_lookup: crate::nba::types::player_lookup(name),
        player_name: name.to_string(),
        player_id: String::new(),
        team: "BOS".into(),
        opponent: "MIA".into(),
        home: false,
        game_date: d(date),
        game_id: String::new(),
        season: "2022-23".into(),
        minutes: 30.0,
        points,
        rebounds: points / 2.0,
        assists: 0.0,
        threes: 1.0,
    }
}

fn line(entry: &SlateEntry, stat: Stat) -> f64 {
    entry.lines.iter().find(|l| l.stat == stat).unwrap().line
}

#[test]
fn slate_uses_only_prior_games() {
    let date = d("2023-05-10");
    // 22 prior games for Tatum: two old huge ones (outside the last 20), then twenty of 20..=39.
    let mut logs: Vec<GameLog> = (1..=22).map(|i| log("Jayson Tatum", &format!("2023-04-{:02}", i), 0.0)).collect();
    for (i, game) in logs.iter_mut().enumerate() {
        game.points = if i < 2 { 500.0 } else { 18.0 + i as f64 }; // 20..=39, median 29.5
        game.rebounds = game.points / 2.0; // median 14.75 over the last twenty
    }
    let mut today = log("Jayson Tatum", "2023-05-10", 30.0);
    today.home = true;
    today.opponent = "PHI".into();
    logs.push(today);
    logs.push(log("Rookie Debut", "2023-05-10", 40.0)); // no prior game: not on the slate
    logs.push(log("Al Horford", "2023-05-01", 0.0));
    logs.push(log("Al Horford", "2023-05-10", 3.0));
    logs.push(log("Not Playing", "2023-05-01", 10.0));
    logs.reverse(); // order of the input must not matter

    let slate = build_slate(&logs, date);
    let names: Vec<&str> = slate.iter().map(|e| e.player_lookup.as_str()).collect();
    assert_eq!(names, ["alhorford", "jaysontatum"]);
    let tatum = &slate[1];
    assert_eq!((tatum.opponent.as_str(), tatum.home, tatum.game_date), ("PHI", true, date));
    assert_eq!(tatum.lines.iter().map(|l| l.stat).collect::<Vec<_>>(), Stat::ALL);
    assert_eq!(line(tatum, Stat::Points), 29.5); // the median itself
    assert_eq!(line(tatum, Stat::Rebounds), 14.5); // the half point nearest 14.75
    assert_eq!(line(tatum, Stat::Assists), 0.5); // median 0: the minimum
    assert_eq!(line(tatum, Stat::Threes), 0.5); // median 1: 0.5 and 1.5 split 20/0 and 0/20, the lower
    let points = tatum.lines.iter().find(|l| l.stat == Stat::Points).unwrap();
    assert_eq!((points.over_odds, points.under_odds), (-110, -110), "10 of 20 over: an even market");
    let threes = tatum.lines.iter().find(|l| l.stat == Stat::Threes).unwrap();
    assert!(threes.over_odds < -1000 && threes.under_odds > 1000, "20 of 20 over: {threes:?}");
    assert!(slate.iter().flat_map(|e| &e.lines).all(|l| l.line >= 0.5 && l.line.fract() == 0.5));
    assert!(slate[0].lines.is_empty(), "Horford has 1 game before the date, 5 needed for a line");

    // Huge games on the date itself or later change nothing.
    let mut future = logs.clone();
    future.iter_mut().filter(|l| l.game_date == date).for_each(|l| l.points = 1000.0);
    future.push(log("Jayson Tatum", "2023-05-12", 900.0));
    future.push(log("Al Horford", "2023-06-01", 900.0));
    let again = build_slate(&future, date);
    assert_eq!(again.iter().map(|e| &e.lines).collect::<Vec<_>>(), slate.iter().map(|e| &e.lines).collect::<Vec<_>>());
}

#[test]
fn game_dates_are_sorted_and_unique() {
    let logs = [log("A", "2023-05-03", 1.0), log("B", "2023-05-01", 1.0), log("C", "2023-05-03", 1.0)];
    assert_eq!(game_dates(&logs), [d("2023-05-01"), d("2023-05-03")]);
}

#[test]
fn roster_slate_takes_the_most_recently_active_players_with_enough_history() {
    let date = d("2023-10-24");
    let mut logs: Vec<GameLog> = (1..=5).map(|i| log("Old Timer", &format!("2021-05-{:02}", i), 10.0)).collect();
    logs.extend((1..=5).map(|i| log("Recent Star", &format!("2023-05-{:02}", i), 20.0)));
    logs.extend((1..=2).map(|i| log("Too Few", &format!("2023-06-{:02}", i), 5.0)));
    logs.extend((1..=5).map(|i| log("Mid Player", &format!("2022-05-{:02}", i), 8.0)));
    logs.push(log("Recent Star", "2023-10-24", 99.0)); // on the date itself: not history
    let slate = roster_slate(&logs, date, 3, 2);
    let names: Vec<&str> = slate.iter().map(|e| e.player_lookup.as_str()).collect();
    assert_eq!(names, ["midplayer", "recentstar"], "two most recent with 3+ prior games, sorted by id");
    assert!(slate.iter().all(|e| e.game_date == date));
    assert_eq!(line(&slate[1], Stat::Points), 19.5, "lines from prior games only (median 20, the lower half point)");
    assert_eq!(roster_slate(&logs, date, 3, 10).len(), 3);
}
