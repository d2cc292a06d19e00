//! The rustls client configuration behind every connection: which server certificates are
//! accepted for each `sslmode`. All checks are rustls's and webpki's (chain, validity, key
//! usage, host name, handshake signatures); this file only chooses which of them apply, like
//! libpq: `prefer`/`require` accept any certificate, `verify-ca` checks the chain against the
//! CA, `verify-full` also the host name.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::sslmode::{RootCerts, SslMode, TlsSettings};
use super::ConnError;

/// A verification failure with the CA or host it was checked against, for the error message.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(text: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refused(text)))))
}

#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    /// None: accept any certificate (`prefer`, `require`).
    roots: Option<(Arc<RootCertStore>, String)>,
    check_host: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some((roots, label)) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )
        .map_err(|e| refused(format!("server certificate not trusted by {label}: {e}")))?;
        if self.check_host {
            verify_server_name(&cert, server_name).map_err(|e| {
                refused(format!(
                    "server certificate is not valid for host {:?} (sslmode=verify-full): {e}",
                    server_name.to_str()
                ))
            })?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Read the CA certificates (every certificate in the PEM).
fn root_store(roots: &RootCerts) -> Result<RootCertStore, ConnError> {
    let label = roots.label();
    let certs: Result<Vec<CertificateDer<'static>>, _> = match roots {
        RootCerts::File(path) => match CertificateDer::pem_file_iter(path) {
            Ok(it) => it.collect(),
            Err(e) => {
                return Err(ConnError::Tls(format!(
                    "cannot read the CA certificate file {label}: {e}"
                )))
            }
        },
        RootCerts::Pem { pem, .. } => CertificateDer::pem_slice_iter(pem).collect(),
    };
    let certs = certs
        .map_err(|e| ConnError::Tls(format!("cannot read the CA certificates in {label}: {e}")))?;
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ConnError::Tls(format!(
            "no usable CA certificate in {label}"
        )));
    }
    Ok(store)
}

/// The TLS connector for `settings` (not called for `disable`).
pub(crate) fn connector(settings: &TlsSettings) -> Result<MakeRustlsConnect, ConnError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = if settings.mode.verifies() {
        let certs = settings.resolved_root_certs()?;
        Some((Arc::new(root_store(&certs)?), certs.label()))
    } else {
        None
    };
    let verifier = Verifier {
        provider: provider.clone(),
        roots,
        check_host: settings.mode == SslMode::VerifyFull,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnError::Tls(format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
