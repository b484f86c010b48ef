//! SQL generation: IR → sqlparser AST → text, one generator for every dialect.

pub mod dialect;
pub mod pushdown;

pub use dialect::{Dialect, DialectKind};
mod interim;
pub use interim::{generate, Param, SqlError, SqlStep};
