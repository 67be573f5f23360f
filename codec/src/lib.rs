//! Avro in the Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro body),
//! with schemas registered and looked up in the Schema Registry under `<topic>-value`
//! (TopicNameStrategy). The record types and their schemas are `chainflow-contract`'s.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use chainflow_config::RegistryConfig;
use chainflow_contract::Record;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a payload could not be encoded or decoded.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The bytes are not a Confluent-framed Avro record of a usable schema.
    #[error("undecodable: {0}")]
    Undecodable(String),
    /// The schema id is not known to the registry.
    #[error("unknown schema id {0}")]
    UnknownSchema(u32),
    /// The schema id names another record type than this topic carries.
    #[error("schema id {id} is {found}, expected {expected}")]
    WrongRecord {
        /// Schema id in the payload.
        id: u32,
        /// Record name of that schema.
        found: String,
        /// Record name the topic carries.
        expected: &'static str,
    },
    /// The registry could not be reached or refused the request: retry, do not dead-letter.
    #[error("schema registry: {0}")]
    Registry(String),
    /// The value does not fit the schema (a bug in the producer).
    #[error("cannot encode: {0}")]
    Encode(String),
}

impl CodecError {
    /// Short machine-readable kind, used in dead-letter headers and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CodecError::Undecodable(_) => "undecodable",
            CodecError::UnknownSchema(_) => "unknown_schema",
            CodecError::WrongRecord { .. } => "wrong_record",
            CodecError::Registry(_) => "registry",
            CodecError::Encode(_) => "encode",
        }
    }

    /// True when the same payload can succeed later (the registry was unavailable).
    pub fn is_transient(&self) -> bool {
        matches!(self, CodecError::Registry(_))
    }
}

fn registry_error(e: &SRCError) -> CodecError {
    CodecError::Registry(match &e.cause {
        Some(cause) => format!("{}: {cause}", e.error),
        None => e.error.clone(),
    })
}

/// Settings of the registry client: `registry.url`, basic auth with `registry.username`
/// and `registry.password`, and `registry.ca_file` trusted for an `https://` registry.
pub fn registry_settings(section: &RegistryConfig) -> Result<SrSettings, CodecError> {
    let mut builder = SrSettings::new_builder(section.url.clone());
    builder.set_timeout(Duration::from_secs(10));
    if !section.username.is_empty() {
        builder.set_basic_authorization(&section.username, Some(section.password.expose()));
    }
    let mut client = reqwest::Client::builder();
    if !section.ca_file.is_empty() {
        let pem = std::fs::read(&section.ca_file)
            .map_err(|e| CodecError::Registry(format!("registry.ca_file {}: {e}", section.ca_file)))?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| CodecError::Registry(format!("registry.ca_file {}: {e}", section.ca_file)))?;
        client = client.add_root_certificate(ca);
    }
    builder.build_with(client).map_err(|e| registry_error(&e))
}

/// A subject's latest registered schema.
#[derive(Debug, Clone)]
pub struct Latest {
    /// Its global id.
    pub id: u32,
    /// Its version in the subject, when the registry says.
    pub version: Option<u32>,
    /// The schema text.
    pub schema: String,
}

/// The latest schema of `subject` in the registry, `None` when the subject has none; an
/// error when the registry cannot be asked.
pub async fn latest_schema(settings: &SrSettings, subject: &str) -> Result<Option<Latest>, CodecError> {
    match schema_registry_converter::async_impl::schema_registry::get_schema_by_subject_and_version(
        settings, subject, None,
    )
    .await
    {
        Ok(r) => Ok(Some(Latest {
            id: r.id,
            version: r.version,
            schema: r.schema,
        })),
        Err(e) if !e.retriable && e.error.contains("404") => Ok(None),
        Err(e) => Err(registry_error(&e)),
    }
}

/// Where a record was read: the unknown-id grace is kept per partition.
#[derive(Debug, Clone, Copy)]
pub struct Position<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// How long a schema id the registry does not know is waited for before the record is
/// dead-lettered (`registry.unknown_id_grace_ms`): another registry instance may have
/// just assigned it. The wait is per partition, for the record it is held at; the first
/// wait of a record is counted in `chainflow_unknown_schema_waits_total`.
#[derive(Debug)]
pub struct UnknownIdGrace {
    limit: Duration,
    stage: &'static str,
    /// Per partition, the record waited for and since when.
    since: std::sync::Mutex<HashMap<(String, i32), (i64, Instant)>>,
}

