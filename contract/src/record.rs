//! What every record type of the contract declares: its topic, its Avro schema and its key.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A value type with its topic, Avro schema and key.
pub trait Record: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Topic the record is produced to.
    const TOPIC: &'static str;
    /// Avro schema (the `.avsc` file's text).
    const SCHEMA: &'static str;
    /// Full name of the Avro record.
    const NAME: &'static str;
    /// Kafka key.
    fn key(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EnrichedOptionChain, OptionChain, OptionQuote, UnderlyingTick};

    fn assert_schema_names_its_record<R: Record>() {
        let schema = apache_avro::Schema::parse_str(R::SCHEMA).expect("schema parses");
        match schema {
            apache_avro::Schema::Record(r) => assert_eq!(r.name.fullname(None), R::NAME),
            other => panic!("{} is not a record: {other:?}", R::TOPIC),
        }
    }

    #[test]
    fn every_schema_parses_and_names_its_record() {
        assert_schema_names_its_record::<UnderlyingTick>();
        assert_schema_names_its_record::<OptionQuote>();
        assert_schema_names_its_record::<OptionChain>();
        assert_schema_names_its_record::<EnrichedOptionChain>();
    }
}
