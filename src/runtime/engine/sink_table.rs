//! The sink table as the database declares it (the rows of `sink.columns`): whether its
//! columns fit the pipeline's sink fields, and the limits they put on each row.
//!
//! A row the database would refuse (a number out of a narrower integer's range, text longer
//! than a `varchar(n)`, a decimal with more integer digits than the column holds, NULL in a
//! NOT NULL column) is found here, before its batch is written, so that the error names the
//! row's key and the column; the database's own error would name neither.

use super::ch_engine::ChEngine;
use super::rows::load_columns;
use crate::expr::Value;
use crate::ir::{MergeKind, Pipeline, SinkHash};
use crate::runtime::connect::rowbinary::{
    ch_base, check_value, enum_labels, type_args, RbColumn, RbType,
};
use crate::runtime::transform::{key_label, scale_misfit};
use crate::runtime::values::abbreviate;
use crate::runtime::{Row, RuntimeError};
use crate::sql::DialectKind;
use crate::types::Dtype;

/// A column of the existing sink table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    /// The column name.
    pub name: String,
    /// The native type as the database lists it (`varchar(3)`, `Nullable(Int32)`; on
    /// PostgreSQL the `data_type` with its length or precision added).
    pub native: String,
    /// Whether the column takes NULL.
    pub nullable: bool,
    /// Whether the database fills the column when a write leaves it out (a default, an
    /// identity or generated column; every ClickHouse column).
    pub defaulted: bool,
    /// What a value must satisfy beyond its dtype.
    pub limit: Limit,
    /// MySQL: the text column's collation (`utf8mb4_general_ci`).
    pub collation: Option<String>,
    /// PostgreSQL: the name of a user-defined type (`citext`, an enum's type), which
    /// `native` lists as `USER-DEFINED`.
    pub user_type: Option<String>,
}

/// A limit a native column type puts on values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// None beyond the dtype.
    None,
    /// An integer range (inclusive).
    Int {
        /// Smallest value.
        min: i128,
        /// Largest value.
        max: i128,
    },
    /// Text of at most this many characters.
    Chars(usize),
    /// Text of at most this many bytes (UTF-8).
    Bytes(usize),
    /// One of these labels (an enum type).
    OneOf(Vec<String>),
    /// A finite number: MySQL and MariaDB have no NaN or infinity.
    Finite,
    /// A date or datetime whose year lies in this range (MySQL `DATE` / `DATETIME`: 0 to
    /// 9999).
    Years {
        /// Earliest year.
        min: i32,
        /// Latest year.
        max: i32,
    },
    /// A ClickHouse date or time column, whose range the RowBinary encoder checks
    /// (`Date` holds 1970–2149, `DateTime` 1970–2106).
    ChTime(RbColumn),
    /// A decimal with at most `precision - scale` digits before the point.
    Decimal {
        /// Total digits.
        precision: u32,
        /// Digits after the point.
        scale: u32,
    },
}

/// The existing sink table's columns.
#[derive(Debug, Clone, Default)]
pub struct SinkTable {
    /// The columns, as listed.
    pub columns: Vec<TableColumn>,
    /// ClickHouse: the table engine (`sink.engine`), checked against the merge strategy,
    /// its sign or version column and the unique_key.
    pub engine: Option<ChEngine>,
    /// PostgreSQL and MySQL upserts and collapses: the unique indexes
    /// (`sink.unique_indexes`), one of which an upsert needs on exactly the `unique_key`.
    pub unique_indexes: Option<Vec<UniqueIndex>>,
    /// MySQL: the table's storage engine (`sink.storage_engine`).
    pub storage_engine: Option<String>,
    /// MySQL: column names match ignoring case, as the server matches them.
    pub fold_names: bool,
    /// MySQL to MySQL: the source's text key columns and their collations
    /// (`source.collations`).
    pub source_keys: Vec<super::full::SourceKeyCollation>,
}

/// A unique index (or primary key, or unique constraint) of the sink table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UniqueIndex {
    /// The index's name (`PRIMARY` for a MySQL primary key).
    pub name: String,
    /// Its columns, each with its prefix length when only a prefix is indexed (MySQL
    /// `name(10)`).
    pub columns: Vec<(String, Option<i64>)>,
    /// PostgreSQL: the index has a WHERE clause.
    pub partial: bool,
    /// PostgreSQL: a deferrable constraint's index, which checks at commit.
    pub deferrable: bool,
}

impl UniqueIndex {
    fn shown(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|(c, p)| match p {
                Some(n) => format!("{c}({n})"),
                None => c.clone(),
            })
            .collect();
        format!("`{}` on ({})", self.name, cols.join(", "))
    }
}

impl SinkTable {
    /// Takes the rows of `sink.unique_indexes`: MySQL (index, column, prefix length),
    /// PostgreSQL (index, column, partial, deferrable).
    pub fn set_unique_indexes(&mut self, rows: &[Row]) {
        let mut by_index: std::collections::BTreeMap<String, UniqueIndex> = Default::default();
        for r in rows {
            // A MySQL 8 functional key part lists no column: it holds no key column whole.
            let column = match r.get(1) {
                Some(Value::Str(c)) => Some(c.clone()),
                Some(Value::Null) => Some("(an expression)".to_string()),
                _ => None,
            };
            if let (Some(Value::Str(i)), Some(c)) = (r.first(), column) {
                let ix = by_index.entry(i.clone()).or_insert_with(|| UniqueIndex {
                    name: i.clone(),
                    ..Default::default()
                });
                let prefix = match r.get(2) {
                    Some(Value::Int(n)) => Some(*n),
                    _ => None,
                };
                ix.columns.push((c, prefix));
                ix.partial |= matches!(r.get(2), Some(Value::Bool(true)));
                ix.deferrable |= matches!(r.get(3), Some(Value::Bool(true)));
            }
        }
        self.unique_indexes = Some(by_index.into_values().collect());
    }

    /// Takes the row of `sink.storage_engine` (engine).
    pub fn set_storage_engine(&mut self, rows: &[Row]) {
        self.storage_engine = rows.first().and_then(|r| match r.first() {
            Some(Value::Str(e)) => Some(e.clone()),
            _ => None,
        });
    }

    /// Whether `a` and `b` name the same column of this table.
    fn same(&self, a: &str, b: &str) -> bool {
        a == b || self.fold_names && a.eq_ignore_ascii_case(b)
    }

    /// Takes the rows of `sink.enum_labels` (column, label, type): a PostgreSQL enum column
    /// admits its labels only, and is named `enum <type>` in messages (PostgreSQL lists it
    /// as `USER-DEFINED`).
    pub fn set_enum_labels(&mut self, rows: &[Row]) {
        for c in &mut self.columns {
            let of_column: Vec<&Row> = rows
                .iter()
                .filter(|r| matches!(r.first(), Some(Value::Str(n)) if *n == c.name))
                .collect();
            let labels: Vec<String> = of_column
                .iter()
                .filter_map(|r| match r.get(1) {
                    Some(Value::Str(l)) => Some(l.clone()),
                    _ => None,
                })
                .collect();
            if !labels.is_empty() {
                c.limit = Limit::OneOf(labels);
                if let Some(Value::Str(t)) = of_column.first().and_then(|r| r.get(2)) {
                    c.native = format!("enum {t}");
                }
            }
        }
    }

