//! Target 2: the V2 text decoder (`[join_ref, ref, topic, event, payload]`), as the transport
//! calls it on every text frame of a `vsn=2.0.0` connection.
//!
//! Properties: never panics; allocates at most linearly in the frame; a decoded frame
//! re-encodes through the server's encoders into frames that decode to the same parts.

#![no_main]

use fawkes::runtime::protocol::{Vsn, decode_text};
use fawkes_fuzz::{bounded, check_text_roundtrip};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Text frames reach the decoder as `&str` (the WebSocket layer checks UTF-8).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = bounded("decode_text(V2)", data.len(), || decode_text(Vsn::V2, text));
    if let Ok(inbound) = decoded {
        check_text_roundtrip(Vsn::V2, &inbound);
    }
});
