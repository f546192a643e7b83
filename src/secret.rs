//! Secrets at rest: what allot must keep to act for someone later (a mail server's password, a
//! Graph client secret, a webhook's signing secret) is stored sealed, never as text.
//!
//! The cipher is XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`), an AEAD: a sealed value
//! that was changed, or opened with another key, fails to open instead of yielding garbage. Its
//! 24-byte nonce is random for every seal: at that size random nonces do not collide in any number
//! of seals an installation makes, so no counter has to be kept (and shared between instances).
//!
//! Each value is sealed for a *context*, the place it is stored at (`settings:<node>:mail_server.
//! password`, `webhook:<id>:secret`), passed as associated data: a sealed value copied into another
//! row, or another column, does not open there. So someone who can write the database but does not
//! hold the key cannot move one tenant's password to where another tenant's mail is sent with it.
//!
//! A sealed value is `[version][nonce 24][ciphertext + tag 16]`; the version byte lets a later key
//! scheme (rotation, another cipher) tell old values from new ones.
//!
//! The key is `ALLOT_SECRET_KEY` (32 bytes, base64). Unset with the embedded SQLite database, one
//! is generated on first start and kept in a file beside the database ([`key_file`]); with
//! PostgreSQL it must be given, since every instance must share it (see `init::sealer`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// The layout of what [`Sealer::seal`] makes today.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The key's length in bytes.
pub const KEY_LEN: usize = 32;

/// A key secrets are sealed with. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; KEY_LEN]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Base64 (standard alphabet, padding optional) of exactly 32 bytes: how `ALLOT_SECRET_KEY`
    /// and the key file spell it. The message never repeats the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| {
                "not base64 (standard alphabet); make one with `openssl rand -base64 32`".to_owned()
            })?;
        let bytes: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "{} bytes once decoded; exactly {KEY_LEN} are needed (`openssl rand -base64 32`)",
                bytes.len()
            )
        })?;
        Ok(Self(bytes))
    }

    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    fn encode(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

/// Seals and opens secrets with one key. Cheap to clone (the cipher is shared); its `Debug` never
/// shows the key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Arc<XChaCha20Poly1305>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(…)")
    }
}

/// Why a sealed value did not open. Says nothing about the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Too short, or of a version this allot does not know.
    #[error("the stored secret is not in a format this allot reads")]
    Malformed,
    /// The tag did not verify: another key, another context, or changed bytes.
    #[error(
        "the stored secret does not open with this key for this place (ALLOT_SECRET_KEY changed, or the value was altered or moved)"
    )]
    Unauthentic,
}

impl Sealer {
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Self {
            cipher: Arc::new(XChaCha20Poly1305::new(&Key::from(*key))),
        }
    }

    /// `plaintext` sealed for `context`: version, random nonce, ciphertext and tag.
    pub fn seal(&self, plaintext: &str, context: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any message shorter than 256 GiB");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The text sealed in `sealed` for `context`.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<String, SecretError> {
        let (&version, rest) = sealed.split_first().ok_or(SecretError::Malformed)?;
        if version != VERSION || rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::Malformed);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce's length");
        let plain = self
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Unauthentic)?;
        // Only seal() wrote it, from a &str; a tag that verifies proves these are those bytes.
        String::from_utf8(plain).map_err(|_| SecretError::Malformed)
    }
}

/// Where the generated key of the SQLite database at `database_url` is kept: the same path with
/// `.secret-key` appended, beside the database (and in its backups' reach, so back both up).
pub fn key_file(database_url: &str) -> PathBuf {
    PathBuf::from(format!("{database_url}.secret-key"))
}

