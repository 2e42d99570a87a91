//! A socket's joins, by topic: small for the few joins most sockets hold, still fast for many.
//!
//! A socket usually joins one to four topics, and every connection keeps its joins for its whole
//! life, so their memory counts per idle connection. A `HashMap` holding one join allocates four
//! buckets and their control bytes (about 280 bytes); a vector allocates exactly its entries (one
//! join: 64 bytes). Up to [`MAX_FEW`] joins live in a vector searched linearly (comparing topic
//! lengths first, so most comparisons are one integer); beyond that, in a map, so that a socket
//! allowed many joins (`max_channels`) keeps constant-time lookups. A map that falls back to
//! [`BACK_TO_FEW`] joins becomes a vector again (the gap keeps a socket joining and leaving
//! around the threshold from converting on every change). Nothing here is ordered: callers
//! must not rely on the order of [`Joins::take_all`] or [`Joins::topics`].

use std::collections::HashMap;
use std::sync::Arc;

/// Most joins kept in a vector; one more moves them to a map.
const MAX_FEW: usize = 16;

/// A map that falls to this many joins becomes a vector again.
const BACK_TO_FEW: usize = MAX_FEW / 2;

/// Topic → join, at most one join per topic.
pub(super) struct Joins<J> {
    repr: Repr<J>,
}

enum Repr<J> {
    /// At most [`MAX_FEW`] entries, distinct topics, in no particular order; the capacity
    /// grows one entry at a time (joins are rare, lookups are not).
    Few(Vec<(Arc<str>, J)>),
    /// More than [`BACK_TO_FEW`] entries. Boxed: the socket state holds a vector's 24 bytes
    /// rather than a map's 48. The state lives in the socket actor's task for the socket's
    /// whole life, and tokio rounds a task up to 128 bytes: in the echo example these 24 bytes
    /// took the task from 1,024 bytes to 896.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<Arc<str>, J>>),
}

impl<J> Default for Joins<J> {
    fn default() -> Self {
        Self {
            repr: Repr::default(),
        }
    }
}

impl<J> Joins<J> {
    /// How many joins there are.
    pub(super) fn len(&self) -> usize {
        match &self.repr {
            Repr::Few(few) => few.len(),
            Repr::Many(many) => many.len(),
        }
    }

    /// Whether `topic` is joined.
    pub(super) fn contains(&self, topic: &str) -> bool {
        self.get(topic).is_some()
    }

    /// The join of `topic`.
    pub(super) fn get(&self, topic: &str) -> Option<&J> {
        match &self.repr {
            Repr::Few(few) => few.iter().find(|(t, _)| **t == *topic).map(|(_, j)| j),
            Repr::Many(many) => many.get(topic),
        }
    }

    /// The join of `topic`, to change.
    pub(super) fn get_mut(&mut self, topic: &str) -> Option<&mut J> {
        match &mut self.repr {
            Repr::Few(few) => few.iter_mut().find(|(t, _)| **t == *topic).map(|(_, j)| j),
            Repr::Many(many) => many.get_mut(topic),
        }
    }

    /// Records `join` for `topic`, returning the join it replaces, if any.
    pub(super) fn insert(&mut self, topic: Arc<str>, join: J) -> Option<J> {
        if let Some(old) = self.get_mut(&topic) {
            return Some(std::mem::replace(old, join));
        }
        match &mut self.repr {
            Repr::Few(few) if few.len() < MAX_FEW => {
                // Exactly one more slot: `push` alone would make room for four.
                few.reserve_exact(1);
                few.push((topic, join));
            }
            Repr::Few(few) => {
                let mut many: HashMap<Arc<str>, J> = HashMap::with_capacity(MAX_FEW * 2);
                many.extend(std::mem::take(few));
                many.insert(topic, join);
                self.repr = Repr::Many(Box::new(many));
            }
            Repr::Many(many) => {
                many.insert(topic, join);
            }
        }
        None
    }

    /// Takes the join of `topic` out.
    pub(super) fn remove(&mut self, topic: &str) -> Option<J> {
        match &mut self.repr {
            Repr::Few(few) => {
                let at = few.iter().position(|(t, _)| **t == *topic)?;
                let (_, join) = few.swap_remove(at);
                // Give back what a burst of joins left unused.
                if few.len() <= few.capacity() / 2 {
                    few.shrink_to_fit();
                }
                Some(join)
            }
            Repr::Many(many) => {
                let join = many.remove(topic)?;
                if many.len() <= BACK_TO_FEW {
                    let mut few = Vec::with_capacity(many.len());
                    few.extend(many.drain());
                    self.repr = Repr::Few(few);
                }
                Some(join)
            }
        }
    }

    /// Every joined topic, in no particular order.
    pub(super) fn topics(&self) -> Vec<Arc<str>> {
        match &self.repr {
            Repr::Few(few) => few.iter().map(|(t, _)| t.clone()).collect(),
            Repr::Many(many) => many.keys().cloned().collect(),
        }
    }

    /// Takes every join out (leaving none), in no particular order.
    pub(super) fn take_all(&mut self) -> Vec<(Arc<str>, J)> {
        match std::mem::take(&mut self.repr) {
            Repr::Few(few) => few,
            Repr::Many(many) => many.into_iter().collect(),
        }
    }
}

