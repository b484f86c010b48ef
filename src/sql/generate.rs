//! The step list of a pipeline, in a fixed order.
//!
//! Step ids, in output order (each present only when it applies):
//! - `source.session`, (ClickHouse without `final`) `source.engine`, (MySQL to MySQL with
//!   text keys) `source.collations`, (no filters, only LEFT joins) `source.row_estimate`,
//!   `source.extract`
//! - `sink.session`, (PostgreSQL, MySQL) `sink.lock`, `sink.lock_holder`, `sink.unlock`,
//!   (ClickHouse) `sink.lock_table`, `sink.lock_claim`, `sink.lock_ticket`, `sink.lock_beat`, `sink.lock_state`, `sink.lock_inflight`, `sink.lock_trim`,
//!   `sink.columns`, (PostgreSQL) `sink.enum_labels`, (PostgreSQL and MySQL upserts and
//!   collapses) `sink.unique_indexes`, (MySQL) `sink.storage_engine`, (ClickHouse)
//!   `sink.engine`, `sink.create`
//! - `sink.stage`, (MySQL, ClickHouse) `sink.stage_clear`, `sink.load`, `sink.load_direct` (loads into a sink
//!   table the run created; not for ClickHouse upserts, whose `sink.load` is one),
//!   `sink.merge`
//! - with `allow_delete`: `sink.stage_keys`, `sink.stage_keys_clear`, `sink.load_keys`,
//!   (with a staging table) `sink.stage_keys_copy`, `sink.delete_keys`, `sink.delete_absent`,
//!   (ClickHouse) `sink.count_absent`, and (both sides databases) `sink.keys`, merged by
//!   `plan` with `source.keys` (after `source.extract`)
//! - ClickHouse sinks that delete: `sink.mutations`
//! - ClickHouse sinks with staging tables: `sink.stage_drop`
//! - per reconciliation `R`: `recon.R.source.range`, `recon.R.sink.range`,
//!   `recon.R.source.nulls`, `recon.R.sink.nulls` (and for the NULL-partition block
//!   `recon.R.*.null_leaf_diff`, `recon.R.source.extract_null`), `recon.R.source.block_hash`,
//!   `recon.R.sink.block_hash`, `recon.R.source.leaf_diff`, `recon.R.sink.leaf_diff`,
//!   `recon.R.source.extract_range`, (with `allow_delete`, int/float/date/datetime
//!   partitions, neither collapse nor a ClickHouse upsert) `recon.R.sink.delete_range`,
//!   (with `allow_delete`, collapse) `recon.R.sink.cancel_leaf_keys` and (not bucketed)
//!   `recon.R.sink.cancel_null_leaf_keys`;
//!   for `timestamp`: `recon.R.sink.watermark`, `recon.R.source.extract_since`, and (when
//!   both sides hash rows) the block-hash steps above for the lookback window and the
//!   NULL-partition block, else `recon.R.source.extract_null`.

use crate::ir::{MergeKind, Pipeline, ReconStrategy, Reconciliation, Store};
use crate::sql::build;
use crate::sql::hash;
use crate::sql::params::Binder;
use crate::sql::recon::{self, Reader};
use crate::sql::sink::SinkCtx;
use crate::sql::source::{self, SourceCtx};
use crate::sql::step::{Side, SqlStep, Stmt};
use crate::sql::{Dialect, DialectKind, SqlError};
use sqlparser::ast::{BinaryOperator, Statement};

/// Collects the steps of one pipeline.
struct Steps {
    out: Vec<SqlStep>,
}

impl Steps {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        id: String,
        side: Side,
        store: &Store,
        d: &'static dyn Dialect,
        purpose: &str,
        mut statements: Vec<Stmt>,
        b: Binder,
    ) {
        let params = b.finish(d, &mut statements);
        self.out.push(SqlStep {
            id,
            side,
            dialect: d.kind(),
            store: store.name.clone(),
            purpose: purpose.to_string(),
            statements,
            params,
        });
    }
}

fn query(q: sqlparser::ast::Query) -> Stmt {
    Stmt::Ast(Box::new(Statement::Query(Box::new(q))))
}

/// Every SQL step of pipeline `p`, in a deterministic order. Steps that do not apply are
/// left out: no source SQL for a NATS source, no sink SQL for a webhook or NATS sink.
pub fn generate(p: &Pipeline) -> Result<Vec<SqlStep>, SqlError> {
    let mut steps = Steps { out: Vec::new() };
    let src_d = p.source.store.kind.dialect().map(|k| k.dialect());
    let sink_d = p.sink.store.kind.dialect().map(|k| k.dialect());

    if let Some(d) = src_d {
        source_steps(&mut steps, p, d)?;
    }
    if let Some(d) = sink_d {
        sink_steps(&mut steps, p, d)?;
    }
    for r in &p.reconciliations {
        recon_steps(&mut steps, p, r, src_d, sink_d)?;
    }
    if let Some(d) = sink_d {
        end_steps(&mut steps, p, d);
    }
    Ok(steps.out)
}

