//! Storage: one diesel connection type over SQLite and PostgreSQL, its pool, its migrations, and
//! the two helpers every query goes through.
//!
//! - [`run`] moves a closure onto actix's blocking pool with a pooled connection, so no diesel call
//!   ever runs on the async executor's threads.
//! - [`write_tx`] is the only way to write. On SQLite it begins with `BEGIN IMMEDIATE`, taking the
//!   database's write lock before the first read, so concurrent writers queue on `busy_timeout`
//!   instead of failing with `SQLITE_BUSY` when a read lock cannot be upgraded. On PostgreSQL it
//!   begins an ordinary transaction; code that needs row locks takes them inside it.
//!   Checks and the writes they allow always share one such transaction: checking in one and
//!   writing in another is how quotas get oversold.
//!
//! The pool does not use `MultiConnection::establish`, which tries each backend in turn and
//! throws the errors away: [`Manager`] picks the backend from the URL's scheme, so a wrong
//! PostgreSQL password surfaces as libpq's own message.

pub(crate) mod accounts;
pub(crate) mod aliases;
pub(crate) mod allocations;
pub(crate) mod api_keys;
pub(crate) mod audit;
pub mod check;
pub mod domains;
pub(crate) mod groups;
pub(crate) mod history;
pub(crate) mod idempotency;
pub(crate) mod identity;
pub(crate) mod login_attempts;
pub(crate) mod mailboxes;
pub(crate) mod modules;
pub(crate) mod node_settings;
pub mod nodes;
pub(crate) mod outbox;
pub(crate) mod oversell;
pub(crate) mod plans;
pub(crate) mod quota_crossings;
pub mod schema;
pub(crate) mod settings;
pub(crate) mod usage;
pub mod verify;
pub(crate) mod webhooks;

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// Executes `query` (an `INSERT … ON CONFLICT DO NOTHING`) on the backend `conn` is: the
/// two-backend connection has no ON CONFLICT; each backend's own connection has. Answers the rows
/// inserted.
macro_rules! execute_ignoring_conflict {
    ($conn:expr, $query:expr) => {{
        let query = $query;
        match $conn {
            $crate::store::DbConnection::Postgres(pg) => query.execute(pg),
            $crate::store::DbConnection::Sqlite(sqlite) => query.execute(sqlite),
        }
    }};
}
pub(crate) use execute_ignoring_conflict;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// How long an SQLite writer waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// The backend type of [`DbConnection`], for boxed queries.
pub(crate) type DbBackend = <DbConnection as Connection>::Backend;
pub type Pool = diesel::r2d2::Pool<Manager>;

/// Which backend a `DATABASE_URL` names: `postgres://` and `postgresql://` are PostgreSQL, anything
/// else is the path of an SQLite file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn of_url(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }
}

/// Opens connections for the pool, choosing the backend from the URL.
#[derive(Debug, Clone)]
pub struct Manager {
    url: String,
    backend: Backend,
}

impl Manager {
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        Self {
            backend: Backend::of_url(&url),
            url,
        }
    }
}

/// Why a connection could not be opened, with the backend's own words.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Connection(#[from] diesel::ConnectionError),
    #[error("cannot configure the SQLite connection: {0}")]
    Setup(#[from] diesel::result::Error),
}

impl diesel::r2d2::ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = ConnectError;

    fn connect(&self) -> Result<DbConnection, ConnectError> {
        match self.backend {
            Backend::Postgres => {
                // OpenSSL (which the bundled libpq links) is initialised here first, without the
                // cleanup it would otherwise register with `atexit`: a process that exits while a
                // pool thread or a test's connection is inside libpq (a one-shot command, a test
                // binary finishing) then cannot race that cleanup into SIGSEGV. The operating
                // system frees the memory anyway. Idempotent (a `Once`).
                openssl_sys::init();
                Ok(DbConnection::Postgres(PgConnection::establish(&self.url)?))
            }
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.url)?;
                // Per-connection settings. WAL lets readers run beside the one writer;
                // synchronous=FULL makes an acknowledged write survive power loss; without
                // foreign_keys=ON SQLite enforces no foreign key at all.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};
                     PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = FULL;
                     PRAGMA foreign_keys = ON;"
                ))?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), ConnectError> {
        conn.batch_execute("SELECT 1").map_err(ConnectError::Setup)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        // A connection given back inside a transaction (a panic mid-closure) must not be reused.
        !matches!(
            <DbConnection as Connection>::TransactionManager::transaction_manager_status_mut(conn)
                .transaction_depth(),
            Ok(None)
        )
    }
}

