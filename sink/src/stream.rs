//! The streams the sink writes: what a record of each becomes in ClickHouse. Pure encoding
//! and one insert per table; the loop that batches, retries and commits is `worker`.

use crate::rows::{
    dead_letter_row, option_rows, quote_row, snapshot_row, tick_row, DeadLetterRow, OptionRow, Origin, QuoteRow,
    SnapshotRow, TickRow,
};
use chainflow_clickhouse::{classify, timed_out, Failure};
use chainflow_codec::{Codec, CodecError, Position, UnknownIdGrace};
use chainflow_contract::topics::{dead_letter_topics, ENRICHED_CHAIN, OPTION_QUOTE, UNDERLYING};
use chainflow_contract::{EnrichedOptionChain, OptionQuote, Record, UnderlyingTick};
use clickhouse::{Client, Row, RowWrite};
use rdkafka::message::{Message, OwnedMessage};
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Why a record cannot become rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// The Schema Registry could not be reached: try again later, never dead-letter.
    Transient(String),
    /// The record's schema id is not known to the registry yet: hold its partition (up to
    /// `registry.unknown_id_grace_ms`, then the record is dead-lettered).
    Held(u32),
    /// The record can never be stored: dead-letter it with this kind and message.
    Permanent {
        /// Machine-readable kind.
        kind: &'static str,
        /// Human-readable reason.
        message: String,
    },
}

impl From<CodecError> for Reject {
    fn from(e: CodecError) -> Self {
        if e.is_transient() {
            Reject::Transient(e.to_string())
        } else {
            Reject::Permanent {
                kind: e.kind(),
                message: e.to_string(),
            }
        }
    }
}

