//! Dead letters: a record that cannot be processed goes to `dlq.<source topic>` with its
//! original key, bytes and headers, and the reason in headers of its own.

use chainflow_contract::topics;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
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
    /// The original headers (such as `chainflow.id` and `traceparent`), then the reason:
    /// error kind, message and stage, source topic, partition and offset, time.
    pub headers: OwnedHeaders,
}

impl DeadLetter {
    /// Wraps `msg` with the reason `stage` rejected it.
    pub fn new<M: Message>(msg: &M, stage: &str, kind: &str, message: &str) -> Self {
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut headers = crate::headers::copied(msg.headers(), |k| !topics::is_dead_letter_header(k));
        for (key, value) in [
            (topics::HEADER_ERROR_KIND, kind),
            (topics::HEADER_ERROR_MESSAGE, message),
            (topics::HEADER_ERROR_STAGE, stage),
            (topics::HEADER_SOURCE_TOPIC, msg.topic()),
            (topics::HEADER_SOURCE_PARTITION, &partition),
            (topics::HEADER_SOURCE_OFFSET, &offset),
            (topics::HEADER_ERROR_TIME, &time),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        metrics::counter!("chainflow_dead_letters_total", "topic" => msg.topic().to_string(), "kind" => kind.to_string(), "stage" => stage.to_string())
            .increment(1);
        Self {
            topic: topics::dlq(msg.topic()),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            headers,
        }
    }
    /// Bytes the dead letter takes: key, value and headers.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
            .sum();
        self.key.as_ref().map_or(0, Vec::len) + self.payload.as_ref().map_or(0, Vec::len) + headers
    }

    /// The dead letter without the original value, which is too large to send again: a
    /// header says so, and where to read it.
    #[must_use]
    pub fn without_value(mut self, why: &str) -> Self {
        self.payload = None;
        self.headers = self.headers.insert(Header {
            key: topics::HEADER_VALUE_OMITTED,
            value: Some(why),
        });
        self
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
