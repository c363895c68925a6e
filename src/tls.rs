//! In-process HTTPS (SPEC §5): rustls with aws-lc-rs, HTTP/1.1 only (actix's HTTP/2 pulls in
//! h2 0.3, RUSTSEC-2026-0258).

use std::path::Path;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Installs aws-lc-rs as the process's rustls provider; call before any TLS is set up.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub fn server_config(cert_path: &Path, key_path: &Path) -> anyhow::Result<rustls::ServerConfig> {
    install_crypto_provider();
    let certificates = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "tls.cert_path {}: no readable PEM certificate",
                cert_path.display()
            )
        })?;
    let key = PrivateKeyDer::from_pem_file(key_path).with_context(|| {
        format!(
            "tls.key_path {}: no readable PEM private key",
            key_path.display()
        )
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .context("tls: the certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
