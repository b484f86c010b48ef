//! SQL generation: IR → sqlparser AST → text, one generator for every dialect.

pub mod dialect;

pub use dialect::{Dialect, DialectKind};
pub mod pushdown;
