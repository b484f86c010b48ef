//! The run lock of a sink scope (the sink table and its `filters`): the statements a run
//! that writes takes, holds and gives back the lock with, so that two runs into one scope
//! (a scheduler starting a pipeline twice) take turns instead of interleaving their writes.
//!
//! - PostgreSQL: a session-level advisory lock, `pg_try_advisory_lock(key)` on a session
//!   of its own; the key is 62 bits of the scope's md5 (non-negative, so that
//!   `classid * 2^32 + objid` in `pg_locks` gives it back without overflow).
//! - MySQL/MariaDB: `GET_LOCK(name, 0)`, the name `synctool_` + the scope's md5 (41 chars).
//! - ClickHouse has no locks: a `synctool_run_locks` table in the sink's database, where
//!   runs take tickets as in Lamport's bakery: a run claims the scope with a row (ticket 0:
//!   choosing), then takes ticket 1 + the largest ticket of the scope, and holds the lock
//!   when no other live claim (heartbeat within [`STALE_SECS`], not released) is choosing
//!   or has a smaller (ticket, holder). An insert is visible once it returns, so a run that
//!   did not see another's claim took the smaller ticket: no clock and no waiting when no
//!   other run is there. Every run beats (writes a row) every few seconds.

use crate::sql::build::{self, SelectParts};
use crate::sql::dialect::custom;
use crate::sql::params::Binder;
use crate::sql::sink::{insert, SinkCtx};
use crate::sql::{DialectKind, Stmt};
use crate::types::Dtype;
use sqlparser::ast::{
    helpers::stmt_create_table::CreateTableBuilder, BinaryOperator, ColumnDef, CreateTableOptions,
    DataType, Expr, Ident, NamedParenthesizedList, ObjectName, OneOrManyWithParens, Query,
    SqlOption, Statement,
};

/// The name of the ClickHouse lock table, in the sink table's database.
pub const LOCK_TABLE: &str = "synctool_run_locks";
/// A ClickHouse claim whose last heartbeat is older than this many seconds no longer
/// holds (or waits for) the lock: the next live claim takes it over.
pub const STALE_SECS: i64 = 30;

/// Rows of the ClickHouse lock table whose heartbeat is older than this many seconds are
/// deleted by `sink.lock_trim`: no live claim is that silent (a running claim beats every
/// few seconds, and each beat carries its ticket).
pub const TRIM_AFTER_SECS: i64 = 86_400;
/// A ClickHouse run whose ticket is a multiple of this trims its scope's old rows when it
/// gives the lock back: a scope's tickets grow by one per run while its old rows remain,
/// so the table keeps about this many runs' rows per scope, or a day's, whichever is more.
pub const TRIM_EVERY: i64 = 100;

/// Parameter: the PostgreSQL advisory lock key.
pub const P_KEY: &str = "lock_key";
/// Parameter: the MySQL lock name.
pub const P_NAME: &str = "lock_name";
/// Parameter: the ClickHouse lock scope (the scope's md5).
pub const P_SCOPE: &str = "lock_scope";
/// Parameter: the ClickHouse claim's holder (host, process and start of the run).
pub const P_HOLDER: &str = "lock_holder";
/// Parameter: this process's run id ([`crate::runtime::run_id`]: the part of its holders
/// before `#`, and of its ClickHouse query ids before `/`).
pub const P_RUN: &str = "lock_run";
/// Parameter: 1 when a ClickHouse beat gives the lock back, else 0.
pub const P_RELEASED: &str = "lock_released";

/// The PostgreSQL advisory lock key of a scope digest (32 hex digits): its first 62 bits.
pub fn pg_key(digest: &str) -> i64 {
    let hi = u64::from_str_radix(&digest[..16], 16).unwrap_or(0);
    (hi >> 2) as i64
}

/// The MySQL lock name of a scope digest (`synctool_` + 32 hex digits: 41 characters,
/// within MySQL's 64).
pub fn mysql_name(digest: &str) -> String {
    format!("synctool_{digest}")
}

fn col(s: &SinkCtx<'_>, name: &str) -> Expr {
    build::col(s.d, None, name)
}

