//! PostgreSQL connector (tokio-postgres, binary protocol).
//!
//! Parameters are bound in binary, encoded for the type the server inferred for each `$n`
//! (so `uuid_col = $1` gets a UUID, `numeric_col >= $1` an exact NUMERIC); a statement whose
//! parameter types the server cannot infer is prepared again with the types of the given
//! dtypes. Results are decoded from binary (NUMERIC exactly, timestamps to the microsecond)
//! and then coerced to the requested dtypes. Streams read the row stream of the extended
//! protocol, which tokio-postgres delivers through a bounded channel: a slow consumer stops
//! the socket from being read.

use super::{
    check_arity, check_row, new_batch, send_batch, tls, ConnSettings, ConnectDeadline, ErrCtx, Stmt,
};
use crate::config::TlsMode;
use crate::expr::value::Decimal;
use crate::expr::Value;
use crate::runtime::values::{self, coerce, decimal_fixed_text, kind_name};
use crate::runtime::{Row, RuntimeError};
use crate::types::Dtype;
use bytes::{BufMut, BytesMut};
use chrono::NaiveDate;
use futures_util::{SinkExt, TryStreamExt};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, Kind, ToSql, Type};
use tokio_postgres::{Client, Config, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

type BoxError = Box<dyn StdError + Sync + Send>;

/// Prepared statements kept per connection before the cache is emptied.
const STMT_CACHE: usize = 256;

/// Bytes of COPY data sent per message.
const COPY_CHUNK: usize = 256 * 1024;

/// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// An open PostgreSQL session.
pub struct PgConn {
    client: Client,
    ctx: ErrCtx,
    version: String,
    stmts: HashMap<String, Statement>,
    in_tx: bool,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("ctx", &self.ctx)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// The PostgreSQL type a dtype is bound and bulk-loaded as (the generator's column types).
pub fn pg_type(d: Dtype) -> Type {
    match d {
        Dtype::Int => Type::INT8,
        Dtype::Float => Type::FLOAT8,
        Dtype::Decimal { .. } => Type::NUMERIC,
        Dtype::Str => Type::TEXT,
        Dtype::Bool => Type::BOOL,
        Dtype::Date => Type::DATE,
        Dtype::Datetime => Type::TIMESTAMPTZ,
        Dtype::Uuid => Type::UUID,
        Dtype::Json => Type::JSONB,
    }
}

/// SQLSTATEs of a transaction the server aborted because it conflicted with another
/// (serialization_failure, deadlock_detected): the same transaction may succeed when run
/// again.
const CONFLICT_STATES: [SqlState; 2] = [
    SqlState::T_R_SERIALIZATION_FAILURE,
    SqlState::T_R_DEADLOCK_DETECTED,
];

/// A statement's driver error: [`RuntimeError::Conflict`] for the states in
/// [`CONFLICT_STATES`], [`RuntimeError::Statement`] otherwise.
fn pg_err(ctx: &ErrCtx, step: &str, e: &tokio_postgres::Error) -> RuntimeError {
    match e.code() {
        Some(code) if CONFLICT_STATES.contains(code) => ctx.conflict(step, pg_msg(e)),
        _ => ctx.stmt(step, pg_msg(e)),
    }
}

/// The binary layout for a column PostgreSQL lists as `native` (`sink.columns`: the
/// `data_type`, with length or precision): integers and floats by width, `json` without
/// and `jsonb` with a version byte, `timestamp` with or without time zone, and text for
/// the character types and user-defined ones (enums and `citext` take their text in
/// binary COPY). Anything else is laid out as `dtype`'s own type.
fn native_type(native: &str, dtype: Dtype) -> Type {
    let n = native.trim().to_ascii_lowercase();
    match n.split('(').next().unwrap_or("").trim() {
        "smallint" => Type::INT2,
        "integer" => Type::INT4,
        "bigint" => Type::INT8,
        "real" => Type::FLOAT4,
        "double precision" => Type::FLOAT8,
        "numeric" => Type::NUMERIC,
        "boolean" => Type::BOOL,
        "date" => Type::DATE,
        "uuid" => Type::UUID,
        "json" => Type::JSON,
        "jsonb" => Type::JSONB,
        "text" | "character varying" | "character" | "user-defined" => Type::TEXT,
        t if t.starts_with("timestamp") => {
            if n.contains("with time zone") {
                Type::TIMESTAMPTZ
            } else {
                Type::TIMESTAMP
            }
        }
        _ => pg_type(dtype),
    }
}

/// A driver error as text: the server's severity, SQLSTATE, message, detail and hint, or
/// the client-side error with its causes.
fn pg_msg(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut m = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(d) = db.detail() {
            m.push_str(&format!(" (detail: {d})"));
        }
        if let Some(h) = db.hint() {
            m.push_str(&format!(" (hint: {h})"));
        }
        // Where the error happened, e.g. `COPY t, line 5, column name`: the row of the batch
        // (binary COPY shows no values here).
        if let Some(w) = db.where_() {
            m.push_str(&format!(" (context: {w})"));
        }
        return m;
    }
    let mut m = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        m.push_str(&format!(": {s}"));
        src = s.source();
    }
    m
}

