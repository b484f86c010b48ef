//! TLS client configuration shared by the connectors (rustls with the *ring* provider).
//!
//! Trusted roots are the Mozilla set compiled in (`webpki-roots`) plus every certificate in
//! the datastore's `sslrootcert` PEM file. What is verified follows libpq's `sslmode`:
//! `require` checks nothing about the certificate (but still the handshake signatures), and
//! becomes `verify-ca` when `sslrootcert` is set; `verify-ca` checks the chain; `verify-full`
//! checks the chain and that the certificate names the host connected to.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::config::TlsMode;

/// The crypto provider every TLS connection of this process uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Make *ring* the process-wide default provider, for drivers that build their own rustls
/// configuration (mysql_async). Calling it again is harmless.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What a connection verifies, after `sslrootcert` has been taken into account.
pub fn effective(mode: TlsMode, root_cert: Option<&Path>) -> TlsMode {
    match (mode, root_cert) {
        (TlsMode::Require, Some(_)) => TlsMode::VerifyCa,
        (m, _) => m,
    }
}

/// The certificates of a PEM file; an error names the file.
pub fn read_root_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read sslrootcert {shown}: {e}"))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read sslrootcert {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("sslrootcert {shown} holds no PEM certificate"));
    }
    Ok(certs)
}

/// A rustls client configuration for `mode` (see the module notes).
pub fn client_config(mode: TlsMode, root_cert: Option<&Path>) -> Result<ClientConfig, String> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(p) = root_cert {
        for c in read_root_certs(p)? {
            roots
                .add(c)
                .map_err(|e| format!("sslrootcert {}: {e}", p.display()))?;
        }
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match effective(mode, root_cert) {
        TlsMode::VerifyFull => webpki,
        TlsMode::VerifyCa => Arc::new(Verify {
            inner: webpki,
            check: Check::ChainOnly,
        }),
        _ => Arc::new(Verify {
            inner: webpki,
            check: Check::Nothing,
        }),
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// A hint to add to a connection error caused by certificate verification.
pub fn hint(message: &str) -> Option<&'static str> {
    if message.contains("UnknownIssuer") {
        Some("the server's certificate is not signed by a trusted root: set `sslrootcert` to the CA's PEM file")
    } else if message.contains("NotValidForName") {
        Some("the server's certificate does not name this host: connect by a name it lists, or use `sslmode: verify-ca`")
    } else {
        None
    }
}

/// How much of the certificate a [`Verify`] checks.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// Nothing (`require` without `sslrootcert`).
    Nothing,
    /// The chain to a trusted root, not the name (`verify-ca`).
    ChainOnly,
}

/// A verifier for `require` and `verify-ca`: the WebPKI verifier with less checked; the
/// handshake signatures are always verified.
#[derive(Debug)]
struct Verify {
    inner: Arc<WebPkiServerVerifier>,
    check: Check,
}

impl ServerCertVerifier for Verify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check {
            Check::Nothing => Ok(ServerCertVerified::assertion()),
            Check::ChainOnly => match self.inner.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                // The name is checked after the chain: this error means the chain is good.
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            },
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_with_a_root_file_verifies_the_chain() {
        let p = Path::new("/nonexistent.pem");
        assert_eq!(effective(TlsMode::Require, Some(p)), TlsMode::VerifyCa);
        assert_eq!(effective(TlsMode::Require, None), TlsMode::Require);
        assert_eq!(effective(TlsMode::VerifyFull, Some(p)), TlsMode::VerifyFull);
    }

    #[test]
    fn a_missing_or_empty_root_file_is_an_error_naming_it() {
        let e =
            client_config(TlsMode::VerifyFull, Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let dir = std::env::temp_dir().join(format!("synctool-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(TlsMode::VerifyCa, Some(&empty)).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_mode_builds_a_configuration() {
        for m in TlsMode::NAMES {
            let m = TlsMode::parse(m).unwrap();
            assert!(client_config(m, None).is_ok());
        }
    }
}
