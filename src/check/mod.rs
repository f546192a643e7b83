//! The check: what mail workers ask before accepting a domain or a mailbox.
//!
//! Answers come from memory. [`index::Index`] holds every domain, mailbox, alias, node and
//! credential a check needs; it is built at start and kept in step with the database through the
//! change feed that triggers in the database fill on every committed write, whichever process
//! made it (see the migration `*_check`). [`Checker::catch_up`] replays the feed: the HTTP layer
//! calls it after every write it serves, before the response leaves, and a background thread
//! calls it every [`POLL_EVERY`], which is how writes made by another allot process (or the
//! command line) reach this one at its next poll.
//!
//! Sequence numbers are taken before commit, so on PostgreSQL two transactions can commit out of
//! order: a reader that has seen number 12 may not have seen 11 yet. The feed therefore remembers
//! every number it skipped as a gap and looks for it again until it appears or [`GAP_PATIENCE`]
//! passes (a rolled-back transaction leaves a gap forever). SQLite has one writer at a time and
//! leaves no gaps.
//!
//! Only an enrolment (a first sighting of an address) writes to the database on the hot path; the
//! time a mailbox was last seen is kept in memory and written in batches every
//! [`FLUSH_EVERY`].

pub(crate) mod index;
pub(crate) mod metrics;
pub mod postfix;
pub(crate) mod reply;
pub mod socketmap;
pub(crate) mod verdict;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};

use crate::auth::api_key;
use crate::domain::address::MailAddress;
use crate::domain::ids::{AccountId, ApiKeyId, MailboxId, NodeId};
use crate::error::ApiError;
use crate::service::{self, Ctx};
use crate::store::audit::Actor;
use crate::store::{self, DbConnection, Pool, write_tx};
use index::{Decision, Enrolment, Index, Rows, Touched};
pub(crate) use metrics::{Listener, Metrics};
pub use reply::LicenceRefusals;
pub(crate) use verdict::{Answer, Direction, Outcome, Question, Reason, Scope, Target, Verdict};

/// How often the background thread replays the change feed.
pub(crate) const POLL_EVERY: Duration = Duration::from_millis(200);
/// How often last-seen times are written.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// How long a skipped sequence number is looked for before it is taken for a rolled-back write.
pub(crate) const GAP_PATIENCE: Duration = Duration::from_secs(60);
/// Changes older than this are pruned from the feed.
const KEEP_CHANGES: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// A process that could not replay the feed for this long may have missed pruned changes, and
/// rebuilds its index instead.
const REBUILD_AFTER: Duration = Duration::from_secs(30 * 60);
/// How many changes are read at once.
const FEED_PAGE: i64 = 10_000;
/// How many mailboxes (or aliases) are held at once while the index is built.
const BUILD_BATCH: usize = 50_000;
/// At most this many last-seen marks wait for the database; past it the oldest are dropped (the
/// times are informational, and memory must stay bounded while the database is away).
const MAX_PENDING_SEEN: usize = 1_000_000;
/// An API key's last use is recorded at most this often, as for every other route.
const TOUCH_KEYS_EVERY: i64 = 60;

/// The operator's choices for how checks answer (see the README's configuration table).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether a domain whose ownership is not proven is refused (`domain_unverified`).
    pub require_verification: bool,
    /// How refusals the customer can fix by buying or paying are answered.
    pub licence: LicenceRefusals,
    /// Where mail to every domain's abuse@ goes (the `alias` socketmap), if anywhere.
    pub abuse_recipient: Option<String>,
    /// The characters that start an address extension (Postfix's `recipient_delimiter`): an
    /// unknown `jane+news@` is looked up as `jane@`. Empty: none.
    pub recipient_delimiters: String,
    /// The day a check is judged on and the time a mailbox is seen at.
    pub clock: crate::clock::Clock,
}

