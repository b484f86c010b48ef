//! Database connectors: one per dialect, behind one enum ([`Conn`]). Each applies the
//! session setup statements on connect and binds every value as a parameter.
//!
//! This file fixes the contract the engine is written against; the bodies live in
//! `postgres.rs`, `mysql.rs` and `clickhouse.rs`.
//!
//! # What the connectors do and do not do
//! - They execute the SQL text the generator produced and bind values; the only statements
//!   of their own are protocol-level ones every driver issues itself: `BEGIN` / `COMMIT` /
//!   `ROLLBACK`, and reading the server version (`SHOW server_version` on PostgreSQL,
//!   `SELECT version()` on ClickHouse; MySQL reports it in the handshake).
//! - Results are decoded to [`Value`]s of the dtypes the caller names ([`crate::runtime::values::coerce`]).
//! - TLS (rustls, see [`tls`]): `sslmode` follows libpq on every dialect. PostgreSQL
//!   negotiates it (`prefer`, the default, falls back to plain text; `require` and stronger
//!   never do). MySQL `prefer` tries TLS and falls back when the server has none; the
//!   default there is plain text, as with the driver and MariaDB's client. ClickHouse speaks
//!   `https://` (default port 8443) for `require` and stronger and plain HTTP otherwise.
//! - Pooling: one [`Conn`] is one server session (transactions, temporary tables and session
//!   settings are per session); [`Pool`] hands out at most `pool_size` of them to concurrent
//!   tasks and reuses idle ones.

pub mod ch_text;
pub mod clickhouse;
pub mod mysql;
pub mod postgres;
pub mod rowbinary;
pub mod tls;

use crate::config::raw::RawDatastore;
use crate::config::{Secret, TlsMode};
use crate::expr::Value;
use crate::runtime::{Row, RuntimeError};

use crate::sql::DialectKind;
use crate::types::Dtype;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Connection settings of a SQL datastore, taken from the config.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    /// Datastore name (for errors).
    pub name: String,
    /// Dialect.
    pub dialect: DialectKind,
    /// Host.
    pub host: String,
    /// Port (dialect default when not configured: 5432, 3306, 8123 or 8443 for HTTPS).
    pub port: u16,
    /// User name.
    pub username: Option<String>,
    /// Password (never logged).
    pub password: Option<Secret>,
    /// Database.
    pub database: Option<String>,
    /// How the connection uses TLS (`sslmode`, or `tls: true|false`, or the dialect's
    /// default).
    pub tls: TlsMode,
    /// `sslrootcert`: a PEM file of CA certificates trusted besides the built-in roots.
    pub root_cert: Option<std::path::PathBuf>,
    /// `sslcert` and `sslkey`: the client certificate presented to the server, and its key.
    pub client_cert: Option<tls::ClientCert>,
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
        let tls = match d.tls.mode() {
            Some(m) => m,
            None if dialect == DialectKind::Postgres => TlsMode::Prefer,
            None => TlsMode::Disable,
        };
        let default_port = match dialect {
            DialectKind::Postgres => 5432,
            DialectKind::Mysql => 3306,
            DialectKind::Clickhouse if tls.required() => 8443,
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
            tls,
            root_cert: d.tls.root_cert(),
            client_cert: d
                .tls
                .client_cert()
                .map(|(cert, key)| tls::ClientCert { cert, key }),
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
    /// The result columns' names (for errors; empty when unknown).
    pub columns: &'a [String],
    /// The 0-based result columns holding the pipeline's key, each with the key column's
    /// name, for errors naming a row (empty when the result does not hold the key).
    pub key: &'a [(usize, String)],
}

impl Stmt<'_> {
    /// Result column `i` (1-based) for errors: `3 (flag)`, or `3` when unnamed.
    pub fn column_label(&self, i: usize) -> String {
        match self.columns.get(i.wrapping_sub(1)) {
            Some(name) => format!("{i} (`{name}`)"),
            None => i.to_string(),
        }
    }
}