    /// Reads the rows of `sink.columns` for `dialect`: PostgreSQL lists (name, data_type,
    /// is_nullable, column_default, is_identity, is_generated, character_maximum_length,
    /// numeric_precision, numeric_scale, datetime_precision, udt_name), MySQL (name, column_type,
    /// is_nullable, column_default, extra, collation_name), ClickHouse (name, type).
    pub fn read(dialect: DialectKind, rows: &[Row]) -> SinkTable {
        let columns = rows
            .iter()
            .map(|r| {
                let name = text(r.first());
                let listed = text(r.get(1));
                let filled = |i: usize| !matches!(r.get(i), None | Some(Value::Null));
                let (native, nullable, defaulted) = match dialect {
                    DialectKind::Postgres => (
                        pg_native(
                            &listed,
                            int(r.get(6)),
                            int(r.get(7)),
                            int(r.get(8)),
                            int(r.get(9)),
                        ),
                        !text(r.get(2)).eq_ignore_ascii_case("no"),
                        filled(3)
                            || text(r.get(4)).eq_ignore_ascii_case("yes")
                            || text(r.get(5)).eq_ignore_ascii_case("always"),
                    ),
                    DialectKind::Mysql => {
                        let extra = text(r.get(4)).to_ascii_lowercase();
                        (
                            listed,
                            !text(r.get(2)).eq_ignore_ascii_case("no"),
                            filled(3)
                                || extra.contains("auto_increment")
                                || extra.contains("generated"),
                        )
                    }
                    // ClickHouse fills every omitted column (its default, or the type's).
                    DialectKind::Clickhouse => {
                        let nullable = ch_base(&listed).1;
                        (listed, nullable, true)
                    }
                };
                let limit = limit_of(dialect, &native);
                let collation = match (dialect, r.get(5)) {
                    (DialectKind::Mysql, Some(Value::Str(c))) => Some(c.clone()),
                    _ => None,
                };
                let user_type = match (dialect, r.get(10)) {
                    (DialectKind::Postgres, Some(Value::Str(t)))
                        if native.eq_ignore_ascii_case("user-defined") =>
                    {
                        Some(t.clone())
                    }
                    _ => None,
                };
                TableColumn {
                    name,
                    native,
                    nullable,
                    defaulted,
                    limit,
                    collation,
                    user_type,
                }
            })
            .collect();
        SinkTable {
            columns,
            fold_names: dialect == DialectKind::Mysql,
            ..Default::default()
        }
    }

    /// Whether the table exists (it has columns).
    pub fn exists(&self) -> bool {
        !self.columns.is_empty()
    }

