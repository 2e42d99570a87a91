//! Supervisors that restart, with bounded restart intensity (as OTP's `one_for_one`).
//!
//! A supervisor has two kinds of children:
//! - *permanent* ones (the socket registry, the presence shards, the child supervisors),
//!   given to it with a [`Child`]: whenever one ends, the supervisor starts a replacement with
//!   [`Child::restart`], which also puts it where every handle finds it (a [`Slot`]) and
//!   rebuilds its state or tells its dependants;
//! - *temporary* ones (topic actors, socket actors), spawned linked to it by whoever needs
//!   them and never restarted: a topic actor that fails tells its subscribers itself, a socket
//!   actor's connection closes with 1011 and the client reconnects. Whether their failures
//!   count towards the restart intensity is the supervisor's [`Temporary`] setting.
//!
//! More than [`SupervisionConfig::max_restarts`] restarts within
//! [`SupervisionConfig::within`] and the supervisor gives up: it fails, ractor stops all its
//! children, and its parent decides (restarts it, or gives up in turn). The root's parent is
//! the runtime's watch (`tree.rs`), which marks the runtime down.
//!
//! ractor has the supervision events but no restart strategies; the maintained
//! `ractor-supervisor` crate has them, but it identifies children by globally registered
//! names (one per topic and per connection here, with races between a stopping actor and its
//! successor), restarts only from a spawn function (our restarts must re-wire handles and
//! rebuild state from outside the dead actor), and spawns dynamic children through its own
//! mailbox (a message per topic start on the churn path). So this small one is ours.

mod slot;
pub(crate) mod tree;

pub(crate) use slot::Slot;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};

/// How many restarts a supervisor may make in a period before it gives up (OTP's intensity
/// and period). Applies to each supervisor of the tree on its own. Deserializes (serde) from
/// `max_restarts` and `within_secs` (seconds, whole or decimal), each optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SupervisionConfig {
    /// Restarts allowed within [`SupervisionConfig::within`]; one more and the supervisor fails.
    pub max_restarts: u32,
    /// The period. Setting `within_secs`.
    #[serde(rename = "within_secs", with = "crate::units::secs")]
    pub within: Duration,
}

impl Default for SupervisionConfig {
    /// 3 restarts within 5 seconds, Elixir's default.
    fn default() -> Self {
        Self {
            max_restarts: 3,
            within: Duration::from_secs(5),
        }
    }
}

/// Starts a fresh instance of a permanent child linked to the given supervisor, makes it the
/// one its handles reach, and returns it.
pub(crate) type Restart =
    Arc<dyn Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync>;

/// A permanent child: its name (for logs) and how to restart it.
#[derive(Clone)]
pub(crate) struct Child {
    pub(crate) name: String,
    pub(crate) restart: Restart,
}

impl Child {
    pub(crate) fn new(
        name: impl Into<String>,
        restart: impl Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, SpawnErr>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            restart: Arc::new(restart),
        }
    }
}

/// Whether failures of temporary children count towards the restart intensity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Temporary {
    /// Yes (topic actors: each failure costs every subscriber a rejoin; a crash loop must
    /// escalate).
    Counted,
    /// No (socket actors: one connection's failure is that client's, as Phoenix's channel and
    /// socket processes are temporary children).
    Ignored,
}

/// Restarts and give-ups since the runtime started, shared by every supervisor of a tree.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) restarts: AtomicU64,
    pub(crate) gave_up: AtomicU64,
}

pub(crate) enum SupervisorMsg {
    /// Supervise `ActorCell` (already linked to this supervisor) as a permanent child.
    Adopt(ActorCell, Child, RpcReplyPort<()>),
    /// Start a permanent child with its [`Child::restart`] and supervise it. Started from the
    /// supervisor's own handler, it is known to the supervisor before any handle can reach it.
    Start(Child, RpcReplyPort<Result<ActorCell, String>>),
    /// Fault injection: panic in the handler.
    #[cfg(feature = "testing")]
    Fail,
}

/// A named supervisor (see the module docs).
pub(crate) struct Supervisor {
    pub(crate) name: &'static str,
    pub(crate) limits: SupervisionConfig,
    pub(crate) temporary: Temporary,
    pub(crate) counters: Arc<Counters>,
}

pub(crate) struct SupervisorState {
    permanent: HashMap<ActorId, Child>,
    restarts: VecDeque<Instant>,
}

impl Supervisor {
    /// Spawns a supervisor linked to `parent`.
    pub(crate) async fn spawn(
        self,
        parent: ActorCell,
    ) -> Result<ActorRef<SupervisorMsg>, SpawnErr> {
        let (supervisor, _) = Actor::spawn_linked(None, self, (), parent).await?;
        Ok(supervisor)
    }

    /// Records a restart; `Err` if that makes too many within the period.
    fn count_restart(&self, state: &mut SupervisorState) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        state.restarts.push_back(now);
        while state
            .restarts
            .front()
            .is_some_and(|at| now.duration_since(*at) > self.limits.within)
        {
            state.restarts.pop_front();
        }
        if state.restarts.len() > self.limits.max_restarts as usize {
            self.counters.gave_up.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                supervisor = self.name,
                max_restarts = self.limits.max_restarts,
                within = ?self.limits.within,
                "too many restarts: the supervisor gives up and fails (its children stop)"
            );
            return Err(format!(
                "supervisor {}: more than {} restarts within {:?}",
                self.name, self.limits.max_restarts, self.limits.within
            )
            .into());
        }
        self.counters.restarts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A child ended (`failure`: why, if it failed).
    async fn ended(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        child: &ActorCell,
        failure: Option<String>,
    ) -> Result<(), ActorProcessingErr> {
        let Some(spec) = state.permanent.remove(&child.get_id()) else {
            // A temporary child: its dependants have been told by its own state.
            if let Some(error) = failure {
                tracing::error!(supervisor = self.name, child = %child.get_id(), %error, "supervised actor failed");
                if self.temporary == Temporary::Counted {
                    self.count_restart(state)?;
                }
            }
            return Ok(());
        };
        let why = failure.unwrap_or_else(|| "stopped".to_owned());
        tracing::error!(supervisor = self.name, child = %spec.name, error = %why, "permanent child ended; restarting it");
        self.count_restart(state)?;
        let fresh = (spec.restart)(myself.get_cell()).await.map_err(|e| {
            tracing::error!(supervisor = self.name, child = %spec.name, error = %e, "restart failed; the supervisor fails");
            format!("restarting {}: {e}", spec.name)
        })?;
        tracing::info!(supervisor = self.name, child = %spec.name, "restarted");
        state.permanent.insert(fresh.get_id(), spec);
        Ok(())
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        _args: (),
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            permanent: HashMap::new(),
            restarts: VecDeque::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Adopt(child, spec, reply) => {
                state.permanent.insert(child.get_id(), spec);
                let _ = reply.send(());
            }
            SupervisorMsg::Start(spec, reply) => match (spec.restart)(myself.get_cell()).await {
                Ok(child) => {
                    state.permanent.insert(child.get_id(), spec);
                    let _ = reply.send(Ok(child));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            },
            #[cfg(feature = "testing")]
            SupervisorMsg::Fail => panic!("fault injected into supervisor {}", self.name),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(child, error) => {
                self.ended(&myself, state, &child, Some(error.to_string()))
                    .await
            }
            SupervisionEvent::ActorTerminated(child, _, _) => {
                self.ended(&myself, state, &child, None).await
            }
            _ => Ok(()),
        }
    }
}
