//! The randomised differential test of `recon_fuzz`, over the reconciliation features a plain
//! copy leaves out: transformed sinks (expressions, `TMPL(...)` templates, `track: false`,
//! a stored `hash_column`), sources with joins (inner and left, the joined table changing
//! too) and filters (rows moving in and out), two pipelines sharing one sink table under
//! sink `filters`, a `sinkstate` table, Redis enrichment whose values change between rounds,
//! and composite `unique_key`s under `hash_md5_hash` with `source_order_column`.
//!
//! Each case runs rounds of random changes; after each, `apply -r r` must leave in the sink
//! exactly what the test computes from its model of the source (read directly from the
//! sink table), `plan --exit-code` must find nothing and a second `apply` write nothing.
//! The seed is printed; `RECON_FUZZ_SEED=<u64>` overrides it.

use crate::support::rng::{self, Rng};
use crate::support::{self, assert_same, drop_table, exec, live_rows_from, n};
use crate::support::{dbs, sink_read, str_lit, tsv_value, write_config, Db, Dbs, Row};
use std::collections::BTreeMap;

/// The feature a case exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feature {
    /// Sink fields computed by expressions and a template, a `track: false` copy, and the
    /// row hash stored in the sink.
    Transform,
    /// A joined dimension table (`inner` when true, else `left`) whose labels change.
    Join { inner: bool },
    /// A source filter `a >= 0` that updates move rows across.
    Filter,
    /// Two source tables into one sink table, each pipeline owning the rows of its
    /// `region` through sink `filters`, with `allow_delete`.
    SinkFilters,
    /// A `sinkstate` table (key, partition, hash) that the test keeps current from the
    /// sink's stored hashes after each apply.
    SinkState,
    /// A Redis lookup keyed by the row's `grp`, feeding a sink field; the stored hash.
    Redis,
}

#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    feature: Feature,
    src: Db,
    sink: Db,
    merge: &'static str,
    strategy: &'static str,
    /// `unique_key: [id, k2]` (many rows per partition value `id`).
    composite: bool,
    interval: i64,
    max_block: u32,
    factor: u32,
    rounds: usize,
    seed: u64,
}

/// One source row after its key.
#[derive(Debug, Clone, PartialEq)]
struct R {
    grp: Option<i64>,
    a: Option<i64>,
    s: Option<String>,
    note: Option<String>,
}

/// `(id, k2)`; `k2` is 0 unless the key is composite.
type K = (i64, i64);

const TEXTS: [&str; 16] = [
    "",
    "plain",
    "N",
    "\\N",
    "a|b",
    "tab\there",
    "line\nbreak",
    "it's \"q\"",
    "naïve café",
    "日本語",
    "🚀✓",
    "trailing ",
    "0",
    "{{ x }}",
    "Straße ǅ ﬁ",
    "İSTANBUL ΣΑΣ",
];

/// A dimension value that stands for a Redis key holding a hash, whose lookups fail.
const WRONGTYPE: &str = "\u{0}wrongtype";

/// How many dimension rows / Redis keys there are (`grp` values `0..GROUPS`, and some
/// beyond, which match none).
const GROUPS: i64 = 6;

struct Fuzz {
    case: Case,
    rng: Rng,
    /// Per source table (two for [`Feature::SinkFilters`]): what it holds.
    model: Vec<BTreeMap<K, R>>,
    /// The dimension table (`gid -> label`) or the Redis values (`grp -> value`).
    dim: BTreeMap<i64, Option<String>>,
    /// The values the sink got for untracked or looked-up columns when each row was last
    /// written: `(table index, key) -> (note, looked-up value)`.
    written: BTreeMap<(usize, K), (Option<String>, Option<String>)>,
    /// The source rows as the sink last got them (tracked values), to know which rows a
    /// run writes.
    last: Vec<BTreeMap<K, R>>,
    /// The dimension as it was at the last apply.
    last_dim: BTreeMap<i64, Option<String>>,
    /// Rows whose lookup failed when last written: drift until one succeeds.
    failed: std::collections::BTreeSet<(usize, K)>,
    src_tables: Vec<String>,
    dim_table: String,
    sink_table: String,
    state_table: String,
    redis_prefix: String,
    next_id: i64,
}