/// What runs at the end of `apply`, after every other step of the sink (a reconciliation's
/// included): dropping the scope's ClickHouse staging tables.
fn end_steps(steps: &mut Steps, p: &Pipeline, d: &'static dyn Dialect) {
    let s = SinkCtx::new(p, d);
    let keys = p.sink.merge.allow_delete && !p.sink.unique_key.is_empty();
    if let Some(drops) = s.drop_stages(keys).filter(|d| !d.is_empty()) {
        steps.push(
            "sink.stage_drop".into(),
            Side::Sink,
            &p.sink.store,
            d,
            "at the end of apply (success or error), while the run still holds sink.lock: drop the staging tables of this sink scope",
            drops.into_iter().map(Stmt::ast).collect(),
            Binder::new(),
        );
    }
}

fn session(steps: &mut Steps, id: &str, side: Side, store: &Store, d: &'static dyn Dialect) {
    let setup = hash::session_setup(d);
    if !setup.is_empty() {
        steps.push(
            id.to_string(),
            side,
            store,
            d,
            "once per connection, before any other statement: session settings",
            setup.into_iter().map(|s| Stmt::Ast(Box::new(s))).collect(),
            Binder::new(),
        );
    }
}

fn source_steps(steps: &mut Steps, p: &Pipeline, d: &'static dyn Dialect) -> Result<(), SqlError> {
    let store = &p.source.store;
    session(steps, "source.session", Side::Source, store, d);
    let s = SourceCtx::new(p, d);
    if d.kind() == DialectKind::Clickhouse && p.source.final_.is_none() {
        let mut b = Binder::new();
        let q = s.engine_query(&mut b);
        steps.push(
            "source.engine".into(),
            Side::Source,
            store,
            d,
            "before reading, unless the source sets `final`: read the table's engine; one that merges rows in the background (Replacing, Collapsing, …MergeTree) is refused, as its parts hold older versions of rows",
            vec![query(q)],
            b,
        );
    }
    if !source::text_key_columns(p).is_empty() {
        let mut b = Binder::new();
        let q = s.collations_query(&mut b);
        steps.push(
            "source.collations".into(),
            Side::Source,
            store,
            d,
            "once per run, on the first source connection: read the collations of the source table's columns, to refuse (when the sink table exists) a text key column that tells case or accents apart (binary, _bin, _cs) into a sink key column that ignores them (_ci), which would make distinct keys one row",
            vec![query(q)],
            b,
        );
    }
    if s.estimates_rows() {
        let mut b = Binder::new();
        let q = s.row_estimate_query(&mut b);
        let what = match d.kind() {
            DialectKind::Postgres => "pg_class.reltuples",
            DialectKind::Mysql => "information_schema.tables.table_rows",
            DialectKind::Clickhouse => "the rows of its active parts in system.parts",
        };
        steps.push(
            "source.row_estimate".into(),
            Side::Source,
            store,
            d,
            &format!("before source.extract streams (a full sync, or a reconciliation's into a new or empty sink), only when a progress bar is drawn (stderr is a terminal): the database's own estimate of the table's row count ({what}; read from the catalog, no scan), the bar's approximate total for an ETA; a failure, or a value that is not a positive count (-1, 0, NULL), leaves the bar without a total"),
            vec![query(q)],
            b,
        );
    }
    let mut b = Binder::new();
    let q = s.extract(&mut b, vec![])?;
    steps.push(
        "source.extract".into(),
        Side::Source,
        store,
        d,
        "full sync: stream every source row, ordered by the key (or order column; with a timestamp reconciliation, its column, then the key), in batch_size batches",
        vec![query(q)],
        b,
    );
    if counts_absent(p) {
        let mut b = Binder::new();
        let q = Reader::Source(s).ordered_keys(&mut b)?;
        steps.push(
            "source.keys".into(),
            Side::Source,
            store,
            d,
            "plan of a full sync with allow_delete: stream every source key (within the filters), ordered by key as sink.keys is, to count the sink rows whose key the source lacks",
            vec![query(q)],
            b,
        );
    }
    Ok(())
}

/// Whether a plan of `p`'s full sync counts the sink rows `sink.delete_absent` would
/// remove, by merging `source.keys` with `sink.keys`: with `allow_delete` and a key, both
/// sides databases.
fn counts_absent(p: &Pipeline) -> bool {
    p.sink.merge.allow_delete
        && !p.sink.unique_key.is_empty()
        && !p.key.is_empty()
        && p.source.store.kind.dialect().is_some()
        && p.sink.store.kind.dialect().is_some()
}