    /// The column `name` (on MySQL, whatever the case of its letters).
    pub fn column(&self, name: &str) -> Option<&TableColumn> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .or_else(|| self.columns.iter().find(|c| self.same(&c.name, name)))
    }

    /// The native types of `p`'s load columns, in load order (empty names when a column
    /// is missing, which [`SinkTable::check`] reports first).
    pub fn load_natives(&self, p: &Pipeline) -> Vec<String> {
        let names: Vec<String> = load_columns(p).into_iter().map(|c| c.0).collect();
        self.natives_of(&names)
    }

    /// The native types of the columns `names` (empty for a missing one; none at all when
    /// the table does not exist).
    pub fn natives_of(&self, names: &[String]) -> Vec<String> {
        if !self.exists() {
            return Vec::new();
        }
        names
            .iter()
            .map(|n| self.column(n).map(|t| t.native.clone()).unwrap_or_default())
            .collect()
    }

    /// Compares the table with the columns synctool writes: every one must exist with a
    /// type that holds its dtype, and no NOT NULL column may be left out. With
    /// `row_binary` (ClickHouse, whose loads are laid out by the table's types), every
    /// load column's type must also be one the RowBinary encoder writes.
    pub fn check(&self, p: &Pipeline, row_binary: bool) -> Result<(), RuntimeError> {
        let expected = expected_columns(p);
        let mut problems = Vec::new();
        for (name, dtype) in &expected {
            match self.column(name) {
                None => problems.push(format!("column `{name}` is missing")),
                Some(t) => {
                    if let Some(d) = dtype {
                        if Some(name.as_str()) == p.sink.meta.hash_column.as_deref()
                            && !holds_row_hashes(&t.native)
                        {
                            problems.push(format!(
                                "column `{name}` is {}, which cannot hold the 64-bit signed row hashes written to it: make it a bigint (Int64 on ClickHouse)",
                                t.native
                            ));
                        } else if !fits(&t.native, *d) {
                            problems.push(format!(
                                "column `{name}` is {}, which cannot hold {d}",
                                t.native
                            ));
                        } else if row_binary {
                            if let Err(m) = RbColumn::from_native(*d, &t.native) {
                                problems.push(format!("column `{name}`: {m}"));
                            }
                        }
                    }
                }
            }
        }
        if let Some(engine) = &self.engine {
            if let Some(m) = engine.misfit(&p.sink.merge, &p.sink.unique_key) {
                problems.push(m);
            }
        }
        if let Some(m) = self.upsert_key_misfit(p) {
            problems.push(m);
        }
        problems.extend(self.upsert_other_index_misfits(p));
        problems.extend(self.collapse_misfits(p));
        // Distinct keys of a case-sensitive source would be one row of the sink; a MySQL
        // source's keys are as distinct as its own collation makes them: refused when
        // `source.collations` found it telling case or accents apart, else warned about
        // in `key_collation_warnings`.
        if p.source.store.kind.dialect() == Some(DialectKind::Mysql) {
            for (k, c) in self.folded_keys(p) {
                let Some(s) = self.source_keys.iter().find(|s| self.same(&s.sink, &k)) else {
                    continue;
                };
                if s.collation.as_deref().is_some_and(folds_case_or_accents) {
                    continue;
                }
                let theirs = s.collation.as_deref().unwrap_or("binary");
                let fix = match s.collation.as_deref() {
                    Some(sc) => format!("COLLATE {sc}"),
                    None => "COLLATE utf8mb4_bin".to_string(),
                };
                problems.push(format!(
                    "key column `{k}` has the collation {c}, which ignores case or accents, and the source's key column `{}` on datastore `{}` has {theirs}, which tells them apart: distinct source keys (`a`, `A`, `á`) would be one sink row, mixing one key with another's values, and reconciliation would see drift on every run; give the sink column the source's collation (ALTER TABLE … MODIFY `{k}` … {fix})",
                    s.source, p.source.store.name
                ));
            }
        } else {
            problems.extend(self.folded_keys(p).into_iter().map(|(k, c)| {
                format!(
                    "key column `{k}` has the collation {c}, under which keys that differ only in case or accents (`a`, `A`, `á`) are one row; give it a binary collation (ALTER TABLE … MODIFY `{k}` … COLLATE utf8mb4_bin)"
                )
            }));
        }
        for t in &self.columns {
            if !t.nullable && !t.defaulted && !expected.iter().any(|e| self.same(&e.0, &t.name)) {
                problems.push(format!(
                    "column `{}` ({}) is NOT NULL but the pipeline does not write it",
                    t.name, t.native
                ));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(RuntimeError::Config(format!(
            "pipeline `{}`: the existing sink table {} on datastore `{}` does not fit the sink fields: {}; nothing was written",
            p.name,
            self.table_name(p),
            p.sink.store.name,
            problems.join("; ")
        )))
    }

    /// Why an upsert cannot merge into this table by `unique_key`, if it cannot: it needs a
    /// primary key or unique index on exactly those columns (PostgreSQL's `ON CONFLICT`
    /// refuses to run without one; MySQL's `ON DUPLICATE KEY` would insert every row again
    /// on every run), whole columns, neither partial nor deferrable.
    fn upsert_key_misfit(&self, p: &Pipeline) -> Option<String> {
        if p.sink.merge.kind != MergeKind::Upsert {
            return None;
        }
        let indexes = self.unique_indexes.as_ref()?;
        let key = p.sink.unique_key.join(", ");
        let on_key = |ix: &&UniqueIndex| {
            ix.columns.len() == p.sink.unique_key.len()
                && p.sink
                    .unique_key
                    .iter()
                    .all(|k| ix.columns.iter().any(|(c, _)| self.same(c, k)))
        };
        let usable = |ix: &&UniqueIndex| {
            !ix.partial && !ix.deferrable && ix.columns.iter().all(|c| c.1.is_none())
        };
        if indexes.iter().filter(on_key).any(|ix| usable(&ix)) {
            return None;
        }
        let add = format!(
            "add a primary key or unique index on exactly ({key}) (ALTER TABLE … ADD PRIMARY KEY ({key})), or use delete_insert"
        );
        if let Some(ix) = indexes.iter().find(|ix| on_key(ix) && ix.deferrable) {
            return Some(format!(
                "merge strategy upsert merges with ON CONFLICT ({key}), which cannot use the deferrable unique constraint {} (it checks at commit, and ON CONFLICT needs a check on insert): the merge would fail; make it NOT DEFERRABLE (ALTER TABLE … ALTER CONSTRAINT {} NOT DEFERRABLE), or {add}",
                ix.shown(),
                ix.name
            ));
        }
        if let Some(ix) = indexes.iter().find(|ix| on_key(ix) && ix.partial) {
            return Some(format!(
                "merge strategy upsert merges with ON CONFLICT ({key}), which cannot use the partial unique index {} (its WHERE clause leaves rows out of it): {add}",
                ix.shown()
            ));
        }
        if let Some(ix) = indexes.iter().find(on_key) {
            return Some(format!(
                "merge strategy upsert needs a unique index on the whole unique_key ({key}), and the unique index {} holds only a prefix of it, under which distinct keys sharing that prefix would overwrite each other: {add}",
                ix.shown()
            ));
        }
        let found: Vec<String> = indexes
            .iter()
            .map(|ix| {
                let cols: Vec<&str> = ix.columns.iter().map(|c| c.0.as_str()).collect();
                format!("({})", cols.join(", "))
            })
            .collect();
        Some(format!(
            "merge strategy upsert needs a primary key or unique index on exactly the unique_key ({key}), and the table has {}; add one (ALTER TABLE … ADD PRIMARY KEY ({key})), or use delete_insert",
            if found.is_empty() {
                "no unique index".to_string()
            } else {
                format!("unique indexes on {} only", found.join(", "))
            },
        ))
    }

    /// MySQL upserts: `ON DUPLICATE KEY UPDATE` fires on a clash with any unique index, so
    /// a unique index that does not hold every key column in full (`unique(email)` beside
    /// the primary key) would let a row overwrite another key's row.
    fn upsert_other_index_misfits(&self, p: &Pipeline) -> Vec<String> {
        let Some(indexes) = &self.unique_indexes else {
            return Vec::new();
        };
        // (`fold_names` marks a MySQL table; PostgreSQL's `ON CONFLICT (key)` fires on the
        // key's index only, and a clash on another fails the batch, which is rolled back.)
        if p.sink.merge.kind != MergeKind::Upsert || !self.fold_names {
            return Vec::new();
        }
        let key = p.sink.unique_key.join(", ");
        indexes
            .iter()
            .filter(|ix| {
                !p.sink.unique_key.iter().all(|k| {
                    ix.columns
                        .iter()
                        .any(|(c, prefix)| prefix.is_none() && self.same(c, k))
                })
            })
            .map(|ix| {
                format!(
                    "the unique index {} does not hold the whole unique_key ({key}): ON DUPLICATE KEY UPDATE fires on any unique index, so a row that clashes with another key's row on it would overwrite that row; drop the index, add the unique_key's columns to it, or use delete_insert (which fails on such a row instead)",
                    ix.shown()
                )
            })
            .collect()
    }

    /// Collapse into an existing PostgreSQL or MySQL table: its rows are append-only, a
    /// cancelling row (sign −1) beside the row it cancels and the key's new row, so a
    /// unique index over columns synctool writes (a primary key on the unique_key) refuses
    /// the first change; and the sign column must hold −1.
    fn collapse_misfits(&self, p: &Pipeline) -> Vec<String> {
        let m = &p.sink.merge;
        if m.kind != MergeKind::Collapse {
            return Vec::new();
        }
        let written = expected_columns(p);
        let mut out: Vec<String> = self
            .unique_indexes
            .iter()
            .flatten()
            .filter(|ix| {
                ix.columns
                    .iter()
                    .all(|(c, _)| written.iter().any(|w| self.same(&w.0, c)))
            })
            .map(|ix| {
                format!(
                    "merge strategy collapse keeps several rows per key (the old row, its cancelling row with sign -1, the new row), which the unique index {} refuses: drop it (a non-unique index on the unique_key serves the merge), or use upsert",
                    ix.shown()
                )
            })
            .collect();
        if let Some(t) = self.column(&m.sign_column) {
            let n = t.native.to_ascii_lowercase();
            let n = n
                .strip_prefix("nullable(")
                .unwrap_or(&n)
                .trim_start_matches("lowcardinality(");
            if n.contains("unsigned") || n.starts_with("uint") {
                out.push(format!(
                    "sign column `{}` is {}, which cannot hold the -1 of cancelling rows: make it a signed integer (tinyint, Int8)",
                    t.name, t.native
                ));
            }
        }
        out
    }

    /// MySQL: a warning when the table's storage engine is not transactional (MyISAM, Aria,
    /// MEMORY, …): a batch that fails part way stays half written, and readers see it
    /// while it is written.
    pub fn storage_engine_warning(&self, p: &Pipeline) -> Option<String> {
        let e = self.storage_engine.as_deref()?;
        let transactional = ["innodb", "xtradb", "ndbcluster", "ndb", "tokudb", "rocksdb"];
        if transactional.iter().any(|t| e.eq_ignore_ascii_case(t)) {
            return None;
        }
        Some(format!(
            "pipeline `{}`: the sink table {} on datastore `{}` uses the storage engine {e}, which is not transactional: a batch is no longer written all or nothing (a failure part way leaves it half written, and a rollback undoes nothing) and readers see it while it is written; convert it (ALTER TABLE … ENGINE=InnoDB) to keep that guarantee",
            p.name,
            self.table_name(p),
            p.sink.store.name
        ))
    }

    /// MySQL: the text key columns (name, collation) whose collation ignores case or
    /// accents.
    fn folded_keys(&self, p: &Pipeline) -> Vec<(String, String)> {
        p.sink
            .unique_key
            .iter()
            .filter_map(|k| {
                let c = self.column(k)?.collation.as_deref()?;
                folds_case_or_accents(c).then(|| (k.clone(), c.to_string()))
            })
            .collect()
    }

    /// MySQL source into an existing MySQL table whose text key columns ignore case or
    /// accents, or any source into a PostgreSQL table with a `citext` key column: fine when
    /// the source's key column compares the same way, a merge of distinct keys when it
    /// does not; said once per run.
    pub fn key_collation_warnings(&self, p: &Pipeline) -> Vec<String> {
        let citext = p.sink.unique_key.iter().filter(|k| {
            self.column(k)
                .and_then(|c| c.user_type.as_deref())
                .is_some_and(|t| t.eq_ignore_ascii_case("citext"))
        });
        let mut out: Vec<String> = citext
            .map(|k| {
                format!(
                    "pipeline `{}`: sink key column `{k}` is citext, which compares text ignoring case: source keys that differ only in case are one sink row (the later one read overwrites the other's values, and two of them in one batch fail its upsert), and plan and reconciliation, which compare keys by their bytes, see the one the sink lacks as drift; unless the source's keys are distinct ignoring case, make the column text",
                    p.name
                )
            })
            .collect();
        if p.source.store.kind.dialect() != Some(DialectKind::Mysql) {
            return out;
        }
        out.extend(self.folded_keys(p)
            .into_iter()
            .map(|(k, c)| {
                format!(
                    "pipeline `{}`: sink key column `{k}` has the collation {c}, under which keys that differ only in case or accents are one row; unless the source's key column compares the same way, such keys overwrite each other",
                    p.name
                )
            }));
        out
    }

    fn table_name(&self, p: &Pipeline) -> String {
        let t = &p.sink.table;
        match &t.schema {
            Some(s) => format!("{s}.{}", t.name),
            None => t.name.clone(),
        }
    }

    /// A warning for each load column whose type keeps less than its dtype's values (see
    /// [`keeps_less`]). Where the column counts in a row hash recomputed from the sink's
    /// columns, reconciliation would see its rows as changed on every run: the warning
    /// says so and names the two ways out.
    pub fn lossy(&self, dialect: DialectKind, p: &Pipeline) -> Vec<String> {
        load_columns(p)
            .iter()
            .filter_map(|c| {
                let t = self.column(&c.0)?;
                let what = keeps_less(dialect, &t.native, c.1)?;
                let effect = match &p.row_hash.sink {
                    // Nothing compares the sink (a NATS source, no reconciliation).
                    _ if p.reconciliations.is_empty() => {
                        "so the sink holds them changed".to_string()
                    }
                    SinkHash::Stored(h) => format!(
                        "and reconciliation, which compares the row hash stored in `{h}`, does not count that as drift"
                    ),
                    SinkHash::Columns(cols) if cols.iter().any(|h| h.name == c.0) => {
                        "so reconciliation sees those rows as changed on every run; widen the column, or keep the row hash in a sink column (`meta_columns: {hash_column: …}`), which reconciliation then compares instead".to_string()
                    }
                    SinkHash::Columns(_) => "and the column does not count in the row hash".to_string(),
                };
                Some(format!(
                    "pipeline `{}`: sink column `{}` is {}, which {what}: the database changes those values on write, {effect}",
                    p.name, c.0, t.native
                ))
            })
            .collect()
    }

    /// The per-row checks for `p`'s load rows.
    pub fn guard(&self, p: &Pipeline, dialect: DialectKind) -> RowGuard {
        let cols = load_columns(p);
        let checks = cols
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let t = self.column(&c.0)?;
                let check = ColumnCheck {
                    index: i,
                    not_null: !t.nullable,
                    limit: t.limit.clone(),
                    field: match c.1 {
                        Dtype::Decimal { precision, scale } => Some((precision, scale)),
                        _ => None,
                    },
                    name: t.name.clone(),
                    native: t.native.clone(),
                    // PostgreSQL text holds no NUL character, which MySQL and ClickHouse
                    // text may, and so may any value synctool computes (an enrichment
                    // output, a template, an expression): only a copy of a PostgreSQL
                    // source's column is sure to hold none.
                    no_nul: dialect == DialectKind::Postgres
                        && c.1 == Dtype::Str
                        && !from_pg_column(p, i),
                    // Nor does `jsonb` hold a `\u0000` escape, which a document from
                    // anywhere may carry (a PostgreSQL `json` column, too).
                    no_nul_escape: dialect == DialectKind::Postgres
                        && c.1 == Dtype::Json
                        && t.native.eq_ignore_ascii_case("jsonb"),
                    bmp_only: t.collation.as_deref().is_some_and(three_byte_charset),
                };
                (check.not_null
                    || check.limit != Limit::None
                    || check.field.is_some()
                    || check.no_nul
                    || check.no_nul_escape
                    || check.bmp_only)
                    .then_some(check)
            })
            .collect();
        let key: Vec<(usize, String)> = p
            .sink
            .unique_key
            .iter()
            .filter_map(|k| Some((cols.iter().position(|c| &c.0 == k)?, k.clone())))
            .collect();
        let padded_keys = match dialect {
            DialectKind::Mysql => key
                .iter()
                .filter(|(i, _)| matches!(cols.get(*i), Some(c) if c.1 == Dtype::Str))
                .map(|(i, _)| *i)
                .collect(),
            _ => vec![],
        };
        RowGuard {
            pipeline: p.name.clone(),
            checks,
            key,
            padded_keys,
            warned_padding: false,
        }
    }
}