/// Builds the pool after opening one connection by hand, so that a bad URL fails at once with the
/// backend's message instead of after the pool's retries.
pub fn connect(url: &str, size: u32) -> Result<Pool, ConnectError> {
    let manager = Manager::new(url);
    let first = diesel::r2d2::ManageConnection::connect(&manager)?;
    drop(first);
    Ok(diesel::r2d2::Pool::builder()
        .max_size(size)
        // Connections are opened on demand only. r2d2 would otherwise keep `min_idle` of them open
        // by connecting in its background threads, both up front and whenever one is taken: work
        // a one-shot command does not need, still running when it exits. (Such a thread inside
        // libpq once raced OpenSSL's teardown at exit into SIGSEGV, 3 times in 60 starts; the
        // teardown is now off, see `Manager::connect`.)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(5))
        .build_unchecked(manager))
}

/// Applies every embedded migration of the connection's backend that is not applied yet, then the
/// data steps SQL cannot do alike on both backends: the address identity keys of rows that have
/// none ([`identity::fill_missing_keys`]).
pub(crate) fn migrate(
    conn: &mut DbConnection,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let applied = match conn {
        DbConnection::Postgres(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS)?.len(),
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS)?.len(),
    };
    let (keyed, collided) = identity::fill_missing_keys(conn)?;
    if keyed > 0 {
        tracing::info!(keyed, collided, "address identity keys filled");
    }
    Ok(applied)
}

/// The error of a pooled, blocking database call: the pool had no connection, or the blocking
/// pool was shut down. Converted into the caller's own error type.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error("no database connection available: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("the blocking thread pool is gone")]
    Blocking,
}

/// Runs `f` with a pooled connection on actix's blocking thread pool.
pub(crate) async fn run<T, E, F>(pool: &Pool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<RunError> + Send + 'static,
{
    let pool = pool.clone();
    actix_web::web::block(move || {
        let mut conn = pool.get().map_err(RunError::Pool)?;
        f(&mut conn)
    })
    .await
    .map_err(|_| RunError::Blocking)?
}

/// Runs `f` in a write transaction: committed when it returns `Ok`, rolled back otherwise.
/// See the module comment for why SQLite begins `IMMEDIATE`.
pub fn write_tx<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        DbConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
        DbConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    match f(conn) {
        Ok(value) => {
            <DbConnection as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(err) => {
            <DbConnection as Connection>::TransactionManager::rollback_transaction(conn)?;
            Err(err)
        }
    }
}

/// The text of `ids`, in chunks that one `IN (…)` takes on both backends: what queries about a
/// batch of nodes filter on.
pub(crate) fn id_chunks(ids: &[crate::domain::ids::NodeId]) -> Vec<Vec<String>> {
    ids.chunks(500)
        .map(|chunk| chunk.iter().map(ToString::to_string).collect())
        .collect()
}

/// Whether the database answers, for `/readyz`.
pub(crate) fn ping(conn: &mut DbConnection) -> QueryResult<()> {
    conn.batch_execute("SELECT 1")
}

/// The current time as stored: UTC, microsecond precision (what both backends keep).
pub(crate) fn now() -> chrono::NaiveDateTime {
    use chrono::{SubsecRound, Utc};
    Utc::now().naive_utc().trunc_subsecs(6)
}

/// A stored value that does not parse: the database was written by something other than allot.
fn corrupt(err: impl std::error::Error + Send + Sync + 'static) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(Box::new(err))
}
