//! `tls_server_config.client_auth_type`: which client certificates the
//! server asks for and how it checks them, as Go's `tls.ClientAuthType`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::{bad, ClientAuth};
use crate::config::ConfigError;

/// The verifier for `kind`; the `Verify*` kinds need `client_ca_file`.
pub(super) fn verifier(
    path: &Path,
    kind: ClientAuth,
    ca: Option<&Path>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, ConfigError> {
    let any = |mandatory| -> Arc<dyn ClientCertVerifier> {
        Arc::new(AnyClientCert {
            mandatory,
            algorithms: provider.signature_verification_algorithms,
        })
    };
    match kind {
        ClientAuth::NoClientCert => Ok(WebPkiClientVerifier::no_client_auth()),
        ClientAuth::RequestClientCert => Ok(any(false)),
        ClientAuth::RequireAnyClientCert => Ok(any(true)),
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let Some(ca) = ca else {
                return Err(bad(
                    path,
                    "tls_server_config.client_ca_file",
                    format!("{kind:?} needs the CA that signs client certificates"),
                ));
            };
            let pem = std::fs::read(ca).map_err(|e| {
                bad(
                    path,
                    "tls_server_config.client_ca_file",
                    format!("cannot read {}: {e}", ca.display()),
                )
            })?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    bad(
                        path,
                        "tls_server_config.client_ca_file",
                        format!("not PEM: {e}"),
                    )
                })?;
                roots
                    .add(cert)
                    .map_err(|e| bad(path, "tls_server_config.client_ca_file", e))?;
            }
            if roots.is_empty() {
                return Err(bad(
                    path,
                    "tls_server_config.client_ca_file",
                    "holds no certificate",
                ));
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if kind == ClientAuth::VerifyClientCertIfGiven {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder
                .build()
                .map_err(|e| bad(path, "tls_server_config.client_ca_file", e))
        }
    }
}

/// Go's `RequestClientCert` / `RequireAnyClientCert`: a client proves it
/// holds the key of the certificate it sends, whoever issued it.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
