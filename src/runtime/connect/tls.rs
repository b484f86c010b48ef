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
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
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

/// A client certificate (`sslcert`) and its private key (`sslkey`), both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The certificate, followed by any intermediates.
    pub cert: std::path::PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

impl ClientCert {
    /// The certificate chain and the key; an error names the file.
    pub fn read(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let shown = self.cert.display();
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read sslcert {shown}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("sslcert {shown} holds no PEM certificate"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| format!("cannot read sslkey {}: {e}", self.key.display()))?;
        Ok((certs, key))
    }
}

/// The PKCS#1 DER of an RSA private key given as PKCS#1 or PKCS#8 (the only form
/// mysql_async's rustls client identity takes).
pub fn rsa_pkcs1_der(key: &PrivateKeyDer<'_>) -> Result<Vec<u8>, String> {
    const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let not_rsa = || "MySQL client certificates need an RSA key".to_string();
    match key {
        PrivateKeyDer::Pkcs1(k) => Ok(k.secret_pkcs1_der().to_vec()),
        PrivateKeyDer::Pkcs8(k) => {
            // PrivateKeyInfo ::= SEQUENCE { version INTEGER, algorithm SEQUENCE { OID, … },
            //                               privateKey OCTET STRING (RSAPrivateKey) }
            let bad = || "sslkey: malformed PKCS#8 key".to_string();
            let (tag, info, _) = der_tlv(k.secret_pkcs8_der()).ok_or_else(bad)?;
            if tag != 0x30 {
                return Err(bad());
            }
            let (_, _, rest) = der_tlv(info).ok_or_else(bad)?;
            let (tag, algorithm, rest) = der_tlv(rest).ok_or_else(bad)?;
            let (oid_tag, oid, _) = der_tlv(algorithm).ok_or_else(bad)?;
            if tag != 0x30 || oid_tag != 0x06 {
                return Err(bad());
            }
            if oid != RSA_OID {
                return Err(not_rsa());
            }
            let (tag, inner, _) = der_tlv(rest).ok_or_else(bad)?;
            if tag != 0x04 {
                return Err(bad());
            }
            Ok(inner.to_vec())
        }
        _ => Err(not_rsa()),
    }
}

/// One DER element: (tag, contents, the bytes after it).
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, at) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
        (len, 2 + n)
    };
    let end = at.checked_add(len)?;
    Some((tag, b.get(at..end)?, &b[end..]))
}

/// A rustls client configuration for `mode` (see the module notes), presenting `client`
/// when given.
pub fn client_config(
    mode: TlsMode,
    root_cert: Option<&Path>,
    client: Option<&ClientCert>,
) -> Result<ClientConfig, String> {
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
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some(c) => {
            let (certs, key) = c.read()?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("sslcert/sslkey: {e}"))
        }
    }
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
    fn pkcs8_rsa_keys_unwrap_to_pkcs1() {
        use rustls::pki_types::{PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
        let inner = vec![0x30, 0x03, 0x02, 0x01, 0x00];
        let wrap = |oid: &[u8]| {
            let mut alg = vec![0x06, oid.len() as u8];
            alg.extend(oid);
            alg.extend([0x05, 0x00]);
            let mut body = vec![0x02, 0x01, 0x00, 0x30, alg.len() as u8];
            body.extend(alg);
            body.extend([0x04, inner.len() as u8]);
            body.extend(&inner);
            let mut der = vec![0x30, body.len() as u8];
            der.extend(body);
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der))
        };
        let rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        assert_eq!(rsa_pkcs1_der(&wrap(&rsa)).unwrap(), inner);
        let ec = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        assert!(rsa_pkcs1_der(&wrap(&ec)).unwrap_err().contains("RSA key"));
        let pkcs1 = PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(inner.clone()));
        assert_eq!(rsa_pkcs1_der(&pkcs1).unwrap(), inner);
        let cut = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(vec![0x30, 0x82, 0x01]));
        assert!(rsa_pkcs1_der(&cut).unwrap_err().contains("malformed"));
    }

    #[test]
    fn require_with_a_root_file_verifies_the_chain() {
        let p = Path::new("/nonexistent.pem");
        assert_eq!(effective(TlsMode::Require, Some(p)), TlsMode::VerifyCa);
        assert_eq!(effective(TlsMode::Require, None), TlsMode::Require);
        assert_eq!(effective(TlsMode::VerifyFull, Some(p)), TlsMode::VerifyFull);
    }

    #[test]
    fn a_missing_or_empty_root_file_is_an_error_naming_it() {
        let e = client_config(
            TlsMode::VerifyFull,
            Some(Path::new("/nonexistent/ca.pem")),
            None,
        )
        .unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let dir = std::env::temp_dir().join(format!("synctool-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(TlsMode::VerifyCa, Some(&empty), None).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_mode_builds_a_configuration() {
        for m in TlsMode::NAMES {
            let m = TlsMode::parse(m).unwrap();
            assert!(client_config(m, None, None).is_ok());
        }
    }
}