impl<J> Default for Repr<J> {
    fn default() -> Self {
        Repr::Few(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn topic(i: usize) -> Arc<str> {
        Arc::from(format!("room:{i}"))
    }

    fn is_few<J>(joins: &Joins<J>) -> bool {
        matches!(joins.repr, Repr::Few(_))
    }

    /// What `joins` holds, sorted (the structure promises no order).
    fn sorted(joins: &Joins<usize>) -> BTreeMap<String, usize> {
        joins
            .topics()
            .iter()
            .map(|t| {
                (
                    t.to_string(),
                    *joins.get(t).expect("a listed topic is joined"),
                )
            })
            .collect()
    }

    #[test]
    fn takes_a_vectors_room_in_the_socket_state() {
        // The socket state is part of the actor task's allocation: a map inline would double it.
        assert_eq!(
            std::mem::size_of::<Joins<[u64; 8]>>(),
            std::mem::size_of::<Vec<u64>>()
        );
    }

    #[test]
    fn inserts_looks_up_replaces_and_removes() {
        let mut joins = Joins::default();
        assert_eq!(joins.len(), 0);
        assert!(!joins.contains("room:1"));
        assert_eq!(joins.insert(topic(1), 10), None);
        assert_eq!(joins.insert(topic(2), 20), None);
        assert_eq!(joins.len(), 2);
        assert_eq!(joins.get("room:1"), Some(&10));
        assert!(joins.contains("room:2"));
        assert_eq!(joins.get("room:3"), None);
        // A prefix or a longer name is another topic.
        assert_eq!(joins.get("room:"), None);
        assert_eq!(joins.get("room:10"), None);

        *joins.get_mut("room:2").expect("joined") += 1;
        assert_eq!(joins.get("room:2"), Some(&21));
        // At most one join per topic: inserting again replaces it.
        assert_eq!(joins.insert(topic(1), 11), Some(10));
        assert_eq!(joins.len(), 2);
        assert_eq!(joins.get("room:1"), Some(&11));

        assert_eq!(joins.remove("room:1"), Some(11));
        assert_eq!(joins.remove("room:1"), None);
        assert_eq!(joins.len(), 1);
        assert!(!joins.contains("room:1"));
        assert_eq!(joins.get("room:2"), Some(&21));
    }

    #[test]
    fn a_few_joins_take_exactly_their_room() {
        let mut joins = Joins::default();
        for i in 0..4 {
            joins.insert(topic(i), i);
            let Repr::Few(few) = &joins.repr else {
                panic!("four joins are few");
            };
            assert_eq!(few.capacity(), i + 1);
        }
        for i in 0..3 {
            joins.remove(&topic(i));
        }
        let Repr::Few(few) = &joins.repr else {
            panic!("one join is few");
        };
        assert!(few.capacity() <= 2, "capacity {}", few.capacity());
        assert_eq!(joins.get("room:3"), Some(&3));
    }

    #[test]
    fn grows_into_a_map_and_back_keeping_every_join() {
        let mut joins = Joins::default();
        let mut expected = BTreeMap::new();
        for i in 0..=MAX_FEW {
            assert!(is_few(&joins), "{i} joins are few");
            joins.insert(topic(i), i);
            expected.insert(topic(i).to_string(), i);
        }
        assert!(!is_few(&joins), "{} joins are many", MAX_FEW + 1);
        assert_eq!(joins.len(), MAX_FEW + 1);
        assert_eq!(sorted(&joins), expected);
        assert_eq!(joins.insert(topic(3), 33), Some(3));
        expected.insert(topic(3).to_string(), 33);

        // Removed in an order unrelated to the insertions.
        let mut i = 0;
        while joins.len() > BACK_TO_FEW + 1 {
            i = (i + 7) % (MAX_FEW + 1);
            let name = topic(i).to_string();
            assert_eq!(joins.remove(&name), expected.remove(&name));
            assert!(!is_few(&joins), "still many at {}", joins.len());
            assert_eq!(sorted(&joins), expected);
        }
        let last = expected.keys().next().cloned().expect("some left");
        assert_eq!(joins.remove(&last), expected.remove(&last));
        assert!(is_few(&joins), "{BACK_TO_FEW} joins are few again");
        assert_eq!(joins.len(), BACK_TO_FEW);
        assert_eq!(sorted(&joins), expected);
        // And it still works as a vector.
        assert_eq!(joins.insert(topic(100), 100), None);
        assert_eq!(joins.get("room:100"), Some(&100));
    }

    #[test]
    fn take_all_empties_it_in_any_form() {
        for n in [0, 1, 3, MAX_FEW, MAX_FEW + 5] {
            let mut joins = Joins::default();
            for i in 0..n {
                joins.insert(topic(i), i);
            }
            let mut taken: Vec<usize> = joins.take_all().into_iter().map(|(_, j)| j).collect();
            taken.sort_unstable();
            assert_eq!(taken, (0..n).collect::<Vec<_>>());
            assert_eq!(joins.len(), 0);
            assert!(joins.topics().is_empty());
            assert!(is_few(&joins));
        }
    }

    /// The socket refuses a join once `len()` reaches `max_channels`; `len()` must count right
    /// through every change of form, whatever the bound.
    #[test]
    fn counts_right_for_the_max_channels_bound() {
        for max_channels in [1, 3, MAX_FEW, MAX_FEW + 1, 100] {
            let mut joins = Joins::default();
            let mut refused = 0;
            // The socket's rule (`SocketState::join`): refuse at the bound.
            let mut join = |joins: &mut Joins<usize>, i: usize| {
                if joins.len() >= max_channels {
                    refused += 1;
                } else {
                    joins.insert(topic(i), i);
                }
            };
            for i in 0..max_channels + 3 {
                join(&mut joins, i);
            }
            assert_eq!(joins.len(), max_channels);
            // Leaving one makes room for exactly one.
            joins.remove(&topic(0));
            join(&mut joins, 1000);
            join(&mut joins, 1001);
            assert_eq!(joins.len(), max_channels);
            assert!(joins.contains("room:1000"));
            assert!(!joins.contains("room:1001"));
            assert_eq!(refused, 4);
        }
    }
}
