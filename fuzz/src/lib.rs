//! Shared checks for the fuzz targets in `fuzz_targets/`: an allocation meter (decoding must
//! not allocate more than a constant factor of its input) and the re-encode properties of the
//! text and binary decoders.
//!
//! Every check panics on failure, which libFuzzer reports as a crash with the input saved.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use fawkes::runtime::protocol::{
    Encoded, Inbound, Payload, Ref, Vsn, decode_text, encode_broadcast, encode_push, encode_reply,
    events, push_frame_parts,
};
use serde_json::{Value, json};

/// The system allocator, counting live bytes and their high-water mark. The targets are
/// single-threaded, and libFuzzer's own C++ allocations do not come through here.
struct Metered;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated around it.
unsafe impl GlobalAlloc for Metered {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and `new_size` is valid per the caller.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static METERED: Metered = Metered;

/// Bytes a decode may hold at its peak per byte of input. A JSON value costs more than its
/// text (`[0,0,…]` holds a 32-byte `Value` per 2 input bytes, and a growing `Vec` briefly
/// doubles), so this is generous; the point is "linear in the input", which a length field
/// trusted from the frame, or a quadratic copy, would break.
pub const BYTES_PER_INPUT_BYTE: usize = 64;

/// Fixed allowance on top of [`BYTES_PER_INPUT_BYTE`] (hash-map seeds, error messages).
pub const BASE_BYTES: usize = 64 * 1024;

/// Runs `f` and panics if the bytes it had allocated at its peak (beyond what was live when it
/// started) exceed the linear bound for an input of `input_len` bytes.
pub fn bounded<R>(what: &str, input_len: usize, f: impl FnOnce() -> R) -> R {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let result = f();
    let peak = PEAK.load(Relaxed).saturating_sub(before);
    let limit = BASE_BYTES + BYTES_PER_INPUT_BYTE * input_len;
    assert!(
        peak <= limit,
        "{what} held {peak} bytes at its peak for {input_len} input bytes (limit {limit})"
    );
    result
}

fn text(frame: Encoded) -> String {
    match frame {
        Encoded::Text(text) => text,
        Encoded::Binary(bytes) => panic!("a JSON payload encoded to a binary frame: {bytes:?}"),
    }
}

fn binary(frame: Encoded) -> Vec<u8> {
    match frame {
        Encoded::Binary(bytes) => bytes,
        Encoded::Text(text) => panic!("a binary payload encoded to a text frame: {text}"),
    }
}

/// What a frame of `vsn` carries back of a join_ref: V1 frames have none.
fn sent_join_ref(vsn: Vsn, join_ref: &Ref) -> Ref {
    match vsn {
        Vsn::V2 => join_ref.clone(),
        Vsn::V1 => Ref::NULL,
    }
}

/// Asserts `got` has the parts of `want`. Payloads compare exactly, floats included: serde_json
/// parses floats exactly (`float_roundtrip`, fuzz finding 1), so a float comes back as sent.
fn assert_same(got: &Inbound, want: &Inbound, frame: &str) {
    assert_eq!(got.join_ref, want.join_ref, "join_ref changed in {frame:?}");
    assert_eq!(got.msg_ref, want.msg_ref, "ref changed in {frame:?}");
    assert_eq!(got.topic, want.topic, "topic changed in {frame:?}");
    assert_eq!(got.event, want.event, "event changed in {frame:?}");
    match (&got.payload, &want.payload) {
        (Payload::Json(g), Payload::Json(w)) => {
            assert_eq!(g, w, "payload changed in {frame:?}");
        }
        (g, w) => panic!("payload changed in {frame:?}: {g:?} != {w:?}"),
    }
}

/// A decoded text frame re-encodes, through the server's own encoders, into frames that decode
/// back to the same parts: a reply keeps the refs and topic and wraps the payload; a push keeps
/// topic, event and payload; the pre-split push frame is byte-identical to the whole one.
pub fn check_text_roundtrip(vsn: Vsn, inbound: &Inbound) {
    let Payload::Json(payload) = &inbound.payload else {
        panic!("a text frame decoded to a non-JSON payload: {inbound:?}");
    };
    let join_ref = sent_join_ref(vsn, &inbound.join_ref);

    // The event travels as the reply's status, so every part is checked once.
    let reply = encode_reply(
        vsn,
        &inbound.join_ref,
        &inbound.msg_ref,
        &inbound.topic,
        &inbound.event,
        &inbound.payload,
    )
    .expect("a JSON reply always encodes");
    let reply = text(reply);
    let again = decode_text(vsn, &reply)
        .unwrap_or_else(|e| panic!("our own reply {reply:?} does not decode: {e}"));
    let expected = Inbound {
        join_ref: join_ref.clone(),
        msg_ref: inbound.msg_ref.clone(),
        topic: inbound.topic.clone(),
        event: events::REPLY.to_owned(),
        payload: Payload::Json(json!({ "response": payload, "status": inbound.event })),
    };
    assert_same(&again, &expected, &reply);

    let push = text(
        encode_push(
            vsn,
            &inbound.join_ref,
            &inbound.topic,
            &inbound.event,
            &inbound.payload,
        )
        .expect("a JSON push always encodes"),
    );
    let again = decode_text(vsn, &push)
        .unwrap_or_else(|e| panic!("our own push {push:?} does not decode: {e}"));
    let expected = Inbound {
        join_ref,
        msg_ref: Ref::NULL,
        topic: inbound.topic.clone(),
        event: inbound.event.clone(),
        payload: inbound.payload.clone(),
    };
    assert_same(&again, &expected, &push);

    let (prefix, suffix) = push_frame_parts(vsn, &inbound.join_ref, &inbound.topic, &inbound.event);
    let encoded = serde_json::to_string(payload).expect("a Value serializes");
    assert_eq!(
        format!("{prefix}{encoded}{suffix}"),
        push,
        "the split push frame differs from the whole one"
    );

    let broadcast = text(
        encode_broadcast(vsn, &inbound.topic, &inbound.event, &inbound.payload)
            .expect("a JSON broadcast always encodes"),
    );
    let again: Value = serde_json::from_str(&broadcast).expect("a broadcast is JSON");
    let (topic, event) = match vsn {
        Vsn::V2 => (&again[2], &again[3]),
        Vsn::V1 => (&again["topic"], &again["event"]),
    };
    assert_eq!(topic.as_str(), Some(inbound.topic.as_str()));
    assert_eq!(event.as_str(), Some(inbound.event.as_str()));
}

/// A decoded binary push re-encodes to the input, byte for byte, and the server's reply and
/// broadcast encoders lay the same parts out the same way (kinds 1 and 2).
pub fn check_binary_roundtrip(frame: &[u8], inbound: &Inbound) {
    let Payload::Binary(payload) = &inbound.payload else {
        panic!("a binary frame decoded to a non-binary payload: {inbound:?}");
    };
    let join_ref = inbound.join_ref.as_binary_field();
    let msg_ref = inbound.msg_ref.as_binary_field();
    let fields = [&*join_ref, &*msg_ref, &inbound.topic, &inbound.event];
    let layout = |kind: u8, fields: &[&str]| {
        let mut out = vec![kind];
        out.extend(
            fields
                .iter()
                .map(|f| u8::try_from(f.len()).expect("field fits")),
        );
        for field in fields {
            out.extend_from_slice(field.as_bytes());
        }
        out.extend_from_slice(payload);
        out
    };
    assert_eq!(
        layout(0, &fields),
        frame,
        "a binary push does not re-encode to itself"
    );

    let reply = encode_reply(
        Vsn::V2,
        &inbound.join_ref,
        &inbound.msg_ref,
        &inbound.topic,
        &inbound.event,
        &inbound.payload,
    )
    .expect("a decoded binary push's fields fit a reply");
    assert_eq!(binary(reply), layout(1, &fields), "binary reply layout");

    let broadcast = encode_broadcast(Vsn::V2, &inbound.topic, &inbound.event, &inbound.payload)
        .expect("a decoded binary push's fields fit a broadcast");
    assert_eq!(
        binary(broadcast),
        layout(2, &[&inbound.topic, &inbound.event]),
        "binary broadcast layout"
    );
}

/// Turns arbitrary bytes into a query string that is always a valid URI component, so every
/// input reaches the query parser: bytes allowed in a query pass through as they are (so `%`
/// escapes, `+`, `&` and `=` written by the fuzzer keep their meaning), others are escaped.
pub fn query_from_bytes(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 3);
    for &byte in data {
        let allowed = byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&byte);
        if allowed {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