/// Error construction for one datastore: every message names the datastore, its
/// `host:port` and the step, and has the password removed.
/// A hint for a database's "no such column" error (PostgreSQL SQLSTATE 42703, MySQL 1054,
/// ClickHouse's missing columns or unknown identifier): a column the config names is not
/// in the table, which `validate` cannot know (it reads no database).
fn missing_column_hint(step: &str, message: &str) -> Option<String> {
    let missing = message.contains(" 42703:")
        || message.contains("Unknown column")
        || message.contains("Missing columns")
        || message.contains("Unknown identifier");
    if !missing {
        return None;
    }
    let side = if step.starts_with("source.") || step.contains(".source.") {
        "the source's"
    } else if step.starts_with("sink.") || step.contains(".sink.") {
        "the sink's"
    } else {
        "its"
    };
    Some(format!(
        "a column the config names is not in {side} table or in one it joins: was it dropped or renamed? Compare the `fields`, `filters`, `joins` and reconciliation columns with the table"
    ))
}

#[derive(Clone)]
pub(crate) struct ErrCtx {
    store: String,
    host: String,
    secret: Option<String>,
}

impl std::fmt::Debug for ErrCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrCtx")
            .field("store", &self.store)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl ErrCtx {
    pub(crate) fn new(s: &ConnSettings) -> ErrCtx {
        ErrCtx {
            store: s.name.clone(),
            host: s.address(),
            secret: s
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .filter(|p| !p.is_empty()),
        }
    }

    /// `msg` with every occurrence of the password replaced by `***`.
    pub(crate) fn scrub(&self, msg: impl std::fmt::Display) -> String {
        let m = msg.to_string();
        match &self.secret {
            Some(p) => m.replace(p.as_str(), "***"),
            None => m,
        }
    }

    pub(crate) fn connect(&self, msg: impl std::fmt::Display) -> RuntimeError {
        let mut message = self.scrub(msg);
        if let Some(h) = tls::hint(&message) {
            message = format!("{message} ({h})");
        }
        RuntimeError::Connect {
            store: self.store.clone(),
            host: self.host.clone(),
            message,
        }
    }

    pub(crate) fn stmt(&self, step: &str, msg: impl std::fmt::Display) -> RuntimeError {
        let mut message = self.scrub(msg);
        if let Some(h) = missing_column_hint(step, &message) {
            message = format!("{message} ({h})");
        }
        RuntimeError::Statement {
            store: self.store.clone(),
            host: self.host.clone(),
            step: step.to_string(),
            message,
        }
    }

    /// A statement error the database reports as a conflict with another transaction
    /// ([`RuntimeError::Conflict`]).
    pub(crate) fn conflict(&self, step: &str, msg: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Conflict {
            store: self.store.clone(),
            host: self.host.clone(),
            step: step.to_string(),
            message: self.scrub(msg),
        }
    }

    pub(crate) fn bind(
        &self,
        step: &str,
        index: usize,
        msg: impl std::fmt::Display,
    ) -> RuntimeError {
        RuntimeError::Bind {
            store: self.store.clone(),
            host: self.host.clone(),
            step: step.to_string(),
            index,
            message: self.scrub(msg),
        }
    }

    /// A result cell that does not decode: `column` is 1-based (0: the row as a whole).
    /// `key_cell` decodes the row's cell at a 0-based position, so that the message names
    /// the row by its key when every key cell decodes (not when the key itself failed).
    pub(crate) fn decode(
        &self,
        stmt: &Stmt<'_>,
        column: usize,
        msg: impl std::fmt::Display,
        key_cell: impl Fn(usize) -> Option<Value>,
    ) -> RuntimeError {
        let key: Option<Vec<(&str, Value)>> = stmt
            .key
            .iter()
            .map(|(i, name)| key_cell(*i).map(|v| (name.as_str(), v)))
            .collect();
        let mut column = stmt.column_label(column);
        if let Some(k) = key.filter(|k| !k.is_empty()) {
            let row = crate::runtime::transform::key_label(k.iter().map(|(n, v)| (*n, v)));
            column = format!("{column} of the row {}", self.scrub(row));
        }
        RuntimeError::Decode {
            store: self.store.clone(),
            host: self.host.clone(),
            step: stmt.step.to_string(),
            column,
            message: self.scrub(msg),
        }
    }
}

