//! The live view's questions to ClickHouse, each a fixed query whose values are validated
//! by their types and bound client-side by the clickhouse crate (never SQL from a client):
//! the latest chains and ticks to seed the channels with at start (chains `FINAL`), the
//! current candles, and a chain's metrics over its session.

use crate::board::Candle;
use anyhow::{Context, Result};
use chainflow_clickhouse::rows::{option_type_of, price_source_of, OptionRow, SnapshotRow, TickRow};
use chainflow_contract::{EnrichedOption, EnrichedOptionChain, EnrichedStrike, OptionType, UnderlyingTick};
use chrono::NaiveDate;
use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The database and the client.
#[derive(Clone)]
pub struct Store {
    client: Client,
    database: String,
}

#[derive(Row, Deserialize)]
struct CandleRow {
    product: String,
    interval_minutes: u8,
    bucket: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: i64,
    ticks: u64,
}

/// One minute of a chain's metrics (the minute's last chain), for the page's session charts.
#[derive(Debug, Row, Deserialize, Serialize)]
pub struct MinuteMetrics {
    /// The minute, seconds since the epoch.
    pub minute: i64,
    /// Spot.
    pub spot: f64,
    /// Put-call ratio of open interest.
    pub pcr_oi: Option<f64>,
    /// Max pain strike.
    pub max_pain_strike: Option<f64>,
    /// ATM implied volatility.
    pub atm_iv: Option<f64>,
    /// 25-delta skew.
    pub iv_skew_25d: Option<f64>,
}

/// The snapshot of the latest chain of each product and expiry, `hours` back from the newest.
const LATEST_CHAINS: &str = "SELECT product, expiry, max(event_time_us) FROM {db}.chain_snapshots \
     WHERE event_time >= (SELECT max(event_time) FROM {db}.chain_snapshots) - ? GROUP BY product, expiry";

impl Store {
    /// Queries `database` through `client`.
    pub fn new(client: Client, database: &str) -> Self {
        Self {
            client,
            database: database.to_string(),
        }
    }

    fn sql(&self, template: &str) -> String {
        template
            .replace("{latest}", LATEST_CHAINS)
            .replace("{db}", &self.database)
    }

    /// The latest chain of each product and expiry with chains in the `hours` before the
    /// newest one stored (the newest processing of each: `FINAL`).
    pub async fn latest_chains(&self, hours: u64) -> Result<Vec<EnrichedOptionChain>> {
        let seconds = hours.saturating_mul(3600);
        let snapshots: Vec<SnapshotRow> = self
            .client
            .query(&self.sql(
                "SELECT ?fields FROM {db}.chain_snapshots FINAL WHERE (product, expiry, event_time_us) IN ({latest})",
            ))
            .bind(seconds)
            .fetch_all()
            .await
            .context("reading the latest chain snapshots")?;
        let options: Vec<OptionRow> = self
            .client
            .query(&self.sql(
                "SELECT ?fields FROM {db}.chain_options FINAL WHERE (product, expiry, event_time_us) IN ({latest}) \
                 ORDER BY product, expiry, strike, option_type",
            ))
            .bind(seconds)
            .fetch_all()
            .await
            .context("reading the options of the latest chains")?;
        Ok(assemble(snapshots, options))
    }

    /// The latest tick of each product with ticks in the `hours` before the newest one.
    pub async fn latest_ticks(&self, hours: u64) -> Result<Vec<UnderlyingTick>> {
        let rows: Vec<TickRow> = self
            .client
            .query(&self.sql(
                "SELECT ?fields FROM {db}.underlying_ticks \
                 WHERE event_time >= (SELECT max(event_time) FROM {db}.underlying_ticks) - ? \
                 ORDER BY product, event_time_us DESC, seq DESC LIMIT 1 BY product",
            ))
            .bind(hours.saturating_mul(3600))
            .fetch_all()
            .await
            .context("reading the latest ticks")?;
        Ok(rows
            .into_iter()
            .map(|r| UnderlyingTick {
                product: r.product,
                price: r.price,
                volume: r.volume,
                event_time: r.event_time_us,
                seq: r.seq,
            })
            .collect())
    }