impl Fuzz {
    fn new(case: Case) -> Fuzz {
        let seed = rng::seed(
            "RECON_FUZZ_SEED",
            case.seed,
            &format!("recon_fuzz_features {}", case.name),
        );
        let prefix = format!("rff_{}", case.name);
        let tables = if case.feature == Feature::SinkFilters {
            2
        } else {
            1
        };
        Fuzz {
            src_tables: (0..tables)
                .map(|i| support::unique(&format!("{prefix}_s{i}")))
                .collect(),
            dim_table: support::unique(&format!("{prefix}_d")),
            sink_table: support::unique(&format!("{prefix}_k")),
            state_table: support::unique(&format!("{prefix}_st")),
            redis_prefix: format!("{}:", support::unique(&prefix)),
            rng: Rng::new(seed),
            model: vec![BTreeMap::new(); tables],
            dim: BTreeMap::new(),
            written: BTreeMap::new(),
            last: vec![BTreeMap::new(); tables],
            last_dim: BTreeMap::new(),
            failed: std::collections::BTreeSet::new(),
            case,
            next_id: 0,
        }
    }

    fn text(&mut self) -> Option<String> {
        if self.rng.chance(15) {
            return None;
        }
        let mut s = self.rng.pick(&TEXTS).to_string();
        if self.rng.chance(40) {
            s.push_str(&format!(" #{}", self.rng.below(100)));
        }
        Some(s)
    }

    fn small(&mut self) -> Option<i64> {
        if self.rng.chance(12) {
            None
        } else {
            Some(self.rng.range(-60, 60))
        }
    }

    fn grp(&mut self) -> Option<i64> {
        if self.rng.chance(10) {
            None
        } else {
            Some(self.rng.range(0, GROUPS + 1))
        }
    }

    fn new_row(&mut self) -> R {
        R {
            grp: self.grp(),
            a: self.small(),
            s: self.text(),
            note: self.text(),
        }
    }

    fn new_key(&mut self, t: usize) -> K {
        loop {
            let id = match self.rng.below(5) {
                0..=2 => {
                    self.next_id += 1;
                    self.next_id
                }
                3 => {
                    self.next_id += self.rng.range(20, 400);
                    self.next_id
                }
                _ => self.rng.range(-20, self.next_id.max(1)),
            };
            let k2 = if self.case.composite {
                self.rng.range(-3, 40)
            } else {
                0
            };
            if !self.model[t].contains_key(&(id, k2)) {
                return (id, k2);
            }
        }
    }

    fn dim_value(&mut self) -> Option<String> {
        if self.rng.chance(15) {
            None
        } else if self.case.feature == Feature::Redis && self.rng.chance(15) {
            // A Redis key of another type: its lookups fail (`WRONGTYPE`).
            Some(WRONGTYPE.to_string())
        } else {
            Some(format!("{}{}", self.rng.pick(&TEXTS), self.rng.below(50)))
        }
    }

    // ---- changes ------------------------------------------------------------------------

    /// One round of random changes to the model; returns what changed, and the keys per
    /// table whose source rows must be rewritten.
    fn change(&mut self, round: usize) -> (String, Vec<Vec<K>>) {
        let tables = self.model.len();
        let mut touched: Vec<Vec<K>> = vec![Vec::new(); tables];
        let mut what = Vec::new();
        if round == 0 {
            for g in 0..GROUPS {
                if g != 3 {
                    let v = self.dim_value();
                    self.dim.insert(g, v);
                }
            }
        }
        for (t, keys_touched) in touched.iter_mut().enumerate() {
            let inserts = if round == 0 {
                self.rng.range(20, 70) as usize
            } else {
                self.rng.range(0, 12) as usize
            };
            for _ in 0..inserts {
                let k = self.new_key(t);
                let r = self.new_row();
                self.model[t].insert(k, r);
                keys_touched.push(k);
            }
            let keys: Vec<K> = self.model[t].keys().copied().collect();
            let mut updates = 0;
            let mut notes = 0;
            let mut deletes = 0;
            if round > 0 && !keys.is_empty() {
                for _ in 0..self.rng.range(0, 10) {
                    let k = self.rng.pick(&keys);
                    let new = self.new_row();
                    let r = self.model[t].get_mut(&k).expect("row");
                    match self.rng.below(6) {
                        0 => r.grp = new.grp,
                        1 | 2 => r.a = new.a,
                        3 => r.s = new.s,
                        4 => {
                            // An untracked column alone.
                            r.note = new.note;
                            notes += 1;
                        }
                        _ => *r = new,
                    }
                    updates += 1;
                    keys_touched.push(k);
                }
                for _ in 0..self.rng.range(0, 4) {
                    let k = self.rng.pick(&keys);
                    if self.model[t].remove(&k).is_some() {
                        deletes += 1;
                        keys_touched.push(k);
                    }
                }
            }
            what.push(format!(
                "table {t}: {inserts} inserts, {updates} updates ({notes} of note), \
                 {deletes} deletes"
            ));
        }
        if round > 0 && matches!(self.case.feature, Feature::Join { .. } | Feature::Redis) {
            let mut dims = 0;
            for _ in 0..self.rng.range(0, 3) {
                let g = self.rng.range(0, GROUPS + 1);
                if self.rng.chance(20) {
                    self.dim.remove(&g);
                } else {
                    let v = self.dim_value();
                    self.dim.insert(g, v);
                }
                dims += 1;
            }
            what.push(format!("{dims} dimension changes"));
        }
        touched.iter_mut().for_each(|v| {
            v.sort();
            v.dedup()
        });
        (what.join("; "), touched)
    }

