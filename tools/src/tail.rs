//! `chainflow tail`: a topic decoded through the Schema Registry and printed as JSON lines,
//! each record in the JSON form `chainflow analyze` reads and writes. Dead letters, and any
//! record that cannot be decoded, are printed as `{"undecodable": reason, "value_base64":
//! ..., "headers": ...}`, and the tail goes on.

use crate::Progress;
use anyhow::{Context, Result};
use base64::Engine;
use chainflow_codec::Codec;
use chainflow_contract::json::JsonForm;
use chainflow_contract::topics::{
    ENRICHED_CHAIN, HEADER_ERROR_KIND, HEADER_ERROR_MESSAGE, OPTION_CHAIN, OPTION_QUOTE, UNDERLYING,
};
use chainflow_contract::{EnrichedOptionChain, OptionChain, OptionQuote, Record, UnderlyingTick};
use chainflow_kafka::{header, RangeReader};
use rdkafka::message::{Headers, Message, OwnedMessage};
use serde_json::{json, Map, Value};
use std::io::Write;
use tokio_util::sync::CancellationToken;

/// What to print.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only records with this key.
    pub key: Option<String>,
    /// Stop after this many records printed.
    pub max: Option<u64>,
    /// Wrap each record with its partition, offset, timestamp, key and headers.
    pub with_meta: bool,
}

/// The records of a topic, by its name.
enum Kind {
    Tick(JsonForm<UnderlyingTick>),
    Quote(JsonForm<OptionQuote>),
    Chain(JsonForm<OptionChain>),
    Enriched(JsonForm<EnrichedOptionChain>),
    DeadLetter,
    Unknown,
}

impl Kind {
    fn of(topic: &str) -> Self {
        match topic {
            UNDERLYING => Kind::Tick(JsonForm::new()),
            OPTION_QUOTE => Kind::Quote(JsonForm::new()),
            OPTION_CHAIN => Kind::Chain(JsonForm::new()),
            ENRICHED_CHAIN => Kind::Enriched(JsonForm::new()),
            t if t.starts_with("dlq.") => Kind::DeadLetter,
            _ => Kind::Unknown,
        }
    }
}

/// Decodes `payload` as an `R` in its JSON form, or says why it cannot.
async fn json_of<R: Record>(codec: &Codec, form: &JsonForm<R>, payload: &[u8]) -> Result<Value, String> {
    codec
        .decode::<R>(payload)
        .await
        .map(|r| form.to_json(&r))
        .map_err(|e| e.to_string())
}

/// The headers of `msg` as an object (values as text, lossily).
fn headers(msg: &OwnedMessage) -> Value {
    let mut out = Map::new();
    if let Some(hs) = msg.headers() {
        for h in hs.iter() {
            let v = h
                .value
                .map_or(Value::Null, |v| String::from_utf8_lossy(v).into_owned().into());
            out.insert(h.key.to_string(), v);
        }
    }
    Value::Object(out)
}

/// The line printed for `msg`, given its decoded form (or why it has none).
pub fn line(msg: &OwnedMessage, decoded: Result<Value, String>, with_meta: bool) -> Value {
    let mut out = match decoded {
        Ok(v) if !with_meta => return v,
        Ok(v) => json!({ "value": v }),
        Err(reason) => json!({
            "undecodable": reason,
            "value_base64": msg.payload().map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            "headers": headers(msg),
        }),
    };
    if with_meta {
        let o = out.as_object_mut().expect("built as an object");
        o.insert("topic".into(), msg.topic().into());
        o.insert("partition".into(), msg.partition().into());
        o.insert("offset".into(), msg.offset().into());
        let ts = msg
            .timestamp()
            .to_millis()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        o.insert("timestamp".into(), ts.into());
        o.insert(
            "key".into(),
            msg.key().map(|k| String::from_utf8_lossy(k).into_owned()).into(),
        );
        o.insert("headers".into(), headers(msg));
    }
    out
}

/// Prints what `reader` reads of `topic` to `out`, one JSON line per record, until the end
/// of the range, `opts.max` records or `stop`; returns how many were printed.
pub async fn tail(
    codec: &Codec,
    topic: &str,
    mut reader: RangeReader,
    opts: &Options,
    out: &mut impl Write,
    stop: &CancellationToken,
) -> Result<u64> {
    let kind = Kind::of(topic);
    let mut printed = 0u64;
    let read = Progress::default();
    while opts.max.is_none_or(|m| printed < m) {
        let Some(msg) = crate::next(&mut reader, stop, &read).await? else {
            break;
        };
        if let Some(k) = &opts.key {
            if msg.key() != Some(k.as_bytes()) {
                continue;
            }
        }
        let payload = msg.payload().unwrap_or_default();
        let decoded = match &kind {
            Kind::Tick(f) => json_of(codec, f, payload).await,
            Kind::Quote(f) => json_of(codec, f, payload).await,
            Kind::Chain(f) => json_of(codec, f, payload).await,
            Kind::Enriched(f) => json_of(codec, f, payload).await,
            Kind::DeadLetter => Err(
                match (header(&msg, HEADER_ERROR_KIND), header(&msg, HEADER_ERROR_MESSAGE)) {
                    (Some(k), Some(m)) => format!("dead letter: {k}: {m}"),
                    (Some(k), None) => format!("dead letter: {k}"),
                    _ => "dead letter".to_string(),
                },
            ),
            Kind::Unknown => Err(format!("no record type is known for topic {topic}")),
        };
        let text = serde_json::to_string(&line(&msg, decoded, opts.with_meta)).expect("JSON values serialize");
        writeln!(out, "{text}").context("writing to standard output")?;
        printed += 1;
    }
    out.flush().context("writing to standard output")?;
    Ok(printed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, Timestamp};

    fn msg() -> OwnedMessage {
        OwnedMessage::new(
            Some(vec![0, 0, 0, 0, 9, 1, 2]),
            Some(b"NIFTY".to_vec()),
            "dlq.market.option_chain".into(),
            Timestamp::CreateTime(1_738_228_500_123),
            3,
            42,
            Some(OwnedHeaders::new().insert(Header {
                key: HEADER_ERROR_KIND,
                value: Some("unknown_product"),
            })),
        )
    }

    #[test]
    fn undecodable_records_keep_their_bytes_and_headers() {
        let v = line(&msg(), Err("dead letter: unknown_product".into()), false);
        assert_eq!(v["undecodable"], "dead letter: unknown_product");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["value_base64"].as_str().expect("text"))
            .expect("base64");
        assert_eq!(bytes, [0, 0, 0, 0, 9, 1, 2]);
        assert_eq!(v["headers"][HEADER_ERROR_KIND], "unknown_product");
        assert!(v.get("offset").is_none());
    }

    #[test]
    fn meta_wraps_the_value_with_where_and_when() {
        let v = line(&msg(), Ok(json!({"product": "NIFTY"})), true);
        assert_eq!(v["value"]["product"], "NIFTY");
        assert_eq!((v["partition"].as_i64(), v["offset"].as_i64()), (Some(3), Some(42)));
        assert_eq!(v["timestamp"], "2025-01-30T09:15:00.123Z");
        assert_eq!(v["key"], "NIFTY");
        assert_eq!(v["headers"][HEADER_ERROR_KIND], "unknown_product");
        assert_eq!(
            line(&msg(), Ok(json!(1)), false),
            json!(1),
            "without meta: the record alone"
        );
    }
}