    /// The newest candle of each product and interval starting at or after `since`
    /// (seconds since the epoch), from the `candles` view, by product.
    pub async fn current_candles(&self, since: i64) -> Result<BTreeMap<String, Vec<Candle>>> {
        let rows: Vec<CandleRow> = self
            .client
            .query(&self.sql(
                "SELECT product, interval_minutes, toInt64(toUnixTimestamp(bucket)) AS bucket_s, open, high, \
                 low, close, volume, ticks FROM {db}.candles WHERE bucket >= toDateTime(?) \
                 ORDER BY product, interval_minutes, bucket DESC LIMIT 1 BY product, interval_minutes",
            ))
            .bind(since.max(0))
            .fetch_all()
            .await
            .context("reading the current candles")?;
        let mut by_product: BTreeMap<String, Vec<Candle>> = BTreeMap::new();
        for r in rows {
            by_product.entry(r.product).or_default().push(Candle {
                interval_minutes: r.interval_minutes,
                bucket: r.bucket,
                open: r.open,
                high: r.high,
                low: r.low,
                close: r.close,
                volume: r.volume,
                ticks: r.ticks,
            });
        }
        Ok(by_product)
    }

    /// The metrics of the chain of `product` and `expiry`, minute by minute from `since`
    /// (seconds since the epoch), from the `chain_metrics_1m` view.
    pub async fn session(&self, product: &str, expiry: NaiveDate, since: i64) -> Result<Vec<MinuteMetrics>> {
        self.client
            .query(&self.sql(
                "SELECT toInt64(toUnixTimestamp(minute)) AS minute_s, spot, pcr_oi, max_pain_strike, atm_iv, \
                 iv_skew_25d FROM {db}.chain_metrics_1m \
                 WHERE product = ? AND expiry = toDate(?) AND minute >= toDateTime(?) ORDER BY minute",
            ))
            .bind(product)
            .bind(expiry.format("%Y-%m-%d").to_string())
            .bind(since.max(0))
            .fetch_all()
            .await
            .with_context(|| format!("reading the session of {product} {expiry}"))
    }
}

/// A strike's call and put, as their rows arrive.
type Pair = (Option<EnrichedOption>, Option<EnrichedOption>);

/// Chains from their snapshot rows and option rows (ordered by product, expiry, strike).
fn assemble(snapshots: Vec<SnapshotRow>, options: Vec<OptionRow>) -> Vec<EnrichedOptionChain> {
    let mut pairs: BTreeMap<(String, i32), Vec<(f64, Pair)>> = BTreeMap::new();
    for o in options {
        let option = chainflow_contract::option_quote!(chainflow_contract::then [chainflow_contract::option_analytics, chainflow_contract::literal_with_two_lists [
            EnrichedOption,
            o,
            o,
            {
                feed_iv: o.feed_iv,
                price: o.price,
                price_source: price_source_of(o.price_source),
            }
        ]]);
        let strikes = pairs.entry((o.product, i32::from(o.expiry))).or_default();
        if strikes.last().is_none_or(|(k, _)| *k != o.strike) {
            strikes.push((o.strike, (None, None)));
        }
        let (_, pair) = strikes.last_mut().expect("just pushed");
        match option_type_of(o.option_type) {
            Some(OptionType::Call) => pair.0 = Some(option),
            Some(OptionType::Put) => pair.1 = Some(option),
            None => {} // not a code of the table's Enum8
        }
    }
    let mut strikes: BTreeMap<(String, i32), Vec<EnrichedStrike>> = pairs
        .into_iter()
        .map(|(chain, pairs)| {
            let complete = pairs.into_iter().filter_map(|(strike, pair)| match pair {
                (Some(call), Some(put)) => Some(EnrichedStrike { strike, call, put }),
                _ => None,
            });
            (chain, complete.collect())
        })
        .collect();
    snapshots
        .into_iter()
        .map(|s| {
            chainflow_contract::chain_metrics!(chainflow_contract::literal_with_fields [
                EnrichedOptionChain,
                s,
                {
                    strikes: strikes
                        .remove(&(s.product.clone(), i32::from(s.expiry)))
                        .unwrap_or_default(),
                    product: s.product,
                    expiry: i32::from(s.expiry),
                    lot_size: s.lot_size,
                    spot: s.spot,
                    event_time: s.event_time_us,
                    seq: s.seq,
                    rate: s.rate,
                    dividend_yield: s.dividend_yield,
                    time_to_expiry: s.time_to_expiry,
                    analytics_version: s.analytics_version,
                    source_topic: s.source_topic,
                    source_partition: s.source_partition,
                    source_offset: s.source_offset,
                    processed_at: s.processed_at_us,
                }
            ])
        })
        .collect()
}