    async fn write_changes(&mut self, dbs: &mut Dbs, touched: &[Vec<K>]) {
        let db = self.case.src;
        for (t, keys) in touched.iter().enumerate() {
            let table = self.src_tables[t].clone();
            if db == Db::Ch {
                // ClickHouse 18.16 has no DELETE: the table is written again whole.
                exec(dbs, db, &format!("TRUNCATE TABLE {table}")).await;
                let all: Vec<K> = self.model[t].keys().copied().collect();
                for chunk in all.chunks(500) {
                    let rows: Vec<String> = chunk.iter().map(|k| self.row_lit(db, t, k)).collect();
                    exec(
                        dbs,
                        db,
                        &format!("INSERT INTO {table} VALUES {}", rows.join(", ")),
                    )
                    .await;
                }
                continue;
            }
            for chunk in keys.chunks(50) {
                if chunk.is_empty() {
                    continue;
                }
                let cond = chunk
                    .iter()
                    .map(|(id, k2)| format!("(id = {id} AND k2 = {k2})"))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                exec(dbs, db, &format!("DELETE FROM {table} WHERE {cond}")).await;
                let rows: Vec<String> = chunk
                    .iter()
                    .filter(|k| self.model[t].contains_key(k))
                    .map(|k| self.row_lit(db, t, k))
                    .collect();
                if !rows.is_empty() {
                    exec(
                        dbs,
                        db,
                        &format!("INSERT INTO {table} VALUES {}", rows.join(", ")),
                    )
                    .await;
                }
            }
        }
        match self.case.feature {
            Feature::Join { .. } => {
                let clear = if db == Db::Ch {
                    "TRUNCATE TABLE"
                } else {
                    "DELETE FROM"
                };
                exec(dbs, db, &format!("{clear} {}", self.dim_table)).await;
                let rows: Vec<String> = self
                    .dim
                    .iter()
                    .map(|(g, l)| format!("({g}, {})", opt_str(db, l)))
                    .collect();
                if !rows.is_empty() {
                    exec(
                        dbs,
                        db,
                        &format!("INSERT INTO {} VALUES {}", self.dim_table, rows.join(", ")),
                    )
                    .await;
                }
            }
            Feature::Redis => {
                let mut c = redis_conn().await;
                for g in 0..=GROUPS + 1 {
                    let key = format!("{}{g}", self.redis_prefix);
                    let _: () = redis::cmd("DEL")
                        .arg(&key)
                        .query_async(&mut c)
                        .await
                        .expect("redis DEL");
                    match self.dim.get(&g) {
                        Some(Some(v)) if v == WRONGTYPE => redis::cmd("HSET")
                            .arg(&key)
                            .arg("f")
                            .arg("v")
                            .query_async::<()>(&mut c)
                            .await
                            .expect("redis HSET"),
                        Some(Some(v)) => redis::cmd("SET")
                            .arg(&key)
                            .arg(v)
                            .query_async::<()>(&mut c)
                            .await
                            .expect("redis SET"),
                        _ => redis::cmd("DEL")
                            .arg(&key)
                            .query_async::<()>(&mut c)
                            .await
                            .expect("redis DEL"),
                    }
                }
            }
            _ => {}
        }
    }

    /// The `VALUES` tuple of the model's row `k` of table `t`.
    fn row_lit(&self, db: Db, t: usize, k: &K) -> String {
        let r = &self.model[t][k];
        format!(
            "({}, {}, {}, {}, {}, {})",
            k.0,
            k.1,
            opt_int(r.grp),
            opt_int(r.a),
            opt_str(db, &r.s),
            opt_str(db, &r.note)
        )
    }