fn sink_steps(steps: &mut Steps, p: &Pipeline, d: &'static dyn Dialect) -> Result<(), SqlError> {
    let store = &p.sink.store;
    let s = SinkCtx::new(p, d);
    let ch = d.kind() == DialectKind::Clickhouse;
    let merge = &p.sink.merge;
    session(steps, "sink.session", Side::Sink, store, d);
    lock_steps(steps, &s, store, d);

    let mut b = Binder::new();
    let q = s.columns_query(&mut b);
    steps.push(
        "sink.columns".into(),
        Side::Sink,
        store,
        d,
        "before writing: list the existing sink table's columns and types to check them against the fields",
        vec![query(q)],
        b,
    );
    if d.kind() == DialectKind::Postgres {
        let mut b = Binder::new();
        let q = s.enum_labels_query(&mut b);
        steps.push(
            "sink.enum_labels".into(),
            Side::Sink,
            store,
            d,
            "before writing, when the sink table exists: list the labels of its enum columns, to refuse a row with another value before its batch is written",
            vec![query(q)],
            b,
        );
    }
    if !ch && merge.kind != crate::ir::MergeKind::DeleteInsert {
        let mut b = Binder::new();
        let q = s.unique_indexes_query(&mut b);
        let why = if merge.kind == crate::ir::MergeKind::Upsert {
            if d.kind() == DialectKind::Mysql {
                "one of which an upsert needs on exactly the unique_key columns, and each of which must hold them all (ON DUPLICATE KEY fires on any unique index)"
            } else {
                "one of which an upsert needs on exactly the unique_key columns (neither partial nor deferrable)"
            }
        } else {
            "which would refuse a collapse table's cancelling rows"
        };
        steps.push(
            "sink.unique_indexes".into(),
            Side::Sink,
            store,
            d,
            &format!("before writing, when the sink table exists: list its unique indexes, {why}"),
            vec![query(q)],
            b,
        );
    }
    if d.kind() == DialectKind::Mysql {
        let mut b = Binder::new();
        let q = s.storage_engine_query(&mut b);
        steps.push(
            "sink.storage_engine".into(),
            Side::Sink,
            store,
            d,
            "before writing, when the sink table exists: read its storage engine, to warn when it is not transactional (each batch is then not written all or nothing)",
            vec![query(q)],
            b,
        );
    }
    if ch {
        let mut b = Binder::new();
        let q = s.engine_query(&mut b);
        steps.push(
            "sink.engine".into(),
            Side::Sink,
            store,
            d,
            "before writing, when the sink table exists: read its engine, the engine's parameters and its sorting key to check they fit the merge strategy, the sign or version column and the unique_key",
            vec![query(q)],
            b,
        );
    }
    steps.push(
        "sink.create".into(),
        Side::Sink,
        store,
        d,
        "before writing, when the sink table does not exist: create it",
        s.create_statements()
            .into_iter()
            .map(|st| Stmt::Ast(Box::new(st)))
            .collect(),
        Binder::new(),
    );

    if let Some(analyze) = s.analyze() {
        steps.push(
            "sink.analyze".into(),
            Side::Sink,
            store,
            d,
            "at the end of a run that created the sink table and wrote rows into it: refresh the table's index statistics, which InnoDB took while it was still empty and may not recalculate for minutes (a collapse merge planned on them runs about 3x slower)",
            vec![Stmt::Ast(Box::new(analyze))],
            Binder::new(),
        );
    }

    let cols = s.load_columns();
    let direct = ch && merge.kind == MergeKind::Upsert;
    // MySQL's LOAD DATA LOCAL turns rejected values and duplicate keys into warnings, and
    // the server may refuse it: say what the runtime does then.
    let infile = if d.kind() == DialectKind::Mysql {
        "; where the server refuses LOCAL INFILE or the load warns, the batch is rolled back and redone with multi-row INSERTs"
    } else {
        ""
    };
    let tx = if ch {
        ""
    } else {
        " (same transaction as the merge)"
    };
    if direct {
        steps.push(
            "sink.load".into(),
            Side::Sink,
            store,
            d,
            "per batch: insert the rows straight into the ReplacingMergeTree, which keeps the last version per key (a full sync streams its batches into one insert per million rows)",
            vec![s.bulk_load(s.table(), &cols)],
            Binder::new(),
        );
    } else {
        let stage_purpose = match d.kind() {
            DialectKind::Clickhouse => "once per run: create the staging table again (a Memory table beside the sink table, with its column types)",
            DialectKind::Postgres => "once per session: create the temporary staging table, with the sink table's column types, emptied at every commit",
            DialectKind::Mysql => "once per session: create the temporary staging table",
        };
        steps.push(
            "sink.stage".into(),
            Side::Sink,
            store,
            d,
            stage_purpose,
            s.create_stage()
                .into_iter()
                .map(|st| Stmt::Ast(Box::new(st)))
                .collect(),
            Binder::new(),
        );
        if let Some(clear) = s.clear_stage() {
            let how = if ch {
                "empty the staging table"
            } else {
                "drop and create the temporary staging table again (faster than deleting its rows)"
            };
            steps.push(
                "sink.stage_clear".into(),
                Side::Sink,
                store,
                d,
                &format!("per batch or block, before its transaction: {how}"),
                clear
                    .into_iter()
                    .map(|st| Stmt::Ast(Box::new(st)))
                    .collect(),
                Binder::new(),
            );
        }
        steps.push(
            "sink.load".into(),
            Side::Sink,
            store,
            d,
            &format!("per batch or block{tx}: bulk-load the rows into the staging table{infile}"),
            vec![s.bulk_load(s.stage(), &cols)],
            Binder::new(),
        );
        let merge_purpose = match (merge.kind, ch) {
            (MergeKind::Upsert, _) => "per batch or block, after sink.load, in the same transaction: insert or update the staged rows by key, skipping unchanged rows",
            (MergeKind::DeleteInsert, false) => "per batch or block, after sink.load, in the same transaction: delete the sink rows with the staged keys, then insert the staged rows",
            (MergeKind::DeleteInsert, true) => "per batch or block, after sink.load: delete the staged keys (mutation; wait on sink.mutations before the next sink.stage_clear), then insert the staged rows; a stream's batches and a reconciliation's leaves are gathered in the staging table and merged together, up to {GATHER} at a time",
            (MergeKind::Collapse, false) => "per batch or block, after sink.load, in the same transaction: insert cancelling rows (sign -1) for the live rows of the staged keys that changed, then the staged rows that are not live as they are (sign +1); rows compare by key and the hash of every written column",
            (MergeKind::Collapse, true) => "per batch or block, after sink.load: insert cancelling rows (sign -1) for the live rows of the staged keys that changed, then the staged rows that are not live as they are (sign +1); rows compare by key and the hash of every written column; a stream's batches are gathered in the staging table and merged together, up to {GATHER} at a time",
        };
        {
            // A primary key catches a key repeated across batches; a collapse table (and
            // any ClickHouse table) has none, so there the runtime remembers the keys the
            // run loaded and merges a batch that repeats one.
            let repeated = if ch || merge.kind == MergeKind::Collapse {
                "a batch repeating a key loaded earlier in the run is merged through the staging table instead"
            } else {
                "a duplicate key fails the batch, which is then rolled back and merged through the staging table"
            };
            let tx = if ch {
                ""
            } else {
                " (one transaction per batch)"
            };
            steps.push(
                "sink.load_direct".into(),
                Side::Sink,
                store,
                d,
                &format!("per batch, instead of sink.load and sink.merge, while the sink table is one this run created{tx}: bulk-load the rows straight into it ({repeated}){infile}"),
                vec![s.bulk_load(s.table(), &cols)],
                Binder::new(),
            );
        }
        if let Some(stmts) = s.merge() {
            steps.push(
                "sink.merge".into(),
                Side::Sink,
                store,
                d,
                &merge_purpose.replace(
                    "{GATHER}",
                    &format!(
                        "{} rows or {} MB",
                        crate::sql::GATHER_ROWS,
                        crate::sql::GATHER_BYTES >> 20
                    ),
                ),
                stmts,
                Binder::new(),
            );
        }
    }

    if merge.allow_delete && !p.sink.unique_key.is_empty() {
        let keys = s.key_columns();
        steps.push(
            "sink.stage_keys".into(),
            Side::Sink,
            store,
            d,
            match d.kind() {
                DialectKind::Clickhouse => "once per run: create the staging table of keys to delete again (a Memory table with the sink's key column types)",
                DialectKind::Postgres => "once per session: create the staging table of keys to delete, with the sink's key column types",
                DialectKind::Mysql => "once per session: create the staging table of keys to delete",
            },
            s.create_stage_keys()
                .into_iter()
                .map(|st| Stmt::Ast(Box::new(st)))
                .collect(),
            Binder::new(),
        );
        steps.push(
            "sink.stage_keys_clear".into(),
            Side::Sink,
            store,
            d,
            &format!("before staging keys to delete{tx}: empty the key staging table"),
            vec![Stmt::Ast(Box::new(s.clear(s.stage_keys())))],
            Binder::new(),
        );
        let load = s.bulk_load(s.stage_keys(), &keys);
        steps.push(
            "sink.load_keys".into(),
            Side::Sink,
            store,
            d,
            &format!("per batch of keys: load keys into the key staging table (leaf diff: keys gone from the source; full sync without a staging table: every source key){infile}"),
            vec![load],
            Binder::new(),
        );
        if !direct {
            steps.push(
                "sink.stage_keys_copy".into(),
                Side::Sink,
                store,
                d,
                &format!("per batch of a full sync, after sink.merge{}: copy the staged rows' keys into the key staging table, which keeps every key the run wrote", if ch { "" } else { " in the same transaction" }),
                vec![Stmt::Ast(Box::new(s.copy_stage_keys()))],
                Binder::new(),
            );
        }
        let what = if merge.kind == MergeKind::Collapse {
            "insert cancelling rows for"
        } else {
            "delete"
        };
        let mut b = Binder::new();
        let st = s.delete_keys(&mut b, false);
        steps.push(
            "sink.delete_keys".into(),
            Side::Sink,
            store,
            d,
            &format!(
                "after a leaf diff, in the block's transaction{}: {what} the sink rows (within sink.filters) whose key is staged",
                if ch && merge.kind == MergeKind::DeleteInsert {
                    " (the leaves' keys gathered, then deleted together before sink.merge)"
                } else {
                    ""
                }
            ),
            vec![st],
            b,
        );
        let mut b = Binder::new();
        let st = s.delete_keys(&mut b, true);
        steps.push(
            "sink.delete_absent".into(),
            Side::Sink,
            store,
            d,
            &format!("after a full sync that staged every source key: {what} the sink rows (within sink.filters) whose key is not staged"),
            vec![st],
            b,
        );
        if ch {
            let mut b = Binder::new();
            let q = s.count_absent(&mut b);
            steps.push(
                "sink.count_absent".into(),
                Side::Sink,
                store,
                d,
                "before sink.delete_absent: count the rows it will remove (ClickHouse reports no count)",
                vec![query(q)],
                b,
            );
        }
    }
    if counts_absent(p) {
        let mut b = Binder::new();
        // The sink's keys within sink.filters, as sink.delete_absent sees them.
        let q = Reader::Sink(SinkCtx::new(p, d)).ordered_keys(&mut b)?;
        steps.push(
            "sink.keys".into(),
            Side::Sink,
            store,
            d,
            "plan of a full sync with allow_delete, when the sink table exists: stream every sink key (within sink.filters), ordered by key as source.keys is; the sink rows whose key the source lacks are those sink.delete_absent would remove",
            vec![query(q)],
            b,
        );
    }

    let deletes = merge.kind == MergeKind::DeleteInsert
        || (merge.allow_delete && merge.kind != MergeKind::Collapse);
    if ch && deletes {
        let mut b = Binder::new();
        let q = s.mutations_query(&mut b);
        steps.push(
            "sink.mutations".into(),
            Side::Sink,
            store,
            d,
            "after an ALTER TABLE … DELETE: poll until no mutation is pending, before clearing a staging table or reading the sink",
            vec![query(q)],
            b,
        );
    }

    Ok(())
}

