//! What the live view shows, built from records: every record that arrives (from Kafka, or
//! from ClickHouse at start) becomes the new state of its channels, in the JSON clients get.
//! Pure apart from publishing to the [`Hub`].

use crate::channel::Channel;
use crate::hub::Hub;
use chainflow_contract::keys::date_from_days;
use chainflow_contract::{EnrichedOptionChain, JsonForm, UnderlyingTick};
use chrono::{DateTime, NaiveDate, SecondsFormat};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One candle of an underlying, as ClickHouse's `candles` view has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candle {
    /// 1, 5 or 15.
    pub interval_minutes: u8,
    /// The candle's start, seconds since the epoch.
    pub bucket: i64,
    /// First price.
    pub open: f64,
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Last price.
    pub close: f64,
    /// Volume traded in the candle.
    pub volume: i64,
    /// Distinct ticks in the candle.
    pub ticks: u64,
}

/// The latest tick of a product, in its JSON form, and what orders it.
struct Tick {
    json: Value,
    order: (i64, i64),
    produced_us: Option<i64>,
}

/// Turns records into channel states.
pub struct Board {
    hub: Arc<Hub>,
    chains: JsonForm<EnrichedOptionChain>,
    ticks: JsonForm<UnderlyingTick>,
    /// Per product, the metrics of each expiry's latest chain.
    metrics: HashMap<String, BTreeMap<NaiveDate, Value>>,
    /// Per product, the latest tick.
    last_tick: HashMap<String, Tick>,
    /// Per product, the current candles (1, 5 and 15 minutes).
    candles: HashMap<String, Vec<Candle>>,
}

impl Board {
    /// A board publishing to `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            chains: JsonForm::new(),
            ticks: JsonForm::new(),
            metrics: HashMap::new(),
            last_tick: HashMap::new(),
            candles: HashMap::new(),
        }
    }

    /// A chain: the state of its `chain:` channel and, unless an older chain than the one
    /// shown, its expiry's entry in `metrics:`.
    pub fn chain(&mut self, chain: &EnrichedOptionChain, produced_us: Option<i64>) {
        let expiry = date_from_days(chain.expiry);
        let channel = Channel::Chain {
            product: chain.product.clone(),
            expiry,
        };
        let data = self.chains.to_json(chain).to_string();
        if !self.hub.publish(
            &channel,
            data,
            produced_us,
            Some((chain.event_time, chain.processed_at)),
        ) {
            return;
        }
        let expiries = self.metrics.entry(chain.product.clone()).or_default();
        expiries.insert(expiry, chain_metrics(chain));
        let data = json!({
            "product": chain.product,
            "expiries": expiries.values().collect::<Vec<_>>(),
        });
        self.hub.publish(
            &Channel::Metrics {
                product: chain.product.clone(),
            },
            data.to_string(),
            produced_us,
            None,
        );
    }

    /// A tick: the state of its `underlying:` channel, with the product's current candles.
    pub fn tick(&mut self, tick: &UnderlyingTick, produced_us: Option<i64>) {
        let order = (tick.event_time, tick.seq);
        if self.last_tick.get(&tick.product).is_some_and(|t| t.order >= order) {
            return; // older, or the same tick again
        }
        let json = self.ticks.to_json(tick);
        self.last_tick.insert(
            tick.product.clone(),
            Tick {
                json,
                order,
                produced_us,
            },
        );
        self.publish_underlying(&tick.product);
    }

    /// The current candles of `product` (from ClickHouse): published with its latest tick
    /// when they changed.
    pub fn candles(&mut self, product: &str, candles: Vec<Candle>) {
        if self.candles.get(product) == Some(&candles) {
            return;
        }
        self.candles.insert(product.to_string(), candles);
        self.publish_underlying(product);
    }

    /// The products with a tick, and the newest event time of any tick, µs.
    pub fn newest_tick_us(&self) -> Option<i64> {
        self.last_tick.values().map(|t| t.order.0).max()
    }

    fn publish_underlying(&self, product: &str) {
        let Some(tick) = self.last_tick.get(product) else {
            return; // candles alone wait for a tick to go with
        };
        let mut data = tick.json.clone();
        let candles: serde_json::Map<String, Value> = self
            .candles
            .get(product)
            .into_iter()
            .flatten()
            .map(|c| (format!("{}m", c.interval_minutes), candle_json(c)))
            .collect();
        data["candles"] = Value::Object(candles);
        self.hub.publish(
            &Channel::Underlying {
                product: product.to_string(),
            },
            data.to_string(),
            tick.produced_us,
            None,
        );
    }
}

/// The metrics of one chain, as `metrics:` channels list them per expiry.
fn chain_metrics(c: &EnrichedOptionChain) -> Value {
    let mut metrics = serde_json::to_value(c.metrics()).expect("metrics are numbers");
    metrics["expiry"] = json!(date_from_days(c.expiry).format("%Y-%m-%d").to_string());
    metrics["event_time"] = json!(time(c.event_time));
    metrics["spot"] = json!(c.spot);
    metrics
}

fn candle_json(c: &Candle) -> Value {
    json!({
        "bucket": time(c.bucket * 1_000_000),
        "open": c.open,
        "high": c.high,
        "low": c.low,
        "close": c.close,
        "volume": c.volume,
        "ticks": c.ticks,
    })
}