/// Whether a MySQL collation compares text ignoring case or accents (`…_ci`, `…_ai_…`);
/// binary (`…_bin`, `binary`) and case-sensitive (`…_cs`) ones keep such keys apart.
fn folds_case_or_accents(collation: &str) -> bool {
    let c = collation.to_ascii_lowercase();
    c.ends_with("_ci") || c.contains("_ai_")
}

/// The checks of one load column.
#[derive(Debug, Clone)]
struct ColumnCheck {
    index: usize,
    not_null: bool,
    limit: Limit,
    /// The field's `decimal(p,s)`: a value with more digits after the point is refused on
    /// every sink alike (PostgreSQL and MySQL would round it, ClickHouse refuse it).
    field: Option<(u8, u8)>,
    name: String,
    native: String,
    /// Text with a character beyond U+FFFF (an emoji) is refused: a MySQL `utf8mb3` (or
    /// `ucs2`) column cannot store it, and the server's own error names no key.
    bmp_only: bool,
    /// Text with a NUL character is refused (PostgreSQL cannot store it).
    no_nul: bool,
    /// A JSON document with a `\u0000` escape is refused (PostgreSQL's `jsonb` cannot
    /// store it).
    no_nul_escape: bool,
}

/// Whether load column `i` of `p` is a copy of a PostgreSQL source's column (or of an
/// expression its extract query computes), whose text cannot hold a NUL character.
fn from_pg_column(p: &Pipeline, i: usize) -> bool {
    p.source.store.kind.dialect() == Some(DialectKind::Postgres)
        && p.sink.fields.get(i).is_some_and(|f| {
            matches!(
                f.value,
                crate::ir::FieldValue::Column { .. } | crate::ir::FieldValue::Pushed { .. }
            )
        })
}

/// Whether a JSON document's text holds a `\u0000` escape (in a string or a key).
fn has_nul_escape(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = b[i..].iter().position(|&c| c == b'\\') {
        let j = i + at;
        if b.get(j + 1) == Some(&b'u') && b.get(j + 2..j + 6) == Some(b"0000".as_slice()) {
            return true;
        }
        // Skip the escaped character (`\\` included).
        i = j + 2;
        if i >= b.len() {
            break;
        }
    }
    false
}

/// Whether a MySQL collation belongs to a character set of at most three bytes a character
/// (`utf8mb3_general_ci`, the older `utf8_…`, `ucs2_…`), which holds no character beyond
/// U+FFFF.
fn three_byte_charset(collation: &str) -> bool {
    let c = collation.to_ascii_lowercase();
    c.starts_with("utf8mb3_") || c.starts_with("utf8_") || c.starts_with("ucs2_")
}

/// Checks load rows against the sink table's column limits.
#[derive(Debug, Clone, Default)]
pub struct RowGuard {
    pipeline: String,
    checks: Vec<ColumnCheck>,
    /// (load column, sink column name) of the key, for errors.
    key: Vec<(usize, String)>,
    /// MySQL: the load columns of text key columns, which MySQL compares ignoring trailing
    /// spaces (`PAD SPACE` collations), so that `'k'` and `'k '` are one row.
    padded_keys: Vec<usize>,
    /// Whether a key with trailing spaces was warned about (once per run).
    warned_padding: bool,
}

impl RowGuard {
    /// The first value of `rows` (load rows, in load column order, coerced to their
    /// dtypes) the sink column would refuse, as a [`RuntimeError::Value`] naming the row's
    /// key and the column.
    pub fn check(&mut self, rows: &[Row]) -> Result<(), RuntimeError> {
        if !self.padded_keys.is_empty() && !self.warned_padding {
            if let Some(row) = rows.iter().find(|r| self.padded(r)) {
                self.warned_padding = true;
                tracing::warn!(
                    "pipeline `{}`: the key ({}) ends with a space; MySQL compares text keys ignoring trailing spaces, so it is the same sink row as the key without them (and one overwrites the other)",
                    self.pipeline,
                    self.key_label(row)
                );
            }
        }
        if self.checks.is_empty() {
            return Ok(());
        }
        for row in rows {
            for c in &self.checks {
                let Some(v) = row.get(c.index) else { continue };
                if let Err(message) = c.admit(v) {
                    return Err(RuntimeError::Value {
                        pipeline: self.pipeline.clone(),
                        key: self.key_label(row),
                        column: c.name.clone(),
                        message,
                    });
                }
            }
        }
        Ok(())
    }

