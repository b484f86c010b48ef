//! The SQL dialects synctool emits, and the capabilities that differ between them.
//!
//! Everything dialect-specific (identifier quoting, placeholders, column types, hash and
//! date functions) sits behind [`Dialect`]; the generator in this folder is written once
//! against the trait.

use sqlparser::ast::Ident;

/// Which database a statement is for. Serialised as the datastore type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DialectKind {
    /// PostgreSQL (placeholders `$1`).
    Postgres,
    /// MySQL / MariaDB (placeholders `?`).
    Mysql,
    /// ClickHouse (placeholders `{name:Type}`).
    Clickhouse,
}

impl DialectKind {
    /// The datastore type name (`postgres`, `mysql`, `clickhouse`).
    pub fn name(&self) -> &'static str {
        match self {
            DialectKind::Postgres => "postgres",
            DialectKind::Mysql => "mysql",
            DialectKind::Clickhouse => "clickhouse",
        }
    }

    /// The dialect implementation for this kind.
    pub fn dialect(&self) -> &'static dyn Dialect {
        match self {
            DialectKind::Postgres => &Postgres,
            DialectKind::Mysql => &Mysql,
            DialectKind::Clickhouse => &Clickhouse,
        }
    }
}

/// Dialect capabilities used by the generator.
pub trait Dialect: Sync {
    /// Which dialect this is.
    fn kind(&self) -> DialectKind;

    /// The identifier quote character.
    fn quote_char(&self) -> char;

    /// A quoted identifier.
    fn ident(&self, name: &str) -> Ident {
        Ident::with_quote(self.quote_char(), name)
    }
}

/// PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct Postgres;
/// MySQL and MariaDB.
#[derive(Debug, Clone, Copy)]
pub struct Mysql;
/// ClickHouse.
#[derive(Debug, Clone, Copy)]
pub struct Clickhouse;

impl Dialect for Postgres {
    fn kind(&self) -> DialectKind {
        DialectKind::Postgres
    }
    fn quote_char(&self) -> char {
        '"'
    }
}

impl Dialect for Mysql {
    fn kind(&self) -> DialectKind {
        DialectKind::Mysql
    }
    fn quote_char(&self) -> char {
        '`'
    }
}

impl Dialect for Clickhouse {
    fn kind(&self) -> DialectKind {
        DialectKind::Clickhouse
    }
    fn quote_char(&self) -> char {
        '"'
    }
}