/// Checks that a statement got as many values as it declares parameters.
pub(crate) fn check_arity(
    ctx: &ErrCtx,
    stmt: &Stmt<'_>,
    params: &[Value],
) -> Result<(), RuntimeError> {
    if stmt.param_types.len() != params.len() {
        return Err(ctx.stmt(
            stmt.step,
            format!(
                "the statement declares {} parameters but {} values were given",
                stmt.param_types.len(),
                params.len()
            ),
        ));
    }
    Ok(())
}

/// Checks that a row to load has one value per column.
pub(crate) fn check_row(
    ctx: &ErrCtx,
    stmt: &Stmt<'_>,
    row: &Row,
    columns: usize,
) -> Result<(), RuntimeError> {
    if row.len() != columns {
        return Err(ctx.stmt(
            stmt.step,
            format!("a row has {} values for {columns} columns", row.len()),
        ));
    }
    Ok(())
}

/// How long establishing a connection may take in all: the TCP connect, the TLS handshake,
/// the login, the version probe and the session statements. Queries after that have no
/// time limit (a sync's statements may rightly run for hours).
pub(crate) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Rows reserved up front for a batch being gathered: a batch grows past this as rows
/// arrive, so that a large `batch_size` costs memory only for the rows really read.
pub(crate) const BATCH_RESERVE: usize = 4096;

/// An empty batch with room for `batch_size` rows, at most [`BATCH_RESERVE`].
pub(crate) fn new_batch(batch_size: usize) -> Vec<Row> {
    Vec::with_capacity(batch_size.min(BATCH_RESERVE))
}

/// The deadline of one connection attempt: every step of the connection establishment
/// runs under it, and a step still waiting when it passes fails with a connect error that
/// names the step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectDeadline {
    at: tokio::time::Instant,
}

impl ConnectDeadline {
    /// [`CONNECT_TIMEOUT`] from now.
    pub(crate) fn start() -> ConnectDeadline {
        ConnectDeadline {
            at: tokio::time::Instant::now() + CONNECT_TIMEOUT,
        }
    }

    /// When the deadline passes.
    pub(crate) fn at(&self) -> tokio::time::Instant {
        self.at
    }

