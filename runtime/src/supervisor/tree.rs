//! The runtime's supervision tree: its start-up, the restart of each child of the root, and
//! the watch above the root that marks the runtime down if the root gives up.

use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};

use super::{Child, Counters, Slot, SupervisionConfig, Supervisor, SupervisorMsg, Temporary};
use crate::cluster::{Cluster, ClusterConfig};
use crate::presence::{Presence, PresenceConfig};
use crate::pubsub::{Adapter, MemoryBus, PubSub};
use crate::registry::SocketRegistry;

/// Whether the runtime's supervision tree is running (see [`crate::Runtime::health`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Running (children may have been restarted).
    Up,
    /// The root supervisor gave up (too many restarts of its children) or failed: nothing is
    /// supervised any more, sockets are closed and new ones fail. Restart the process.
    Down {
        /// Why.
        reason: String,
    },
    /// Shut down on purpose ([`crate::Runtime::shutdown`]).
    Stopped,
}

impl Health {
    /// Whether the runtime is up (what a readiness check wants).
    pub fn is_up(&self) -> bool {
        *self == Health::Up
    }
}

/// The started tree and the handles to its children.
pub(crate) struct Tree {
    pub(crate) root: ActorRef<SupervisorMsg>,
    pub(crate) watch: ActorRef<()>,
    pub(crate) health: Slot<Health>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) pubsub: PubSub,
    pub(crate) presence: Presence,
    pub(crate) registry: SocketRegistry,
    pub(crate) sockets: Slot<ActorCell>,
}

/// Starts the tree: the watch, the root, and its four children.
pub(crate) async fn start(
    limits: SupervisionConfig,
    presence: &PresenceConfig,
    adapter: Option<Arc<dyn Adapter>>,
    cluster: ClusterConfig,
    meters: Arc<crate::metering::Meters>,
) -> Result<Tree, SpawnErr> {
    let health = Slot::new(Health::Up);
    let counters = Arc::new(Counters::default());
    let (watch, _) = Actor::spawn(None, Watch, health.clone()).await?;
    let supervisor = |name, temporary| Supervisor {
        name,
        limits,
        temporary,
        counters: counters.clone(),
    };
    let root = supervisor("runtime", Temporary::Ignored)
        .spawn(watch.get_cell())
        .await?;
    let adopt = async |child: ActorCell, spec: Child| {
        ractor::call!(root, SupervisorMsg::Adopt, child, spec)
            .map_err(|e| SpawnErr::StartupFailed(e.to_string().into()))
    };

    let registry = SocketRegistry::start(root.get_cell()).await?;
    adopt(registry.current_cell(), registry.child()).await?;

    let topics = supervised(&root, supervisor("topics", Temporary::Counted)).await?;
    adopt(topics.0, topics.1).await?;
    let sockets = supervised(&root, supervisor("sockets", Temporary::Ignored)).await?;
    adopt(sockets.0, sockets.1).await?;

    let cluster = match adapter {
        Some(adapter) => Cluster::new(adapter, cluster),
        // Alone by construction: a bus of its own that no other node can join.
        None => Cluster::solo(Arc::new(MemoryBus::new().adapter("local")), cluster),
    };
    registry.link(cluster.clone());
    let pubsub = PubSub::new(topics.2, cluster.clone(), registry.clone(), meters);
    let presence_supervisor = supervisor("presence", Temporary::Ignored)
        .spawn(root.get_cell())
        .await?;
    let presence = Presence::start(presence, pubsub.clone(), &presence_supervisor).await?;
    let restart = {
        let (presence, counters) = (presence.clone(), counters.clone());
        Child::new("presence", move |parent| {
            let presence = presence.clone();
            let fresh = Supervisor {
                name: "presence",
                limits,
                temporary: Temporary::Ignored,
                counters: counters.clone(),
            };
            Box::pin(async move {
                let fresh = fresh.spawn(parent).await?;
                presence.restart_shards(&fresh).await?;
                Ok(fresh.get_cell())
            })
        })
    };
    adopt(presence_supervisor.get_cell(), restart).await?;
    cluster.run(pubsub.clone(), presence.clone(), registry.clone());

    Ok(Tree {
        root,
        watch,
        health,
        counters,
        pubsub,
        presence,
        registry,
        sockets: sockets.2,
    })
}

/// Spawns a child supervisor under `root`; returns it, its restart spec and the slot its
/// restarts go into.
async fn supervised(
    root: &ActorRef<SupervisorMsg>,
    supervisor: Supervisor,
) -> Result<(ActorCell, Child, Slot<ActorCell>), SpawnErr> {
    let (name, limits, temporary, counters) = (
        supervisor.name,
        supervisor.limits,
        supervisor.temporary,
        supervisor.counters.clone(),
    );
    let cell = supervisor.spawn(root.get_cell()).await?.get_cell();
    let slot = Slot::new(cell.clone());
    let restart = {
        let slot = slot.clone();
        Child::new(name, move |parent| {
            let (slot, counters) = (slot.clone(), counters.clone());
            Box::pin(async move {
                let fresh = Supervisor {
                    name,
                    limits,
                    temporary,
                    counters,
                }
                .spawn(parent)
                .await?
                .get_cell();
                slot.set(fresh.clone());
                Ok(fresh)
            })
        })
    };
    Ok((cell, restart, slot))
}

/// Above the root: marks the runtime down when the root ends other than by a shutdown.
struct Watch;

impl Actor for Watch {
    type Msg = ();
    type State = Slot<Health>;
    type Arguments = Slot<Health>;

    async fn pre_start(
        &self,
        _myself: ActorRef<()>,
        health: Slot<Health>,
    ) -> Result<Slot<Health>, ActorProcessingErr> {
        Ok(health)
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        health: &mut Slot<Health>,
    ) -> Result<(), ActorProcessingErr> {
        let reason = match event {
            SupervisionEvent::ActorFailed(_, error) => error.to_string(),
            SupervisionEvent::ActorTerminated(_, _, reason) => {
                reason.unwrap_or_else(|| "the root supervisor stopped".to_owned())
            }
            _ => return Ok(()),
        };
        if health.get().is_up() {
            tracing::error!(%reason, "the runtime's root supervisor is gone: the runtime is down");
            health.set(Health::Down { reason });
        }
        myself.stop(None);
        Ok(())
    }
}
