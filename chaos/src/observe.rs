//! What the suite measures: rows stored (with and without `FINAL`), the natural keys
//! stored, dead letters, and the consumer groups' lag.

use anyhow::{Context, Result};
use chainflow_clickhouse::rows::option_type_code;
use chainflow_contract::{OptionChain, OptionQuote, OptionType, UnderlyingTick};
use chainflow_kafka::blocking;
use clickhouse::Client;
use rdkafka::consumer::BaseConsumer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How long one question to the broker may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The tables a scenario's records land in, with the column that names the product.
pub const TABLES: [&str; 4] = ["chain_snapshots", "chain_options", "underlying_ticks", "option_quotes"];

/// Row counts of one product per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `chain_snapshots`, `chain_options`, `underlying_ticks`, `option_quotes`.
    pub rows: [u64; 4],
}

impl Counts {
    /// The sum over the tables.
    pub fn total(&self) -> u64 {
        self.rows.iter().sum()
    }
}

/// Rows of `product` in each table, with `FINAL` or without.
pub async fn counts(db: &Client, product: &str, final_: bool) -> Result<Counts> {
    let mut out = Counts::default();
    for (i, table) in TABLES.iter().enumerate() {
        let f = if final_ { "FINAL" } else { "" };
        out.rows[i] = db
            .query(&format!("SELECT count() FROM {table} {f} WHERE product = ?"))
            .bind(product)
            .fetch_one()
            .await
            .with_context(|| format!("counting {table}"))?;
    }
    Ok(out)
}

/// The natural keys of one product's rows, per table of [`TABLES`] (each table's `ORDER BY`
/// less the product): what `FINAL` keeps one row of. Strikes are in hundredths, option
/// types by their Enum8 code, expiries in days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys(pub [BTreeSet<String>; 4]);

fn snapshot_key(expiry: i32, event_time_us: i64) -> String {
    format!("{expiry}|{event_time_us}")
}

fn tick_key(event_time_us: i64, seq: i64) -> String {
    format!("{event_time_us}|{seq}")
}

fn option_key(expiry: i32, event_time_us: i64, strike_cents: i64, option_type: i8) -> String {
    format!("{expiry}|{event_time_us}|{strike_cents}|{option_type}")
}

fn quote_key(expiry: i32, strike_cents: i64, option_type: i8, event_time_us: i64, seq: i64) -> String {
    format!("{expiry}|{strike_cents}|{option_type}|{event_time_us}|{seq}")
}

fn cents(strike: f64) -> i64 {
    (strike * 100.0).round() as i64
}

impl Keys {
    /// Adds the rows `chain` becomes: its snapshot and its options.
    pub fn add_chain(&mut self, chain: &OptionChain) {
        self.0[0].insert(snapshot_key(chain.expiry, chain.event_time));
        for s in &chain.strikes {
            for t in [OptionType::Call, OptionType::Put] {
                self.0[1].insert(option_key(
                    chain.expiry,
                    chain.event_time,
                    cents(s.strike),
                    option_type_code(t),
                ));
            }
        }
    }

    /// Adds the row `tick` becomes.
    pub fn add_tick(&mut self, tick: &UnderlyingTick) {
        self.0[2].insert(tick_key(tick.event_time, tick.seq));
    }

    /// Adds the row `quote` becomes.
    pub fn add_quote(&mut self, q: &OptionQuote) {
        self.0[3].insert(quote_key(
            q.expiry,
            cents(q.strike),
            option_type_code(q.option_type),
            q.event_time,
            q.seq,
        ));
    }

