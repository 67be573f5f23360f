//! Recorded feeds. NDJSON: one message per line, `{"topic": ..., "key": ..., "value": ...}`
//! with the value in the JSON form of `chainflow analyze` (RFC 3339 µs UTC times,
//! YYYY-MM-DD dates, CALL/PUT, null). CSV: option-chain snapshots, one row per strike
//! ([`CSV_HEADER`]); consecutive rows with the same product, expiry, event time and seq
//! form one snapshot.

use crate::sim::MarketEvent;
use anyhow::{Context, Result};
use chainflow_schemas::keys::days_from_date;
use chainflow_schemas::{JsonForm, OptionChain, OptionQuote, Quote, Record, StrikeQuotes, UnderlyingTick};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

/// Columns of the CSV layout for chain snapshots.
pub const CSV_HEADER: &str = "product,expiry,lot_size,spot,event_time,seq,strike,\
call_bid,call_ask,call_last,call_volume,call_oi,call_oi_change,call_iv,\
put_bid,put_ask,put_last,put_volume,put_oi,put_oi_change,put_iv";

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
        .map_err(|e| format!("value.{e}"))?;
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

/// Reads a recording, NDJSON or (for a `.csv` file) chain snapshots, message by message.
pub fn read(path: &Path) -> Result<Box<dyn Iterator<Item = Result<Recorded, BadLine>>>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = BufReader::new(file);
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
        Ok(Box::new(CsvChains::new(reader)?))
    } else {
        let forms = Forms::default();
        Ok(Box::new(reader.lines().enumerate().filter_map(move |(i, line)| {
            let line_no = i as u64 + 1;
            match line {
                Err(e) => Some(Err(BadLine {
                    line: line_no,
                    message: format!("unreadable: {e}"),
                })),
                Ok(text) if text.trim().is_empty() => None,
                Ok(text) => Some(forms.parse(&text).map_err(|message| BadLine { line: line_no, message })),
            }
        })))
    }
}

/// Snapshot identity of a CSV row: product, expiry, lot size, spot, event time, seq.
type SnapshotHead = (String, i32, i32, f64, i64, i64);

/// Chain snapshots from the CSV layout.
struct CsvChains {
    rows: csv::StringRecordsIntoIter<BufReader<File>>,
    /// The snapshot being assembled, and whether a bad row spoiled it.
    open: Option<(SnapshotHead, Vec<StrikeQuotes>, bool)>,
    /// A bad line to report before the next snapshot.
    bad: Vec<BadLine>,
    done: bool,
}

fn field<T: std::str::FromStr>(r: &csv::StringRecord, i: usize, name: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    let text = r.get(i).ok_or_else(|| format!("{name}: missing column"))?.trim();
    text.parse().map_err(|e| format!("{name}: {e} ({text:?})"))
}

fn head(r: &csv::StringRecord) -> Result<SnapshotHead, String> {
    let expiry = r.get(1).unwrap_or_default().trim();
    let expiry = chrono::NaiveDate::parse_from_str(expiry, "%Y-%m-%d")
        .map(days_from_date)
        .map_err(|e| format!("expiry: expected YYYY-MM-DD, got {expiry:?} ({e})"))?;
    let time = r.get(4).unwrap_or_default().trim();
    let event_time = match time.parse::<i64>() {
        Ok(us) => us,
        Err(_) => chrono::DateTime::parse_from_rfc3339(time)
            .map_err(|e| format!("event_time: expected an RFC 3339 time, got {time:?} ({e})"))?
            .timestamp_micros(),
    };
    Ok((
        field(r, 0, "product")?,
        expiry,
        field(r, 2, "lot_size")?,
        field(r, 3, "spot")?,
        event_time,
        field(r, 5, "seq")?,
    ))
}

fn quote(r: &csv::StringRecord, at: usize, side: &str) -> Result<Quote, String> {
    let name = |f: &str| format!("{side}_{f}");
    let iv = r.get(at + 6).unwrap_or_default().trim();
    Ok(Quote {
        bid: field(r, at, &name("bid"))?,
        ask: field(r, at + 1, &name("ask"))?,
        last: field(r, at + 2, &name("last"))?,
        volume: field(r, at + 3, &name("volume"))?,
        oi: field(r, at + 4, &name("oi"))?,
        oi_change: field(r, at + 5, &name("oi_change"))?,
        iv: if iv.is_empty() || iv == "null" {
            None
        } else {
            Some(field(r, at + 6, &name("iv"))?)
        },
    })
}

