//! HTTPS for the HTTP API (Patroni's `restapi.certfile`, `keyfile`,
//! `cafile`, `verify_client`): the rustls configurations built from the
//! node's files, the listener that serves only TLS, and the client side the
//! daemon uses to reach other members' APIs. It never reads a file after
//! start and never panics on what a peer sends: a failed handshake is
//! logged and the connection dropped.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshakes in flight before new connections wait to be accepted.
const PENDING_HANDSHAKES: usize = 64;

/// Patroni's `restapi.verify_client`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyClient {
    /// Client certificates are not asked for.
    #[default]
    None,
    /// A client certificate is checked against `cafile` when one is sent.
    Optional,
    /// Every request needs a client certificate signed by `cafile`.
    Required,
}

impl VerifyClient {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyClient::None => "none",
            VerifyClient::Optional => "optional",
            VerifyClient::Required => "required",
        }
    }
}

/// The API's TLS: how it serves, and how this daemon calls other members.
#[derive(Clone)]
pub struct HttpTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for HttpTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpTls")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file; an error names the file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file; an error names the file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: no usable PEM private key: {e}", path.display()))
}

/// A root store of `ca`'s certificates.
pub fn load_roots(ca: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    Ok(roots)
}

/// A client configuration trusting `roots`, presenting `identity` when
/// given.
pub fn client_config(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match identity {
        Some((certs, key)) => builder.with_client_auth_cert(certs, key).map_err(|e| format!("client certificate: {e}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

impl HttpTls {
    /// Builds both sides from the files. Other members' APIs are trusted
    /// when signed by `ca` (without one, when they present this node's own
    /// certificate: a certificate shared by every node); this node's
    /// certificate is its client certificate, for members that verify
    /// clients.
    pub fn load(cert: &Path, key: &Path, ca: Option<&Path>, verify: VerifyClient) -> Result<HttpTls, String> {
        let certs = load_certs(cert)?;
        let private = load_key(key)?;
        let roots = match ca {
            Some(ca) => load_roots(ca)?,
            None => {
                let mut roots = RootCertStore::empty();
                roots.add(certs[0].clone()).map_err(|e| format!("{}: {e}", cert.display()))?;
                roots
            }
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match (verify, ca) {
            (VerifyClient::None, _) => builder.with_no_client_auth(),
            (_, None) => return Err(format!("verify_client = {:?} needs a cafile", verify.as_str())),
            (v, Some(_)) => {
                let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), provider());
                let b = if v == VerifyClient::Optional { b.allow_unauthenticated() } else { b };
                builder.with_client_cert_verifier(b.build().map_err(|e| e.to_string())?)
            }
        };
        let mut server = builder
            .with_single_cert(certs.clone(), private.clone_key())
            .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = client_config(roots, Some((certs, private)))?;
        Ok(HttpTls { server: Arc::new(server), client: Arc::new(client) })
    }
}

/// A listener that hands axum only connections whose TLS handshake
/// succeeded. Handshakes run on their own tasks, so a slow or silent
/// client holds up nobody else.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(PENDING_HANDSHAKES);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("failed to accept an HTTPS connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, sender) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accepting task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