fn one_row(projection: Vec<Expr>) -> Query {
    build::select(SelectParts {
        projection: projection.into_iter().map(build::item).collect(),
        ..Default::default()
    })
}

/// The ClickHouse lock table, `synctool_run_locks` in the sink table's database.
pub fn lock_table(s: &SinkCtx<'_>) -> ObjectName {
    build::object_name(s.d, s.p.sink.table.schema.as_deref(), LOCK_TABLE)
}

/// `sink.lock` (PostgreSQL, MySQL): try to take the lock without waiting; one row, 1 (or
/// true) when taken.
pub fn take(s: &SinkCtx<'_>, b: &mut Binder) -> Option<Query> {
    let e = match s.d.kind() {
        DialectKind::Postgres => {
            build::call("pg_try_advisory_lock", vec![b.bind(P_KEY, Dtype::Int)])
        }
        DialectKind::Mysql => {
            build::call("GET_LOCK", vec![b.bind(P_NAME, Dtype::Str), build::int(0)])
        }
        DialectKind::Clickhouse => return None,
    };
    Some(one_row(vec![e]))
}

/// `sink.lock_holder` (PostgreSQL, MySQL): the session holding the lock (if any) and this
/// session's own id, one row per holder: PostgreSQL `SELECT pid, pg_backend_pid() FROM
/// pg_locks WHERE …`, MySQL `SELECT IS_USED_LOCK(name), CONNECTION_ID()`. A waiting run
/// names the holder; the holding run checks it is still the holder.
pub fn holder(s: &SinkCtx<'_>, b: &mut Binder) -> Option<Query> {
    match s.d.kind() {
        DialectKind::Postgres => {
            let as_big = |c: &str| build::cast(col(s, c), DataType::BigInt(None));
            let key = build::binop(
                build::binop(
                    as_big("classid"),
                    BinaryOperator::Multiply,
                    build::int(1 << 32),
                ),
                BinaryOperator::Plus,
                as_big("objid"),
            );
            let preds = vec![
                build::eq(col(s, "locktype"), build::string("advisory")),
                col(s, "granted"),
                build::eq(col(s, "objsubid"), build::int(1)),
                build::eq(key, b.bind(P_KEY, Dtype::Int)),
            ];
            Some(build::select(SelectParts {
                projection: vec![
                    build::item(col(s, "pid")),
                    build::item(build::call("pg_backend_pid", vec![])),
                ],
                from: Some(build::from(build::table(
                    build::builtin_name(&["pg_locks"]),
                    None,
                    false,
                ))),
                selection: build::and_all(preds),
                ..Default::default()
            }))
        }
        DialectKind::Mysql => Some(one_row(vec![
            build::call("IS_USED_LOCK", vec![b.bind(P_NAME, Dtype::Str)]),
            build::call("CONNECTION_ID", vec![]),
        ])),
        DialectKind::Clickhouse => None,
    }
}

/// `sink.unlock` (PostgreSQL, MySQL): give the lock back (closing the session would too).
pub fn release(s: &SinkCtx<'_>, b: &mut Binder) -> Option<Query> {
    let e = match s.d.kind() {
        DialectKind::Postgres => build::call("pg_advisory_unlock", vec![b.bind(P_KEY, Dtype::Int)]),
        DialectKind::Mysql => build::call("RELEASE_LOCK", vec![b.bind(P_NAME, Dtype::Str)]),
        DialectKind::Clickhouse => return None,
    };
    Some(one_row(vec![e]))
}