impl UnknownIdGrace {
    /// A grace of `limit` for the stage `stage` (a metrics label).
    pub fn new(limit: Duration, stage: &'static str) -> Self {
        Self {
            limit,
            stage,
            since: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Whether the record at `at`, whose schema id is unknown, is still waited for (`true`)
    /// or is to be dead-lettered (`false`), at `now`.
    pub fn waits(&self, at: Position<'_>, now: Instant) -> bool {
        let mut since = self.since.lock().expect("not poisoned");
        let key = (at.topic.to_string(), at.partition);
        match since.get(&key) {
            Some((offset, started)) if *offset == at.offset => now.duration_since(*started) < self.limit,
            _ => {
                since.insert(key, (at.offset, now));
                metrics::counter!("chainflow_unknown_schema_waits_total", "stage" => self.stage).increment(1);
                !self.limit.is_zero()
            }
        }
    }
}

/// Encodes and decodes [`Record`]s through the Schema Registry. Schemas are registered on
/// first use and cached by id, so the registry is asked once per schema, not per record.
pub struct Codec {
    encoder: AvroEncoder,
    decoder: AvroDecoder,
}

impl Codec {
    /// A codec talking to the registry described by `settings`.
    pub fn new(settings: SrSettings) -> Self {
        Self {
            encoder: AvroEncoder::new(settings.clone()),
            decoder: AvroDecoder::new(settings),
        }
    }

    /// The TopicNameStrategy subject `<topic>-value` with `R`'s schema.
    fn strategy<R: Record>() -> SubjectNameStrategy {
        SubjectNameStrategy::TopicNameStrategyWithSchema(
            R::TOPIC.to_string(),
            false,
            SuppliedSchema::new(Some(R::NAME.to_string()), SchemaType::Avro, R::SCHEMA.to_string()),
        )
    }

    /// Registers `R`'s schema (idempotent) and returns its id.
    pub async fn register<R: Record>(&self) -> Result<u32, CodecError> {
        let strategy = Self::strategy::<R>();
        let subject = strategy.get_subject().map_err(|e| registry_error(&e))?;
        match self.encoder.get_schema_and_id(&subject, strategy).await {
            Ok(schema) => Ok(schema.id),
            Err(e) => {
                self.encoder.remove_errors_from_cache();
                Err(registry_error(&e))
            }
        }
    }

    /// Encodes `record` in the wire format, registering its schema on first use.
    pub async fn encode<R: Record>(&self, record: &R) -> Result<Vec<u8>, CodecError> {
        let strategy = Self::strategy::<R>();
        let subject = strategy.get_subject().map_err(|e| registry_error(&e))?;
        let schema = self.encoder.get_schema_and_id(&subject, strategy).await.map_err(|e| {
            self.encoder.remove_errors_from_cache();
            registry_error(&e)
        })?;
        let mut out = Vec::with_capacity(256);
        out.push(0u8);
        out.extend_from_slice(&schema.id.to_be_bytes());
        write_body(&schema.parsed, record, &mut out)?;
        Ok(out)
    }

    /// Decodes a wire-format payload into `R`, using the writer's schema from the registry.
    pub async fn decode<R: Record>(&self, payload: &[u8]) -> Result<R, CodecError> {
        let id = schema_id(payload)?;
        let schema = match self.decoder.get_schema(id).await {
            Ok(s) => s,
            Err(e) => {
                self.decoder.remove_errors_from_cache();
                let not_found = !e.retriable && e.error.contains("404");
                return Err(if not_found {
                    CodecError::UnknownSchema(id)
                } else {
                    registry_error(&e)
                });
            }
        };
        let found = match &schema.parsed {
            apache_avro::Schema::Record(r) => r.name.fullname(None),
            other => format!("{other:?}"),
        };
        if found != R::NAME {
            return Err(CodecError::WrongRecord {
                id,
                found,
                expected: R::NAME,
            });
        }
        read_body(&schema.parsed, &payload[5..]).map_err(|e| CodecError::Undecodable(format!("schema id {id}: {e}")))
    }
}

/// Appends the Avro binary encoding of `record` under `schema` to `out`.
pub fn write_body<T: Serialize>(schema: &apache_avro::Schema, record: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_ser(out, record))
        .map(|_| ())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Reads one record of `schema` from `body`, which must hold exactly that record.
pub fn read_body<T: DeserializeOwned>(schema: &apache_avro::Schema, mut body: &[u8]) -> Result<T, String> {
    let record = GenericDatumReader::builder(schema)
        .build()
        .and_then(|r| r.read_deser::<T>(&mut body))
        .map_err(|e| e.to_string())?;
    if body.is_empty() {
        Ok(record)
    } else {
        Err(format!("{} bytes left after the record", body.len()))
    }
}

/// The schema id of a wire-format payload.
pub fn schema_id(payload: &[u8]) -> Result<u32, CodecError> {
    match payload {
        [0, a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        [] => Err(CodecError::Undecodable("empty payload".into())),
        [m, ..] if *m != 0 => Err(CodecError::Undecodable(format!(
            "magic byte is {m}, expected 0 (Confluent wire format)"
        ))),
        _ => Err(CodecError::Undecodable(format!(
            "payload of {} bytes is shorter than the 5-byte header",
            payload.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainflow_contract::{EnrichedOptionChain, OptionChain, OptionQuote, UnderlyingTick};

    #[test]
    fn an_unknown_id_is_waited_for_per_partition_then_given_up() {
        let grace = UnknownIdGrace::new(Duration::from_secs(10), "test");
        let t0 = Instant::now();
        let at = |partition, offset| Position {
            topic: "t",
            partition,
            offset,
        };
        assert!(grace.waits(at(0, 5), t0));
        assert!(grace.waits(at(0, 5), t0 + Duration::from_secs(9)));
        // another partition waits on its own clock
        assert!(grace.waits(at(1, 7), t0 + Duration::from_secs(9)));
        assert!(!grace.waits(at(0, 5), t0 + Duration::from_secs(10)));
        // given up stays given up for that record (it is read again after the release)
        assert!(!grace.waits(at(0, 5), t0 + Duration::from_secs(11)));
        // the next unknown record of the partition starts a new wait
        assert!(grace.waits(at(0, 6), t0 + Duration::from_secs(11)));
        assert!(grace.waits(at(1, 7), t0 + Duration::from_secs(18)));
        // no grace: dead-lettered at once
        assert!(!UnknownIdGrace::new(Duration::ZERO, "test").waits(at(0, 1), t0));
    }

    #[test]
    fn schema_id_reads_the_header_and_rejects_bad_framing() {
        assert_eq!(schema_id(&[0, 0, 0, 1, 7, 42]).unwrap(), 263);
        assert!(matches!(schema_id(&[]), Err(CodecError::Undecodable(_))));
        let e = schema_id(&[1, 0, 0, 0, 1]).unwrap_err().to_string();
        assert!(e.contains("magic byte is 1"), "{e}");
        assert!(schema_id(&[0, 0, 1]).unwrap_err().to_string().contains("shorter"));
    }

    fn round_trip<R: Record + PartialEq + std::fmt::Debug>(record: &R) {
        let schema = apache_avro::Schema::parse_str(R::SCHEMA).unwrap();
        let mut body = Vec::new();
        write_body(&schema, record, &mut body).unwrap();
        let back: R = read_body(&schema, &body).unwrap();
        assert_eq!(&back, record);
        // the generic reader agrees, so other Avro clients read the same values
        let value = GenericDatumReader::builder(&schema)
            .build()
            .unwrap()
            .read_value(&mut &body[..])
            .unwrap();
        assert_eq!(&apache_avro::from_value::<R>(&value).unwrap(), record);
    }

    #[test]
    #[allow(
        clippy::too_many_lines,
        reason = "one record of each type, written out field by field"
    )]
    fn records_round_trip_through_their_schemas() {
        use chainflow_contract::{
            ChainMetrics, EnrichedOption, EnrichedStrike, OptionAnalytics, OptionType, PriceSource, Quote, StrikeQuotes,
        };
        round_trip(&UnderlyingTick {
            product: "NIFTY".into(),
            price: 21543.25,
            volume: 10,
            event_time: 1_738_224_000_000_000,
            seq: 1,
        });
        round_trip(&OptionQuote {
            symbol: "NIFTY20250130C21500".into(),
            product: "NIFTY".into(),
            expiry: 20118,
            strike: 21500.0,
            option_type: OptionType::Put,
            bid: 1.0,
            ask: 1.5,
            last: 1.2,
            volume: 3,
            oi: 4,
            oi_change: -1,
            iv: Some(0.14),
            event_time: 5,
            seq: 6,
        });
        let quote = Quote {
            bid: 10.0,
            ask: 10.5,
            last: 0.0,
            volume: 7,
            oi: 100,
            oi_change: 5,
            iv: None,
        };
        round_trip(&OptionChain {
            product: "NIFTY".into(),
            expiry: 20118,
            lot_size: 50,
            spot: 21543.25,
            event_time: 1,
            seq: 2,
            strikes: vec![StrikeQuotes {
                strike: 21500.0,
                call: quote.clone(),
                put: quote,
            }],
        });
        let analytics = OptionAnalytics {
            iv: Some(0.2),
            delta: Some(0.5),
            theta: Some(-1.0),
            rho: Some(0.1),
            ..OptionAnalytics::default()
        };
        let option = chainflow_contract::option_analytics!(chainflow_contract::literal_with_fields [
            EnrichedOption,
            analytics,
            {
                bid: 1.0,
                ask: 2.0,
                last: 0.0,
                volume: 1,
                oi: 2,
                oi_change: 3,
                feed_iv: None,
                price: Some(1.5),
                price_source: PriceSource::Mid,
            }
        ]);
        let metrics = ChainMetrics {
            pcr_oi: Some(1.0234),
            atm_strike: 21550.0,
            atm_straddle_price: Some(3.0),
            total_call_oi: 2,
            total_put_oi: 2,
            call_oi_otm: 2,
            call_buildup_otm: 3,
            ..ChainMetrics::default()
        };
        round_trip(
            &chainflow_contract::chain_metrics!(chainflow_contract::literal_with_fields [
                EnrichedOptionChain,
                metrics,
                {
                    product: "NIFTY".into(),
                    expiry: 20118,
                    lot_size: 50,
                    spot: 21543.25,
                    event_time: 1,
                    seq: 2,
                    strikes: vec![EnrichedStrike {
                        strike: 21550.0,
                        call: option.clone(),
                        put: option,
                    }],
                    rate: 0.065,
                    dividend_yield: 0.012,
                    time_to_expiry: 0.01,
                    analytics_version: "1".into(),
                    source_topic: "market.option_chain".into(),
                    source_partition: 3,
                    source_offset: 99,
                    processed_at: 7,
                }
            ]),
        );
    }
}
