//! A channel context for unit tests of channel callbacks.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::{ContextParts, SocketMsg};
use crate::channel::{Channel, ChannelContext};
use crate::protocol::Ref;

/// A channel context outside any socket, for unit tests of channel callbacks (its handle's
/// messages go nowhere).
#[cfg(any(test, feature = "testing"))]
pub async fn detached_context<C: Channel>(
    runtime: &crate::Runtime,
    topic: &str,
    assigns: C::Assigns,
) -> ChannelContext<C> {
    struct Inert;
    impl Actor for Inert {
        type Msg = SocketMsg;
        type State = ();
        type Arguments = ();
        async fn pre_start(&self, _: ActorRef<SocketMsg>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }
    let (socket, _) = Actor::spawn(None, Inert, ())
        .await
        .expect("an inert actor starts");
    ContextParts {
        topic: Arc::from(topic),
        join_ref: Ref::from_string("1"),
        assigns: Arc::new(assigns),
        socket_id: None,
        pubsub: runtime.pubsub().clone(),
        presence: runtime.presence().clone(),
        subscriber: runtime.pubsub().next_id(),
        socket,
        inbox: Arc::default(),
    }
    .into_context()
}
