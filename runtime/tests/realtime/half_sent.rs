//! What a client may keep half-sent: a WebSocket message whose first byte arrived must be
//! complete within `message_timeout` (trickling bytes or pinging between fragments does not
//! keep it alive), and an HTTP/1 request head is at most 64 KiB.

use std::time::Duration;

use fawkes_runtime::TransportConfig;
use tokio::io::AsyncWriteExt as _;

use crate::raw::{answer_to, close_frame, frame, next_text, websocket};
use crate::support::TestEndpoint;

fn with_message_timeout() -> TransportConfig {
    // The idle timeout (60 s) alone would not close these connections during the test.
    TransportConfig {
        message_timeout: Duration::from_secs(1),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_message_trickled_a_byte_at_a_time_is_closed_with_1008() {
    let t = TestEndpoint::start_with(with_message_timeout()).await;
    let (mut reader, mut writer) = websocket(t.addr, "user=ann&vsn=2.0.0").await.into_split();
    let whole = frame(true, 0x1, &[b' '; 100]);
    writer.write_all(&whole[..10]).await.expect("write");
    // One more byte every 200 ms: the message would take 18 s to arrive.
    let trickle = tokio::spawn(async move {
        for byte in &whole[10..] {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
    });
    assert_eq!(
        close_frame(&mut reader).await,
        (1008, "message too slow".to_owned())
    );
    trickle.abort();
}

#[tokio::test]
async fn pings_between_the_fragments_of_a_message_do_not_keep_it_alive() {
    let t = TestEndpoint::start_with(with_message_timeout()).await;
    let (mut reader, mut writer) = websocket(t.addr, "user=ann&vsn=2.0.0").await.into_split();
    // The first fragment of a text message, then only pings (each a whole message, which the
    // idle timeout counts).
    writer
        .write_all(&frame(false, 0x1, br#"[null,"1","#))
        .await
        .expect("write");
    let pings = tokio::spawn(async move {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer.write_all(&frame(true, 0x9, b"k")).await.is_err() {
                break;
            }
        }
    });
    assert_eq!(
        close_frame(&mut reader).await,
        (1008, "message too slow".to_owned())
    );
    pings.abort();
}

/// A low message rate, so that a few pings make the connection wait for it.
fn with_message_timeout_and_low_rate() -> TransportConfig {
    TransportConfig {
        max_messages_per_second: 20,
        max_messages_burst: 4,
        ..with_message_timeout()
    }
}

/// Sends the first fragment of a text message on `writer`, then `pings` pings every `every`,
/// 100 times (or until a write fails).
fn fragment_then_pings(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    pings: usize,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        writer
            .write_all(&frame(false, 0x1, br#"[null,"1","#))
            .await
            .expect("write");
        let burst: Vec<u8> = (0..pings).flat_map(|_| frame(true, 0x9, b"k")).collect();
        for _ in 0..100 {
            tokio::time::sleep(every).await;
            if writer.write_all(&burst).await.is_err() {
                break;
            }
        }
    })
}

#[tokio::test]
async fn ping_bursts_over_the_rate_between_fragments_do_not_keep_a_message_alive() {
    // The reviewer's case: every burst is over the rate's burst, so the connection waits for
    // the rate after each; those waits are the client's doing and must not restart the
    // message's clock (the bursts come more often than the message timeout).
    let t = TestEndpoint::start_with(with_message_timeout_and_low_rate()).await;
    let (mut reader, writer) = websocket(t.addr, "user=ann&vsn=2.0.0").await.into_split();
    let pings = fragment_then_pings(writer, 6, Duration::from_millis(300));
    assert_eq!(
        close_frame(&mut reader).await,
        (1008, "message too slow".to_owned())
    );
    pings.abort();
}

#[tokio::test]
async fn pings_sent_faster_than_the_rate_between_fragments_do_not_keep_a_message_alive() {
    // The server always has bytes to read (the pings come faster than the rate lets it read
    // them): the deadline must hold on reads that bring bytes, not only while waiting for them.
    let t = TestEndpoint::start_with(with_message_timeout_and_low_rate()).await;
    let (mut reader, writer) = websocket(t.addr, "user=ann&vsn=2.0.0").await.into_split();
    let pings = fragment_then_pings(writer, 5, Duration::from_millis(50));
    assert_eq!(
        close_frame(&mut reader).await,
        (1008, "message too slow".to_owned())
    );
    pings.abort();
}

#[tokio::test]
async fn pings_alone_and_a_message_that_arrives_in_time_are_fine() {
    let t = TestEndpoint::start_with(with_message_timeout()).await;
    let (mut reader, mut writer) = websocket(t.addr, "user=ann&vsn=2.0.0").await.into_split();
    // Pings for longer than the message timeout: each is a whole message.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer
            .write_all(&frame(true, 0x9, b"k"))
            .await
            .expect("ping");
    }
    // A heartbeat in two parts, well within the timeout.
    let heartbeat = frame(true, 0x1, br#"[null,"hb","phoenix","heartbeat",{}]"#);
    writer.write_all(&heartbeat[..12]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer.write_all(&heartbeat[12..]).await.expect("write");
    let reply = next_text(&mut reader).await;
    assert!(
        reply.contains(r#""hb""#) && reply.contains("phx_reply"),
        "{reply}"
    );
}

#[tokio::test]
async fn whole_messages_sent_back_to_back_in_misaligned_chunks_are_never_too_slow() {
    // The reviewer's case: every message arrives well within the timeout, but no read ends on
    // a message boundary, so one read holds the end of a message and the start of the next.
    let t = TestEndpoint::start_with(with_message_timeout()).await;
    let (mut reader, mut writer) = websocket(t.addr, "user=ann&vsn=2.0.0").await.into_split();
    // Heartbeats of exactly 100 bytes each, back to back.
    let heartbeat = |i: usize| {
        let bytes = frame(
            true,
            0x1,
            format!(r#"[null,"{i:060}","phoenix","heartbeat",{{}}]"#).as_bytes(),
        );
        assert_eq!(bytes.len(), 100);
        bytes
    };
    let stream: Vec<u8> = (0..200).flat_map(heartbeat).collect();
    // 101 bytes every 25 ms for 3 s (three message timeouts): a message takes 25 ms at most.
    let chunks = 120;
    for (i, chunk) in stream.chunks(101).take(chunks).enumerate() {
        if let Err(e) = writer.write_all(chunk).await {
            panic!("the server closed the connection after {i} chunks: {e}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The rest of the last message, then one more.
    let sent = chunks * 101;
    let whole = sent.div_ceil(100);
    writer
        .write_all(&stream[sent..whole * 100])
        .await
        .expect("write");
    writer.write_all(&heartbeat(whole)).await.expect("write");
    // Every heartbeat is answered, in order, and the connection was never closed.
    for i in 0..=whole {
        let reply = next_text(&mut reader).await;
        assert!(reply.contains(&format!(r#""{i:060}""#)), "{i}: {reply}");
    }
}

#[tokio::test]
async fn a_request_head_over_64_kib_is_refused_with_431() {
    let t = TestEndpoint::start().await;
    let big = "a".repeat(100 * 1024);
    let refused = answer_to(
        t.addr,
        format!("GET /nothing HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {big}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 431 "), "{refused:?}");
    // A large head under the limit is served.
    let fine = "a".repeat(32 * 1024);
    let served = answer_to(
        t.addr,
        format!("GET /nothing HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {fine}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(served.starts_with("HTTP/1.1 404 "), "{served:?}");
}
