//! Building and running the application. [`prepare`] opens the database (migrating it and, on an
//! empty one, creating the owner and its admin); [`Application::build`] binds and assembles the
//! actix app. The binary and the integration tests go through the same two functions, so the
//! tests exercise exactly what runs in production.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{DefaultHeaders, ErrorHandlers, from_fn};
use actix_web::{App, HttpServer, web};
use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::api;
use crate::auth::jwt;
use crate::config::Config;
use crate::error::{self, ApiError, FieldError};
use crate::init::{self, Initialised};
use crate::secret::Sealer;
use crate::store::{self, Pool};
use crate::telemetry;

pub(crate) const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// What every handler can reach.
pub(crate) struct AppState {
    pub pool: Pool,
    pub keys: jwt::Keys,
    /// Seals and opens the secrets stored in the database (`ALLOT_SECRET_KEY`).
    pub sealer: Sealer,
    pub config: Config,
    pub throttle: crate::auth::throttle::Throttle,
    /// Where passwords are hashed and verified: a few threads of their own.
    pub hasher: crate::auth::password::Hasher,
    pub dns: crate::dns::Verifier,
    /// How many route tests may run (per domain, and in this process).
    pub route_tests: crate::probe::gate::Gate,
    /// Where mail may go and the roots its TLS trusts (read once, at start-up).
    pub mail: crate::mail::Settings,
    /// How many test messages may be sent (per node, and in this process).
    pub mail_tests: crate::probe::gate::Gate<crate::domain::ids::NodeId>,
    /// The in-memory index the check answers from.
    pub checker: std::sync::Arc<crate::check::Checker>,
    /// Every principal's request budget, in this instance.
    pub rate_limits: std::sync::Arc<crate::auth::rate_limit::RateLimits>,
    /// Wakes this instance's outbox worker (after a write that may have queued a message).
    pub outbox: crate::outbox::Waker,
}

/// Why start-up stopped. Printed as one line naming the setting at fault; the binary exits 2.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct StartupError {
    pub setting: &'static str,
    pub message: String,
}

impl StartupError {
    fn new(setting: &'static str, message: impl ToString) -> Self {
        Self {
            setting,
            message: message.to_string(),
        }
    }
}

impl From<init::InitError> for StartupError {
    fn from(err: init::InitError) -> Self {
        match err {
            init::InitError::Setting { setting, message } => Self::new(setting, message),
            other => Self::new("DATABASE_URL", other),
        }
    }
}

/// Opens one connection and applies pending migrations: what the one-shot commands use. (A pool
/// keeps connecting in background threads, which must not race the process's exit: libpq and
/// OpenSSL tear down at exit.)
pub fn open_connection(config: &Config) -> Result<store::DbConnection, StartupError> {
    let mut conn =
        diesel::r2d2::ManageConnection::connect(&store::Manager::new(&config.database_url))
            .map_err(|e| {
                StartupError::new("DATABASE_URL", format!("cannot open the database: {e}"))
            })?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut store::DbConnection) -> Result<(), StartupError> {
    let applied = store::migrate(conn).map_err(|e| {
        StartupError::new(
            "DATABASE_URL",
            format!("migrating the database failed: {e}"),
        )
    })?;
    if applied > 0 {
        tracing::info!(applied, "migrations applied");
    }
    Ok(())
}

/// Opens the pool and applies pending migrations. Blocking: call before serving.
pub(crate) fn open_database(config: &Config) -> Result<Pool, StartupError> {
    let pool = store::connect(&config.database_url, config.pool_size)
        .map_err(|e| StartupError::new("DATABASE_URL", format!("cannot open the database: {e}")))?;
    let mut conn = pool
        .get()
        .map_err(|e| StartupError::new("DATABASE_URL", format!("cannot open the database: {e}")))?;
    migrate(&mut conn)?;
    Ok(pool)
}

/// What [`prepare`] opened and made, for [`Application::build`].
#[derive(Debug)]
pub struct Prepared {
    pub pool: Pool,
    pub keys: jwt::Keys,
    pub sealer: Sealer,
    /// What a first start created, to announce once.
    pub initialised: Option<Initialised>,
}

/// Everything blocking that serving needs first: the key that seals stored secrets (before the
/// database, so that a missing one stops start-up before anything is written), the database, the
/// first start, the token keys.
pub fn prepare(config: &Config) -> Result<Prepared, StartupError> {
    // The secrets first: a malformed one stops start-up before anything is opened.
    let jwt_secrets = init::jwt_secrets(config)?;
    let sealer = init::sealer(config)?;
    let pool = open_database(config)?;
    let mut conn = pool
        .get()
        .map_err(|e| StartupError::new("DATABASE_URL", format!("cannot open the database: {e}")))?;
    let initialised = init::init_if_empty(&mut conn, config)?;
    let keys = init::token_keys(&mut conn, &jwt_secrets)?;
    Ok(Prepared {
        pool,
        keys,
        sealer,
        initialised,
    })
}

