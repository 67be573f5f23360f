//! The JSON form of records, for files and people (`chainflow analyze`, recorded feeds):
//! field names as in the Avro schema, `timestamp-micros` fields as RFC 3339 UTC times with
//! microseconds (`2025-01-30T09:15:00.000000Z`), `date` fields as `YYYY-MM-DD`, enums by
//! symbol (`CALL`), `null` for an absent optional value. Reading also accepts the Avro
//! numbers (µs since the epoch, days since 1970-01-01) for times and dates.
//!
//! Which fields are times and dates comes from each record's Avro schema, so the form
//! follows the contract as it evolves.

use crate::keys::{date_from_days, days_from_date};
use crate::record::Record;
use apache_avro::Schema;
use chrono::{DateTime, NaiveDate, SecondsFormat};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write;
use std::marker::PhantomData;
use thiserror::Error;

/// Why a JSON value is not a record of the expected type.
#[derive(Debug, Error, PartialEq)]
#[error("{path}: {message}")]
pub struct JsonError {
    /// Where in the value, e.g. `strikes[3].call.bid` (`.` for the value itself).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

/// How a value of the schema is converted.
#[derive(Debug, Clone)]
enum Shape {
    /// As serde writes it.
    Plain,
    /// `timestamp-micros`.
    Time,
    /// `date`.
    Date,
    Record(Vec<(String, Shape)>),
    Array(Box<Shape>),
    /// A union: the first non-null branch that is not plain decides.
    Union(Box<Shape>),
}

impl Shape {
    fn of(schema: &Schema, named: &mut HashMap<String, Shape>) -> Shape {
        match schema {
            Schema::TimestampMicros => Shape::Time,
            Schema::Date => Shape::Date,
            Schema::Record(r) => {
                let shape = Shape::Record(
                    r.fields
                        .iter()
                        .map(|f| (f.name.clone(), Shape::of(&f.schema, named)))
                        .collect(),
                );
                named.insert(r.name.fullname(None), shape.clone());
                shape
            }
            Schema::Array(a) => Shape::Array(Box::new(Shape::of(&a.items, named))),
            Schema::Union(u) => u
                .variants()
                .iter()
                .map(|v| Shape::of(v, named))
                .find(|s| !matches!(s, Shape::Plain))
                .map_or(Shape::Plain, |s| Shape::Union(Box::new(s))),
            Schema::Ref { name } => named.get(&name.fullname(None)).cloned().unwrap_or(Shape::Plain),
            _ => Shape::Plain,
        }
    }
}

/// Which way a conversion goes.
#[derive(Clone, Copy)]
enum Direction {
    ToJson,
    FromJson,
}

fn time_to_json(us: i64) -> Option<String> {
    DateTime::from_timestamp_micros(us).map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn convert(value: &mut Value, shape: &Shape, direction: Direction, path: &mut String) -> Result<(), JsonError> {
    let fail = |path: &str, message: String| JsonError {
        path: if path.is_empty() { ".".into() } else { path.to_string() },
        message,
    };
    match (shape, direction) {
        (Shape::Plain, _) => {}
        (Shape::Time, Direction::ToJson) => {
            if let Some(s) = value.as_i64().and_then(time_to_json) {
                *value = Value::String(s);
            }
        }
        (Shape::Date, Direction::ToJson) => {
            if let Some(days) = value.as_i64().and_then(|d| i32::try_from(d).ok()) {
                *value = Value::String(date_from_days(days).format("%Y-%m-%d").to_string());
            }
        }
        (Shape::Time, Direction::FromJson) => match value {
            Value::String(s) => {
                let t = DateTime::parse_from_rfc3339(s).map_err(|e| {
                    fail(
                        path,
                        format!("expected an RFC 3339 time such as 2025-01-30T09:15:00.000000Z, got {s:?} ({e})"),
                    )
                })?;
                *value = Value::from(t.timestamp_micros());
            }
            Value::Number(n) if n.is_i64() => {}
            other => return Err(fail(path, format!("expected an RFC 3339 time, got {other}"))),
        },
        (Shape::Date, Direction::FromJson) => match value {
            Value::String(s) => {
                let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|e| fail(path, format!("expected a date YYYY-MM-DD, got {s:?} ({e})")))?;
                *value = Value::from(days_from_date(d));
            }
            Value::Number(n) if n.is_i64() => {}
            other => return Err(fail(path, format!("expected a date YYYY-MM-DD, got {other}"))),
        },
        (Shape::Record(fields), _) => {
            if let Value::Object(map) = value {
                for (name, shape) in fields {
                    if let Some(v) = map.get_mut(name) {
                        let len = path.len();
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(name);
                        convert(v, shape, direction, path)?;
                        path.truncate(len);
                    }
                }
            }
        }
        (Shape::Array(items), _) => {
            if let Value::Array(values) = value {
                for (i, v) in values.iter_mut().enumerate() {
                    let len = path.len();
                    write!(path, "[{i}]").expect("writing to a String cannot fail");
                    convert(v, items, direction, path)?;
                    path.truncate(len);
                }
            }
        }
        (Shape::Union(inner), _) => {
            if !value.is_null() {
                convert(value, inner, direction, path)?;
            }
        }
    }
    Ok(())
}

/// Converts records of type `R` to and from their JSON form.
pub struct JsonForm<R> {
    shape: Shape,
    record: PhantomData<fn() -> R>,
}

impl<R: Record> Default for JsonForm<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: Record> JsonForm<R> {
    /// The form of `R`, from its Avro schema.
    pub fn new() -> Self {
        let schema = Schema::parse_str(R::SCHEMA).expect("the record's schema parses (checked by tests)");
        Self {
            shape: Shape::of(&schema, &mut HashMap::new()),
            record: PhantomData,
        }
    }

