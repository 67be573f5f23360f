//! `chainflow dlq redrive`: dead letters sent back to their source topic once the cause is
//! fixed, with their original key, value and headers, to the partition they came from, and
//! a redrive count header (`chainflow.redrive.count`). A record that fails again is
//! dead-lettered again, with its count: a loop is visible, never silent.

use crate::Progress;
use anyhow::{Context, Result};
use chainflow_config::KafkaConfig;
use chainflow_contract::topics::{
    is_dead_letter_header, HEADER_ERROR_KIND, HEADER_REDRIVE_COUNT, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC, HEADER_VALUE_OMITTED,
};
use chainflow_kafka::{copied, header, producer_config, RangeReader};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long sending one record may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Records in flight at once.
const IN_FLIGHT: usize = 500;

/// Which dead letters to send back.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only these error kinds (all when empty).
    pub kinds: Vec<String>,
    /// Say what would be sent, send nothing.
    pub dry_run: bool,
}

/// What a redrive did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Dead letters read.
    pub read: u64,
    /// Sent back (or, in a dry run, that would be), by source topic and error kind.
    pub sent: BTreeMap<(String, String), u64>,
    /// Left out by the kind filter.
    pub filtered: u64,
    /// Dead letters without their value (too large to keep), by source topic and offset:
    /// read those from the source topic while it retains them.
    pub without_value: Vec<(String, i32, i64)>,
    /// Stopped by a signal before the end of the range.
    pub interrupted: bool,
}

/// A dead letter on its way back.
#[derive(Debug, Clone)]
pub struct Redriven {
    /// Its source topic.
    pub topic: String,
    /// The partition it came from (`None`: the partitioner decides by key).
    pub partition: Option<i32>,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original value.
    pub value: Vec<u8>,
    /// The original headers, with the redrive count.
    pub headers: OwnedHeaders,
    /// Why it was dead-lettered.
    pub kind: String,
}

/// What `letter` becomes when sent back: `Err` with the source and offset when its value
/// was not kept.
pub fn redriven(letter: &OwnedMessage) -> Result<Redriven, (String, i32, i64)> {
    let topic = header(letter, HEADER_SOURCE_TOPIC)
        .map_or_else(|| letter.topic().trim_start_matches("dlq.").to_string(), str::to_string);
    let partition = header(letter, HEADER_SOURCE_PARTITION).and_then(|p| p.parse().ok());
    let (value, omitted) = (letter.payload(), header(letter, HEADER_VALUE_OMITTED).is_some());
    let Some(value) = value.filter(|_| !omitted) else {
        let offset = header(letter, HEADER_SOURCE_OFFSET)
            .and_then(|o| o.parse().ok())
            .unwrap_or(-1);
        return Err((topic, partition.unwrap_or(-1), offset));
    };
    let count: u64 = header(letter, HEADER_REDRIVE_COUNT)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let count = (count + 1).to_string();
    let headers = copied(letter.headers(), |k| {
        !is_dead_letter_header(k) && k != HEADER_REDRIVE_COUNT
    })
    .insert(Header {
        key: HEADER_REDRIVE_COUNT,
        value: Some(&count),
    });
    Ok(Redriven {
        topic,
        partition,
        key: letter.key().map(<[u8]>::to_vec),
        value: value.to_vec(),
        headers,
        kind: header(letter, HEADER_ERROR_KIND).unwrap_or("unknown").to_string(),
    })
}

