//! One topic's presences and its pending (not yet broadcast) diff. Pure data: no actors.
//!
//! Every meta carries a unique `phx_ref`; phoenix.js adds, replaces and removes metas by it.
//! Changes accumulate in a pending diff until the shard flushes it. Within one pending diff a
//! join followed by a leave of the same meta cancels out, so a flush never announces a meta
//! that is already gone — unless a client may have seen it in a served snapshot (it is
//! *exposed*), in which case the leave is announced too.
//!
//! The encoded list (`presence_state`) is computed at most once per window and served to every
//! join of that window: changes after it reach those clients in the next diff, because they
//! subscribed before asking for it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::PresenceError;
use crate::SubscriberId;
use crate::cluster::wire::Op;
use crate::metering::EntryCount;

/// Where a presence tracked on another node comes from: that node's shard, in one life
/// (incarnation) of the node.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    pub(crate) node: Arc<str>,
    pub(crate) inc: u64,
    pub(crate) shard: u16,
}

/// Who tracks a presence: a join on this node, or another node.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    Local(SubscriberId),
    Remote(Arc<Origin>),
}

struct Entry {
    owner: Owner,
    meta: Map<String, Value>,
}

impl Entry {
    fn phx_ref(&self) -> Option<&str> {
        self.meta.get("phx_ref").and_then(Value::as_str)
    }
}

/// Metas by key, as `{key: [meta, …]}`.
type Metas = BTreeMap<String, Vec<Value>>;

#[derive(Default)]
struct Pending {
    joins: Metas,
    leaves: Metas,
}

/// The presences of one topic.
#[derive(Default)]
pub(crate) struct TopicPresence {
    entries: BTreeMap<String, Vec<Entry>>,
    pending: Pending,
    /// The encoded list served since the last flush.
    snapshot: Option<Arc<RawValue>>,
    /// `phx_ref`s of pending joins that a served snapshot contains.
    exposed: HashSet<String>,
    /// This node's own changes since the last flush, for the other nodes.
    outgoing: Vec<Op>,
    /// Whether other nodes may want this node's changes (`outgoing` is kept).
    replicate: bool,
    /// Its entries, in the node's total (the metrics' presence entries).
    count: EntryCount,
}

fn as_object(meta: Value) -> Result<Map<String, Value>, PresenceError> {
    match meta {
        Value::Object(map) => Ok(map),
        _ => Err(PresenceError::MetaNotAnObject),
    }
}

impl TopicPresence {
    /// An empty topic; `replicate`: keep this node's changes for the other nodes.
    pub(crate) fn new(replicate: bool) -> Self {
        Self {
            replicate,
            ..Self::default()
        }
    }

    /// Counts its entries in `total` (from the first one on).
    pub(crate) fn counted_in(mut self, total: Arc<std::sync::atomic::AtomicUsize>) -> Self {
        self.count = EntryCount::new(total);
        self
    }

    fn send(&mut self, op: Op) {
        if self.replicate {
            self.outgoing.push(op);
        }
    }

    /// Adds a meta for `key`, owned by `owner`.
    pub(crate) fn track(
        &mut self,
        owner: SubscriberId,
        key: &str,
        meta: Value,
        phx_ref: String,
    ) -> Result<(), PresenceError> {
        let mut meta = as_object(meta)?;
        let owner = Owner::Local(owner);
        if self
            .entries
            .get(key)
            .is_some_and(|v| v.iter().any(|e| e.owner == owner))
        {
            return Err(PresenceError::AlreadyTracked);
        }
        meta.insert("phx_ref".into(), Value::String(phx_ref));
        meta.remove("phx_ref_prev");
        self.joined(key, &meta);
        if self.replicate {
            self.send(Op::Join(key.to_owned(), meta.clone()));
        }
        self.entries
            .entry(key.to_owned())
            .or_default()
            .push(Entry { owner, meta });
        self.count.add();
        Ok(())
    }

    /// Replaces `owner`'s meta for `key` with a new one (new `phx_ref`, old one as
    /// `phx_ref_prev`): the old meta leaves and the new one joins in the same diff.
    pub(crate) fn update(
        &mut self,
        owner: SubscriberId,
        key: &str,
        meta: Value,
        phx_ref: String,
    ) -> Result<(), PresenceError> {
        let mut meta = as_object(meta)?;
        let owner = Owner::Local(owner);
        let entry = self
            .entries
            .get_mut(key)
            .and_then(|v| v.iter_mut().find(|e| e.owner == owner))
            .ok_or(PresenceError::NotTracked)?;
        let old = std::mem::take(&mut entry.meta);
        let prev = old.get("phx_ref").cloned().unwrap_or(Value::Null);
        meta.insert("phx_ref".into(), Value::String(phx_ref));
        meta.insert("phx_ref_prev".into(), prev.clone());
        entry.meta = meta.clone();
        self.left(key, &old);
        self.joined(key, &meta);
        if let Value::String(prev) = prev {
            self.send(Op::Leave(key.to_owned(), prev));
        }
        self.send(Op::Join(key.to_owned(), meta));
        Ok(())
    }

