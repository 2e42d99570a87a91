//! Inputs the fuzz targets (`fuzz/`) found, pinned as unit tests. Each names its finding; the
//! input also sits in the target's corpus under `fuzz/corpus/`.

use super::*;

/// Fuzz finding 1 (`decode_v2`, `decode_v1`): serde_json is built without its
/// `float_roundtrip` feature, so it parses a float best-effort and can land one unit in the last
/// place away from the number the client wrote. A payload number then changes on its way
/// through the server: `1e-28` (what `JSON.stringify(1e-28)` writes) comes back as
/// `1.0000000000000001e-28`, and `1.0000000000000001e-28` as `9.999999999999999e-29`.
#[test]
fn a_payload_float_comes_back_as_the_client_wrote_it() {
    for sent in ["1e-28", "1.0000000000000001e-28"] {
        assert_echoed(sent);
    }
}

fn assert_echoed(sent: &str) {
    let frame = format!(r#"["1","2","room:lobby","ping",{{"x":{sent}}}]"#);
    let inbound = decode_text(Vsn::V2, &frame).expect("a valid frame decodes");
    let Encoded::Text(echo) = encode_push(
        Vsn::V2,
        &inbound.join_ref,
        &inbound.topic,
        &inbound.event,
        &inbound.payload,
    )
    .expect("a JSON push encodes") else {
        panic!("a JSON push is a text frame");
    };
    assert_eq!(
        echo,
        format!(r#"["1",null,"room:lobby","ping",{{"x":{sent}}}]"#),
        "the number the client sent must come back unchanged"
    );
}