    /// MySQL: `rows` with only the last of the rows whose keys are one sink row under
    /// `PAD SPACE` (they differ in trailing spaces only), as an upsert would keep it and
    /// as a staged `delete_insert` could not (its INSERT would hit the primary key twice).
    /// `None` when no text key of `rows` ends with a space.
    pub fn fold_padded(&self, rows: &[Row]) -> Option<Vec<Row>> {
        if self.padded_keys.is_empty() || !rows.iter().any(|r| self.padded(r)) {
            return None;
        }
        let key = |r: &Row| -> Vec<String> {
            self.key
                .iter()
                .map(|(i, _)| match r.get(*i) {
                    Some(Value::Str(s)) if self.padded_keys.contains(i) => {
                        s.trim_end_matches(' ').to_string()
                    }
                    Some(v) => v.to_text(),
                    None => String::new(),
                })
                .collect()
        };
        let mut last = std::collections::HashMap::new();
        for (n, r) in rows.iter().enumerate() {
            last.insert(key(r), n);
        }
        Some(
            rows.iter()
                .enumerate()
                .filter(|(n, r)| last.get(&key(r)) == Some(n))
                .map(|(_, r)| r.clone())
                .collect(),
        )
    }

    /// Whether every `sink.unique_key` column is a load column, so that
    /// [`RowGuard::key_hash`] tells rows of one sink key apart from others.
    pub fn keyed(&self, p: &crate::ir::Pipeline) -> bool {
        !self.key.is_empty() && self.key.len() == p.sink.unique_key.len()
    }

    /// A 64-bit hash of load row `r`'s key, equal for rows the sink holds as one key: MySQL
    /// text keys without their trailing spaces, `-0.0` as `0.0`, decimals without trailing
    /// zeros after the point. Two keys may share a hash (rarely); callers treat a match as
    /// "maybe the same key".
    pub fn key_hash(&self, r: &Row) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for (i, _) in &self.key {
            match r.get(*i) {
                None | Some(Value::Null) => 0u8.hash(&mut h),
                Some(Value::Int(n)) => (1u8, n).hash(&mut h),
                Some(Value::Str(s)) => {
                    let s = if self.padded_keys.contains(i) {
                        s.trim_end_matches(' ')
                    } else {
                        s.as_str()
                    };
                    (2u8, s).hash(&mut h)
                }
                Some(Value::Float(f)) => (3u8, (f + 0.0).to_bits()).hash(&mut h),
                Some(v @ Value::Decimal(_)) => {
                    let t = v.to_text();
                    let t = match t.contains('.') {
                        true => t.trim_end_matches('0').trim_end_matches('.'),
                        false => t.as_str(),
                    };
                    (4u8, t).hash(&mut h)
                }
                Some(v) => (5u8, v.to_text()).hash(&mut h),
            }
        }
        h.finish()
    }

    /// The keys of the first rows of `rows` whose keys differ but become one when text is
    /// compared ignoring case and trailing spaces (`'k'`, `'K'`, `'k '`), labelled for a
    /// message: the likely pairs behind a PostgreSQL upsert that hit one sink row twice
    /// (a `citext` or `char(n)` key column, or a nondeterministic collation). Empty when
    /// no two rows fold together.
    pub fn folding_together(&self, rows: &[Row]) -> Vec<String> {
        let folded = |r: &Row| -> Vec<String> {
            self.key
                .iter()
                .map(|(i, _)| match r.get(*i) {
                    Some(Value::Str(s)) => s.trim_end_matches(' ').to_lowercase(),
                    Some(v) => v.to_text(),
                    None => String::new(),
                })
                .collect()
        };
        let mut first: std::collections::HashMap<Vec<String>, &Row> = Default::default();
        for r in rows {
            match first.entry(folded(r)) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    let labels = [self.key_label(e.get()), self.key_label(r)];
                    if labels[0] != labels[1] {
                        return labels.to_vec();
                    }
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(r);
                }
            }
        }
        Vec::new()
    }

    /// Whether a text key of load row `r` ends with a space (MySQL sinks).
    fn padded(&self, r: &Row) -> bool {
        self.padded_keys
            .iter()
            .any(|i| matches!(r.get(*i), Some(Value::Str(s)) if s.ends_with(' ')))
    }

    /// `id=5, region="eu"`: the key of a load row, for messages.
    fn key_label(&self, row: &Row) -> String {
        const NULL: &Value = &Value::Null;
        key_label(
            self.key
                .iter()
                .map(|(i, k)| (k.as_str(), row.get(*i).unwrap_or(NULL))),
        )
    }
}

