//! Access tokens: HS256 JWTs, with every claim checked that jsonwebtoken leaves unchecked by
//! default (issuer, audience, `nbf`, the required claims) and the algorithm pinned, so `alg: none`
//! or any other algorithm is refused whatever the token's header says.
//!
//! The key id (`kid`) is derived from the key (the first 16 hex digits of its SHA-256), so a new
//! key gets a new id without configuration, and a token signed with another key is refused by id
//! before its signature is even looked at.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::ids::{AccountId, NodeId};
use crate::domain::roles::Role;

pub const ISSUER: &str = "allot";
pub const AUDIENCE: &str = "allot";
/// Access tokens live 15 minutes; clients log in again (or will use refresh in a later version).
pub const LIFETIME_SECS: i64 = 15 * 60;
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
}

/// The signing key and everything needed to verify what it signed.
pub struct Keys {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
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

impl Keys {
    pub fn from_secret(secret: &[u8]) -> Self {
        let digest = Sha256::digest(secret);
        let kid = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self {
            kid,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A token for `account` at `node` with `role`, valid from `now` for [`LIFETIME_SECS`].
    pub fn issue(
        &self,
        account: AccountId,
        node: NodeId,
        role: Role,
        now: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: account,
            iat: now,
            nbf: now,
            exp: now + LIFETIME_SECS,
            node,
            role,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token)?;
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenError::UnknownKey);
        }
        Ok(jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn a_token_verifies_with_its_key_and_not_with_another() {
        let keys = Keys::from_secret(&[1; 32]);
        let (account, node) = (AccountId::generate(), NodeId::generate());
        let token = keys.issue(account, node, Role::Admin, now()).unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(
            (claims.sub, claims.node, claims.role),
            (account, node, Role::Admin)
        );
        let other = Keys::from_secret(&[2; 32]);
        assert!(matches!(other.verify(&token), Err(TokenError::UnknownKey)));
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_refused() {
        let keys = Keys::from_secret(&[1; 32]);
        let old = keys
            .issue(
                AccountId::generate(),
                NodeId::generate(),
                Role::Viewer,
                now() - LIFETIME_SECS - 61,
            )
            .unwrap();
        assert!(keys.verify(&old).is_err());
        let future = keys
            .issue(
                AccountId::generate(),
                NodeId::generate(),
                Role::Viewer,
                now() + 120,
            )
            .unwrap();
        assert!(keys.verify(&future).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        use base64::Engine;
        let keys = Keys::from_secret(&[1; 32]);
        let token = keys
            .issue(
                AccountId::generate(),
                NodeId::generate(),
                Role::Admin,
                now(),
            )
            .unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
            keys.kid()
        ));
        assert!(keys.verify(&format!("{header}.{payload}.")).is_err());
    }
}
