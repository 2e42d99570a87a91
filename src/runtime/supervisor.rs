//! A supervisor that logs failed children and keeps going (ractor's default would stop the
//! supervisor, and with it every sibling).

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

/// A named supervisor with no messages of its own.
pub(crate) struct Supervisor(pub(crate) &'static str);

impl Actor for Supervisor {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<()>, _args: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<()>,
        event: SupervisionEvent,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(child, error) = event {
            tracing::error!(supervisor = self.0, child = %child.get_id(), %error, "supervised actor failed");
        }
        Ok(())
    }
}