/// The Postfix listeners that are configured, bound before serving so that a port in use stops
/// start-up with the setting's name.
struct PostfixListeners {
    policy: Option<tokio::net::TcpListener>,
    socketmap: Option<tokio::net::TcpListener>,
}

fn bind_tokio(
    setting: &'static str,
    addr: Option<std::net::SocketAddr>,
) -> Result<Option<tokio::net::TcpListener>, StartupError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|e| StartupError::new(setting, format!("cannot listen on {addr}: {e}")))?;
    Ok(Some(listener))
}

impl PostfixListeners {
    fn bind(config: &Config) -> Result<Self, StartupError> {
        Ok(Self {
            policy: bind_tokio("ALLOT_POLICY_LISTEN", config.policy_listen)?,
            socketmap: bind_tokio("ALLOT_SOCKETMAP_LISTEN", config.socketmap_listen)?,
        })
    }

    fn spawn(
        self,
        checker: &std::sync::Arc<crate::check::Checker>,
        direction: crate::check::postfix::PolicyDirection,
        max_per_peer: usize,
    ) {
        let asker = std::sync::Arc::new(std::sync::Arc::clone(checker));
        if let Some(listener) = self.policy {
            tracing::info!(addr = ?listener.local_addr().ok(), %direction, "serving Postfix policy delegation");
            tokio::spawn(crate::check::postfix::serve(
                listener,
                asker.clone(),
                direction,
                crate::edge::PeerLimit::new(max_per_peer),
            ));
        }
        if let Some(listener) = self.socketmap {
            tracing::info!(addr = ?listener.local_addr().ok(), "serving Postfix socketmap lookups");
            tokio::spawn(crate::check::socketmap::serve(
                listener,
                asker,
                crate::edge::PeerLimit::new(max_per_peer),
            ));
        }
    }
}

pub struct Application {
    port: u16,
    https: bool,
    server: Server,
    registry: prometheus::Registry,
}

/// The certificate to serve HTTPS with, if `ALLOT_TLS_CERT` and `ALLOT_TLS_KEY` are set: both or
/// neither, and both must load.
fn certificate(
    config: &Config,
) -> Result<Option<std::sync::Arc<crate::edge::tls::Certificate>>, StartupError> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => {
            return Err(StartupError::new(
                "ALLOT_TLS_KEY",
                "ALLOT_TLS_CERT is set but ALLOT_TLS_KEY is not: set both (PEM files) to serve HTTPS, or neither",
            ));
        }
        (None, Some(_)) => {
            return Err(StartupError::new(
                "ALLOT_TLS_CERT",
                "ALLOT_TLS_KEY is set but ALLOT_TLS_CERT is not: set both (PEM files) to serve HTTPS, or neither",
            ));
        }
    };
    crate::edge::tls::Certificate::open(cert, key)
        .map(Some)
        .map_err(|e| StartupError::new(e.setting, e.message))
}

