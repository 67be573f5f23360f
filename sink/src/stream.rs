//! The streams the sink writes: what a record of each becomes in ClickHouse. Pure encoding
//! and one insert per table; the loop that batches, retries and commits is `worker`.

use crate::rows::{dead_letter_row, option_rows, quote_row, snapshot_row, tick_row, Origin};
use chainflow_clickhouse::rows::{DeadLetterRow, OptionRow, QuoteRow, SnapshotRow, TickRow};
use chainflow_clickhouse::{insert, Failure};
use chainflow_codec::{Codec, CodecError, Position, UnknownIdGrace};
use chainflow_contract::streams::{self, StreamSpec};
use chainflow_contract::{EnrichedOptionChain, OptionQuote, Record, UnderlyingTick};
use clickhouse::{Client, Row, RowWrite};
use rdkafka::message::{Message, OwnedMessage};
use serde::Serialize;
use std::future::Future;
use std::marker::PhantomData;
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

/// One stream: the entry of the contract's list it implements, and how a record becomes
/// rows.
pub trait Stream: Send + Sync + 'static {
    /// The rows of one record.
    type Rows: Send + Sync + 'static;

    /// Its entry in `chainflow_contract::streams::STREAMS`: name, topics, tables.
    const SPEC: &'static StreamSpec;
    /// Its name in `sink.streams`, logs and metrics.
    const NAME: &'static str = Self::SPEC.name;
    /// The stage that writes it.
    const STAGE: &'static str = Self::SPEC.stage;
    /// Whether rows ClickHouse refuses are dead-lettered; if not (the dead letters
    /// themselves), they are logged, counted and skipped.
    const DEAD_LETTERS_REFUSED: bool = true;

    /// The topics it reads.
    fn topics(&self) -> Vec<String> {
        Self::SPEC.topics()
    }

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

/// Something done with one of the sink's streams, whichever its type (building its stage,
/// replaying into it).
pub trait WithStream {
    /// What it gives.
    type Output;
    /// Does it with `stream`.
    fn with<S: Stream>(self, stream: S) -> Self::Output;
}

/// Does `f` with the stream of the contract's list named `spec`, decoding through `avro`:
/// the one place that maps the list to the types that implement it.
pub fn with_stream<F: WithStream>(spec: &StreamSpec, avro: Avro, f: F) -> F::Output {
    match spec.name {
        n if n == Chains::NAME => f.with(Chains::new(avro)),
        n if n == Single::<TickRow>::NAME => f.with(Single::<TickRow>::new(avro)),
        n if n == Single::<QuoteRow>::NAME => f.with(Single::<QuoteRow>::new(avro)),
        n if n == Single::<DeadLetterRow>::NAME => f.with(Single::<DeadLetterRow>::new(avro)),
        n => unreachable!("stream {n} of the contract's list has no implementation in the sink"),
    }
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
pub struct Chains(Avro);

impl Chains {
    /// The stream, decoding through `avro`.
    pub fn new(avro: Avro) -> Self {
        Self(avro)
    }
}

impl Stream for Chains {
    type Rows = (SnapshotRow, Vec<OptionRow>);
    const SPEC: &'static StreamSpec = &streams::CHAINS;

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
        let [options, snapshots] = Self::SPEC.tables else {
            unreachable!("the chains stream writes two tables")
        };
        insert(client, options, records.iter().flat_map(|r| r.1.iter()), token, timeout).await?;
        insert(client, snapshots, records.iter().map(|r| &r.0), token, timeout).await
    }
}

/// A stream whose records are one row each of its one table.
pub trait OneRow: Sized + Row + RowWrite + Serialize + Send + Sync + 'static + for<'b> Row<Value<'b> = Self> {
    /// Its entry in the contract's list.
    const SPEC: &'static StreamSpec;
    /// As [`Stream::DEAD_LETTERS_REFUSED`].
    const DEAD_LETTERS_REFUSED: bool = true;

    /// The row of `msg`.
    fn decode(avro: &Avro, msg: &OwnedMessage) -> impl Future<Output = Result<Self, Reject>> + Send;

    /// As [`Stream::event_time_us`].
    fn event_time_us(&self) -> Option<i64>;

    /// As [`Stream::sequence`].
    fn sequence(&self) -> Option<(String, i64)>;
}