/// A driver error while connecting: [`pg_msg`], except that a server which answered
/// something other than the PostgreSQL protocol (another service on the port) is named
/// as such rather than by the decoder's complaint (`bytes remaining on stream`).
fn connect_msg(e: &tokio_postgres::Error) -> String {
    let m = pg_msg(e);
    if e.as_db_error().is_none()
        && [
            "bytes remaining on stream",
            "unexpected message from server",
            "error parsing response from server",
            "invalid message length",
            "unknown authentication",
        ]
        .iter()
        .any(|p| m.contains(p))
    {
        return format!("the server did not answer as PostgreSQL (is another service listening on this port?): {m}");
    }
    m
}

/// Bytes of TLS records gathered before a write to the socket.
const TLS_WRITE_BUFFER: usize = 256 * 1024;

type BufferedSocket = tokio::io::BufWriter<tokio_postgres::Socket>;

/// rustls for tokio-postgres with a write buffer under the TLS layer. tokio-rustls writes
/// each 16 KB record with its own system call (tokio-postgres' socket has no vectored
/// writes), which wakes the server once per record; buffered, a COPY chunk leaves in one
/// write. tokio-rustls flushes during the handshake and tokio-postgres after each request,
/// so nothing waits in the buffer.
struct BufferedTls(MakeRustlsConnect);

/// The connector [`BufferedTls`] makes for one connection.
struct BufferedConnect<T>(T);

impl MakeTlsConnect<tokio_postgres::Socket> for BufferedTls {
    type Stream = <MakeRustlsConnect as MakeTlsConnect<BufferedSocket>>::Stream;
    type TlsConnect =
        BufferedConnect<<MakeRustlsConnect as MakeTlsConnect<BufferedSocket>>::TlsConnect>;
    type Error = <MakeRustlsConnect as MakeTlsConnect<BufferedSocket>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        MakeTlsConnect::<BufferedSocket>::make_tls_connect(&mut self.0, domain).map(BufferedConnect)
    }
}

impl<T: TlsConnect<BufferedSocket>> TlsConnect<tokio_postgres::Socket> for BufferedConnect<T> {
    type Stream = T::Stream;
    type Error = T::Error;
    type Future = T::Future;

    fn connect(self, stream: tokio_postgres::Socket) -> T::Future {
        self.0.connect(tokio::io::BufWriter::with_capacity(
            TLS_WRITE_BUFFER,
            stream,
        ))
    }
}

