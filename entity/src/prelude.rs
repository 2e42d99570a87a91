//! The entity types under short names, for `use entity::prelude::*`.

pub use crate::conversation::Entity as Conversation;
pub use crate::mail::Entity as Mail;
pub use crate::message::Entity as Message;
pub use crate::token_revocation::Entity as TokenRevocation;
pub use crate::user::Entity as User;
