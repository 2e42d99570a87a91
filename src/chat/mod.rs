//! The `chat` context: conversations between two users and their messages. The only code that
//! queries `conversations` and `messages`.
//!
//! A conversation belongs to an unordered pair of users (opening it twice, from either side,
//! returns the same one; the database enforces it). Only its two participants can see it:
//! to anyone else it does not exist. Messages are 1..4000 characters, stored in a transaction
//! that also records the conversation's last activity; callers deliver a message only after
//! [`Chat::post_message`] returned, i.e. after the commit. Deleting a user deletes their
//! conversations and messages (foreign keys cascade): the account owner's right to leave wins
//! over the other side's history.

use chrono::{DateTime, Utc};
use entity::{conversation, message, user};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionTrait,
};
use serde::Serialize;
use serde_json::Value;

use crate::accounts::FieldErrors;
use crate::rooms::validate_message;

/// The topic on which conversation `id`'s new messages are broadcast (`message:new`).
pub fn conversation_topic(id: i64) -> String {
    format!("conversation:{id}")
}

/// Largest history page.
pub const MAX_HISTORY: u64 = 100;

/// A message as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Message {
    /// Id, the history cursor.
    pub id: i64,
    /// The conversation.
    pub conversation_id: i64,
    /// Who sent it.
    pub sender_id: i64,
    /// The text.
    pub content: String,
    /// When it was committed.
    pub inserted_at: DateTime<Utc>,
}

impl From<message::Model> for Message {
    fn from(m: message::Model) -> Self {
        Self {
            id: m.id,
            conversation_id: m.conversation_id,
            sender_id: m.sender_id,
            content: m.content,
            inserted_at: m.inserted_at,
        }
    }
}

/// A conversation as its participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Conversation {
    /// Id.
    pub id: i64,
    /// The two participants, smaller id first.
    #[schema(min_items = 2, max_items = 2)]
    pub participants: [i64; 2],
    /// When it was opened.
    pub inserted_at: DateTime<Utc>,
    /// Its latest message, if any.
    pub last_message: Option<Message>,
}

impl Conversation {
    /// The participant that is not `me`.
    pub fn other(&self, me: i64) -> i64 {
        other_participant(self.participants, me)
    }
}

/// The participant of `pair` that is not `me`.
fn other_participant(pair: [i64; 2], me: i64) -> i64 {
    if pair[0] == me { pair[1] } else { pair[0] }
}

/// A page of history, in id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct History {
    /// The messages, oldest first.
    pub messages: Vec<Message>,
    /// Whether more messages lie beyond this page (in the direction asked for).
    pub has_more: bool,
}

/// Why a chat operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Input failed validation.
    #[error("invalid input")]
    Invalid(FieldErrors),
    /// No such conversation or user — or not one the caller takes part in.
    #[error("not found")]
    NotFound,
    /// The named recipient is not the conversation's other participant.
    #[error("the recipient is not the other participant")]
    WrongRecipient,
    /// A database failure.
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

/// The chat context.
#[derive(Clone)]
pub struct Chat {
    db: DatabaseConnection,
}

impl Chat {
    /// The context over `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Opens the conversation between `me` and `other`, or returns the existing one.
    /// Returns whether it was created now.
    pub async fn open_conversation(
        &self,
        me: i64,
        other: i64,
    ) -> Result<(Conversation, bool), ChatError> {
        if me == other {
            return Err(ChatError::Invalid(FieldErrors::single(
                "recipient_id",
                "can't be yourself",
            )));
        }
        if user::Entity::find_by_id(other)
            .one(&self.db)
            .await?
            .is_none()
        {
            return Err(ChatError::NotFound);
        }
        let (a, b) = (Ord::min(me, other), Ord::max(me, other));
        if let Some(existing) = self.find_pair(a, b).await? {
            return Ok((self.view(existing).await?, false));
        }
        let row = conversation::ActiveModel {
            user_a_id: Set(a),
            user_b_id: Set(b),
            inserted_at: Set(Utc::now()),
            last_message_at: Set(None),
            ..Default::default()
        };
        match conversation::Entity::insert(row)
            .exec_with_returning(&self.db)
            .await
        {
            Ok(created) => Ok((self.view(created).await?, true)),
            // Opened concurrently from the other side: the unique pair index decided.
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                let existing = self.find_pair(a, b).await?.ok_or(ChatError::NotFound)?;
                Ok((self.view(existing).await?, false))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `me`'s conversations, most recent activity first.
    pub async fn list_conversations(&self, me: i64) -> Result<Vec<Conversation>, ChatError> {
        let rows = conversation::Entity::find()
            .filter(Self::participant(me))
            .order_by_desc(Expr::col(conversation::Column::LastMessageAt).is_not_null())
            .order_by_desc(conversation::Column::LastMessageAt)
            .order_by_desc(conversation::Column::Id)
            .all(&self.db)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.view(row).await?);
        }
        Ok(out)
    }

    /// Conversation `id`, if `me` takes part in it.
    pub async fn get_conversation(&self, me: i64, id: i64) -> Result<Conversation, ChatError> {
        let row = self.owned(me, id).await?;
        self.view(row).await
    }