/// The run lock of the sink scope (`crate::sql::lock`), taken by `apply` only.
fn lock_steps(steps: &mut Steps, s: &SinkCtx<'_>, store: &Store, d: &'static dyn Dialect) {
    use crate::sql::lock;
    if d.kind() == DialectKind::Clickhouse {
        steps.push(
            "sink.lock_table".into(),
            Side::Sink,
            store,
            d,
            "apply, before anything else on the sink: create the lock table beside the sink table if missing (ClickHouse has no locks)",
            vec![Stmt::ast(lock::ch_create_table(s))],
            Binder::new(),
        );
        let mut b = Binder::new();
        let st = lock::ch_claim(s, &mut b);
        steps.push(
            "sink.lock_claim".into(),
            Side::Sink,
            store,
            d,
            "apply, after sink.lock_table: claim the sink scope (table and filters), choosing a ticket (0)",
            vec![Stmt::ast(st)],
            b,
        );
        let mut b = Binder::new();
        let st = lock::ch_ticket(s, &mut b);
        steps.push(
            "sink.lock_ticket".into(),
            Side::Sink,
            store,
            d,
            "after sink.lock_claim: take the ticket after the largest of the scope's; the run holds the lock when no other live claim is choosing or holds a smaller ticket",
            vec![Stmt::ast(st)],
            b,
        );
        let mut b = Binder::new();
        let st = lock::ch_beat(s, &mut b);
        steps.push(
            "sink.lock_beat".into(),
            Side::Sink,
            store,
            d,
            &format!("every few seconds while the run waits or holds the lock: a heartbeat of its claim (lock_released 0); at the end of the run, its release (lock_released 1); a claim without a heartbeat for {}s is taken over", lock::STALE_SECS),
            vec![Stmt::ast(st)],
            b,
        );
        let mut b = Binder::new();
        let q = lock::ch_state(s, &mut b);
        steps.push(
            "sink.lock_state".into(),
            Side::Sink,
            store,
            d,
            "after sink.lock_ticket and each heartbeat: the live claims of the scope and their tickets, smallest first (a waiting run names the holder; a holding run whose claim is no longer live has lost the lock and stops)",
            vec![query(q)],
            b,
        );
        let mut b = Binder::new();
        let q = lock::ch_inflight(s, &mut b);
        steps.push(
            "sink.lock_inflight".into(),
            Side::Sink,
            store,
            d,
            "once the run's ticket comes first, before it reads or writes the sink, again every 100 ms while not 0: the queries of the scope's other runs (by query_id) the server still runs, such as the last insert of a run that was interrupted or killed",
            vec![query(q)],
            b,
        );
        let mut b = Binder::new();
        let st = lock::ch_trim(s, &mut b);
        steps.push(
            "sink.lock_trim".into(),
            Side::Sink,
            store,
            d,
            &format!("after the release, by a run whose ticket is a multiple of {}: delete the scope's lock rows without a heartbeat for {} s (old runs' claims), in the background", lock::TRIM_EVERY, lock::TRIM_AFTER_SECS),
            vec![st],
            b,
        );
        return;
    }
    let mut b = Binder::new();
    if let Some(q) = lock::take(s, &mut b) {
        let how = if d.kind() == DialectKind::Postgres {
            "pg_try_advisory_lock"
        } else {
            "GET_LOCK"
        };
        steps.push(
            "sink.lock".into(),
            Side::Sink,
            store,
            d,
            &format!("apply, on a session of its own held for the whole run: try to take the run lock of the sink scope (table and filters) with {how}, again every second until taken"),
            vec![query(q)],
            b,
        );
    }
    let mut b = Binder::new();
    if let Some(q) = lock::holder(s, &mut b) {
        steps.push(
            "sink.lock_holder".into(),
            Side::Sink,
            store,
            d,
            "on the lock's session, while waiting and every few seconds while holding: the session holding the lock and this session's id (a holding run that no longer holds it, or whose session died, stops)",
            vec![query(q)],
            b,
        );
    }
    let mut b = Binder::new();
    if let Some(q) = lock::release(s, &mut b) {
        steps.push(
            "sink.unlock".into(),
            Side::Sink,
            store,
            d,
            "at the end of apply, after sink.stage_drop: give the run lock back",
            vec![query(q)],
            b,
        );
    }
}