impl PgConn {
    /// Connects (TLS as `sslmode` says, see [`super::tls`]) and runs `session`.
    pub async fn connect(s: &ConnSettings, session: &[String]) -> Result<PgConn, RuntimeError> {
        let ctx = ErrCtx::new(s);
        let mut cfg = Config::new();
        cfg.host(&s.host)
            .port(s.port)
            .application_name("synctool")
            .connect_timeout(Duration::from_secs(10));
        if let Some(u) = &s.username {
            cfg.user(u);
        }
        if let Some(p) = &s.password {
            cfg.password(p.expose());
        }
        if let Some(db) = &s.database {
            cfg.dbname(db);
        }
        cfg.ssl_mode(match s.tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Allow | TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
        // With `disable` the connector is never asked for a TLS stream.
        let tls = tls::client_config(s.tls, s.root_cert.as_deref(), s.client_cert.as_ref())
            .map_err(|e| ctx.connect(e))?;
        // The whole establishment runs under one deadline: a port that accepts TCP but never
        // answers (another service, a stuck proxy) must not hang the run.
        let deadline = ConnectDeadline::start();
        let (client, connection) = deadline
            .run(
                &ctx,
                "in the connection handshake (TCP connect, TLS, login): the server accepted no connection or did not answer as PostgreSQL",
                async {
                    cfg.connect(BufferedTls(MakeRustlsConnect::new(tls)))
                        .await
                        .map_err(|e| ctx.connect(connect_msg(&e)))
                },
            )
            .await?;
        let store = s.name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(datastore = %store, "PostgreSQL connection closed: {}", pg_msg(&e));
            }
        });
        let version = deadline
            .run(
                &ctx,
                "waiting for the server version (SHOW server_version)",
                async {
                    match client
                        .simple_query("SHOW server_version")
                        .await
                        .map_err(|e| ctx.connect(connect_msg(&e)))?
                        .into_iter()
                        .find_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(r) => {
                                r.get(0).map(str::to_string)
                            }
                            _ => None,
                        }) {
                        Some(v) => Ok(v),
                        None => Err(ctx.connect("the server did not report its version")),
                    }
                },
            )
            .await?;
        deadline
            .run(&ctx, "running the session statements", async {
                for stmt in session {
                    client
                        .batch_execute(stmt)
                        .await
                        .map_err(|e| ctx.stmt("session", pg_msg(&e)))?;
                }
                Ok(())
            })
            .await?;
        Ok(PgConn {
            client,
            ctx,
            version,
            stmts: HashMap::new(),
            in_tx: false,
        })
    }

    /// The server version (`15.18 (Debian …)`).
    pub fn server_version(&self) -> &str {
        &self.version
    }

    /// True when no transaction is open and the socket is alive.
    pub fn is_reusable(&self) -> bool {
        !self.in_tx && !self.client.is_closed()
    }

    async fn prepare(&mut self, stmt: &Stmt<'_>) -> Result<Statement, RuntimeError> {
        if let Some(s) = self.stmts.get(stmt.sql) {
            return Ok(s.clone());
        }
        let prepared = match self.client.prepare(stmt.sql).await {
            Ok(s) => s,
            Err(e) if e.code() == Some(&SqlState::INDETERMINATE_DATATYPE) => {
                let types: Vec<Type> = stmt.param_types.iter().map(|d| pg_type(*d)).collect();
                self.client
                    .prepare_typed(stmt.sql, &types)
                    .await
                    .map_err(|e| pg_err(&self.ctx, stmt.step, &e))?
            }
            Err(e) => return Err(pg_err(&self.ctx, stmt.step, &e)),
        };
        if self.stmts.len() >= STMT_CACHE {
            self.stmts.clear();
        }
        self.stmts.insert(stmt.sql.to_string(), prepared.clone());
        Ok(prepared)
    }

    fn coerce_params(&self, stmt: &Stmt<'_>, params: &[Value]) -> Result<Vec<Value>, RuntimeError> {
        check_arity(&self.ctx, stmt, params)?;
        params
            .iter()
            .zip(stmt.param_types)
            .enumerate()
            .map(|(i, (v, d))| {
                coerce(v.clone(), *d).map_err(|m| self.ctx.bind(stmt.step, i + 1, m))
            })
            .collect()
    }

    /// Runs a statement; returns the rows affected. Without parameters it goes through the
    /// simple protocol (so DDL and several `;`-separated statements work; the count is the
    /// sum over them).
    pub async fn execute(&mut self, stmt: Stmt<'_>, params: &[Value]) -> Result<u64, RuntimeError> {
        if params.is_empty() && stmt.param_types.is_empty() {
            let msgs = self
                .client
                .simple_query(stmt.sql)
                .await
                .map_err(|e| pg_err(&self.ctx, stmt.step, &e))?;
            return Ok(msgs
                .iter()
                .map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::CommandComplete(n) => *n,
                    _ => 0,
                })
                .sum());
        }
        let vals = self.coerce_params(&stmt, params)?;
        let prepared = self.prepare(&stmt).await?;
        let args: Vec<PgParam<'_>> = vals.iter().map(PgParam).collect();
        self.client
            .execute_raw(&prepared, args.iter().map(|a| a as &dyn ToSql))
            .await
            .map_err(|e| pg_err(&self.ctx, stmt.step, &e))
    }

    /// Runs a query and returns every row decoded as `out`.
    pub async fn query(
        &mut self,
        stmt: Stmt<'_>,
        params: &[Value],
        out: &[Dtype],
    ) -> Result<Vec<Row>, RuntimeError> {
        let vals = self.coerce_params(&stmt, params)?;
        let prepared = self.prepare(&stmt).await?;
        self.check_columns(&stmt, &prepared, out)?;
        let args: Vec<PgParam<'_>> = vals.iter().map(PgParam).collect();
        let rows = self
            .client
            .query_raw(&prepared, args.iter().map(|a| a as &dyn ToSql))
            .await
            .map_err(|e| pg_err(&self.ctx, stmt.step, &e))?;
        let mut rows = std::pin::pin!(rows);
        let mut all = Vec::new();
        while let Some(r) = rows
            .try_next()
            .await
            .map_err(|e| pg_err(&self.ctx, stmt.step, &e))?
        {
            all.push(self.decode_row(&stmt, &r, out)?);
        }
        Ok(all)
    }

    /// Streams a query's rows in batches (see [`super::Conn::stream`]).
    pub async fn stream(
        &mut self,
        stmt: Stmt<'_>,
        params: &[Value],
        out: &[Dtype],
        batch_size: usize,
        tx: mpsc::Sender<Result<Vec<Row>, RuntimeError>>,
    ) -> Result<u64, RuntimeError> {
        let vals = self.coerce_params(&stmt, params)?;
        let prepared = self.prepare(&stmt).await?;
        self.check_columns(&stmt, &prepared, out)?;
        let args: Vec<PgParam<'_>> = vals.iter().map(PgParam).collect();
        let rows = self
            .client
            .query_raw(&prepared, args.iter().map(|a| a as &dyn ToSql))
            .await
            .map_err(|e| pg_err(&self.ctx, stmt.step, &e))?;
        let mut rows = std::pin::pin!(rows);
        let mut batch = new_batch(batch_size);
        let mut n = 0u64;
        while let Some(r) = rows
            .try_next()
            .await
            .map_err(|e| pg_err(&self.ctx, stmt.step, &e))?
        {
            batch.push(self.decode_row(&stmt, &r, out)?);
            n += 1;
            if batch.len() == batch_size {
                let full = std::mem::replace(&mut batch, new_batch(batch_size));
                send_batch(&tx, stmt.step, full).await?;
            }
        }
        if !batch.is_empty() {
            send_batch(&tx, stmt.step, batch).await?;
        }
        Ok(n)
    }

    fn check_columns(
        &self,
        stmt: &Stmt<'_>,
        prepared: &Statement,
        out: &[Dtype],
    ) -> Result<(), RuntimeError> {
        if prepared.columns().len() != out.len() {
            return Err(self.ctx.stmt(
                stmt.step,
                format!(
                    "the query returns {} columns but {} dtypes were given",
                    prepared.columns().len(),
                    out.len()
                ),
            ));
        }
        Ok(())
    }

    fn decode_row(
        &self,
        stmt: &Stmt<'_>,
        r: &tokio_postgres::Row,
        out: &[Dtype],
    ) -> Result<Row, RuntimeError> {
        let cell = |i: usize| -> Result<Value, String> {
            // The cause alone: the driver's own text counts columns from 0.
            let source = |e: tokio_postgres::Error| {
                std::error::Error::source(&e).map_or_else(|| pg_msg(&e), |c| c.to_string())
            };
            if out[i] == Dtype::Str && *r.columns()[i].type_() == Type::NUMERIC {
                // Read as `str`: the server's text, however many digits.
                let cell: Option<NumericText> = r.try_get(i).map_err(source)?;
                return Ok(cell.map_or(Value::Null, |t| Value::Str(t.0)));
            }
            let cell: PgCell = r.try_get(i).map_err(source)?;
            coerce(cell.0, out[i])
        };
        (0..out.len())
            .map(|i| cell(i).map_err(|m| self.ctx.decode(stmt, i + 1, m, |k| cell(k).ok())))
            .collect()
    }

    /// Starts a transaction.
    pub async fn begin(&mut self) -> Result<(), RuntimeError> {
        self.control("BEGIN", "begin").await?;
        self.in_tx = true;
        Ok(())
    }

    /// Commits.
    pub async fn commit(&mut self) -> Result<(), RuntimeError> {
        let r = self.control("COMMIT", "commit").await;
        self.in_tx = false;
        r
    }

    /// Rolls back.
    pub async fn rollback(&mut self) -> Result<(), RuntimeError> {
        let r = self.control("ROLLBACK", "rollback").await;
        self.in_tx = false;
        r
    }

    async fn control(&mut self, sql: &str, step: &str) -> Result<(), RuntimeError> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| pg_err(&self.ctx, step, &e))
    }

    /// Bulk-loads `rows` with `COPY <table> (cols) FROM STDIN (FORMAT binary)` (the
    /// generator's statement), each column encoded as [`pg_type`] of `types[i]` — the
    /// target columns must have those types (the generator's staging tables do). The rows
    /// are encoded straight into the COPY buffer, which is sent in chunks of about
    /// [`COPY_CHUNK`] bytes.
    pub async fn copy_in(
        &mut self,
        stmt: Stmt<'_>,
        types: &[Dtype],
        natives: &[String],
        rows: &[Row],
    ) -> Result<u64, RuntimeError> {
        let pg_types: Vec<Type> = types
            .iter()
            .enumerate()
            .map(|(i, d)| match natives.get(i).filter(|n| !n.is_empty()) {
                Some(n) => native_type(n, *d),
                None => pg_type(*d),
            })
            .collect();
        let sink = self
            .client
            .copy_in::<_, bytes::Bytes>(stmt.sql)
            .await
            .map_err(|e| pg_err(&self.ctx, stmt.step, &e))?;
        let mut sink = std::pin::pin!(sink);
        let mut buf = BytesMut::with_capacity(COPY_CHUNK + 64 * 1024);
        buf.put_slice(b"PGCOPY\n\xff\r\n\0");
        buf.put_i32(0);
        buf.put_i32(0);
        let fields = i16::try_from(types.len())
            .map_err(|_| self.ctx.stmt(stmt.step, "too many columns for COPY"))?;
        for row in rows {
            check_row(&self.ctx, &stmt, row, types.len())?;
            buf.put_i16(fields);
            for (i, ((v, d), ty)) in row.iter().zip(types).zip(&pg_types).enumerate() {
                let bind_err = |m: String| self.ctx.bind(stmt.step, i + 1, m);
                let v = values::coerce_ref(v, *d).map_err(bind_err)?;
                let at = buf.len();
                buf.put_i32(0);
                match encode_param(&v, ty, &mut buf).map_err(|e| bind_err(e.to_string()))? {
                    IsNull::Yes => {
                        buf.truncate(at);
                        buf.put_i32(-1);
                    }
                    IsNull::No => {
                        let len = i32::try_from(buf.len() - at - 4)
                            .map_err(|_| bind_err("a value larger than 2 GiB".into()))?;
                        buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
                    }
                }
            }
            if buf.len() >= COPY_CHUNK {
                let chunk = buf.split().freeze();
                sink.send(chunk)
                    .await
                    .map_err(|e| pg_err(&self.ctx, stmt.step, &e))?;
            }
        }
        buf.put_i16(-1);
        sink.send(buf.freeze())
            .await
            .map_err(|e| pg_err(&self.ctx, stmt.step, &e))?;
        sink.as_mut()
            .finish()
            .await
            .map_err(|e| pg_err(&self.ctx, stmt.step, &e))
    }
}

