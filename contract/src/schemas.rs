//! The contract's subjects: for each topic's value, the schema as it is now
//! (`contract/avro/`), as last released (`contract/avro/released/`: what consumers in the
//! field were built against), and the compatibility level every change must keep.
//!
//! Every subject is FULL: a new schema reads the data written with the released one (a
//! replay of old records), and the released schema reads data written with the new one (a
//! consumer that has not upgraded). Only optional fields with defaults may come or go.

use crate::compat::Level;
use crate::{EnrichedOptionChain, OptionChain, OptionQuote, Record, UnderlyingTick};
use apache_avro::Schema;

/// One subject of the contract.
#[derive(Debug, Clone, Copy)]
pub struct Subject {
    /// The topic whose values it describes.
    pub topic: &'static str,
    /// The schema's file name in `contract/avro/` (and `released/`).
    pub file: &'static str,
    /// The schema now.
    pub current: &'static str,
    /// The schema as released.
    pub released: &'static str,
    /// What every change must keep.
    pub level: Level,
}

impl Subject {
    /// Its name in the registry (TopicNameStrategy): `<topic>-value`.
    pub fn name(&self) -> String {
        format!("{}-value", self.topic)
    }
}

/// Every subject of the contract.
pub const SUBJECTS: [Subject; 4] = [
    Subject {
        topic: UnderlyingTick::TOPIC,
        file: "underlying_tick.avsc",
        current: UnderlyingTick::SCHEMA,
        released: include_str!("../avro/released/underlying_tick.avsc"),
        level: Level::Full,
    },
    Subject {
        topic: OptionQuote::TOPIC,
        file: "option_quote.avsc",
        current: OptionQuote::SCHEMA,
        released: include_str!("../avro/released/option_quote.avsc"),
        level: Level::Full,
    },
    Subject {
        topic: OptionChain::TOPIC,
        file: "option_chain.avsc",
        current: OptionChain::SCHEMA,
        released: include_str!("../avro/released/option_chain.avsc"),
        level: Level::Full,
    },
    Subject {
        topic: EnrichedOptionChain::TOPIC,
        file: "enriched_option_chain.avsc",
        current: EnrichedOptionChain::SCHEMA,
        released: include_str!("../avro/released/enriched_option_chain.avsc"),
        level: Level::Full,
    },
];

/// Why `new` may not follow `old` under `level` (`what` names them in the message, such as
/// "the released schema"), or a schema that does not parse; `Ok` when it may.
pub fn check(level: Level, old: &str, new: &str, what: &str) -> Result<(), String> {
    let old = Schema::parse_str(old).map_err(|e| format!("{what} does not parse: {e}"))?;
    let new = Schema::parse_str(new).map_err(|e| format!("the new schema does not parse: {e}"))?;
    match level.violation(&old, &new) {
        None => Ok(()),
        Some(why) => Err(format!("not {level} compatible with {what}: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_schemas_keep_their_subjects_level_with_the_released_ones() {
        for s in SUBJECTS {
            assert_eq!(
                check(s.level, s.released, s.current, "the released schema"),
                Ok(()),
                "{}",
                s.name()
            );
        }
    }

    #[test]
    fn dropping_a_field_without_a_default_breaks_old_readers_and_names_the_field() {
        let s = SUBJECTS[0];
        let mut v: serde_json::Value = serde_json::from_str(s.current).unwrap();
        v["fields"].as_array_mut().unwrap().retain(|f| f["name"] != "volume");
        let err = check(s.level, s.released, &v.to_string(), "the released schema").unwrap_err();
        assert!(err.contains("FULL") && err.contains("'volume'"), "{err}");
        // adding an optional field with a default is fine both ways
        let mut v: serde_json::Value = serde_json::from_str(s.current).unwrap();
        v["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "venue", "type": ["null", "string"], "default": null}));
        assert_eq!(
            check(s.level, s.released, &v.to_string(), "the released schema"),
            Ok(())
        );
        assert!(check(s.level, s.released, "{", "the released schema")
            .unwrap_err()
            .contains("does not parse"));
    }
}