fn reader<'a>(
    p: &'a Pipeline,
    source: bool,
    d: Option<&'static dyn Dialect>,
) -> Option<(Reader<'a>, Side, &'a Store, &'static dyn Dialect)> {
    let state = if source {
        &p.source_state
    } else {
        &p.sink_state
    };
    if let Some(st) = state {
        let d = st.store.kind.dialect()?.dialect();
        let which = if source { "source" } else { "sink" };
        let side = if source {
            Side::SourceState
        } else {
            Side::SinkState
        };
        return Some((Reader::State { p, st, d, which }, side, &st.store, d));
    }
    let d = d?;
    if source {
        Some((
            Reader::Source(SourceCtx::new(p, d)),
            Side::Source,
            &p.source.store,
            d,
        ))
    } else {
        Some((
            Reader::Sink(SinkCtx::new(p, d)),
            Side::Sink,
            &p.sink.store,
            d,
        ))
    }
}

fn recon_steps(
    steps: &mut Steps,
    p: &Pipeline,
    r: &Reconciliation,
    src_d: Option<&'static dyn Dialect>,
    sink_d: Option<&'static dyn Dialect>,
) -> Result<(), SqlError> {
    let id = |side: &str, what: &str| format!("recon.{}.{side}.{what}", r.name);
    let sides = [
        ("source", reader(p, true, src_d)),
        ("sink", reader(p, false, sink_d)),
    ];

    let timestamp = r.strategy == ReconStrategy::Timestamp;
    // A timestamp run compares its lookback window block by block (writing only the rows
    // that differ) when both sides can hash rows; else it merges the whole window. Without
    // a lookback the window is the watermark's own unit (its second, day or value), so
    // that rows tied with the newest sink row are not missed.
    let compares_window = timestamp && recon::compares_window(p);
    if timestamp {
        if let Some((rd, side, store, d)) = reader(p, false, sink_d) {
            let mut b = Binder::new();
            let q = rd.watermark(&mut b, r)?;
            steps.push(id("sink", "watermark"), side, store, d,
                "at run start: the sink's newest partition value (NULL when empty: run a full sync)",
                vec![query(q)], b);
        }
        if let Some(d) = src_d {
            let s = SourceCtx::new(p, d);
            let mut b = Binder::new();
            // After a compared window, the rows past the watermark; without one, every row
            // from the watermark (minus the lookback) on, so that rows tied with the newest
            // sink row (a batch of equal timestamps cut by a stopped run, a row added later
            // within the same second or day) are merged again rather than missed.
            let op = if compares_window {
                BinaryOperator::Gt
            } else {
                BinaryOperator::GtEq
            };
            let since = build::binop(
                source::column(d, &r.source_partition),
                op,
                b.bind("watermark", recon::partition_dtype(r.kind)),
            );
            let q = s.extract(&mut b, vec![since])?;
            let purpose = if compares_window {
                "incremental run, after the lookback window was compared: stream the source rows newer than the sink watermark, merged with the strategy"
            } else {
                "incremental run: stream the source rows from the sink watermark minus the lookback on (the watermark's own rows included), merged with the strategy"
            };
            steps.push(
                id("source", "extract_since"),
                Side::Source,
                &p.source.store,
                d,
                purpose,
                vec![query(q)],
                b,
            );
            if !compares_window {
                let mut b = Binder::new();
                let q = s.extract_null(&mut b, &r.source_partition)?;
                steps.push(id("source", "extract_null"), Side::Source, &p.source.store, d,
                    "incremental run: stream the source rows whose partition column is NULL, which no watermark reaches, merged with the strategy (every run, as the lookback window is)",
                    vec![query(q)], b);
            }
        }
        if !compares_window {
            return Ok(());
        }
    }

    if !recon::is_bucketed(r.kind) {
        if !timestamp {
            for (name, rd) in &sides {
                if let Some((rd, side, store, d)) = rd {
                    let mut b = Binder::new();
                    let q = rd.range(&mut b, r)?;
                    steps.push(id(name, "range"), *side, store, *d,
                        "at run start, unless start/end are given: min and max of the partition column (within the filters)",
                        vec![query(q)], b);
                }
            }
        }
        let purpose = if timestamp {
            "incremental run, with the lookback window: (rows, hash) of the rows whose partition column is NULL, which no watermark reaches: compared as a block of their own on every run"
        } else {
            "with the range, when it is not bounded: (rows, hash) of the rows whose partition column is NULL, which no range block holds: compared as a block of their own"
        };
        for (name, rd) in &sides {
            if let Some((rd, side, store, d)) = rd {
                let mut b = Binder::new();
                let q = rd.nulls(&mut b, r)?;
                steps.push(
                    id(name, "nulls"),
                    *side,
                    store,
                    *d,
                    purpose,
                    vec![query(q)],
                    b,
                );
            }
        }
    }
    for (name, rd) in &sides {
        if let Some((rd, side, store, d)) = rd {
            let mut b = Binder::new();
            let q = rd.block_hash(&mut b, r)?;
            let purpose = if recon::is_bucketed(r.kind) {
                "per level: one grouped query returning (block, rows, hash) for the md5-prefix blocks under every changed parent prefix listed in `prefixes`"
            } else if timestamp {
                "incremental run, per level of the lookback window (the sink watermark minus the lookback, to the watermark): one grouped query returning (block, rows, hash) for every block of a parent range"
            } else {
                "per level: one grouped query returning (block, rows, hash) for every block of a parent range"
            };
            steps.push(
                id(name, "block_hash"),
                *side,
                store,
                *d,
                purpose,
                vec![query(q)],
                b,
            );
        }
    }
    for (name, rd) in &sides {
        if let Some((rd, side, store, d)) = rd {
            let mut b = Binder::new();
            let q = rd.leaf_diff(&mut b, r)?;
            let purpose = if recon::is_bucketed(r.kind) {
                "per group of changed leaf buckets (listed in `prefixes`, up to 50,000 rows or ten max_block_size): key and row hash of every row, ordered by key"
            } else if timestamp {
                "per changed leaf of the lookback window (adjacent leaves merged up to max_block_size rows): key, row hash and partition value of every row, ordered by key (a row that differs although its timestamp is not past the sink's is warned about)"
            } else {
                "per changed leaf (adjacent leaves merged up to max_block_size rows): key and row hash of every row, ordered by key"
            };
            steps.push(
                id(name, "leaf_diff"),
                *side,
                store,
                *d,
                purpose,
                vec![query(q)],
                b,
            );
        }
    }
    // A block the source no longer holds a row of is deleted whole, by range, rather than
    // split down to leaves and deleted key by key.
    if !recon::is_bucketed(r.kind)
        && !timestamp
        && p.sink.merge.allow_delete
        && p.sink_state.is_none()
    {
        if let Some(d) = sink_d {
            let s = SinkCtx::new(p, d);
            let mut b = Binder::new();
            if let Some(st) = s.delete_range(&mut b, r) {
                steps.push(id("sink", "delete_range"), Side::Sink, &p.sink.store, d,
                    "allow_delete, per run of adjacent blocks larger than max_block_size that the source holds no row of (up to 1,000,000 sink rows), in one transaction: delete the sink rows (within sink.filters) of the range",
                    vec![st], b);
            }
        }
    }
    // A collapse sink's leaf cancels the keys the source lacks within the leaf only: a
    // key's version in another block is that block's to judge.
    if !timestamp
        && p.sink.merge.allow_delete
        && p.sink.merge.kind == MergeKind::Collapse
        && p.sink_state.is_none()
    {
        if let Some(d) = sink_d {
            let s = SinkCtx::new(p, d);
            let part = || build::col(d, None, &r.sink_partition);
            let mut b = Binder::new();
            let range = recon::range_preds(d, &mut b, part(), r.kind);
            let st = s.cancel_leaf_keys(&mut b, range);
            steps.push(id("sink", "cancel_leaf_keys"), Side::Sink, &p.sink.store, d,
                "allow_delete, after a leaf diff, in the leaf's transaction (instead of sink.delete_keys): bring to zero the sign sum of every version (within sink.filters) of the staged keys whose partition value lies in the leaf",
                vec![st], b);
            if !recon::is_bucketed(r.kind) {
                let mut b = Binder::new();
                let st = s
                    .cancel_leaf_keys(&mut b, vec![sqlparser::ast::Expr::IsNull(Box::new(part()))]);
                steps.push(id("sink", "cancel_null_leaf_keys"), Side::Sink, &p.sink.store, d,
                    "allow_delete, after the NULL-partition block's diff, in its transaction (instead of sink.delete_keys): bring to zero the sign sum of every version (within sink.filters) of the staged keys whose partition value is NULL",
                    vec![st], b);
            }
        }
    }
    if !recon::is_bucketed(r.kind) {
        for (name, rd) in &sides {
            if let Some((rd, side, store, d)) = rd {
                let mut b = Binder::new();
                let q = rd.null_leaf_diff(&mut b, r)?;
                let purpose = if timestamp {
                    "when the NULL-partition block changed: key, row hash and (NULL) partition value of each of its rows, ordered by key"
                } else {
                    "when the NULL-partition block changed: key and row hash of each of its rows, ordered by key"
                };
                steps.push(
                    id(name, "null_leaf_diff"),
                    *side,
                    store,
                    *d,
                    purpose,
                    vec![query(q)],
                    b,
                );
            }
        }
    }
    if let Some(d) = src_d {
        let s = SourceCtx::new(p, d);
        let mut b = Binder::new();
        let range = recon::range_preds(d, &mut b, source::column(d, &r.source_partition), r.kind);
        let q = s.extract(&mut b, range)?;
        let purpose = if recon::is_bucketed(r.kind) {
            "per group of changed leaf buckets: stream their source rows; the rows whose hash differs are merged"
        } else {
            "per changed leaf: stream the source rows of the range; the rows whose hash differs are merged"
        };
        steps.push(
            id("source", "extract_range"),
            Side::Source,
            &p.source.store,
            d,
            purpose,
            vec![query(q)],
            b,
        );
        if !recon::is_bucketed(r.kind) {
            let mut b = Binder::new();
            let q = s.extract_null(&mut b, &r.source_partition)?;
            steps.push(id("source", "extract_null"), Side::Source, &p.source.store, d,
                "when the NULL-partition block changed: stream its source rows; the rows whose hash differs are merged",
                vec![query(q)], b);
        }
    }
    Ok(())
}

