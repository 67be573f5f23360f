//! Records of the `_schemas` topic: the registry's durable state, replayed at start and
//! followed after. Keys and values are JSON in the shape Confluent's registry uses, plus
//! chainflow's claims (`CHAINFLOW_CLAIM`), by which instances agree on new ids.

use chainflow_contract::compat::Level;
use serde::{Deserialize, Serialize};

/// One change to the registry's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A claim of an id and a subject's version for a schema, written before the version
    /// itself. Claims are resolved in log order (`Store::apply`); each has a key of its
    /// own and is never deleted, so compaction keeps every one: they are the record of
    /// every id ever assigned.
    Claim(Claim),
    /// A schema version of a subject (also used to soft-delete it).
    Schema(SchemaValue),
    /// A schema version removed for good.
    SchemaTombstone {
        /// Subject.
        subject: String,
        /// Version.
        version: u32,
    },
    /// The global (`subject: None`) or a subject's compatibility level; `None` removes it.
    Config {
        /// Subject, or `None` for the global level.
        subject: Option<String>,
        /// New level.
        level: Option<Level>,
    },
}

/// Value of a `SCHEMA` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaValue {
    /// Subject.
    pub subject: String,
    /// Version within the subject.
    pub version: u32,
    /// Global schema id.
    pub id: u32,
    /// Schema text as registered.
    pub schema: String,
    /// Soft-deleted.
    #[serde(default)]
    pub deleted: bool,
}

/// A claim: which instance wants which id and version for which schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// Unique to the claim: the claiming instance and a sequence number of its own.
    #[serde(skip)]
    pub claimant: String,
    /// The id: a new one, or the id the same schema already has.
    pub id: u32,
    /// Subject.
    pub subject: String,
    /// The version wanted.
    pub version: u32,
    /// Schema text.
    pub schema: String,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "keytype", rename_all = "SCREAMING_SNAKE_CASE")]
enum Key {
    Schema { subject: String, version: u32, magic: u8 },
    Config { subject: Option<String>, magic: u8 },
    ChainflowClaim { claimant: String, magic: u8 },
}

#[derive(Serialize, Deserialize)]
struct ConfigValue {
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Level,
}

impl Entry {
    /// The record key (JSON).
    pub fn key(&self) -> String {
        let key = match self {
            Entry::Schema(v) => Key::Schema {
                subject: v.subject.clone(),
                version: v.version,
                magic: 1,
            },
            Entry::SchemaTombstone { subject, version } => Key::Schema {
                subject: subject.clone(),
                version: *version,
                magic: 1,
            },
            Entry::Config { subject, .. } => Key::Config {
                subject: subject.clone(),
                magic: 0,
            },
            Entry::Claim(c) => Key::ChainflowClaim {
                claimant: c.claimant.clone(),
                magic: 0,
            },
        };
        serde_json::to_string(&key).expect("keys serialize")
    }

    /// The record value (JSON), `None` for a tombstone.
    pub fn value(&self) -> Option<String> {
        match self {
            Entry::Schema(v) => Some(serde_json::to_string(v).expect("values serialize")),
            Entry::Claim(c) => Some(serde_json::to_string(c).expect("values serialize")),
            Entry::SchemaTombstone { .. } | Entry::Config { level: None, .. } => None,
            Entry::Config { level: Some(l), .. } => Some(
                serde_json::to_string(&ConfigValue {
                    compatibility_level: *l,
                })
                .expect("values serialize"),
            ),
        }
    }

    /// Reads a record back; records of other kinds (Confluent's NOOP, DELETE_SUBJECT...) are `None`.
    pub fn parse(key: &[u8], value: Option<&[u8]>) -> Result<Option<Entry>, String> {
        let raw: serde_json::Value = serde_json::from_slice(key).map_err(|e| format!("bad key: {e}"))?;
        let known = matches!(
            raw.get("keytype").and_then(|k| k.as_str()),
            Some("SCHEMA" | "CONFIG" | "CHAINFLOW_CLAIM")
        );
        if !known {
            return Ok(None);
        }
        let key: Key = serde_json::from_value(raw).map_err(|e| format!("bad key: {e}"))?;
        Ok(Some(match (key, value) {
            (Key::Schema { subject, version, .. }, None) => Entry::SchemaTombstone { subject, version },
            (Key::Schema { .. }, Some(v)) => {
                Entry::Schema(serde_json::from_slice(v).map_err(|e| format!("bad schema value: {e}"))?)
            }
            (Key::ChainflowClaim { claimant, .. }, Some(v)) => {
                let mut c: Claim = serde_json::from_slice(v).map_err(|e| format!("bad claim value: {e}"))?;
                c.claimant = claimant;
                Entry::Claim(c)
            }
            (Key::ChainflowClaim { .. }, None) => return Err("a claim without a value".into()),
            (Key::Config { subject, .. }, None) => Entry::Config { subject, level: None },
            (Key::Config { subject, .. }, Some(v)) => {
                let c: ConfigValue = serde_json::from_slice(v).map_err(|e| format!("bad config value: {e}"))?;
                Entry::Config {
                    subject,
                    level: Some(c.compatibility_level),
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: Entry) {
        let key = e.key();
        let value = e.value();
        assert_eq!(
            Entry::parse(key.as_bytes(), value.as_deref().map(str::as_bytes)).unwrap(),
            Some(e)
        );
    }

    #[test]
    fn entries_round_trip() {
        round_trip(Entry::Schema(SchemaValue {
            subject: "s-value".into(),
            version: 2,
            id: 7,
            schema: "\"long\"".into(),
            deleted: true,
        }));
        round_trip(Entry::Claim(Claim {
            claimant: "i-1a2b/3".into(),
            id: 4,
            subject: "s-value".into(),
            version: 2,
            schema: "\"long\"".into(),
        }));
        round_trip(Entry::SchemaTombstone {
            subject: "s".into(),
            version: 1,
        });
        round_trip(Entry::Config {
            subject: None,
            level: Some(Level::Full),
        });
        round_trip(Entry::Config {
            subject: Some("s".into()),
            level: None,
        });
    }

    #[test]
    fn keys_look_like_confluent_keys() {
        let e = Entry::Config {
            subject: None,
            level: Some(Level::Backward),
        };
        assert_eq!(e.key(), r#"{"keytype":"CONFIG","subject":null,"magic":0}"#);
        assert_eq!(e.value().unwrap(), r#"{"compatibilityLevel":"BACKWARD"}"#);
        assert_eq!(Entry::parse(br#"{"keytype":"NOOP","magic":0}"#, None).unwrap(), None);
    }
}
