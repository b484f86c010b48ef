//! TLS settings of a database datastore as the config spells them: `sslmode` (libpq's
//! vocabulary, on every SQL datastore), the older `tls: true|false`, and `sslrootcert`.

/// How a connection uses TLS. The names and meanings are libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text only.
    Disable,
    /// Treated as [`TlsMode::Prefer`] on PostgreSQL; plain text on MySQL and ClickHouse.
    Allow,
    /// PostgreSQL: TLS when the server offers it, without verifying its certificate, else
    /// plain text. MySQL: the same. ClickHouse (HTTP has no negotiation): plain text.
    Prefer,
    /// TLS or no connection, without verifying the certificate (unless `sslrootcert` is
    /// set: then as [`TlsMode::VerifyCa`], as libpq does).
    Require,
    /// TLS, and the certificate chain must lead to a trusted root; the host name is not
    /// checked.
    VerifyCa,
    /// TLS, a trusted chain, and a certificate issued for the host connected to.
    VerifyFull,
}

impl TlsMode {
    /// Every `sslmode` value, in the order of increasing protection.
    pub const NAMES: [&'static str; 6] = [
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ];

    /// Parse an `sslmode` value (case-insensitive).
    pub fn parse(s: &str) -> Option<TlsMode> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "disable" => TlsMode::Disable,
            "allow" => TlsMode::Allow,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" | "verify_ca" => TlsMode::VerifyCa,
            "verify-full" | "verify_full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }

    /// The config spelling.
    pub fn name(&self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Allow => "allow",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    /// The mode of `tls: true` (verified, like an `https://` URL) and `tls: false`.
    pub fn from_flag(on: bool) -> TlsMode {
        if on {
            TlsMode::VerifyFull
        } else {
            TlsMode::Disable
        }
    }

    /// True when the connection must be encrypted (no plain-text fallback).
    pub fn required(&self) -> bool {
        matches!(
            self,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_mode() {
        for n in TlsMode::NAMES {
            assert_eq!(TlsMode::parse(n).map(|m| m.name()), Some(n));
        }
        assert_eq!(TlsMode::parse(" Verify-Full "), Some(TlsMode::VerifyFull));
        assert_eq!(TlsMode::parse("on"), None);
        assert!(!TlsMode::Prefer.required() && TlsMode::Require.required());
        assert_eq!(TlsMode::from_flag(true), TlsMode::VerifyFull);
    }
}
