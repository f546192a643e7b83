//! HTTPS: `ALLOT_TLS_CERT` and `ALLOT_TLS_KEY` (PEM), served with rustls, TLS 1.2 and 1.3 only,
//! HTTP/2 or HTTP/1.1 as the client's ALPN offer says (actix adds `h2` and `http/1.1`).
//!
//! The certificate is not baked into the server's configuration: a [`Certificate`] hands every
//! handshake the key pair it holds now, and SIGHUP reads both files again and swaps the new pair
//! in (an atomic pointer swap, [`arc_swap`]). Connections already open keep the session they
//! negotiated; only later handshakes see the new certificate, so a renewal drops nothing. A pair
//! that does not load (a file missing or half-written, a key that is not the certificate's) is
//! logged and the old one kept: the operator fixes the files and sends SIGHUP again.
//!
//! The crypto is rustls's `ring` provider, passed to the configuration explicitly rather than
//! installed process-wide, so nothing depends on which provider another crate asked for. ring is
//! in the tree already and builds with a C compiler alone; rustls's default, aws-lc-rs, would add
//! the hybrid post-quantum key exchange (X25519MLKEM768) that rustls 0.23.48 deprecates ring's
//! provider for lacking, and the build of AWS-LC. Changing is this one line and the feature in
//! Cargo.toml.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::Digest;

/// Why a certificate and key did not load, and which setting's file is at fault.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct LoadError {
    pub setting: &'static str,
    pub message: String,
}

impl LoadError {
    fn new(setting: &'static str, message: impl ToString) -> Self {
        Self {
            setting,
            message: message.to_string(),
        }
    }
}

/// The certificate and key every new TLS handshake gets, and the files they are read from.
#[derive(Debug)]
pub(crate) struct Certificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

impl Certificate {
    /// Reads both files; the server does not start on a pair that does not load.
    pub fn open(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, LoadError> {
        #[expect(
            deprecated,
            reason = "ring offers no post-quantum key exchange; aws-lc-rs would, at the price of \
                      another C library's build (see the module comment)"
        )]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load(cert_path, key_path, &provider)?;
        let certificate = Arc::new(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current: ArcSwap::from_pointee(key),
        });
        tracing::info!(
            cert = %cert_path.display(),
            sha256 = %certificate.fingerprint(),
            "serving HTTPS"
        );
        Ok(certificate)
    }

    /// Reads both files again and serves the new pair from the next handshake on; on failure the
    /// current pair stays.
    pub fn reload(&self) -> Result<(), LoadError> {
        let key = load(&self.cert_path, &self.key_path, &self.provider)?;
        self.current.store(Arc::new(key));
        Ok(())
    }

    /// The SHA-256 of the certificate being served, in hex: what the logs name it by.
    fn fingerprint(&self) -> String {
        let current = self.current.load();
        let der = current.cert.first().map_or(&[][..], |c| c.as_ref());
        base16ct::lower::encode_string(&sha2::Sha256::digest(der))
    }

    /// The server configuration: TLS 1.3 and 1.2, no client certificates, this certificate.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, LoadError> {
        let config = rustls::ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| LoadError::new("ALLOT_TLS_CERT", e))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        Ok(config)
    }

    /// Reloads on every SIGHUP, for as long as the runtime runs. Must run inside it.
    pub fn reload_on_sighup(self: &Arc<Self>) -> std::io::Result<()> {
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let certificate = Arc::clone(self);
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match certificate.reload() {
                    Ok(()) => tracing::info!(
                        cert = %certificate.cert_path.display(),
                        sha256 = %certificate.fingerprint(),
                        "TLS certificate reloaded"
                    ),
                    Err(err) => tracing::error!(
                        setting = err.setting,
                        error = %err,
                        sha256 = %certificate.fingerprint(),
                        "TLS certificate not reloaded; still serving the previous one"
                    ),
                }
            }
        });
        Ok(())
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The chain in `cert_path` and the key in `key_path`, checked to belong together.
fn load(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, LoadError> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            LoadError::new(
                "ALLOT_TLS_CERT",
                format!(
                    "cannot read a PEM certificate from {}: {e}",
                    cert_path.display()
                ),
            )
        })?;
    if chain.is_empty() {
        return Err(LoadError::new(
            "ALLOT_TLS_CERT",
            format!("{} holds no PEM certificate", cert_path.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        LoadError::new(
            "ALLOT_TLS_KEY",
            format!(
                "cannot read a PEM private key from {}: {e}",
                key_path.display()
            ),
        )
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        LoadError::new(
            "ALLOT_TLS_KEY",
            format!(
                "{} does not go with {}: {e}",
                key_path.display(),
                cert_path.display()
            ),
        )
    })
}