    fn create_tables(&self) -> Vec<String> {
        let db = self.case.src;
        let mut out = Vec::new();
        for t in &self.src_tables {
            out.push(match db {
                Db::Pg => format!(
                    "CREATE TABLE {t} (id bigint, k2 bigint, grp bigint, a bigint, s text, \
                     note text, PRIMARY KEY (id, k2))"
                ),
                Db::My => format!(
                    "CREATE TABLE {t} (id bigint, k2 bigint, grp bigint, a bigint, s longtext, \
                     note longtext, PRIMARY KEY (id, k2)) CHARACTER SET utf8mb4"
                ),
                Db::Ch => format!(
                    "CREATE TABLE {t} (id Int64, k2 Int64, grp Nullable(Int64), \
                     a Nullable(Int64), s Nullable(String), note Nullable(String)) \
                     ENGINE = MergeTree ORDER BY (id, k2)"
                ),
            });
        }
        if matches!(self.case.feature, Feature::Join { .. }) {
            let d = &self.dim_table;
            out.push(match db {
                Db::Pg => format!("CREATE TABLE {d} (gid bigint PRIMARY KEY, label text)"),
                Db::My => format!(
                    "CREATE TABLE {d} (gid bigint PRIMARY KEY, label longtext) \
                     CHARACTER SET utf8mb4"
                ),
                Db::Ch => format!(
                    "CREATE TABLE {d} (gid Int64, label Nullable(String)) \
                     ENGINE = MergeTree ORDER BY gid"
                ),
            });
        }
        out
    }

    // ---- the expected sink --------------------------------------------------------------

