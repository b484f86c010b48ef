//! Stage 5: the runtime — the only layer with I/O. It executes the statements the SQL
//! generator produced (it builds no SQL text of its own), streams rows, enriches them, merges
//! them into the sink and reconciles by block hashes.

pub mod connect;
pub mod engine;
pub mod enrich;
pub mod error;
pub mod nats;
pub mod retry;
pub mod transform;
pub mod values;
pub mod webhook;

pub use error::RuntimeError;

/// One row, in the column order of the statement that produced it.
pub type Row = Vec<crate::expr::Value>;
pub use connect::{Conn, ConnSettings, Pool, PooledConn, Stmt};