/// One stream: the topics it reads, the tables it writes, and how a record becomes rows.
pub trait Stream: Send + Sync + 'static {
    /// The rows of one record.
    type Rows: Send + Sync + 'static;

    /// Its name in `sink.streams`, logs and metrics.
    const NAME: &'static str;
    /// The stage that writes it.
    const STAGE: &'static str;
    /// The tables it writes, in the order of the inserts.
    const TABLES: &'static [&'static str];
    /// Whether rows ClickHouse refuses are dead-lettered; if not (the dead letters
    /// themselves), they are logged, counted and skipped.
    const DEAD_LETTERS_REFUSED: bool = true;

    /// The topics it reads.
    fn topics(&self) -> Vec<String>;

    /// The rows of `msg`.
    fn decode(&self, msg: &OwnedMessage) -> impl Future<Output = Result<Self::Rows, Reject>> + Send;

    /// How many ClickHouse rows `rows` holds.
    fn row_count(rows: &Self::Rows) -> usize;

    /// When the event `rows` describe happened (µs since the epoch), for streams of market
    /// events; `None` for the others.
    fn event_time_us(rows: &Self::Rows) -> Option<i64>;

    /// The key and `seq` of a market event, for sequence gaps; `None` for the others.
    fn sequence(_rows: &Self::Rows) -> Option<(String, i64)> {
        None
    }

    /// Inserts the rows of `records`, each table under `token` and the table's name.
    fn insert(
        &self,
        client: &Client,
        records: &[&Self::Rows],
        token: Option<&str>,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// One INSERT of `rows` into `table`, with a deduplication token (servers 22.2+) and a
/// timeout on the whole exchange.
pub async fn insert<'a, T>(
    client: &Client,
    table: &str,
    rows: impl Iterator<Item = &'a T> + Send,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(), Failure>
where
    T: Row + RowWrite + Serialize + Sync + 'a + for<'b> Row<Value<'b> = T>,
{
    let work = async {
        let mut ins = client
            .insert::<T>(table)
            .await
            .map_err(|e| classify(&e))?
            .with_timeouts(Some(timeout), Some(timeout));
        if let Some(t) = token {
            ins = ins.with_setting("insert_deduplication_token", format!("{t}/{table}"));
        }
        let mut any = false;
        for r in rows {
            ins.write(r).await.map_err(|e| classify(&e))?;
            any = true;
        }
        if any {
            ins.end().await.map_err(|e| classify(&e))
        } else {
            Ok(())
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(timed_out(timeout)))
}

/// Avro records through the registry, waiting for unknown schema ids per partition.
pub struct Avro {
    codec: Arc<Codec>,
    grace: UnknownIdGrace,
}

impl Avro {
    /// Decodes with `codec`, waiting up to `grace` for an unknown id (counted for `stage`).
    pub fn new(codec: Arc<Codec>, grace: Duration, stage: &'static str) -> Self {
        Self {
            codec,
            grace: UnknownIdGrace::new(grace, stage),
        }
    }

    /// Decodes `msg` as an `R`.
    async fn decode<R: Record>(&self, msg: &OwnedMessage) -> Result<R, Reject> {
        match self.codec.decode::<R>(msg.payload().unwrap_or_default()).await {
            Ok(r) => Ok(r),
            Err(CodecError::UnknownSchema(id))
                if self.grace.waits(
                    Position {
                        topic: msg.topic(),
                        partition: msg.partition(),
                        offset: msg.offset(),
                    },
                    std::time::Instant::now(),
                ) =>
            {
                Err(Reject::Held(id))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// `enriched.option_chain` → `chain_options` and `chain_snapshots`.
pub struct Chains(pub Avro);

impl Stream for Chains {
    type Rows = (SnapshotRow, Vec<OptionRow>);
    const NAME: &'static str = "chains";
    const STAGE: &'static str = "sink.chains";
    const TABLES: &'static [&'static str] = &["chain_options", "chain_snapshots"];

    fn topics(&self) -> Vec<String> {
        vec![ENRICHED_CHAIN.into()]
    }

    async fn decode(&self, msg: &OwnedMessage) -> Result<Self::Rows, Reject> {
        let chain: EnrichedOptionChain = self.0.decode(msg).await?;
        let mut options = Vec::with_capacity(chain.strikes.len() * 2);
        option_rows(&chain, &mut options);
        Ok((snapshot_row(&chain), options))
    }

    fn row_count(rows: &Self::Rows) -> usize {
        1 + rows.1.len()
    }

    fn event_time_us(rows: &Self::Rows) -> Option<i64> {
        Some(rows.0.event_time_us)
    }

    fn sequence(rows: &Self::Rows) -> Option<(String, i64)> {
        Some((format!("{}|{}", rows.0.product, rows.0.expiry), rows.0.seq))
    }

    /// Options first, so a chain visible in `chain_snapshots` always has its options.
    async fn insert(
        &self,
        client: &Client,
        records: &[&Self::Rows],
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        insert(
            client,
            "chain_options",
            records.iter().flat_map(|r| r.1.iter()),
            token,
            timeout,
        )
        .await?;
        insert(client, "chain_snapshots", records.iter().map(|r| &r.0), token, timeout).await
    }
}

/// `market.underlying` → `underlying_ticks`.
pub struct Ticks(pub Avro);

impl Stream for Ticks {
    type Rows = TickRow;
    const NAME: &'static str = "ticks";
    const STAGE: &'static str = "sink.ticks";
    const TABLES: &'static [&'static str] = &["underlying_ticks"];

    fn topics(&self) -> Vec<String> {
        vec![UNDERLYING.into()]
    }

    async fn decode(&self, msg: &OwnedMessage) -> Result<Self::Rows, Reject> {
        let tick: UnderlyingTick = self.0.decode(msg).await?;
        Ok(tick_row(&tick, Origin::of(msg)))
    }

    fn row_count(_: &Self::Rows) -> usize {
        1
    }

    fn event_time_us(rows: &Self::Rows) -> Option<i64> {
        Some(rows.event_time_us)
    }

    fn sequence(rows: &Self::Rows) -> Option<(String, i64)> {
        Some((rows.product.clone(), rows.seq))
    }

    async fn insert(
        &self,
        client: &Client,
        records: &[&Self::Rows],
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        insert(client, "underlying_ticks", records.iter().copied(), token, timeout).await
    }
}

/// `market.option_quote` → `option_quotes`.
pub struct Quotes(pub Avro);

impl Stream for Quotes {
    type Rows = QuoteRow;
    const NAME: &'static str = "quotes";
    const STAGE: &'static str = "sink.quotes";
    const TABLES: &'static [&'static str] = &["option_quotes"];

    fn topics(&self) -> Vec<String> {
        vec![OPTION_QUOTE.into()]
    }

    async fn decode(&self, msg: &OwnedMessage) -> Result<Self::Rows, Reject> {
        let quote: OptionQuote = self.0.decode(msg).await?;
        Ok(quote_row(&quote, Origin::of(msg)))
    }

    fn row_count(_: &Self::Rows) -> usize {
        1
    }

    fn event_time_us(rows: &Self::Rows) -> Option<i64> {
        Some(rows.event_time_us)
    }

    fn sequence(rows: &Self::Rows) -> Option<(String, i64)> {
        Some((rows.symbol.clone(), rows.seq))
    }

    async fn insert(
        &self,
        client: &Client,
        records: &[&Self::Rows],
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        insert(client, "option_quotes", records.iter().copied(), token, timeout).await
    }
}

/// Every `dlq.*` topic → `dead_letters`.
pub struct DeadLetters;

impl Stream for DeadLetters {
    type Rows = DeadLetterRow;
    const NAME: &'static str = "dead_letters";
    const STAGE: &'static str = "sink.dead_letters";
    const TABLES: &'static [&'static str] = &["dead_letters"];
    const DEAD_LETTERS_REFUSED: bool = false;

    fn topics(&self) -> Vec<String> {
        dead_letter_topics()
    }

    async fn decode(&self, msg: &OwnedMessage) -> Result<Self::Rows, Reject> {
        Ok(dead_letter_row(msg))
    }

    fn row_count(_: &Self::Rows) -> usize {
        1
    }

    fn event_time_us(_: &Self::Rows) -> Option<i64> {
        None
    }

    async fn insert(
        &self,
        client: &Client,
        records: &[&Self::Rows],
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        insert(client, "dead_letters", records.iter().copied(), token, timeout).await
    }
}