    /// Runs `step` (`work`) unless the deadline passes first.
    pub(crate) async fn run<T>(
        &self,
        ctx: &ErrCtx,
        step: &str,
        work: impl std::future::Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        match tokio::time::timeout_at(self.at, work).await {
            Ok(r) => r,
            Err(_) => Err(ctx.connect(format!(
                "timed out after {} s {step}",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// Sends one batch of rows; `Err` when the receiver is gone.
pub(crate) async fn send_batch(
    tx: &mpsc::Sender<Result<Vec<Row>, RuntimeError>>,
    step: &str,
    batch: Vec<Row>,
) -> Result<(), RuntimeError> {
    tx.send(Ok(batch))
        .await
        .map_err(|_| RuntimeError::ConsumerGone {
            step: step.to_string(),
        })
}

/// One open connection (one server session) to a SQL datastore.
#[derive(Debug)]
pub enum Conn {
    /// PostgreSQL (tokio-postgres).
    Postgres(postgres::PgConn),
    /// MySQL / MariaDB (mysql_async).
    Mysql(mysql::MyConn),
    /// ClickHouse (HTTP interface).
    Clickhouse(clickhouse::ChConn),
}

macro_rules! dispatch {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Conn::Postgres($c) => $e,
            Conn::Mysql($c) => $e,
            Conn::Clickhouse($c) => $e,
        }
    };
}

/// At trace level (`-vvv`), each statement as it is sent: its step and SQL text with the
/// placeholders (values are bound, never part of the text, and never logged).
fn trace_stmt(stmt: &Stmt<'_>, params: usize) {
    tracing::trace!(step = stmt.step, params, "{}", stmt.sql);
}

/// How long a statement runs before [`say_when_slow`] says so.
const SLOW_STATEMENT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a write; when it has not finished after [`SLOW_STATEMENT`], says so once and goes on
/// waiting. A merge or a `CREATE TABLE` that waits for a lock another session holds is
/// otherwise silent, and the run looks hung.
async fn say_when_slow<T>(step: &str, work: impl std::future::Future<Output = T>) -> T {
    let mut work = std::pin::pin!(work);
    tokio::select! {
        done = &mut work => return done,
        () = tokio::time::sleep(SLOW_STATEMENT) => {}
    }
    tracing::warn!(
        "step {step} has been running for {} s and goes on; if it should not take this long, another session may hold a lock on the table",
        SLOW_STATEMENT.as_secs()
    );
    work.await
}

impl Conn {
    /// Connects and runs the session setup statements (`session`, from the SQL generator) in
    /// order. Fails with [`RuntimeError::Connect`] when the server is unreachable, rejects the
    /// credentials, or TLS is required (see the module notes), and with
    /// [`RuntimeError::Statement`] (step `session`) when a setup statement fails.
    pub async fn connect(s: &ConnSettings, session: &[String]) -> Result<Conn, RuntimeError> {
        tracing::trace!(datastore = %s.name, "connecting to {}:{}", s.host, s.port);
        let conn = match s.dialect {
            DialectKind::Postgres => Conn::Postgres(postgres::PgConn::connect(s, session).await?),
            DialectKind::Mysql => Conn::Mysql(mysql::MyConn::connect(s, session).await?),
            DialectKind::Clickhouse => {
                Conn::Clickhouse(clickhouse::ChConn::connect(s, session).await?)
            }
        };
        tracing::trace!(datastore = %s.name, "connected: server version {}", conn.server_version());
        Ok(conn)
    }

    /// The dialect of this connection.
    pub fn dialect(&self) -> DialectKind {
        match self {
            Conn::Postgres(_) => DialectKind::Postgres,
            Conn::Mysql(_) => DialectKind::Mysql,
            Conn::Clickhouse(_) => DialectKind::Clickhouse,
        }
    }

    /// The server's version text, read once on connect (`15.18`, `10.11.19-MariaDB…`,
    /// `18.16.1`).
    pub fn server_version(&self) -> &str {
        dispatch!(self, c => c.server_version())
    }

    /// Runs a statement and returns the number of rows it affected (ClickHouse does not
    /// report it over HTTP: always 0 there).
    pub async fn execute(&mut self, stmt: Stmt<'_>, params: &[Value]) -> Result<u64, RuntimeError> {
        let step = stmt.step;
        trace_stmt(&stmt, params.len());
        say_when_slow(step, async {
            dispatch!(self, c => c.execute(stmt, params).await)
        })
        .await
    }

    /// Runs a query and returns all its rows, each column decoded as `out[i]`. For small
    /// results (ranges, block hashes, leaf diffs); use [`Conn::stream`] for table reads.
    pub async fn query(
        &mut self,
        stmt: Stmt<'_>,
        params: &[Value],
        out: &[Dtype],
    ) -> Result<Vec<Row>, RuntimeError> {
        trace_stmt(&stmt, params.len());
        let rows = dispatch!(self, c => c.query(stmt, params, out).await)?;
        tracing::trace!(step = stmt.step, "{} rows", rows.len());
        Ok(rows)
    }

    /// Runs a query and sends its rows to `tx` in batches of `batch_size` (the last one may
    /// be shorter) as they arrive from the server. The bounded channel is the backpressure:
    /// while it is full nothing more is read from the server, so memory stays at about
    /// `(channel capacity + 1) × batch_size` rows however large the result. Returns the
    /// number of rows sent. A decode or server error is returned (not sent); a dropped
    /// receiver ends the stream with [`RuntimeError::ConsumerGone`].
    pub async fn stream(
        &mut self,
        stmt: Stmt<'_>,
        params: &[Value],
        out: &[Dtype],
        batch_size: usize,
        tx: mpsc::Sender<Result<Vec<Row>, RuntimeError>>,
    ) -> Result<u64, RuntimeError> {
        let batch_size = batch_size.max(1);
        trace_stmt(&stmt, params.len());
        dispatch!(self, c => c.stream(stmt, params, out, batch_size, tx).await)
    }

    /// Starts a transaction (a no-op on ClickHouse, which has none: each statement is
    /// atomic per block, and the merge strategies there are idempotent instead).
    pub async fn begin(&mut self) -> Result<(), RuntimeError> {
        dispatch!(self, c => c.begin().await)
    }

    /// Commits the open transaction (no-op on ClickHouse).
    pub async fn commit(&mut self) -> Result<(), RuntimeError> {
        dispatch!(self, c => c.commit().await)
    }

    /// Rolls the open transaction back (no-op on ClickHouse).
    pub async fn rollback(&mut self) -> Result<(), RuntimeError> {
        dispatch!(self, c => c.rollback().await)
    }

    /// Bulk-loads `rows` the fastest way the database offers, with the load statement the
    /// generator produced for this dialect:
    /// - PostgreSQL: `COPY t (cols) FROM STDIN (FORMAT binary)` ([`postgres::PgConn::copy_in`]);
    /// - MySQL: `LOAD DATA LOCAL INFILE` ([`mysql::MyConn::load_data`]; where the server
    ///   refuses it, see [`Conn::insert_rows`]);
    /// - ClickHouse: `INSERT INTO t (cols) FORMAT RowBinary`
    ///   ([`clickhouse::ChConn::insert_row_binary`]).
    ///
    /// `types[i]` is column `i`'s dtype and `nullable[i]` whether it may hold NULL;
    /// `natives` are the target table's own column types when it was not created with the
    /// generator's types (empty otherwise). Only ClickHouse needs the last two: RowBinary
    /// has a NULL marker byte only for `Nullable` columns and a width per integer type.
    /// Returns the number of rows written.
    pub async fn load(
        &mut self,
        stmt: Stmt<'_>,
        types: &[Dtype],
        nullable: &[bool],
        natives: &[String],
        rows: &[Row],
    ) -> Result<u64, RuntimeError> {
        let step = stmt.step;
        trace_stmt(&stmt, 0);
        tracing::trace!(step, "loading {} rows", rows.len());
        say_when_slow(step, async {
            match self {
                Conn::Postgres(c) => c.copy_in(stmt, types, natives, rows).await,
                Conn::Mysql(c) => c.load_data(stmt, types, rows).await,
                Conn::Clickhouse(c) => {
                    c.insert_row_binary(stmt, types, nullable, natives, rows)
                        .await
                }
            }
        })
        .await
    }

    /// [`Conn::load`] for a sync that loads many batches in a row: on ClickHouse the rows go
    /// into an insert whose body stays open across calls
    /// ([`clickhouse::ChConn::stream_row_binary`]) until [`Conn::end_streams`] or the next
    /// other statement; elsewhere this is [`Conn::load`].
    pub async fn stream_load(
        &mut self,
        stmt: Stmt<'_>,
        types: &[Dtype],
        nullable: &[bool],
        natives: &[String],
        rows: &[Row],
    ) -> Result<u64, RuntimeError> {
        match self {
            Conn::Clickhouse(c) => {
                c.stream_row_binary(stmt, types, nullable, natives, rows)
                    .await
            }
            other => other.load(stmt, types, nullable, natives, rows).await,
        }
    }

    /// Ends the inserts [`Conn::stream_load`] left open and reports their outcome.
    pub async fn end_streams(&mut self) -> Result<(), RuntimeError> {
        match self {
            Conn::Clickhouse(c) => c.end_streams().await,
            _ => Ok(()),
        }
    }

    /// MySQL's fallback load: a multi-row `INSERT … VALUES (?,…),…` for exactly
    /// `rows.len()` rows ([`mysql::MyConn::insert_rows`]). The other dialects always bulk-load.
    pub async fn insert_rows(
        &mut self,
        stmt: Stmt<'_>,
        types: &[Dtype],
        rows: &[Row],
    ) -> Result<u64, RuntimeError> {
        trace_stmt(&stmt, rows.len() * types.len());
        match self {
            Conn::Mysql(c) => c.insert_rows(stmt, types, rows).await,
            other => Err(RuntimeError::Config(format!(
                "step {}: multi-row INSERT loads are MySQL's fallback, not {}'s",
                stmt.step,
                other.dialect().name()
            ))),
        }
    }

    /// True when the connection can go back to a pool: no transaction open, and not known
    /// to be broken.
    pub fn is_reusable(&self) -> bool {
        dispatch!(self, c => c.is_reusable())
    }
}

/// A small connection pool for one datastore: at most `pool_size` connections are handed
/// out at a time, idle ones are reused, and every new one runs the session setup. Cheap to
/// clone (all clones share the pool).
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    settings: ConnSettings,
    session: Vec<String>,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("store", &self.inner.settings.name)
            .field("size", &self.inner.settings.pool_size)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool for `settings` (no connection is opened until [`Pool::get`]). A `pool_size`
    /// of 0 is treated as 1.
    pub fn new(settings: ConnSettings, session: Vec<String>) -> Pool {
        let size = settings.pool_size.max(1) as usize;
        Pool {
            inner: Arc::new(PoolInner {
                settings,
                session,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(size)),
            }),
        }
    }

    /// A connection: an idle one, or a new one when fewer than `pool_size` are open. Waits
    /// while all are in use. The connection returns to the pool when the guard drops, unless
    /// a transaction is still open or it is broken.
    pub async fn get(&self) -> Result<PooledConn, RuntimeError> {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .expect("the pool semaphore is never closed");
        let idle = self.inner.idle.lock().expect("pool lock").pop();
        let conn = match idle {
            Some(c) => c,
            None => Conn::connect(&self.inner.settings, &self.inner.session).await?,
        };
        Ok(PooledConn {
            conn: Some(conn),
            pool: Arc::clone(&self.inner),
            _permit: permit,
        })
    }
}

/// A connection borrowed from a [`Pool`]; dereferences to [`Conn`].
pub struct PooledConn {
    conn: Option<Conn>,
    pool: Arc<PoolInner>,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for PooledConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConn")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for PooledConn {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            if c.is_reusable() {
                if let Ok(mut idle) = self.pool.idle.lock() {
                    idle.push(c);
                }
            }
        }
    }
}

