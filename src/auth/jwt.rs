//! Access tokens: HS256 JWTs, with every claim checked that jsonwebtoken leaves unchecked by
//! default (issuer, audience, `nbf`, the required claims) and the algorithm pinned, so `alg: none`
//! or any other algorithm is refused whatever the token's header says.
//!
//! A token names the account's credential version at issue (`credential_version`), which the
//! account raises to revoke every token issued before (a password change, an admin's reset, a
//! disable), and whether it is good only for changing the account's own password
//! (`password_change_only`, after an admin set it). Both claims are required: a token without
//! them is refused.
//!
//! The key id (`kid`) is derived from the key (the first 16 hex digits of its SHA-256), so a new
//! key gets a new id without configuration, and a token signed with another key is refused by id
//! before its signature is even looked at.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::ids::{AccountId, NodeId};
use crate::domain::roles::Role;

pub(crate) const ISSUER: &str = "allot";
pub(crate) const AUDIENCE: &str = "allot";
/// Access tokens live 15 minutes; clients log in again (or will use refresh in a later version).
pub(crate) const LIFETIME_SECS: i64 = 15 * 60;
/// Clock skew tolerated between allot instances, in seconds.
const LEEWAY_SECS: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The account id.
    pub sub: AccountId,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub node: NodeId,
    pub role: Role,
    /// The account's credential version when the token was issued.
    pub credential_version: i64,
    /// Good only for changing the account's own password.
    pub password_change_only: bool,
}

/// Whom a token is issued to, and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject {
    pub account: AccountId,
    pub node: NodeId,
    pub role: Role,
    pub credential_version: i64,
    pub password_change_only: bool,
}

/// The signing key, and the verification keys by id: the signing key's own and those of keys
/// being rotated out, so tokens they signed stay valid until they expire.
pub struct Keys {
    kid: String,
    encoding: EncodingKey,
    decoding: std::collections::HashMap<String, DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused. The client is told only that it was; the log gets the reason.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token was signed with an unknown key")]
    UnknownKey,
    #[error(transparent)]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// A key's id: the first 16 hex digits of its SHA-256.
fn kid_of(secret: &[u8]) -> String {
    Sha256::digest(secret)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Keys {
    pub fn from_secret(secret: &[u8]) -> Self {
        Self::rotating(secret, &[])
    }

    /// Signs with `secret`; also accepts tokens signed with any of `previous`.
    pub fn rotating(secret: &[u8], previous: &[&[u8]]) -> Self {
        let kid = kid_of(secret);
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let decoding = std::iter::once(secret)
            .chain(previous.iter().copied())
            .map(|key| (kid_of(key), DecodingKey::from_secret(key)))
            .collect();
        Self {
            kid,
            encoding: EncodingKey::from_secret(secret),
            decoding,
            validation,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A token for `subject`, valid from `now` for [`LIFETIME_SECS`].
    pub fn issue(&self, subject: Subject, now: i64) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: subject.account,
            iat: now,
            nbf: now,
            exp: now + LIFETIME_SECS,
            node: subject.node,
            role: subject.role,
            credential_version: subject.credential_version,
            password_change_only: subject.password_change_only,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token)?;
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        Ok(jsonwebtoken::decode::<Claims>(token, key, &self.validation)?.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn subject(account: AccountId, node: NodeId, role: Role) -> Subject {
        Subject {
            account,
            node,
            role,
            credential_version: 3,
            password_change_only: false,
        }
    }

    fn anyone(role: Role) -> Subject {
        subject(AccountId::generate(), NodeId::generate(), role)
    }

    #[test]
    fn a_token_verifies_with_its_key_and_not_with_another() {
        let keys = Keys::from_secret(&[1; 32]);
        let (account, node) = (AccountId::generate(), NodeId::generate());
        let token = keys
            .issue(subject(account, node, Role::Admin), now())
            .unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(
            (
                claims.sub,
                claims.node,
                claims.role,
                claims.credential_version,
                claims.password_change_only
            ),
            (account, node, Role::Admin, 3, false)
        );
        let other = Keys::from_secret(&[2; 32]);
        assert!(matches!(other.verify(&token), Err(TokenError::UnknownKey)));
    }

    #[test]
    fn a_rotated_out_key_still_verifies_but_no_longer_signs() {
        let old = Keys::from_secret(&[1; 32]);
        let token = old.issue(anyone(Role::Admin), now()).unwrap();
        let new = Keys::rotating(&[2; 32], &[&[1; 32]]);
        assert!(new.verify(&token).is_ok());
        assert_ne!(new.kid(), old.kid());
        let fresh = new.issue(anyone(Role::Admin), now()).unwrap();
        assert!(old.verify(&fresh).is_err());
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_refused() {
        let keys = Keys::from_secret(&[1; 32]);
        let old = keys
            .issue(anyone(Role::Viewer), now() - LIFETIME_SECS - 61)
            .unwrap();
        assert!(keys.verify(&old).is_err());
        let future = keys.issue(anyone(Role::Viewer), now() + 120).unwrap();
        assert!(keys.verify(&future).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        use base64::Engine;
        let keys = Keys::from_secret(&[1; 32]);
        let token = keys.issue(anyone(Role::Admin), now()).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
            keys.kid()
        ));
        assert!(keys.verify(&format!("{header}.{payload}.")).is_err());
    }
}
