//! Dead letters: a record that cannot be processed goes to `dlq.<source topic>` with its
//! original key and bytes, and the reason in headers.

use chainflow_contract::topics;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;

/// A record on its way to the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// `dlq.<source topic>`.
    pub topic: String,
    /// Original key.
    pub key: Option<Vec<u8>>,
    /// Original bytes.
    pub payload: Option<Vec<u8>>,
    /// Headers: error kind, message, source topic, partition, offset, time.
    pub headers: OwnedHeaders,
}

impl DeadLetter {
    /// Wraps `msg` with the reason it was rejected.
    pub fn new<M: Message>(msg: &M, kind: &str, message: &str) -> Self {
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: topics::HEADER_ERROR_KIND,
                value: Some(kind),
            })
            .insert(Header {
                key: topics::HEADER_ERROR_MESSAGE,
                value: Some(message),
            })
            .insert(Header {
                key: topics::HEADER_SOURCE_TOPIC,
                value: Some(msg.topic()),
            })
            .insert(Header {
                key: topics::HEADER_SOURCE_PARTITION,
                value: Some(&partition),
            })
            .insert(Header {
                key: topics::HEADER_SOURCE_OFFSET,
                value: Some(&offset),
            })
            .insert(Header {
                key: topics::HEADER_ERROR_TIME,
                value: Some(&time),
            });
        metrics::counter!("chainflow_dead_letters_total", "topic" => msg.topic().to_string(), "kind" => kind.to_string())
            .increment(1);
        Self {
            topic: topics::dlq(msg.topic()),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// The record to produce.
    pub fn record(&self) -> FutureRecord<'_, [u8], [u8]> {
        let mut r = FutureRecord::to(&self.topic).headers(self.headers.clone());
        if let Some(k) = &self.key {
            r = r.key(k.as_slice());
        }
        if let Some(p) = &self.payload {
            r = r.payload(p.as_slice());
        }
        r
    }
}
