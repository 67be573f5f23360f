//! The streams the sink stores, in one list that the configuration (`sink.streams`), the
//! CLI (`chainflow sink --stream`), replay (which stream stores a topic), `chainflow run`
//! and the sink all read. A stream is a topic (or the dead-letter topics) and the tables
//! its records become; how a record becomes rows is the sink's.

use crate::topics::{dead_letter_topics, dlq, ENRICHED_CHAIN, OPTION_QUOTE, UNDERLYING};

/// What a stream reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// One topic.
    Topic(&'static str),
    /// Every `dlq.*` topic.
    DeadLetters,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Topic(t) => f.write_str(t),
            Source::DeadLetters => f.write_str("the dlq.* topics"),
        }
    }
}

/// One stream of the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    /// Its name in `sink.streams`, `--stream`, logs and metrics (`stream` label).
    pub name: &'static str,
    /// Its stage's name (`sink.<name>`), in logs, errors, `/readyz` and the `stage` label.
    pub stage: &'static str,
    /// What it reads.
    pub source: Source,
    /// The tables it writes, in the order of the inserts.
    pub tables: &'static [&'static str],
}

impl StreamSpec {
    /// The topics it reads.
    pub fn topics(&self) -> Vec<String> {
        match self.source {
            Source::Topic(t) => vec![t.to_string()],
            Source::DeadLetters => dead_letter_topics(),
        }
    }

    /// Whether it stores the records of `topic` (the dead letters: of any `dlq.*` topic,
    /// those a replay names included).
    pub fn reads(&self, topic: &str) -> bool {
        match self.source {
            Source::Topic(t) => t == topic,
            Source::DeadLetters => topic.starts_with(&dlq("")),
        }
    }
}

/// `enriched.option_chain` → `chain_options`, then `chain_snapshots`.
pub const CHAINS: StreamSpec = StreamSpec {
    name: "chains",
    stage: "sink.chains",
    source: Source::Topic(ENRICHED_CHAIN),
    tables: &["chain_options", "chain_snapshots"],
};

/// `market.underlying` → `underlying_ticks`.
pub const TICKS: StreamSpec = StreamSpec {
    name: "ticks",
    stage: "sink.ticks",
    source: Source::Topic(UNDERLYING),
    tables: &["underlying_ticks"],
};

/// `market.option_quote` → `option_quotes`.
pub const QUOTES: StreamSpec = StreamSpec {
    name: "quotes",
    stage: "sink.quotes",
    source: Source::Topic(OPTION_QUOTE),
    tables: &["option_quotes"],
};

/// Every `dlq.*` topic → `dead_letters`.
pub const DEAD_LETTERS: StreamSpec = StreamSpec {
    name: "dead_letters",
    stage: "sink.dead_letters",
    source: Source::DeadLetters,
    tables: &["dead_letters"],
};

/// Every stream the sink can store, in the order `sink.streams` lists them by default.
pub const STREAMS: &[StreamSpec] = &[CHAINS, TICKS, QUOTES, DEAD_LETTERS];

/// Their names.
pub fn names() -> Vec<&'static str> {
    STREAMS.iter().map(|s| s.name).collect()
}

/// The stream named `name`.
pub fn named(name: &str) -> Option<&'static StreamSpec> {
    STREAMS.iter().find(|s| s.name == name)
}

/// The stream that stores `topic`'s records.
pub fn storing(topic: &str) -> Option<&'static StreamSpec> {
    STREAMS.iter().find(|s| s.reads(topic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::OPTION_CHAIN;

    #[test]
    fn every_stream_has_a_unique_name_stage_and_source_and_writes_a_table() {
        for (i, s) in STREAMS.iter().enumerate() {
            assert_eq!(s.stage, format!("sink.{}", s.name));
            assert!(!s.tables.is_empty(), "{} writes no table", s.name);
            for other in &STREAMS[i + 1..] {
                assert_ne!(s.name, other.name);
                assert_ne!(s.source, other.source);
            }
        }
    }

    #[test]
    fn a_topic_is_stored_by_its_stream_and_the_raw_chains_by_none() {
        assert_eq!(storing(ENRICHED_CHAIN), Some(&CHAINS));
        assert_eq!(storing(UNDERLYING).map(|s| s.name), Some("ticks"));
        assert_eq!(storing(&dlq(OPTION_CHAIN)), Some(&DEAD_LETTERS));
        assert_eq!(storing(OPTION_CHAIN), None);
        assert_eq!(storing("dlq.elsewhere"), Some(&DEAD_LETTERS));
        assert_eq!(storing("dlqx"), None);
        assert_eq!(
            named("quotes").map(StreamSpec::topics),
            Some(vec![OPTION_QUOTE.to_string()])
        );
        assert_eq!(named("candles"), None);
    }
}