    /// Posts `payload` (`{"content": text}`) from `me` into conversation `id`. The message and
    /// the conversation's activity time are committed together; deliver it after this returns.
    pub async fn post_message(
        &self,
        me: i64,
        id: i64,
        payload: &Value,
    ) -> Result<(Conversation, Message), ChatError> {
        let content = content_of(payload.get("content"), "content")?;
        self.insert_message(me, id, None, content).await
    }

    /// Sends `text` from `me` to `recipient` in conversation `id` (the `room:chat` shape;
    /// validation errors name the field `message`). As [`Chat::post_message`], and
    /// `recipient` must be the conversation's other participant.
    pub async fn send_message(
        &self,
        me: i64,
        id: i64,
        recipient: i64,
        text: Option<&Value>,
    ) -> Result<(Conversation, Message), ChatError> {
        let content = content_of(text, "message")?;
        self.insert_message(me, id, Some(recipient), content).await
    }

    async fn insert_message(
        &self,
        me: i64,
        id: i64,
        recipient: Option<i64>,
        content: String,
    ) -> Result<(Conversation, Message), ChatError> {
        let conversation = self.owned(me, id).await?;
        let pair = [conversation.user_a_id, conversation.user_b_id];
        if recipient.is_some_and(|recipient| recipient != other_participant(pair, me)) {
            return Err(ChatError::WrongRecipient);
        }
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let row = message::ActiveModel {
            conversation_id: Set(id),
            sender_id: Set(me),
            content: Set(content),
            inserted_at: Set(now),
            ..Default::default()
        };
        let saved = message::Entity::insert(row)
            .exec_with_returning(&txn)
            .await?;
        let mut touched: conversation::ActiveModel = conversation.into();
        touched.last_message_at = Set(Some(now));
        let conversation = touched.update(&txn).await?;
        txn.commit().await?;
        let message = Message::from(saved);
        Ok((
            Conversation {
                id: conversation.id,
                participants: [conversation.user_a_id, conversation.user_b_id],
                inserted_at: conversation.inserted_at,
                last_message: Some(message.clone()),
            },
            message,
        ))
    }

    /// A page of conversation `id`'s messages, oldest first: those with ids below `before`
    /// (the latest ones before it), or above `after` (the earliest ones after it), or the
    /// latest ones; at most `limit` (1..=100).
    pub async fn history(
        &self,
        me: i64,
        id: i64,
        before: Option<i64>,
        after: Option<i64>,
        limit: u64,
    ) -> Result<History, ChatError> {
        self.owned(me, id).await?;
        if before.is_some() && after.is_some() {
            return Err(ChatError::Invalid(FieldErrors::single(
                "before",
                "can't be combined with after",
            )));
        }
        let limit = limit.clamp(1, MAX_HISTORY);
        let mut query = message::Entity::find().filter(message::Column::ConversationId.eq(id));
        let forward = after.is_some();
        if let Some(after) = after {
            query = query
                .filter(message::Column::Id.gt(after))
                .order_by_asc(message::Column::Id);
        } else {
            if let Some(before) = before {
                query = query.filter(message::Column::Id.lt(before));
            }
            query = query.order_by_desc(message::Column::Id);
        }
        let mut rows = query.limit(limit + 1).all(&self.db).await?;
        let has_more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        if !forward {
            rows.reverse();
        }
        Ok(History {
            messages: rows.into_iter().map(Message::from).collect(),
            has_more,
        })
    }

    fn participant(me: i64) -> Condition {
        Condition::any()
            .add(conversation::Column::UserAId.eq(me))
            .add(conversation::Column::UserBId.eq(me))
    }

    async fn find_pair(&self, a: i64, b: i64) -> Result<Option<conversation::Model>, DbErr> {
        conversation::Entity::find()
            .filter(conversation::Column::UserAId.eq(a))
            .filter(conversation::Column::UserBId.eq(b))
            .one(&self.db)
            .await
    }

    /// Conversation `id` if `me` takes part; otherwise it does not exist for them.
    async fn owned(&self, me: i64, id: i64) -> Result<conversation::Model, ChatError> {
        conversation::Entity::find_by_id(id)
            .filter(Self::participant(me))
            .one(&self.db)
            .await?
            .ok_or(ChatError::NotFound)
    }

    async fn view(&self, row: conversation::Model) -> Result<Conversation, ChatError> {
        let last = message::Entity::find()
            .filter(message::Column::ConversationId.eq(row.id))
            .order_by_desc(message::Column::Id)
            .one(&self.db)
            .await?;
        Ok(Conversation {
            id: row.id,
            participants: [row.user_a_id, row.user_b_id],
            inserted_at: row.inserted_at,
            last_message: last.map(Message::from),
        })
    }
}

/// Validates message text (1..4000 characters after trimming, the same rule as room
/// messages), recording problems against `field`; returns the trimmed text.
pub fn validate_text(
    text: Option<&Value>,
    field: &str,
    errors: &mut FieldErrors,
) -> Option<String> {
    let as_body = serde_json::json!({ "body": text.cloned().unwrap_or(Value::Null) });
    match validate_message(&as_body) {
        Ok(text) => Some(text),
        Err(found) => {
            for message in found.get("body").unwrap_or_default() {
                errors.add(field, message.clone());
            }
            None
        }
    }
}

fn content_of(text: Option<&Value>, field: &str) -> Result<String, ChatError> {
    let mut errors = FieldErrors::default();
    validate_text(text, field, &mut errors).ok_or(ChatError::Invalid(errors))
}