/// One of the lookup tables the socketmap serves besides the check itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Whether allot holds the domain (in any state).
    Domain(crate::domain::address::DomainName),
    /// The next hop of the domain (or of the address's domain: Postfix asks a socketmap
    /// `transport_maps` the whole recipient address).
    Transport(crate::domain::address::DomainName),
    /// Where mail to the address goes instead.
    Alias(MailAddress),
}

/// A table's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    Value(String),
    Nothing,
    /// The index is not built yet.
    Unavailable,
}

/// Something that answers checks: the real [`Checker`] or, in the listeners' own tests, a fake.
/// The Postfix listeners are written against this, so their protocol handling is tested apart from
/// the database.
pub(crate) trait Ask: Send + Sync + 'static {
    /// Answers one question for a caller who may ask about the whole tree, counted as `via`'s,
    /// on a connection from `origin` (whom an enrolment it causes is audited with).
    fn ask(
        &self,
        question: Question,
        via: Listener,
        origin: &Origin,
    ) -> impl std::future::Future<Output = Answer> + Send;

    /// Looks a key up in one of the other tables, from memory.
    fn look_up(&self, lookup: &Lookup) -> Found;

    /// The counters of the listeners' connections.
    fn metrics(&self) -> &Metrics;
}

/// A Postfix listener's connection: its request id (which its lookups log under) and the peer's
/// address, recorded with the audit record of an enrolment it causes, as an API request's are.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub request_id: String,
    pub peer: std::net::IpAddr,
}

/// Who asks, as the check resolved the credential from memory: whom an enrolment is audited as,
/// and whose subtree the answers are limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub actor: Actor,
    pub node: NodeId,
    /// The budget its requests count against.
    pub policy: crate::auth::rate_limit::Policy,
}

#[derive(Debug)]
struct Feed {
    /// Whether the index was ever built; until then it is empty and every check defers.
    built: bool,
    /// The highest sequence number applied.
    high: i64,
    /// Skipped numbers, with when they were first missed.
    gaps: BTreeMap<i64, Instant>,
    /// When the feed was last replayed successfully.
    synced: Instant,
}

