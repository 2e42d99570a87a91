//! LongPoll session tokens: `base64url("fwlp" ‖ node ‖ 0 ‖ session id ‖ tag)`, the tag the
//! first 16 bytes of an HMAC-SHA256 over the rest under a key drawn at random when the
//! sessions' table is made and kept nowhere else. A token is only good on the node (and the
//! runtime start) that minted it, for the session it names. Its form (the `fwlp` mark, the
//! lengths) tells a session token, of any node, from the application's own `token` connect
//! param, which travels in the same query.

use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Bytes of the tag kept in a token.
const TAG_BYTES: usize = 16;

/// The first bytes of every session token.
const MARK: &[u8] = b"fwlp";

/// Bytes after the node name: the 0 that ends it, the session id, the tag.
const TAIL_BYTES: usize = 1 + 8 + TAG_BYTES;

/// The token alphabet (URL-safe, no padding: it travels in a query string).
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Mints and checks the session tokens of one sessions' table.
pub(super) struct Signer {
    key: [u8; 32],
    node: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for `node` with a fresh random key; `None` if the system has no randomness
    /// to give (LongPoll then refuses new sessions).
    pub(super) fn new(node: &str) -> Option<Self> {
        let mut key = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut key) {
            tracing::error!(error = %e, "no random key for LongPoll session tokens");
            return None;
        }
        Some(Self {
            key,
            node: node.to_owned(),
        })
    }

    fn tag(&self, body: &[u8]) -> [u8; TAG_BYTES] {
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| {
            unreachable!("HMAC takes a key of any length");
        });
        mac.update(body);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }

    fn body(&self, id: u64) -> Vec<u8> {
        let mut body = Vec::with_capacity(MARK.len() + self.node.len() + TAIL_BYTES);
        body.extend_from_slice(MARK);
        body.extend_from_slice(self.node.as_bytes());
        body.push(0);
        body.extend_from_slice(&id.to_be_bytes());
        body
    }

    /// The token of session `id`.
    pub(super) fn sign(&self, id: u64) -> String {
        let mut body = self.body(id);
        let tag = self.tag(&body);
        body.extend_from_slice(&tag);
        B64.encode(body)
    }

    /// The session a token names, if this signer minted it.
    pub(super) fn verify(&self, token: &str) -> Option<u64> {
        let bytes = B64.decode(token.trim_end_matches('=')).ok()?;
        let split = bytes.len().checked_sub(TAG_BYTES)?;
        let (body, tag) = bytes.split_at(split);
        let node = body
            .strip_prefix(MARK)?
            .strip_prefix(self.node.as_bytes())?
            .strip_prefix(&[0])?;
        let id = u64::from_be_bytes(node.try_into().ok()?);
        let mut mac = HmacSha256::new_from_slice(&self.key).ok()?;
        mac.update(body);
        // Constant time.
        mac.verify_truncated_left(tag).ok()?;
        Some(id)
    }
}

/// Whether `token` has the form of a session token (of any node or key): what a client
/// holding a session sends. Anything else (none, `null`, the application's own `token`
/// param) names no session.
pub(super) fn is_session_token(token: &str) -> bool {
    let Ok(bytes) = B64.decode(token.trim_end_matches('=')) else {
        return false;
    };
    bytes.len() >= MARK.len() + TAIL_BYTES
        && bytes.starts_with(MARK)
        && bytes[bytes.len() - TAIL_BYTES] == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_session_only_on_the_signer_that_minted_it() {
        let signer = Signer::new("a").expect("random");
        let token = signer.sign(42);
        assert_eq!(signer.verify(&token), Some(42));
        assert_eq!(
            Signer::new("a").expect("random").verify(&token),
            None,
            "another key"
        );
        assert_eq!(
            Signer::new("b").expect("random").verify(&token),
            None,
            "another node"
        );
        let mut bytes = B64.decode(&token).expect("base64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(signer.verify(&B64.encode(&bytes)), None, "a forged tag");
        assert_eq!(signer.verify("null"), None);
        assert_eq!(signer.verify(""), None);
    }

    #[test]
    fn a_session_token_is_told_from_other_tokens_by_its_form() {
        let token = Signer::new("node-a").expect("random").sign(7);
        assert!(is_session_token(&token));
        assert!(is_session_token(
            &Signer::new("").expect("random").sign(u64::MAX)
        ));
        for other in [
            "",
            "null",
            "undefined",
            "forged",
            "v4.local.c29tZXRoaW5nIGVsc2U",
            &B64.encode([7u8; 48]),
            &token[1..],
        ] {
            assert!(!is_session_token(other), "{other}");
        }
    }
}
