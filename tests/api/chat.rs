//! The `chat` context against the real database: conversations per unordered pair, visibility,
//! messages, history pages, and cascades on account deletion.

use entity::conversation;
use fawkes::chat::{Chat, ChatError};
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::json;

use crate::support::TestServer;

async fn setup() -> (TestServer, Chat, i64, i64, i64) {
    let t = TestServer::start().await;
    let (a, _) = t.register("a@example.com").await;
    let (b, _) = t.register("b@example.com").await;
    let (c, _) = t.register("c@example.com").await;
    let db = fawkes::db::connect(&t.db.url, 2).await.expect("db");
    (t, Chat::new(db), a, b, c)
}

#[tokio::test]
async fn a_pair_has_one_conversation_whoever_opens_it() {
    let (t, chat, a, b, _) = setup().await;
    let (first, created) = chat.open_conversation(a, b).await.expect("open");
    assert!(created);
    assert_eq!(first.participants, [a.min(b), a.max(b)]);
    let (again, created) = chat.open_conversation(b, a).await.expect("open reversed");
    assert!(!created, "B→A is the same conversation as A→B");
    assert_eq!(again.id, first.id);
    assert!(matches!(
        chat.open_conversation(a, a).await,
        Err(ChatError::Invalid(_))
    ));
    assert!(matches!(
        chat.open_conversation(a, 999_999).await,
        Err(ChatError::NotFound)
    ));

    // The database itself refuses a second row for the pair, in either order.
    let db = fawkes::db::connect(&t.db.url, 1).await.expect("db");
    for (x, y) in [(a.min(b), a.max(b)), (a.max(b), a.min(b))] {
        let row = conversation::ActiveModel {
            user_a_id: Set(x),
            user_b_id: Set(y),
            inserted_at: Set(chrono::Utc::now()),
            last_message_at: Set(None),
            ..Default::default()
        };
        assert!(
            conversation::Entity::insert(row).exec(&db).await.is_err(),
            "({x}, {y}) refused"
        );
    }
}

#[tokio::test]
async fn only_participants_see_a_conversation_and_lists_follow_activity() {
    let (_t, chat, a, b, c) = setup().await;
    let (ab, _) = chat.open_conversation(a, b).await.expect("open");
    let (ac, _) = chat.open_conversation(a, c).await.expect("open");
    assert!(
        matches!(
            chat.get_conversation(c, ab.id).await,
            Err(ChatError::NotFound)
        ),
        "not a participant"
    );
    assert!(matches!(
        chat.post_message(c, ab.id, &json!({"content": "hi"})).await,
        Err(ChatError::NotFound)
    ));
    assert!(matches!(
        chat.history(c, ab.id, None, None, 10).await,
        Err(ChatError::NotFound)
    ));

    chat.post_message(a, ab.id, &json!({"content": "first"}))
        .await
        .expect("post");
    let (_, last) = chat
        .post_message(c, ac.id, &json!({"content": "  latest  "}))
        .await
        .expect("post");
    assert_eq!(last.content, "latest", "trimmed");
    let mine = chat.list_conversations(a).await.expect("list");
    assert_eq!(
        mine.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![ac.id, ab.id],
        "most recent activity first"
    );
    assert_eq!(
        mine[0].last_message.as_ref().map(|m| m.content.as_str()),
        Some("latest")
    );
    assert_eq!(mine[0].other(a), c);
    assert_eq!(chat.list_conversations(b).await.expect("list").len(), 1);

    for (bad, error) in [
        (json!({}), "can't be blank"),
        (
            json!({"content": "x".repeat(4001)}),
            "should be at most 4000 character(s)",
        ),
    ] {
        match chat.post_message(a, ab.id, &bad).await {
            Err(ChatError::Invalid(errors)) => {
                assert_eq!(errors.get("content"), Some(&[error.to_owned()][..]))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn history_pages_by_message_id() {
    let (_t, chat, a, b, _) = setup().await;
    let (ab, _) = chat.open_conversation(a, b).await.expect("open");
    let mut ids = Vec::new();
    for i in 0..25 {
        let sender = if i % 2 == 0 { a } else { b };
        ids.push(
            chat.post_message(sender, ab.id, &json!({"content": format!("m{i}")}))
                .await
                .expect("post")
                .1
                .id,
        );
    }
    let page = |h: fawkes::chat::History| {
        (
            h.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
            h.has_more,
        )
    };
    assert_eq!(
        page(
            chat.history(b, ab.id, None, None, 10)
                .await
                .expect("latest")
        ),
        (ids[15..].to_vec(), true)
    );
    assert_eq!(
        page(
            chat.history(b, ab.id, Some(ids[15]), None, 10)
                .await
                .expect("before")
        ),
        (ids[5..15].to_vec(), true)
    );
    assert_eq!(
        page(
            chat.history(b, ab.id, Some(ids[5]), None, 10)
                .await
                .expect("oldest")
        ),
        (ids[..5].to_vec(), false)
    );
    assert_eq!(
        page(
            chat.history(b, ab.id, None, Some(ids[19]), 10)
                .await
                .expect("after")
        ),
        (ids[20..].to_vec(), false)
    );
    assert_eq!(
        page(
            chat.history(b, ab.id, None, Some(0), 10)
                .await
                .expect("from the start")
        ),
        (ids[..10].to_vec(), true)
    );
    assert_eq!(
        page(
            chat.history(b, ab.id, None, Some(ids[24]), 10)
                .await
                .expect("nothing newer")
        ),
        (vec![], false)
    );
    assert_eq!(
        chat.history(b, ab.id, None, None, 1000)
            .await
            .expect("capped")
            .messages
            .len(),
        25,
        "limit capped at 100"
    );
    assert!(matches!(
        chat.history(b, ab.id, Some(5), Some(1), 10).await,
        Err(ChatError::Invalid(_))
    ));
}

#[tokio::test]
async fn deleting_an_account_deletes_its_conversations_and_messages() {
    let (t, chat, a, b, _) = setup().await;
    let (ab, _) = chat.open_conversation(a, b).await.expect("open");
    chat.post_message(a, ab.id, &json!({"content": "bye"}))
        .await
        .expect("post");
    let token = t.login("a@example.com", "correct horse battery").await;
    assert_eq!(
        t.call("DELETE", &format!("/api/v1/users/{a}"), Some(&token), None)
            .await
            .status,
        204
    );
    assert!(matches!(
        chat.get_conversation(b, ab.id).await,
        Err(ChatError::NotFound)
    ));
    assert!(chat.list_conversations(b).await.expect("list").is_empty());
}
