//! API keys as presented: `allot_<key id>_<secret>`, the secret 32 random bytes in base64url. The
//! id finds the stored key in one indexed read; only the secret's SHA-256 is stored and compared,
//! in constant time.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::ids::ApiKeyId;

pub const PREFIX: &str = "allot_";

/// A new key: its id, the text shown once, and the hash to store.
pub struct Minted {
    pub id: ApiKeyId,
    pub text: String,
    pub secret_hash: String,
}

pub fn mint() -> Minted {
    let id = ApiKeyId::generate();
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    Minted {
        id,
        text: format!("{PREFIX}{id}_{secret}"),
        secret_hash: hash(&secret),
    }
}

/// The SHA-256 of a secret.
pub(crate) fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The digest as stored: lowercase hex.
pub(crate) fn hash(secret: &str) -> String {
    base16ct::lower::encode_string(&digest(secret))
}

/// A stored hash back as the digest it encodes, if it is one.
pub fn stored_digest(stored: &str) -> Option<[u8; 32]> {
    let mut digest = [0u8; 32];
    let decoded = base16ct::lower::decode(stored, &mut digest).ok()?.len();
    (decoded == digest.len()).then_some(digest)
}

/// The id and secret of a presented key, if it has the key's shape.
pub fn parse(text: &str) -> Option<(ApiKeyId, &str)> {
    let (id, secret) = text.strip_prefix(PREFIX)?.split_once('_')?;
    Some((id.parse().ok()?, secret))
}

/// Whether `secret` hashes to `stored`, compared in constant time.
pub fn matches(secret: &str, stored: &str) -> bool {
    stored_digest(stored).is_some_and(|stored| digest_matches(secret, &stored))
}

/// Whether `secret` hashes to `digest`, compared in constant time; allocates nothing (the check
/// does this on every request).
pub(crate) fn digest_matches(secret: &str, digest: &[u8; 32]) -> bool {
    self::digest(secret).ct_eq(digest).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_key_parses_back_and_matches_only_its_own_hash() {
        let minted = mint();
        let (id, secret) = parse(&minted.text).unwrap();
        assert_eq!(id, minted.id);
        assert!(secret.len() >= 43, "32 bytes of secret");
        assert!(matches(secret, &minted.secret_hash));
        assert!(!matches(&format!("{secret}x"), &minted.secret_hash));
        assert_eq!(minted.secret_hash.len(), 64);
        assert!(!matches(secret, "not hex"));
        assert!(parse("allot_not-a-uuid_secret").is_none());
        assert!(parse("eyJhbGciOi.x.y").is_none());
    }
}
