//! The latest state of every channel, and the subscriptions to it. Each channel is a
//! `tokio::sync::watch`: it holds one state, the newest, whatever the number of clients, and
//! a client that is slow to take its updates finds only the newest when it comes back
//! (conflation: the states it skipped are counted by their versions, never queued).

use crate::channel::Channel;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// One state of a channel.
#[derive(Debug)]
pub struct State {
    /// The channel's states counted from 1: a client that goes from 3 to 7 missed three.
    pub version: u64,
    /// `data`, as JSON text (serialized once, sent to every client).
    pub data: String,
    /// The feed's production stamp of the record this state came from, µs since the
    /// epoch; `None` for a state seeded from ClickHouse.
    pub produced_us: Option<i64>,
    /// What orders the states of the channel (event time, then processing time), for
    /// those that are ordered: a state not newer than the current is ignored.
    pub order: Option<(i64, i64)>,
}

/// What a subscription watches: `None` until the channel has a state.
pub type Watch = watch::Receiver<Option<Arc<State>>>;

/// Every channel's latest state.
#[derive(Default)]
pub struct Hub {
    channels: Mutex<HashMap<Channel, watch::Sender<Option<Arc<State>>>>>,
}

impl Hub {
    /// Makes `data` the state of `channel`; with an `order`, only if the current state's is
    /// older (the same order is the same record again: a redelivery, a replay); true when
    /// it did.
    pub fn publish(
        &self,
        channel: &Channel,
        data: String,
        produced_us: Option<i64>,
        order: Option<(i64, i64)>,
    ) -> bool {
        let mut channels = self.channels.lock().expect("the hub's lock");
        let tx = channels
            .entry(channel.clone())
            .or_insert_with(|| watch::channel(None).0);
        let mut data = Some(data);
        let mut first = false;
        let published = tx.send_if_modified(|current| {
            let version = match current {
                Some(c) if order.is_some() && c.order >= order => return false,
                Some(c) => c.version + 1,
                None => {
                    first = true;
                    1
                }
            };
            *current = Some(Arc::new(State {
                version,
                data: data.take().expect("published once"),
                produced_us,
                order,
            }));
            true
        });
        if first {
            // only a channel's first state changes how many have one
            metrics::gauge!("chainflow_live_channels").set(live(&channels) as f64);
        }
        published
    }

    /// A watch on `channel`, which gets a state when one is published.
    pub fn subscribe(&self, channel: &Channel) -> Watch {
        let mut channels = self.channels.lock().expect("the hub's lock");
        channels
            .entry(channel.clone())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Forgets `channel` if nobody watches it and it has no state (a subscription to a
    /// channel that never came to life leaves nothing behind).
    pub fn release(&self, channel: &Channel) {
        let mut channels = self.channels.lock().expect("the hub's lock");
        if channels
            .get(channel)
            .is_some_and(|tx| tx.receiver_count() == 0 && tx.borrow().is_none())
        {
            channels.remove(channel);
        }
    }

    /// The current state of `channel`.
    pub fn latest(&self, channel: &Channel) -> Option<Arc<State>> {
        let channels = self.channels.lock().expect("the hub's lock");
        channels.get(channel).and_then(|tx| tx.borrow().clone())
    }

    /// Every channel with a state, in order.
    pub fn channels(&self) -> Vec<(Channel, Arc<State>)> {
        let channels = self.channels.lock().expect("the hub's lock");
        let mut all: Vec<(Channel, Arc<State>)> = channels
            .iter()
            .filter_map(|(c, tx)| tx.borrow().clone().map(|s| (c.clone(), s)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// How many channels have a state.
fn live(channels: &HashMap<Channel, watch::Sender<Option<Arc<State>>>>) -> usize {
    channels.values().filter(|tx| tx.borrow().is_some()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> Channel {
        "metrics:NIFTY".parse().unwrap()
    }

    #[test]
    fn older_states_never_replace_newer_ones() {
        let hub = Hub::default();
        let c = channel();
        assert!(hub.publish(&c, "{\"a\":1}".into(), None, Some((10, 1))));
        assert!(!hub.publish(&c, "{\"a\":0}".into(), Some(5), Some((9, 9))));
        assert!(
            !hub.publish(&c, "{\"a\":1}".into(), Some(5), Some((10, 1))),
            "the same record again"
        );
        assert!(hub.publish(&c, "{\"a\":2}".into(), Some(6), Some((10, 2))));
        let s = hub.latest(&c).unwrap();
        assert_eq!((s.version, s.data.as_str(), s.produced_us), (2, "{\"a\":2}", Some(6)));
        assert!(
            hub.publish(&c, "{\"b\":1}".into(), None, None),
            "unordered states always replace"
        );
    }

    #[tokio::test]
    async fn a_slow_watcher_finds_only_the_newest_state() {
        let hub = Hub::default();
        let c = channel();
        let mut rx = hub.subscribe(&c);
        for i in 1..=100 {
            hub.publish(&c, format!("{i}"), None, Some((i, 0)));
        }
        rx.changed().await.unwrap();
        let s = rx.borrow_and_update().clone().unwrap();
        assert_eq!((s.version, s.data.as_str()), (100, "100"));
        assert!(!rx.has_changed().unwrap(), "nothing queued behind the newest state");
    }

    #[test]
    fn channels_without_state_or_watchers_are_forgotten() {
        let hub = Hub::default();
        let (c, d): (Channel, Channel) = ("chain:X:2026-01-01".parse().unwrap(), channel());
        drop(hub.subscribe(&c));
        hub.release(&c);
        let rx = hub.subscribe(&d);
        hub.publish(&d, "1".into(), None, None);
        drop(rx);
        hub.release(&d);
        assert!(hub.channels.lock().unwrap().get(&c).is_none());
        assert_eq!(hub.channels().len(), 1, "a channel with a state stays");
    }
}