/// A value bound as a parameter, encoded in binary for the parameter's server-side type.
#[derive(Debug)]
struct PgParam<'a>(&'a Value);

impl ToSql for PgParam<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        encode_param(self.0, ty, out)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn encode_param(v: &Value, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    if v.is_null() {
        return Ok(IsNull::Yes);
    }
    let bad = || -> BoxError { format!("cannot bind a {} value as {ty}", kind_name(v)).into() };
    let as_i64 = || -> Result<i64, BoxError> {
        match coerce(v.clone(), Dtype::Int)? {
            Value::Int(i) => Ok(i),
            _ => Err(bad()),
        }
    };
    match (v, ty) {
        (Value::Int(i), &Type::INT8) => {
            out.put_i64(*i);
            return Ok(IsNull::No);
        }
        (Value::Str(s), t) if is_texty(t) => {
            out.put_slice(s.as_bytes());
            return Ok(IsNull::No);
        }
        _ => {}
    }
    match *ty {
        Type::BOOL => match v {
            Value::Bool(b) => out.put_u8(*b as u8),
            Value::Int(i) => out.put_u8((*i != 0) as u8),
            _ => return Err(bad()),
        },
        Type::INT2 => {
            out.put_i16(i16::try_from(as_i64()?).map_err(|_| "integer out of range for smallint")?)
        }
        Type::INT4 => {
            out.put_i32(i32::try_from(as_i64()?).map_err(|_| "integer out of range for integer")?)
        }
        Type::INT8 => out.put_i64(as_i64()?),
        Type::FLOAT4 | Type::FLOAT8 => {
            let f = match coerce(v.clone(), Dtype::Float)? {
                Value::Float(f) => f,
                _ => return Err(bad()),
            };
            if *ty == Type::FLOAT4 {
                out.put_f32(f as f32)
            } else {
                out.put_f64(f)
            }
        }
        Type::NUMERIC => {
            let d = match v {
                Value::Decimal(d) => *d,
                Value::Int(i) => Decimal::from_i64(*i),
                Value::Float(f) => {
                    Decimal::from_f64(*f).ok_or("non-finite float bound as numeric")?
                }
                Value::Str(s) => Decimal::parse(s).ok_or("text is not a decimal")?,
                _ => return Err(bad()),
            };
            encode_numeric(&d, out);
        }
        Type::DATE => {
            let d = match v {
                Value::Date(d) => *d,
                Value::Datetime(_) | Value::Str(_) => match coerce(v.clone(), Dtype::Date)? {
                    Value::Date(d) => d,
                    _ => return Err(bad()),
                },
                _ => return Err(bad()),
            };
            out.put_i32((d - pg_epoch_date()).num_days() as i32);
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let t = match v {
                Value::Datetime(t) => *t,
                Value::Date(_) | Value::Str(_) => match coerce(v.clone(), Dtype::Datetime)? {
                    Value::Datetime(t) => t,
                    _ => return Err(bad()),
                },
                _ => return Err(bad()),
            };
            out.put_i64(values::epoch_micros(&t) - PG_EPOCH_MICROS);
        }
        Type::UUID => match v {
            Value::Uuid(s) | Value::Str(s) => {
                out.put_slice(&values::parse_uuid(s).ok_or("text is not a UUID")?)
            }
            _ => return Err(bad()),
        },
        Type::JSON | Type::JSONB => {
            let text = match v {
                Value::Json(j) => j.to_string(),
                // Checked and copied as it is: numbers keep every digit, even beyond `f64`.
                Value::Str(s) => crate::expr::value::Json::from_text(s.as_str())
                    .map_err(|e| format!("text is not JSON: {e}"))?
                    .to_string(),
                other => other.to_json().to_string(),
            };
            if *ty == Type::JSONB {
                out.put_u8(1);
            }
            out.put_slice(text.as_bytes());
        }
        _ if is_texty(ty) => out.put_slice(text_form(v).ok_or_else(bad)?.as_bytes()),
        _ => return Err(format!("parameters of type {ty} are not supported").into()),
    }
    Ok(IsNull::No)
}

