//! MySQL / MariaDB connector (mysql_async).
//!
//! Statements with parameters and every query run as prepared statements over the binary
//! protocol (mysql_async caches the prepared statements per connection); statements without
//! parameters passed to `execute` go through the text protocol, so DDL and `SET` work.
//! Results are decoded from the binary protocol's values: DECIMAL arrives as exact text,
//! DATETIME with its microseconds, `BOOLEAN` as `TINYINT(1)` (read as a bool when the
//! caller asks for one), JSON as text.

use super::{
    check_arity, check_row, send_batch, tls, ConnSettings, ConnectDeadline, ErrCtx, Stmt,
    CONNECT_TIMEOUT,
};
use crate::config::TlsMode;
use crate::expr::Value;
use crate::runtime::values::{coerce, coerce_ref, decimal_fixed_text, kind_name};
use crate::runtime::{Row, RuntimeError};
use crate::types::Dtype;
use chrono::{Datelike, NaiveDate, Timelike};
use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{
    ClientIdentity, DriverError, Opts, OptsBuilder, Params, SslOpts, Value as MyValue,
};
use tokio::sync::mpsc;

/// The most placeholders one prepared statement may have (the protocol counts them in 16
/// bits).
pub const MAX_PLACEHOLDERS: usize = 65_535;

/// How many rows of `ncols` columns one multi-row `INSERT` may carry, so that its
/// placeholders stay within [`MAX_PLACEHOLDERS`]. The caller must also keep a statement
/// under the server's `max_allowed_packet` (16 MiB by default): with wide rows, use fewer
/// rows. mysql_async rejects a packet that is too large with an error, never truncates.
pub fn max_rows_per_insert(ncols: usize) -> usize {
    (MAX_PLACEHOLDERS / ncols.max(1)).max(1)
}

/// An open MySQL / MariaDB session.
pub struct MyConn {
    conn: mysql_async::Conn,
    ctx: ErrCtx,
    version: String,
    in_tx: bool,
    broken: bool,
}

impl std::fmt::Debug for MyConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MyConn")
            .field("ctx", &self.ctx)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// The driver's TLS options for the settings' `sslmode`: `None` for plain text.
