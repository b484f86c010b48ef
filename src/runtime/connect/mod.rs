//! Database connectors: one per dialect, behind one enum. Each applies the session setup
//! statements on connect and binds every value as a parameter.
//!
//! This file fixes the contract the engine is written against; the bodies live in
//! `postgres.rs`, `mysql.rs` and `clickhouse.rs`.

mod standin;

pub use standin::Conn;

use crate::config::raw::RawDatastore;
use crate::config::Secret;

use crate::sql::DialectKind;
use crate::types::Dtype;

/// Connection settings of a SQL datastore, taken from the config.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    /// Datastore name (for errors).
    pub name: String,
    /// Dialect.
    pub dialect: DialectKind,
    /// Host.
    pub host: String,
    /// Port (dialect default when not configured: 5432, 3306, 8123).
    pub port: u16,
    /// User name.
    pub username: Option<String>,
    /// Password (never logged).
    pub password: Option<Secret>,
    /// Database.
    pub database: Option<String>,
    /// PostgreSQL sslmode (`disable`, `prefer`, `require`) / TLS on for others.
    pub tls: Option<String>,
    /// Connections in the pool.
    pub pool_size: u32,
}

impl ConnSettings {
    /// Settings from a raw datastore entry. `None` for non-SQL datastores.
    pub fn from_raw(d: &RawDatastore) -> Option<ConnSettings> {
        let dialect = match d.kind.value.as_str() {
            "postgres" => DialectKind::Postgres,
            "mysql" => DialectKind::Mysql,
            "clickhouse" => DialectKind::Clickhouse,
            _ => return None,
        };
        let default_port = match dialect {
            DialectKind::Postgres => 5432,
            DialectKind::Mysql => 3306,
            DialectKind::Clickhouse => 8123,
        };
        Some(ConnSettings {
            name: d.name.value.clone(),
            dialect,
            host: d
                .host
                .as_ref()
                .map(|h| h.value.clone())
                .unwrap_or_else(|| "127.0.0.1".into()),
            port: d
                .port
                .as_ref()
                .and_then(|p| u16::try_from(p.value).ok())
                .unwrap_or(default_port),
            username: d.username.as_ref().map(|u| u.value.clone()),
            password: d.password.as_ref().map(|p| p.value.clone()),
            database: d.database.as_ref().map(|x| x.value.clone()),
            tls: d.sslmode.as_ref().map(|s| s.value.clone()).or_else(|| {
                d.tls.as_ref().map(|t| {
                    if t.value {
                        "require".into()
                    } else {
                        "disable".into()
                    }
                })
            }),
            pool_size: d.pool_size.as_ref().map(|p| p.value).unwrap_or(4),
        })
    }

    /// `host:port`, for error messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A statement to run: SQL text from the generator, and typed parameter values in
/// placeholder order.
#[derive(Debug, Clone, Copy)]
pub struct Stmt<'a> {
    /// The step id, for errors (`source.extract`).
    pub step: &'a str,
    /// The SQL text.
    pub sql: &'a str,
    /// Parameter names (ClickHouse binds by name), in placeholder order.
    pub param_names: &'a [String],
    /// Parameter types, in placeholder order.
    pub param_types: &'a [Dtype],
}