/// The key in the file at `path`, made first if there is none. The file is written whole under a
/// name of its own (mode 0600, `create_new`) and then hard-linked into place, which fails if the
/// name exists: two instances starting at once cannot both make a key, and neither can read a
/// half-written one. The message names what went wrong, never the key.
pub fn load_or_create(path: &Path) -> Result<SecretKey, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            return SecretKey::parse(&text).map_err(|e| {
                format!(
                    "the key file {} is not a key ({e}); restore it from a backup, or set ALLOT_SECRET_KEY",
                    path.display()
                )
            });
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("cannot read the key file {}: {e}", path.display()));
        }
        Err(_) => {}
    }
    let key = SecretKey::generate();
    let staging = path.with_extension(format!("secret-key.{}", uuid::Uuid::new_v4().simple()));
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staging)?;
        writeln!(file, "{}", key.encode())?;
        file.sync_all()
    };
    let made = write().and_then(|()| std::fs::hard_link(&staging, path));
    let _ = std::fs::remove_file(&staging);
    match made {
        Ok(()) => {
            tracing::info!(file = %path.display(), "generated the key that seals stored secrets");
            Ok(key)
        }
        // Another instance made it first: its key is the one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
        Err(e) => Err(format!("cannot write the key file {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: &str = "settings:n1:mail_server.password";

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&[byte; KEY_LEN])
    }

    #[test]
    fn a_sealed_value_opens_to_itself_and_does_not_show_it() {
        let sealed = sealer(1).seal("hunter2 ü", CONTEXT);
        assert_eq!(sealed[0], VERSION);
        assert_eq!(sealed.len(), 1 + NONCE_LEN + "hunter2 ü".len() + TAG_LEN);
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(sealer(1).open(&sealed, CONTEXT).unwrap(), "hunter2 ü");
        // A fresh nonce each time: the same text seals differently.
        assert_ne!(sealer(1).seal("hunter2 ü", CONTEXT), sealed);
    }

    #[test]
    fn a_value_does_not_open_in_another_place() {
        let sealed = sealer(1).seal("hunter2", CONTEXT);
        assert_eq!(
            sealer(1).open(&sealed, "settings:n2:mail_server.password"),
            Err(SecretError::Unauthentic)
        );
    }

    #[test]
    fn a_changed_byte_anywhere_is_refused() {
        let sealed = sealer(1).seal("hunter2", CONTEXT);
        for at in 1..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[at] ^= 0x01;
            assert_eq!(
                sealer(1).open(&tampered, CONTEXT),
                Err(SecretError::Unauthentic),
                "byte {at}"
            );
        }
        let mut other_version = sealed.clone();
        other_version[0] = 2;
        assert_eq!(
            sealer(1).open(&other_version, CONTEXT),
            Err(SecretError::Malformed)
        );
        assert_eq!(
            sealer(1).open(&sealed[..20], CONTEXT),
            Err(SecretError::Malformed)
        );
        assert_eq!(sealer(1).open(&[], CONTEXT), Err(SecretError::Malformed));
    }

    #[test]
    fn another_key_does_not_open_it() {
        let sealed = sealer(1).seal("hunter2", CONTEXT);
        assert_eq!(
            sealer(2).open(&sealed, CONTEXT),
            Err(SecretError::Unauthentic)
        );
    }

    #[test]
    fn debug_shows_no_key() {
        assert_eq!(format!("{:?}", sealer(7)), "Sealer(…)");
        assert_eq!(
            format!("{:?}", SecretKey::from_bytes([7; KEY_LEN])),
            "SecretKey(…)"
        );
    }

    #[test]
    fn a_key_is_base64_of_exactly_32_bytes() {
        let engine = base64::engine::general_purpose::STANDARD;
        let good = engine.encode([9u8; KEY_LEN]);
        assert_eq!(SecretKey::parse(&good).unwrap(), SecretKey([9; KEY_LEN]));
        assert_eq!(
            SecretKey::parse(good.trim_end_matches('=')).unwrap(),
            SecretKey([9; KEY_LEN])
        );
        assert!(
            SecretKey::parse(&engine.encode([9u8; 16]))
                .unwrap_err()
                .contains("16 bytes")
        );
        assert!(
            SecretKey::parse(&engine.encode([9u8; 33]))
                .unwrap_err()
                .contains("exactly 32")
        );
        let refused = SecretKey::parse("not base64 !!").unwrap_err();
        assert!(refused.contains("not base64"));
        assert!(
            !refused.contains("!!"),
            "the text is not repeated: {refused}"
        );
    }

    #[test]
    fn the_key_file_is_made_once_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(&dir.path().join("allot.db").to_string_lossy());
        let made = load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(&path).unwrap(), made);
        // Nothing but the key file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(&path, "garbage").unwrap();
        let refused = load_or_create(&path).unwrap_err();
        assert!(refused.contains("not a key"), "{refused}");
    }
}
