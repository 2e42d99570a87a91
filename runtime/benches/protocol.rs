//! Micro-benchmarks of the wire protocol: `cargo bench --bench protocol`.

// criterion_group!/criterion_main! generate undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fawkes_runtime::protocol::{self, Payload, Ref, Vsn};
use serde_json::json;

fn protocol(c: &mut Criterion) {
    let push = r#"["3","7","room:lobby","message:new",{"body":"hello there, this is a typical chat message","user_id":42}]"#;
    let payload = Payload::Json(
        json!({"body": "hello there, this is a typical chat message", "user_id": 42}),
    );
    let join_ref = Ref::from_string("3");
    let binary = {
        let mut f = vec![0u8, 1, 1, 10, 4];
        f.extend_from_slice(b"37room:lobbyping");
        f.extend_from_slice(&[0u8; 64]);
        f
    };
    c.bench_function("decode V2 text push", |b| {
        b.iter(|| protocol::decode_text(Vsn::V2, black_box(push)))
    });
    c.bench_function("decode V2 binary push", |b| {
        b.iter(|| protocol::decode_binary(Vsn::V2, black_box(&binary)))
    });
    c.bench_function("encode V2 broadcast", |b| {
        b.iter(|| {
            protocol::encode_broadcast(
                Vsn::V2,
                black_box("room:lobby"),
                "message:new",
                black_box(&payload),
            )
        })
    });
    c.bench_function("encode V2 push", |b| {
        b.iter(|| {
            protocol::encode_push(
                Vsn::V2,
                black_box(&join_ref),
                "room:lobby",
                "message:new",
                black_box(&payload),
            )
        })
    });
    c.bench_function("encode V2 reply", |b| {
        b.iter(|| {
            protocol::encode_reply(
                Vsn::V2,
                black_box(&join_ref),
                &join_ref,
                "room:lobby",
                "ok",
                black_box(&payload),
            )
        })
    });
    c.bench_function("encode V1 broadcast", |b| {
        b.iter(|| {
            protocol::encode_broadcast(
                Vsn::V1,
                black_box("room:lobby"),
                "message:new",
                black_box(&payload),
            )
        })
    });
}

criterion_group!(benches, protocol);
criterion_main!(benches);