/// The stream of a [`OneRow`] row type.
pub struct Single<R> {
    avro: Avro,
    row: PhantomData<fn() -> R>,
}

impl<R: OneRow> Single<R> {
    /// The stream, decoding through `avro`.
    pub fn new(avro: Avro) -> Self {
        Self { avro, row: PhantomData }
    }
}

impl<R: OneRow> Stream for Single<R> {
    type Rows = R;
    const SPEC: &'static StreamSpec = R::SPEC;
    const DEAD_LETTERS_REFUSED: bool = R::DEAD_LETTERS_REFUSED;

    async fn decode(&self, msg: &OwnedMessage) -> Result<R, Reject> {
        R::decode(&self.avro, msg).await
    }

    fn row_count(_: &R) -> usize {
        1
    }

    fn event_time_us(rows: &R) -> Option<i64> {
        rows.event_time_us()
    }

    fn sequence(rows: &R) -> Option<(String, i64)> {
        rows.sequence()
    }

    async fn insert(
        &self,
        client: &Client,
        records: &[&R],
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        insert(client, R::SPEC.tables[0], records.iter().copied(), token, timeout).await
    }
}

/// `market.underlying` → `underlying_ticks`.
impl OneRow for TickRow {
    const SPEC: &'static StreamSpec = &streams::TICKS;

    async fn decode(avro: &Avro, msg: &OwnedMessage) -> Result<Self, Reject> {
        let tick: UnderlyingTick = avro.decode(msg).await?;
        Ok(tick_row(&tick, Origin::of(msg)))
    }

    fn event_time_us(&self) -> Option<i64> {
        Some(self.event_time_us)
    }

    fn sequence(&self) -> Option<(String, i64)> {
        Some((self.product.clone(), self.seq))
    }
}

/// `market.option_quote` → `option_quotes`.
impl OneRow for QuoteRow {
    const SPEC: &'static StreamSpec = &streams::QUOTES;

    async fn decode(avro: &Avro, msg: &OwnedMessage) -> Result<Self, Reject> {
        let quote: OptionQuote = avro.decode(msg).await?;
        Ok(quote_row(&quote, Origin::of(msg)))
    }

    fn event_time_us(&self) -> Option<i64> {
        Some(self.event_time_us)
    }

    fn sequence(&self) -> Option<(String, i64)> {
        Some((self.symbol.clone(), self.seq))
    }
}

/// Every `dlq.*` topic → `dead_letters`, as they are (no decoding).
impl OneRow for DeadLetterRow {
    const SPEC: &'static StreamSpec = &streams::DEAD_LETTERS;
    const DEAD_LETTERS_REFUSED: bool = false;

    async fn decode(_: &Avro, msg: &OwnedMessage) -> Result<Self, Reject> {
        Ok(dead_letter_row(msg))
    }

    fn event_time_us(&self) -> Option<i64> {
        None
    }

    fn sequence(&self) -> Option<(String, i64)> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainflow_codec::{registry_settings, Codec};
    use chainflow_config::RegistryConfig;

    /// What a stream says of itself.
    struct Describe;

    impl WithStream for Describe {
        type Output = (&'static StreamSpec, Vec<String>);
        fn with<S: Stream>(self, stream: S) -> Self::Output {
            (S::SPEC, stream.topics())
        }
    }

    #[test]
    fn every_stream_of_the_contracts_list_is_implemented_by_the_sink_as_listed() {
        let codec = Arc::new(Codec::new(registry_settings(&RegistryConfig::default()).unwrap()));
        for spec in streams::STREAMS {
            let avro = Avro::new(codec.clone(), Duration::ZERO, spec.stage);
            let (implemented, topics) = with_stream(spec, avro, Describe);
            assert_eq!(implemented, spec);
            assert_eq!(topics, spec.topics());
        }
    }
}
