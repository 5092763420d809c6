//! TLS material, loaded once at start-up: the rustls server configuration
//! clients see (`[listen] tls_cert`/`tls_key`) and the CA the backend's
//! certificate is verified against (`[backend] tls_ca`). Each problem is a
//! message the config loader prefixes with its key. No I/O after start-up.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// TLS 1.2 and 1.3 only (rustls has nothing older), with ring's cipher
/// suites, all of them AEAD with forward secrecy.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide rustls provider, so mysql_async's
/// `ClientConfig::builder()` finds one whatever other features the
/// dependency graph turns on. Idempotent.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads a file for a config key; the message names the path and the cause.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The certificates of a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "no certificate (-----BEGIN CERTIFICATE-----) in {}",
            path.display()
        ));
    }
    Ok(certs)
}

/// Which key a problem is about, so the loader can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTlsKey {
    Cert,
    Key,
}

/// The server configuration for client connections: the certificate chain
/// of `cert` (leaf first) and the private key of `key` (PKCS#8, PKCS#1 or
/// SEC1 PEM), which must belong to the leaf certificate. No client
/// certificates are requested.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, (ServerTlsKey, String)> {
    let chain = certificates(cert).map_err(|m| (ServerTlsKey::Cert, m))?;
    let key_pem = read(key).map_err(|m| (ServerTlsKey::Key, m))?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let why = match e {
            rustls_pki_types::pem::Error::NoItemsFound => "no private key".to_string(),
            other => other.to_string(),
        };
        (
            ServerTlsKey::Key,
            format!("{}: {why} (PEM expected)", key.display()),
        )
    })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| (ServerTlsKey::Cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| {
            (
                ServerTlsKey::Key,
                format!(
                    "{} does not fit the certificate in {}: {e}",
                    key.display(),
                    cert.display()
                ),
            )
        })?;
    Ok(Arc::new(config))
}

/// The CA file the backend's certificate must chain to: read and checked
/// at start-up, handed to mysql_async as bytes (it would re-read the file on
/// every connection otherwise).
pub fn backend_ca(path: &Path) -> Result<Vec<u8>, String> {
    let pem = read(path)?;
    let certs = certificates(path)?;
    let mut store = rustls::RootCertStore::empty();
    for cert in certs {
        store
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("sqlguard-tls-unit-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn problems_name_the_file_and_the_key() {
        let missing = Path::new("/nonexistent/sqlguard/cert.pem");
        let (key, message) = server_config(missing, missing).unwrap_err();
        assert_eq!(key, ServerTlsKey::Cert);
        assert!(
            message.contains("cannot read /nonexistent/sqlguard/cert.pem"),
            "{message}"
        );

        let not_pem = temp("notpem", "hello\n");
        let (key, message) = server_config(&not_pem, &not_pem).unwrap_err();
        assert_eq!(key, ServerTlsKey::Cert);
        assert!(message.contains("no certificate"), "{message}");
        assert!(backend_ca(&not_pem).unwrap_err().contains("no certificate"));
        let _ = std::fs::remove_file(not_pem);
    }
}