    /// The sink columns the test reads after the key columns.
    fn value_columns(&self) -> &'static [&'static str] {
        match self.case.feature {
            Feature::Transform => &["a2", "t", "c", "ln", "fd", "md", "co", "cc", "tu", "note"],
            Feature::Join { .. } => &["a", "s", "label"],
            Feature::Filter | Feature::SinkState => &["a", "s"],
            Feature::SinkFilters => &["region", "a", "s"],
            Feature::Redis => &["s", "seg"],
        }
    }

    fn key_columns(&self) -> &'static [&'static str] {
        if self.case.composite {
            &["id", "k2"]
        } else {
            &["id"]
        }
    }

    /// Whether the source row `r` reaches the sink.
    fn passes(&self, r: &R) -> bool {
        match self.case.feature {
            Feature::Filter => r.a.is_some_and(|a| a >= 0),
            Feature::Join { inner: true } => r.grp.is_some_and(|g| self.dim.contains_key(&g)),
            _ => true,
        }
    }

    fn label(&self, r: &R) -> Option<String> {
        r.grp.and_then(|g| self.dim.get(&g).cloned().flatten())
    }

    /// The tracked values of a row as the sink compares them (what makes a row drift).
    fn tracked(&self, r: &R) -> (Option<i64>, Option<i64>, Option<String>, Option<String>) {
        match self.case.feature {
            Feature::Transform => (None, r.a, r.s.clone(), None),
            Feature::Redis => (r.grp, None, r.s.clone(), None),
            Feature::Join { .. } => (None, r.a, r.s.clone(), self.label(r)),
            _ => (r.grp, r.a, r.s.clone(), r.note.clone()),
        }
    }

    /// After an apply: the untracked / looked-up values of the rows it wrote.
    fn record_apply(&mut self) {
        let last_dim = self.last_dim.clone();
        for t in 0..self.model.len() {
            let keys: Vec<K> = self.model[t].keys().copied().collect();
            for k in keys {
                let r = self.model[t][&k].clone();
                let changed = match self.last[t].get(&k) {
                    None => true,
                    Some(old) => {
                        let saved = std::mem::replace(&mut self.dim, last_dim.clone());
                        let before = self.tracked(old);
                        self.dim = saved;
                        before != self.tracked(&r)
                    }
                };
                if changed || self.failed.contains(&(t, k)) {
                    let seg = r.grp.and_then(|g| self.dim.get(&g).cloned().flatten());
                    if seg.as_deref() == Some(WRONGTYPE) {
                        // Written with a NULL output and a flipped stored hash: drift until
                        // a lookup succeeds (README, `on_error: null`).
                        self.failed.insert((t, k));
                        self.written.insert((t, k), (r.note.clone(), None));
                    } else {
                        self.failed.remove(&(t, k));
                        self.written.insert((t, k), (r.note.clone(), seg));
                    }
                }
            }
            self.written
                .retain(|(tt, k), _| *tt != t || self.model[t].contains_key(k));
            let model = &self.model;
            self.failed.retain(|(tt, k)| model[*tt].contains_key(k));
            self.last[t] = self.model[t].clone();
        }
        self.last_dim = self.dim.clone();
    }

    fn expected(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for (t, m) in self.model.iter().enumerate() {
            for (k, r) in m {
                if !self.passes(r) {
                    continue;
                }
                let key = self.key_text(t, k);
                let i = |v: Option<i64>| v.map(|v| v.to_string());
                let vals: Vec<Option<String>> = match self.case.feature {
                    Feature::Transform => {
                        let (note, _) = self.written.get(&(t, *k)).cloned().unwrap_or_default();
                        vec![
                            i(r.a.map(|a| a * 2)),
                            match (&r.s, r.a) {
                                (Some(s), Some(a)) => Some(format!("{s}:{a}")),
                                _ => None,
                            },
                            Some(r.a.filter(|a| *a > 0).map_or(0, |a| a + 1).to_string()),
                            i(r.s.as_ref().map(|s| s.chars().count() as i64)),
                            i(r.a.map(|a| a.div_euclid(7))),
                            i(r.a.map(|a| a.rem_euclid(7))),
                            Some(format!("{}!", r.s.as_deref().unwrap_or("-"))),
                            r.s.as_ref().map(|s| format!("{s}|{s}")),
                            Some(r.s.as_ref().map_or("-".into(), |s| s.to_uppercase())),
                            note,
                        ]
                    }
                    Feature::Join { .. } => vec![i(r.a), r.s.clone(), self.label(r)],
                    Feature::Filter | Feature::SinkState => vec![i(r.a), r.s.clone()],
                    Feature::SinkFilters => {
                        vec![Some(["eu", "us"][t].to_string()), i(r.a), r.s.clone()]
                    }
                    Feature::Redis => {
                        let (_, seg) = self.written.get(&(t, *k)).cloned().unwrap_or_default();
                        vec![r.s.clone(), seg]
                    }
                };
                let mut row = vec![Some(key)];
                row.extend(vals);
                rows.push(row);
            }
        }
        rows.sort();
        rows
    }

    fn key_text(&self, t: usize, (id, k2): &K) -> String {
        let region = if self.case.feature == Feature::SinkFilters {
            format!("{}/", ["eu", "us"][t])
        } else {
            String::new()
        };
        if self.case.composite {
            format!("{region}{id}/{k2}")
        } else {
            format!("{region}{id}")
        }
    }

    async fn read_sink(&self, dbs: &mut Dbs) -> Vec<Row> {
        let db = self.case.sink;
        let mut cols: Vec<&str> = Vec::new();
        if self.case.feature == Feature::SinkFilters {
            cols.push("region");
        }
        cols.extend(self.key_columns());
        cols.extend(self.value_columns());
        let how = sink_read(db, self.case.merge);
        let list = cols.join(", ");
        let from = live_rows_from(db, &self.sink_table, &list, how);
        let text = |c: &str| match db {
            Db::Pg => format!("{c}::text"),
            Db::My => format!("CAST({c} AS CHAR)"),
            Db::Ch => format!("toString({c})"),
        };
        let sel = cols.iter().map(|c| text(c)).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {sel} FROM {from}");
        let raw: Vec<Row> = match db {
            Db::Pg => support::pg_rows(&dbs.pg, &sql, &[]).await,
            Db::My => support::mysql_rows(&mut dbs.my, &sql, mysql_async::Params::Empty).await,
            Db::Ch => dbs
                .ch
                .exec(&format!("{sql} FORMAT TabSeparated"))
                .await
                .lines()
                .map(|l| l.split('\t').map(tsv_value).collect())
                .collect(),
        };
        let keys =
            self.key_columns().len() + usize::from(self.case.feature == Feature::SinkFilters);
        let mut rows: Vec<Row> = raw
            .into_iter()
            .map(|r| {
                let key = r[..keys]
                    .iter()
                    .map(|v| v.clone().unwrap_or_else(|| "NULL".into()))
                    .collect::<Vec<_>>()
                    .join("/");
                let mut row = vec![Some(key)];
                row.extend(r[keys..].iter().cloned());
                row
            })
            .collect();
        rows.sort();
        rows
    }

    /// Keeps the `sinkstate` table current from the sink's stored hashes.
    async fn refresh_state(&self, dbs: &mut Dbs) {
        let db = self.case.sink;
        let (st, sink) = (&self.state_table, &self.sink_table);
        exec(dbs, db, &format!("DELETE FROM {st}")).await;
        exec(
            dbs,
            db,
            &format!("INSERT INTO {st} (id, p, h) SELECT id, id, h FROM {sink}"),
        )
        .await;
    }

    fn create_state(&self) -> String {
        let st = &self.state_table;
        match self.case.sink {
            Db::Pg => format!("CREATE TABLE {st} (id bigint PRIMARY KEY, p bigint, h bigint)"),
            Db::My => format!("CREATE TABLE {st} (id bigint PRIMARY KEY, p bigint, h bigint)"),
            Db::Ch => panic!("sinkstate cases use a PostgreSQL or MariaDB sink"),
        }
    }

    // ---- the config ---------------------------------------------------------------------

    fn config(&self) -> String {
        let c = &self.case;
        let order = if c.strategy == "hash_md5_hash" {
            "\n        source_order_column: id"
        } else {
            ""
        };
        let recon = format!(
            "    reconciliation:
      - name: r
        strategy: {}
        partition_column: id
        partition_column_type: int{order}
        initial_partition_interval: {}
        max_block_size: {}
        interval_reduction_factor: {}
",
            c.strategy, c.interval, c.max_block, c.factor
        );
        let unique_key = if c.composite { "[id, k2]" } else { "[id]" };
        let k2_source = if c.composite {
            "        - {column: t.k2, dtype: int, alias: k2}\n"
        } else {
            ""
        };
        let k2_sink = if c.composite {
            "        - {column: k2, source_column: k2}\n"
        } else {
            ""
        };
        let src = c.src.store();
        let sink = c.sink.store();
        let sink_table = &self.sink_table;
        let mut pipelines = String::new();
        for (t, table) in self.src_tables.iter().enumerate() {
            let mut source_extra = String::new();
            let mut source_fields = String::from(
                "        - {column: t.id, dtype: int, alias: id}
        - {column: t.grp, dtype: int, alias: grp}
        - {column: t.a, dtype: int, alias: a}
        - {column: t.s, dtype: str, alias: s}
        - {column: t.note, dtype: str, alias: note}
",
            );
            source_fields.push_str(k2_source);
            let mut sink_extra = String::new();
            let mut rest = String::new();
            let sink_fields = match c.feature {
                Feature::Transform => {
                    sink_extra.push_str("      meta_columns: {hash_column: h}\n");
                    "        - {column: a2, dtype: int, source_column: 'lambda r: r[\"a\"] * 2'}
        - {column: t, dtype: str, source_column: 'TMPL({{ s }}:{{ a }})'}
        - {column: c, dtype: int, source_column: 'lambda r: r[\"a\"] + 1 if r[\"a\"] > 0 else 0'}
        - {column: ln, dtype: int, source_column: 'len(s)'}
        - {column: fd, dtype: int, source_column: 'a // 7'}
        - {column: md, dtype: int, source_column: 'a % 7'}
        - {column: co, dtype: str, source_column: 'coalesce(s, \"-\") + \"!\"'}
        - {column: cc, dtype: str, source_column: 'concat(s, \"|\", s)'}
        - {column: tu, dtype: str, source_column: 'TMPL({% if s is not none %}{{ s|upper }}{% else %}-{% endif %})'}
        - {column: note, source_column: note, track: false}
"
                    .to_string()
                }
                Feature::Join { inner } => {
                    let kind = if inner { "inner" } else { "left" };
                    source_extra.push_str(&format!(
                        "      joins:\n        - {{table: {}, alias: d, type: {kind}, \
                         on: \"t.grp = d.gid\"}}\n",
                        self.dim_table
                    ));
                    source_fields.push_str("        - {column: d.label, dtype: str}\n");
                    "        - {column: a, source_column: a}
        - {column: s, source_column: s}
        - {column: label, source_column: d__label}
"
                    .to_string()
                }
                Feature::Filter => {
                    source_extra.push_str(
                        "      filters:\n        - {column: t.a, operator: \">=\", value: 0}\n",
                    );
                    "        - {column: a, source_column: a}
        - {column: s, source_column: s}
"
                    .to_string()
                }
                Feature::SinkFilters => {
                    let region = ["eu", "us"][t];
                    sink_extra.push_str(&format!(
                        "      filters:\n        - {{column: region, operator: \"=\", \
                         value: {region}}}\n"
                    ));
                    format!(
                        "        - {{column: region, dtype: str, source_column: 'lambda: \"{region}\"'}}
        - {{column: a, source_column: a}}
        - {{column: s, source_column: s}}
"
                    )
                }
                Feature::SinkState => {
                    sink_extra.push_str("      meta_columns: {hash_column: h}\n");
                    rest.push_str(&format!(
                        "    sinkstate: {{datastore: {sink}, table: {}, partition_column: p, \
                         hash_column: h}}\n",
                        self.state_table
                    ));
                    "        - {column: a, source_column: a}
        - {column: s, source_column: s}
"
                    .to_string()
                }
                Feature::Redis => {
                    sink_extra.push_str("      meta_columns: {hash_column: h}\n");
                    rest.push_str(&format!(
                        "    enrichment:
      - {{externalstore: cache, name: seg, key_template: \"{}{{{{ grp }}}}\", on_error: null}}
",
                        self.redis_prefix
                    ));
                    "        - {column: s, source_column: s}
        - {column: seg, dtype: str, source: seg}
"
                    .to_string()
                }
            };
            let unique_key = if c.feature == Feature::SinkFilters {
                "[region, id]"
            } else {
                unique_key
            };
            let key_sink = "        - {column: id, source_column: id}\n";
            pipelines.push_str(&format!(
                "  - name: p{t}
    source:
      datastore: {src}
      table: {{table: {table}, alias: t}}
      batch_size: 16
{source_extra}      fields:
{source_fields}    sink:
      datastore: {sink}
      table: {sink_table}
      batch_size: 16
      merge_strategy: {{strategy: {}, allow_delete: true}}
      unique_key: {unique_key}
{sink_extra}      fields:
{key_sink}{k2_sink}{sink_fields}{rest}{recon}",
                c.merge
            ));
        }
        format!(
            "datastores:
  - {}
  - {}
  - {}
externalstores:
  - {{name: cache, type: redis, host: 127.0.0.1, port: 6379, db: 0}}
pipelines:
{pipelines}",
            support::PG,
            support::MY,
            support::CH
        )
    }
}

fn opt_int(v: Option<i64>) -> String {
    v.map_or_else(|| "NULL".into(), |v| v.to_string())
}

fn opt_str(db: Db, v: &Option<String>) -> String {
    v.as_deref()
        .map_or_else(|| "NULL".into(), |s| str_lit(db, s))
}

async fn redis_conn() -> redis::aio::MultiplexedConnection {
    redis::Client::open("redis://127.0.0.1:6379/0")
        .expect("redis URL")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis must run on 127.0.0.1:6379: {e}; {}",
                support::START_HINT
            )
        })
}

