//! A minimal connector with the contract of the real `Conn` (PostgreSQL and MySQL/MariaDB
//! only), so that the engine can run end to end until the dialect connectors replace this
//! file. PostgreSQL goes through tokio-postgres (extended protocol, binary values, binary
//! `COPY`); MySQL through mysql_async (binary protocol, multi-row `VALUES` loads).
//! ClickHouse is not covered: every call returns [`RuntimeError::Config`].

use super::{ConnSettings, Stmt};
use crate::expr::{Decimal, Value};
use crate::runtime::{Row, RuntimeError};
use crate::sql::DialectKind;
use crate::types::Dtype;
use bytes::{BufMut, BytesMut};
use chrono::{NaiveDate, NaiveDateTime, Timelike};
use futures_util::{pin_mut, StreamExt, TryStreamExt};
use mysql_async::prelude::Queryable;
use tokio::sync::mpsc;
use tokio_postgres::types::{IsNull, Kind, ToSql, Type};

/// One open connection (one server session) to a SQL datastore.
pub enum Conn {
    /// PostgreSQL.
    Postgres(PgConn),
    /// MySQL / MariaDB.
    Mysql(MyConn),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({})", self.dialect().name())
    }
}

/// A PostgreSQL session.
pub struct PgConn {
    client: tokio_postgres::Client,
    s: ConnSettings,
    version: String,
}

/// A MySQL / MariaDB session.
pub struct MyConn {
    conn: mysql_async::Conn,
    s: ConnSettings,
    version: String,
}

fn stmt_err(s: &ConnSettings, step: &str, msg: impl std::fmt::Display) -> RuntimeError {
    let mut message = msg.to_string();
    if let Some(p) = s.password.as_ref().map(|p| p.expose()) {
        if !p.is_empty() {
            message = message.replace(p, "***");
        }
    }
    RuntimeError::Statement {
        store: s.name.clone(),
        host: s.address(),
        step: step.to_string(),
        message,
    }
}

fn connect_err(s: &ConnSettings, msg: impl std::fmt::Display) -> RuntimeError {
    match stmt_err(s, "connect", msg) {
        RuntimeError::Statement {
            store,
            host,
            message,
            ..
        } => RuntimeError::Connect {
            store,
            host,
            message,
        },
        e => e,
    }
}

