//! The NBA domain's vocabulary, shared by the loader, the model, the worker and the exporter.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// One player's box score in one game (from either source file, normalized).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GameLog {
    /// Normalized player name: lowercase ASCII letters and digits only ("LeBron James" -> "lebronjames").
    pub player_lookup: String,
    pub player_name: String,
    /// NBA.com player id as text.
    pub player_id: String,
    pub team: String,
    pub opponent: String,
    pub home: bool,
    pub game_date: NaiveDate,
    pub game_id: String,
    /// Season label, e.g. "2023-24".
    pub season: String,
    pub minutes: f64,
    pub points: f64,
    pub rebounds: f64,
    pub assists: f64,
    pub threes: f64,
}

/// The four prop markets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    Points,
    Rebounds,
    Assists,
    Threes,
}

impl Stat {
    pub const ALL: [Stat; 4] = [Stat::Points, Stat::Rebounds, Stat::Assists, Stat::Threes];

    pub fn of(self, log: &GameLog) -> f64 {
        match self {
            Stat::Points => log.points,
            Stat::Rebounds => log.rebounds,
            Stat::Assists => log.assists,
            Stat::Threes => log.threes,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stat::Points => "points",
            Stat::Rebounds => "rebounds",
            Stat::Assists => "assists",
            Stat::Threes => "threes",
        }
    }
}

/// A prop line: over/under `line` (always a half point, so no push) at American odds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PropLine {
    pub stat: Stat,
    pub line: f64,
    pub over_odds: i32,
    pub under_odds: i32,
}

/// Who plays on a date, with their (synthetic) lines: `slates/{date}/players/{player_lookup}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlateEntry {
    pub player_lookup: String,
    pub player_name: String,
    pub team: String,
    pub opponent: String,
    pub home: bool,
    pub game_date: NaiveDate,
    pub lines: Vec<PropLine>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Recommendation {
    Over,
    Under,
    Pass,
}

/// The model's answer for one prop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropPrediction {
    pub stat: Stat,
    pub line: f64,
    /// Expected value of the stat.
    pub projection: f64,
    /// Model probability that the stat ends over the line.
    pub p_over: f64,
    /// The market's over probability with the vig removed.
    pub market_p_over: f64,
    /// `p_over - market_p_over`: positive favours OVER, negative favours UNDER.
    pub edge: f64,
    pub recommendation: Recommendation,
    /// 0..1: how far the model's probability is from a coin flip, scaled by how much history backs it.
    pub confidence: f64,
    /// "normal", "negative_binomial" or "poisson".
    pub distribution: String,
}

/// Every prop of one player on one date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerPrediction {
    pub player_lookup: String,
    pub player_name: String,
    pub team: String,
    pub opponent: String,
    pub game_date: NaiveDate,
    pub projected_minutes: f64,
    /// Games of history the prediction rests on.
    pub games_used: usize,
    pub props: Vec<PropPrediction>,
    /// Whether a sportsbook would post these props: the player is projected meaningful minutes
    /// (see `model::OFFERED_MIN_MINUTES`). Deep-bench players are predicted but not offered.
    #[serde(default)]
    pub offered: bool,
    /// The model code and calibration map that produced the prediction (`props-model-2+cal.<hash>`);
    /// a change is a visible regeneration.
    #[serde(default)]
    pub model_version: String,
}

/// Normalizes a player name to a lookup id: lowercase ASCII letters and digits; accented Latin letters
/// lose their accents ("Luka Dončić" -> "lukadoncic").
pub fn player_lookup(name: &str) -> String {
    name.chars()
        .filter_map(|c| {
            let base = match c {
                'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' | 'Á' | 'À' | 'Â' | 'Ä' | 'Ã' | 'Å' => 'a',
                'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' | 'Ê' | 'Ë' => 'e',
                'í' | 'ì' | 'î' | 'ï' | 'Í' | 'Ì' | 'Î' | 'Ï' => 'i',
                'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'Ó' | 'Ò' | 'Ô' | 'Ö' | 'Õ' => 'o',
                'ú' | 'ù' | 'û' | 'ü' | 'Ú' | 'Ù' | 'Û' | 'Ü' => 'u',
                'ć' | 'č' | 'ç' | 'Ć' | 'Č' | 'Ç' => 'c',
                'š' | 'Š' => 's',
                'ž' | 'Ž' => 'z',
                'ñ' | 'Ñ' => 'n',
                'ý' | 'Ý' => 'y',
                'đ' | 'Đ' => 'd',
                'ģ' | 'Ģ' => 'g',
                'ņ' | 'Ņ' => 'n',
                'ā' | 'Ā' => 'a',
                'ū' | 'Ū' => 'u',
                'ī' | 'Ī' => 'i',
                c => c,
            };
            base.is_ascii_alphanumeric().then(|| base.to_ascii_lowercase())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_lowercase_ascii_alphanumerics() {
        assert_eq!(player_lookup("LeBron James"), "lebronjames");
        assert_eq!(player_lookup("Luka Dončić"), "lukadoncic");
        assert_eq!(player_lookup("D'Angelo Russell"), "dangelorussell");
        assert_eq!(player_lookup("Gary Payton II"), "garypaytonii");
    }
}
