//! What a scenario's fault must leave behind beyond keys that balance, and what it must not:
//! the restarts the supervisor made, and what the sinks and enrichers running at the end
//! count in their /metrics (re-joins, retries, commit errors, stalls). A fault that left no
//! trace where it must leave one fails as "fault not observed"; one that caused what its
//! handling is there to prevent (a sink dropped from its group, a stall, a restart) fails
//! naming it.

use super::Fault;

/// How many of something a scenario may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Whatever the broker's protocol happens to do.
    Any,
    /// This many.
    Exactly(u64),
    /// At least this many: the fault's trace.
    AtLeast(u64),
}

/// What a scenario saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Effects {
    /// Restarts of the sinks and enrichers by the supervisor.
    pub restarts: u64,
    /// Restarts of the feed (a part that failed, started again).
    pub feed_restarts: u64,
    /// Partitions revoked from the sinks and enrichers running at the end (a member that
    /// re-joined its group, or another that joined or left).
    pub rebalances: u64,
    /// Transient failures the sinks running at the end retried (ClickHouse, the registry).
    pub sink_retries: u64,
    /// Failed reads, batches and commits the enrichers running at the end retried.
    pub enrich_retries: u64,
    /// Offset commits of the sinks running at the end that failed.
    pub commit_errors: u64,
    /// Stalls the sinks running at the end detected (and healed by re-joining).
    pub stalls: u64,
}

/// What a scenario must see.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    restarts: Count,
    feed_restarts: Count,
    rebalances: Count,
    sink_retries: Count,
    commit_errors: Count,
    stalls: Count,
}

/// Nothing restarts, re-joins, fails a commit or stalls; retries are the fault's business.
const CALM: Expect = Expect {
    restarts: Count::Exactly(0),
    feed_restarts: Count::Exactly(0),
    rebalances: Count::Exactly(0),
    sink_retries: Count::Any,
    commit_errors: Count::Exactly(0),
    stalls: Count::Exactly(0),
};

/// A Kafka fault: the coordinators move, so members may re-join and commits fail (and are
/// retried); nothing restarts and nothing stalls.
const KAFKA: Expect = Expect {
    rebalances: Count::Any,
    commit_errors: Count::Any,
    ..CALM
};

impl Expect {
    /// What `fault` must cause.
    pub fn of(fault: Fault) -> Self {
        let clickhouse = Expect {
            sink_retries: Count::AtLeast(1),
            ..CALM
        };
        let killed = |times: u64| Expect {
            restarts: Count::Exactly(times),
            rebalances: Count::Any,
            commit_errors: Count::Any,
            ..CALM
        };
        match fault {
            Fault::KillSink(n) | Fault::KillEnrich(n) => killed(n.into()),
            Fault::ClickHouseDown(_)
            | Fault::ClickHouseFrozen(_)
            | Fault::ClickHouseSlow(_)
            | Fault::ClickHouseAckLost(_)
            | Fault::TableDetached(_)
            | Fault::RegistryDown(_) => clickhouse,
            Fault::BrokerDown(secs) => Expect {
                // past message.timeout.ms (60 s) the feed gives up, and is started again
                feed_restarts: if secs > 60 {
                    Count::AtLeast(1)
                } else {
                    Count::Exactly(0)
                },
                ..KAFKA
            },
            Fault::LeaderKilled(_)
            | Fault::TwoBrokersDown(_)
            | Fault::BrokerFrozen(_)
            | Fault::RollingRestart
            | Fault::QuorumLeaderKilled(_)
            | Fault::BrokerIsolated(_) => KAFKA,
            // replaced members: the others re-join each time
            Fault::RebalanceStorm(_) => Expect {
                rebalances: Count::AtLeast(1),
                commit_errors: Count::Any,
                ..CALM
            },
            Fault::DoubleSigterm => Expect {
                sink_retries: Count::Any,
                ..killed(1)
            },
            Fault::Poison => CALM,
            // the sinks' topic goes away and comes back: their partitions are revoked, and a
            // commit for the deleted topic's partitions may be refused
            Fault::TopicRecreated => Expect {
                rebalances: Count::Any,
                commit_errors: Count::Any,
                ..CALM
            },
            Fault::FeedKilled => Expect {
                feed_restarts: Count::Exactly(1),
                ..CALM
            },
            Fault::AbortAt(_) => killed(1),
        }
    }

    /// What `seen` has that this does not allow, a line each.
    pub fn check(&self, seen: &Effects) -> Vec<String> {
        [
            ("restarts of the sinks and enrichers", self.restarts, seen.restarts),
            ("restarts of the feed", self.feed_restarts, seen.feed_restarts),
            ("partitions revoked (re-joins)", self.rebalances, seen.rebalances),
            ("sink retries", self.sink_retries, seen.sink_retries),
            ("sink commit errors", self.commit_errors, seen.commit_errors),
            ("stalls", self.stalls, seen.stalls),
        ]
        .into_iter()
        .filter_map(|(what, want, got)| match want {
            Count::Exactly(n) if got != n => Some(format!("{what}: {got}, expected {n}")),
            Count::AtLeast(n) if got < n => Some(format!("fault not observed: {what}: {got}, expected at least {n}")),
            _ => None,
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_dropped_from_its_group_fails_an_outage_of_clickhouse() {
        let expect = Expect::of(Fault::ClickHouseDown(45));
        let quiet = Effects {
            sink_retries: 12,
            ..Effects::default()
        };
        assert!(expect.check(&quiet).is_empty(), "{:?}", expect.check(&quiet));
        let dropped = Effects {
            rebalances: 4,
            commit_errors: 4,
            ..quiet
        };
        assert_eq!(
            expect.check(&dropped),
            [
                "partitions revoked (re-joins): 4, expected 0",
                "sink commit errors: 4, expected 0"
            ]
        );
        let unnoticed = Effects::default();
        assert_eq!(
            expect.check(&unnoticed),
            ["fault not observed: sink retries: 0, expected at least 1"]
        );
    }

    #[test]
    fn a_feed_outlived_by_the_brokers_must_be_started_again() {
        let seen = Effects::default();
        assert_eq!(
            Expect::of(Fault::BrokerDown(90)).check(&seen),
            ["fault not observed: restarts of the feed: 0, expected at least 1"]
        );
        assert!(Expect::of(Fault::BrokerDown(10)).check(&seen).is_empty());
    }
}
