//! CSV recordings of option-chain snapshots, one row per strike ([`CSV_HEADER`]);
//! consecutive rows with the same product, expiry, event time and seq form one snapshot.

use super::{BadLine, Recorded};
use crate::sim::MarketEvent;
use anyhow::{Context, Result};
use chainflow_contract::keys::days_from_date;
use chainflow_contract::{OptionChain, Quote, Record, StrikeQuotes};
use std::fmt::Write;
use std::fs::File;
use std::io::BufReader;

/// Columns of the CSV layout for chain snapshots.
pub const CSV_HEADER: &str = "product,expiry,lot_size,spot,event_time,seq,strike,\
call_bid,call_ask,call_last,call_volume,call_oi,call_oi_change,call_iv,\
put_bid,put_ask,put_last,put_volume,put_oi,put_oi_change,put_iv";

/// The parsed identity of a CSV snapshot: product, expiry, lot size, spot, event time, seq.
type SnapshotHead = (String, i32, i32, f64, i64, i64);

/// The snapshot being assembled from consecutive CSV rows.
struct Open {
    /// The raw text of the identifying columns: consecutive rows with the same text belong
    /// to one snapshot.
    ident: String,
    head: SnapshotHead,
    strikes: Vec<StrikeQuotes>,
    /// A bad row was (or may have been) part of it: it is not sent.
    spoiled: bool,
}

/// Chain snapshots from the CSV layout. A row whose identifying columns do not parse
/// cannot be placed: if the rows around it belong to one snapshot, that snapshot is
/// skipped; if it sits between two, both are.
pub(super) struct CsvChains {
    rows: csv::StringRecordsIntoIter<BufReader<File>>,
    open: Option<Open>,
    /// An unplaceable row came after the open snapshot's last row.
    doubt: bool,
    /// A bad line to report before reading on.
    bad: Option<BadLine>,
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
    pub(super) fn new(reader: BufReader<File>) -> Result<Self> {
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
            doubt: false,
            bad: None,
            done: false,
        })
    }

    /// The open snapshot as a message, unless a bad row spoiled it.
    fn close(&mut self) -> Option<Recorded> {
        let open = self.open.take()?;
        let (product, expiry, lot_size, spot, event_time, seq) = open.head;
        let chain = OptionChain {
            product,
            expiry,
            lot_size,
            spot,
            event_time,
            seq,
            strikes: open.strikes,
        };
        (!open.spoiled).then(|| Recorded {
            key: chain.key(),
            event: MarketEvent::Chain(chain),
        })
    }

    /// Takes in one readable row; returns a finished snapshot, if the row began another.
    fn row(&mut self, r: &csv::StringRecord) -> Option<Recorded> {
        let line = r.position().map_or(0, csv::Position::line);
        let head = match head(r) {
            Ok(h) => h,
            Err(message) => {
                self.doubt = true;
                self.bad = Some(BadLine {
                    line,
                    message: format!("{message}; the snapshot it belongs to is not sent"),
                });
                return None;
            }
        };
        let ident = (0..6)
            .map(|i| r.get(i).unwrap_or_default().trim())
            .collect::<Vec<_>>()
            .join("\u{1f}");
        let doubt = std::mem::take(&mut self.doubt);
        let finished = match &mut self.open {
            Some(open) if open.ident == ident => {
                open.spoiled |= doubt;
                None
            }
            _ => {
                if let Some(open) = &mut self.open {
                    open.spoiled |= doubt;
                }
                let finished = self.close();
                self.open = Some(Open {
                    ident,
                    head,
                    strikes: Vec::new(),
                    spoiled: doubt,
                });
                finished
            }
        };
        let open = self.open.as_mut().expect("a snapshot is open");
        match strike_row(r) {
            Ok(s) => open.strikes.push(s),
            Err(message) => {
                open.spoiled = true;
                self.bad = Some(BadLine {
                    line,
                    message: format!("{message}; its snapshot is not sent"),
                });
            }
        }
        finished
    }
}

impl Iterator for CsvChains {
    type Item = Result<Recorded, BadLine>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(bad) = self.bad.take() {
                return Some(Err(bad));
            }
            if self.done {
                return None;
            }
            let finished = match self.rows.next() {
                Some(Ok(r)) => self.row(&r),
                Some(Err(e)) => {
                    self.doubt = true;
                    self.bad = Some(BadLine {
                        line: e.position().map_or(0, csv::Position::line),
                        message: format!("unreadable: {e}; the snapshot it belongs to is not sent"),
                    });
                    None
                }
                None => {
                    self.done = true;
                    if let Some(open) = &mut self.open {
                        open.spoiled |= self.doubt;
                    }
                    self.close()
                }
            };
            if let Some(r) = finished {
                return Some(Ok(r));
            }
        }
    }
}

