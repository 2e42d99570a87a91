//! Golden vectors from frames captured between phoenix.js and Phoenix, and property tests.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const FRAMES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/phoenix-frames.txt"
));

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn ref_of(v: &Value) -> Ref {
    Ref::from_json(&v.to_string())
}

/// A client-side V2 binary push, as phoenix.js writes it.
fn client_binary(
    join_ref: &str,
    msg_ref: &str,
    topic: &str,
    event: &str,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = vec![
        0,
        join_ref.len() as u8,
        msg_ref.len() as u8,
        topic.len() as u8,
        event.len() as u8,
    ];
    for f in [join_ref, msg_ref, topic, event] {
        out.extend_from_slice(f.as_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// Re-encodes a server frame from its parts with our encoder.
fn reencode_text(vsn: Vsn, line: &str) -> Encoded {
    let v: Value = serde_json::from_str(line).expect("server frame is JSON");
    let (join_ref, msg_ref, topic, event, payload) = match vsn {
        Vsn::V2 => (
            ref_of(&v[0]),
            ref_of(&v[1]),
            v[2].as_str().expect("topic"),
            v[3].as_str().expect("event"),
            &v[4],
        ),
        Vsn::V1 => (
            Ref::NULL,
            ref_of(&v["ref"]),
            v["topic"].as_str().expect("topic"),
            v["event"].as_str().expect("event"),
            &v["payload"],
        ),
    };
    match event {
        events::REPLY => encode_reply(
            vsn,
            &join_ref,
            &msg_ref,
            topic,
            payload["status"].as_str().expect("status"),
            &Payload::Json(payload["response"].clone()),
        )
        .expect("encode reply"),
        events::CLOSE if vsn == Vsn::V2 => {
            assert_eq!(join_ref, msg_ref, "phx_close carries ref = join_ref");
            encode_close(vsn, &join_ref, topic)
        }
        events::ERROR if vsn == Vsn::V2 => {
            assert_eq!(join_ref, msg_ref, "phx_error carries ref = join_ref");
            encode_error(vsn, &join_ref, topic, payload)
        }
        _ if join_ref.is_null() => {
            encode_broadcast(vsn, topic, event, &Payload::Json(payload.clone())).expect("broadcast")
        }
        _ => encode_push(
            vsn,
            &join_ref,
            topic,
            event,
            &Payload::Json(payload.clone()),
        )
        .expect("push"),
    }
}

#[test]
fn golden_frames_decode_and_reencode_byte_for_byte() {
    let mut vsn_of = std::collections::HashMap::new();
    let (mut client, mut server, mut binary) = (0, 0, 0);
    // Connections whose vsn we refuse; Phoenix must have refused them too (HTTP 403).
    let mut refused: Vec<String> = Vec::new();
    for line in FRAMES.lines() {
        let Some(rest) = line
            .strip_prefix("[+")
            .and_then(|l| l.split_once("ms] "))
            .map(|(_, r)| r)
        else {
            continue;
        };
        let Some((who, rest)) = rest.split_once(' ') else {
            continue;
        };
        if let Some(url) = rest.strip_prefix("CONNECT ") {
            let vsn = url.split(['?', '&']).find_map(|p| p.strip_prefix("vsn="));
            match Vsn::negotiate(vsn) {
                Ok(vsn) => {
                    vsn_of.insert(who.to_owned(), vsn);
                }
                Err(_) => refused.push(who.to_owned()),
            }
            continue;
        }
        if rest.starts_with("HTTP 403") {
            refused.retain(|r| r != who);
            continue;
        }
        let vsn = vsn_of.get(who).copied().unwrap_or(Vsn::V2);
        if let Some(frame) = rest.strip_prefix("-> ") {
            client += 1;
            if let Some(h) = frame.split("hex=").nth(1) {
                let bytes = hex(h.split_whitespace().next().expect("hex"));
                let msg = decode_binary(vsn, &bytes).expect("client binary frame decodes");
                let Payload::Binary(payload) = &msg.payload else {
                    panic!("binary payload")
                };
                let again = client_binary(
                    &msg.join_ref.as_binary_field(),
                    &msg.msg_ref.as_binary_field(),
                    &msg.topic,
                    &msg.event,
                    payload,
                );
                assert_eq!(again, bytes, "{line}");
                binary += 1;
            } else if frame.starts_with('[') || frame.starts_with('{') {
                let msg = decode_text(vsn, frame).unwrap_or_else(|e| panic!("{line}: {e}"));
                let v: Value = serde_json::from_str(frame).expect("json");
                let (topic, event) = match vsn {
                    Vsn::V2 => (&v[2], &v[3]),
                    Vsn::V1 => (&v["topic"], &v["event"]),
                };
                assert_eq!(msg.topic, topic.as_str().expect("topic"));
                assert_eq!(msg.event, event.as_str().expect("event"));
            } else {
                assert!(
                    matches!(decode_text(vsn, frame), Err(DecodeError::Malformed(_))),
                    "{line}"
                );
            }
        } else if let Some(frame) = rest.strip_prefix("<- ") {
            server += 1;
            if let Some(h) = frame.split("hex=").nth(1) {
                let bytes = hex(h.split_whitespace().next().expect("hex"));
                assert_eq!(bytes[0], 1, "captured server binary frames are replies");
                let lens: Vec<usize> = bytes[1..5].iter().map(|&b| usize::from(b)).collect();
                let mut at = 5;
                let mut field = |n: usize| {
                    let s = std::str::from_utf8(&bytes[at..at + n])
                        .expect("utf8")
                        .to_owned();
                    at += n;
                    s
                };
                let (j, r, topic, status) = (
                    field(lens[0]),
                    field(lens[1]),
                    field(lens[2]),
                    field(lens[3]),
                );
                let payload = Payload::Binary(bytes::Bytes::copy_from_slice(&bytes[at..]));
                let ours = encode_reply(
                    Vsn::V2,
                    &Ref::from_string(&j),
                    &Ref::from_string(&r),
                    &topic,
                    &status,
                    &payload,
                )
                .expect("binary reply");
                assert_eq!(ours, Encoded::Binary(bytes), "{line}");
                binary += 1;
            } else {
                assert_eq!(
                    reencode_text(vsn, frame),
                    Encoded::Text(frame.to_owned()),
                    "{line}"
                );
            }
        }
    }
    assert!(
        refused.is_empty(),
        "Phoenix accepted a vsn we refuse: {refused:?}"
    );
    assert!(
        client >= 30 && server >= 50 && binary >= 4,
        "read {client} client, {server} server, {binary} binary frames"
    );
}

#[test]
fn vsn_negotiation() {
    assert_eq!(Vsn::negotiate(None), Ok(Vsn::V1));
    for v1 in ["1.0.0", "1.0.7"] {
        assert_eq!(Vsn::negotiate(Some(v1)), Ok(Vsn::V1), "{v1}");
    }
    for v2 in ["2.0.0", "2.0.12"] {
        assert_eq!(Vsn::negotiate(Some(v2)), Ok(Vsn::V2), "{v2}");
    }
    for bad in [
        "",
        "2",
        "2.0",
        "2.1.0",
        "1.1.0",
        "3.0.0",
        "123.1.1",
        "abc",
        "2.0.0.0",
        "02.0.0",
        "2.0.x",
        "-2.0.0",
        "2.0.0-rc.1",
    ] {
        assert!(Vsn::negotiate(Some(bad)).is_err(), "{bad:?}");
    }
}

#[test]
fn refs_are_echoed_with_their_json_type() {
    let msg = decode_text(Vsn::V2, r#"[3, "3", "t", "e", {}]"#).expect("decodes");
    assert_eq!(msg.join_ref.as_json(), "3");
    assert_eq!(msg.msg_ref.as_json(), r#""3""#);
    assert_ne!(msg.join_ref, msg.msg_ref, "number 3 is not string \"3\"");
    let Encoded::Text(reply) = encode_reply(
        Vsn::V2,
        &msg.join_ref,
        &msg.msg_ref,
        "t",
        "ok",
        &Payload::empty(),
    )
    .expect("encodes") else {
        panic!("text")
    };
    assert_eq!(
        reply,
        r#"[3,"3","t","phx_reply",{"response":{},"status":"ok"}]"#
    );
    let msg = decode_text(Vsn::V2, r#"[null, {"odd": [1]}, "t", "e", {}, "extra", 7]"#)
        .expect("extras ignored");
    assert!(msg.join_ref.is_null());
    assert_eq!(msg.msg_ref.as_json(), r#"{"odd": [1]}"#);
}

#[test]
fn malformed_frames_are_typed_errors() {
    for bad in [
        "",
        "[",
        "{}",
        "[1,2,3,4]",
        r#"[null,null,1,"e",{}]"#,
        r#"[null,null,"t",null,{}]"#,
        "\"str\"",
        "[null,null,\"t\",\"e\",{}] trailing",
    ] {
        assert!(
            matches!(decode_text(Vsn::V2, bad), Err(DecodeError::Malformed(_))),
            "{bad:?}"
        );
    }
    for bad in [
        r#"{"topic":"t","event":"e","payload":{}}"#,
        r#"{"event":"e","payload":{},"ref":null}"#,
        "[]",
        // The fields of a V1 object, as an array (serde would take it for the struct).
        r#"["t","e",{},"1"]"#,
        r#" ["t","e",{},"1","1"]"#,
        r#"[null,"1","t","e",{}]"#,
    ] {
        assert!(
            matches!(decode_text(Vsn::V1, bad), Err(DecodeError::Malformed(_))),
            "{bad:?}"
        );
    }
    let ok = decode_text(
        Vsn::V1,
        r#"{"topic":"t","event":"e","payload":{"a":1},"ref":null}"#,
    )
    .expect("ref null is fine");
    assert!(ok.msg_ref.is_null() && ok.join_ref.is_null());

    assert_eq!(
        decode_binary(Vsn::V1, &[0, 0, 0, 0, 0]),
        Err(DecodeError::BinaryNotSupported)
    );
    assert_eq!(decode_binary(Vsn::V2, &[]), Err(DecodeError::Truncated));
    assert_eq!(
        decode_binary(Vsn::V2, &[1, 0, 0, 0, 0]),
        Err(DecodeError::BinaryKind(1))
    );
    assert_eq!(
        decode_binary(Vsn::V2, &[0, 0, 0]),
        Err(DecodeError::Truncated)
    );
    assert_eq!(
        decode_binary(Vsn::V2, &[0, 1, 0, 5, 0, b'1', b'a']),
        Err(DecodeError::Truncated)
    );
    assert_eq!(
        decode_binary(Vsn::V2, &[0, 0, 0, 1, 0, 0xff]),
        Err(DecodeError::Utf8)
    );
}

#[test]
fn binary_and_v1_limits() {
    let long = "x".repeat(256);
    let bin = Payload::Binary(bytes::Bytes::from_static(b"\x01"));
    assert_eq!(
        encode_broadcast(Vsn::V2, &long, "e", &bin),
        Err(EncodeError::FieldTooLong)
    );
    assert_eq!(
        encode_push(Vsn::V1, &Ref::NULL, "t", "e", &bin),
        Err(EncodeError::BinaryNotSupported)
    );
    let Ok(Encoded::Binary(frame)) = encode_broadcast(Vsn::V2, "röom", "ev", &bin) else {
        panic!("binary")
    };
    assert_eq!(
        frame,
        [&[2u8, 5, 2][..], "röom".as_bytes(), b"ev", b"\x01"].concat(),
        "UTF-8 byte lengths"
    );
    let Ok(Encoded::Binary(frame)) = encode_push(Vsn::V2, &Ref::from_string("3"), "t", "e", &bin)
    else {
        panic!("binary")
    };
    assert_eq!(frame, vec![0, 1, 1, 1, b'3', b't', b'e', 1]);
    assert_eq!(
        encode_error(
            Vsn::V2,
            &Ref::from_string("3"),
            "t",
            &json!({"reason": "channel_crash"})
        ),
        Encoded::Text(r#"["3","3","t","phx_error",{"reason":"channel_crash"}]"#.into())
    );
    assert_eq!(
        encode_close(Vsn::V1, &Ref::from_string("3"), "t"),
        Encoded::Text(r#"{"event":"phx_close","payload":{},"ref":"3","topic":"t"}"#.into())
    );
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn ref_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        "[0-9]{1,6}".prop_map(Value::from),
        any::<u32>().prop_map(Value::from)
    ]
}

proptest! {
    #[test]
    fn v2_text_round_trips(j in ref_value(), r in ref_value(), topic in ".{0,20}", event in ".{0,20}", payload in json_value()) {
        let frame = serde_json::to_string(&json!([j, r, topic, event, payload])).expect("json");
        let msg = decode_text(Vsn::V2, &frame).expect("decodes");
        prop_assert_eq!(msg.join_ref, ref_of(&j));
        prop_assert_eq!(msg.msg_ref, ref_of(&r));
        prop_assert_eq!(&msg.topic, &topic);
        prop_assert_eq!(&msg.event, &event);
        prop_assert_eq!(msg.payload, Payload::Json(payload.clone()));

        // And what we send parses back to the same parts.
        let Encoded::Text(out) = encode_push(Vsn::V2, &ref_of(&j), &topic, &event, &Payload::Json(payload.clone())).expect("encodes") else {
            panic!("text")
        };
        let back: Value = serde_json::from_str(&out).expect("valid JSON");
        prop_assert_eq!(back, json!([j, null, topic, event, payload]));
    }

    #[test]
    fn v1_text_round_trips(r in ref_value(), topic in ".{0,20}", event in ".{0,20}", payload in json_value()) {
        let frame = serde_json::to_string(&json!({"topic": topic, "event": event, "payload": payload, "ref": r})).expect("json");
        let msg = decode_text(Vsn::V1, &frame).expect("decodes");
        prop_assert_eq!(&msg.topic, &topic);
        prop_assert_eq!(msg.msg_ref.clone(), ref_of(&r));
        let Encoded::Text(out) = encode_reply(Vsn::V1, &Ref::NULL, &msg.msg_ref, &topic, "ok", &Payload::Json(payload.clone())).expect("encodes") else {
            panic!("text")
        };
        let back: Value = serde_json::from_str(&out).expect("valid JSON");
        prop_assert_eq!(back, json!({"topic": topic, "event": "phx_reply", "ref": r, "payload": {"status": "ok", "response": payload}}));
    }

    #[test]
    fn binary_round_trips(j in "[0-9]{0,4}", r in "[0-9]{0,4}", topic in ".{0,40}", event in ".{0,40}", payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let frame = client_binary(&j, &r, &topic, &event, &payload);
        let msg = decode_binary(Vsn::V2, &frame).expect("decodes");
        prop_assert_eq!(msg.join_ref.as_binary_field(), j.as_str());
        prop_assert_eq!(msg.msg_ref.as_binary_field(), r.as_str());
        prop_assert_eq!(&msg.topic, &topic);
        prop_assert_eq!(&msg.event, &event);
        prop_assert_eq!(msg.payload, Payload::Binary(payload.into()));
    }

    #[test]
    fn decoding_never_panics(text in ".{0,64}", bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_text(Vsn::V2, &text);
        let _ = decode_text(Vsn::V1, &text);
        let _ = decode_binary(Vsn::V2, &bytes);
    }
}
