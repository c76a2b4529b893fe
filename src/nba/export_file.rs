//! The export file written as a stream: one player at a time, fingerprinted on the way out.
//!
//! The exporter never holds a whole batch: it reads the batch's results a page at a time and hands
//! each player to [`StreamedExport`], which writes the same bytes `serde_json::to_vec_pretty` gives
//! for the whole [`ExportFile`] (so re-exports stay byte-identical to earlier ones and readers parse
//! the file as before), and computes the file's FNV-1a-64 fingerprint as the bytes pass. The fields
//! that need every player (`model_versions`) come after `players` in the file, as they always did.
//!
//! How the pretty layout is kept without a serializer that spans the whole file: the fields before
//! `players` and those after it are serialized as two small objects whose braces are cut off, and each
//! player is serialized pretty on its own and indented to its depth (two levels, four spaces) by
//! indenting every line after its first. JSON strings never hold a raw newline, so every newline in
//! a player's bytes is a line break of the layout.

use std::collections::BTreeSet;
use std::io::{self, Write};

use serde::Serialize;

#[cfg(test)]
use super::export::ExportFile;
use super::export::SkippedPlayer;
use super::types::PlayerPrediction;

/// FNV-1a 64 offset basis and prime: the digest of [`crate::batch::documents::fnv1a64`], computed
/// incrementally.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// Indentation of a player inside `"players": [` (two levels of the pretty formatter's two spaces).
const PLAYER_INDENT: &[u8] = b"\n    ";

/// A writer that fingerprints (FNV-1a 64) what goes through it.
pub(crate) struct Fingerprinting<W> {
    inner: W,
    hash: u64,
}

impl<W: Write> Fingerprinting<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self { inner, hash: FNV_OFFSET }
    }

    /// The fingerprint as the export record stores it (see [`super::store::fingerprint`]).
    pub(crate) fn checksum(&self) -> String {
        format!("{:016x}", self.hash)
    }
}

impl<W: Write> Write for Fingerprinting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        // Only what the inner writer took is part of the file.
        for byte in &buf[..written] {
            self.hash = (self.hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME);
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The fields before `players`, in [`ExportFile`]'s order.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FileHead<'a> {
    pub schema_version: u32,
    pub game_date: &'a str,
    pub batch_id: &'a str,
    pub generation: u64,
    pub slate_players: Option<u64>,
    pub predicted_players: Option<u64>,
    pub coverage: Option<f64>,
}

/// The fields after `players`, in [`ExportFile`]'s order.
#[derive(Serialize)]
struct FileTail<'a> {
    model_versions: Vec<String>,
    skipped_players: &'a [SkippedPlayer],
    attribution: &'a str,
}

/// A file written to completion: the writer, the fingerprint of its bytes, how many players.
#[derive(Debug)]
pub(crate) struct Finished<W> {
    pub out: W,
    pub checksum: String,
    pub players: u64,
}

/// An export file being written: [`begin`](Self::begin), then one [`player`](Self::player) per player
/// in `player_lookup` order, then [`finish`](Self::finish).
pub(crate) struct StreamedExport<W: Write> {
    out: Fingerprinting<W>,
    players: u64,
    /// The distinct model versions seen so far: a handful per file, not one per player.
    model_versions: BTreeSet<String>,
}

impl<W: Write> StreamedExport<W> {
    pub(crate) fn begin(out: W, head: &FileHead<'_>) -> io::Result<Self> {
        let mut out = Fingerprinting::new(out);
        let head = pretty(head)?;
        // `{ ...fields... \n}` -> `{ ...fields...` then the players' key.
        let fields = head.strip_suffix(b"\n}").ok_or_else(|| layout_error("the head object"))?;
        out.write_all(fields)?;
        out.write_all(b",\n  \"players\": [")?;
        Ok(Self { out, players: 0, model_versions: BTreeSet::new() })
    }

    pub(crate) fn player(&mut self, player: &PlayerPrediction) -> io::Result<()> {
        let bytes = pretty(player)?;
        if self.players > 0 {
            self.out.write_all(b",")?;
        }
        self.out.write_all(PLAYER_INDENT)?;
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if i > 0 {
                self.out.write_all(PLAYER_INDENT)?;
            }
            self.out.write_all(line)?;
        }
        self.players += 1;
        if !self.model_versions.contains(&player.model_version) {
            self.model_versions.insert(player.model_version.clone());
        }
        Ok(())
    }

    /// Closes `players`, writes the fields after it and flushes the writer.
    pub(crate) fn finish(mut self, skipped_players: &[SkippedPlayer], attribution: &str) -> io::Result<Finished<W>> {
        // An empty array is `[]` in the pretty layout; a filled one ends on its own line.
        self.out.write_all(if self.players > 0 { b"\n  ]" } else { b"]" })?;
        let tail = pretty(&FileTail {
            model_versions: std::mem::take(&mut self.model_versions).into_iter().collect(),
            skipped_players,
            attribution,
        })?;
        // `{\n  ...fields...\n}` -> `,\n  ...fields...\n}`.
        let rest = tail.strip_prefix(b"{").ok_or_else(|| layout_error("the tail object"))?;
        self.out.write_all(b",")?;
        self.out.write_all(rest)?;
        self.out.flush()?;
        let checksum = self.out.checksum();
        Ok(Finished { checksum, players: self.players, out: self.out.inner })
    }
}

