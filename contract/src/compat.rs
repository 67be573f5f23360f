//! Compatibility levels and checks (Confluent semantics, apache-avro's schema resolution).

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A subject's compatibility level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    /// No check.
    None,
    /// The new schema can read data written with the latest one.
    Backward,
    /// ... with every earlier one.
    BackwardTransitive,
    /// The latest schema can read data written with the new one.
    Forward,
    /// Every earlier schema can read data written with the new one.
    ForwardTransitive,
    /// Backward and forward against the latest.
    Full,
    /// Backward and forward against every earlier schema.
    FullTransitive,
}

impl Level {
    /// Whether the check runs against every live version instead of the latest only.
    pub fn transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }

    /// Why `new` may not follow `old` at this level, or `None` when it may.
    pub fn violation(self, old: &Schema, new: &Schema) -> Option<String> {
        let backward = matches!(
            self,
            Level::Backward | Level::BackwardTransitive | Level::Full | Level::FullTransitive
        );
        let forward = matches!(
            self,
            Level::Forward | Level::ForwardTransitive | Level::Full | Level::FullTransitive
        );
        if backward {
            if let Some(why) = reads(old, new) {
                return Some(format!(
                    "the new schema cannot read data written with an earlier one: {why}"
                ));
            }
        }
        if forward {
            if let Some(why) = reads(new, old) {
                return Some(format!(
                    "an earlier schema cannot read data written with the new one: {why}"
                ));
            }
        }
        None
    }
}

/// `None` when `reader` can read everything written with `writer`.
fn reads(writer: &Schema, reader: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => None,
        Ok(Compatibility::Partial) => {
            Some("some values would fail to resolve (enum symbols or union branches missing)".into())
        }
        Err(e) => Some(e.to_string()),
    }
}

/// The level names Confluent accepts, for error messages.
pub const VALID_LEVELS: &str =
    "NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE";

impl FromStr for Level {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_uppercase())).map_err(|_| ())
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = serde_json::to_value(self).map_err(|_| fmt::Error)?;
        f.write_str(v.as_str().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#)).unwrap()
    }

    #[test]
    fn adding_a_field_with_a_default_is_backward_compatible() {
        let v1 = record(r#"{"name":"a","type":"long"}"#);
        let v2 = record(r#"{"name":"a","type":"long"},{"name":"b","type":["null","double"],"default":null}"#);
        assert_eq!(Level::Backward.violation(&v1, &v2), None);
        assert_eq!(Level::Full.violation(&v1, &v2), None);
    }

    #[test]
    fn adding_a_required_field_is_not_backward_compatible() {
        let v1 = record(r#"{"name":"a","type":"long"}"#);
        let v2 = record(r#"{"name":"a","type":"long"},{"name":"b","type":"double"}"#);
        assert!(Level::Backward.violation(&v1, &v2).is_some());
        assert_eq!(Level::Forward.violation(&v1, &v2), None);
        assert_eq!(Level::None.violation(&v1, &v2), None);
    }

    #[test]
    fn levels_parse_and_print_like_confluent() {
        assert_eq!("backward_transitive".parse::<Level>(), Ok(Level::BackwardTransitive));
        assert_eq!(Level::FullTransitive.to_string(), "FULL_TRANSITIVE");
        assert!("sideways".parse::<Level>().is_err());
    }
}
