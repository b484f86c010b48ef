//! SQL generation: IR → sqlparser AST → text, one generator for every dialect.
//!
//! [`generate`] turns one pipeline into the [`SqlStep`]s the runtime executes; the runtime
//! builds no SQL text of its own. Every identifier is quoted by the datastore's [`Dialect`],
//! every value from the config or the data is a bound parameter, and the output depends only
//! on the IR (same IR, same bytes).

mod build;
pub mod dialect;
mod error;
mod generate;
pub mod hash;
mod lock;
mod params;
pub mod pushdown;
mod recon;
mod sink;
mod source;
mod step;
#[cfg(test)]
mod testing;

pub use dialect::{Dialect, DialectKind};
pub use error::SqlError;
pub use generate::{direct_insert, generate, stage_insert, stage_keys_insert};
pub use lock::{
    mysql_name, pg_key, P_HOLDER, P_KEY, P_NAME, P_RELEASED, P_RUN, P_SCOPE, STALE_SECS, TRIM_EVERY,
};
pub use recon::{compares_window, ends_inclusively};
pub use sink::{GATHER_BYTES, GATHER_ROWS};
pub use source::text_key_columns;
pub use step::{Param, Side, SqlStep, Stmt};
#[cfg(test)]
mod tests;