/// Whether values of `ty` travel as their UTF-8 text in the binary protocol: the character
/// types, enums, and the `citext` extension's type (its OID differs per database, so it is
/// known by name). Result columns of a domain type are described by their base type.
fn is_texty(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    ) || match ty.kind() {
        Kind::Enum(_) => true,
        Kind::Simple => ty.name() == "citext",
        _ => false,
    }
}

/// The text a value is bound as to a text parameter.
fn text_form(v: &Value) -> Option<String> {
    Some(match v {
        Value::Str(s) | Value::Uuid(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Decimal(d) => decimal_fixed_text(d),
        Value::Bool(b) => if *b { "true" } else { "false" }.to_string(),
        Value::Date(d) => d.format("%Y-%m-%d").to_string(),
        Value::Datetime(t) => t.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        Value::Json(j) => j.to_string(),
        _ => return None,
    })
}

fn pg_epoch_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid date")
}

/// Writes `d` in PostgreSQL's binary NUMERIC format (base-10000 digits), exactly, keeping
/// its scale as the display scale. Integer arithmetic only (this runs per value in bulk
/// loads).
fn encode_numeric(d: &Decimal, out: &mut BytesMut) {
    let scale = d.scale();
    let m = d.mantissa().unsigned_abs();
    let p = 10u128.pow(scale);
    let (mut int_part, frac_part) = (m / p, m % p);
    // Fractional digits padded on the right to whole groups of four.
    let frac_groups = scale.div_ceil(4);
    let pad = frac_groups * 4 - scale;
    let mut groups = [0i16; 24];
    let mut n = 0usize;
    let mut int_groups = 0i16;
    while int_part > 0 {
        groups[n] = (int_part % 10_000) as i16;
        int_part /= 10_000;
        n += 1;
        int_groups += 1;
    }
    groups[..n].reverse();
    let mut frac = [0i16; 12];
    match frac_part.checked_mul(10u128.pow(pad)) {
        Some(mut f) => {
            for i in (0..frac_groups as usize).rev() {
                frac[i] = (f % 10_000) as i16;
                f /= 10_000;
            }
        }
        None => {
            // 36+ fractional digits: shift the remainder group by group instead.
            let digits = format!(
                "{frac_part:0width$}{}",
                "0".repeat(pad as usize),
                width = scale as usize
            );
            for (i, c) in digits.as_bytes().chunks(4).enumerate() {
                frac[i] = std::str::from_utf8(c)
                    .expect("ascii")
                    .parse()
                    .expect("digits");
            }
        }
    }
    groups[n..n + frac_groups as usize].copy_from_slice(&frac[..frac_groups as usize]);
    let mut all = &groups[..n + frac_groups as usize];
    let mut weight = int_groups - 1;
    while let Some((0, rest)) = all.split_first() {
        all = rest;
        weight -= 1;
    }
    while let Some((0, rest)) = all.split_last() {
        all = rest;
    }
    if all.is_empty() {
        weight = 0;
    }
    out.put_i16(all.len() as i16);
    out.put_i16(weight);
    out.put_u16(if d.mantissa() < 0 { 0x4000 } else { 0 });
    out.put_u16(scale as u16);
    for g in all {
        out.put_i16(*g);
    }
}