fn ssl_opts(s: &ConnSettings) -> Result<Option<SslOpts>, String> {
    tls::install_default_provider();
    let roots = match &s.root_cert {
        Some(p) => tls::read_root_certs(p)?,
        None => Vec::new(),
    };
    // The driver reads a client key as PKCS#1 only: hand it the RSA key in that form (DER,
    // which it takes for PKCS#1 because it is not text); it reads the PEM chain itself.
    let identity = match &s.client_cert {
        Some(c) => {
            let (_, key) = c.read()?;
            let key = tls::rsa_pkcs1_der(&key)?;
            Some(ClientIdentity::new(c.cert.clone().into(), key.into()))
        }
        None => None,
    };
    let base = || {
        SslOpts::default()
            .with_root_certs(roots.iter().map(|c| c.as_ref().to_vec().into()).collect())
            .with_client_identity(identity.clone())
    };
    Ok(match tls::effective(s.tls, s.root_cert.as_deref()) {
        TlsMode::Disable | TlsMode::Allow => None,
        TlsMode::Prefer | TlsMode::Require => Some(
            base()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        TlsMode::VerifyCa => Some(base().with_danger_skip_domain_validation(true)),
        TlsMode::VerifyFull => Some(base()),
    })
}

/// One connection attempt (TCP connect, TLS, login), bounded by the connection's deadline
/// (`Err(None)`: timed out).
async fn open(
    deadline: &ConnectDeadline,
    opts: OptsBuilder,
) -> Result<mysql_async::Conn, Option<mysql_async::Error>> {
    match tokio::time::timeout_at(deadline.at(), mysql_async::Conn::new(Opts::from(opts))).await {
        Ok(r) => r.map_err(Some),
        Err(_) => Err(None),
    }
}

/// Server errors of a transaction aborted because it conflicted with another: 1213
/// (deadlock; InnoDB rolled the transaction back) and 1205 (lock wait timeout). The same
/// transaction may succeed when run again.
const CONFLICT_CODES: [u16; 2] = [1213, 1205];

/// A statement's driver error: [`RuntimeError::Conflict`] for the codes in
/// [`CONFLICT_CODES`], [`RuntimeError::Statement`] otherwise.
fn my_err(ctx: &ErrCtx, step: &str, e: &mysql_async::Error) -> RuntimeError {
    match e {
        mysql_async::Error::Server(s) if CONFLICT_CODES.contains(&s.code) => {
            ctx.conflict(step, my_msg(e))
        }
        // 1044 ER_DBACCESS_DENIED_ERROR, 1142 ER_TABLEACCESS_DENIED_ERROR: say which
        // privilege synctool's own steps need.
        mysql_async::Error::Server(s) if matches!(s.code, 1044 | 1142) => {
            let needs = match step {
                "sink.stage" | "sink.stage_keys" => Some(
                    "the sink's user needs CREATE TEMPORARY TABLES on the sink database (rows are staged in temporary tables)",
                ),
                "sink.create" => Some(
                    "the sink's user needs CREATE on the sink database, or create the table beforehand",
                ),
                _ => None,
            };
            match needs {
                Some(n) => ctx.stmt(step, format!("{}; {n}", my_msg(e))),
                None => ctx.stmt(step, my_msg(e)),
            }
        }
        _ => ctx.stmt(step, my_msg(e)),
    }
}

fn my_msg(e: &mysql_async::Error) -> String {
    match e {
        // 1153 ER_NET_PACKET_TOO_LARGE: the server closes the connection.
        mysql_async::Error::Server(s) if s.code == 1153 => format!(
            "ERROR {} ({}): {}: a statement of these rows does not fit the server's `max_allowed_packet`; raise it on the server",
            s.code, s.state, s.message
        ),
        mysql_async::Error::Server(s) => format!("ERROR {} ({}): {}", s.code, s.state, s.message),
        // The driver refuses to send or receive a packet larger than the server's
        // `max_allowed_packet`, and closes the connection.
        other if other.to_string().ends_with("packet too large") => {
            "a row does not fit in one packet of the server's `max_allowed_packet` (the connection was closed): raise `max_allowed_packet` on the server, or leave the widest columns out of the pipeline".to_string()
        }
        // The driver wraps I/O errors twice, each time with the same prefix.
        other => other
            .to_string()
            .replace("Input/output error: Input/output error: ", "I/O error: "),
    }
}

impl MyConn {
    /// Connects (TLS as `sslmode` says, see [`super::tls`]) and runs `session` through the
    /// text protocol.
    pub async fn connect(s: &ConnSettings, session: &[String]) -> Result<MyConn, RuntimeError> {
        let ctx = ErrCtx::new(s);
        let opts = OptsBuilder::default()
            .ip_or_hostname(s.host.clone())
            .tcp_port(s.port)
            .user(s.username.clone())
            .pass(s.password.as_ref().map(|p| p.expose().to_string()))
            .db_name(s.database.clone())
            .prefer_socket(false)
            .stmt_cache_size(64)
            .max_allowed_packet(Some(1 << 30));
        let fail = |e: Option<mysql_async::Error>| match e {
            Some(e) => ctx.connect(my_msg(&e)),
            None => ctx.connect(format!(
                "timed out after {} s in the connection handshake (TCP connect, TLS, login)",
                CONNECT_TIMEOUT.as_secs()
            )),
        };
        let deadline = ConnectDeadline::start();
        let conn = match ssl_opts(s).map_err(|e| ctx.connect(e))? {
            None => open(&deadline, opts).await.map_err(fail)?,
            Some(ssl) if s.tls == TlsMode::Prefer => {
                match open(&deadline, opts.clone().ssl_opts(ssl)).await {
                    Err(Some(mysql_async::Error::Driver(
                        DriverError::NoClientSslFlagFromServer,
                    ))) => {
                        tracing::debug!(datastore = %s.name, "the server has no TLS: plain text (sslmode prefer)");
                        open(&deadline, opts).await.map_err(fail)?
                    }
                    other => other.map_err(fail)?,
                }
            }
            Some(ssl) => open(&deadline, opts.ssl_opts(ssl)).await.map_err(fail)?,
        };
        let (a, b, c) = conn.server_version();
        let mut me = MyConn {
            conn,
            ctx,
            version: format!("{a}.{b}.{c}"),
            in_tx: false,
            broken: false,
        };
        // The login above had its own limit; the session statements get what is left.
        let ctx = me.ctx.clone();
        deadline
            .run(&ctx, "running the session statements", async {
                for stmt in session {
                    let r = me.conn.query_drop(stmt.as_str()).await;
                    r.map_err(|e| me.ctx.stmt("session", my_msg(&e)))?;
                }
                Ok(())
            })
            .await?;
        Ok(me)
    }

    /// The server version from the handshake (`10.11.19`).
    pub fn server_version(&self) -> &str {
        &self.version
    }

    /// True when no transaction is open and no I/O error happened.
    pub fn is_reusable(&self) -> bool {
        !self.in_tx && !self.broken
    }

    fn fail(&mut self, step: &str, e: mysql_async::Error) -> RuntimeError {
        if !matches!(e, mysql_async::Error::Server(_)) {
            self.broken = true;
        }
        my_err(&self.ctx, step, &e)
    }

    fn params(&self, stmt: &Stmt<'_>, params: &[Value]) -> Result<Params, RuntimeError> {
        check_arity(&self.ctx, stmt, params)?;
        if params.is_empty() {
            return Ok(Params::Empty);
        }
        let vals = params
            .iter()
            .zip(stmt.param_types)
            .enumerate()
            .map(|(i, (v, d))| to_mysql(v, *d).map_err(|m| self.ctx.bind(stmt.step, i + 1, m)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Params::Positional(vals))
    }

    /// Runs a statement; returns the rows affected.
    pub async fn execute(&mut self, stmt: Stmt<'_>, params: &[Value]) -> Result<u64, RuntimeError> {
        let p = self.params(&stmt, params)?;
        let r = if matches!(p, Params::Empty) {
            self.conn.query_drop(stmt.sql).await
        } else {
            self.conn.exec_drop(stmt.sql, p).await
        };
        r.map_err(|e| self.fail(stmt.step, e))?;
        Ok(self.conn.affected_rows())
    }

    /// Runs a query and returns every row decoded as `out`.
    pub async fn query(
        &mut self,
        stmt: Stmt<'_>,
        params: &[Value],
        out: &[Dtype],
    ) -> Result<Vec<Row>, RuntimeError> {
        super::collect(|tx| self.stream(stmt, params, out, 1024, tx)).await
    }

    /// Streams a query's rows in batches (see [`super::Conn::stream`]): rows are read from
    /// the socket one by one as the consumer takes batches.
    pub async fn stream(
        &mut self,
        stmt: Stmt<'_>,
        params: &[Value],
        out: &[Dtype],
        batch_size: usize,
        tx: mpsc::Sender<Result<Vec<Row>, RuntimeError>>,
    ) -> Result<u64, RuntimeError> {
        let p = self.params(&stmt, params)?;
        let ctx = self.ctx.clone();
        let mut result = match self.conn.exec_iter(stmt.sql, p).await {
            Ok(r) => r,
            Err(e) => return Err(self.fail(stmt.step, e)),
        };
        let mut outcome: Result<u64, RuntimeError> = Ok(0);
        let mut io_error = false;
        if result.columns_ref().len() != out.len() {
            outcome = Err(ctx.stmt(
                stmt.step,
                format!(
                    "the query returns {} columns but {} dtypes were given",
                    result.columns_ref().len(),
                    out.len()
                ),
            ));
        } else {
            let mut batch = super::new_batch(batch_size);
            let mut n = 0u64;
            loop {
                let row = match result.next().await {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        io_error = !matches!(e, mysql_async::Error::Server(_));
                        outcome = Err(my_err(&ctx, stmt.step, &e));
                        break;
                    }
                };
                match decode_row(&ctx, &stmt, row, out) {
                    Ok(r) => batch.push(r),
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
                n += 1;
                if batch.len() == batch_size {
                    let full = std::mem::replace(&mut batch, super::new_batch(batch_size));
                    if let Err(e) = send_batch(&tx, stmt.step, full).await {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            if outcome.is_ok() {
                outcome = match batch.is_empty() {
                    true => Ok(n),
                    false => send_batch(&tx, stmt.step, batch).await.map(|_| n),
                };
            }
        }
        // Read what is left of the result so the connection stays usable.
        if !io_error {
            if let Err(e) = result.drop_result().await {
                drop(e);
                io_error = true;
            }
        } else {
            drop(result);
        }
        if io_error {
            self.broken = true;
        } else if outcome.is_ok() && self.conn.get_warnings() > 0 {
            // MySQL turns what a read cannot compute into NULL with a warning; the one a
            // sync meets is a text longer than `max_allowed_packet` given to a function
            // (1301): its row hash is NULL, and the row reads as changed on every run.
            tracing::warn!(
                store = %self.ctx.store,
                step = stmt.step,
                warnings = self.conn.get_warnings(),
                "MySQL reported warnings for a read: a value longer than the server's max_allowed_packet makes the functions computing hashes and text return NULL, and such a row reads as changed on every run; raise max_allowed_packet on the server"
            );
        }
        outcome
    }

    /// Starts a transaction.
    pub async fn begin(&mut self) -> Result<(), RuntimeError> {
        self.control("START TRANSACTION", "begin").await?;
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
        let r = self.conn.query_drop(sql).await;
        r.map_err(|e| self.fail(step, e))
    }

    /// Loads `rows` with the generator's `LOAD DATA LOCAL INFILE … (cols)`: the rows are
    /// encoded as text (`,` between fields, `;` after rows, backslash escapes, `\N` for
    /// NULL, UTF-8; see [`infile_text`]) and sent when
    /// the server asks for the file. Returns the rows loaded. Because MySQL turns data errors
    /// and duplicate keys into warnings under `LOCAL`, a load that warns — or that the server
    /// refuses (`local_infile` off) — is a [`RuntimeError::LoadRefused`]: the caller rolls
    /// the transaction back and redoes it with [`MyConn::insert_rows`].
    pub async fn load_data(
        &mut self,
        stmt: Stmt<'_>,
        types: &[Dtype],
        rows: &[Row],
    ) -> Result<u64, RuntimeError> {
        for row in rows {
            check_row(&self.ctx, &stmt, row, types.len())?;
        }
        // The file is a stream fed through a small channel while the query runs, so our
        // encoding of a chunk overlaps the server's loading of the ones before it.
        let (tx, rx) = mpsc::channel::<std::io::Result<bytes::Bytes>>(INFILE_AHEAD);
        self.conn.set_infile_handler(async move {
            let s = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|chunk| (chunk, rx))
            });
            Ok(Box::pin(s) as mysql_async::InfileData)
        });
        let ctx = &self.ctx;
        let cut_short = || ctx.stmt(stmt.step, "LOAD DATA ended before every row was sent");
        let encode = async move {
            let mut buf: Vec<u8> = Vec::with_capacity(INFILE_CHUNK + 4096);
            for row in rows {
                let row_start = buf.len();
                for (i, (v, d)) in row.iter().zip(types).enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    if let Err(m) = infile_field(&mut buf, v, *d) {
                        // The file ends after the rows before this one (an error item in the
                        // stream would make the driver close the connection); the caller
                        // rolls the transaction back.
                        buf.truncate(row_start);
                        if !buf.is_empty() {
                            let _ = tx.send(Ok(buf.into())).await;
                        }
                        return Err(ctx.bind(stmt.step, i + 1, m));
                    }
                }
                buf.push(b';');
                if buf.len() >= INFILE_CHUNK {
                    let chunk =
                        std::mem::replace(&mut buf, Vec::with_capacity(INFILE_CHUNK + 4096));
                    send_pieces(&tx, chunk).await.map_err(|_| cut_short())?;
                }
            }
            if !buf.is_empty() {
                send_pieces(&tx, buf).await.map_err(|_| cut_short())?;
            }
            Ok(())
        };
        // The stream ends only when the encoder is done, so a query that succeeded has seen
        // the encoder finish. A query that failed first leaves it waiting on a full channel:
        // it is dropped with this block.
        let (result, encoded) = {
            let query = self.conn.query_drop(stmt.sql);
            tokio::pin!(encode, query);
            let mut encoded: Option<Result<(), RuntimeError>> = None;
            let result = loop {
                tokio::select! {
                    r = &mut query => break r,
                    r = &mut encode, if encoded.is_none() => encoded = Some(r),
                }
            };
            (result, encoded)
        };
        match encoded {
            Some(Err(e)) => return Err(e),
            None if result.is_ok() => return Err(cut_short()),
            _ => {}
        }
        let refused = |ctx: &ErrCtx, m: String| RuntimeError::LoadRefused {
            store: ctx.store.clone(),
            host: ctx.host.clone(),
            step: stmt.step.to_string(),
            message: m,
        };
        match result {
            Ok(()) => {}
            // 1148 ER_NOT_ALLOWED_COMMAND, 3948/4166 local infile disabled (MySQL 8).
            Err(mysql_async::Error::Server(e)) if matches!(e.code, 1148 | 3948 | 4166) => {
                return Err(refused(
                    &self.ctx,
                    format!("the server refuses LOAD DATA LOCAL INFILE ({})", e.message),
                ));
            }
            Err(e) => return Err(self.fail(stmt.step, e)),
        }
        let warnings = self.conn.get_warnings();
        if warnings > 0 {
            return Err(refused(
                &self.ctx,
                format!("LOAD DATA LOCAL INFILE reported {warnings} warning(s) (a value MySQL adjusted or a duplicate key it skipped)"),
            ));
        }
        Ok(self.conn.affected_rows())
    }

    /// Inserts `rows` with the generator's multi-row `INSERT … VALUES (?,…),(?,…)` for
    /// exactly `rows.len()` rows of `types.len()` columns, binding all values flattened as
    /// one prepared statement over the binary protocol. The caller chunks the rows:
    /// `rows.len() × types.len()` must not exceed [`MAX_PLACEHOLDERS`] (checked here: an
    /// error, not a truncation) and the statement must fit `max_allowed_packet` (see
    /// [`max_rows_per_insert`]). Returns the rows affected (for `ON DUPLICATE KEY UPDATE`,
    /// MySQL counts an updated row twice).
    pub async fn insert_rows(
        &mut self,
        stmt: Stmt<'_>,
        types: &[Dtype],
        rows: &[Row],
    ) -> Result<u64, RuntimeError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let total = rows.len() * types.len();
        if total > MAX_PLACEHOLDERS {
            return Err(self.ctx.stmt(
                stmt.step,
                format!(
                    "{} rows × {} columns = {total} placeholders exceed MySQL's limit of {MAX_PLACEHOLDERS}: insert at most {} rows per statement",
                    rows.len(),
                    types.len(),
                    max_rows_per_insert(types.len())
                ),
            ));
        }
        let mut vals = Vec::with_capacity(total);
        for row in rows {
            check_row(&self.ctx, &stmt, row, types.len())?;
            for (i, (v, d)) in row.iter().zip(types).enumerate() {
                vals.push(to_mysql(v, *d).map_err(|m| self.ctx.bind(stmt.step, i + 1, m))?);
            }
        }
        let r = self
            .conn
            .exec_drop(stmt.sql, Params::Positional(vals))
            .await;
        r.map_err(|e| self.fail(stmt.step, e))?;
        Ok(self.conn.affected_rows())
    }
}

