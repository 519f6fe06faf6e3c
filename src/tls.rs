//! HTTPS for the API with rustls: `WAPI_CERT_FILE_PATH` (the certificate
//! chain, PEM) and `WAPI_CERT_KEY_PATH` (its private key, PEM). TLS 1.2 and
//! 1.3 only, with rustls's safe defaults.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate or key that cannot be used, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var} ({path}): {problem}")]
pub struct TlsError {
    pub var: &'static str,
    pub path: String,
    pub problem: String,
}

fn err(var: &'static str, path: &Path, problem: impl ToString) -> TlsError {
    TlsError {
        var,
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

/// Reads and checks the pair: both readable PEM, and the key is the
/// certificate's.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    const CERT: &str = "WAPI_CERT_FILE_PATH";
    const KEY: &str = "WAPI_CERT_KEY_PATH";
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| err(CERT, &files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(CERT, &files.cert, e))?;
    if certs.is_empty() {
        return Err(err(CERT, &files.cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| err(KEY, &files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| err(CERT, &files.cert, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            err(
                KEY,
                &files.key,
                format!("does not fit the certificate: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
