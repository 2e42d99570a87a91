//! Fault injection (feature `testing`): makes a chosen actor of a runtime's supervision tree
//! fail on purpose, with a panic inside its message handler, so its supervisor sees it fail
//! exactly as it would see a bug, or keeps a topic actor busy ([`stall_topic`]). Not compiled
//! into the server.
//!
//! Each function returns once the failure has been dealt with: the failed actor has been
//! replaced (`true`), or, for a failure that made the tree give up, the runtime is down
//! (`false`; see [`Runtime::health`]).

use ractor::{ActorId, ActorRef};

use super::frame::DEADLINE;
use crate::Runtime;
use crate::supervisor::{Slot, SupervisorMsg};

/// A child supervisor of the runtime's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supervised {
    /// The supervisor of the topic actors.
    Topics,
    /// The supervisor of the socket actors (one per connection).
    Sockets,
    /// The supervisor of the presence shards.
    Presence,
}

/// Fails whatever is in `slot` (with `fail`), then waits until a replacement is in the slot
/// (`true`) or the runtime is down (`false`).
async fn fail_in<T: Clone>(
    runtime: &Runtime,
    slot: &Slot<T>,
    id: impl Fn(&T) -> ActorId,
    fail: impl FnOnce(&T),
) -> bool {
    let old = slot.get();
    let old_id = id(&old);
    fail(&old);
    let replaced = slot.replacement(|now| id(now) == old_id, DEADLINE);
    let down = runtime
        .health_slot()
        .replacement(|health| health.is_up(), DEADLINE);
    tokio::select! {
        replaced = replaced => replaced.is_some(),
        _ = down => false,
    }
}

/// Makes the socket registry fail; returns once it has been restarted.
pub async fn fail_registry(runtime: &Runtime) -> bool {
    let slot = runtime.registry().slot();
    fail_in(
        runtime,
        slot,
        |actor| actor.get_id(),
        |actor| {
            let _ = actor.cast(crate::registry::RegistryMsg::Fail);
        },
    )
    .await
}

/// Makes the presence shard of `topic` fail; returns once it has been restarted.
pub async fn fail_presence_shard_of(runtime: &Runtime, topic: &str) -> bool {
    let slot = runtime.presence().shard_slot(topic);
    fail_in(
        runtime,
        slot,
        |shard| shard.get_id(),
        |shard| {
            let _ = shard.cast(crate::presence::PresenceMsg::Fail);
        },
    )
    .await
}

/// Makes the topic actor of `topic` fail; returns once it has ended (`false` if the topic has
/// no actor). Its subscribers are told as its state is dropped, just after.
pub async fn fail_topic(runtime: &Runtime, topic: &str) -> bool {
    let Some(actor) = runtime.pubsub().topic_actor(topic) else {
        return false;
    };
    let _ = actor.cast(crate::pubsub::TopicMsg::Fail);
    actor.get_cell().wait(Some(DEADLINE)).await.is_ok()
}

/// A topic actor kept busy by [`stall_topic`]: it handles nothing else (subscriptions and
/// broadcasts wait in its mailbox) until this is released or dropped.
#[derive(Debug)]
pub struct Stalled(tokio::sync::oneshot::Sender<()>);

impl Stalled {
    /// Lets the topic actor go on with its mailbox.
    pub fn release(self) {
        let _ = self.0.send(());
    }
}

/// Keeps the topic actor of `topic` busy until the returned [`Stalled`] is released or
/// dropped (`None` if the topic has no actor): a join of the topic then waits for its
/// subscription, as it would behind a topic actor busy fanning out.
pub fn stall_topic(runtime: &Runtime, topic: &str) -> Option<Stalled> {
    let actor = runtime.pubsub().topic_actor(topic)?;
    let (release, until) = tokio::sync::oneshot::channel();
    actor.cast(crate::pubsub::TopicMsg::Stall(until)).ok()?;
    Some(Stalled(release))
}

/// Makes a child supervisor of the root fail (its children stop with it); returns once the
/// root has restarted it.
pub async fn fail_supervisor(runtime: &Runtime, which: Supervised) -> bool {
    let slot = match which {
        Supervised::Topics => runtime.pubsub().supervisor(),
        Supervised::Sockets => &runtime.shared.sockets,
        Supervised::Presence => runtime.presence().supervisor(),
    };
    fail_in(
        runtime,
        slot,
        |cell| cell.get_id(),
        |cell| {
            let supervisor: ActorRef<SupervisorMsg> = cell.clone().into();
            let _ = supervisor.cast(SupervisorMsg::Fail);
        },
    )
    .await
}
