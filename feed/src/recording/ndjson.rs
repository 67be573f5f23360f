//! NDJSON recordings: one message per line, `{"topic": ..., "key": ..., "value": ...}`, the
//! value in the JSON form of `chainflow analyze` (RFC 3339 µs UTC times, YYYY-MM-DD dates,
//! CALL/PUT, null).

use super::{BadLine, Recorded};
use crate::sim::MarketEvent;
use anyhow::{Context, Result};
use chainflow_contract::{JsonForm, OptionChain, OptionQuote, Record, UnderlyingTick};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

/// The JSON forms of the three market records.
pub struct Forms {
    tick: JsonForm<UnderlyingTick>,
    quote: JsonForm<OptionQuote>,
    chain: JsonForm<OptionChain>,
}

impl Default for Forms {
    fn default() -> Self {
        Self {
            tick: JsonForm::new(),
            quote: JsonForm::new(),
            chain: JsonForm::new(),
        }
    }
}

impl Forms {
    /// The NDJSON line of a message (without the newline).
    pub fn line(&self, key: &str, event: &MarketEvent) -> String {
        let value = match event {
            MarketEvent::Tick(t) => self.tick.to_json(t),
            MarketEvent::Quote(q) => self.quote.to_json(q),
            MarketEvent::Chain(c) => self.chain.to_json(c),
        };
        json!({"topic": event.topic(), "key": key, "value": value}).to_string()
    }

    /// The message an NDJSON line describes.
    pub fn parse(&self, text: &str) -> Result<Recorded, String> {
        let mut v: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let topic = v["topic"].as_str().ok_or("no \"topic\"")?.to_string();
        let value = v.get_mut("value").map(Value::take).ok_or("no \"value\"")?;
        let event = match topic.as_str() {
            UnderlyingTick::TOPIC => self.tick.from_json(value).map(MarketEvent::Tick),
            OptionQuote::TOPIC => self.quote.from_json(value).map(MarketEvent::Quote),
            OptionChain::TOPIC => self.chain.from_json(value).map(MarketEvent::Chain),
            other => return Err(format!("unknown topic {other:?}: expected one of the market.* topics")),
        }
        .map_err(|e| match e.path.as_str() {
            "." => format!("value: {}", e.message),
            path => format!("value.{path}: {}", e.message),
        })?;
        let key = match &v["key"] {
            Value::String(k) => k.clone(),
            Value::Null => event.key(),
            other => return Err(format!("key: expected a string, got {other}")),
        };
        Ok(Recorded { key, event })
    }
}

/// Writes produced messages to an NDJSON file.
pub struct Recorder {
    out: BufWriter<File>,
    forms: Forms,
}

impl Recorder {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            out: BufWriter::new(file),
            forms: Forms::default(),
        })
    }

    /// Appends one message.
    pub fn write(&mut self, key: &str, event: &MarketEvent) -> Result<()> {
        writeln!(self.out, "{}", self.forms.line(key, event)).context("writing the recording")
    }

    /// Flushes what is buffered.
    pub fn finish(mut self) -> Result<()> {
        self.out.flush().context("writing the recording")
    }
}

/// The messages of an NDJSON recording, or its bad lines; blank lines are skipped.
pub(super) fn messages(reader: BufReader<File>) -> impl Iterator<Item = Result<Recorded, BadLine>> {
    let forms = Forms::default();
    reader.lines().enumerate().filter_map(move |(i, line)| {
        let line_no = i as u64 + 1;
        match line {
            Err(e) => Some(Err(BadLine {
                line: line_no,
                message: format!("unreadable: {e}"),
            })),
            Ok(text) if text.trim().is_empty() => None,
            Ok(text) => Some(forms.parse(&text).map_err(|message| BadLine { line: line_no, message })),
        }
    })
}
