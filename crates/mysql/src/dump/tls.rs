//! TLS for the dump connection, with the same meaning of `[source] tls` as every other
//! connection (see [`crate::session::opts`]): `verify` checks the certificate and host name
//! against the built-in web PKI roots plus `tls_ca_file`; `insecure_skip_verify` accepts
//! any certificate (still encrypted; for emergencies).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;

use crate::config::{SourceConfig, TlsMode};

/// The TLS client configuration `cfg` asks for; `Ok(None)` for `tls = "disabled"`.
pub(crate) fn client_config(cfg: &SourceConfig) -> Result<Option<Arc<ClientConfig>>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    let config = match cfg.tls {
        TlsMode::Disabled => return Ok(None),
        TlsMode::Verify => {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(ca) = &cfg.tls_ca_file {
                let certs = CertificateDer::pem_file_iter(ca)
                    .map_err(|e| format!("source.tls_ca_file {}: {e}", ca.display()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("source.tls_ca_file {}: {e}", ca.display()))?;
                    roots.add(cert).map_err(|e| format!("source.tls_ca_file {}: {e}", ca.display()))?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsMode::InsecureSkipVerify => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider))).with_no_client_auth()
        }
    };
    Ok(Some(Arc::new(config)))
}

/// Upgrades `tcp` to TLS for `host`.
pub(crate) async fn connect(
    config: Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("TLS server name {host:?}: {e}")))?;
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
}

/// `insecure_skip_verify`: any certificate, any name; signatures are still checked so the
/// handshake itself stays sound.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
