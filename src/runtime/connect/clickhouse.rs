//! ClickHouse connector over the HTTP interface (reqwest), written for 18.16 and current
//! releases alike.
//!
//! - **Session**: ClickHouse HTTP is stateless, so a connection is an HTTP `session_id`: the
//!   session setup statements run in it, and every later request names it. The server drops
//!   an idle session after `session_timeout` (60 s by default); the connector runs the setup
//!   again in a fresh session when it was idle longer than [`SESSION_REFRESH`], or when a
//!   stream was abandoned mid-way (the server may still be finishing that query, which
//!   locks its session).
//! - **Parameters** (`{name:Type}` placeholders): servers from [`NATIVE_PARAMS_SINCE`] on get
//!   them as HTTP `param_<name>` arguments, in the text form the server parses per type.
//!   Older servers (18.16 has no query parameters) get driver-side binding: each
//!   placeholder, found outside string literals, quoted identifiers and comments, is
//!   replaced by an escaped literal of its declared type (`'it\'s'`, `CAST('1.50' AS
//!   Decimal(10,2))`, `toDate('2020-01-02')`, `toDateTime(1577934245)`, `toUUID('…')`,
//!   `NULL` for `Nullable`). The choice is made once per connection from `SELECT version()`.
//!   Known 18.16 limit: in `INSERT … VALUES`, a Decimal expression is rejected for a
//!   `Nullable(Decimal)` column ("Type mismatch in IN or VALUES section"); `INSERT … SELECT`
//!   and RowBinary loads are not affected.
//! - **Results** are read as `TabSeparated` (the HTTP default, also on 18.16) and decoded
//!   line by line as the response body arrives; no format clause is added to the query, so
//!   queries must not carry their own `FORMAT`. A `DateTime` prints in its column's time
//!   zone (or the server's): the generator reads datetimes through `toTimeZone(c, 'UTC')`
//!   ([`crate::sql::Dialect::read_value`]), so any zone decodes as the instant it holds.
//! - **Bulk load**: `INSERT INTO t (cols) FORMAT RowBinary` with the rows RowBinary-encoded
//!   in the request body, laid out by the table's column types ([`super::rowbinary`]).
//!   Literals, parameter text and result decoding are in [`super::ch_text`].
//! - **Transactions** do not exist: `begin`/`commit`/`rollback` are no-ops.
//! - **Rows affected**: 18.16 does not report them; servers that send
//!   `X-ClickHouse-Summary` report `written_rows`, otherwise `execute` returns 0.
//!
//! The `clickhouse` crate was not used: its API maps rows to compile-time structs, while
//! synctool's columns are defined by the config at run time, and against 18.16 it needs its
//! schema validation disabled anyway. The HTTP protocol is small enough to speak directly.

use super::ch_text::{decode_tsv_cell, decode_tsv_line, literal, param_text, scan_placeholders};
use super::rowbinary::{encode_rows, RbColumn};
use super::{check_arity, send_batch, tls, ConnSettings, ConnectDeadline, ErrCtx, Stmt};
use crate::expr::Value;
use crate::runtime::values::coerce;
use crate::runtime::{Row, RuntimeError};
use crate::types::Dtype;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The first ClickHouse release this connector sends query parameters to (older ones get
/// driver-side literals, which every release accepts).
pub const NATIVE_PARAMS_SINCE: (u32, u32) = (20, 1);

/// Idle time after which the session setup is run again in a new session (the server's
/// default `session_timeout` is 60 s).
pub const SESSION_REFRESH: Duration = Duration::from_secs(45);

/// Most rows one streamed insert carries ([`ChConn::stream_row_binary`]); below the
/// server's default `max_insert_block_size` (1,048,576), so that a server without parallel
/// parsing writes the insert as one part.
pub const STREAM_MAX_ROWS: u64 = 1_000_000;

/// Most body bytes one streamed insert carries (the server holds a block in memory).
pub const STREAM_MAX_BYTES: usize = 256 << 20;

/// Longest a streamed insert stays open: rows become visible at least this often, and a
/// slow source never meets the server's receive timeout (300 s by default).
pub const STREAM_MAX_AGE: Duration = Duration::from_secs(30);

/// Encoded batches queued ahead of a streamed insert's request.
const STREAM_CHUNKS_AHEAD: usize = 2;

/// How often a request refused with "Session is locked" (code 373) is sent again.
const SESSION_LOCK_RETRIES: u32 = 20;

static SESSION_SEQ: AtomicU64 = AtomicU64::new(0);

/// An open ClickHouse "connection": an HTTP client and a server session.
pub struct ChConn {
    http: reqwest::Client,
    url: String,
    ctx: ErrCtx,
    user: Option<String>,
    password: Option<String>,
    database: Option<String>,
    session_id: String,
    session: Vec<String>,
    last_used: Instant,
    session_dirty: bool,
    version: String,
    native_params: bool,
    /// RowBinary inserts whose body is still being sent ([`ChConn::stream_row_binary`]).
    streams: Vec<OpenInsert>,
    /// Most rows per streamed insert ([`STREAM_MAX_ROWS`] unless a test lowers it).
    stream_max_rows: u64,
}

/// A RowBinary `INSERT` whose request body is still open: chunks go through `tx`, the
/// request runs in its own task (`done`), outside the session.
struct OpenInsert {
    opened: Instant,
    sql: String,
    step: String,
    rows: u64,
    bytes: usize,
    tx: mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    done: tokio::task::JoinHandle<Result<(), String>>,
}

impl std::fmt::Debug for ChConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChConn")
            .field("ctx", &self.ctx)
            .field("version", &self.version)
            .field("native_params", &self.native_params)
            .finish_non_exhaustive()
    }
}