impl Application {
    /// Binds `config.listen` and assembles the server. Must run inside an async runtime.
    pub fn build(
        config: Config,
        pool: Pool,
        keys: jwt::Keys,
        sealer: Sealer,
    ) -> Result<Self, StartupError> {
        // Before anything is started: a certificate that does not load stops start-up.
        let certificate = certificate(&config)?;
        let mail = config
            .mail_settings()
            .map_err(|message| StartupError::new("ALLOT_MAIL_CA_FILE", message))?;
        let listener = TcpListener::bind(config.listen).map_err(|e| {
            StartupError::new(
                "ALLOT_LISTEN",
                format!("cannot listen on {}: {e}", config.listen),
            )
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| StartupError::new("ALLOT_LISTEN", e))?
            .port();
        let metrics = PrometheusMetricsBuilder::new("allot")
            .mask_unmatched_patterns("UNMATCHED")
            .build()
            .map_err(|e| StartupError::new("metrics", e))?;
        let own_registry = metrics.registry.clone();
        let registry = web::Data::new(metrics.registry.clone());
        let document = api::openapi();
        let methods = web::Data::new(api::meta::MethodTable::from_openapi(&document));
        let openapi = web::Data::new(api::meta::OpenApiJson(api::openapi_json(&document)));
        let workers = match config.workers {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        let shutdown_timeout = config.shutdown_timeout;
        let request_timeout = config.request_timeout();
        let peers = crate::edge::PeerLimit::new(config.max_connections_per_peer as usize);
        let dns = crate::dns::Verifier::new(config.dns_resolver);
        let check_metrics =
            crate::check::Metrics::register(&metrics.registry, config.licence_refusals)
                .map_err(|e| StartupError::new("metrics", e))?;
        let checker =
            crate::check::Checker::start(pool.clone(), config.check_settings(), check_metrics);
        api::domains::spawn_sweep(pool.clone(), config.clone());
        crate::service::history::spawn_daily_close(pool.clone(), config.clock.clone());
        crate::service::retention::spawn_pruner(pool.clone(), config.audit_retention_days);
        crate::auth::throttle::spawn_sweep(pool.clone(), config.clock.clone());
        let outbox = crate::outbox::spawn(
            pool.clone(),
            sealer.clone(),
            crate::dns::Verifier::new(config.dns_resolver),
            config.outbox_settings(mail.clone()),
        );
        let throttle = crate::auth::throttle::Throttle::new(pool.clone(), config.clock.clone());
        let rate_limits = std::sync::Arc::new(crate::auth::rate_limit::RateLimits::new(
            config.rate_limit,
            config.check_rate_limit,
        ));
        crate::auth::rate_limit::RateLimits::spawn_forgetting(rate_limits.clone());
        let listeners = PostfixListeners::bind(&config)?;
        listeners.spawn(
            &checker,
            config.policy_direction,
            config.max_connections_per_peer as usize,
        );
        let state = web::Data::new(AppState {
            pool,
            keys,
            sealer,
            config,
            throttle,
            hasher: Default::default(),
            dns,
            route_tests: Default::default(),
            mail,
            mail_tests: Default::default(),
            checker,
            rate_limits,
            outbox,
        });
        let https = certificate.is_some();
        let server = HttpServer::new(move || {
            app(
                state.clone(),
                registry.clone(),
                openapi.clone(),
                methods.clone(),
                metrics.clone(),
            )
        })
        .workers(workers)
        .shutdown_timeout(shutdown_timeout)
        // actix's own timer for the first request's head, at the same deadline as the watchdog
        // (see `edge`): whichever fires first, the connection closes.
        .client_request_timeout(request_timeout)
        .on_connect(crate::edge::on_connect(peers, request_timeout));
        let server = match &certificate {
            None => server.listen(listener),
            Some(certificate) => {
                let tls = certificate
                    .server_config()
                    .map_err(|e| StartupError::new(e.setting, e.message))?;
                certificate.reload_on_sighup().map_err(|e| {
                    StartupError::new("ALLOT_TLS_CERT", format!("cannot handle SIGHUP: {e}"))
                })?;
                server.listen_rustls_0_23(listener, tls)
            }
        }
        .map_err(|e| StartupError::new("ALLOT_LISTEN", e))?
        .run();
        Ok(Self {
            port,
            https,
            server,
            registry: own_registry,
        })
    }

    /// Whether it serves HTTPS (`ALLOT_TLS_CERT`) rather than plain HTTP.
    pub fn https(&self) -> bool {
        self.https
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT (then lets in-flight requests finish) or until stopped
    /// through [`Application::handle`].
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The registry `/metrics` serves: among others `allot_http_requests_total` by route pattern,
    /// method and status, which the test suite reads to learn which statuses each route answered.
    pub fn metrics(&self) -> prometheus::Registry {
        self.registry.clone()
    }
}

/// One worker's app. The middleware order, outermost first: request id, client address and
/// logging (so every answer, even an error from an inner layer, carries the id), metrics, the
/// request deadline, then the catch-all that turns any error that is not a problem document yet
/// into one, and CORS.
fn app(
    state: web::Data<AppState>,
    registry: web::Data<prometheus::Registry>,
    openapi: web::Data<api::meta::OpenApiJson>,
    methods: web::Data<api::meta::MethodTable>,
    metrics: PrometheusMetrics,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let body_limit = state.config.body_limit;
    let cors = crate::edge::cors::middleware(&state.config.cors_origins);
    App::new()
        .into_utoipa_app()
        .app_data(state)
        .app_data(registry)
        .app_data(openapi)
        .app_data(methods)
        .app_data(web::PayloadConfig::new(body_limit))
        .app_data(web::QueryConfig::default().error_handler(|err, _| {
            ApiError::InvalidQuery(vec![FieldError::new("query", err.to_string())]).into()
        }))
        .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()))
        .configure(api::configure)
        .into_app()
        .service(SwaggerUi::new("/docs/{_:.*}").config(SwaggerConfig::from("/openapi.json")))
        .default_service(web::to(api::meta::fallback))
        .wrap(from_fn(api::check::sync_after_writes))
        .wrap(from_fn(crate::outbox::wake_after_writes))
        // Inside the catch-all, so that a refused preflight is a problem document too (the
        // catch-all keeps the CORS headers of what it converts).
        .wrap(cors)
        .wrap(ErrorHandlers::new().default_handler(error::plain_errors_as_problems))
        .wrap(from_fn(crate::auth::rate_limit::headers))
        .wrap(from_fn(crate::edge::request_deadline))
        // Bodies are JSON (or the docs page): never let a browser sniff them into something else.
        .wrap(DefaultHeaders::new().add(("x-content-type-options", "nosniff")))
        .wrap(metrics)
        .wrap(from_fn(telemetry::request_id))
}
