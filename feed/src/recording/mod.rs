//! Recorded feeds, read and written: NDJSON (one message per line, `{"topic": ..., "key":
//! ..., "value": ...}` with the value in the JSON form of `chainflow analyze`) and CSV
//! option-chain snapshots (one row per strike, [`CSV_HEADER`]).

mod csv;
mod ndjson;

pub use self::csv::{csv_rows, CSV_HEADER};
pub use ndjson::{Forms, Recorder};

use crate::sim::MarketEvent;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// One recorded message: its Kafka key and its event.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The original key.
    pub key: String,
    /// The event (its topic follows from its type).
    pub event: MarketEvent,
}

/// A line of a recording that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong with it.
    pub message: String,
}

/// Reads a recording, NDJSON or (for a `.csv` file) chain snapshots, message by message.
pub fn read(path: &Path) -> Result<Box<dyn Iterator<Item = Result<Recorded, BadLine>> + Send>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = BufReader::new(file);
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
        Ok(Box::new(self::csv::CsvChains::new(reader)?))
    } else {
        Ok(Box::new(ndjson::messages(reader)))
    }
}