/// A new `query_id`: the process's run id, `/` and a sequence number (see
/// [`crate::runtime::run_id`]).
fn new_query_id() -> String {
    static QUERY_SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}/{}",
        crate::runtime::run_id(),
        QUERY_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn new_session_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "synctool-{}-{nanos}-{}",
        std::process::id(),
        SESSION_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// `(major, minor)` of a version text such as `18.16.1` or `24.3.2.23`.
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut it = v.trim().split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    Some((major, minor))
}

/// How a request failed: before the server answered, or with the server's message.
enum Failure {
    Transport(String),
    Server(String),
}

impl ChConn {
    /// Connects: checks the server answers `SELECT version()`, then runs `session` in a new
    /// server session. `sslmode` `require` and stronger speak HTTPS (see [`super::tls`]);
    /// weaker modes plain HTTP, as HTTP has no TLS negotiation to prefer it with.
    pub async fn connect(s: &ConnSettings, session: &[String]) -> Result<ChConn, RuntimeError> {
        let ctx = ErrCtx::new(s);
        let mut builder = reqwest::Client::builder()
            .redirect(crate::runtime::retry::no_redirects())
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(2);
        let scheme = if s.tls.required() {
            let tls = tls::client_config(s.tls, s.root_cert.as_deref(), s.client_cert.as_ref())
                .map_err(|e| ctx.connect(e))?;
            builder = builder.use_preconfigured_tls(tls).https_only(true);
            "https"
        } else {
            "http"
        };
        let http = builder.build().map_err(|e| ctx.connect(e))?;
        let mut me = ChConn {
            http,
            url: format!("{scheme}://{}:{}/", s.host, s.port),
            ctx,
            user: s.username.clone(),
            password: s.password.as_ref().map(|p| p.expose().to_string()),
            database: s.database.clone(),
            session_id: new_session_id(),
            session: session.to_vec(),
            last_used: Instant::now(),
            session_dirty: false,
            streams: Vec::new(),
            stream_max_rows: STREAM_MAX_ROWS,
            version: String::new(),
            native_params: false,
        };
        // The probe and the session setup run under the connect deadline (the HTTP client
        // itself has none, for queries may run long): a silent port must not hang the run.
        let deadline = ConnectDeadline::start();
        let ctx = me.ctx.clone();
        let version = deadline
            .run(
                &ctx,
                "waiting for the server's answer to SELECT version() (is this ClickHouse's HTTP port?)",
                async {
                    me.simple("SELECT version()").await.map_err(|f| match f {
                        Failure::Transport(m) | Failure::Server(m) => me.ctx.connect(m),
                    })
                },
            )
            .await?;
        me.version = version.trim().to_string();
        me.native_params = parse_version(&me.version).is_some_and(|v| v >= NATIVE_PARAMS_SINCE);
        deadline
            .run(&ctx, "running the session statements", me.run_setup())
            .await?;
        Ok(me)
    }

