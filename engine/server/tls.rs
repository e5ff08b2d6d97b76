//! Native TLS for the sidecar: the certificate pair (and optional client CA) read from files, re-read when they change, and served through rustls with ALPN `h2` and `http/1.1`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::ServerError;

/// A TLS setup failure: `what` failed because of `source`.
fn tls_error(
    what: String,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> ServerError {
    ServerError::Tls {
        what,
        source: Some(source.into()),
    }
}

/// How long a client has to finish the TLS handshake before the connection is dropped
/// (a client that opens a socket and says nothing would otherwise hold a slot).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the certificate, key and client CA files are re-read (cert-manager rotates
/// them in place; the kubelet updates a mounted Secret within a minute).
pub const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Largest PEM file read (a chain of a few certificates is a few KiB).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The files `serve --tls-cert/--tls-key/--tls-client-ca` names, and the budgets.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) matching the leaf.
    pub key: PathBuf,
    /// PEM CA certificates: when set, every client must present a certificate they issued.
    pub client_ca: Option<PathBuf>,
    /// See [`TLS_HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// See [`TLS_RELOAD_INTERVAL`].
    pub reload_interval: Duration,
}

impl TlsConfig {
    /// The pair (and client CA) with the default budgets.
    pub fn new(cert: PathBuf, key: PathBuf, client_ca: Option<PathBuf>) -> Self {
        Self {
            cert,
            key,
            client_ca,
            handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
            reload_interval: TLS_RELOAD_INTERVAL,
        }
    }
}

/// What a new connection is handshaken with: swapped whole when the files change.
pub(super) struct TlsState {
    config: TlsConfig,
    current: ArcSwap<rustls::ServerConfig>,
    /// SHA-256 over the files serving now, and over the last set that failed to load (so a
    /// bad rotation is logged once, not on every poll).
    seen: Mutex<(Fingerprint, Option<Fingerprint>)>,
}

type Fingerprint = [u8; 32];

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TlsState {
    /// Load the files once; any problem is a start-up error naming the file.
    pub(super) fn load(config: TlsConfig) -> Result<Self, ServerError> {
        let (files, fingerprint) = read_files(&config)?;
        let built = build(&config, files)?;
        Ok(Self {
            config,
            current: ArcSwap::from_pointee(built),
            seen: Mutex::new((fingerprint, None)),
        })
    }

    /// The acceptor for the next connection.
    pub(super) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// The handshake budget.
    pub(super) fn handshake_timeout(&self) -> Duration {
        self.config.handshake_timeout
    }

    /// Re-read the files; swap in a new config when they changed and load, keep the old
    /// one (and log why) when they do not. Returns whether a new pair was swapped in.
    pub(super) fn refresh(&self) -> Result<bool, ServerError> {
        let (files, fingerprint) = read_files(&self.config)?;
        let Ok(mut seen) = self.seen.lock() else {
            return Err(ServerError::Tls {
                what: "the TLS state lock is poisoned".into(),
                source: None,
            });
        };
        if seen.0 == fingerprint || seen.1 == Some(fingerprint) {
            return Ok(false);
        }
        match build(&self.config, files) {
            Ok(built) => {
                self.current.store(Arc::new(built));
                *seen = (fingerprint, None);
                Ok(true)
            }
            Err(e) => {
                seen.1 = Some(fingerprint);
                Err(e)
            }
        }
    }

    /// Poll the files every `reload_interval` and refresh.
    pub(super) fn spawn_watcher(self: Arc<Self>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.config.reload_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let state = Arc::clone(&self);
                let result = tokio::task::spawn_blocking(move || state.refresh()).await;
                match result {
                    Ok(Ok(true)) => tracing::warn!(
                        cert = %self.config.cert.display(),
                        "TLS certificate pair reloaded; new connections use it"
                    ),
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => tracing::error!(
                        error = %crate::error_chain::ErrorChain(&e),
                        "TLS reload failed; the previous certificate pair keeps serving"
                    ),
                    Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
                }
            }
        })
    }
}

/// The raw bytes of the cert, key and client CA files.
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, ServerError> {
    crate::fsio::read_capped(path, MAX_PEM_BYTES)
        // The read error names the file.
        .map_err(|e| tls_error(format!("TLS {what}"), e))
}

fn read_files(config: &TlsConfig) -> Result<(Files, Fingerprint), ServerError> {
    let files = Files {
        cert: read_pem(&config.cert, "certificate")?,
        key: read_pem(&config.key, "key")?,
        client_ca: config
            .client_ca
            .as_deref()
            .map(|p| read_pem(p, "client CA"))
            .transpose()?,
    };
    let mut hash = Sha256::new();
    for part in [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ] {
        let bytes = part.map(Vec::as_slice).unwrap_or_default();
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    }
    Ok((files, hash.finalize().into()))
}

fn certificates(
    pem: &[u8],
    path: &Path,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(format!("TLS {what} `{}`", path.display()), e))?;
    if certs.is_empty() {
        return Err(ServerError::Tls {
            what: format!("TLS {what} `{}`: no PEM CERTIFICATE block", path.display()),
            source: None,
        });
    }
    Ok(certs)
}

/// A rustls server config from the files: the `ring` provider, TLS 1.2 and 1.3, ALPN
/// `h2` then `http/1.1`, and client-certificate verification when a client CA is set.
fn build(config: &TlsConfig, files: Files) -> Result<rustls::ServerConfig, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&files.cert, &config.cert, "certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&files.key)
        .map_err(|e| tls_error(format!("TLS key `{}`", config.key.display()), e))?;
    let certified = rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        tls_error(
            format!(
                "TLS pair `{}` / `{}`",
                config.cert.display(),
                config.key.display()
            ),
            e,
        )
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS protocol versions".into(), e))?;
    let builder = match (&config.client_ca, &files.client_ca) {
        (Some(path), Some(pem)) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in certificates(pem, path, "client CA")? {
                roots
                    .add(ca)
                    .map_err(|e| tls_error(format!("TLS client CA `{}`", path.display()), e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_error(format!("TLS client CA `{}`", path.display()), e))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut server = builder.with_cert_resolver(Arc::new(SinglePair(Arc::new(certified))));
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

/// Every handshake gets the one configured pair, whatever the SNI.
#[derive(Debug)]
struct SinglePair(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for SinglePair {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}
