//! The benchmark's input: real players with real histories, repeated under new ids when a batch needs
//! more players than the data has, and one slate per measured batch.
//!
//! The playoff data has a few hundred players with enough history, so a 5,000-player batch repeats
//! each of them about ten times (`lebronjames`, `lebronjamesx1`, ...). Every item still runs the real
//! model on a real history; only the ids are new.

use std::collections::HashSet;
use std::path::Path;

use chrono::NaiveDate;
use firestore::FirestoreDb;
use props_pipeline::nba::data::{load_logs, roster_slate};
use props_pipeline::nba::load::{load, load_slate};
use props_pipeline::nba::types::{GameLog, SlateEntry};

/// Players need this many earlier games to be on a slate (the chaos test's fixture uses the same).
const MIN_PRIOR_GAMES: usize = 10;

pub struct Dataset {
    logs: Vec<GameLog>,
    /// Every player with enough history, as of any date after the data ends.
    roster: Vec<SlateEntry>,
    /// Copies of the roster already loaded (copy 0 is the real ids).
    copies_loaded: usize,
}

impl Dataset {
    pub fn read(data_dir: &Path, after: NaiveDate) -> anyhow::Result<Self> {
        let logs = load_logs(data_dir, false, &mut |_| {})?.logs;
        let roster = roster_slate(&logs, after, MIN_PRIOR_GAMES, usize::MAX);
        anyhow::ensure!(!roster.is_empty(), "no player in {} has {MIN_PRIOR_GAMES} games", data_dir.display());
        Ok(Self { logs, roster, copies_loaded: 0 })
    }

    pub fn roster_len(&self) -> usize {
        self.roster.len()
    }

    /// Writes the player histories needed for batches of up to `items` players (idempotent: copies
    /// already loaded are skipped).
    pub async fn load_players(&mut self, db: &FirestoreDb, items: usize) -> anyhow::Result<()> {
        let copies = items.div_ceil(self.roster.len());
        let on_roster: HashSet<&str> = self.roster.iter().map(|e| e.player_lookup.as_str()).collect();
        for copy in self.copies_loaded..copies {
            let logs: Vec<GameLog> = self
                .logs
                .iter()
                .filter(|log| on_roster.contains(log.player_lookup.as_str()))
                .map(|log| GameLog { player_lookup: copy_id(&log.player_lookup, copy), ..log.clone() })
                .collect();
            load(db, &logs, &[], &mut |_| {}).await?;
            eprintln!("bench: player histories: copy {} of {copies} loaded", copy + 1);
        }
        self.copies_loaded = self.copies_loaded.max(copies);
        Ok(())
    }

    /// The players of a slate of `items` (see [`Dataset::load_slate`]).
    pub fn players(&self, items: usize) -> Vec<String> {
        (0..items)
            .map(|index| copy_id(&self.roster[index % self.roster.len()].player_lookup, index / self.roster.len()))
            .collect()
    }

    /// Loads the slate of `date` with `items` players (the first `items` of the repeated roster).
    pub async fn load_slate(&self, db: &FirestoreDb, date: NaiveDate, items: usize) -> anyhow::Result<()> {
        let entries: Vec<SlateEntry> = (0..items)
            .map(|index| {
                let entry = &self.roster[index % self.roster.len()];
                SlateEntry {
                    player_lookup: copy_id(&entry.player_lookup, index / self.roster.len()),
                    game_date: date,
                    ..entry.clone()
                }
            })
            .collect();
        // The league context comes from the real logs (the copies would only repeat them).
        load_slate(db, &self.logs, date, entries).await?;
        Ok(())
    }
}

/// The id of copy `copy` of a player: lowercase letters and digits like every player id.
fn copy_id(player: &str, copy: usize) -> String {
    if copy == 0 { player.to_string() } else { format!("{player}x{copy}") }
}
