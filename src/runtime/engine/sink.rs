//! Every write to the sink: the table check and creation, staging, loads, merges, key
//! deletes, and ClickHouse mutation waits. On PostgreSQL and MySQL each [`SinkIo::write`]
//! is one transaction; ClickHouse has none, so there cancelling rows go before new rows
//! (the merge statements' order) and every `ALTER TABLE … DELETE` is waited for.

use super::ch_engine::ChEngine;
use super::rows::load_columns;
use super::sink_table::{keeps_less, RowGuard, SinkTable};
use super::steps::{Binds, Prepared, Steps};
use crate::config::raw::RawConfig;
use crate::expr::Value;
use crate::ir::Pipeline;
use crate::runtime::connect::{Conn, ConnSettings};
use crate::runtime::nats::NatsSink;
use crate::runtime::retry::RetryPolicy;
use crate::runtime::webhook::WebhookSink;
use crate::runtime::{Row, RuntimeError};
use crate::sql::{self, DialectKind};
use crate::sql::{GATHER_BYTES, GATHER_ROWS};
use crate::types::Dtype;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Most keys a load straight into a new table without a primary key remembers (about
/// 30 MB of hashes) to tell a key repeated across batches; the rest of a larger load is
/// merged through the staging table.
const MAX_REMEMBERED_KEYS: usize = 1_000_000;

/// Most bound values one MySQL statement may carry.
const MYSQL_MAX_PARAMS: usize = 65_535;
/// About how many bytes of values one MySQL multi-row INSERT carries, well under the
/// smallest default `max_allowed_packet` (MariaDB's 16 MiB), which a statement must fit.
const MYSQL_INSERT_BYTES: usize = 4 << 20;

/// Splits `rows` for MySQL's multi-row INSERTs: each chunk has at most
/// [`MYSQL_MAX_PARAMS`] values and about `budget` bytes of them (a row wider than that
/// goes alone), so that a statement of wide rows stays within `max_allowed_packet`.
fn insert_chunks(rows: &[Row], ncols: usize, budget: usize) -> Vec<&[Row]> {
    let per = (MYSQL_MAX_PARAMS / ncols.max(1)).max(1);
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        let size: usize = row.iter().map(value_bytes).sum();
        if i > start && (i - start == per || bytes + size > budget) {
            chunks.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < rows.len() {
        chunks.push(&rows[start..]);
    }
    chunks
}

/// About how many bytes a value takes in a MySQL statement's binary parameters.
fn value_bytes(v: &crate::expr::Value) -> usize {
    use crate::expr::Value as V;
    match v {
        V::Str(s) | V::Uuid(s) => s.len() + 9,
        V::Json(j) => j.to_string().len() + 9,
        V::List(l) => l.iter().map(value_bytes).sum::<usize>() + 9,
        V::Map(m) => {
            m.iter()
                .map(|(k, v)| k.len() + value_bytes(v))
                .sum::<usize>()
                + 9
        }
        _ => 16,
    }
}

/// The rows a stream into a ClickHouse `delete_insert` sink has staged and not yet merged
/// ([`SinkIo::defer_merges`]).
#[derive(Default)]
struct Deferred {
    /// Rows staged.
    rows: usize,
    /// Keys staged to delete (a reconciliation's leaves).
    deletes: usize,
    /// Bytes of their values, about.
    bytes: usize,
    /// The hashes of their keys: a batch repeating one is merged after them, so that the
    /// last row read of a key is the one kept, as batch by batch.
    keys: HashSet<u64>,
    /// Their keys go to the key stage at the merge (a full sync with deletes).
    stage_keys: bool,
}

/// How often a sink transaction the database aborted as conflicting with another one
/// ([`RuntimeError::Conflict`]: a deadlock, a serialization failure, a lock wait timeout)
/// is run again before the run fails.
const CONFLICT_RETRIES: u32 = 5;
/// How long a ClickHouse mutation may take before the run fails.
const MUTATION_TIMEOUT: Duration = Duration::from_secs(600);

/// Where rows go.
pub enum Target {
    /// A SQL database.
    Sql(Box<Conn>),
    /// A webhook.
    Webhook(Box<WebhookSink>),
    /// A NATS subject.
    Nats(Box<NatsSink>),
}

/// What one write did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    /// Rows merged.
    pub rows: u64,
    /// Rows deleted (or cancelled).
    pub deleted: u64,
}

/// The sink of one pipeline run.
pub struct SinkIo<'a> {
    p: &'a Pipeline,
    steps: &'a Steps,
    binds: &'a Binds,
    /// The connection or endpoint.
    pub target: Target,
    load_types: Vec<Dtype>,
    load_nullable: Vec<bool>,
    key_types: Vec<Dtype>,
    /// MySQL's fallback multi-row INSERTs, by target and row count.
    inserts: HashMap<(Load, usize), Prepared>,
    /// Rows go straight into the sink table (`sink.load_direct`): the run created it.
    direct: bool,
    /// While [`SinkIo::direct`] into a table without a primary key to refuse a repeated
    /// key (ClickHouse, collapse): the hashes of the keys written so far in the run. A
    /// batch holding one of them is merged through the staging table instead.
    loaded: Option<HashSet<u64>>,
    /// MySQL loads use the generated `LOAD DATA LOCAL INFILE` (until the server refuses it
    /// or a load warns; then multi-row INSERTs).
    infile: bool,
    /// The sink table's column limits, checked on every row before its batch is written.
    guard: RowGuard,
    /// The sink table's columns, as [`SinkIo::prepare`] found or created them.
    table: SinkTable,
    /// The sink table's native types of the load columns (ClickHouse RowBinary is encoded
    /// by them); empty until [`SinkIo::prepare`] read them.
    natives: Vec<String>,
    /// The same for the key columns (`sink.unique_key` order).
    key_natives: Vec<String>,
    /// Loads go through [`Conn::stream_load`] ([`SinkIo::stream_loads`]).
    stream: bool,
    /// [`SinkIo::prepare`] found the table missing and is to create it, which
    /// [`SinkIo::ensure_table`] does before the first write.
    pending_create: bool,
    /// The run created the sink table ([`SinkIo::ensure_table`]) and has not yet
    /// refreshed its statistics ([`SinkIo::analyze_created`]).
    created: bool,
    /// While a stream into a ClickHouse `delete_insert` sink gathers staged rows to merge
    /// them together ([`SinkIo::defer_merges`]).
    deferred: Option<Deferred>,
    /// MySQL to MySQL: the source's text key columns and their collations, checked
    /// against the sink key columns' by [`SinkIo::prepare`].
    pub source_keys: Vec<super::full::SourceKeyCollation>,
    /// While [`SinkIo::write_leaf`] writes: the step (and its bounds) removing the keys to
    /// delete instead of `sink.delete_keys`.
    delete_step: Option<(String, Vec<(&'static str, Value)>)>,
}

/// Connection settings of the SQL datastore `name`.
pub fn settings(cfg: &RawConfig, name: &str) -> Result<ConnSettings, RuntimeError> {
    cfg.datastores
        .iter()
        .find(|d| d.name.value == name)
        .and_then(ConnSettings::from_raw)
        .ok_or_else(|| {
            RuntimeError::Config(format!(
                "datastore `{name}` is not a configured SQL datastore"
            ))
        })
}

/// Opens a session on a SQL datastore with the dialect's session setup.
pub async fn connect(cfg: &RawConfig, name: &str) -> Result<Conn, RuntimeError> {
    let s = settings(cfg, name)?;
    let session: Vec<String> = sql::hash::session_setup(s.dialect.dialect())
        .iter()
        .map(|st| st.to_string())
        .collect();
    tracing::debug!(datastore = %s.name, host = %s.address(), "connecting");
    Conn::connect(&s, &session).await
}

impl<'a> SinkIo<'a> {
    /// Connects to `p`'s sink.
    pub async fn open(
        p: &'a Pipeline,
        cfg: &RawConfig,
        steps: &'a Steps,
        binds: &'a Binds,
    ) -> Result<SinkIo<'a>, RuntimeError> {
        let target = match p.sink.store.kind.dialect() {
            Some(_) => Target::Sql(Box::new(connect(cfg, &p.sink.store.name).await?)),
            None if p.sink.store.kind == crate::ir::StoreKind::Webhook => {
                Target::Webhook(Box::new(WebhookSink::new(p, cfg)?))
            }
            None => Target::Nats(Box::new(NatsSink::connect(p, cfg).await?)),
        };
        let cols = load_columns(p);
        let key_types = p
            .sink
            .unique_key
            .iter()
            .map(|k| {
                cols.iter()
                    .find(|c| &c.0 == k)
                    .map(|c| c.1)
                    .or_else(|| {
                        p.key
                            .iter()
                            .find(|kp| &kp.sink_column == k)
                            .map(|kp| kp.dtype)
                    })
                    .unwrap_or(Dtype::Str)
            })
            .collect();
        Ok(SinkIo {
            p,
            steps,
            binds,
            target,
            load_types: cols.iter().map(|c| c.1).collect(),
            load_nullable: cols.iter().map(|c| c.2).collect(),
            key_types,
            inserts: HashMap::new(),
            direct: false,
            loaded: None,
            infile: p.sink.store.kind.dialect() == Some(DialectKind::Mysql),
            guard: RowGuard::default(),
            table: SinkTable::default(),
            natives: Vec::new(),
            key_natives: Vec::new(),
            stream: false,
            pending_create: false,
            created: false,
            deferred: None,
            source_keys: Vec::new(),
            delete_step: None,
        })
    }

    /// The SQL connection, if the sink is a database.
    pub fn conn(&mut self) -> Option<&mut Conn> {
        match &mut self.target {
            Target::Sql(c) => Some(c),
            _ => None,
        }
    }

    fn sql(&mut self) -> Result<&mut Conn, RuntimeError> {
        let store = self.p.sink.store.name.clone();
        self.conn().ok_or_else(|| {
            RuntimeError::Config(format!("datastore `{store}` is not a SQL database"))
        })
    }

    fn dialect(&self) -> Option<DialectKind> {
        self.p.sink.store.kind.dialect()
    }

    /// Checks the sink table against the fields. Returns whether it exists. With `create`,
    /// the staging tables are set up, and a missing table is to be created: not here but
    /// by [`SinkIo::ensure_table`], which the first write calls, so that a run whose
    /// source query fails (a misspelt table) leaves no empty sink table behind. A table
    /// whose columns do not fit is an error, raised before any row is written. The table's
    /// column types (as found, or as created) set the limits every row is checked against
    /// before it is written.
    pub async fn prepare(&mut self, create: bool) -> Result<bool, RuntimeError> {
        let Some(dialect) = self.dialect() else {
            return Ok(true);
        };
        let mut table = self.read_table().await?;
        let exists = table.exists();
        if exists {
            table.source_keys = self.source_keys.clone();
            table.check(self.p, dialect == DialectKind::Clickhouse)?;
            for w in table
                .lossy(dialect, self.p)
                .into_iter()
                .chain(table.key_collation_warnings(self.p))
                .chain(table.storage_engine_warning(self.p))
            {
                tracing::warn!("{w}");
            }
        } else if create {
            self.pending_create = true;
            return Ok(false);
        }
        self.set_table(dialect, table, create).await?;
        Ok(exists)
    }

    /// Creates the sink table [`SinkIo::prepare`] found missing, if it has not yet (when
    /// another run created it meanwhile, takes it as an existing table): called
    /// before the first write, and by runs that end having written nothing (an empty
    /// source still leaves its sink table) or that read the table before writing.
    pub async fn ensure_table(&mut self) -> Result<(), RuntimeError> {
        let Some(dialect) = self.dialect().filter(|_| self.pending_create) else {
            return Ok(());
        };
        self.pending_create = false;
        tracing::info!(table = %self.p.sink.table.name, "creating the sink table");
        if let Err(e) = self.run_step("sink.create", &[]).await {
            // Another run (a pipeline writing the same table under other filters) may have
            // created it first: then this run writes into it as into an existing table.
            let table = self.read_table().await?;
            if !table.exists() {
                return Err(e);
            }
            tracing::info!(table = %self.p.sink.table.name, "another run created the sink table first; writing into it as an existing table");
            table.check(self.p, dialect == DialectKind::Clickhouse)?;
            return self.set_table(dialect, table, true).await;
        }
        self.created = true;
        self.direct = self.steps.get("sink.load_direct").is_some();
        let table = self.read_table().await?;
        self.set_table(dialect, table, true).await?;
        // A primary key refuses a key loaded twice, which rolls the batch back and ends
        // the straight loads (see `write`); without one, the run's keys are remembered.
        // (A ClickHouse upsert's ReplacingMergeTree keeps one row per key by itself.)
        let unkeyed = match dialect {
            DialectKind::Clickhouse => self.p.sink.merge.kind != crate::ir::MergeKind::Upsert,
            _ => self.p.sink.merge.kind == crate::ir::MergeKind::Collapse,
        };
        if self.direct && unkeyed {
            if self.guard.keyed(self.p) {
                self.loaded = Some(HashSet::new());
            } else {
                self.direct = false;
            }
        }
        Ok(())
    }

    /// Takes `table`'s column limits and native types; with `stage`, sets up the staging
    /// tables.
    async fn set_table(
        &mut self,
        dialect: DialectKind,
        table: SinkTable,
        stage: bool,
    ) -> Result<(), RuntimeError> {
        self.guard = table.guard(self.p, dialect);
        self.natives = table.load_natives(self.p);
        self.key_natives = table.natives_of(&self.p.sink.unique_key);
        self.table = table;
        if stage {
            for id in ["sink.stage", "sink.stage_keys"] {
                if self.steps.get(id).is_some() {
                    self.run_step(id, &[]).await?;
                }
            }
        }
        Ok(())
    }

    /// Whether the sink is a database table that does not exist yet (a plan, or a run that
    /// has not written): reading it would fail, and it holds no row.
    pub fn table_missing(&self) -> bool {
        self.dialect().is_some() && !self.table.exists()
    }

    /// Whether the sink table's column `name` keeps less of a `dtype` value than the dtype
    /// holds (`timestamp(0)` for a datetime; known after [`SinkIo::prepare`]).
    pub fn keeps_less(&self, name: &str, dtype: Dtype) -> bool {
        let Some(dialect) = self.dialect() else {
            return false;
        };
        self.table
            .column(name)
            .is_some_and(|c| keeps_less(dialect, &c.native, dtype).is_some())
    }

    /// Whether the sink table's column `name` is declared NOT NULL (known after
    /// [`SinkIo::prepare`]).
    pub fn never_null(&self, name: &str) -> bool {
        self.table.column(name).is_some_and(|c| !c.nullable)
    }

    /// Lists the sink table's columns (`sink.columns`); none when it does not exist.
    async fn read_table(&mut self) -> Result<SinkTable, RuntimeError> {
        let Some(dialect) = self.dialect() else {
            return Ok(SinkTable::default());
        };
        let steps = self.steps;
        let out: &[Dtype] = match dialect {
            DialectKind::Clickhouse => &[Dtype::Str, Dtype::Str],
            DialectKind::Mysql => &[Dtype::Str; 6],
            DialectKind::Postgres => &[
                Dtype::Str,
                Dtype::Str,
                Dtype::Str,
                Dtype::Str,
                Dtype::Str,
                Dtype::Str,
                Dtype::Int,
                Dtype::Int,
                Dtype::Int,
                Dtype::Int,
                Dtype::Str,
            ],
        };
        let found = self.query_catalog("sink.columns", out).await?;
        let mut table = SinkTable::read(dialect, &found);
        if let (true, Some(_)) = (table.exists(), steps.get("sink.enum_labels")) {
            let rows = self
                .query_catalog("sink.enum_labels", &[Dtype::Str, Dtype::Str, Dtype::Str])
                .await?;
            table.set_enum_labels(&rows);
        }
        if let (true, Some(_)) = (table.exists(), steps.get("sink.unique_indexes")) {
            let out: &[Dtype] = match dialect {
                DialectKind::Mysql => &[Dtype::Str, Dtype::Str, Dtype::Int],
                _ => &[Dtype::Str, Dtype::Str, Dtype::Bool, Dtype::Bool],
            };
            let rows = self.query_catalog("sink.unique_indexes", out).await?;
            table.set_unique_indexes(&rows);
        }
        if let (true, Some(_)) = (table.exists(), steps.get("sink.storage_engine")) {
            let rows = self
                .query_catalog("sink.storage_engine", &[Dtype::Str])
                .await?;
            table.set_storage_engine(&rows);
        }
        if let (true, Some(_)) = (table.exists(), steps.get("sink.engine")) {
            let rows = self
                .query_catalog("sink.engine", &[Dtype::Str, Dtype::Str, Dtype::Str])
                .await?;
            table.engine = rows.first().map(|r| {
                let text = |i: usize| match r.get(i) {
                    Some(Value::Str(s)) => s.as_str(),
                    _ => "",
                };
                ChEngine::read(text(0), text(1), text(2))
            });
        }
        Ok(table)
    }

    /// Runs every statement of step `id`; returns the affected-row count of the last one.
    /// ClickHouse mutations are waited for.
    pub async fn run_step(
        &mut self,
        id: &str,
        extra: &[(&str, Value)],
    ) -> Result<u64, RuntimeError> {
        let step = self.steps.need(id)?;
        let vals = step.values(self.binds, extra)?;
        let mut last = 0;
        for i in 0..step.sql.len() {
            last = self.sql()?.execute(step.stmt(i), &vals).await?;
            if step.is_mutation(i) {
                self.wait_mutations().await?;
            }
        }
        Ok(last)
    }

    /// `sink.delete_absent`; returns the rows removed, counted first where the database
    /// reports no count (ClickHouse: `sink.count_absent`).
    async fn remove_absent(&mut self) -> Result<u64, RuntimeError> {
        let counted = match self.steps.get("sink.count_absent") {
            Some(step) => {
                let vals = step.values(self.binds, &[])?;
                let rows = self
                    .sql()?
                    .query(step.stmt(0), &vals, &[Dtype::Int])
                    .await?;
                match rows.first().and_then(|r| r.first()) {
                    Some(Value::Int(n)) => Some((*n).max(0) as u64),
                    _ => None,
                }
            }
            None => None,
        };
        let n = self.run_step("sink.delete_absent", &[]).await?;
        Ok(counted.unwrap_or(n))
    }

    /// Runs the catalog query of step `id` (`sink.columns`, `sink.enum_labels`,
    /// `sink.unique_indexes`, `sink.storage_engine`, `sink.engine`, `sink.mutations`). On ClickHouse, again after a
    /// pause when 18.16 reports a table that was dropped while it listed them (`Code: 60`,
    /// naming another table): its system-table listing races with concurrent DROPs.
    async fn query_catalog(&mut self, id: &str, out: &[Dtype]) -> Result<Vec<Row>, RuntimeError> {
        let steps = self.steps;
        let step = steps.need(id)?;
        let vals = step.values(self.binds, &[])?;
        let ch = self.dialect() == Some(DialectKind::Clickhouse);
        catalog_query(self.sql()?, step, &vals, out, ch).await
    }

    /// Polls `sink.mutations` until no mutation on the sink table is pending.
    async fn wait_mutations(&mut self) -> Result<(), RuntimeError> {
        if self.steps.get("sink.mutations").is_none() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let rows = self.query_catalog("sink.mutations", &[Dtype::Int]).await?;
            let pending = match rows.first().and_then(|r| r.first()) {
                Some(Value::Int(n)) => *n,
                _ => 0,
            };
            if pending == 0 {
                return Ok(());
            }
            if started.elapsed() > MUTATION_TIMEOUT {
                return Err(RuntimeError::Statement {
                    store: self.p.sink.store.name.clone(),
                    host: String::new(),
                    step: "sink.mutations".into(),
                    message: format!(
                        "{pending} mutation(s) still pending after {} s",
                        MUTATION_TIMEOUT.as_secs()
                    ),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Loads rows into `what` with its bulk-load step (`sink.load`, `sink.load_keys`,
    /// `sink.load_direct`). MySQL, once the server refused `LOAD DATA LOCAL INFILE` or a load
    /// warned, gets multi-row INSERTs sized to the batch, within its parameter limit.
    async fn load(&mut self, what: Load, rows: &[Row]) -> Result<(), RuntimeError> {
        if rows.is_empty() {
            return Ok(());
        }
        let keys = what == Load::Keys;
        let (types, nullable) = if keys {
            (self.key_types.clone(), vec![false; self.key_types.len()])
        } else {
            (self.load_types.clone(), self.load_nullable.clone())
        };
        if self.dialect() != Some(DialectKind::Mysql) || self.infile {
            let id = match what {
                Load::Keys => "sink.load_keys",
                Load::Stage => "sink.load",
                Load::Direct => "sink.load_direct",
            };
            let step = self.steps.need(id)?;
            // ClickHouse staging tables take the sink table's column types, so every load
            // is laid out by them (PostgreSQL and MySQL ignore them).
            let natives = if keys {
                self.key_natives.clone()
            } else {
                self.natives.clone()
            };
            if self.stream {
                self.sql()?
                    .stream_load(step.stmt(0), &types, &nullable, &natives, rows)
                    .await?;
            } else {
                self.sql()?
                    .load(step.stmt(0), &types, &nullable, &natives, rows)
                    .await?;
            }
            return Ok(());
        }
        for chunk in insert_chunks(rows, types.len(), MYSQL_INSERT_BYTES) {
            let n = chunk.len();
            let step = match self.inserts.entry((what, n)) {
                std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let step = match what {
                        Load::Keys => sql::stage_keys_insert(self.p, n),
                        Load::Stage => sql::stage_insert(self.p, n),
                        Load::Direct => sql::direct_insert(self.p, n),
                    }
                    .ok_or_else(|| RuntimeError::Config("the sink has no staging insert".into()))?;
                    e.insert(Prepared::new(step)?).clone()
                }
            };
            self.sql()?.insert_rows(step.stmt(0), &types, chunk).await?;
        }
        Ok(())
    }

    /// Writes one scope (a batch or a merged leaf) in one transaction: deletes the sink rows
    /// of `delete_keys` (staged, then `sink.delete_keys`), merges `rows` (`sink.stage_clear`
    /// before the transaction, `sink.load`, `sink.merge`), and appends `stage_keys` (the keys
    /// of `rows`) to the key stage (full sync with deletes: `sink.stage_keys_copy`). A webhook gets one POST per `sink.batch_size` rows, NATS one publish per
    /// row.
    pub async fn write(
        &mut self,
        rows: &[Row],
        delete_keys: &[Row],
        stage_keys: &[Row],
    ) -> Result<Written, RuntimeError> {
        match &self.target {
            // One POST per `sink.batch_size` rows (the source's batches may be larger).
            Target::Webhook(w) => {
                let per_post = (self.p.sink.batch_size as usize).max(1);
                for chunk in rows.chunks(per_post) {
                    w.send_batch(chunk).await?;
                }
                return Ok(Written {
                    rows: rows.len() as u64,
                    deleted: 0,
                });
            }
            Target::Nats(n) => {
                // A message the stream already held (an earlier run's, within its
                // duplicate window) is not stored again: not written.
                let sent = n.publish_batch(rows).await?;
                return Ok(Written {
                    rows: (rows.len() - sent.duplicates) as u64,
                    deleted: 0,
                });
            }
            Target::Sql(_) => {}
        }
        self.ensure_table().await?;
        // Before the transaction: a row the sink column would refuse stops the pipeline with
        // its key named, and nothing of this scope is written.
        self.guard.check(rows)?;
        let folded = self.guard.fold_padded(rows);
        let rows = folded.as_deref().unwrap_or(rows);
        if rows.is_empty() && delete_keys.is_empty() && stage_keys.is_empty() {
            return Ok(Written::default());
        }
        if let Some(loaded) = self.loaded.as_mut().filter(|_| self.direct) {
            // Into a table without a primary key: straight in unless the batch repeats a
            // key written earlier in the run, whose row a straight load would keep beside
            // the new one; such a batch (and any staged write) is merged.
            let keys: Vec<u64> = rows.iter().map(|r| self.guard.key_hash(r)).collect();
            let repeats = keys.iter().any(|k| loaded.contains(k));
            loaded.extend(keys);
            if loaded.len() > MAX_REMEMBERED_KEYS {
                // Memory stays flat: past this many rows the load is merged, as into a
                // table that existed.
                tracing::debug!("{MAX_REMEMBERED_KEYS} keys loaded straight in: merging the rest through the staging table");
                self.loaded = None;
                self.direct = false;
                return self
                    .write_retrying(Scope::Staged, rows, delete_keys, stage_keys)
                    .await;
            }
            let scope = if repeats || !delete_keys.is_empty() || !stage_keys.is_empty() {
                if repeats {
                    tracing::debug!("the batch repeats a key loaded earlier in the run: merging it through the staging table");
                }
                Scope::Staged
            } else {
                Scope::Direct
            };
            return self
                .write_retrying(scope, rows, delete_keys, stage_keys)
                .await;
        }
        if self.direct && delete_keys.is_empty() && stage_keys.is_empty() {
            match self.write_retrying(Scope::Direct, rows, &[], &[]).await {
                Ok(w) => return Ok(w),
                // The connection died with the batch (an I/O error, a packet over the
                // server's limit): no later statement can run on it, and its error is
                // the one to report.
                Err(e) if !self.sql()?.is_reusable() => return Err(e),
                Err(e) => {
                    // A duplicate key across batches (or any other failure) rolled the
                    // batch back: merge it, and every later batch, through staging.
                    tracing::info!(error = %e, "loading straight into the new sink table failed; merging through the staging table from now on");
                    self.direct = false;
                }
            }
        }
        if self.deferred.is_some() && self.delete_step.is_none() {
            return self.write_deferred(rows, delete_keys, stage_keys).await;
        }
        // A write that cannot wait (a collapse leaf's cancel by bounds) empties the
        // staging tables first: what they gather is merged before it.
        self.merge_deferred().await?;
        self.write_retrying(Scope::Staged, rows, delete_keys, stage_keys)
            .await
    }

    /// Stages `rows` and `delete_keys` for a later merge ([`SinkIo::defer_merges`]),
    /// merging what is staged first when `rows` repeat a staged key, and after them when
    /// the stage is full.
    async fn write_deferred(
        &mut self,
        rows: &[Row],
        delete_keys: &[Row],
        stage_keys: &[Row],
    ) -> Result<Written, RuntimeError> {
        let keys: Vec<u64> = rows.iter().map(|r| self.guard.key_hash(r)).collect();
        if self
            .deferred
            .as_ref()
            .is_some_and(|d| keys.iter().any(|k| d.keys.contains(k)))
        {
            tracing::debug!("the batch repeats a staged key: merging the staged rows first");
            self.merge_deferred().await?;
        }
        if rows.is_empty() && !stage_keys.is_empty() {
            // Keys alone (no rows to copy them from): nothing of this batch waits.
            self.merge_deferred().await?;
            self.load(Load::Keys, stage_keys).await?;
        }
        let (staged_rows, staged_deletes) = self
            .deferred
            .as_ref()
            .map_or((0, 0), |d| (d.rows, d.deletes));
        if !delete_keys.is_empty() {
            if staged_deletes == 0 {
                self.run_step("sink.stage_keys_clear", &[]).await?;
            }
            self.load(Load::Keys, delete_keys).await?;
        }
        if !rows.is_empty() {
            if staged_rows == 0 {
                self.run_step("sink.stage_clear", &[]).await?;
            }
            self.load(Load::Stage, rows).await?;
        }
        let bytes: usize = rows
            .iter()
            .chain(delete_keys)
            .flatten()
            .map(value_bytes)
            .sum();
        let full = {
            let d = self.deferred.get_or_insert_with(Deferred::default);
            d.rows += rows.len();
            d.deletes += delete_keys.len();
            d.bytes += bytes;
            d.keys.extend(keys);
            d.stage_keys |= !rows.is_empty() && !stage_keys.is_empty();
            d.rows + d.deletes >= GATHER_ROWS || d.bytes >= GATHER_BYTES
        };
        if full {
            self.merge_deferred().await?;
        }
        Ok(Written {
            rows: rows.len() as u64,
            deleted: delete_keys.len() as u64,
        })
    }

    /// Merges what [`SinkIo::write_deferred`] staged: the keys to delete
    /// (`sink.delete_keys`, a mutation), then the rows (`sink.merge`: a mutation deleting
    /// their keys, then an insert), and with a full sync's deletes `sink.stage_keys_copy`.
    async fn merge_deferred(&mut self) -> Result<(), RuntimeError> {
        let Some(d) = self
            .deferred
            .as_mut()
            .filter(|d| d.rows > 0 || d.deletes > 0)
        else {
            return Ok(());
        };
        let taken = std::mem::take(d);
        tracing::debug!(
            rows = taken.rows,
            deletes = taken.deletes,
            "merging the staged rows"
        );
        if taken.deletes > 0 {
            self.run_step("sink.delete_keys", &[]).await?;
        }
        if taken.rows > 0 {
            self.run_step("sink.merge", &[]).await?;
            if taken.stage_keys {
                self.run_step("sink.stage_keys_copy", &[]).await?;
            }
        }
        Ok(())
    }

    /// [`SinkIo::write`] of one leaf of a reconciliation, whose keys to delete are removed
    /// by `delete_step` (a collapse sink's `recon.R.sink.cancel_leaf_keys`, with the leaf's
    /// bounds) when given, else by `sink.delete_keys`.
    pub async fn write_leaf(
        &mut self,
        rows: &[Row],
        delete_keys: &[Row],
        delete_step: Option<(String, Vec<(&'static str, Value)>)>,
    ) -> Result<Written, RuntimeError> {
        self.delete_step = delete_step;
        let w = self.write(rows, delete_keys, &[]).await;
        self.delete_step = None;
        w
    }

    /// [`SinkIo::transaction`], redone once with multi-row INSERTs when MySQL refused
    /// `LOAD DATA LOCAL INFILE` or the load warned, and up to [`CONFLICT_RETRIES`] times
    /// (after a growing pause) when the database aborted it as conflicting with another
    /// transaction. Each failed attempt was rolled back whole, staging included, so the
    /// next one starts from the same state.
    async fn write_retrying(
        &mut self,
        scope: Scope<'_>,
        rows: &[Row],
        delete_keys: &[Row],
        stage_keys: &[Row],
    ) -> Result<Written, RuntimeError> {
        let backoff = RetryPolicy::new(CONFLICT_RETRIES);
        let mut conflicts = 0;
        loop {
            match self.transaction(scope, rows, delete_keys, stage_keys).await {
                Err(RuntimeError::LoadRefused { message, .. }) if self.infile => {
                    tracing::info!(reason = %message, "loading with multi-row INSERTs from now on");
                    self.infile = false;
                }
                Err(e @ RuntimeError::Conflict { .. }) if conflicts < CONFLICT_RETRIES => {
                    let pause = backoff.backoff(conflicts);
                    conflicts += 1;
                    tracing::warn!(error = %e, attempt = conflicts + 1, "the sink transaction conflicted with another one and was rolled back; running it again in {pause:?}");
                    tokio::time::sleep(pause).await;
                }
                r => return r,
            }
        }
    }

    /// One transaction of `scope`: committed when it succeeds, rolled back when not.
    async fn transaction(
        &mut self,
        scope: Scope<'_>,
        rows: &[Row],
        delete_keys: &[Row],
        stage_keys: &[Row],
    ) -> Result<Written, RuntimeError> {
        if scope == Scope::Staged
            && !rows.is_empty()
            && self.steps.get("sink.stage_clear").is_some()
        {
            // Outside the transaction: MySQL drops and creates its temporary staging table
            // (which must not happen inside one on servers with GTID consistency), and a
            // failed attempt starts again from an empty stage.
            self.run_step("sink.stage_clear", &[]).await?;
        }
        self.sql()?.begin().await?;
        let r = match scope {
            Scope::Direct => self.load(Load::Direct, rows).await.map(|()| Written {
                rows: rows.len() as u64,
                deleted: 0,
            }),
            Scope::Staged => self.write_tx(rows, delete_keys, stage_keys).await,
            Scope::DeleteAbsent => self.remove_absent().await.map(|n| Written {
                rows: 0,
                deleted: n,
            }),
            Scope::DeleteRange(step, extra) => self.run_step(step, extra).await.map(|n| Written {
                rows: 0,
                deleted: n,
            }),
        };
        match r {
            Ok(w) => {
                self.sql()?.commit().await?;
                Ok(w)
            }
            Err(e) => {
                if let Err(r) = self.sql()?.rollback().await {
                    tracing::warn!(error = %r, "rollback failed");
                }
                Err(e)
            }
        }
    }

    async fn write_tx(
        &mut self,
        rows: &[Row],
        delete_keys: &[Row],
        stage_keys: &[Row],
    ) -> Result<Written, RuntimeError> {
        let mut w = Written::default();
        let ch = self.dialect() == Some(DialectKind::Clickhouse);
        if !delete_keys.is_empty() {
            self.run_step("sink.stage_keys_clear", &[]).await?;
            self.load(Load::Keys, delete_keys).await?;
            let n = match self.delete_step.clone() {
                Some((step, extra)) => self.run_step(&step, &extra).await?,
                None => self.run_step("sink.delete_keys", &[]).await?,
            };
            w.deleted = if ch { delete_keys.len() as u64 } else { n };
        }
        if !rows.is_empty() {
            self.load(Load::Stage, rows).await?;
            if self.steps.get("sink.merge").is_some() {
                self.run_step("sink.merge", &[])
                    .await
                    .map_err(|e| self.explain_merge(e, rows))?;
            }
            w.rows = rows.len() as u64;
        }
        if !stage_keys.is_empty() {
            if !rows.is_empty() && self.steps.get("sink.stage_keys_copy").is_some() {
                // The staged rows are the rows of these keys, as written: copy their keys
                // on the server rather than sending them again.
                self.run_step("sink.stage_keys_copy", &[]).await?;
            } else {
                self.load(Load::Keys, stage_keys).await?;
            }
        }
        Ok(w)
    }

    /// A PostgreSQL upsert that would update one sink row twice (`ERROR 21000`) names no
    /// key: rows of the batch whose keys differ but that the sink's key column holds as one
    /// (`citext` ignores case, `char(n)` trailing spaces, a nondeterministic collation
    /// both). Says so, naming the likely keys; the rest of the error is PostgreSQL's.
    fn explain_merge(&self, e: RuntimeError, rows: &[Row]) -> RuntimeError {
        match e {
            RuntimeError::Statement {
                store,
                host,
                step,
                message,
            } if self.dialect() == Some(DialectKind::Postgres) && message.contains("21000") => {
                let keys = self.guard.folding_together(rows);
                let which = match keys.as_slice() {
                    [a, b, ..] => format!("the keys ({a}) and ({b})"),
                    _ => "two keys".to_string(),
                };
                let message = format!(
                    "pipeline `{}`: {which} of one batch are distinct in the source but one row in the sink table, whose key column compares them as equal (a citext column ignores case, char(n) trailing spaces, a nondeterministic collation case or accents), so the upsert would write that row twice; nothing of the batch was written. Make the source's keys distinct as the sink compares them, or give the sink key column a type that tells them apart (text). {message}",
                    self.p.name
                );
                RuntimeError::Statement {
                    store,
                    host,
                    step,
                    message,
                }
            }
            e => e,
        }
    }

    /// From now on, loads may stay open across writes ([`Conn::stream_load`]: ClickHouse
    /// streams one insert over many batches). For syncs that write batch after batch;
    /// [`SinkIo::end_streams`] must follow before the run reports what it wrote.
    pub fn stream_loads(&mut self) {
        self.stream = true;
    }

    /// Ends the loads left open by [`SinkIo::stream_loads`] and reports their outcome.
    /// Later loads open new ones.
    pub async fn end_streams(&mut self) -> Result<(), RuntimeError> {
        let ended = match self.conn() {
            Some(c) => c.end_streams().await,
            None => Ok(()),
        };
        ended?;
        self.merge_deferred().await
    }

    /// Ends [`SinkIo::defer_merges`] (after [`SinkIo::end_streams`] merged what it
    /// staged): later writes, such as a reconciliation's leaves, merge at once.
    pub fn stop_deferring(&mut self) {
        self.deferred = None;
    }

    /// Whether writes are gathered to be merged together ([`SinkIo::defer_merges`]).
    pub fn deferring(&self) -> bool {
        self.deferred.is_some()
    }

    /// Whether rows are gathered and not yet merged ([`SinkIo::defer_merges`]).
    pub fn staged(&self) -> bool {
        self.deferred.as_ref().is_some_and(|d| d.rows > 0)
    }

    /// Merges what [`SinkIo::defer_merges`] gathered so far, and goes on gathering.
    pub async fn merge_gathered(&mut self) -> Result<(), RuntimeError> {
        self.merge_deferred().await
    }

    /// Merges what [`SinkIo::defer_merges`] staged and ends it.
    pub async fn end_deferring(&mut self) -> Result<(), RuntimeError> {
        self.merge_deferred().await?;
        self.stop_deferring();
        Ok(())
    }

    /// Until [`SinkIo::stop_deferring`] or [`SinkIo::end_deferring`], a ClickHouse
    /// `delete_insert` sink gathers the batches of a stream (or, with `leaves`, a
    /// reconciliation's leaves: rows and keys to delete) in its staging tables and merges
    /// them together, and so does a ClickHouse collapse sink a stream's batches (a
    /// collapse merge is no mutation, but a batch's costs a grouped read of the sink), up to
    /// [`GATHER_ROWS`] rows or [`GATHER_BYTES`] at a time and whenever a batch repeats a
    /// staged key; [`SinkIo::end_streams`] merges the rest. Each merge deletes the staged
    /// keys with a mutation, which rewrites the table's parts holding them: once per
    /// batch, a full sync of 1M rows into an existing table took 6–10 times as long as
    /// into a new one, and a repair of 100 changed leaves 10 times as long as an upsert's.
    /// The keys to delete are deleted before the rows are merged, so a key that moved
    /// from one leaf to another ends with its new row whichever leaf came first. Like a
    /// batch's, a merge that stops part way (after a delete) leaves those keys missing
    /// until a rerun writes them. Returns whether this call started deferring (an outer
    /// one may have).
    pub fn defer_merges(&mut self, leaves: bool) -> bool {
        use crate::ir::MergeKind;
        let fits = self.dialect() == Some(DialectKind::Clickhouse)
            && match self.p.sink.merge.kind {
                MergeKind::DeleteInsert => true,
                // A collapse leaf cancels its keys to delete within its own bounds, which
                // cannot wait for later leaves: only streams are gathered.
                MergeKind::Collapse => !leaves,
                MergeKind::Upsert => false,
            };
        if !fits || self.deferred.is_some() {
            return false;
        }
        self.deferred = Some(Deferred::default());
        true
    }

    /// After the run wrote `written` rows into the sink table it created: refreshes the
    /// table's statistics (`sink.analyze`, MySQL), once per run, so that the next run's
    /// merges are planned on the loaded table rather than on the empty one. A failure is
    /// a warning: the rows are written.
    pub async fn analyze_created(&mut self, written: u64) {
        if !self.created || written == 0 || self.steps.get("sink.analyze").is_none() {
            return;
        }
        self.created = false;
        if let Err(e) = self.run_step("sink.analyze", &[]).await {
            tracing::warn!(error = %e, "refreshing the new sink table's statistics failed; the database will refresh them later");
        }
    }

    /// Starts staging every source key of a full sync (empties the key stage).
    pub async fn begin_key_staging(&mut self) -> Result<(), RuntimeError> {
        self.run_step("sink.stage_keys_clear", &[])
            .await
            .map(|_| ())
    }

    /// Runs reconciliation step `step` (`recon.R.sink.delete_range`) for one range (`extra`:
    /// its bounds) in one transaction. Returns the rows deleted as the database reports
    /// them, or `rows` (the block hashes' count) where it reports none (ClickHouse).
    pub async fn delete_range(
        &mut self,
        step: &str,
        extra: &[(&str, Value)],
        rows: u64,
    ) -> Result<u64, RuntimeError> {
        let w = self
            .write_retrying(Scope::DeleteRange(step, extra), &[], &[], &[])
            .await?;
        Ok(if self.dialect() == Some(DialectKind::Clickhouse) {
            rows
        } else {
            w.deleted
        })
    }

    /// After a full sync staged every source key: deletes (collapse: cancels) the sink rows
    /// whose key was not staged, in one transaction. Returns the rows removed (ClickHouse
    /// does not report it: 0).
    pub async fn delete_absent(&mut self) -> Result<u64, RuntimeError> {
        self.write_retrying(Scope::DeleteAbsent, &[], &[], &[])
            .await
            .map(|w| w.deleted)
    }
}

/// What one sink transaction does ([`SinkIo::transaction`]).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scope<'v> {
    /// Load the rows straight into a sink table the run created.
    Direct,
    /// Delete, stage and merge ([`SinkIo::write_tx`]).
    Staged,
    /// `sink.delete_absent` after a full sync staged every source key.
    DeleteAbsent,
    /// A reconciliation's `delete_range` step with these values (the range's bounds).
    DeleteRange(&'v str, &'v [(&'v str, Value)]),
}

/// Which table a load fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Load {
    /// The key staging table (`sink.load_keys`).
    Keys,
    /// The row staging table (`sink.load`).
    Stage,
    /// The sink table itself (`sink.load_direct`).
    Direct,
}

/// Runs catalog step `step` on `conn`. On ClickHouse (`ch`), a listing of system tables
/// that failed because a table of the database was dropped meanwhile (18.16's `Code: 60`,
/// naming the other table) is asked again after a pause, up to five times.
pub async fn catalog_query(
    conn: &mut Conn,
    step: &Prepared,
    vals: &[Value],
    out: &[Dtype],
    ch: bool,
) -> Result<Vec<Row>, RuntimeError> {
    let policy = RetryPolicy::new(5);
    let mut attempt = 0;
    loop {
        match conn.query(step.stmt(0), vals, out).await {
            Err(e) if ch && attempt < policy.retries && e.to_string().contains("Code: 60,") => {
                tracing::debug!(step = %step.step.id, error = %e, "a table was dropped while ClickHouse listed them; listing again");
                tokio::time::sleep(policy.backoff(attempt)).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Value;

    fn sizes(chunks: &[&[Row]]) -> Vec<usize> {
        chunks.iter().map(|c| c.len()).collect()
    }

    #[test]
    fn mysql_inserts_are_cut_by_placeholders_and_by_bytes() {
        let narrow: Vec<Row> = (0..70_000).map(|i| vec![Value::Int(i)]).collect();
        assert_eq!(sizes(&insert_chunks(&narrow, 1, 1 << 30)), [65_535, 4_465]);
        assert_eq!(
            sizes(&insert_chunks(&narrow, 2, 1 << 30)),
            [32_767, 32_767, 4_466]
        );
        // Rows of 1 MB: four per 4 MiB statement; a row wider than the budget goes alone.
        let wide: Vec<Row> = (0..10)
            .map(|_| vec![Value::Str("x".repeat(1 << 20))])
            .collect();
        assert_eq!(sizes(&insert_chunks(&wide, 1, 4 << 20)), [3, 3, 3, 1]);
        assert_eq!(sizes(&insert_chunks(&wide, 1, 1000)), [1; 10]);
        assert!(insert_chunks(&[], 3, 1000).is_empty());
    }
}