    /// The server version (`18.16.1`).
    pub fn server_version(&self) -> &str {
        &self.version
    }

    /// True when the server gets `param_<name>` query parameters (else driver-side literals).
    pub fn native_params(&self) -> bool {
        self.native_params
    }

    /// Always true: no transactions, and each request opens or reuses an HTTP connection.
    pub fn is_reusable(&self) -> bool {
        self.streams.is_empty()
    }

    async fn run_setup(&mut self) -> Result<(), RuntimeError> {
        for stmt in self.session.clone() {
            let resp = self
                .post(None, None, stmt.into_bytes(), &[])
                .await
                .map_err(|f| match f {
                    Failure::Transport(m) => self.ctx.connect(m),
                    Failure::Server(m) => self.ctx.stmt("session", m),
                })?;
            resp.bytes()
                .await
                .map_err(|e| self.ctx.connect(self.transport_msg(&e)))?;
        }
        self.last_used = Instant::now();
        self.session_dirty = false;
        Ok(())
    }

    async fn ensure_session(&mut self) -> Result<(), RuntimeError> {
        if self.session_dirty || self.last_used.elapsed() > SESSION_REFRESH {
            self.session_id = new_session_id();
            self.run_setup().await?;
        }
        Ok(())
    }

    /// A one-value query outside any session, for server facts.
    async fn simple(&self, sql: &str) -> Result<String, Failure> {
        let mut req = self.http.post(&self.url).body(sql.to_string());
        if let Some(u) = &self.user {
            req = req.basic_auth(u, self.password.as_deref());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Transport(self.transport_msg(&e)))?;
        let ok = resp.status().is_success();
        let text = resp
            .text()
            .await
            .map_err(|e| Failure::Transport(self.transport_msg(&e)))?;
        if ok {
            Ok(text)
        } else {
            Err(Failure::Server(text.trim().to_string()))
        }
    }

    fn transport_msg(&self, e: &reqwest::Error) -> String {
        // reqwest errors name the URL; ours never carries credentials (they go in the
        // Authorization header), but scrub anyway.
        self.ctx.scrub(error_chain(e))
    }