impl ColumnCheck {
    fn admit(&self, v: &Value) -> Result<(), String> {
        if v.is_null() {
            return if self.not_null {
                Err(format!(
                    "NULL, but the sink column is NOT NULL ({})",
                    self.native
                ))
            } else {
                Ok(())
            };
        }
        let text = match v {
            Value::Str(s) => Some(s.as_str()),
            Value::Json(j) => Some(j.text()),
            _ => None,
        };
        if let (true, Some(s)) = (self.bmp_only, text) {
            if let Some(ch) = s.chars().find(|c| u32::from(*c) > 0xFFFF) {
                return Err(format!(
                    "text with the character {ch} (U+{:X}), which the sink column's character set cannot hold ({}, three bytes a character at most): convert the column to utf8mb4",
                    u32::from(ch),
                    self.native
                ));
            }
        }
        if let (true, Value::Str(s)) = (self.no_nul, v) {
            if s.contains('\0') {
                return Err(format!(
                    "text with a NUL character (\\0), which PostgreSQL's {} cannot hold",
                    self.native
                ));
            }
        }
        if let (true, Value::Json(j)) = (self.no_nul_escape, v) {
            if has_nul_escape(j.text()) {
                return Err(format!(
                    "a JSON document with a NUL character (\\u0000), which PostgreSQL's {} cannot hold",
                    self.native
                ));
            }
        }
        if let (Some((precision, scale)), Value::Decimal(d)) = (self.field, v) {
            if let Some(m) = scale_misfit(d, precision, scale) {
                return Err(format!("{} has {m}", d.normalized()));
            }
        }
        match (&self.limit, v) {
            (Limit::ChTime(col), v) => {
                check_value(v, col)
                    .map_err(|m| format!("{m} (the sink column is {})", self.native))?;
            }
            (Limit::OneOf(labels), Value::Str(s)) if !labels.contains(s) => {
                let shown: Vec<&str> = labels.iter().take(10).map(String::as_str).collect();
                return Err(format!(
                    "'{}' is not one of the values of the sink column's type {} ({}{})",
                    abbreviate(s),
                    self.native,
                    shown.join(", "),
                    if labels.len() > shown.len() {
                        ", …"
                    } else {
                        ""
                    }
                ));
            }
            (&Limit::Years { min, max }, Value::Date(_) | Value::Datetime(_)) => {
                use chrono::Datelike;
                let year = match v {
                    Value::Date(d) => d.year(),
                    Value::Datetime(t) => t.year(),
                    _ => unreachable!("matched a date or datetime"),
                };
                if year < min || year > max {
                    return Err(format!(
                        "{} is out of the range of the sink column's type {} (years {min} to {max})",
                        v.to_text(),
                        self.native
                    ));
                }
            }
            (&Limit::Int { min, max }, Value::Int(i)) => {
                let i = i128::from(*i);
                if i < min || i > max {
                    return Err(format!(
                        "{i} is out of the range of the sink column's type {} ({min} to {max})",
                        self.native
                    ));
                }
            }
            // Fast path: no more bytes than allowed characters.
            (&Limit::Chars(n), Value::Str(s) | Value::Uuid(s)) if s.len() > n => {
                let len = s.chars().count();
                if len > n {
                    return Err(format!(
                        "text of {len} characters does not fit the sink column's type {}",
                        self.native
                    ));
                }
            }
            (&Limit::Bytes(n), Value::Str(s) | Value::Uuid(s)) if s.len() > n => {
                return Err(format!(
                    "text of {} bytes does not fit the sink column's type {}",
                    s.len(),
                    self.native
                ));
            }
            (&(Limit::Chars(n) | Limit::Bytes(n)), Value::Json(j)) => {
                let len = j.to_string().len();
                if len > n {
                    return Err(format!(
                        "JSON text of {len} bytes does not fit the sink column's type {}",
                        self.native
                    ));
                }
            }
            (Limit::Finite, Value::Float(f)) if !f.is_finite() => {
                return Err(format!(
                    "the float {} cannot be stored in the sink column's type {} (MySQL has no NaN or infinity)",
                    v.to_text(),
                    self.native
                ));
            }
            (&Limit::Decimal { precision, scale }, v) => {
                let digits = match v {
                    Value::Decimal(d) => {
                        let whole = d.mantissa().unsigned_abs() / 10u128.pow(d.scale().min(38));
                        int_digits(whole)
                    }
                    Value::Int(i) => int_digits(u128::from(i.unsigned_abs())),
                    _ => 0,
                };
                let room = precision.saturating_sub(scale);
                if digits > room {
                    return Err(format!(
                        "{} has {digits} digits before the point; the sink column's type {} holds {room}",
                        v.to_text(),
                        self.native
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Digits of `n` (0 has none before the point).
fn int_digits(n: u128) -> u32 {
    if n == 0 {
        0
    } else {
        n.ilog10() + 1
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::Str(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_text(),
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Int(i)) => Some(*i),
        Some(Value::Str(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

/// PostgreSQL's `data_type` with the length or precision `information_schema` lists
/// beside it: `character varying(3)`, `numeric(12,2)`.
fn pg_native(
    data_type: &str,
    chars: Option<i64>,
    precision: Option<i64>,
    scale: Option<i64>,
    time_precision: Option<i64>,
) -> String {
    match (data_type, chars, precision, scale, time_precision) {
        (_, Some(n), _, _, _) => format!("{data_type}({n})"),
        ("numeric", None, Some(p), Some(s), _) => format!("numeric({p},{s})"),
        (t, _, _, _, Some(p)) if p != 6 && t.starts_with("timestamp") => {
            format!("timestamp({p}){}", &t["timestamp".len()..])
        }
        _ => data_type.to_string(),
    }
}

/// What a native column type loses of a dtype's values, if anything: fewer fractional
/// digits of a datetime or decimal, single-precision floats, or (ClickHouse
/// `FixedString`) text padded to the column's width. The database rounds such
/// values on write, and the rounded rows then differ from the source on every
/// reconciliation.
pub fn keeps_less(dialect: DialectKind, native: &str, dtype: Dtype) -> Option<String> {
    let lower = native.trim().to_ascii_lowercase();
    let args = type_args(&lower);
    match dtype {
        Dtype::Datetime => {
            let digits = match dialect {
                DialectKind::Postgres if lower.starts_with("timestamp") => {
                    args.first().copied().unwrap_or(6)
                }
                DialectKind::Mysql
                    if lower.starts_with("datetime") || lower.starts_with("timestamp") =>
                {
                    args.first().copied().unwrap_or(0)
                }
                // ClickHouse: the row hash compares whole seconds on both sides.
                _ => 6,
            };
            (digits < 6).then(|| match digits {
                0 => "keeps whole seconds".to_string(),
                d => format!("keeps {} of a second", counted(d, "fractional digit")),
            })
        }
        Dtype::Decimal { scale, .. } => {
            let limit = limit_of(dialect, native);
            match limit {
                Limit::Decimal { scale: s, .. } if s < u32::from(scale) => Some(format!(
                    "keeps {} after the point (the field has {scale})",
                    counted(s, "digit")
                )),
                _ => None,
            }
        }
        Dtype::Str if dialect == DialectKind::Clickhouse => ch_base(native)
            .0
            .starts_with("FixedString(")
            .then(|| "pads shorter text with zero bytes".to_string()),
        Dtype::Float => {
            let (base, _) = ch_base(native);
            let single = match dialect {
                DialectKind::Postgres => lower == "real",
                DialectKind::Mysql => lower.starts_with("float"),
                DialectKind::Clickhouse => base == "Float32",
            };
            single.then(|| "keeps single precision (about 7 digits)".to_string())
        }
        _ => None,
    }
}

/// `1 digit`, `3 digits`.
fn counted(n: u32, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn int_range(bits: u32, unsigned: bool) -> Limit {
    if unsigned {
        Limit::Int {
            min: 0,
            max: (1i128 << bits) - 1,
        }
    } else {
        Limit::Int {
            min: -(1i128 << (bits - 1)),
            max: (1i128 << (bits - 1)) - 1,
        }
    }
}

fn decimal_limit(args: &[u32], default_precision: u32) -> Limit {
    match args {
        [p, s] => Limit::Decimal {
            precision: *p,
            scale: *s,
        },
        [p] => Limit::Decimal {
            precision: *p,
            scale: 0,
        },
        _ => Limit::Decimal {
            precision: default_precision,
            scale: 0,
        },
    }
}

/// The limit a native type puts on values.
pub fn limit_of(dialect: DialectKind, native: &str) -> Limit {
    let lower = native.trim().to_ascii_lowercase();
    match dialect {
        DialectKind::Postgres => {
            let base = lower.split('(').next().unwrap_or("").trim();
            match base {
                "smallint" => int_range(16, false),
                "integer" => int_range(32, false),
                "character varying" | "character" => match type_args(&lower).first() {
                    Some(n) => Limit::Chars(*n as usize),
                    None => Limit::None,
                },
                "numeric" => match type_args(&lower).as_slice() {
                    [] => Limit::None,
                    args => decimal_limit(args, 0),
                },
                _ => Limit::None,
            }
        }
        DialectKind::Mysql => {
            let unsigned = lower.contains("unsigned");
            let base = lower.split(['(', ' ']).next().unwrap_or("");
            match base {
                "tinyint" => int_range(8, unsigned),
                "smallint" => int_range(16, unsigned),
                "mediumint" => int_range(24, unsigned),
                "int" | "integer" => int_range(32, unsigned),
                "bigint" if unsigned => int_range(64, true),
                "varchar" | "char" => match type_args(&lower).first() {
                    Some(n) => Limit::Chars(*n as usize),
                    None => Limit::None,
                },
                "enum" => Limit::OneOf(enum_labels(native).into_iter().map(|l| l.0).collect()),
                "tinytext" => Limit::Bytes(255),
                "text" => Limit::Bytes(65_535),
                "mediumtext" => Limit::Bytes(16_777_215),
                "decimal" | "numeric" => decimal_limit(&type_args(&lower), 10),
                "float" | "double" | "real" => Limit::Finite,
                "date" | "datetime" => Limit::Years { min: 0, max: 9999 },
                _ => Limit::None,
            }
        }
        // The same parse as the RowBinary layout, so that the two cannot disagree (a type
        // the encoder refuses is reported by `SinkTable::check`).
        DialectKind::Clickhouse => match RbColumn::from_native(Dtype::Int, native).map(|c| c.ty) {
            Ok(RbType::Int {
                bytes: 8,
                signed: true,
            }) => Limit::None,
            Ok(RbType::Int { bytes, signed }) => int_range(u32::from(bytes) * 8, !signed),
            Ok(RbType::FixedString(n)) => Limit::Bytes(n),
            Ok(RbType::Decimal { precision, scale }) => Limit::Decimal {
                precision: u32::from(precision),
                scale: u32::from(scale),
            },
            Ok(RbType::Enum { labels, .. }) => {
                Limit::OneOf(labels.into_iter().map(|l| l.0).collect())
            }
            Ok(ty @ (RbType::Date | RbType::Date32)) => Limit::ChTime(RbColumn {
                dtype: Dtype::Date,
                ty,
                nullable: true,
            }),
            Ok(ty @ (RbType::DateTime | RbType::DateTime64(_))) => Limit::ChTime(RbColumn {
                dtype: Dtype::Datetime,
                ty,
                nullable: true,
            }),
            _ => Limit::None,
        },
    }
}

/// The columns the sink table must have: the load columns, the collapse sign column and
/// the ReplacingMergeTree version column.
fn expected_columns(p: &Pipeline) -> Vec<(String, Option<Dtype>)> {
    let mut cols: Vec<(String, Option<Dtype>)> = load_columns(p)
        .into_iter()
        .map(|c| (c.0, Some(c.1)))
        .collect();
    let m = &p.sink.merge;
    if m.kind == MergeKind::Collapse && !cols.iter().any(|c| c.0 == m.sign_column) {
        cols.push((m.sign_column.clone(), Some(Dtype::Int)));
    }
    if let Some(v) = &m.version_column {
        if m.kind == MergeKind::Upsert && !cols.iter().any(|c| &c.0 == v) {
            cols.push((v.clone(), None));
        }
    }
    cols
}

/// Whether a native column type can hold every 64-bit signed integer (a row hash):
/// `bigint` (not unsigned), `int8`, `Int64`, or an unbounded or wide enough decimal.
fn holds_row_hashes(native: &str) -> bool {
    let t = native.to_ascii_lowercase();
    let t = t
        .strip_prefix("nullable(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(&t);
    if t.contains("unsigned") {
        return false;
    }
    if t.starts_with("bigint") || t == "int8" || t == "int64" || t == "int128" || t == "int256" {
        return true;
    }
    // `numeric`, `decimal(20,0)`, ClickHouse `Decimal(38, 0)`: whole numbers of 19 digits.
    let Some(rest) = t
        .strip_prefix("numeric")
        .or_else(|| t.strip_prefix("decimal"))
    else {
        return false;
    };
    let args: Vec<u32> = rest
        .trim_matches(|c| c == '(' || c == ')' || c == ' ')
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    match args.as_slice() {
        [] => rest.trim().is_empty(),
        [p] => *p >= 19,
        [p, s] => p.saturating_sub(*s) >= 19,
        _ => false,
    }
}

/// Whether a native column type (as `sink.columns` lists it) can hold a dtype.
fn fits(native: &str, dtype: Dtype) -> bool {
    let t = native.to_ascii_lowercase();
    let t = t
        .strip_prefix("nullable(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(&t)
        .to_string();
    let has = |w: &str| t.contains(w);
    match dtype {
        Dtype::Int => has("int") && !has("interval") || has("bigserial") || has("serial"),
        Dtype::Float => has("double") || has("float") || has("real"),
        Dtype::Decimal { .. } => has("numeric") || has("decimal"),
        // PostgreSQL lists enums (and `citext`) as `USER-DEFINED`.
        Dtype::Str => {
            has("char") || has("text") || has("string") || has("enum") || t == "user-defined"
        }
        Dtype::Bool => has("bool") || has("tinyint") || has("uint8") || has("bit"),
        Dtype::Date => t == "date" || t.starts_with("date") && !has("time"),
        Dtype::Datetime => has("timestamp") || has("datetime"),
        Dtype::Uuid => has("uuid") || has("char") || has("string"),
        Dtype::Json => has("json") || has("text") || has("string") || has("char"),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn unique_indexes_keep_prefixes_partial_deferrable_and_expression_parts() {
        use super::{SinkTable, UniqueIndex};
        use crate::expr::Value;
        let s = |t: &str| Value::Str(t.to_string());
        let mut my = SinkTable::default();
        my.set_unique_indexes(&[
            vec![s("PRIMARY"), s("id"), Value::Null],
            vec![s("em"), Value::Null, Value::Null],
            vec![s("nm"), s("name"), Value::Int(3)],
        ]);
        let found = my.unique_indexes.unwrap();
        assert_eq!(
            found.iter().map(UniqueIndex::shown).collect::<Vec<_>>(),
            vec![
                "`PRIMARY` on (id)",
                "`em` on ((an expression))",
                "`nm` on (name(3))"
            ]
        );
        let mut pg = SinkTable::default();
        pg.set_unique_indexes(&[
            vec![s("d"), s("id"), Value::Bool(false), Value::Bool(true)],
            vec![s("p"), s("id"), Value::Bool(true), Value::Bool(false)],
        ]);
        let found = pg.unique_indexes.unwrap();
        assert_eq!(
            found
                .iter()
                .map(|i| (i.name.as_str(), i.partial, i.deferrable))
                .collect::<Vec<_>>(),
            vec![("d", false, true), ("p", true, false)]
        );
    }

    #[test]
    fn a_row_hash_column_must_hold_64_bit_signed_integers() {
        use super::holds_row_hashes;
        for ok in [
            "bigint",
            "bigint(20)",
            "int8",
            "Int64",
            "Nullable(Int64)",
            "numeric",
            "decimal(20,0)",
            "Decimal(38, 0)",
        ] {
            assert!(holds_row_hashes(ok), "{ok}");
        }
        for bad in [
            "int(11)",
            "integer",
            "bigint(20) unsigned",
            "UInt64",
            "Int32",
            "decimal(18,0)",
            "numeric(20,2)",
            "double precision",
            "text",
        ] {
            assert!(!holds_row_hashes(bad), "{bad}");
        }
    }

    use super::*;
    use crate::expr::value::Decimal;

    #[test]
    fn native_types_fit_dtypes() {
        assert!(fits("bigint", Dtype::Int));
        assert!(fits("Nullable(Int64)", Dtype::Int));
        assert!(fits("timestamp with time zone", Dtype::Datetime));
        assert!(fits("datetime(6)", Dtype::Datetime));
        assert!(!fits("datetime(6)", Dtype::Date));
        assert!(fits("date", Dtype::Date));
        assert!(!fits("text", Dtype::Int));
        assert!(fits(
            "decimal(18,4)",
            Dtype::Decimal {
                precision: 18,
                scale: 4
            }
        ));
        assert!(!fits("interval", Dtype::Int));
        // Uuids are written as text: a binary(16) column would refuse them.
        assert!(!fits("binary(16)", Dtype::Uuid));
        assert!(fits("char(36)", Dtype::Uuid));
    }

    #[test]
    fn native_types_give_limits() {
        use DialectKind::*;
        assert_eq!(limit_of(Postgres, "integer"), int_range(32, false));
        assert_eq!(limit_of(Postgres, "bigint"), Limit::None);
        assert_eq!(limit_of(Postgres, "character varying(3)"), Limit::Chars(3));
        assert_eq!(limit_of(Postgres, "character varying"), Limit::None);
        assert_eq!(
            limit_of(Postgres, "numeric(5,2)"),
            Limit::Decimal {
                precision: 5,
                scale: 2
            }
        );
        assert_eq!(limit_of(Postgres, "numeric"), Limit::None);
        assert_eq!(limit_of(Postgres, "double precision"), Limit::None);
        assert_eq!(limit_of(Mysql, "double"), Limit::Finite);
        assert_eq!(limit_of(Mysql, "float"), Limit::Finite);
        assert_eq!(
            limit_of(Mysql, "datetime(6)"),
            Limit::Years { min: 0, max: 9999 }
        );
        assert_eq!(limit_of(Mysql, "date"), Limit::Years { min: 0, max: 9999 });
        assert_eq!(limit_of(Mysql, "double(10,2) unsigned"), Limit::Finite);
        assert_eq!(limit_of(Clickhouse, "Nullable(Float64)"), Limit::None);
        assert_eq!(
            limit_of(Mysql, "int(10) unsigned"),
            Limit::Int {
                min: 0,
                max: 4_294_967_295
            }
        );
        assert_eq!(
            limit_of(Mysql, "tinyint(1)"),
            Limit::Int {
                min: -128,
                max: 127
            }
        );
        assert_eq!(limit_of(Mysql, "bigint(20)"), Limit::None);
        assert_eq!(limit_of(Mysql, "varchar(255)"), Limit::Chars(255));
        assert_eq!(limit_of(Mysql, "text"), Limit::Bytes(65_535));
        assert_eq!(limit_of(Mysql, "longtext"), Limit::None);
        assert_eq!(
            limit_of(Clickhouse, "Nullable(UInt16)"),
            Limit::Int {
                min: 0,
                max: 65_535
            }
        );
        assert_eq!(limit_of(Clickhouse, "FixedString(36)"), Limit::Bytes(36));
        assert_eq!(
            limit_of(Clickhouse, "Decimal(12, 2)"),
            Limit::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(
            limit_of(Clickhouse, "Decimal64(4)"),
            Limit::Decimal {
                precision: 18,
                scale: 4
            }
        );
        assert_eq!(limit_of(Clickhouse, "Int64"), Limit::None);
        assert_eq!(
            limit_of(Mysql, "enum('New','old')"),
            Limit::OneOf(vec!["New".into(), "old".into()])
        );
        assert_eq!(
            limit_of(Clickhouse, "Enum8('a' = 1, 'b' = 2)"),
            Limit::OneOf(vec!["a".into(), "b".into()])
        );
        let e = check(Limit::OneOf(vec!["a".into()]), false);
        assert!(e.admit(&Value::Str("a".into())).is_ok());
        assert!(e
            .admit(&Value::Str("A".into()))
            .unwrap_err()
            .contains("'A' is not one of"));
        assert_eq!(
            ch_base("LowCardinality(Nullable(String))"),
            ("String", true)
        );
        assert_eq!(
            pg_native("numeric", None, Some(5), Some(2), None),
            "numeric(5,2)"
        );
        assert_eq!(
            pg_native("character varying", Some(3), None, None, None),
            "character varying(3)"
        );
        assert_eq!(
            pg_native("timestamp with time zone", None, None, None, Some(0)),
            "timestamp(0) with time zone"
        );
        assert_eq!(
            pg_native("timestamp without time zone", None, None, None, Some(6)),
            "timestamp without time zone"
        );
    }

    #[test]
    fn narrower_precision_is_named() {
        use DialectKind::*;
        let dec = Dtype::Decimal {
            precision: 12,
            scale: 4,
        };
        assert_eq!(
            keeps_less(Postgres, "timestamp(0) with time zone", Dtype::Datetime).as_deref(),
            Some("keeps whole seconds")
        );
        assert_eq!(
            keeps_less(Postgres, "timestamp with time zone", Dtype::Datetime),
            None
        );
        assert_eq!(
            keeps_less(Mysql, "datetime(3)", Dtype::Datetime).as_deref(),
            Some("keeps 3 fractional digits of a second")
        );
        assert_eq!(
            keeps_less(Mysql, "datetime(1)", Dtype::Datetime).as_deref(),
            Some("keeps 1 fractional digit of a second")
        );
        assert!(keeps_less(Mysql, "datetime", Dtype::Datetime).is_some());
        assert_eq!(keeps_less(Mysql, "datetime(6)", Dtype::Datetime), None);
        assert_eq!(
            keeps_less(Clickhouse, "DateTime('UTC')", Dtype::Datetime),
            None
        );
        assert!(keeps_less(Postgres, "numeric(12,2)", dec).is_some());
        assert_eq!(keeps_less(Mysql, "decimal(14,4)", dec), None);
        assert!(keeps_less(Postgres, "real", Dtype::Float).is_some());
        assert!(keeps_less(Clickhouse, "Nullable(Float32)", Dtype::Float).is_some());
        assert_eq!(keeps_less(Mysql, "double", Dtype::Float), None);
        assert!(keeps_less(Clickhouse, "FixedString(8)", Dtype::Str).is_some());
        assert_eq!(keeps_less(Clickhouse, "FixedString(36)", Dtype::Uuid), None);
        assert_eq!(keeps_less(Clickhouse, "String", Dtype::Str), None);
    }

    fn check(limit: Limit, not_null: bool) -> ColumnCheck {
        ColumnCheck {
            index: 0,
            not_null,
            limit,
            field: None,
            name: "c".into(),
            native: "t".into(),
            bmp_only: false,
            no_nul: false,
            no_nul_escape: false,
        }
    }

    #[test]
    fn jsonb_refuses_a_nul_escape_only() {
        let doc = |t: &str| {
            Value::Json(std::sync::Arc::new(
                crate::expr::value::Json::from_text(t).unwrap(),
            ))
        };
        let jsonb = ColumnCheck {
            no_nul_escape: true,
            native: "jsonb".into(),
            ..check(Limit::None, false)
        };
        for ok in [
            r#"{"a": "b"}"#,
            r#"{"a": "\\u0000"}"#,
            r#"["\\", "u0000"]"#,
            r#"{"a": "\u0001"}"#,
        ] {
            assert!(jsonb.admit(&doc(ok)).is_ok(), "{ok}");
        }
        for bad in [
            r#"{"a": "x\u0000y"}"#,
            r#"{"\u0000": 1}"#,
            r#"["\\\u0000"]"#,
        ] {
            assert_eq!(
                jsonb.admit(&doc(bad)).unwrap_err(),
                "a JSON document with a NUL character (\\u0000), which PostgreSQL's jsonb cannot hold",
                "{bad}"
            );
        }
    }

    #[test]
    fn postgres_text_refuses_a_nul_and_mysql_dates_their_years() {
        let text = ColumnCheck {
            no_nul: true,
            native: "text".into(),
            ..check(Limit::None, false)
        };
        assert!(text.admit(&Value::Str("a\tb".into())).is_ok());
        assert_eq!(
            text.admit(&Value::Str("a\0b".into())).unwrap_err(),
            "text with a NUL character (\\0), which PostgreSQL's text cannot hold"
        );
        let date = check(limit_of(DialectKind::Mysql, "date"), false);
        let day = |y| Value::Date(chrono::NaiveDate::from_ymd_opt(y, 1, 1).unwrap());
        assert!(date.admit(&day(1)).is_ok());
        assert!(date.admit(&day(9999)).is_ok());
        assert!(date
            .admit(&day(-4712))
            .unwrap_err()
            .contains("(years 0 to 9999)"));
    }

    #[test]
    fn clickhouse_dates_and_times_are_checked_against_their_range() {
        use chrono::NaiveDate;
        let day = |y, m, d| Value::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap());
        let date = check(limit_of(DialectKind::Clickhouse, "Nullable(Date)"), false);
        assert!(date.admit(&day(2000, 1, 1)).is_ok());
        let err = date.admit(&day(1900, 1, 1)).unwrap_err();
        assert!(err.contains("outside ClickHouse Date's range"), "{err}");
        let time = check(limit_of(DialectKind::Clickhouse, "DateTime('UTC')"), false);
        let at = |y| {
            Value::Datetime(
                NaiveDate::from_ymd_opt(y, 6, 1)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap(),
            )
        };
        assert!(time.admit(&at(2020)).is_ok());
        assert!(time.admit(&at(1960)).is_err());
        assert!(time.admit(&at(2200)).is_err());
        assert!(time.admit(&Value::Null).is_ok());
    }

    #[test]
    fn checks_admit_what_fits_and_refuse_the_rest() {
        let c = check(Limit::Chars(3), true);
        assert!(c.admit(&Value::Str("héé".into())).is_ok());
        assert!(c.admit(&Value::Str("abcd".into())).is_err());
        assert!(c.admit(&Value::Null).unwrap_err().contains("NOT NULL"));
        assert!(check(Limit::Chars(3), false).admit(&Value::Null).is_ok());
        let b = check(Limit::Bytes(3), false);
        assert!(b.admit(&Value::Str("hé".into())).is_ok());
        assert!(b.admit(&Value::Str("héé".into())).is_err());
        let i = check(int_range(16, false), false);
        assert!(i.admit(&Value::Int(32_767)).is_ok());
        assert!(i.admit(&Value::Int(32_768)).is_err());
        assert!(i.admit(&Value::Int(-32_768)).is_ok());
        let u = check(int_range(64, true), false);
        assert!(u.admit(&Value::Int(i64::MAX)).is_ok());
        assert!(u.admit(&Value::Int(-1)).is_err());
        let d = check(
            Limit::Decimal {
                precision: 5,
                scale: 2,
            },
            false,
        );
        let dec = |m, s| Value::Decimal(Decimal::new(m, s).unwrap());
        assert!(d.admit(&dec(99_999, 2)).is_ok());
        assert!(d.admit(&dec(-99_999, 2)).is_ok());
        assert!(d.admit(&dec(100_000, 2)).is_err());
        // Extra digits after the point are the database's to round.
        assert!(d.admit(&dec(9_999_999, 4)).is_ok());
        assert!(d.admit(&Value::Int(999)).is_ok());
        assert!(d.admit(&Value::Int(1000)).is_err());
        let f = check(Limit::Finite, false);
        assert!(f.admit(&Value::Float(-1.5e300)).is_ok());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = f.admit(&Value::Float(bad)).unwrap_err();
            assert!(e.contains("no NaN or infinity"), "{e}");
        }
    }
}