/// Run a streaming query to the end and keep every row (for small results: ranges, block
/// hashes, leaf diffs). `run` is the connector's `stream` call given the channel's sender.
pub(crate) async fn collect<F, Fut>(run: F) -> Result<Vec<Row>, RuntimeError>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Vec<Row>, RuntimeError>>) -> Fut,
    Fut: std::future::Future<Output = Result<u64, RuntimeError>>,
{
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut all = Vec::new();
    let collect = async {
        let mut rx = rx;
        while let Some(b) = rx.recv().await {
            all.extend(b?);
        }
        Ok::<(), RuntimeError>(())
    };
    let (r, c) = tokio::join!(run(tx), collect);
    r?;
    c?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::missing_column_hint;

    #[test]
    fn a_missing_column_error_says_which_side_to_check() {
        let pg = "ERROR 42703: column \"code\" does not exist";
        let h = missing_column_hint("recon.r.source.nulls", pg).unwrap();
        assert!(h.contains("the source's table"), "{h}");
        let my = "Server error: `ERROR 42S22 (1054): Unknown column 'code' in 'field list''";
        assert!(missing_column_hint("sink.merge", my)
            .unwrap()
            .contains("the sink's table"));
        let ch = "Code: 47, e.displayText() = DB::Exception: Missing columns: 'code' while processing query";
        assert!(missing_column_hint("source.extract", ch).is_some());
        assert!(
            missing_column_hint("source.extract", "ERROR 42P01: relation does not exist").is_none()
        );
    }
}
