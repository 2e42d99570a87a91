//! Target 1: the V1 text decoder (`{"topic","event","payload","ref","join_ref"?}`), as the
//! transport calls it on every text frame of a `vsn=1.0.0` (or version-less) connection.
//!
//! Properties: never panics; allocates at most linearly in the frame; a decoded frame
//! re-encodes through the server's encoders into frames that decode to the same parts; only
//! JSON objects decode (V1 frames are objects; feature `v1-objects-only`, on by default).

#![no_main]

use fawkes::runtime::protocol::{Vsn, decode_text};
use fawkes_fuzz::{bounded, check_text_roundtrip};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = bounded("decode_text(V1)", data.len(), || decode_text(Vsn::V1, text));
    if let Ok(inbound) = decoded {
        #[cfg(feature = "v1-objects-only")]
        assert!(
            text.trim_start().starts_with('{'),
            "V1 decoded a frame that is not a JSON object: {text:?}"
        );
        check_text_roundtrip(Vsn::V1, &inbound);
    }
});