/// A binary NUMERIC's header and its base-10000 digit groups.
struct RawNumeric {
    /// The power of 10000 of the first group.
    weight: i64,
    /// `0x0000` positive, `0x4000` negative, `0xC000` NaN, `0xD000`/`0xF000` ±infinity.
    sign: u16,
    /// Digits after the point.
    dscale: i64,
    digits: Vec<u16>,
}

impl RawNumeric {
    fn read(raw: &[u8]) -> Result<RawNumeric, BoxError> {
        let rd = |i: usize| -> Result<u16, BoxError> {
            raw.get(i..i + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| "truncated numeric".into())
        };
        let ndigits = rd(0)? as usize;
        Ok(RawNumeric {
            weight: i64::from(rd(2)? as i16),
            sign: rd(4)?,
            dscale: i64::from(rd(6)?),
            digits: (0..ndigits)
                .map(|i| rd(8 + 2 * i))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Reads PostgreSQL's binary NUMERIC exactly (at its display scale).
fn decode_numeric(raw: &[u8]) -> Result<Decimal, BoxError> {
    let RawNumeric {
        weight,
        sign,
        dscale,
        digits,
    } = RawNumeric::read(raw)?;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("NaN cannot be read as a decimal".into()),
        _ => return Err("infinity cannot be read as a decimal".into()),
    }
    if dscale > i64::from(crate::expr::value::MAX_DECIMAL_SCALE) {
        return Err(format!("numeric scale {dscale} exceeds 38").into());
    }
    let overflow = || -> BoxError { "numeric value does not fit 38 digits".into() };
    let mut m: i128 = 0;
    for (i, &digit) in digits.iter().enumerate() {
        let digit = i128::from(digit);
        let exp = 4 * (weight - i as i64) + dscale;
        if exp >= 0 {
            let p = 10i128.checked_pow(exp as u32).ok_or_else(overflow)?;
            m = m
                .checked_add(digit.checked_mul(p).ok_or_else(overflow)?)
                .ok_or_else(overflow)?;
        } else {
            let p = 10i128.pow((-exp).min(4) as u32);
            if digit % p != 0 {
                return Err("numeric digits beyond its display scale".into());
            }
            m += digit / p;
        }
    }
    if sign == 0x4000 {
        m = -m;
    }
    Decimal::new(m, dscale as u32).ok_or_else(overflow)
}

/// A NUMERIC result cell as PostgreSQL prints it (every digit, at its display scale): a
/// number wider than a `decimal` field keeps, read as `str`.
struct NumericText(String);

impl<'a> FromSql<'a> for NumericText {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        numeric_text(raw).map(NumericText)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

/// PostgreSQL's text of a binary NUMERIC: base-10000 digit groups from `weight` down,
/// `dscale` digits after the point, `NaN` and the infinities spelt as the server does.
fn numeric_text(raw: &[u8]) -> Result<String, BoxError> {
    let RawNumeric {
        weight,
        sign,
        dscale,
        digits,
    } = RawNumeric::read(raw)?;
    let dscale = dscale as usize;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => return Err("unknown numeric sign".into()),
    }
    let group = |index: i64| -> u16 {
        usize::try_from(index)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut int = String::new();
    for e in (0..=weight).rev() {
        int.push_str(&format!("{:04}", group(weight - e)));
    }
    let int = int.trim_start_matches('0');
    let mut text = String::new();
    if sign == 0x4000 && digits.iter().any(|&d| d != 0) {
        text.push('-');
    }
    text.push_str(if int.is_empty() { "0" } else { int });
    if dscale > 0 {
        let mut frac = String::new();
        for e in 1..=dscale.div_ceil(4) as i64 {
            frac.push_str(&format!("{:04}", group(weight + e)));
        }
        text.push('.');
        text.push_str(&frac[..dscale]);
    }
    Ok(text)
}

/// A result cell decoded from binary by its PostgreSQL type.
struct PgCell(Value);

impl<'a> FromSql<'a> for PgCell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        decode_cell(ty, raw).map(PgCell)
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, BoxError> {
        Ok(PgCell(Value::Null))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

fn decode_cell(ty: &Type, raw: &[u8]) -> Result<Value, BoxError> {
    Ok(match *ty {
        Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
        Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
        Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
        Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
        Type::OID => Value::Int(u32::from_sql(ty, raw)?.into()),
        // The exact value: every f32 is a double (its shortest text is not).
        Type::FLOAT4 => Value::Float(f64::from(f32::from_sql(ty, raw)?)),
        Type::FLOAT8 => Value::Float(f64::from_sql(ty, raw)?),
        Type::NUMERIC => Value::Decimal(decode_numeric(raw)?),
        Type::DATE => {
            let days = i32::from_sql(ty, raw)?;
            if days == i32::MAX || days == i32::MIN {
                return Err("infinite date".into());
            }
            Value::Date(
                pg_epoch_date()
                    .checked_add_signed(chrono::Duration::days(days.into()))
                    .ok_or("date out of range")?,
            )
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let us = i64::from_sql(ty, raw)?;
            if us == i64::MAX || us == i64::MIN {
                return Err("infinite timestamp".into());
            }
            Value::Datetime(
                values::from_epoch_micros(
                    us.checked_add(PG_EPOCH_MICROS)
                        .ok_or("timestamp out of range")?,
                )
                .ok_or("timestamp out of range")?,
            )
        }
        Type::UUID => {
            let b: [u8; 16] = raw.try_into().map_err(|_| "a UUID must have 16 bytes")?;
            Value::Uuid(values::format_uuid(&b))
        }
        // The document's text as the server prints it, kept as is.
        Type::JSON => Value::json_text(std::str::from_utf8(raw)?)?,
        Type::JSONB => {
            let body = raw.strip_prefix(&[1u8]).ok_or("unknown jsonb version")?;
            Value::json_text(std::str::from_utf8(body)?)?
        }
        _ if is_texty(ty) => Value::Str(std::str::from_utf8(raw)?.to_string()),
        _ => return Err(format!("columns of type {ty} are not supported").into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float4_decodes_to_its_exact_value() {
        for f in [50_137_512.0f32, -2_457_458.2, -104_138_336.0, 0.1, f32::NAN] {
            let got = decode_cell(&Type::FLOAT4, &f.to_be_bytes()).unwrap();
            match got {
                Value::Float(g) if f.is_nan() => assert!(g.is_nan()),
                Value::Float(g) => assert_eq!(g, f64::from(f), "{f}"),
                other => panic!("{other:?}"),
            }
        }
    }

    fn roundtrip(s: &str) {
        let d = Decimal::parse(s).unwrap();
        let mut buf = BytesMut::new();
        encode_numeric(&d, &mut buf);
        let back = decode_numeric(&buf).unwrap();
        assert_eq!(
            (back.mantissa(), back.scale()),
            (d.mantissa(), d.scale()),
            "{s}"
        );
    }

    #[test]
    fn numeric_binary_round_trips_exactly() {
        for s in [
            "0",
            "0.00",
            "1",
            "-1",
            "1.50",
            "-0.0001",
            "12345.6789",
            "10000",
            "99999999",
            "100000000.000000001",
            "-123456789012345678901234567.12345678901",
            "0.00000000000000000000000000000000000001",
            // 38 fractional digits: padding them to whole groups overflows i128.
            "0.99999999999999999999999999999999999999",
            "-0.12345678901234567890123456789012345678",
        ] {
            roundtrip(s);
        }
    }

    #[test]
    fn numeric_wire_layout_matches_postgres() {
        // 1.5 at scale 2: ndigits 2, weight 0, sign +, dscale 2, digits [1, 5000].
        let mut buf = BytesMut::new();
        encode_numeric(&Decimal::parse("1.50").unwrap(), &mut buf);
        assert_eq!(&buf[..], &[0, 2, 0, 0, 0, 0, 0, 2, 0, 1, 0x13, 0x88]);
    }
}
