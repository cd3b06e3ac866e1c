//! The HTTP API over HTTPS against real daemons: health checks answer over
//! TLS only, `verify_client = "required"` refuses a client without a
//! certificate, members reach each other's APIs over TLS (so `raftctl list`
//! shows every member's role), `raftctl reload` calls them over TLS,
//! HAProxy's `check-ssl` routes to the primary, and an invalid configuration
//! is refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use raftgres::http::client;
use raftgres::http::tls::{self, VerifyClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::info;

use crate::support::daemon::DaemonCluster;
use crate::support::deadline::SETTLED;
use crate::support::wait_for;

/// How long HAProxy's health checks get to settle on the primary.
const HAPROXY: Duration = Duration::from_secs(30);

/// Kills HAProxy when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// PEM files in a directory: a CA, a certificate for 127.0.0.1 (servers)
/// and one for a client, each signed by the CA.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn certificates(dir: &Path) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "raftgres API test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let signed = |names: Vec<String>| {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names).expect("params").signed_by(&key, &ca, &ca_key).expect("certificate");
        (cert.pem(), key.serialize_pem())
    };
    let (server, server_key) = signed(vec!["127.0.0.1".into(), "localhost".into()]);
    let (client, client_key) = signed(vec!["raftctl".into()]);
    let c = Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("api.pem"),
        key: dir.join("api-key.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client-key.pem"),
    };
    for (path, text) in [
        (&c.ca, ca.pem()),
        (&c.cert, server),
        (&c.key, server_key),
        (&c.client_cert, client),
        (&c.client_key, client_key),
    ] {
        std::fs::write(path, text).expect("write PEM");
    }
    c
}