/// `sink.lock_table` (ClickHouse): `CREATE TABLE IF NOT EXISTS synctool_run_locks (scope
/// String, holder String, ticket UInt64, heartbeat DateTime, released UInt8) ENGINE =
/// ReplacingMergeTree(heartbeat) ORDER BY (scope, holder, released)`: the background
/// merges keep one row per claim (and its release), each carrying the claim's ticket;
/// every read aggregates per holder.
pub fn ch_create_table(s: &SinkCtx<'_>) -> Statement {
    let def = |name: &str, ty: &str| ColumnDef {
        name: s.d.ident(name),
        data_type: custom(ty, &[]),
        options: vec![],
    };
    CreateTableBuilder::new(lock_table(s))
        .if_not_exists(true)
        .columns(vec![
            def("scope", "String"),
            def("holder", "String"),
            def("ticket", "UInt64"),
            def("heartbeat", "DateTime"),
            def("released", "UInt8"),
        ])
        .table_options(CreateTableOptions::Plain(vec![
            SqlOption::NamedParenthesizedList(NamedParenthesizedList {
                key: Ident::new("ENGINE"),
                name: Some(Ident::new("ReplacingMergeTree")),
                values: vec![s.d.ident("heartbeat")],
            }),
        ]))
        .order_by(Some(OneOrManyWithParens::Many(vec![
            col(s, "scope"),
            col(s, "holder"),
            col(s, "released"),
        ])))
        .build()
}

fn lock_columns(s: &SinkCtx<'_>) -> Vec<Ident> {
    ["scope", "holder", "ticket", "heartbeat", "released"]
        .iter()
        .map(|c| s.d.ident(c))
        .collect()
}

fn scope_is(s: &SinkCtx<'_>, b: &mut Binder) -> Expr {
    build::eq(col(s, "scope"), b.bind(P_SCOPE, Dtype::Str))
}

/// `sink.lock_claim` (ClickHouse): `INSERT INTO synctool_run_locks … SELECT scope, holder,
/// 0, now(), 0`: the run announces that it is choosing a ticket.
pub fn ch_claim(s: &SinkCtx<'_>, b: &mut Binder) -> Statement {
    let q = one_row(vec![
        b.bind(P_SCOPE, Dtype::Str),
        b.bind(P_HOLDER, Dtype::Str),
        build::int(0),
        build::call("now", vec![]),
        build::int(0),
    ]);
    insert(lock_table(s), lock_columns(s), q, None, None)
}

/// `sink.lock_ticket` (ClickHouse): `INSERT INTO synctool_run_locks … SELECT scope, holder,
/// 1 + max(ticket), now(), 0 FROM synctool_run_locks WHERE scope = …`: the run's ticket,
/// larger than every ticket of the scope it can see.
pub fn ch_ticket(s: &SinkCtx<'_>, b: &mut Binder) -> Statement {
    let scope = b.bind(P_SCOPE, Dtype::Str);
    let holder = b.bind(P_HOLDER, Dtype::Str);
    let q = build::select(SelectParts {
        projection: vec![
            build::item(scope),
            build::item(holder),
            build::item(build::binop(
                build::int(1),
                BinaryOperator::Plus,
                build::call("max", vec![col(s, "ticket")]),
            )),
            build::item(build::call("now", vec![])),
            build::item(build::int(0)),
        ],
        from: Some(build::from(build::table(lock_table(s), None, false))),
        selection: Some(scope_is(s, b)),
        ..Default::default()
    });
    insert(lock_table(s), lock_columns(s), q, None, None)
}

/// `sink.lock_beat` (ClickHouse): `INSERT INTO synctool_run_locks … SELECT scope, holder,
/// max(ticket), now(), released FROM synctool_run_locks WHERE scope = … AND holder = …
/// GROUP BY scope, holder`: a heartbeat of the run's claim (released 0), or its release
/// (released 1).
pub fn ch_beat(s: &SinkCtx<'_>, b: &mut Binder) -> Statement {
    let q = build::select(SelectParts {
        projection: vec![
            build::item(col(s, "scope")),
            build::item(col(s, "holder")),
            build::item(build::call("max", vec![col(s, "ticket")])),
            build::item(build::call("now", vec![])),
            build::item(b.bind(P_RELEASED, Dtype::Int)),
        ],
        from: Some(build::from(build::table(lock_table(s), None, false))),
        selection: build::and_all(vec![
            build::eq(col(s, "scope"), b.bind(P_SCOPE, Dtype::Str)),
            build::eq(col(s, "holder"), b.bind(P_HOLDER, Dtype::Str)),
        ]),
        group_by: vec![col(s, "scope"), col(s, "holder")],
        ..Default::default()
    });
    insert(lock_table(s), lock_columns(s), q, None, None)
}