/// Bytes of infile data per chunk handed to the driver.
const INFILE_CHUNK: usize = 64 * 1024;

/// Hands `chunk` to the driver in pieces of at most [`INFILE_CHUNK`] bytes. The driver
/// sends each piece as one packet and refuses a packet larger than the server's
/// `max_allowed_packet`, so a row wider than that (one long text) is cut across pieces:
/// the server reads the file as a stream and does not care where packets end.
async fn send_pieces(
    tx: &mpsc::Sender<std::io::Result<bytes::Bytes>>,
    chunk: Vec<u8>,
) -> Result<(), ()> {
    let mut rest = bytes::Bytes::from(chunk);
    while !rest.is_empty() {
        let piece = rest.split_to(rest.len().min(INFILE_CHUNK));
        tx.send(Ok(piece)).await.map_err(|_| ())?;
    }
    Ok(())
}

/// Encoded chunks that may wait for the driver: how far encoding runs ahead of the load.
const INFILE_AHEAD: usize = 4;

/// Appends `s` with the `LOAD DATA` escapes (`ESCAPED BY '\'`, fields ended by `,`, lines
/// by `;`): the escape character and both separators get a backslash, NUL is `\0`. (UTF-8
/// continuation bytes are never ASCII, so bytes can be escaped one by one.)
fn infile_text(buf: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let escaped: &[u8] = match c {
            b'\\' => b"\\\\",
            b',' => b"\\,",
            b';' => b"\\;",
            0 => b"\\0",
            _ => continue,
        };
        buf.extend_from_slice(&b[start..i]);
        buf.extend_from_slice(escaped);
        start = i + 1;
    }
    buf.extend_from_slice(&b[start..]);
}

