//! Tests against the real files in `shared/data/nba/` (read-only, next to the project root).

use std::path::PathBuf;

use chrono::NaiveDate;

use super::*;

fn real_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/nba"))
}

/// Rows in the files before de-duplication, as the data README states.
const ROWS_2011_2024: usize = 23_217;
const ROWS_2021_2025: usize = 8_973;

#[test]
fn real_data_loads_dedupes_and_builds_a_slate() {
    let dir = real_dir();
    assert!(dir.is_dir(), "real data missing at {}", dir.display());
    let mut last_progress = 0;
    let loaded = load_logs(&dir, false, &mut |n| last_progress = n).expect("real data loads without bad rows");
    assert!(loaded.bad_rows.is_empty());
    assert_eq!(loaded.files.len(), 6, "{:?}", loaded.files);
    assert_eq!(last_progress as usize, ROWS_2011_2024 + ROWS_2021_2025);
    assert_eq!(loaded.logs.len() + loaded.duplicates_dropped, ROWS_2011_2024 + ROWS_2021_2025);
    // 2020-21 .. 2022-23 and the start of the 2024 playoffs are in both sources.
    assert!((5_000..=6_000).contains(&loaded.duplicates_dropped), "{}", loaded.duplicates_dropped);
    let sorted =
        loaded.logs.windows(2).all(|w| (w[0].game_date, &w[0].player_lookup) < (w[1].game_date, &w[1].player_lookup));
    assert!(sorted, "sorted by (date, lookup) with no duplicate key");

    let dates = game_dates(&loaded.logs);
    assert!(dates.len() > 600, "{} dates", dates.len());
    let date = NaiveDate::from_ymd_opt(2023, 5, 2).unwrap();
    assert!(dates.contains(&date));
    let slate = build_slate(&loaded.logs, date);
    assert!(slate.len() >= 20, "{} players on {date}", slate.len());
    for entry in &slate {
        assert_eq!(entry.game_date, date);
        assert!(matches!(entry.lines.len(), 0 | 4), "{}", entry.player_lookup);
        assert!(entry.lines.iter().all(|l| l.line >= 0.5 && l.line.fract() == 0.5));
        let prior = loaded.logs.iter().any(|l| l.player_lookup == entry.player_lookup && l.game_date < date);
        assert!(prior, "{} has no prior game", entry.player_lookup);
    }
    assert!(slate.iter().filter(|e| e.lines.len() == 4).count() >= 20, "most players have 5+ games and lines");
    let played = loaded.logs.iter().filter(|l| l.game_date == date).count();
    assert!(slate.len() <= played);
}