/// µs since the epoch as the JSON form writes times.
fn time(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainflow_contract::{ChainMetrics, EnrichedOption, EnrichedStrike, OptionAnalytics, PriceSource};

    fn option(iv: f64) -> EnrichedOption {
        let analytics = OptionAnalytics {
            iv: Some(iv),
            delta: Some(0.5),
            gamma: Some(0.01),
            theta: Some(-1.0),
            vega: Some(2.0),
            rho: Some(0.1),
        };
        chainflow_contract::option_analytics!(chainflow_contract::literal_with_fields [
            EnrichedOption,
            analytics,
            {
                bid: 10.0,
                ask: 11.0,
                last: 10.5,
                volume: 5,
                oi: 100,
                oi_change: 1,
                feed_iv: None,
                price: Some(10.5),
                price_source: PriceSource::Mid,
            }
        ])
    }

    fn chain(event_time: i64, processed_at: i64, iv: f64) -> EnrichedOptionChain {
        let metrics = ChainMetrics {
            pcr_oi: Some(1.0),
            pcr_volume: Some(1.0),
            atm_strike: 21_500.0,
            atm_straddle_price: Some(21.0),
            max_pain_strike: Some(21_500.0),
            total_call_oi: 100,
            total_put_oi: 100,
            atm_iv: Some(iv),
            ..ChainMetrics::default()
        };
        chainflow_contract::chain_metrics!(chainflow_contract::literal_with_fields [
            EnrichedOptionChain,
            metrics,
            {
                product: "NIFTY".into(),
                expiry: 20_818,
                lot_size: 50,
                spot: 21_500.0,
                event_time,
                seq: 1,
                strikes: vec![EnrichedStrike {
                    strike: 21_500.0,
                    call: option(iv),
                    put: option(iv + 0.01),
                }],
                rate: 0.065,
                dividend_yield: 0.0,
                time_to_expiry: 0.1,
                analytics_version: "test".into(),
                source_topic: "market.option_chain".into(),
                source_partition: 0,
                source_offset: 1,
                processed_at,
            }
        ])
    }

    fn data(hub: &Hub, channel: &str) -> Value {
        serde_json::from_str(&hub.latest(&channel.parse().unwrap()).unwrap().data).unwrap()
    }

    #[test]
    fn a_chain_is_its_json_form_and_an_entry_of_its_products_metrics() {
        let hub = Arc::new(Hub::default());
        let mut board = Board::new(hub.clone());
        let c = chain(1_000_000, 2_000_000, 0.2);
        board.chain(&c, Some(1_500_000));
        let shown = data(&hub, "chain:NIFTY:2026-12-31");
        assert_eq!(shown, JsonForm::<EnrichedOptionChain>::new().to_json(&c));
        assert_eq!(shown["strikes"][0]["call"]["iv"], 0.2);
        let m = data(&hub, "metrics:NIFTY");
        assert_eq!(m["expiries"][0]["expiry"], "2026-12-31");
        assert_eq!(m["expiries"][0]["atm_iv"], 0.2);
        assert_eq!(m["expiries"][0]["iv_skew_25d"], Value::Null);
    }

    #[test]
    fn an_older_chain_changes_neither_channel() {
        let hub = Arc::new(Hub::default());
        let mut board = Board::new(hub.clone());
        board.chain(&chain(2_000_000, 1, 0.3), None);
        board.chain(&chain(1_000_000, 9, 0.2), None);
        assert_eq!(data(&hub, "chain:NIFTY:2026-12-31")["atm_iv"], 0.3);
        assert_eq!(data(&hub, "metrics:NIFTY")["expiries"][0]["atm_iv"], 0.3);
        // the same chain processed again later replaces it
        board.chain(&chain(2_000_000, 2, 0.25), None);
        assert_eq!(data(&hub, "chain:NIFTY:2026-12-31")["atm_iv"], 0.25);
    }

    #[test]
    fn an_underlying_is_its_latest_tick_with_the_current_candles() {
        let hub = Arc::new(Hub::default());
        let mut board = Board::new(hub.clone());
        let candle = Candle {
            interval_minutes: 5,
            bucket: 1_700_000_100,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: 1.5,
            volume: 10,
            ticks: 3,
        };
        board.candles("NIFTY", vec![candle.clone()]);
        assert!(
            hub.latest(&"underlying:NIFTY".parse().unwrap()).is_none(),
            "no tick yet"
        );
        let tick = |seq, price| UnderlyingTick {
            product: "NIFTY".into(),
            price,
            volume: 7,
            event_time: 1_700_000_200_000_000,
            seq,
        };
        board.tick(&tick(2, 21_000.0), Some(5));
        board.tick(&tick(1, 20_000.0), Some(6));
        let u = data(&hub, "underlying:NIFTY");
        assert_eq!(u["price"], 21_000.0);
        assert_eq!(u["event_time"], "2023-11-14T22:16:40.000000Z");
        assert_eq!(u["candles"]["5m"]["high"], 2.0);
        assert_eq!(u["candles"]["5m"]["bucket"], "2023-11-14T22:15:00.000000Z");
        let version = hub.latest(&"underlying:NIFTY".parse().unwrap()).unwrap().version;
        board.candles("NIFTY", vec![candle]);
        assert_eq!(
            hub.latest(&"underlying:NIFTY".parse().unwrap()).unwrap().version,
            version,
            "unchanged candles publish nothing"
        );
    }
}