/// Writes `chain` in the CSV layout (one row per strike), for tests and tools.
pub fn csv_rows(chain: &OptionChain) -> String {
    let expiry = chainflow_contract::keys::date_from_days(chain.expiry);
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
    let mut out = String::new();
    for s in &chain.strikes {
        writeln!(
            out,
            "{},{expiry},{},{},{time},{},{},{},{}",
            chain.product,
            chain.lot_size,
            chain.spot,
            chain.seq,
            s.strike,
            side(&s.call),
            side(&s.put)
        )
        .expect("writing to a String cannot fail");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::read;

    fn chain(seq: i64) -> OptionChain {
        let q = Quote {
            bid: 1.0,
            ask: 1.5,
            last: 1.25,
            volume: 3,
            oi: 40,
            oi_change: -2,
            iv: Some(0.2),
        };
        OptionChain {
            product: "NIFTY".into(),
            expiry: 20118,
            lot_size: 50,
            spot: 21543.25,
            event_time: 1_737_949_500_000_000 + seq * 1_000_000,
            seq,
            strikes: (0..4)
                .map(|i| StrikeQuotes {
                    strike: 21_450.0 + 50.0 * f64::from(i),
                    call: q.clone(),
                    put: Quote { iv: None, ..q.clone() },
                })
                .collect(),
        }
    }

    /// Reads a CSV made of three 4-strike snapshots, with `edit` applied to its lines
    /// (line 1 is the header); returns the seqs sent and the bad line numbers.
    fn read_csv(name: &str, edit: impl Fn(&mut Vec<String>)) -> (Vec<i64>, Vec<u64>) {
        let mut lines = vec![CSV_HEADER.to_string()];
        for seq in 1..=3 {
            lines.extend(csv_rows(&chain(seq)).lines().map(str::to_string));
        }
        edit(&mut lines);
        let path = std::env::temp_dir().join(format!("chainflow-csv-{}-{name}.csv", std::process::id()));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let (mut sent, mut bad) = (Vec::new(), Vec::new());
        for item in read(&path).unwrap() {
            match item {
                Ok(Recorded {
                    event: MarketEvent::Chain(c),
                    ..
                }) => {
                    assert_eq!(c, chain(c.seq), "a snapshot is sent whole");
                    sent.push(c.seq);
                }
                Ok(other) => panic!("{other:?}"),
                Err(b) => bad.push(b.line),
            }
        }
        (sent, bad)
    }

    #[test]
    fn snapshots_round_trip_through_the_csv_layout() {
        assert_eq!(read_csv("clean", |_| {}), (vec![1, 2, 3], vec![]));
    }

    #[test]
    fn a_bad_quote_skips_only_its_snapshot() {
        // line 6 is the first row of the second snapshot
        let (sent, bad) = read_csv("quote", |l| l[5] = l[5].replace(",1.5,", ",cheap,"));
        assert_eq!((sent, bad), (vec![1, 3], vec![6]));
        let (sent, bad) = read_csv("last-row", |l| l[12] = l[12].replace(",40,", ",-,"));
        assert_eq!((sent, bad), (vec![1, 2], vec![13]));
    }

    #[test]
    fn an_unplaceable_row_skips_the_snapshots_it_may_belong_to() {
        // inside the second snapshot: only that one
        let (sent, bad) = read_csv("inside", |l| l[6] = l[6].replacen(",2025-01-30,", ",30/01/2025,", 1));
        assert_eq!((sent, bad), (vec![1, 3], vec![7]));
        // between the first and the second: both
        let (sent, bad) = read_csv("between", |l| l[5] = l[5].replacen(",2025-01-30,", ",30/01/2025,", 1));
        assert_eq!((sent, bad), (vec![3], vec![6]));
        // the very last row: the last snapshot
        let (sent, bad) = read_csv("end", |l| {
            l[12] = l[12].replacen("NIFTY,2025-01-30,50,", "NIFTY,2025-01-30,fifty,", 1);
        });
        assert_eq!((sent, bad), (vec![1, 2], vec![13]));
    }
}