/// `GET path` over TLS with `config`, by hand: the status code, or why
/// there is none.
async fn raw_get(addr: &str, path: &str, config: Arc<rustls::ClientConfig>) -> Result<u16, String> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a name");
        let mut tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| e.to_string())?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        tls.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(format!("no status in {text:?}"))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange).await.map_err(|_| "timed out".to_string())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_over_https_with_client_certificates() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let certs = certificates(dir.path());
    // This process's requests (the fixture's health checks) present the
    // client certificate.
    let identity =
        (tls::load_certs(&certs.client_cert).expect("certs"), tls::load_key(&certs.client_key).expect("key"));
    let with_cert = Arc::new(
        tls::client_config(tls::load_roots(&certs.ca).expect("roots"), Some(identity)).expect("client configuration"),
    );
    client::use_tls(with_cert.clone());
    let (ca, cert, key) = (certs.ca.clone(), certs.cert.clone(), certs.key.clone());
    let c = DaemonCluster::start_https(3, move |f| {
        f.http.certfile = Some(cert.clone());
        f.http.keyfile = Some(key.clone());
        f.http.cafile = Some(ca.clone());
        f.http.verify_client = VerifyClient::Required;
    })
    .await;
    let _logs = c.logs_on_panic();
    let primary = c.must_healthy(&[1, 2, 3], SETTLED).await;
    let replica = [1, 2, 3].into_iter().find(|id| *id != primary).expect("a replica");

    info!("--- /primary over HTTPS: 200 on the primary, 503 on a replica");
    let get = async |id: u64, path: &str| client::get(&format!("{}{path}", c.api(id))).await;
    assert_eq!(get(primary, "/primary").await.expect("GET /primary").0, 200);
    assert_eq!(get(replica, "/primary").await.expect("GET /primary").0, 503);
    assert_eq!(get(replica, "/replica").await.expect("GET /replica").0, 200);

    info!("--- plain HTTP is refused");
    let plain = c.api(primary).replacen("https://", "http://", 1);
    let r = client::get(&format!("{plain}/primary")).await;
    assert!(r.is_err(), "plain HTTP to an HTTPS port: {r:?}");

    info!("--- verify_client = required: no certificate, no answer");
    let addr = c.api(primary).trim_start_matches("https://").to_string();
    let without = Arc::new(tls::client_config(tls::load_roots(&certs.ca).expect("roots"), None).expect("config"));
    let r = raw_get(&addr, "/primary", without).await;
    assert!(r.is_err(), "a request without a client certificate: {r:?}");
    assert_eq!(raw_get(&addr, "/primary", with_cert.clone()).await, Ok(200));

    info!("--- members reach each other's APIs over HTTPS: raftctl list shows every role");
    let status = c.raftctl_json(&["list"]);
    let members = status["members"].as_array().cloned().unwrap_or_default();
    assert_eq!(members.len(), 3, "{status}");
    for m in &members {
        assert!(m["api_url"].as_str().is_some_and(|u| u.starts_with("https://")), "{m}");
        assert!(m["role"].as_str().is_some_and(|r| r == "primary" || r == "replica"), "role from its API: {m}");
    }

    info!("--- raftctl reload calls the members' APIs over HTTPS with --cacert, --cert and --key");
    let path = |p: &PathBuf| p.to_str().expect("a UTF-8 path").to_string();
    let (ca, cert, key) = (path(&certs.ca), path(&certs.client_cert), path(&certs.client_key));
    let env = [("RAFTCTL_CACERT", ca.as_str()), ("RAFTCTL_CERT", cert.as_str()), ("RAFTCTL_KEY", key.as_str())];
    let (code, out, err) = c.raftctl_with(&["reload"], &env);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = c.raftctl(&["reload"]);
    assert_ne!(code, 0, "without the CA: {out}{err}");
    assert!(format!("{out}{err}").contains("--cacert"), "says what is missing: {out}{err}");
    let haproxy = c.must_raftctl(&["haproxy-config"]);
    assert!(haproxy.contains("check-ssl verify none"), "{haproxy}");

    info!("--- HAProxy's check-ssl against the TLS API routes to the primary");
    // verify_client = required: HAProxy presents the client certificate.
    let combined = dir.path().join("haproxy-client.pem");
    let pem = std::fs::read_to_string(&certs.client_cert).expect("client certificate")
        + &std::fs::read_to_string(&certs.client_key).expect("client key");
    std::fs::write(&combined, pem).expect("write the combined PEM");
    let ports: Vec<u16> = (0..5).map(|_| raftgres::playground::free_port().expect("port")).collect();
    let cfg_path = dir.path().join("haproxy.cfg");
    let port_args: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
    c.must_raftctl(&[
        "haproxy-config",
        "--bind",
        "127.0.0.1",
        "--primary-port",
        &port_args[0],
        "--replica-port",
        &port_args[1],
        "--default-port",
        &port_args[2],
        "--offline-port",
        &port_args[3],
        "--stats-port",
        &port_args[4],
        "--check-interval-ms",
        "500",
        "--file",
        &path(&cfg_path),
    ]);
    let cfg = std::fs::read_to_string(&cfg_path).expect("config written");
    let cfg = cfg.replace("check-ssl verify none", &format!("check-ssl verify none crt {}", path(&combined)));
    std::fs::write(&cfg_path, cfg).expect("rewrite the configuration");
    let process = std::process::Command::new("haproxy")
        .args(["-db", "-f", &path(&cfg_path)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start haproxy (scripts/install-deps.sh installs it)");
    let _haproxy = KillOnDrop(process);
    let pw = c.layout.superuser_password.clone();
    let primary_port = c.layout.node(primary).pg_port as i32;
    // Servers count as up until their first check: only checks that work
    // keep every connection to each port on the right side.
    wait_for("HAProxy's checks over TLS to settle on the right backends", HAPROXY, async || {
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(("primary port", crate::t60_operator::through(ports[0], &pw).await));
            seen.push(("replica port", crate::t60_operator::through(ports[1], &pw).await));
        }
        let right = seen.iter().all(|(which, r)| match (*which, r) {
            ("primary port", Ok((port, false))) => *port == primary_port,
            ("replica port", Ok((_, true))) => true,
            _ => false,
        });
        if right { Ok(()) } else { Err(format!("{seen:?}")) }
    })
    .await;

    info!("--- bad TLS settings are refused with the field named");
    let mut f = c.layout.file_config(1);
    f.http.certfile = Some(certs.cert.clone());
    let e = f.validate().expect_err("certfile alone").to_string();
    assert!(e.contains("http.certfile: set certfile and keyfile together"), "{e}");
    f.http.keyfile = Some(certs.ca.clone());
    let e = f.validate().expect_err("a certificate is not a key").to_string();
    assert!(e.contains("http.certfile") && e.contains("private key"), "{e}");
    f.http.keyfile = Some(dir.path().join("missing.pem"));
    let e = f.validate().expect_err("a missing key").to_string();
    assert!(e.contains("missing.pem"), "{e}");
    f.http.keyfile = Some(certs.key.clone());
    f.http.verify_client = VerifyClient::Required;
    let e = f.validate().expect_err("required without a CA").to_string();
    assert!(e.contains("http.verify_client: required needs cafile"), "{e}");
    f.http.cafile = Some(certs.ca.clone());
    f.validate().expect("complete");
}