/// Appends `n` as `width` decimal digits (zero-padded; `n` must fit).
fn push_digits(buf: &mut Vec<u8>, n: u32, width: usize) {
    let mut tmp = [b'0'; 10];
    let mut v = n;
    for i in (0..width).rev() {
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    buf.extend_from_slice(&tmp[..width]);
}

/// Appends `YYYY-MM-DD` (the year must be within 0..=9999).
fn push_date(buf: &mut Vec<u8>, d: &chrono::NaiveDate) {
    push_digits(buf, d.year() as u32, 4);
    buf.push(b'-');
    push_digits(buf, d.month(), 2);
    buf.push(b'-');
    push_digits(buf, d.day(), 2);
}

/// Appends one `LOAD DATA` field: `v` as dtype `d`, in the text MySQL reads back exactly.
fn infile_field(buf: &mut Vec<u8>, v: &Value, d: Dtype) -> Result<(), String> {
    use std::io::Write;
    match coerce_ref(v, d)?.as_ref() {
        Value::Null => buf.extend_from_slice(b"\\N"),
        Value::Int(i) => write!(buf, "{i}").expect("write to a Vec"),
        Value::Float(f) if f.is_finite() => write!(buf, "{f:?}").expect("write to a Vec"),
        Value::Float(f) => return Err(format!("MySQL cannot store the float {f}")),
        Value::Decimal(x) => buf.extend_from_slice(decimal_fixed_text(x).as_bytes()),
        Value::Str(s) | Value::Uuid(s) => infile_text(buf, s),
        Value::Bool(b) => buf.push(if *b { b'1' } else { b'0' }),
        Value::Date(x) => {
            if !(0..=9999).contains(&x.year()) {
                return Err(format!("year {} is out of MySQL's range", x.year()));
            }
            push_date(buf, x)
        }
        Value::Datetime(t) => {
            if !(0..=9999).contains(&t.year()) {
                return Err(format!("year {} is out of MySQL's range", t.year()));
            }
            // `YYYY-MM-DD HH:MM:SS.ffffff`, written directly: chrono's formatter parses its
            // format string on every call.
            push_date(buf, &t.date());
            buf.push(b' ');
            push_digits(buf, t.hour(), 2);
            buf.push(b':');
            push_digits(buf, t.minute(), 2);
            buf.push(b':');
            push_digits(buf, t.second(), 2);
            buf.push(b'.');
            push_digits(buf, t.nanosecond() / 1000 % 1_000_000, 6);
        }
        Value::Json(j) => infile_text(buf, &j.to_string()),
        other => return Err(format!("a {} value cannot be loaded", kind_name(other))),
    }
    Ok(())
}

/// A runtime value as a binary-protocol parameter of dtype `d`.
fn to_mysql(v: &Value, d: Dtype) -> Result<MyValue, String> {
    Ok(match coerce(v.clone(), d)? {
        Value::Null => MyValue::NULL,
        Value::Int(i) => MyValue::Int(i),
        Value::Float(f) => MyValue::Double(f),
        Value::Decimal(x) => MyValue::Bytes(decimal_fixed_text(&x).into_bytes()),
        Value::Str(s) | Value::Uuid(s) => MyValue::Bytes(s.into_bytes()),
        Value::Bool(b) => MyValue::Int(b as i64),
        Value::Date(x) => {
            if !(0..=9999).contains(&x.year()) {
                return Err(format!("year {} is out of MySQL's range", x.year()));
            }
            MyValue::Date(x.year() as u16, x.month() as u8, x.day() as u8, 0, 0, 0, 0)
        }
        Value::Datetime(t) => {
            if !(0..=9999).contains(&t.year()) {
                return Err(format!("year {} is out of MySQL's range", t.year()));
            }
            MyValue::Date(
                t.year() as u16,
                t.month() as u8,
                t.day() as u8,
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
                t.nanosecond() / 1000,
            )
        }
        Value::Json(j) => MyValue::Bytes(j.to_string().into_bytes()),
        other => return Err(format!("a {} value cannot be bound", kind_name(&other))),
    })
}

fn decode_row(
    ctx: &ErrCtx,
    stmt: &Stmt<'_>,
    row: mysql_async::Row,
    out: &[Dtype],
) -> Result<Row, RuntimeError> {
    let types: Vec<ColumnType> = row.columns_ref().iter().map(|c| c.column_type()).collect();
    let cell =
        |i: usize, v: MyValue| from_mysql(v, types[i], out[i]).and_then(|n| coerce(n, out[i]));
    let mut values = row.unwrap().into_iter().enumerate();
    let mut row = Vec::with_capacity(out.len());
    while let Some((i, v)) = values.next() {
        match cell(i, v) {
            Ok(x) => row.push(x),
            Err(m) => {
                // The key's cells, for a message naming the row: decoded already, or after.
                let rest: Vec<MyValue> = values.map(|(_, v)| v).collect();
                let key_cell = |k: usize| match k.checked_sub(i + 1) {
                    None => row.get(k).cloned(),
                    Some(j) => cell(k, rest.get(j)?.clone()).ok(),
                };
                return Err(ctx.decode(stmt, i + 1, m, key_cell));
            }
        }
    }
    Ok(row)
}

/// A binary-protocol (or text-protocol) value as its natural runtime value; a decimal read
/// as `str` (one wider than the 38 digits a `decimal` field keeps) stays the server's text.
fn from_mysql(v: MyValue, ct: ColumnType, out: Dtype) -> Result<Value, String> {
    Ok(match v {
        MyValue::NULL => Value::Null,
        MyValue::Int(i) => Value::Int(i),
        MyValue::UInt(u) => match i64::try_from(u) {
            Ok(i) => Value::Int(i),
            Err(_) => {
                Value::Decimal(crate::expr::value::Decimal::new(u.into(), 0).expect("scale 0"))
            }
        },
        // The exact value: every f32 is a double (its shortest text is not).
        MyValue::Float(f) => Value::Float(f64::from(f)),
        MyValue::Double(f) => Value::Float(f),
        MyValue::Bytes(b) => {
            let s = String::from_utf8(b)
                .map_err(|_| "the column's bytes are not UTF-8 text".to_string())?;
            match ct {
                ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL
                    if out != Dtype::Str =>
                {
                    Value::Decimal(
                        crate::expr::value::Decimal::parse(&s).ok_or("invalid DECIMAL text")?,
                    )
                }
                _ => Value::Str(s),
            }
        }
        MyValue::Date(y, mo, d, h, mi, s, us) => {
            let date = NaiveDate::from_ymd_opt(y.into(), mo.into(), d.into()).ok_or_else(|| {
                format!("invalid date {y:04}-{mo:02}-{d:02} (zero dates are not supported)")
            })?;
            if ct == ColumnType::MYSQL_TYPE_DATE || ct == ColumnType::MYSQL_TYPE_NEWDATE {
                Value::Date(date)
            } else {
                Value::Datetime(
                    date.and_hms_micro_opt(h.into(), mi.into(), s.into(), us)
                        .ok_or("invalid time of day")?,
                )
            }
        }
        MyValue::Time(neg, days, h, m, s, us) => {
            let total =
                ((i64::from(days) * 24 + i64::from(h)) * 60 + i64::from(m)) * 60 + i64::from(s);
            let us = total * 1_000_000 + i64::from(us);
            Value::Interval(if neg { -us } else { us })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(v: Value, d: Dtype) -> String {
        let mut buf = Vec::new();
        infile_field(&mut buf, &v, d).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn infile_fields_escape_separators_and_mark_null() {
        assert_eq!(field(Value::Null, Dtype::Str), "\\N");
        assert_eq!(field(Value::Str("N".into()), Dtype::Str), "N");
        assert_eq!(
            field(Value::Str("a,b;c\\d\0é\t\n".into()), Dtype::Str),
            "a\\,b\\;c\\\\d\\0é\t\n"
        );
        assert_eq!(field(Value::Str(String::new()), Dtype::Str), "");
        assert_eq!(field(Value::Bool(true), Dtype::Bool), "1");
        assert_eq!(field(Value::Int(-3), Dtype::Int), "-3");
        let t = NaiveDate::from_ymd_opt(1969, 12, 31)
            .unwrap()
            .and_hms_micro_opt(23, 59, 59, 5)
            .unwrap();
        assert_eq!(
            field(Value::Datetime(t), Dtype::Datetime),
            "1969-12-31 23:59:59.000005"
        );
        let t = NaiveDate::from_ymd_opt(2024, 2, 9)
            .unwrap()
            .and_hms_micro_opt(7, 5, 3, 120_000)
            .unwrap();
        assert_eq!(
            field(Value::Datetime(t), Dtype::Datetime),
            "2024-02-09 07:05:03.120000"
        );
        assert_eq!(
            field(
                Value::Date(NaiveDate::from_ymd_opt(7, 1, 2).unwrap()),
                Dtype::Date
            ),
            "0007-01-02"
        );
        assert_eq!(field(Value::Str(",".into()), Dtype::Str), "\\,");
        let mut buf = Vec::new();
        assert!(infile_field(&mut buf, &Value::Float(f64::NAN), Dtype::Float).is_err());
        // A FLOAT column's value is read exactly, not through its shortest text.
        assert_eq!(
            from_mysql(
                MyValue::Float(50_137_512.0),
                ColumnType::MYSQL_TYPE_FLOAT,
                Dtype::Float
            )
            .unwrap(),
            Value::Float(50_137_512.0)
        );
    }
}
