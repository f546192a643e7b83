//! First start: the owner node and its first admin, created together in one transaction, only on
//! an empty database. `allot serve` runs this by itself so that `cargo run --release` alone gives a
//! working service; `allot init` runs it on purpose and refuses a database that has an owner.

use base64::Engine;
use rand::RngCore;
use serde_json::json;

use crate::auth::{jwt, password};
use crate::config::{Config, JwtSecret, parse_jwt_secret};
use crate::domain::audit::Action;
use crate::domain::roles::Role;
use crate::secret::{self, Sealer};
use crate::store::{self, Backend, DbConnection, accounts, audit, nodes, settings};

/// What a first start created.
#[derive(Debug)]
pub struct Initialised {
    pub owner: nodes::Node,
    pub admin: accounts::Account,
    /// The generated password, to print once; `None` when the operator chose it.
    pub generated_password: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A setting the operator gave is unusable; names the setting.
    #[error("{setting}: {message}")]
    Setting {
        setting: &'static str,
        message: String,
    },
    #[error("the database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("hashing the admin password: {0}")]
    Hash(String),
}

/// Usernames: 3–64 of `A-Z a-z 0-9 . - _ @`.
pub(crate) fn check_username(username: &str) -> Result<(), String> {
    let ok_chars = username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if (3..=64).contains(&username.len()) && ok_chars {
        Ok(())
    } else {
        Err("must be 3 to 64 characters of A-Z a-z 0-9 . - _ @".to_owned())
    }
}

/// Creates the owner and its admin if the database has no owner yet; `Ok(None)` if it has one.
pub fn init_if_empty(
    conn: &mut DbConnection,
    config: &Config,
) -> Result<Option<Initialised>, InitError> {
    check_username(&config.admin_username).map_err(|message| InitError::Setting {
        setting: "ALLOT_ADMIN_USERNAME",
        message,
    })?;
    // An empty ALLOT_ADMIN_PASSWORD (as container tooling often sets) means "generate one".
    let chosen_password = config.admin_password.as_deref().filter(|p| !p.is_empty());
    if let Some(given) = chosen_password {
        password::check_strength(given).map_err(|message| InitError::Setting {
            setting: "ALLOT_ADMIN_PASSWORD",
            message,
        })?;
    }
    let owner_name = config.owner_name.trim();
    if owner_name.is_empty() || owner_name.chars().count() > 100 {
        return Err(InitError::Setting {
            setting: "ALLOT_OWNER_NAME",
            message: "must be 1 to 100 characters".to_owned(),
        });
    }
    store::write_tx(conn, |conn| {
        if nodes::owner(conn)?.is_some() {
            return Ok(None);
        }
        let generated_password = chosen_password.is_none().then(password::generate);
        let chosen = chosen_password
            .or(generated_password.as_deref())
            .unwrap_or_default();
        let hash = password::hash(chosen).map_err(|e| InitError::Hash(e.to_string()))?;
        let owner = nodes::insert_owner(conn, owner_name)?;
        let admin = accounts::insert(
            conn,
            accounts::NewAccount {
                node_id: owner.id,
                username: &config.admin_username,
                email: &config.admin_email,
                role: Role::Admin,
                password_hash: &hash,
                password_change_required: false,
            },
        )?;
        let actor = audit::Actor::System;
        audit::record(
            conn,
            audit::Event {
                actor: &actor,
                node_id: owner.id,
                action: Action::NodeCreate,
                target_kind: "node",
                target_id: owner.id.to_string(),
                before: None,
                after: Some(json!({"kind": owner.kind, "name": owner.name})),
                request_id: None,
                client_address: None,
            },
        )?;
        audit::record(
            conn,
            audit::Event {
                actor: &actor,
                node_id: owner.id,
                action: Action::AccountCreate,
                target_kind: "account",
                target_id: admin.id.to_string(),
                before: None,
                after: Some(
                    json!({"username": admin.username, "email": admin.email, "role": admin.role}),
                ),
                request_id: None,
                client_address: None,
            },
        )?;
        Ok(Some(Initialised {
            owner,
            admin,
            generated_password,
        }))
    })
}