/// Sums a count over every pipeline of a JSON report.
fn total(cfg: &std::path::Path, args: &[&str], what: &str) -> (i64, i64) {
    total_code(cfg, args, 0, what)
}

/// [`total`], expecting exit code `code`.
fn total_code(cfg: &std::path::Path, args: &[&str], code: i32, what: &str) -> (i64, i64) {
    support::run_json_all(cfg, args, code, what)
        .iter()
        .fold((0, 0), |(w, d), p| {
            (w + n(p, "rows_written"), d + n(p, "rows_deleted"))
        })
}

async fn fuzz(case: Case) {
    let started = std::time::Instant::now();
    let mut dbs = dbs().await;
    let mut f = Fuzz::new(case);
    let (src, sink) = (f.case.src, f.case.sink);
    for sql in f.create_tables() {
        exec(&mut dbs, src, &sql).await;
    }
    if f.case.feature == Feature::SinkState {
        exec(&mut dbs, sink, &f.create_state()).await;
    }
    let cfg = write_config(&f.config());
    for round in 0..f.case.rounds {
        let (change, touched) = f.change(round);
        f.write_changes(&mut dbs, &touched).await;
        let what = format!(
            "recon_fuzz_features {} ({:?} -> {:?}, {}, {}, {:?}), round {round}: {change}",
            f.case.name, src, sink, f.case.merge, f.case.strategy, f.case.feature
        );
        eprintln!("{what}");
        let plan = (round > 0).then(|| total(&cfg, &["plan", "-r", "r"], &what));
        let applied = total(&cfg, &["apply", "-r", "r"], &what);
        f.record_apply();
        if f.case.feature == Feature::SinkState {
            if applied != (0, 0) {
                // The state table lags what this apply wrote: that is drift (README), which
                // shows that reconciliation reads the state table, not the sink.
                let lagging = total(&cfg, &["plan", "-r", "r"], &what);
                assert_ne!(lagging, (0, 0), "{what}: plan over a lagging sinkstate");
            }
            f.refresh_state(&mut dbs).await;
        }
        let got = f.read_sink(&mut dbs).await;
        assert_same(
            &format!("{what}: the sink after apply {applied:?}"),
            &got,
            &f.expected(),
        );
        if let Some(plan) = plan {
            assert_eq!(plan, applied, "{what}: plan and apply count alike");
        }
        // Rows whose lookup failed stay drift: each run looks them up and writes them again.
        let dirty = f.failed.len() as i64;
        if dirty > 0 {
            eprintln!("{what}: {dirty} rows with a failed lookup");
        }
        let code = if dirty > 0 { 3 } else { 0 };
        let r = total_code(&cfg, &["plan", "--exit-code", "-r", "r"], code, &what);
        assert_eq!(r, (dirty, 0), "{what}: plan after apply");
        let r = total(&cfg, &["apply", "-r", "r"], &what);
        assert_eq!(r, (dirty, 0), "{what}: a second apply");
    }
    for t in f.src_tables.clone() {
        drop_table(&mut dbs, src, &t).await;
    }
    drop_table(&mut dbs, src, &f.dim_table.clone()).await;
    drop_table(&mut dbs, sink, &f.sink_table.clone()).await;
    if f.case.feature == Feature::SinkState {
        drop_table(&mut dbs, sink, &f.state_table.clone()).await;
    }
    if f.case.feature == Feature::Redis {
        let mut c = redis_conn().await;
        for g in 0..=GROUPS + 1 {
            let _: () = redis::cmd("DEL")
                .arg(format!("{}{g}", f.redis_prefix))
                .query_async(&mut c)
                .await
                .expect("redis DEL");
        }
    }
    eprintln!(
        "recon_fuzz_features {}: {} rounds in {:.1} s",
        f.case.name,
        f.case.rounds,
        started.elapsed().as_secs_f64()
    );
}