fn pretty<T: Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(io::Error::other)
}

fn layout_error(what: &str) -> io::Error {
    io::Error::other(format!("unexpected pretty JSON layout of {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::documents::fnv1a64;
    use crate::nba::store::fingerprint;

    fn prediction(player: &str, name: &str, model_version: &str, props: usize) -> PlayerPrediction {
        let prop = serde_json::json!({
            "stat": "points", "line": 20.5, "projection": 22.25, "p_over": 0.61, "market_p_over": 0.5,
            "edge": 0.11, "recommendation": "OVER", "confidence": 0.4, "distribution": "normal"
        });
        serde_json::from_value(serde_json::json!({
            "player_lookup": player, "player_name": name, "team": "AAA", "opponent": "BBB",
            "game_date": "2024-04-22", "projected_minutes": 31.5, "games_used": 12,
            "props": vec![prop; props], "offered": true, "model_version": model_version
        }))
        .unwrap()
    }

    fn file(players: Vec<PlayerPrediction>, skipped_players: Vec<SkippedPlayer>) -> ExportFile {
        let model_versions: BTreeSet<String> = players.iter().map(|p| p.model_version.clone()).collect();
        ExportFile {
            schema_version: 1,
            game_date: "2024-04-22".into(),
            batch_id: "2024-04-22-m1".into(),
            generation: 3,
            slate_players: Some(5),
            predicted_players: Some(players.len() as u64),
            coverage: Some(0.6),
            players,
            model_versions: model_versions.into_iter().collect(),
            skipped_players,
            attribution: "Statistics from NBA.com; \"synthetic\" lines\nsecond line".into(),
        }
    }

    fn stream(file: &ExportFile) -> Finished<Vec<u8>> {
        let head = FileHead {
            schema_version: file.schema_version,
            game_date: &file.game_date,
            batch_id: &file.batch_id,
            generation: file.generation,
            slate_players: file.slate_players,
            predicted_players: file.predicted_players,
            coverage: file.coverage,
        };
        let mut export = StreamedExport::begin(Vec::new(), &head).unwrap();
        for player in &file.players {
            export.player(player).unwrap();
        }
        export.finish(&file.skipped_players, &file.attribution).unwrap()
    }

    #[test]
    fn streamed_bytes_are_the_whole_file_serialized_pretty() {
        let skipped = vec![SkippedPlayer { player_lookup: "cc".into(), reason: "1 usable games, 5 required".into() }];
        let cases = [
            file(vec![], vec![]),
            file(vec![prediction("aa", "Luka Dončić", "m-1", 0)], vec![]),
            file(
                vec![
                    prediction("aa", "A \"Quote\" A", "m-2", 2),
                    prediction("bb", "B\nB", "m-1", 4),
                    prediction("dd", "D", "m-2", 1),
                ],
                skipped,
            ),
        ];
        for expected in cases {
            let finished = stream(&expected);
            assert_eq!(
                String::from_utf8(finished.out.clone()).unwrap(),
                String::from_utf8(serde_json::to_vec_pretty(&expected).unwrap()).unwrap()
            );
            let parsed: ExportFile = serde_json::from_slice(&finished.out).unwrap();
            assert_eq!(parsed, expected);
            assert_eq!(finished.checksum, fingerprint(&finished.out));
            assert_eq!(finished.players, expected.players.len() as u64);
        }
    }

    /// A writer that takes at most three bytes per call, as a writer may.
    struct Trickle(Vec<u8>);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn fingerprint_covers_exactly_the_bytes_the_writer_took() {
        let mut writer = Fingerprinting::new(Trickle(Vec::new()));
        writer.write_all(b"export ").unwrap();
        writer.write_all(b"file \xc3\xa9 bytes").unwrap();
        assert_eq!(writer.inner.0, b"export file \xc3\xa9 bytes");
        assert_eq!(writer.checksum(), format!("{:016x}", fnv1a64(&writer.inner.0)));
        assert_ne!(Fingerprinting::new(Vec::new()).checksum(), writer.checksum());
    }
}