fn strike_row(r: &csv::StringRecord) -> Result<StrikeQuotes, String> {
    if r.len() != CSV_HEADER.split(',').count() {
        return Err(format!(
            "{} columns, expected {}",
            r.len(),
            CSV_HEADER.split(',').count()
        ));
    }
    Ok(StrikeQuotes {
        strike: field(r, 6, "strike")?,
        call: quote(r, 7, "call")?,
        put: quote(r, 14, "put")?,
    })
}

impl CsvChains {
    fn new(reader: BufReader<File>) -> Result<Self> {
        let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
        let header: Vec<String> = csv
            .headers()
            .context("reading the CSV header")?
            .iter()
            .map(str::to_string)
            .collect();
        if header.join(",") != CSV_HEADER {
            anyhow::bail!("line 1: expected the header {CSV_HEADER}");
        }
        Ok(Self {
            rows: csv.into_records(),
            open: None,
            bad: Vec::new(),
            done: false,
        })
    }

    /// The open snapshot as a message, unless a bad row spoiled it.
    fn close(&mut self) -> Option<Recorded> {
        let ((product, expiry, lot_size, spot, event_time, seq), strikes, spoiled) = self.open.take()?;
        let chain = OptionChain {
            product,
            expiry,
            lot_size,
            spot,
            event_time,
            seq,
            strikes,
        };
        (!spoiled).then(|| Recorded {
            key: chain.key(),
            event: MarketEvent::Chain(chain),
        })
    }
}

impl Iterator for CsvChains {
    type Item = Result<Recorded, BadLine>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(bad) = self.bad.pop() {
                return Some(Err(bad));
            }
            if self.done {
                return None;
            }
            let Some(row) = self.rows.next() else {
                self.done = true;
                match self.close() {
                    Some(r) => return Some(Ok(r)),
                    None => continue,
                }
            };
            let (line, parsed) = match row {
                Ok(r) => (
                    r.position().map_or(0, |p| p.line()),
                    head(&r).map(|h| (h, strike_row(&r))),
                ),
                Err(e) => (e.position().map_or(0, |p| p.line()), Err(format!("unreadable: {e}"))),
            };
            let same = |h: &SnapshotHead, open: &Option<(SnapshotHead, Vec<StrikeQuotes>, bool)>| {
                open.as_ref().is_some_and(|(o, _, _)| o == h)
            };
            match parsed {
                Ok((h, strike)) => {
                    let finished = if same(&h, &self.open) { None } else { self.close() };
                    let (_, strikes, spoiled) = self.open.get_or_insert_with(|| (h, Vec::new(), false));
                    match strike {
                        Ok(s) => strikes.push(s),
                        Err(message) => {
                            *spoiled = true;
                            self.bad.push(BadLine {
                                line,
                                message: format!("{message}; its snapshot is not sent"),
                            });
                        }
                    }
                    if let Some(r) = finished {
                        return Some(Ok(r));
                    }
                }
                Err(message) => {
                    if let Some((_, _, spoiled)) = &mut self.open {
                        *spoiled = true;
                    }
                    self.bad.push(BadLine {
                        line,
                        message: format!("{message}; the snapshot it belongs to is not sent"),
                    });
                }
            }
        }
    }
}

/// Writes `chain` in the CSV layout (one row per strike), for tests and tools.
pub fn csv_rows(chain: &OptionChain) -> String {
    let expiry = chainflow_schemas::keys::date_from_days(chain.expiry);
    let time = chrono::DateTime::from_timestamp_micros(chain.event_time)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default();
    let side = |q: &Quote| {
        let iv = q.iv.map(|v| v.to_string()).unwrap_or_default();
        format!(
            "{},{},{},{},{},{},{iv}",
            q.bid, q.ask, q.last, q.volume, q.oi, q.oi_change
        )
    };
    chain
        .strikes
        .iter()
        .map(|s| {
            format!(
                "{},{expiry},{},{},{time},{},{},{},{}\n",
                chain.product,
                chain.lot_size,
                chain.spot,
                chain.seq,
                s.strike,
                side(&s.call),
                side(&s.put)
            )
        })
        .collect()
}
