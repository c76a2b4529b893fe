//! The business key of a batch: a calendar date, written `YYYY-MM-DD` everywhere (messages, Firestore
//! document ids, file names).

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::InvalidMessage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GameDate(NaiveDate);

impl GameDate {
    pub fn new(date: NaiveDate) -> Self {
        Self(date)
    }

    pub fn date(self) -> NaiveDate {
        self.0
    }
}

impl FromStr for GameDate {
    type Err = InvalidMessage;

    /// Accepts exactly `YYYY-MM-DD` of a real calendar date: chrono alone would also take `2026-1-5`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let well_formed = text.len() == 10
            && text.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
        if !well_formed {
            return Err(InvalidMessage::GameDate(text.to_string()));
        }
        NaiveDate::parse_from_str(text, "%Y-%m-%d").map(Self).map_err(|_| InvalidMessage::GameDate(text.to_string()))
    }
}

impl fmt::Display for GameDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

impl Serialize for GameDate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GameDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_iso_dates() {
        let date: GameDate = "2024-04-22".parse().unwrap();
        assert_eq!(date.to_string(), "2024-04-22");
        assert_eq!(serde_json::to_string(&date).unwrap(), "\"2024-04-22\"");
    }

    #[test]
    fn rejects_anything_but_a_real_yyyy_mm_dd_date() {
        for bad in ["2024-4-22", "2024-02-30", "20240422", "2024/04/22", "", "2024-04-22T00:00:00", "+2024-04-2"] {
            assert_eq!(bad.parse::<GameDate>(), Err(InvalidMessage::GameDate(bad.into())), "{bad:?}");
        }
    }
}