    /// Removes `owner`'s meta for `key`.
    pub(crate) fn untrack(&mut self, owner: SubscriberId, key: &str) -> bool {
        let owner = Owner::Local(owner);
        let Some(entry) = self.remove_where(key, |e| e.owner == owner) else {
            return false;
        };
        if let Some(phx_ref) = entry.phx_ref() {
            self.send(Op::Leave(key.to_owned(), phx_ref.to_owned()));
        }
        true
    }

    /// Removes the first entry of `key` that `which` picks, announcing it as left.
    fn remove_where(&mut self, key: &str, which: impl Fn(&Entry) -> bool) -> Option<Entry> {
        let list = self.entries.get_mut(key)?;
        let at = list.iter().position(which)?;
        let entry = list.remove(at);
        if list.is_empty() {
            self.entries.remove(key);
        }
        self.count.remove();
        self.left(key, &entry.meta);
        Some(entry)
    }

    /// Applies another node's changes (from `origin`, in order). A join already known by its
    /// `phx_ref` and a leave of an unknown one change nothing. Whether anything changed.
    pub(crate) fn apply_remote(&mut self, origin: &Arc<Origin>, ops: Vec<Op>) -> bool {
        let mut changed = false;
        for op in ops {
            changed |= match op {
                Op::Join(key, meta) => self.join_remote(origin, key, meta),
                Op::Leave(key, phx_ref) => self
                    .remove_where(&key, |e| {
                        matches!(&e.owner, Owner::Remote(o) if o == origin)
                            && e.phx_ref() == Some(&phx_ref)
                    })
                    .is_some(),
            };
        }
        changed
    }

    fn join_remote(&mut self, origin: &Arc<Origin>, key: String, meta: Map<String, Value>) -> bool {
        let phx_ref = meta.get("phx_ref").and_then(Value::as_str);
        if phx_ref.is_none()
            || self
                .entries
                .get(&key)
                .is_some_and(|v| v.iter().any(|e| e.phx_ref() == phx_ref))
        {
            return false;
        }
        self.joined(&key, &meta);
        self.entries.entry(key).or_default().push(Entry {
            owner: Owner::Remote(origin.clone()),
            meta,
        });
        self.count.add();
        true
    }

    /// Replaces everything `origin` tracks here with `entries` (its whole state for this
    /// topic): what is no longer there leaves, what is new joins. Whether anything changed.
    pub(crate) fn replace_origin(
        &mut self,
        origin: &Arc<Origin>,
        entries: Vec<(String, Map<String, Value>)>,
    ) -> bool {
        let keep: HashSet<(&str, &str)> = entries
            .iter()
            .filter_map(|(key, meta)| Some((key.as_str(), meta.get("phx_ref")?.as_str()?)))
            .collect();
        let stale: Vec<(String, String)> = self
            .entries
            .iter()
            .flat_map(|(key, list)| list.iter().map(move |e| (key, e)))
            .filter(|(key, e)| {
                matches!(&e.owner, Owner::Remote(o) if o == origin)
                    && !e
                        .phx_ref()
                        .is_some_and(|r| keep.contains(&(key.as_str(), r)))
            })
            .filter_map(|(key, e)| Some((key.clone(), e.phx_ref()?.to_owned())))
            .collect();
        let mut changed = !stale.is_empty();
        for (key, phx_ref) in stale {
            self.remove_where(&key, |e| e.phx_ref() == Some(&phx_ref));
        }
        for (key, meta) in entries {
            changed |= self.join_remote(origin, key, meta);
        }
        changed
    }

    /// Removes every presence tracked by node `node` (any life of it). Whether any went.
    pub(crate) fn drop_node(&mut self, node: &str) -> bool {
        let gone: Vec<(String, String)> = self
            .entries
            .iter()
            .flat_map(|(key, list)| list.iter().map(move |e| (key, e)))
            .filter(|(_, e)| matches!(&e.owner, Owner::Remote(o) if &*o.node == node))
            .filter_map(|(key, e)| Some((key.clone(), e.phx_ref()?.to_owned())))
            .collect();
        for (key, phx_ref) in &gone {
            self.remove_where(key, |e| e.phx_ref() == Some(phx_ref));
        }
        !gone.is_empty()
    }

