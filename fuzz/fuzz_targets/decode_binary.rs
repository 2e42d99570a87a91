//! Target 3: the V2 binary decoder (client pushes:
//! `[0][len join_ref][len ref][len topic][len event] join_ref ref topic event payload…`).
//!
//! Properties: never panics; allocates at most linearly in the frame; V1 refuses every binary
//! frame; a decoded push re-encodes to the input byte for byte, and the server's binary reply
//! and broadcast encoders lay the same fields out the same way.

#![no_main]

use fawkes::runtime::protocol::{DecodeError, Vsn, decode_binary};
use fawkes_fuzz::{bounded, check_binary_roundtrip};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert_eq!(
        decode_binary(Vsn::V1, data),
        Err(DecodeError::BinaryNotSupported)
    );
    let decoded = bounded("decode_binary(V2)", data.len(), || {
        decode_binary(Vsn::V2, data)
    });
    if let Ok(inbound) = decoded {
        check_binary_roundtrip(data, &inbound);
    }
});
