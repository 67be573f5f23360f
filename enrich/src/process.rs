//! One raw record in, what to produce out: its enriched chain, or a dead letter with the
//! reason. Two things make a record wait instead: a Schema Registry that cannot be reached
//! (tried again later, never dead-lettered), and a schema id the registry does not know
//! yet (its partition waits up to `registry.unknown_id_grace_ms`, then it is dead-lettered).

use chainflow_analytics::{enrich_chain, Source};
use chainflow_codec::{Codec, CodecError, Position, UnknownIdGrace};
use chainflow_contract::topics::{is_dead_letter_header, HEADER_ID};
use chainflow_contract::ProductTerms;
use chainflow_contract::{EnrichedOptionChain, OptionChain, Record};
use chainflow_kafka::{copied, trace};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use std::collections::BTreeMap;
use std::time::Instant;

/// Bytes a record takes beyond its key, value and headers in a Kafka record batch, at most
/// (the record and batch framing), so that the size check errs on the safe side.
pub const RECORD_OVERHEAD: usize = 512;

/// What the enricher's limits are.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Chains with more strikes are dead-lettered.
    pub max_strikes: usize,
    /// The producer's `message.max.bytes`: larger enriched records are dead-lettered.
    pub max_bytes: usize,
}

/// What a raw record becomes.
#[derive(Debug)]
pub enum Output {
    /// An enriched chain to produce under `key`, with `headers`.
    Enriched {
        /// Kafka key (the chain key).
        key: String,
        /// The original headers, and `chainflow.id`.
        headers: OwnedHeaders,
        /// The Avro record in the wire format.
        value: Vec<u8>,
    },
    /// The raw record goes to its dead-letter topic.
    DeadLetter {
        /// Machine-readable kind.
        kind: &'static str,
        /// Human-readable reason.
        message: String,
    },
}

/// Why a record cannot be processed yet.
#[derive(Debug)]
pub enum NotYet {
    /// The registry could not be reached (or answered with an error that may pass): every
    /// partition waits.
    Unavailable(String),
    /// The record's schema id is not known to the registry yet: its partition waits.
    UnknownId(u32),
}

/// Turns raw chains into enriched ones.
pub struct Processor {
    codec: std::sync::Arc<Codec>,
    grace: UnknownIdGrace,
    products: BTreeMap<String, ProductTerms>,
    limits: Limits,
}

impl Processor {
    /// A processor over `codec` waiting `grace` for unknown ids, with the products' terms
    /// and `limits`.
    pub fn new(
        codec: std::sync::Arc<Codec>,
        grace: UnknownIdGrace,
        products: BTreeMap<String, ProductTerms>,
        limits: Limits,
    ) -> Self {
        Self {
            codec,
            grace,
            products,
            limits,
        }
    }

    /// What `msg` becomes.
    pub async fn process(&self, msg: &OwnedMessage, processed_at: i64) -> Result<Output, NotYet> {
        let dead = |kind, message| Ok(Output::DeadLetter { kind, message });
        let at = Position {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
        };
        let chain: OptionChain = match self.codec.decode(msg.payload().unwrap_or_default()).await {
            Ok(c) => c,
            Err(e) if e.is_transient() => return Err(NotYet::Unavailable(e.to_string())),
            Err(CodecError::UnknownSchema(id)) if self.grace.waits(at, Instant::now()) => {
                return Err(NotYet::UnknownId(id))
            }
            Err(e) => return dead(e.kind(), e.to_string()),
        };
        if chain.strikes.len() > self.limits.max_strikes {
            return dead(
                "too_many_strikes",
                format!(
                    "{} strikes, more than enrich.max_strikes ({})",
                    chain.strikes.len(),
                    self.limits.max_strikes
                ),
            );
        }
        let source = Source {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
        };
        let enriched = match enrich_chain(&chain, &self.products, source, processed_at) {
            Ok(e) => e,
            Err(e) => return dead(e.kind(), e.to_string()),
        };
        count_solves(&enriched);
        let value = match self.codec.encode(&enriched).await {
            Ok(v) => v,
            Err(e) if e.is_transient() => return Err(NotYet::Unavailable(e.to_string())),
            Err(e) => return dead("encode", e.to_string()),
        };
        let key = enriched.key();
        let headers = carried_headers(msg, &enriched.id());
        let size = key.len() + value.len() + header_bytes(&headers) + RECORD_OVERHEAD;
        if size > self.limits.max_bytes {
            return dead(
                "too_large",
                format!(
                    "the enriched chain takes {size} bytes, more than the producer's message.max.bytes ({})",
                    self.limits.max_bytes
                ),
            );
        }
        Ok(Output::Enriched { key, headers, value })
    }
}

/// Counts the implied volatilities of `chain`'s priced options, solved or not, and notes
/// when its product was last enriched.
fn count_solves(chain: &EnrichedOptionChain) {
    let (mut solved, mut failed) = (0u64, 0u64);
    for o in chain
        .strikes
        .iter()
        .flat_map(|s| [&s.call, &s.put])
        .filter(|o| o.price.is_some())
    {
        if o.iv.is_some() {
            solved += 1;
        } else {
            failed += 1;
        }
    }
    metrics::counter!("chainflow_iv_solves_total", "outcome" => "solved").increment(solved);
    metrics::counter!("chainflow_iv_solves_total", "outcome" => "failed").increment(failed);
    metrics::gauge!("chainflow_last_chain_timestamp_seconds", "product" => chain.product.clone())
        .set(chrono::Utc::now().timestamp_micros() as f64 / 1e6);
}

/// The headers of the raw record (such as `traceparent`), less dead-letter ones and any
/// earlier `chainflow.id`, then `chainflow.id` = `id`.
fn carried_headers(msg: &OwnedMessage, id: &str) -> OwnedHeaders {
    let headers = copied(msg.headers(), |k| k != HEADER_ID && !is_dead_letter_header(k));
    // the trace continues from the span enrich processes the chain in (when exported)
    let headers = trace::with_context_of(&tracing::Span::current(), headers);
    headers.insert(Header {
        key: HEADER_ID,
        value: Some(id),
    })
}

fn header_bytes(headers: &OwnedHeaders) -> usize {
    headers
        .iter()
        .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Timestamp;

    #[test]
    fn the_enriched_record_carries_the_original_headers_and_its_id() {
        let original = OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some("00-abc-01"),
            })
            .insert(Header {
                key: HEADER_ID,
                value: Some("stale"),
            })
            .insert(Header {
                key: "chainflow.error.kind",
                value: Some("x"),
            });
        let msg = OwnedMessage::new(
            None,
            None,
            "market.option_chain".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(original),
        );
        let headers = carried_headers(&msg, "NIFTY|2025-01-30|1");
        let pairs: Vec<(String, String)> = headers
            .iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("traceparent".to_string(), "00-abc-01".to_string()),
                (HEADER_ID.to_string(), "NIFTY|2025-01-30|1".to_string())
            ]
        );
        assert_eq!(header_bytes(&headers), "traceparent".len() + 9 + HEADER_ID.len() + 18);
    }
}