/// `sink.lock_state` (ClickHouse): the live claims of the scope and their tickets (0 while
/// choosing), smallest ticket first: `SELECT holder, max(ticket) FROM synctool_run_locks
/// WHERE scope = … GROUP BY holder HAVING max(released) = 0 AND max(heartbeat) >= now() -
/// 30 ORDER BY max(ticket), holder`.
pub fn ch_state(s: &SinkCtx<'_>, b: &mut Binder) -> Query {
    let ticket = || build::call("max", vec![col(s, "ticket")]);
    build::select(SelectParts {
        projection: vec![
            build::item(col(s, "holder")),
            build::item(build::call("toInt64", vec![ticket()])),
        ],
        from: Some(build::from(build::table(lock_table(s), None, false))),
        selection: Some(scope_is(s, b)),
        group_by: vec![col(s, "holder")],
        having: build::and_all(vec![
            build::eq(build::call("max", vec![col(s, "released")]), build::int(0)),
            build::binop(
                build::call("max", vec![col(s, "heartbeat")]),
                BinaryOperator::GtEq,
                build::binop(
                    build::call("now", vec![]),
                    BinaryOperator::Minus,
                    build::int(STALE_SECS),
                ),
            ),
        ]),
        order_by: vec![ticket(), col(s, "holder")],
    })
}

/// `sink.lock_trim` (ClickHouse): `ALTER TABLE synctool_run_locks DELETE WHERE scope = … AND
/// heartbeat < now() - 86400`: the rows of the scope's old claims (released, or taken over),
/// which 18.16 cannot expire with a TTL. A mutation, left to run in the background.
pub fn ch_trim(s: &SinkCtx<'_>, b: &mut Binder) -> Stmt {
    let old = build::binop(
        col(s, "heartbeat"),
        BinaryOperator::Lt,
        build::binop(
            build::call("now", vec![]),
            BinaryOperator::Minus,
            build::int(TRIM_AFTER_SECS),
        ),
    );
    Stmt::ClickhouseAlterDelete {
        table: lock_table(s),
        selection: Box::new(build::binop(scope_is(s, b), BinaryOperator::And, old)),
    }
}

/// `sink.lock_inflight` (ClickHouse): how many queries of the scope's other runs the server
/// still runs: `SELECT toInt64(count()) FROM system.processes WHERE
/// arrayElement(splitByChar('/', query_id), 1) IN (SELECT arrayElement(splitByChar('#',
/// holder), 1) FROM synctool_run_locks WHERE scope = …) AND arrayElement(splitByChar('/',
/// query_id), 1) != …`. A run stopped by an interrupt or a kill leaves its last insert
/// running on the server for a moment (its rows land after the process ended); the run
/// that takes the lock next waits for it before it reads or writes the sink.
pub fn ch_inflight(s: &SinkCtx<'_>, b: &mut Binder) -> Query {
    let run_of = |e: Expr, sep: &str| {
        build::call(
            "arrayElement",
            vec![
                build::call("splitByChar", vec![build::string(sep), e]),
                build::int(1),
            ],
        )
    };
    let holders = build::select(SelectParts {
        projection: vec![build::item(run_of(col(s, "holder"), "#"))],
        from: Some(build::from(build::table(lock_table(s), None, false))),
        selection: Some(scope_is(s, b)),
        ..Default::default()
    });
    let query_run = || run_of(col(s, "query_id"), "/");
    build::select(SelectParts {
        projection: vec![build::item(build::call(
            "toInt64",
            vec![build::call("count", vec![])],
        ))],
        from: Some(build::from(build::table(
            build::builtin_name(&["system", "processes"]),
            None,
            false,
        ))),
        selection: build::and_all(vec![
            build::in_subquery(query_run(), holders, false),
            build::binop(
                query_run(),
                BinaryOperator::NotEq,
                b.bind(P_RUN, Dtype::Str),
            ),
        ]),
        ..Default::default()
    })
}