fn case(name: &'static str, feature: Feature, src: Db, sink: Db, merge: &'static str) -> Case {
    Case {
        name,
        feature,
        src,
        sink,
        merge,
        strategy: "md5sum_hash",
        composite: false,
        interval: 64,
        max_block: 6,
        factor: 4,
        rounds: 5,
        seed: rng::name_seed(0xFEA7_5EED, name),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_transform_pg_to_mariadb_upsert() {
    fuzz(case(
        "tr_pg_my",
        Feature::Transform,
        Db::Pg,
        Db::My,
        "upsert",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_transform_composite_hash_md5_pg_to_clickhouse_collapse() {
    fuzz(Case {
        composite: true,
        strategy: "hash_md5_hash",
        factor: 2,
        ..case("tr_pg_ch", Feature::Transform, Db::Pg, Db::Ch, "collapse")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_transform_mariadb_to_pg_delete_insert() {
    fuzz(case(
        "tr_my_pg",
        Feature::Transform,
        Db::My,
        Db::Pg,
        "delete_insert",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_transform_clickhouse_to_mariadb_upsert_hash_md5() {
    fuzz(Case {
        strategy: "hash_md5_hash",
        ..case("tr_ch_my", Feature::Transform, Db::Ch, Db::My, "upsert")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_left_join_mariadb_to_pg_delete_insert() {
    fuzz(case(
        "lj_my_pg",
        Feature::Join { inner: false },
        Db::My,
        Db::Pg,
        "delete_insert",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_inner_join_composite_pg_to_clickhouse_upsert() {
    fuzz(Case {
        composite: true,
        strategy: "hash_md5_hash",
        ..case(
            "ij_pg_ch",
            Feature::Join { inner: true },
            Db::Pg,
            Db::Ch,
            "upsert",
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_source_filter_pg_to_mariadb_collapse() {
    fuzz(case(
        "fi_pg_my",
        Feature::Filter,
        Db::Pg,
        Db::My,
        "collapse",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_sink_filters_mariadb_to_clickhouse_delete_insert() {
    fuzz(case(
        "sf_my_ch",
        Feature::SinkFilters,
        Db::My,
        Db::Ch,
        "delete_insert",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_sink_filters_pg_to_pg_upsert_hash_md5() {
    fuzz(Case {
        strategy: "hash_md5_hash",
        ..case("sf_pg_pg", Feature::SinkFilters, Db::Pg, Db::Pg, "upsert")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_sinkstate_pg_to_pg_upsert() {
    fuzz(case(
        "ss_pg_pg",
        Feature::SinkState,
        Db::Pg,
        Db::Pg,
        "upsert",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_redis_pg_to_clickhouse_upsert() {
    fuzz(case("rd_pg_ch", Feature::Redis, Db::Pg, Db::Ch, "upsert")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_redis_composite_mariadb_to_pg_upsert_hash_md5() {
    fuzz(Case {
        composite: true,
        strategy: "hash_md5_hash",
        ..case("rd_my_pg", Feature::Redis, Db::My, Db::Pg, "upsert")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_left_join_clickhouse_to_pg_upsert() {
    fuzz(case(
        "lj_ch_pg",
        Feature::Join { inner: false },
        Db::Ch,
        Db::Pg,
        "upsert",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_source_filter_mariadb_to_clickhouse_upsert_hash_md5() {
    fuzz(Case {
        strategy: "hash_md5_hash",
        composite: true,
        ..case("fi_my_ch", Feature::Filter, Db::My, Db::Ch, "upsert")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_features_sinkstate_clickhouse_to_mariadb_delete_insert_hash_md5() {
    fuzz(Case {
        strategy: "hash_md5_hash",
        ..case(
            "ss_ch_my",
            Feature::SinkState,
            Db::Ch,
            Db::My,
            "delete_insert",
        )
    })
    .await;
}