    /// Whether `origin` tracks anything here.
    pub(crate) fn has_origin(&self, origin: &Arc<Origin>) -> bool {
        self.entries
            .values()
            .flatten()
            .any(|e| matches!(&e.owner, Owner::Remote(o) if o == origin))
    }

    /// The presences tracked on this node (for another node's copy).
    pub(crate) fn local_entries(&self) -> Vec<(String, Map<String, Value>)> {
        self.entries
            .iter()
            .flat_map(|(key, list)| list.iter().map(move |e| (key, e)))
            .filter(|(_, e)| matches!(e.owner, Owner::Local(_)))
            .map(|(key, e)| (key.clone(), e.meta.clone()))
            .collect()
    }

    /// This node's changes since the last call, for the other nodes, in order. Nothing is
    /// cancelled out (a join that left again goes too): a whole-state dump may have carried
    /// the join to another node before its leave.
    pub(crate) fn take_outgoing(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.outgoing)
    }

    /// Removes every meta `owner` tracked (its channel ended). Returns how many went.
    pub(crate) fn untrack_owner(&mut self, owner: SubscriberId) -> usize {
        let local = Owner::Local(owner);
        let keys: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, v)| v.iter().any(|e| e.owner == local))
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().filter(|key| self.untrack(owner, key)).count()
    }

    /// `{key: {"metas": [meta, …]}}`, the `presence_state` payload.
    pub(crate) fn list(&self) -> Value {
        let state: Map<String, Value> = self
            .entries
            .iter()
            .map(|(key, entries)| {
                let metas: Vec<Value> = entries
                    .iter()
                    .map(|e| Value::Object(e.meta.clone()))
                    .collect();
                (key.clone(), json!({ "metas": metas }))
            })
            .collect();
        Value::Object(state)
    }

    /// The list, encoded, as of at most one window ago (see the module docs).
    pub(crate) fn snapshot(&mut self) -> Arc<RawValue> {
        if let Some(snapshot) = &self.snapshot {
            return snapshot.clone();
        }
        // A `Value` always serializes.
        let snapshot = serde_json::value::to_raw_value(&self.list())
            .map_or_else(|_| crate::protocol::empty_object(), Arc::from);
        for metas in self.pending.joins.values() {
            self.exposed.extend(
                metas
                    .iter()
                    .filter_map(|m| m.get("phx_ref")?.as_str().map(str::to_owned)),
            );
        }
        self.snapshot = Some(snapshot.clone());
        snapshot
    }

    /// How many keys are present.
    #[cfg(test)]
    pub(crate) fn key_count(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is present and nothing is pending.
    pub(crate) fn is_idle(&self) -> bool {
        self.entries.is_empty()
            && self.pending.joins.is_empty()
            && self.pending.leaves.is_empty()
            && self.outgoing.is_empty()
    }

    /// The pending diff as `{"joins": {...}, "leaves": {...}}` (both always present), or
    /// `None` if nothing changed.
    pub(crate) fn take_diff(&mut self) -> Option<Value> {
        self.snapshot = None;
        self.exposed.clear();
        let pending = std::mem::take(&mut self.pending);
        if pending.joins.is_empty() && pending.leaves.is_empty() {
            return None;
        }
        let group = |metas: Metas| -> Value {
            Value::Object(
                metas
                    .into_iter()
                    .map(|(key, metas)| (key, json!({ "metas": metas })))
                    .collect(),
            )
        };
        Some(json!({ "joins": group(pending.joins), "leaves": group(pending.leaves) }))
    }

    fn joined(&mut self, key: &str, meta: &Map<String, Value>) {
        self.pending
            .joins
            .entry(key.to_owned())
            .or_default()
            .push(Value::Object(meta.clone()));
    }

    fn left(&mut self, key: &str, meta: &Map<String, Value>) {
        let phx_ref = meta.get("phx_ref");
        let exposed = phx_ref
            .and_then(Value::as_str)
            .is_some_and(|r| self.exposed.contains(r));
        // A meta that joined in this same window was never announced: just forget it.
        if !exposed
            && let Some(joins) = self.pending.joins.get_mut(key)
            && let Some(at) = joins.iter().position(|m| m.get("phx_ref") == phx_ref)
        {
            joins.remove(at);
            if joins.is_empty() {
                self.pending.joins.remove(key);
            }
            return;
        }
        self.pending
            .leaves
            .entry(key.to_owned())
            .or_default()
            .push(Value::Object(meta.clone()));
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