/// What the operator reads once, on standard output (not the log, which may be shipped away).
pub fn announce(init: &Initialised) {
    println!(
        "allot: created the owner node \"{}\" ({}) and its first admin.",
        init.owner.name, init.owner.id
    );
    println!("  username: {}", init.admin.username);
    match &init.generated_password {
        Some(generated) => println!(
            "  password: {generated}\n  This password is shown once and never again; keep it now."
        ),
        None => println!("  password: the one given in ALLOT_ADMIN_PASSWORD"),
    }
}

const JWT_SECRET_SETTING: &str = "jwt_hs256_secret";

/// The configured token-signing keys, judged: `ALLOT_JWT_SECRET` (if set) and
/// `ALLOT_JWT_PREVIOUS_SECRETS`. A malformed one is refused naming its setting (and its place in
/// the list), never its value.
#[derive(Debug)]
pub(crate) struct JwtSecrets {
    current: Option<JwtSecret>,
    previous: Vec<JwtSecret>,
}

pub(crate) fn jwt_secrets(config: &Config) -> Result<JwtSecrets, InitError> {
    let current = config
        .jwt_secret
        .as_ref()
        .map(|text| {
            parse_jwt_secret(text.expose()).map_err(|message| InitError::Setting {
                setting: "ALLOT_JWT_SECRET",
                message,
            })
        })
        .transpose()?;
    let previous = config
        .jwt_previous_secrets
        .iter()
        .enumerate()
        .map(|(i, text)| {
            parse_jwt_secret(text.expose()).map_err(|message| InitError::Setting {
                setting: "ALLOT_JWT_PREVIOUS_SECRETS",
                message: format!("key {} of the list: {message}", i + 1),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(JwtSecrets { current, previous })
}

/// The token keys: the configured secret, or the installation's own, generated on first start and
/// kept in the database so that every instance on one database signs alike.
pub(crate) fn token_keys(
    conn: &mut DbConnection,
    secrets: &JwtSecrets,
) -> Result<jwt::Keys, InitError> {
    let previous: Vec<&[u8]> = secrets.previous.iter().map(|s| s.0.as_slice()).collect();
    if let Some(secret) = &secrets.current {
        return Ok(jwt::Keys::rotating(&secret.0, &previous));
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let stored = settings::get_or_insert_with(conn, JWT_SECRET_SETTING, || {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        engine.encode(bytes)
    })?;
    let secret = engine.decode(stored).map_err(|e| InitError::Setting {
        setting: "ALLOT_JWT_SECRET",
        message: format!("the key stored in the database is not base64 ({e}); set one explicitly"),
    })?;
    Ok(jwt::Keys::rotating(&secret, &previous))
}

/// The sealer of stored secrets: `ALLOT_SECRET_KEY`, or with SQLite the key kept beside the
/// database (made on first start). PostgreSQL without the setting is refused: its instances may
/// run on several machines, none of which could make the key for the others, and a key kept in
/// the database would sit beside what it seals.
pub(crate) fn sealer(config: &Config) -> Result<Sealer, InitError> {
    const SETTING: &str = "ALLOT_SECRET_KEY";
    if let Some(text) = &config.secret_key {
        let key =
            secret::SecretKey::parse(text.expose()).map_err(|message| InitError::Setting {
                setting: SETTING,
                message,
            })?;
        return Ok(Sealer::new(key.bytes()));
    }
    match Backend::of_url(&config.database_url) {
        Backend::Postgres => Err(InitError::Setting {
            setting: SETTING,
            message: "must be set with PostgreSQL: every instance must seal stored secrets with the \
                      same key. Make one with `openssl rand -base64 32` and give it to every instance"
                .to_owned(),
        }),
        Backend::Sqlite => {
            let path = secret::key_file(&config.database_url);
            let key = secret::load_or_create(&path).map_err(|message| InitError::Setting {
                setting: SETTING,
                message,
            })?;
            Ok(Sealer::new(key.bytes()))
        }
    }
}