impl Feed {
    fn unbuilt() -> Self {
        Self {
            built: false,
            high: 0,
            gaps: BTreeMap::new(),
            synced: Instant::now(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error(transparent)]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// The index, the feed that keeps it current, and what waits to be written.
pub(crate) struct Checker {
    /// Whether the index holds the database's state (it was built at least once).
    ready: AtomicBool,
    index: RwLock<Index>,
    feed: Mutex<Feed>,
    pool: Pool,
    seen: Mutex<Vec<(MailboxId, i64)>>,
    used_keys: Mutex<Vec<(ApiKeyId, i64)>>,
    settings: Settings,
    metrics: Metrics,
}

/// Every row the index holds.
/// Every row the index holds, as a new index. Mailboxes and aliases, the bulk, are streamed and
/// indexed a batch at a time.
fn load_all(conn: &mut DbConnection) -> diesel::QueryResult<Index> {
    use store::check;
    let mut index = Index::build(Rows {
        nodes: check::nodes(conn, None)?,
        grants: check::grants(conn, None)?,
        usage: check::usage(conn, None)?,
        domains: check::domains(conn, None)?,
        mailboxes: Vec::new(),
        aliases: Vec::new(),
        keys: check::api_keys(conn, None)?,
        accounts: check::accounts(conn, None)?,
        modules: Some(check::modules(conn)?),
        mailbox_modules: Vec::new(),
        node_modules: check::node_modules(conn, None)?,
    });
    // The modules mailboxes hold first, by mailbox id, as bits (4 bytes a mailbox, freed once
    // the mailboxes have taken them), then the mailboxes.
    let mut bits = index::FastMap::default();
    let codes: Vec<Box<str>> = index.modules.keys().cloned().collect();
    for code in codes {
        check::each_holder(conn, &code, BUILD_BATCH, |ids| {
            index.collect_modules(ids.into_iter().map(|id| (id, &*code)), &mut bits);
        })?;
    }
    check::each_mailbox(conn, BUILD_BATCH, |rows| {
        index.add_mailboxes(rows, &mut bits)
    })?;
    drop(bits);
    check::each_alias(conn, BUILD_BATCH, |rows| index.add_aliases(rows))?;
    Ok(index)
}

/// The rows `touched` names, as they are now.
fn load_touched(conn: &mut DbConnection, touched: &Touched) -> diesel::QueryResult<Rows> {
    use store::check;
    let nodes: Vec<String> = touched.nodes.iter().cloned().collect();
    let ids = |map: &std::collections::HashMap<String, Vec<String>>| -> Vec<String> {
        map.keys().cloned().collect()
    };
    let keys: Vec<String> = touched.keys.iter().cloned().collect();
    let accounts: Vec<String> = touched.accounts.iter().cloned().collect();
    Ok(Rows {
        nodes: check::nodes(conn, Some(&nodes))?,
        grants: check::grants(conn, Some(&nodes))?,
        usage: check::usage(conn, Some(&nodes))?,
        domains: check::domains_named(conn, &touched.domain_names())?,
        mailboxes: check::mailboxes(conn, &ids(&touched.mailboxes))?,
        mailbox_modules: check::mailbox_modules(conn, &ids(&touched.mailboxes))?,
        node_modules: check::node_modules(conn, Some(&nodes))?,
        aliases: check::aliases(conn, &ids(&touched.aliases))?,
        keys: check::api_keys(conn, Some(&keys))?,
        accounts: check::accounts(conn, Some(&accounts))?,
        modules: if touched.modules {
            Some(check::modules(conn)?)
        } else {
            None
        },
    })
}

fn at_unix(seconds: i64) -> chrono::NaiveDateTime {
    DateTime::from_timestamp(seconds, 0)
        .unwrap_or_default()
        .naive_utc()
}

impl Checker {
    /// Builds the index from the database and starts keeping it current. Blocking: call before
    /// serving. When the database cannot be read now, the checker starts empty and unready: every
    /// check defers until the background thread has built the index.
    pub fn start(pool: Pool, settings: Settings, metrics: Metrics) -> Arc<Self> {
        let started = Instant::now();
        let built = pool
            .get()
            .map_err(SyncError::from)
            .and_then(|mut conn| Self::build(&mut conn));
        let (index, feed) = match built {
            Ok((index, feed)) => {
                tracing::info!(
                    domains = index.domains.len(),
                    mailboxes = index.mailboxes.len(),
                    aliases = index.aliases.len(),
                    nodes = index.nodes.len(),
                    millis = started.elapsed().as_millis() as u64,
                    "check index built"
                );
                (index, feed)
            }
            Err(err) => {
                tracing::warn!(error = %err, "the check index cannot be built yet; checks defer until it is");
                (Index::default(), Feed::unbuilt())
            }
        };
        let checker = Arc::new(Self {
            ready: AtomicBool::new(feed.built),
            index: RwLock::new(index),
            feed: Mutex::new(feed),
            pool,
            seen: Mutex::default(),
            used_keys: Mutex::default(),
            settings,
            metrics,
        });
        checker.measure();
        checker.spawn_background();
        checker
    }

    /// The whole index, and the feed position it stands at. The position is read first: a change
    /// committed while the rows are read is replayed afterwards (replaying is idempotent), and a
    /// number below it that is not there yet may belong to a transaction still running, so the
    /// recent missing numbers start out as gaps.
    fn build(conn: &mut DbConnection) -> Result<(Index, Feed), SyncError> {
        let high = store::check::last_seq(conn)?;
        let present: std::collections::HashSet<i64> =
            store::check::changes_in(conn, (high - 1000).max(1), Some(high), 2000)?
                .into_iter()
                .map(|c| c.seq)
                .collect();
        let now = Instant::now();
        let gaps = ((high - 1000).max(1)..=high)
            .filter(|seq| !present.contains(seq))
            .map(|seq| (seq, now))
            .collect();
        let index = load_all(conn)?;
        Ok((
            index,
            Feed {
                built: true,
                high,
                gaps,
                synced: now,
            },
        ))
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies every change committed since the last call. Blocking.
    pub fn catch_up(&self) -> Result<(), SyncError> {
        let mut feed = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
        let mut conn = self.pool.get()?;
        if !feed.built || feed.synced.elapsed() > REBUILD_AFTER {
            let (index, fresh) = Self::build(&mut conn)?;
            *self.index.write().unwrap_or_else(PoisonError::into_inner) = index;
            if feed.built {
                tracing::warn!("the check index was rebuilt after a long time out of step");
            } else {
                tracing::info!("the check index is built");
            }
            *feed = fresh;
            self.ready.store(true, Ordering::Release);
            return Ok(());
        }
        let mut touched = Touched::default();
        let now = Instant::now();
        if !feed.gaps.is_empty() {
            let gaps: Vec<i64> = feed.gaps.keys().copied().collect();
            for change in store::check::changes_at(&mut conn, &gaps)? {
                feed.gaps.remove(&change.seq);
                touched.add(&change.kind, change.id, change.key);
            }
        }
        loop {
            let page = store::check::changes_in(&mut conn, feed.high + 1, None, FEED_PAGE)?;
            let full = page.len() as i64 == FEED_PAGE;
            for change in page {
                for missing in feed.high + 1..change.seq {
                    feed.gaps.insert(missing, now);
                }
                feed.high = change.seq;
                touched.add(&change.kind, change.id, change.key);
            }
            if !full {
                break;
            }
        }
        feed.gaps
            .retain(|_, missed| missed.elapsed() < GAP_PATIENCE);
        if !touched.is_empty() {
            let rows = load_touched(&mut conn, &touched)?;
            self.index
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .apply(&touched, rows);
        }
        feed.synced = now;
        drop(feed);
        // The sizes as of this write, before its response leaves (the feed's own gauges are the
        // background thread's, which holds no lock on it then).
        self.measure();
        Ok(())
    }

    /// Replays the feed, flushes last-seen times and prunes the feed in the background until the
    /// checker is dropped.
    fn spawn_background(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("allot-check-sync".to_owned())
            .spawn(move || {
                let mut last_flush = Instant::now();
                let mut last_prune = Instant::now();
                let mut failing = false;
                loop {
                    std::thread::sleep(POLL_EVERY);
                    let Some(checker) = weak.upgrade() else {
                        return;
                    };
                    let caught_up = checker.catch_up();
                    checker.measure();
                    match caught_up {
                        Ok(()) if failing => {
                            tracing::info!("the check index is in step with the database again");
                            failing = false;
                        }
                        Ok(()) => {}
                        Err(err) if !failing => {
                            tracing::warn!(error = %err, "the check index cannot read the change feed");
                            failing = true;
                        }
                        Err(_) => {}
                    }
                    if last_flush.elapsed() >= FLUSH_EVERY {
                        checker.flush();
                        last_flush = Instant::now();
                    }
                    if last_prune.elapsed() >= Duration::from_secs(600) {
                        checker.prune();
                        last_prune = Instant::now();
                    }
                }
            });
        if let Err(err) = spawned {
            tracing::error!(error = %err, "cannot start the check index's background thread");
        }
    }

    /// Writes the last-seen times and key uses gathered since the last flush. On failure they are
    /// kept for the next one.
    pub fn flush(&self) {
        let seen = std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner));
        let keys = std::mem::take(
            &mut *self
                .used_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if seen.is_empty() && keys.is_empty() {
            return;
        }
        let mut latest: BTreeMap<MailboxId, i64> = BTreeMap::new();
        for (id, at) in &seen {
            let entry = latest.entry(*id).or_default();
            *entry = (*entry).max(*at);
        }
        let mut by_time: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for (id, at) in latest {
            by_time.entry(at).or_default().push(id.to_string());
        }
        let written = self
            .pool
            .get()
            .map_err(SyncError::from)
            .and_then(|mut conn| {
                write_tx(&mut conn, |conn| {
                    for (at, ids) in &by_time {
                        store::check::mark_seen(conn, at_unix(*at), ids)?;
                    }
                    for (key, at) in &keys {
                        store::api_keys::touch(conn, *key, at_unix(*at))?;
                    }
                    Ok::<_, SyncError>(())
                })
            });
        if let Err(err) = written {
            tracing::warn!(error = %err, "last-seen times not written; kept for the next try");
            let mut pending = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            pending.extend(seen);
            let excess = pending.len().saturating_sub(MAX_PENDING_SEEN);
            pending.drain(..excess);
            self.used_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(keys);
        }
    }

    fn prune(&self) {
        let before = store::now() - KEEP_CHANGES;
        let pruned = self
            .pool
            .get()
            .map_err(SyncError::from)
            .and_then(|mut conn| Ok(store::check::prune(&mut conn, before)?));
        if let Err(err) = pruned {
            tracing::warn!(error = %err, "the change feed was not pruned");
        }
    }

    /// Whether the index has been built (so that its answers stand for the database).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Whether `code` is a module of the catalogue (retired ones included: their seats count).
    pub fn knows_module(&self, code: &str) -> bool {
        self.read_index().modules.contains_key(code)
    }

    /// The caller an API key stands for, if it is valid now.
    pub fn caller_by_key(&self, token: &str) -> Option<Caller> {
        let (id, secret) = api_key::parse(token)?;
        let index = self.read_index();
        let key = index.keys.get(&id)?;
        let now = Utc::now();
        let usable = api_key::digest_matches(secret, &key.digest)
            && !key.revoked
            && key.expires_at.is_none_or(|at| at.and_utc() > now)
            && index.nodes.get(&key.node).is_some_and(|n| !n.deleted);
        if !usable {
            return None;
        }
        let seconds = now.timestamp();
        if seconds - key.touched.load(Ordering::Relaxed) >= TOUCH_KEYS_EVERY {
            key.touched.store(seconds, Ordering::Relaxed);
            self.used_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((id, seconds));
        }
        Some(Caller {
            actor: Actor::ApiKey(id),
            node: key.node,
            policy: key.policy,
        })
    }

    /// The caller an account stands for, if enabled, at credential `version`, and its node live.
    pub fn caller_by_account(&self, id: AccountId, version: i64) -> Option<Caller> {
        let index = self.read_index();
        let account = index
            .accounts
            .get(&id)
            .filter(|a| !a.disabled && a.credential_version == version)?;
        index
            .nodes
            .get(&account.node)
            .filter(|n| !n.deleted)
            .map(|_| Caller {
                actor: Actor::Account(id),
                node: account.node,
                policy: account.policy,
            })
    }

    /// Answers `question` for a caller limited to `scope`, asking through `via`. Only an
    /// enrolment leaves memory, and only it is audited: as `actor`, with the request id and the
    /// client address `origin` gives.
    pub async fn check(
        self: &Arc<Self>,
        scope: Scope,
        question: Question,
        via: Listener,
        actor: &Actor,
        origin: impl FnOnce() -> (Option<String>, Option<std::net::IpAddr>),
    ) -> Answer {
        let today = self.settings.clock.today();
        let direction = question.direction;
        let outcome = match self.decide(scope, &question, today) {
            Decision::Done(outcome) => outcome,
            Decision::Enrol(enrolment) => {
                let this = Arc::clone(self);
                let (actor, (request_id, client_address)) = (actor.clone(), origin());
                tokio::task::spawn_blocking(move || {
                    let ctx = Ctx {
                        actor: &actor,
                        request_id: request_id.as_deref(),
                        client_address,
                        today,
                    };
                    this.enrol(&enrolment, &ctx)
                })
                .await
                .unwrap_or_else(|err| {
                    tracing::error!(error = %err, "an enrolment did not finish");
                    Outcome::bare(Reason::Unavailable)
                })
            }
        };
        self.metrics.count(via, direction, outcome.reason);
        if outcome.enrolled {
            self.metrics.enrolments.inc();
        }
        Answer::new(outcome, direction, self.settings.licence)
    }

    /// Looks `lookup` up in the index.
    pub fn look_up(&self, lookup: &Lookup) -> Found {
        if !self.is_ready() {
            return Found::Unavailable;
        }
        let index = self.read_index();
        let value = match lookup {
            Lookup::Domain(domain) => index
                .holds_domain(domain.as_str())
                .then(|| domain.as_str().to_owned()),
            Lookup::Transport(domain) => index.transport(domain.as_str()).map(str::to_owned),
            Lookup::Alias(address) => {
                index.alias_target(address, self.settings.abuse_recipient.as_deref())
            }
        };
        value.map_or(Found::Nothing, Found::Value)
    }

    /// Brings the index's gauges up to date.
    fn measure(&self) {
        let index = self.read_index();
        self.metrics.mailboxes.set(index.mailboxes.len() as i64);
        self.metrics.domains.set(index.domains.len() as i64);
        drop(index);
        if let Ok(feed) = self.feed.try_lock() {
            self.metrics
                .feed_age
                .set(i64::try_from(feed.synced.elapsed().as_secs()).unwrap_or(i64::MAX));
            self.metrics.feed_gaps.set(feed.gaps.len() as i64);
        }
    }

    /// The in-memory part of a check.
    pub fn decide(&self, scope: Scope, question: &Question, today: NaiveDate) -> Decision {
        if !self.ready.load(Ordering::Acquire) {
            return Decision::Done(Outcome::bare(Reason::Unavailable));
        }
        let now = self.settings.clock.now().timestamp();
        let index = self.read_index();
        index.decide(
            scope,
            question,
            today,
            u32::try_from(now).unwrap_or(u32::MAX),
            &self.settings,
            |id| {
                self.seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((id, now));
            },
        )
    }

    /// Registers `address` as a mailbox of customer `node` through the one mailbox creation
    /// ([`service::mailboxes::enrol`], which decides again inside the write transaction from what
    /// the database says: the index may be a moment behind), then brings the index up to date so
    /// the next check finds it. Anything the database cannot answer defers.
    fn enrol(&self, enrolment: &Enrolment, ctx: &Ctx<'_>) -> Outcome {
        let result = match self.pool.get() {
            Ok(mut conn) => write_tx(&mut conn, |conn| {
                service::mailboxes::enrol(conn, ctx, enrolment, self.settings.require_verification)
            })
            .map_err(|err: ApiError| crate::error::error_chain(&err)),
            Err(err) => Err(err.to_string()),
        };
        match result {
            Ok(answer) => {
                if let Err(err) = self.catch_up() {
                    tracing::warn!(error = %err, "the check index missed an enrolment for now");
                }
                answer
            }
            Err(err) => {
                tracing::warn!(error = %err, "an enrolment could not be decided; deferring");
                Outcome::bare(Reason::Unavailable)
            }
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Accepts connections on `listener` forever, each served by `serve` on its own task; `what`
/// names the listener in logs. The Postfix listeners' common part.
async fn accept_forever<F, Fut>(
    listener: tokio::net::TcpListener,
    what: &'static str,
    connections: metrics::Connections,
    peers: Arc<crate::edge::PeerLimit>,
    serve: F,
) where
    F: Fn(tokio::net::TcpStream, Origin) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    use tracing::Instrument;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // A peer over its bound is closed at once (`stream` dropped), as on the HTTP port.
                let Some(slot) = peers.admit(peer.ip()) else {
                    tracing::debug!(listener = what, %peer, "connection refused: too many from this address");
                    continue;
                };
                // Each connection has a request id of its own, which its lookups log under.
                let request_id = uuid::Uuid::now_v7().to_string();
                let span = tracing::debug_span!("connection", listener = what, %peer, request_id);
                let served = serve(
                    stream,
                    Origin {
                        request_id,
                        peer: peer.ip(),
                    },
                );
                connections.accepted.inc();
                let open = connections.open.clone();
                open.inc();
                tokio::spawn(
                    async move {
                        if let Err(err) = served.await {
                            tracing::debug!(error = %err, "connection ended");
                        }
                        open.dec();
                        drop(slot);
                    }
                    .instrument(span),
                );
            }
            Err(err) => {
                // Out of file descriptors, mostly: wait for some to free rather than spin.
                tracing::warn!(error = %err, listener = what, "could not accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Ask for Arc<Checker> {
    fn ask(
        &self,
        question: Question,
        via: Listener,
        origin: &Origin,
    ) -> impl std::future::Future<Output = Answer> + Send {
        self.check(Scope::Everything, question, via, &Actor::System, || {
            (Some(origin.request_id.clone()), Some(origin.peer))
        })
    }

    fn look_up(&self, lookup: &Lookup) -> Found {
        Checker::look_up(self, lookup)
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The listeners' tests ask this instead of the database.
#[cfg(test)]
mod fake {
    use std::sync::Mutex;

    use super::{
        Answer, Ask, Found, LicenceRefusals, Listener, Lookup, Metrics, Origin, Outcome, Question,
        Reason, Target,
    };

    /// Knows `example.com` (routed to `mx.example.net`) and `known@example.com`, has
    /// `off@example.com` disabled, no seat for `full@example.com`, cannot decide about
    /// `slow@example.com`, sends `postmaster@example.com` to `boss@example.net`, knows nothing
    /// else; and remembers what it was asked.
    pub struct Fake {
        pub asked: Mutex<Vec<Question>>,
        metrics: Metrics,
    }

    impl Default for Fake {
        fn default() -> Self {
            Self {
                asked: Mutex::default(),
                metrics: Metrics::unregistered(),
            }
        }
    }

    impl Ask for Fake {
        async fn ask(&self, question: Question, _: Listener, _: &Origin) -> Answer {
            let reason = match &question.target {
                Target::Domain(domain) if domain.as_str() == "example.com" => Reason::Ok,
                Target::Domain(_) => Reason::UnknownDomain,
                Target::Address(address) => match address.stored().as_str() {
                    "known@example.com" => Reason::Ok,
                    "slow@example.com" => Reason::Unavailable,
                    "off@example.com" => Reason::MailboxDisabled,
                    "full@example.com" => Reason::UsersExhausted,
                    _ => Reason::UnknownMailbox,
                },
            };
            let direction = question.direction;
            self.asked.lock().unwrap().push(question);
            Answer::new(Outcome::bare(reason), direction, LicenceRefusals::Temporary)
        }

        fn look_up(&self, lookup: &Lookup) -> Found {
            match lookup {
                Lookup::Domain(domain) if domain.as_str() == "example.com" => {
                    Found::Value("example.com".to_owned())
                }
                Lookup::Transport(domain) if domain.as_str() == "example.com" => {
                    Found::Value("smtp:[mx.example.net]:25".to_owned())
                }
                Lookup::Alias(address) if address.stored() == "postmaster@example.com" => {
                    Found::Value("boss@example.net".to_owned())
                }
                _ => Found::Nothing,
            }
        }

        fn metrics(&self) -> &Metrics {
            &self.metrics
        }
    }
}