/// The MySQL (or any dialect's) multi-row `INSERT INTO _synctool_stage (…) VALUES …` for a
/// batch of `rows` rows, as a `sink.load` step; the runtime calls it per batch size when
/// the server refuses `LOAD DATA LOCAL INFILE`.
pub fn stage_insert(p: &Pipeline, rows: usize) -> Option<SqlStep> {
    values_step(
        p,
        rows,
        "sink.load",
        "per batch: insert the batch's rows into the staging table",
        |s| (s.stage(), s.load_columns()),
    )
}

/// The multi-row insert of `rows` rows straight into the sink table, as a
/// `sink.load_direct` step (MySQL loads into a table this run created).
pub fn direct_insert(p: &Pipeline, rows: usize) -> Option<SqlStep> {
    values_step(
        p,
        rows,
        "sink.load_direct",
        "per batch: insert the batch's rows straight into the sink table",
        |s| (s.table(), s.load_columns()),
    )
}

/// The multi-row insert of `rows` keys into the key staging table, as a `sink.load_keys` step.
pub fn stage_keys_insert(p: &Pipeline, rows: usize) -> Option<SqlStep> {
    values_step(
        p,
        rows,
        "sink.load_keys",
        "per batch of keys: insert the keys into the key staging table",
        |s| (s.stage_keys(), s.key_columns()),
    )
}

/// Step `id`: a multi-row `INSERT … VALUES` of `rows` rows into the table and columns
/// `target` picks.
fn values_step(
    p: &Pipeline,
    rows: usize,
    id: &str,
    purpose: &str,
    target: impl Fn(&SinkCtx<'_>) -> (sqlparser::ast::ObjectName, Vec<crate::sql::sink::SinkCol>),
) -> Option<SqlStep> {
    let d = p.sink.store.kind.dialect()?.dialect();
    let s = SinkCtx::new(p, d);
    let (table, cols) = target(&s);
    let mut b = Binder::new();
    let st = s.values_insert(&mut b, table, &cols, rows);
    let mut steps = Steps { out: vec![] };
    steps.push(
        id.into(),
        Side::Sink,
        &p.sink.store,
        d,
        purpose,
        vec![Stmt::ast(st)],
        b,
    );
    steps.out.pop()
}
