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

/// This process's name on the servers: host, process id and start time
/// (`host:pid:nanos`). A ClickHouse run lock's holder starts with it, and so does the
/// `query_id` of every ClickHouse query the process sends (`<run id>/<n>`), so that the
/// next run into a scope can wait for the queries of a run that stopped (interrupted, or
/// killed) while the server still runs them.
pub fn run_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".to_string());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // `/` and `#` separate the parts of query ids and holders.
        let host: String = host
            .chars()
            .map(|c| if c == '/' || c == '#' { '_' } else { c })
            .collect();
        format!("{host}:{}:{nanos}", std::process::id())
    })
}

/// One row, in the column order of the statement that produced it.
pub type Row = Vec<crate::expr::Value>;
pub use connect::{Conn, ConnSettings, Pool, PooledConn, Stmt};