impl Conn {
    /// Connects and runs the session setup statements in order.
    pub async fn connect(s: &ConnSettings, session: &[String]) -> Result<Conn, RuntimeError> {
        match s.dialect {
            DialectKind::Postgres => {
                let mut cfg = tokio_postgres::Config::new();
                cfg.host(&s.host).port(s.port);
                cfg.user(s.username.as_deref().unwrap_or("postgres"));
                if let Some(p) = &s.password {
                    cfg.password(p.expose());
                }
                if let Some(db) = &s.database {
                    cfg.dbname(db);
                }
                let (client, conn) = cfg
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| connect_err(s, e))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                let row = client
                    .query_one("SHOW server_version", &[])
                    .await
                    .map_err(|e| connect_err(s, e))?;
                let version: String = row.get(0);
                for st in session {
                    client
                        .batch_execute(st)
                        .await
                        .map_err(|e| stmt_err(s, "session", e))?;
                }
                Ok(Conn::Postgres(PgConn {
                    client,
                    s: s.clone(),
                    version,
                }))
            }
            DialectKind::Mysql => {
                let mut b = mysql_async::OptsBuilder::default()
                    .ip_or_hostname(s.host.clone())
                    .tcp_port(s.port)
                    .user(Some(s.username.clone().unwrap_or_else(|| "root".into())))
                    .db_name(s.database.clone());
                if let Some(p) = &s.password {
                    b = b.pass(Some(p.expose().to_string()));
                }
                let mut conn = mysql_async::Conn::new(b)
                    .await
                    .map_err(|e| connect_err(s, e))?;
                let (major, minor, patch) = conn.server_version();
                let version = format!("{major}.{minor}.{patch}");
                for st in session {
                    conn.query_drop(st.as_str())
                        .await
                        .map_err(|e| stmt_err(s, "session", e))?;
                }
                Ok(Conn::Mysql(MyConn {
                    conn,
                    s: s.clone(),
                    version,
                }))
            }
            DialectKind::Clickhouse => Err(RuntimeError::Config(format!(
                "datastore `{}`: the ClickHouse connector is not available in this build",
                s.name
            ))),
        }
    }

    /// The dialect of this connection.
    pub fn dialect(&self) -> DialectKind {
        match self {
            Conn::Postgres(_) => DialectKind::Postgres,
            Conn::Mysql(_) => DialectKind::Mysql,
        }
    }

    /// The server's version text.
    pub fn server_version(&self) -> &str {
        match self {
            Conn::Postgres(c) => &c.version,
            Conn::Mysql(c) => &c.version,
        }
    }

    /// Runs a statement; returns the number of affected rows.
    pub async fn execute(&mut self, stmt: Stmt<'_>, params: &[Value]) -> Result<u64, RuntimeError> {
        match self {
            Conn::Postgres(c) => {
                let st = c.prepare(&stmt).await?;
                let vals = pg_params(&stmt, params);
                c.client
                    .execute_raw(&st, vals.iter().map(|v| v as &(dyn ToSql + Sync)))
                    .await
                    .map_err(|e| pg_err(&c.s, stmt.step, e))
            }
            Conn::Mysql(c) => {
                c.conn
                    .exec_drop(stmt.sql, my_params(params))
                    .await
                    .map_err(|e| stmt_err(&c.s, stmt.step, e))?;
                Ok(c.conn.affected_rows())
            }
        }
    }

    /// Runs a query and returns all its rows, each column decoded as `out[i]`.
    pub async fn query(
        &mut self,
        stmt: Stmt<'_>,
        params: &[Value],
        out: &[Dtype],
    ) -> Result<Vec<Row>, RuntimeError> {
        let (tx, mut rx) = mpsc::channel(1);
        let mut rows = Vec::new();
        let fut = self.stream(stmt, params, out, 4096, tx);
        let collect = async {
            while let Some(b) = rx.recv().await {
                rows.extend(b?);
            }
            Ok::<(), RuntimeError>(())
        };
        let (a, b) = tokio::join!(fut, collect);
        a?;
        b?;
        Ok(rows)
    }

    /// Runs a query and sends its rows to `tx` in batches of `batch_size`.
    pub async fn stream(
        &mut self,
        stmt: Stmt<'_>,
        params: &[Value],
        out: &[Dtype],
        batch_size: usize,
        tx: mpsc::Sender<Result<Vec<Row>, RuntimeError>>,
    ) -> Result<u64, RuntimeError> {
        let batch_size = batch_size.max(1);
        let gone = || RuntimeError::Config(format!("step {}: the row consumer stopped", stmt.step));
        let mut n = 0u64;
        let mut batch = Vec::with_capacity(batch_size);
        match self {
            Conn::Postgres(c) => {
                let st = c.prepare(&stmt).await?;
                let vals = pg_params(&stmt, params);
                let rows = c
                    .client
                    .query_raw(&st, vals.iter().map(|v| v as &(dyn ToSql + Sync)))
                    .await
                    .map_err(|e| pg_err(&c.s, stmt.step, e))?;
                pin_mut!(rows);
                while let Some(r) = rows
                    .try_next()
                    .await
                    .map_err(|e| pg_err(&c.s, stmt.step, e))?
                {
                    let mut row = Vec::with_capacity(out.len());
                    for (i, t) in out.iter().enumerate() {
                        let v: PgOut = r
                            .try_get(i)
                            .map_err(|e| stmt_err(&c.s, stmt.step, format!("column {i}: {e}")))?;
                        row.push(
                            coerce_out(v.0, *t).map_err(|m| {
                                stmt_err(&c.s, stmt.step, format!("column {i}: {m}"))
                            })?,
                        );
                    }
                    batch.push(row);
                    n += 1;
                    if batch.len() == batch_size {
                        tx.send(Ok(std::mem::take(&mut batch)))
                            .await
                            .map_err(|_| gone())?;
                    }
                }
            }
            Conn::Mysql(c) => {
                let s = c.s.clone();
                let mut rows = c
                    .conn
                    .exec_stream::<mysql_async::Row, _, _>(stmt.sql, my_params(params))
                    .await
                    .map_err(|e| stmt_err(&s, stmt.step, e))?;
                while let Some(r) = rows.next().await {
                    let r = r.map_err(|e| stmt_err(&s, stmt.step, e))?;
                    let vals = r.unwrap();
                    let mut row = Vec::with_capacity(out.len());
                    for (i, t) in out.iter().enumerate() {
                        let v = vals.get(i).cloned().unwrap_or(mysql_async::Value::NULL);
                        row.push(
                            my_decode(v, *t)
                                .map_err(|m| stmt_err(&s, stmt.step, format!("column {i}: {m}")))?,
                        );
                    }
                    batch.push(row);
                    n += 1;
                    if batch.len() == batch_size {
                        tx.send(Ok(std::mem::take(&mut batch)))
                            .await
                            .map_err(|_| gone())?;
                    }
                }
            }
        }
        if !batch.is_empty() {
            tx.send(Ok(batch)).await.map_err(|_| gone())?;
        }
        Ok(n)
    }

    /// Starts a transaction.
    pub async fn begin(&mut self) -> Result<(), RuntimeError> {
        self.control("BEGIN").await
    }

    /// Commits the open transaction.
    pub async fn commit(&mut self) -> Result<(), RuntimeError> {
        self.control("COMMIT").await
    }

    /// Rolls the open transaction back.
    pub async fn rollback(&mut self) -> Result<(), RuntimeError> {
        self.control("ROLLBACK").await
    }

    async fn control(&mut self, what: &str) -> Result<(), RuntimeError> {
        match self {
            Conn::Postgres(c) => c
                .client
                .batch_execute(what)
                .await
                .map_err(|e| pg_err(&c.s, what, e)),
            Conn::Mysql(c) => c
                .conn
                .query_drop(what)
                .await
                .map_err(|e| stmt_err(&c.s, what, e)),
        }
    }

    /// Bulk-loads `rows`: PostgreSQL binary `COPY`, MySQL multi-row `VALUES` (the statement
    /// must have exactly `rows.len()` tuples). `nullable` is only needed by ClickHouse.
    pub async fn load(
        &mut self,
        stmt: Stmt<'_>,
        types: &[Dtype],
        nullable: &[bool],
        rows: &[Row],
    ) -> Result<u64, RuntimeError> {
        let _ = nullable;
        match self {
            Conn::Postgres(c) => {
                let sink = c
                    .client
                    .copy_in::<_, bytes::Bytes>(stmt.sql)
                    .await
                    .map_err(|e| pg_err(&c.s, stmt.step, e))?;
                let pg_types: Vec<Type> = types.iter().map(|t| pg_type(*t)).collect();
                let w = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &pg_types);
                pin_mut!(w);
                for r in rows {
                    let vals: Vec<PgIn> = r
                        .iter()
                        .zip(types)
                        .map(|(v, t)| PgIn(v.clone(), *t))
                        .collect();
                    w.as_mut()
                        .write_raw(vals.iter().map(|v| v as &(dyn ToSql + Sync)))
                        .await
                        .map_err(|e| pg_err(&c.s, stmt.step, e))?;
                }
                w.finish().await.map_err(|e| pg_err(&c.s, stmt.step, e))
            }
            Conn::Mysql(c) => {
                let flat: Vec<Value> = rows.iter().flatten().cloned().collect();
                c.conn
                    .exec_drop(stmt.sql, my_params(&flat))
                    .await
                    .map_err(|e| stmt_err(&c.s, stmt.step, e))?;
                Ok(rows.len() as u64)
            }
        }
    }
}