    /// Adds every key of `other`.
    pub fn extend(&mut self, other: Keys) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            mine.extend(theirs);
        }
    }

    /// Keys per table.
    pub fn counts(&self) -> Counts {
        Counts {
            rows: self.0.each_ref().map(|s| s.len() as u64),
        }
    }

    /// What `stored` lacks of these keys (missing) and holds beyond them (extra), per table:
    /// `(missing, extra, a line naming the first few of each)`, the line empty when both are 0.
    pub fn compare(&self, stored: &Keys) -> (u64, u64, String) {
        let (mut missing, mut extra, mut lines) = (0, 0, Vec::new());
        for ((table, want), have) in TABLES.iter().zip(&self.0).zip(&stored.0) {
            let lacks: Vec<&String> = want.difference(have).collect();
            let beyond: Vec<&String> = have.difference(want).collect();
            missing += lacks.len() as u64;
            extra += beyond.len() as u64;
            let first = |keys: &[&String]| keys.iter().take(3).map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
            if !lacks.is_empty() {
                lines.push(format!(
                    "{table}: {} keys missing, first {}",
                    lacks.len(),
                    first(&lacks)
                ));
            }
            if !beyond.is_empty() {
                lines.push(format!(
                    "{table}: {} keys extra, first {}",
                    beyond.len(),
                    first(&beyond)
                ));
            }
        }
        (missing, extra, lines.join("; "))
    }
}

#[derive(serde::Deserialize, clickhouse::Row)]
struct SnapshotKey {
    expiry: i32,
    event_time_us: i64,
}

#[derive(serde::Deserialize, clickhouse::Row)]
struct OptionKey {
    expiry: i32,
    event_time_us: i64,
    strike: i64,
    option_type: i8,
}

#[derive(serde::Deserialize, clickhouse::Row)]
struct TickKey {
    event_time_us: i64,
    seq: i64,
}

#[derive(serde::Deserialize, clickhouse::Row)]
struct QuoteKey {
    expiry: i32,
    strike: i64,
    option_type: i8,
    event_time_us: i64,
    seq: i64,
}

/// The natural keys of `product`'s rows stored, with `FINAL`.
pub async fn stored_keys(db: &Client, product: &str) -> Result<Keys> {
    const EXPIRY: &str = "toInt32(toUInt16(expiry)) AS expiry";
    const STRIKE: &str = "toInt64(round(strike * 100)) AS strike, CAST(option_type AS Int8) AS option_type";
    Ok(Keys([
        read_keys(
            db,
            product,
            TABLES[0],
            &format!("{EXPIRY}, event_time_us"),
            |k: SnapshotKey| snapshot_key(k.expiry, k.event_time_us),
        )
        .await?,
        read_keys(
            db,
            product,
            TABLES[1],
            &format!("{EXPIRY}, event_time_us, {STRIKE}"),
            |k: OptionKey| option_key(k.expiry, k.event_time_us, k.strike, k.option_type),
        )
        .await?,
        read_keys(db, product, TABLES[2], "event_time_us, seq", |k: TickKey| {
            tick_key(k.event_time_us, k.seq)
        })
        .await?,
        read_keys(
            db,
            product,
            TABLES[3],
            &format!("{EXPIRY}, {STRIKE}, event_time_us, seq"),
            |k: QuoteKey| quote_key(k.expiry, k.strike, k.option_type, k.event_time_us, k.seq),
        )
        .await?,
    ]))
}

/// The keys of `product`'s rows of `table` (with `FINAL`): its `columns` read as `R`, each
/// made a key by `key`.
async fn read_keys<R: clickhouse::RowOwned + clickhouse::RowRead>(
    db: &Client,
    product: &str,
    table: &str,
    columns: &str,
    key: impl Fn(R) -> String,
) -> Result<BTreeSet<String>> {
    Ok(db
        .query(&format!("SELECT {columns} FROM {table} FINAL WHERE product = ?"))
        .bind(product)
        .fetch_all::<R>()
        .await
        .with_context(|| format!("reading {table}'s keys"))?
        .into_iter()
        .map(key)
        .collect())
}

/// Dead letters of records keyed `key`, with `FINAL`.
pub async fn dead_letters(db: &Client, key: &str) -> Result<u64> {
    db.query("SELECT count() FROM dead_letters FINAL WHERE key = ?")
        .bind(key)
        .fetch_one()
        .await
        .context("counting dead_letters")
}

/// Merges every part of the tables (`OPTIMIZE ... FINAL`), after which duplicates are gone.
pub async fn optimize(db: &Client) -> Result<()> {
    for table in TABLES {
        db.query(&format!("OPTIMIZE TABLE {table} FINAL"))
            .execute()
            .await
            .with_context(|| format!("optimizing {table}"))?;
    }
    Ok(())
}