/// Sends the dead letters `reader` reads back to their source topics through the broker of
/// `kafka` (those of `opts.kinds`),
/// until the end of the range or `stop`.
pub async fn redrive(
    mut reader: RangeReader,
    kafka: &KafkaConfig,
    opts: &Options,
    progress: &Arc<Progress>,
    stop: &CancellationToken,
) -> Result<Summary> {
    let producer: FutureProducer = producer_config(kafka).create().context("creating a Kafka producer")?;
    let producer = &producer;
    let mut summary = Summary::default();
    let mut batch: Vec<Redriven> = Vec::new();
    while let Some(msg) = crate::next(&mut reader, stop, progress).await? {
        summary.read += 1;
        let r = match redriven(&msg) {
            Ok(r) => r,
            Err(missing) => {
                summary.without_value.push(missing);
                continue;
            }
        };
        if !opts.kinds.is_empty() && !opts.kinds.contains(&r.kind) {
            summary.filtered += 1;
            continue;
        }
        *summary.sent.entry((r.topic.clone(), r.kind.clone())).or_default() += 1;
        if !opts.dry_run {
            batch.push(r);
            if batch.len() >= IN_FLIGHT {
                send(producer, &mut batch).await?;
            }
        }
    }
    send(producer, &mut batch).await?;
    summary.interrupted = stop.is_cancelled();
    Ok(summary)
}

/// Sends `batch` and waits for every acknowledgement.
async fn send(producer: &FutureProducer, batch: &mut Vec<Redriven>) -> Result<()> {
    let sends = batch.iter().map(|r| {
        let mut record = FutureRecord::to(&r.topic)
            .payload(r.value.as_slice())
            .headers(r.headers.clone());
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        producer.send(record, SEND_TIMEOUT)
    });
    for (sent, r) in futures::future::join_all(sends).await.into_iter().zip(batch.iter()) {
        sent.map_err(|(e, _)| e)
            .with_context(|| format!("sending a dead letter back to {}", r.topic))?;
    }
    batch.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainflow_contract::topics::HEADER_ERROR_MESSAGE;
    use rdkafka::message::{Headers, Timestamp};

    fn letter(headers: &[(&str, &str)], value: Option<&[u8]>) -> OwnedMessage {
        let mut hs = OwnedHeaders::new();
        for (k, v) in headers {
            hs = hs.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        OwnedMessage::new(
            value.map(<[u8]>::to_vec),
            Some(b"NIFTY|2025-01-30".to_vec()),
            "dlq.market.option_chain".into(),
            Timestamp::NotAvailable,
            0,
            7,
            Some(hs),
        )
    }

    fn names(h: &OwnedHeaders) -> Vec<(String, String)> {
        h.iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn a_dead_letter_goes_back_with_its_key_value_partition_and_original_headers() {
        let l = letter(
            &[
                ("traceparent", "00-abc-def-01"),
                (HEADER_ERROR_KIND, "unknown_product"),
                (HEADER_ERROR_MESSAGE, "product X is not configured"),
                (HEADER_SOURCE_TOPIC, "market.option_chain"),
                (HEADER_SOURCE_PARTITION, "4"),
                (HEADER_SOURCE_OFFSET, "99"),
            ],
            Some(b"avro"),
        );
        let r = redriven(&l).expect("has its value");
        assert_eq!(
            (r.topic.as_str(), r.partition, r.kind.as_str()),
            ("market.option_chain", Some(4), "unknown_product")
        );
        assert_eq!(
            (r.key.as_deref(), r.value.as_slice()),
            (Some(&b"NIFTY|2025-01-30"[..]), &b"avro"[..])
        );
        assert_eq!(
            names(&r.headers),
            [
                ("traceparent".into(), "00-abc-def-01".into()),
                (HEADER_REDRIVE_COUNT.into(), "1".into())
            ]
        );
    }

    #[test]
    fn the_redrive_count_grows_and_letters_without_value_are_reported() {
        let again = letter(&[(HEADER_REDRIVE_COUNT, "2"), (HEADER_ERROR_KIND, "k")], Some(b"v"));
        let r = redriven(&again).expect("has its value");
        assert_eq!(
            r.topic, "market.option_chain",
            "without a source header: the dead-letter topic's source"
        );
        assert_eq!(r.partition, None);
        assert_eq!(names(&r.headers), [(HEADER_REDRIVE_COUNT.into(), "3".into())]);
        let big = letter(
            &[
                (HEADER_VALUE_OMITTED, "too large"),
                (HEADER_SOURCE_PARTITION, "1"),
                (HEADER_SOURCE_OFFSET, "12"),
            ],
            None,
        );
        assert_eq!(redriven(&big).err(), Some(("market.option_chain".into(), 1, 12)));
    }
}