fn pg_err(s: &ConnSettings, step: &str, e: tokio_postgres::Error) -> RuntimeError {
    let msg = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    };
    stmt_err(s, step, msg)
}

impl PgConn {
    async fn prepare(&self, stmt: &Stmt<'_>) -> Result<tokio_postgres::Statement, RuntimeError> {
        let types: Vec<Type> = stmt.param_types.iter().map(|t| pg_type(*t)).collect();
        self.client
            .prepare_typed(stmt.sql, &types)
            .await
            .map_err(|e| pg_err(&self.s, stmt.step, e))
    }
}

fn pg_type(t: Dtype) -> Type {
    match t {
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

fn pg_params(stmt: &Stmt<'_>, params: &[Value]) -> Vec<PgIn> {
    params
        .iter()
        .zip(stmt.param_types)
        .map(|(v, t)| PgIn(v.clone(), *t))
        .collect()
}

fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("valid date")
}

/// A value bound as the PostgreSQL type of its dtype, in binary format.
#[derive(Debug)]
struct PgIn(Value, Dtype);

type BoxErr = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for PgIn {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        let v = coerce_out(self.0.clone(), self.1)?;
        match v {
            Value::Null => return Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT4 => out.put_i32(i32::try_from(i)?),
                Type::INT2 => out.put_i16(i16::try_from(i)?),
                _ => out.put_i64(i),
            },
            Value::Float(f) => out.put_f64(f),
            Value::Decimal(d) => encode_numeric(d, out),
            Value::Str(s) => out.put_slice(s.as_bytes()),
            Value::Bool(b) => out.put_u8(b as u8),
            Value::Date(d) => {
                let days = (d - pg_epoch().date()).num_days();
                out.put_i32(i32::try_from(days)?);
            }
            Value::Datetime(t) => {
                let us = (t - pg_epoch())
                    .num_microseconds()
                    .ok_or("timestamp out of range")?;
                out.put_i64(us);
            }
            Value::Uuid(s) => {
                let hex: String = s.chars().filter(|c| *c != '-').collect();
                let b = hex::decode(hex)?;
                if b.len() != 16 {
                    return Err("invalid uuid".into());
                }
                out.put_slice(&b);
            }
            Value::Json(j) => {
                if *ty == Type::JSONB {
                    out.put_u8(1);
                }
                out.put_slice(j.to_string().as_bytes());
            }
            other => return Err(format!("cannot bind {other:?}").into()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn encode_numeric(d: Decimal, out: &mut BytesMut) {
    let scale = d.scale() as usize;
    let neg = d.mantissa() < 0;
    let mut digits = d.mantissa().unsigned_abs().to_string();
    if digits.len() <= scale {
        digits = format!("{}{digits}", "0".repeat(scale + 1 - digits.len()));
    }
    let (int_part, frac_part) = digits.split_at(digits.len() - scale);
    let int_pad = (4 - int_part.len() % 4) % 4;
    let int_s = format!("{}{int_part}", "0".repeat(int_pad));
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let frac_s = format!("{frac_part}{}", "0".repeat(frac_pad));
    let mut groups: Vec<i16> = int_s
        .as_bytes()
        .chunks(4)
        .chain(frac_s.as_bytes().chunks(4))
        .map(|c| std::str::from_utf8(c).unwrap_or("0").parse().unwrap_or(0))
        .collect();
    let mut weight = (int_s.len() / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(if neg && !groups.is_empty() { 0x4000 } else { 0 });
    out.put_i16(scale as i16);
    for g in groups {
        out.put_i16(g);
    }
}

fn decode_numeric(raw: &[u8]) -> Result<Decimal, BoxErr> {
    let rd = |i: usize| -> Result<i16, BoxErr> {
        let b = raw.get(i..i + 2).ok_or("short numeric")?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    };
    let n = rd(0)? as usize;
    let weight = rd(2)? as i32;
    let sign = rd(4)? as u16;
    let dscale = rd(6)? as i32;
    if sign == 0xC000 {
        return Err("NaN numeric".into());
    }
    let mut m: i128 = 0;
    for i in 0..n {
        let digit = rd(8 + 2 * i)? as i128;
        let exp = 4 * (weight - i as i32) + dscale;
        if exp >= 0 {
            let p = 10i128.checked_pow(exp as u32).ok_or("numeric overflow")?;
            m = m
                .checked_add(digit.checked_mul(p).ok_or("numeric overflow")?)
                .ok_or("numeric overflow")?;
        } else {
            m += digit / 10i128.pow((-exp) as u32);
        }
    }
    if sign == 0x4000 {
        m = -m;
    }
    Decimal::new(m, dscale as u32).ok_or_else(|| "numeric scale too large".into())
}

/// A PostgreSQL result value of any supported type.
struct PgOut(Value);

impl<'a> tokio_postgres::types::FromSql<'a> for PgOut {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxErr> {
        if let Kind::Domain(base) = ty.kind() {
            return Self::from_sql(base, raw);
        }
        let int = |n: usize| -> Result<i64, BoxErr> {
            let b = raw.get(..n).ok_or("short value")?;
            Ok(match n {
                2 => i16::from_be_bytes([b[0], b[1]]) as i64,
                4 => i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64,
                _ => i64::from_be_bytes(b.try_into()?),
            })
        };
        let v = match *ty {
            Type::INT2 => Value::Int(int(2)?),
            Type::INT4 | Type::OID => Value::Int(int(4)?),
            Type::INT8 => Value::Int(int(8)?),
            Type::FLOAT4 => Value::Float(f32::from_be_bytes(raw.try_into()?) as f64),
            Type::FLOAT8 => Value::Float(f64::from_be_bytes(raw.try_into()?)),
            Type::NUMERIC => Value::Decimal(decode_numeric(raw)?),
            Type::BOOL => Value::Bool(raw.first() == Some(&1)),
            Type::DATE => Value::Date(pg_epoch().date() + chrono::Duration::days(int(4)?)),
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                Value::Datetime(pg_epoch() + chrono::Duration::microseconds(int(8)?))
            }
            Type::UUID => {
                let h = hex::encode(raw);
                Value::Uuid(format!(
                    "{}-{}-{}-{}-{}",
                    &h[0..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..32]
                ))
            }
            Type::JSONB => Value::Json(serde_json::from_slice(raw.get(1..).unwrap_or(&[]))?),
            Type::JSON => Value::Json(serde_json::from_slice(raw)?),
            _ => Value::Str(std::str::from_utf8(raw)?.to_string()),
        };
        Ok(PgOut(v))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxErr> {
        Ok(PgOut(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Converts a decoded value to the dtype the caller asked for.
fn coerce_out(v: Value, t: Dtype) -> Result<Value, String> {
    let bad = |v: &Value| format!("cannot read {v:?} as {t}");
    Ok(match (v, t) {
        (Value::Null, _) => Value::Null,
        (Value::Int(i), Dtype::Int) => Value::Int(i),
        (Value::Int(i), Dtype::Float) => Value::Float(i as f64),
        (Value::Int(i), Dtype::Decimal { .. }) => Value::Decimal(Decimal::from_i64(i)),
        (Value::Int(i), Dtype::Bool) => Value::Bool(i != 0),
        (Value::Int(i), Dtype::Str) => Value::Str(i.to_string()),
        (Value::Decimal(d), Dtype::Int) => {
            Value::Int(d.trunc_i64().ok_or_else(|| bad(&Value::Decimal(d)))?)
        }
        (Value::Decimal(d), Dtype::Float) => Value::Float(d.to_f64()),
        (Value::Decimal(d), Dtype::Str) => Value::Str(d.to_string()),
        (Value::Float(f), Dtype::Decimal { .. }) => {
            Value::Decimal(Decimal::from_f64(f).ok_or_else(|| bad(&Value::Float(f)))?)
        }
        (Value::Str(s), Dtype::Uuid) => Value::Uuid(s.to_ascii_lowercase()),
        (Value::Str(s), Dtype::Int) => {
            Value::Int(s.trim().parse().map_err(|_| bad(&Value::Str(s.clone())))?)
        }
        (Value::Str(s), Dtype::Decimal { .. }) => {
            Value::Decimal(Decimal::parse(&s).ok_or_else(|| bad(&Value::Str(s.clone())))?)
        }
        (Value::Str(s), Dtype::Float) => {
            Value::Float(s.trim().parse().map_err(|_| bad(&Value::Str(s.clone())))?)
        }
        (Value::Str(s), Dtype::Json) => {
            Value::Json(serde_json::from_str(&s).map_err(|e| e.to_string())?)
        }
        (Value::Str(s), Dtype::Bool) => Value::Bool(matches!(s.as_str(), "1" | "t" | "true")),
        (Value::Str(s), Dtype::Datetime) => Value::Datetime(
            NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f")
                .map_err(|e| format!("{s:?}: {e}"))?,
        ),
        (Value::Str(s), Dtype::Date) => Value::Date(
            NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|e| format!("{s:?}: {e}"))?,
        ),
        (Value::Uuid(s), Dtype::Str) => Value::Str(s),
        (Value::Json(j), Dtype::Str) => Value::Str(j.to_string()),
        (Value::Bool(b), Dtype::Int) => Value::Int(b as i64),
        (Value::Date(d), Dtype::Datetime) => {
            Value::Datetime(d.and_hms_opt(0, 0, 0).ok_or("invalid date")?)
        }
        (Value::Datetime(d), Dtype::Date) => Value::Date(d.date()),
        (v, _) => v,
    })
}

fn my_params(params: &[Value]) -> mysql_async::Params {
    if params.is_empty() {
        return mysql_async::Params::Empty;
    }
    mysql_async::Params::Positional(params.iter().map(my_value).collect())
}

fn my_value(v: &Value) -> mysql_async::Value {
    use mysql_async::Value as M;
    match v {
        Value::Null => M::NULL,
        Value::Int(i) => M::Int(*i),
        Value::Float(f) => M::Double(*f),
        Value::Bool(b) => M::Int(*b as i64),
        Value::Date(d) => {
            use chrono::Datelike;
            M::Date(d.year() as u16, d.month() as u8, d.day() as u8, 0, 0, 0, 0)
        }
        Value::Datetime(t) => {
            use chrono::Datelike;
            M::Date(
                t.year() as u16,
                t.month() as u8,
                t.day() as u8,
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
                t.nanosecond() / 1000,
            )
        }
        Value::Json(j) => M::Bytes(j.to_string().into_bytes()),
        other => M::Bytes(other.to_text().into_bytes()),
    }
}

fn my_decode(v: mysql_async::Value, t: Dtype) -> Result<Value, String> {
    use mysql_async::Value as M;
    let v = match v {
        M::NULL => Value::Null,
        M::Int(i) => Value::Int(i),
        M::UInt(u) => Value::Int(i64::try_from(u).map_err(|e| e.to_string())?),
        M::Float(f) => Value::Float(f as f64),
        M::Double(f) => Value::Float(f),
        M::Bytes(b) => Value::Str(String::from_utf8(b).map_err(|e| e.to_string())?),
        M::Date(y, mo, d, h, mi, s, us) => {
            let date =
                NaiveDate::from_ymd_opt(y as i32, mo as u32, d as u32).ok_or("invalid date")?;
            if t == Dtype::Date {
                Value::Date(date)
            } else {
                Value::Datetime(
                    date.and_hms_micro_opt(h as u32, mi as u32, s as u32, us)
                        .ok_or("invalid time")?,
                )
            }
        }
        M::Time(..) => return Err("TIME values are not supported".into()),
    };
    coerce_out(v, t)
}