/// A consumer group and the topics it reads.
pub struct Group {
    /// Its id.
    pub id: String,
    consumer: Arc<BaseConsumer>,
    partitions: TopicPartitionList,
}

impl Group {
    /// `id` over `topics` (with their partition counts).
    pub fn new(kafka: &chainflow_config::KafkaConfig, id: &str, topics: &[(String, i32)]) -> Result<Self> {
        let consumer: BaseConsumer = chainflow_kafka::consumer_config(kafka, id)
            .create()
            .context("a consumer for offsets")?;
        let mut partitions = TopicPartitionList::new();
        for (topic, n) in topics {
            for p in 0..*n {
                partitions.add_partition(topic, p);
            }
        }
        Ok(Self {
            id: id.to_string(),
            consumer: Arc::new(consumer),
            partitions,
        })
    }

    /// Commits the current end of every partition: the group reads only what comes next.
    pub async fn commit_at_end(&self) -> Result<()> {
        let mut at_end = TopicPartitionList::new();
        for e in self.partitions.elements() {
            let (_, high) = blocking::fetch_watermarks(&self.consumer, e.topic(), e.partition(), TIMEOUT)
                .await
                .with_context(|| format!("watermarks of {}[{}]", e.topic(), e.partition()))?;
            at_end.add_partition_offset(e.topic(), e.partition(), Offset::Offset(high))?;
        }
        blocking::commit(&self.consumer, at_end)
            .await
            .with_context(|| format!("positioning {} at the end", self.id))
    }

    /// Its lag: high watermarks minus committed offsets, over its partitions; partitions with
    /// lag are listed as `topic[partition]`.
    pub async fn lag(&self) -> Result<(i64, Vec<String>)> {
        let committed = blocking::committed_offsets(&self.consumer, self.partitions.clone(), TIMEOUT)
            .await
            .with_context(|| format!("committed offsets of {}", self.id))?;
        let elements: Vec<(String, i32, Offset)> = committed
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition(), e.offset()))
            .collect();
        let highs = futures::future::join_all(
            elements
                .iter()
                .map(|(t, p, _)| blocking::fetch_watermarks(&self.consumer, t, *p, TIMEOUT)),
        )
        .await;
        let mut total = 0;
        let mut lagging = Vec::new();
        for ((topic, partition, committed), high) in elements.into_iter().zip(highs) {
            let (_, high) = high.with_context(|| format!("watermarks of {topic}[{partition}]"))?;
            let at = match committed {
                Offset::Offset(o) => o,
                _ => 0,
            };
            let lag = (high - at).max(0);
            if lag > 0 {
                lagging.push(format!("{topic}[{partition}]"));
            }
            total += lag;
        }
        Ok((total, lagging))
    }
}

/// The `/metrics` text of the component on `127.0.0.1:port`, asked again for up to 30 s
/// (a component just started again serves it only once it runs).
pub async fn scrape(port: u16) -> Result<String> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = match reqwest::get(&url).await.and_then(reqwest::Response::error_for_status) {
            Ok(r) => r.text().await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(text) => return Ok(text),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(e).with_context(|| format!("reading {url}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The sum of the series of `name` in a `/metrics` text whose labels include `label` (any
/// labels when empty), as a whole number.
pub fn sum(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, labels) = series.split_once('{').unwrap_or((series, ""));
            n == name && labels.contains(label)
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_summed_over_the_labels_asked_for() {
        let text = "# HELP chainflow_sink_rebalances_total x\n\
                    chainflow_sink_rebalances_total{stream=\"chains\",change=\"revoked\"} 2\n\
                    chainflow_sink_rebalances_total{stream=\"ticks\",change=\"revoked\"} 1\n\
                    chainflow_sink_rebalances_total{stream=\"ticks\",change=\"assigned\"} 3\n\
                    chainflow_sink_retries_total{stream=\"ticks\"} 5\n\
                    chainflow_sink_retries_total_other 7\n";
        assert_eq!(sum(text, "chainflow_sink_rebalances_total", "change=\"revoked\""), 3);
        assert_eq!(sum(text, "chainflow_sink_retries_total", ""), 5);
        assert_eq!(sum(text, "chainflow_sink_stalls_total", ""), 0);
    }
}