    /// `record` in its JSON form.
    pub fn to_json(&self, record: &R) -> Value {
        let mut value = serde_json::to_value(record).expect("records serialize to JSON");
        convert(&mut value, &self.shape, Direction::ToJson, &mut String::new())
            .expect("converting to JSON cannot fail");
        value
    }

    /// The record a JSON value describes; the error names the offending field.
    pub fn from_json(&self, mut value: Value) -> Result<R, JsonError> {
        convert(&mut value, &self.shape, Direction::FromJson, &mut String::new())?;
        serde_path_to_error::deserialize(value).map_err(|e| JsonError {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }

    /// Parses one JSON text into a record; the error names the line and column, or the field.
    pub fn parse(&self, text: &str) -> Result<R, JsonError> {
        let value: Value = serde_json::from_str(text).map_err(|e| JsonError {
            path: format!("line {} column {}", e.line(), e.column()),
            message: format!("not valid JSON: {e}"),
        })?;
        self.from_json(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EnrichedOptionChain, OptionChain, OptionQuote, Quote, StrikeQuotes, UnderlyingTick};

    fn chain() -> OptionChain {
        let quote = Quote {
            bid: 10.0,
            ask: 10.5,
            last: 0.0,
            volume: 7,
            oi: 100,
            oi_change: -5,
            iv: None,
        };
        OptionChain {
            product: "NIFTY".into(),
            expiry: 20118,
            lot_size: 50,
            spot: 21543.25,
            event_time: 1_738_228_500_123_456,
            seq: 2,
            strikes: vec![StrikeQuotes {
                strike: 21500.0,
                call: quote.clone(),
                put: Quote {
                    iv: Some(0.14),
                    ..quote
                },
            }],
        }
    }

    #[test]
    fn times_and_dates_are_readable_and_round_trip() {
        let form = JsonForm::<OptionChain>::new();
        let json = form.to_json(&chain());
        assert_eq!(json["event_time"], "2025-01-30T09:15:00.123456Z");
        assert_eq!(json["expiry"], "2025-01-30");
        assert_eq!(json["strikes"][0]["call"]["iv"], Value::Null);
        assert_eq!(json["strikes"][0]["put"]["iv"], 0.14);
        assert_eq!(form.from_json(json).unwrap(), chain());
    }

    #[test]
    fn every_double_survives_the_text_form_exactly() {
        let form = JsonForm::<OptionChain>::new();
        let mut c = chain();
        // a value the default (non-round-trip) float parser reads one ulp off
        c.strikes[0].put.iv = Some(0.156_717_070_330_604_59);
        c.spot = 21_543.250_000_000_004;
        let text = form.to_json(&c).to_string();
        assert_eq!(form.parse(&text).unwrap(), c);
    }

    #[test]
    fn avro_numbers_and_other_offsets_are_accepted() {
        let form = JsonForm::<OptionChain>::new();
        let mut json = form.to_json(&chain());
        json["event_time"] = "2025-01-30T14:45:00.123456+05:30".into();
        json["expiry"] = 20118.into();
        assert_eq!(form.from_json(json).unwrap(), chain());
    }

    #[test]
    fn errors_name_the_field() {
        let form = JsonForm::<OptionChain>::new();
        let mut json = form.to_json(&chain());
        json["strikes"][0]["put"]["bid"] = "cheap".into();
        let e = form.from_json(json).unwrap_err();
        assert_eq!(e.path, "strikes[0].put.bid");
        assert!(e.message.contains("expected f64"), "{e}");

        let mut json = form.to_json(&chain());
        json["event_time"] = "yesterday".into();
        let e = form.from_json(json).unwrap_err();
        assert_eq!(e.path, "event_time");
        assert!(e.message.contains("RFC 3339"), "{e}");

        let mut json = form.to_json(&chain());
        json.as_object_mut().unwrap().remove("spot");
        assert!(form
            .from_json(json)
            .unwrap_err()
            .to_string()
            .contains("missing field `spot`"));

        let e = form.parse("{\"product\": \"NIFTY\",\n  \"expiry\": }").unwrap_err();
        assert!(e.to_string().starts_with("line 2 column"), "{e}");
    }

    #[test]
    fn every_record_type_has_a_json_form() {
        let tick = UnderlyingTick {
            product: "NIFTY".into(),
            price: 21543.25,
            volume: 10,
            event_time: 1_738_228_500_000_000,
            seq: 1,
        };
        let form = JsonForm::<UnderlyingTick>::new();
        assert_eq!(form.to_json(&tick)["event_time"], "2025-01-30T09:15:00.000000Z");
        assert_eq!(form.from_json(form.to_json(&tick)).unwrap(), tick);
        let quote = OptionQuote {
            symbol: "NIFTY20250130C21500".into(),
            product: "NIFTY".into(),
            expiry: 20118,
            strike: 21500.0,
            option_type: crate::OptionType::Call,
            bid: 1.0,
            ask: 1.5,
            last: 1.2,
            volume: 3,
            oi: 4,
            oi_change: -1,
            iv: None,
            event_time: 1_738_228_500_000_000,
            seq: 6,
        };
        let form = JsonForm::<OptionQuote>::new();
        let json = form.to_json(&quote);
        assert_eq!(
            (json["expiry"].as_str(), json["option_type"].as_str()),
            (Some("2025-01-30"), Some("CALL"))
        );
        assert_eq!(form.from_json(json).unwrap(), quote);
        // the enriched record's processed_at is a time too
        let form = JsonForm::<EnrichedOptionChain>::new();
        assert!(
            matches!(&form.shape, Shape::Record(f) if f.iter().any(|(n, s)| n == "processed_at" && matches!(s, Shape::Time)))
        );
    }
}