    /// POSTs a request in the session: `url_query` goes in the `query` argument (the body then
    /// holds data), otherwise `body` is the query. Non-200 answers become `Failure::Server`.
    async fn post(
        &self,
        url_query: Option<&str>,
        default_format: Option<&str>,
        body: Vec<u8>,
        params: &[(String, String)],
    ) -> Result<reqwest::Response, Failure> {
        let mut args: Vec<(String, String)> = vec![("session_id".into(), self.session_id.clone())];
        if let Some(db) = &self.database {
            args.push(("database".into(), db.clone()));
        }
        if let Some(q) = url_query {
            args.push(("query".into(), q.to_string()));
        }
        if let Some(f) = default_format {
            args.push(("default_format".into(), f.to_string()));
        }
        args.extend(params.iter().cloned());
        let body = bytes::Bytes::from(body);
        let mut attempt = 0;
        loop {
            let mut req = self
                .http
                .post(&self.url)
                .query(&args)
                .query(&[("query_id", new_query_id())])
                .header(reqwest::header::CONTENT_LENGTH, body.len())
                .body(body.clone());
            if let Some(u) = &self.user {
                req = req.basic_auth(u, self.password.as_deref());
            }
            let resp = req
                .send()
                .await
                .map_err(|e| Failure::Transport(self.transport_msg(&e)))?;
            if resp.status().is_success() {
                return Ok(resp);
            }
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            // The server releases a session a moment after the previous answer was sent;
            // a request arriving in that window is refused before it runs, so it is safe
            // to send it again.
            if text.starts_with("Code: 373,") && attempt < SESSION_LOCK_RETRIES {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(10 * attempt as u64)).await;
                continue;
            }
            return Err(Failure::Server(format!("HTTP {status}: {}", text.trim())));
        }
    }

    async fn request(
        &mut self,
        step: &str,
        url_query: Option<&str>,
        default_format: Option<&str>,
        body: Vec<u8>,
        params: &[(String, String)],
    ) -> Result<reqwest::Response, RuntimeError> {
        // Every statement sees the rows of the streamed inserts before it.
        self.end_streams().await?;
        self.ensure_session().await?;
        let r = self.post(url_query, default_format, body, params).await;
        self.last_used = Instant::now();
        r.map_err(|f| match f {
            Failure::Transport(m) | Failure::Server(m) => self.ctx.stmt(step, m),
        })
    }

    /// The SQL to send and the `param_*` arguments, binding `params` per the server.
    fn bind(
        &self,
        stmt: &Stmt<'_>,
        params: &[Value],
    ) -> Result<(String, Vec<(String, String)>), RuntimeError> {
        check_arity(&self.ctx, stmt, params)?;
        let holders = scan_placeholders(stmt.sql).map_err(|m| self.ctx.stmt(stmt.step, m))?;
        let lookup = |name: &str| -> Result<usize, RuntimeError> {
            stmt.param_names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| {
                    self.ctx.stmt(
                        stmt.step,
                        format!("placeholder {{{name}:…}} has no parameter of that name"),
                    )
                })
        };
        let mut coerced = Vec::with_capacity(params.len());
        for (i, (v, d)) in params.iter().zip(stmt.param_types).enumerate() {
            coerced.push(coerce(v.clone(), *d).map_err(|m| self.ctx.bind(stmt.step, i + 1, m))?);
        }
        if self.native_params {
            let mut args: Vec<(String, String)> = Vec::new();
            for h in &holders {
                let i = lookup(&h.name)?;
                let key = format!("param_{}", h.name);
                let text = param_text(&coerced[i], &h.ty)
                    .map_err(|m| self.ctx.bind(stmt.step, i + 1, m))?;
                match args.iter().find(|(k, _)| *k == key) {
                    Some((_, t)) if *t != text => {
                        return Err(self.ctx.bind(
                            stmt.step,
                            i + 1,
                            format!(
                                "parameter `{}` is bound twice with different values",
                                h.name
                            ),
                        ))
                    }
                    Some(_) => {}
                    None => args.push((key, text)),
                }
            }
            Ok((stmt.sql.to_string(), args))
        } else {
            let mut sql = String::with_capacity(stmt.sql.len() + 16 * holders.len());
            let mut at = 0;
            for h in &holders {
                let i = lookup(&h.name)?;
                sql.push_str(&stmt.sql[at..h.start]);
                sql.push_str(
                    &literal(&coerced[i], &h.ty).map_err(|m| self.ctx.bind(stmt.step, i + 1, m))?,
                );
                at = h.end;
            }
            sql.push_str(&stmt.sql[at..]);
            Ok((sql, Vec::new()))
        }
    }

    /// Runs a statement. Returns `written_rows` when the server reports it, else 0.
    pub async fn execute(&mut self, stmt: Stmt<'_>, params: &[Value]) -> Result<u64, RuntimeError> {
        let (sql, args) = self.bind(&stmt, params)?;
        let resp = self
            .request(stmt.step, None, None, sql.into_bytes(), &args)
            .await?;
        let written = written_rows(&resp);
        resp.bytes()
            .await
            .map_err(|e| self.ctx.stmt(stmt.step, self.transport_msg(&e)))?;
        Ok(written)
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

    /// Streams a query's rows in batches (see [`super::Conn::stream`]), decoding the
    /// `TabSeparated` response body as it arrives.
    pub async fn stream(
        &mut self,
        stmt: Stmt<'_>,
        params: &[Value],
        out: &[Dtype],
        batch_size: usize,
        tx: mpsc::Sender<Result<Vec<Row>, RuntimeError>>,
    ) -> Result<u64, RuntimeError> {
        let (sql, args) = self.bind(&stmt, params)?;
        let mut resp = self
            .request(
                stmt.step,
                None,
                Some("TabSeparated"),
                sql.into_bytes(),
                &args,
            )
            .await?;
        let mut buf: Vec<u8> = Vec::new();
        let mut batch = super::new_batch(batch_size);
        let mut n = 0u64;
        let outcome: Result<(), RuntimeError> = async {
            loop {
                let chunk = resp
                    .chunk()
                    .await
                    .map_err(|e| self.ctx.stmt(stmt.step, self.transport_msg(&e)))?;
                let Some(chunk) = chunk else { break };
                buf.extend_from_slice(&chunk);
                let mut start = 0;
                while let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
                    let line = &buf[start..start + pos];
                    batch.push(
                        decode_tsv_line(line, out)
                            .map_err(|e| self.line_error(&stmt, line, out, e))?,
                    );
                    start += pos + 1;
                    n += 1;
                    if batch.len() == batch_size {
                        let full = std::mem::replace(&mut batch, super::new_batch(batch_size));
                        send_batch(&tx, stmt.step, full).await?;
                    }
                }
                buf.drain(..start);
            }
            if !buf.is_empty() {
                return Err(self.ctx.stmt(
                    stmt.step,
                    format!(
                        "the response ended inside a row: {}",
                        String::from_utf8_lossy(&buf).trim()
                    ),
                ));
            }
            if !batch.is_empty() {
                send_batch(&tx, stmt.step, std::mem::take(&mut batch)).await?;
            }
            Ok(())
        }
        .await;
        if outcome.is_err() {
            // The query may still be running on the server and hold the session.
            self.session_dirty = true;
        }
        outcome.map(|_| n)
    }

    /// A line that does not decode: the server's exception (sent after the rows it had
    /// already streamed) or a decoding error.
    fn line_error(
        &self,
        stmt: &Stmt<'_>,
        line: &[u8],
        out: &[Dtype],
        e: (usize, String),
    ) -> RuntimeError {
        let text = String::from_utf8_lossy(line);
        if text.starts_with("Code: ") {
            self.ctx.stmt(stmt.step, text.trim())
        } else {
            self.ctx
                .decode(stmt, e.0, e.1, |k| decode_tsv_cell(line, k, *out.get(k)?))
        }
    }

    /// No-op: ClickHouse has no transactions.
    pub async fn begin(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// No-op: ClickHouse has no transactions.
    pub async fn commit(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// No-op: ClickHouse has no transactions.
    pub async fn rollback(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// The RowBinary body of `rows`, laid out by `natives` (the target table's own column
    /// types) when given, else by the dtypes (`nullable[i]`: column `i` is `Nullable`; an
    /// empty slice means none is).
    fn row_binary(
        &self,
        stmt: &Stmt<'_>,
        types: &[Dtype],
        nullable: &[bool],
        natives: &[String],
        rows: &[Row],
    ) -> Result<Vec<u8>, RuntimeError> {
        let cols = if natives.len() == types.len() {
            types
                .iter()
                .zip(natives)
                .enumerate()
                .map(|(i, (d, n))| {
                    RbColumn::from_native(*d, n).map_err(|m| self.ctx.bind(stmt.step, i + 1, m))
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            types
                .iter()
                .enumerate()
                .map(|(i, d)| RbColumn::from_dtype(*d, nullable.get(i).copied().unwrap_or(false)))
                .collect()
        };
        encode_rows(&cols, rows).map_err(|(row, col, m)| {
            self.ctx
                .bind(stmt.step, col + 1, format!("row {}: {m}", row + 1))
        })
    }

    /// Inserts `rows` with the generator's `INSERT INTO t (cols) FORMAT RowBinary` and waits
    /// for the server's answer: a [`ChConn::stream_row_binary`] ended at once (see
    /// [`ChConn::row_binary`] for the layout). Returns `rows.len()`.
    pub async fn insert_row_binary(
        &mut self,
        stmt: Stmt<'_>,
        types: &[Dtype],
        nullable: &[bool],
        natives: &[String],
        rows: &[Row],
    ) -> Result<u64, RuntimeError> {
        let n = self
            .stream_row_binary(stmt, types, nullable, natives, rows)
            .await?;
        self.end_streams().await?;
        Ok(n)
    }

    /// Appends `rows` to a RowBinary insert of `stmt` whose request body stays open, so
    /// that the server parses one batch while the next is read and encoded, and a sync
    /// makes one part per [`STREAM_MAX_ROWS`] rows instead of one per batch (each part
    /// costs the server a merge later). The request runs outside the session, in its own
    /// task; it ends at [`STREAM_MAX_ROWS`] rows, [`STREAM_MAX_BYTES`] or
    /// [`STREAM_MAX_AGE`], before any other
    /// statement on this connection, and at [`ChConn::end_streams`], which reports its
    /// outcome. A server error shows at the next call or there. A run that stops before the
    /// end leaves whole rows sent: the server keeps them or not, and a re-run converges
    /// either way (ClickHouse has no transactions).
    pub async fn stream_row_binary(
        &mut self,
        stmt: Stmt<'_>,
        types: &[Dtype],
        nullable: &[bool],
        natives: &[String],
        rows: &[Row],
    ) -> Result<u64, RuntimeError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let body = self.row_binary(&stmt, types, nullable, natives, rows)?;
        let n = rows.len() as u64;
        let mut at = self.streams.iter().position(|s| s.sql == stmt.sql);
        if let Some(i) = at {
            let s = &self.streams[i];
            if s.rows + n > self.stream_max_rows
                || s.bytes + body.len() > STREAM_MAX_BYTES
                || s.opened.elapsed() > STREAM_MAX_AGE
            {
                self.end_stream(i).await?;
                at = None;
            }
        }
        let i = match at {
            Some(i) => i,
            None => {
                let open = self.open_stream(&stmt);
                self.streams.push(open);
                self.streams.len() - 1
            }
        };
        let s = &mut self.streams[i];
        s.rows += n;
        s.bytes += body.len();
        if s.tx.send(Ok(bytes::Bytes::from(body))).await.is_err() {
            // The request ended before its body did: the server refused it.
            let step = s.step.clone();
            return Err(match self.end_stream(i).await {
                Err(e) => e,
                Ok(()) => self.ctx.stmt(
                    &step,
                    "the server ended the insert before its rows were sent",
                ),
            });
        }
        Ok(n)
    }

    /// Lowers the rows per streamed insert (for tests of the hand-over between inserts).
    pub fn set_stream_max_rows(&mut self, rows: u64) {
        self.stream_max_rows = rows.max(1);
    }

    /// Starts the request of a streamed insert.
    fn open_stream(&self, stmt: &Stmt<'_>) -> OpenInsert {
        let (tx, rx) = mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(STREAM_CHUNKS_AHEAD);
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        let mut args: Vec<(String, String)> = Vec::new();
        if let Some(db) = &self.database {
            args.push(("database".into(), db.clone()));
        }
        args.push(("query".into(), stmt.sql.to_string()));
        args.push(("query_id".into(), new_query_id()));
        let mut req = self
            .http
            .post(&self.url)
            .query(&args)
            .body(reqwest::Body::wrap_stream(body));
        if let Some(u) = &self.user {
            req = req.basic_auth(u, self.password.as_deref());
        }
        let ctx = self.ctx.clone();
        let done = tokio::spawn(async move {
            let resp = req.send().await.map_err(|e| ctx.scrub(error_chain(&e)))?;
            let status = resp.status();
            let text = resp.text().await.map_err(|e| ctx.scrub(error_chain(&e)))?;
            if status.is_success() {
                Ok(())
            } else {
                Err(ctx.scrub(format!("HTTP {status}: {}", text.trim())))
            }
        });
        OpenInsert {
            opened: Instant::now(),
            sql: stmt.sql.to_string(),
            step: stmt.step.to_string(),
            rows: 0,
            bytes: 0,
            tx,
            done,
        }
    }

    /// Ends streamed insert `i`: closes its body and waits for the server's answer.
    async fn end_stream(&mut self, i: usize) -> Result<(), RuntimeError> {
        let s = self.streams.remove(i);
        drop(s.tx);
        match s.done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(m)) => Err(self.ctx.stmt(&s.step, m)),
            Err(e) => Err(self
                .ctx
                .stmt(&s.step, format!("the insert's task failed: {e}"))),
        }
    }

    /// Ends every streamed insert, in the order they were opened, and reports the first
    /// failure.
    pub async fn end_streams(&mut self) -> Result<(), RuntimeError> {
        let mut first = None;
        while !self.streams.is_empty() {
            if let Err(e) = self.end_stream(0).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// A reqwest error with its sources.
fn error_chain(e: &reqwest::Error) -> String {
    let mut m = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        m.push_str(&format!(": {s}"));
        src = s.source();
    }
    m
}

fn written_rows(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get("X-ClickHouse-Summary")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|j| {
            let w = j.get("written_rows")?;
            w.as_u64().or_else(|| w.as_str()?.parse().ok())
        })
        .unwrap_or(0)
}
