//! Logging in: a username and password checked against the throttle, the account and its node,
//! giving the account a token is then issued to. Not a write, but a workflow with its own rules
//! about what an attacker may learn, so it lives here and not in a handler.

use crate::auth::password::Hasher;
use crate::auth::throttle::Throttle;
use crate::error::ApiError;
use crate::store::accounts::Account;
use crate::store::{self, Pool};

/// The account `username` names, if `password` is its password and it may log in (not disabled,
/// its node not deleted). A wrong password, an unknown username, a disabled account and one at a
/// deleted node all answer `InvalidCredentials`, after the same work. `keys` are the throttle's
/// keys for the attempt (the username's first, which a success forgives); more than five recent
/// failures on one of them answer `TooManyRequests` without judging the password.
pub(crate) async fn log_in(
    pool: &Pool,
    hasher: &Hasher,
    throttle: &Throttle,
    keys: Vec<String>,
    username: String,
    password: String,
) -> Result<Account, ApiError> {
    let user_key = keys[0].clone();
    // The attempt takes its place before the password is verified, so that simultaneous
    // guesses cannot all pass the check while none has failed yet.
    let reservation = throttle.reserve(keys).await?;
    // The row is read and the connection given back before the hash is verified: tens of
    // milliseconds per login must not hold a connection the API and the check need.
    let found = store::run(pool, move |conn| {
        let Some(account) = store::accounts::find_by_username(conn, &username)? else {
            return Ok(None);
        };
        // An account whose node was deleted could not use a token anyway: it is refused like a
        // wrong password, not with an answer of its own that would tell it exists.
        let node_live = store::nodes::find(conn, account.node_id)?.is_some();
        Ok::<_, ApiError>(Some((account, node_live)))
    })
    .await;
    let found = match found {
        Ok(found) => found,
        // The database could not be asked: no password was judged, and a user must not be
        // locked out by an outage.
        Err(err) => {
            reservation.release().await;
            return Err(err);
        }
    };
    // The hash is checked even for a disabled account or one at a deleted node, and a dummy one
    // for a missing account, so that the time taken does not tell the cases apart.
    let phc = found.as_ref().map(|(a, _)| a.password_hash.clone());
    let matches = match hasher.verify(password, phc).await {
        Ok(matches) => matches,
        Err(err) => {
            reservation.release().await;
            return Err(err);
        }
    };
    let account = found
        .filter(|(a, node_live)| matches && !a.disabled && *node_live)
        .map(|(a, _)| a);
    let Some(account) = account else {
        reservation.fail().await;
        return Err(ApiError::InvalidCredentials);
    };
    reservation.succeed(&user_key).await;
    Ok(account)
}
