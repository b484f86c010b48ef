//! SQL generation: IR → sqlparser AST → text, one generator for every dialect.

pub mod dialect;
pub mod hash;

pub use dialect::{Dialect, DialectKind};
