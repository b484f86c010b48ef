//! A randomised differential test of reconciliation: with a fixed seed per case (printed, and
//! overridden by `RECON_FUZZ_SEED=<u64>` to explore or to reproduce a failure), several
//! rounds of random inserts, updates and deletes on a source table — NULLs, unicode and
//! separator characters in text, key gaps and dense clusters, many rows sharing one
//! partition value, rows moving between blocks when the partition column is not the key, an
//! emptied source, a single row — each followed by `plan` (whose `--show-keys` list must
//! name only keys that changed, each as what it became), `apply -r <recon>`, then a check
//! that the sink holds exactly the source rows (both tables read directly, not through
//! synctool), that `plan --exit-code` finds nothing, and that a second `apply` writes
//! nothing. The cases vary the dialect pair (same-server pairs too), the merge strategy,
//! the reconciliation strategy (`md5sum_hash`, `hash_md5_hash` with small blocks so that
//! the recursion goes several levels deep, `timestamp`) and the partition type (int,
//! datetime, str, uuid).

use crate::support::rng::{self, Rng};
use crate::support::{self, assert_same, drop_table, exec, live_rows_from, n, run_json};
use crate::support::{dbs, sink_read, str_lit, tsv_value, write_config, Db, Dbs, Read, Row};
use std::collections::BTreeMap;

/// The key column `id`'s type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Int,
    Str,
    Uuid,
}

/// What the reconciliation partitions by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The key `id` itself (int, str or uuid by [`Key`]).
    Key,
    /// The `int` column `p`, which updates change (rows move between blocks).
    IntCol,
    /// The `datetime` column `p`, likewise.
    DatetimeCol,
    /// A `timestamp` reconciliation over `ts` (updated_at): inserts and updates, no deletes.
    Updated,
}

/// One fuzz case.
#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    src: Db,
    sink: Db,
    merge: &'static str,
    strategy: &'static str,
    key: Key,
    part: Part,
    /// `initial_partition_interval` (an int, seconds, or a hex-prefix length).
    interval: &'static str,
    max_block: u32,
    factor: u32,
    rounds: usize,
    /// The first run finds the source empty.
    empty_start: bool,
    seed: u64,
}

/// One source row's values after the key. Datetimes are microseconds since the epoch.
#[derive(Debug, Clone, PartialEq)]
struct Vals {
    p: Option<i64>,
    s: Option<String>,
    n: Option<i64>,
    ts: Option<i64>,
}

/// A key as text (an int in decimal, a uuid lower-case).
type K = String;

struct Fuzz {
    case: Case,
    rng: Rng,
    /// The seed `rng` started from.
    seed: u64,
    /// What the source holds.
    model: BTreeMap<K, Vals>,
    src_table: String,
    sink_table: String,
    /// Datetimes in whole seconds (a ClickHouse `DateTime` on either side).
    whole_seconds: bool,
    /// No trailing spaces in text keys (MariaDB compares them away, as documented).
    no_trailing_spaces: bool,
    /// The next dense int key.
    next_id: i64,
    /// The timestamp strategy's clock (microseconds).
    clock: i64,
}

const BASE_2024: i64 = 1_704_067_200; // 2024-01-01 00:00:00 UTC

const TEXTS: [&str; 24] = [
    "",
    "plain",
    "N",
    "\\N",
    "NULL",
    "a|b",
    "|",
    "||",
    "tab\there",
    "line\nbreak",
    "cr\rx",
    "semi;colon,comma",
    "it's \"quoted\"",
    "back\\slash",
    "naïve café",
    "日本語テキスト",
    "🚀✓",
    "e\u{301}",
    "trailing ",
    " leading",
    "\u{1}ctl",
    "Ünïcödé — ключ",
    "0",
    "-0",
];

const KEY_TEXTS: [&str; 20] = [
    "a", "A", "k", "K", "ключ", "日本", "🚀", "a b", "x|y", "N", "\\N", "tab\t", "", "Z", "0",
    "00", "é", "e\u{301}", "a\u{1}", "~",
];

impl Fuzz {
    fn new(case: Case) -> Fuzz {
        let seed = rng::seed(
            "RECON_FUZZ_SEED",
            case.seed,
            &format!("recon_fuzz {}", case.name),
        );
        let whole_seconds = case.src == Db::Ch || case.sink == Db::Ch;
        let no_trailing_spaces = case.src == Db::My || case.sink == Db::My;
        let prefix = format!("rfz_{}", case.name);
        Fuzz {
            src_table: support::unique(&format!("{prefix}_s")),
            sink_table: support::unique(&format!("{prefix}_k")),
            case,
            rng: Rng::new(seed),
            seed,
            model: BTreeMap::new(),
            whole_seconds,
            no_trailing_spaces,
            next_id: 1,
            clock: BASE_2024 * 1_000_000,
        }
    }

    fn what(&self, round: usize) -> String {
        format!(
            "recon_fuzz {} ({:?} -> {:?}, {}, {}, seed {}), round {round}",
            self.case.name,
            self.case.src,
            self.case.sink,
            self.case.merge,
            self.case.strategy,
            self.seed
        )
    }

    fn p_is_datetime(&self) -> bool {
        self.case.part == Part::DatetimeCol
    }

    /// `initial_partition_interval` as a number (a product such as `7*24*60*60` folded).
    fn interval(&self) -> i64 {
        self.case
            .interval
            .split('*')
            .map(|f| f.trim().parse::<i64>().expect("interval factor"))
            .product()
    }

    /// A datetime near `base_secs`, whole seconds where ClickHouse is involved.
    fn datetime(&mut self, base_secs: i64, spread_secs: i64) -> i64 {
        let secs = base_secs + self.rng.range(0, spread_secs.max(0));
        let micros = if self.whole_seconds || self.rng.chance(30) {
            0
        } else {
            self.rng.range(0, 999_999)
        };
        secs * 1_000_000 + micros
    }

    fn text(&mut self) -> Option<String> {
        if self.rng.chance(15) {
            return None;
        }
        let mut s = self.rng.pick(&TEXTS).to_string();
        if self.rng.chance(50) {
            s.push_str(self.rng.pick(&TEXTS));
        }
        if self.rng.chance(40) {
            s.push_str(&format!(" #{}", self.rng.below(1000)));
        }
        Some(s)
    }

    fn number(&mut self) -> Option<i64> {
        match self.rng.below(10) {
            0 | 1 => None,
            2 => Some(self.rng.pick(&[i64::MAX, i64::MIN + 1, -1, 0, 1 << 53])),
            _ => Some(self.rng.range(-1_000_000, 1_000_000)),
        }
    }

    /// A value of the partition column `p`.
    fn partition(&mut self) -> Option<i64> {
        if self.rng.chance(8) {
            return None;
        }
        if self.p_is_datetime() {
            // Clusters: many rows in one second, one minute, one hour; and spread over years.
            if self.rng.chance(15) {
                // On a block boundary of some level, or just before it.
                let level =
                    self.interval() / i64::from(self.case.factor).pow(self.rng.below(3) as u32);
                let edge = (BASE_2024 / level + self.rng.range(-2, 3)) * level * 1_000_000;
                let before = if self.whole_seconds { 1_000_000 } else { 1 };
                return Some(edge - self.rng.pick(&[0, before]));
            }
            let secs = match self.rng.below(6) {
                0 => BASE_2024,
                1 => BASE_2024 + self.rng.range(0, 59),
                2 => BASE_2024 + 86_400 * 3 + self.rng.range(0, 3_600),
                3 => BASE_2024 + 604_800 * self.rng.range(-3, 3),
                4 => BASE_2024 - 86_400 * 365 * 20 + self.rng.range(0, 86_400 * 365 * 30),
                _ => BASE_2024 + self.rng.range(0, 86_400 * 60),
            };
            let micros = if self.whole_seconds || self.rng.chance(40) {
                0
            } else {
                self.rng.range(0, 999_999)
            };
            return Some(secs * 1_000_000 + micros);
        }
        let interval = self.interval();
        if self.rng.chance(3) {
            return Some(self.rng.pick(&[i64::MIN, i64::MIN + 1, i64::MAX - 1]));
        }
        Some(match self.rng.below(7) {
            0 => 7,
            1 => self.rng.range(0, 40),
            2 => self.rng.range(-50, 0),
            3 => interval * self.rng.range(-2, 4) + self.rng.pick(&[-1, 0, 1]),
            4 => self.rng.range(1_000_000_000_000, 1_000_000_000_100),
            5 => self.rng.range(-1_000_000, 1_000_000),
            _ => self.rng.range(100, 400),
        })
    }

    fn new_key(&mut self) -> K {
        loop {
            let k = match self.case.key {
                Key::Int => {
                    let id = match self.rng.below(8) {
                        0..=3 => {
                            self.next_id += 1;
                            self.next_id
                        }
                        4 => {
                            // A gap.
                            self.next_id += self.rng.range(50, 5_000);
                            self.next_id
                        }
                        5 => self.rng.range(1_000_000_000_000_000, 1_000_000_000_000_050),
                        6 => {
                            let interval = self.interval();
                            interval * self.rng.range(-3, 5) + self.rng.pick(&[-1, 0, 1])
                        }
                        _ => self.rng.range(-100, 2_000),
                    };
                    id.to_string()
                }
                Key::Str => {
                    let mut s = self.rng.pick(&KEY_TEXTS).to_string();
                    for _ in 0..self.rng.below(3) {
                        s.push_str(self.rng.pick(&KEY_TEXTS));
                    }
                    if self.rng.chance(60) {
                        s.push_str(&self.rng.below(500).to_string());
                    }
                    if !self.no_trailing_spaces && self.rng.chance(10) {
                        s.push(' ');
                    }
                    s
                }
                Key::Uuid => {
                    let (a, b) = (self.rng.next(), self.rng.next());
                    format!(
                        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                        a >> 32,
                        (a >> 16) & 0xffff,
                        a & 0xffff,
                        b >> 48,
                        b & 0xffff_ffff_ffff
                    )
                }
            };
            if !self.model.contains_key(&k) {
                return k;
            }
        }
    }

    fn new_vals(&mut self) -> Vals {
        let p = if self.case.part == Part::IntCol || self.p_is_datetime() {
            self.partition()
        } else {
            self.number()
        };
        let ts = if self.case.part == Part::Updated {
            let watermark = self.model.values().filter_map(|v| v.ts).max();
            match (self.rng.below(20), watermark) {
                (0, _) => None,
                // A row added later at the sink's newest timestamp.
                (1 | 2, Some(w)) => Some(w),
                _ => Some(self.tick()),
            }
        } else if self.rng.chance(10) {
            None
        } else {
            Some(self.datetime(BASE_2024, 86_400 * 400))
        };
        Vals {
            p,
            s: self.text(),
            n: self.number(),
            ts,
        }
    }

    /// An updated_at value after every earlier one.
    fn tick(&mut self) -> i64 {
        let step = self.rng.range(0, 50_000_000);
        let t = self.clock + step;
        if self.whole_seconds {
            t / 1_000_000 * 1_000_000
        } else {
            t
        }
    }

    // ---- SQL on the source -------------------------------------------------------------

    fn key_lit(&self, db: Db, k: &str) -> String {
        match self.case.key {
            Key::Int => k.to_string(),
            Key::Str | Key::Uuid => str_lit(db, k),
        }
    }

    fn dt_lit(db: Db, micros: i64) -> String {
        let t = chrono::DateTime::from_timestamp_micros(micros)
            .expect("datetime")
            .naive_utc()
            .format("%Y-%m-%d %H:%M:%S%.6f");
        match db {
            Db::Pg => format!("'{t}+00'"),
            Db::My => format!("'{t}'"),
            Db::Ch => format!("'{}'", &t.to_string()[..19]),
        }
    }

    fn vals_lits(&self, db: Db, v: &Vals) -> [String; 4] {
        let null = || "NULL".to_string();
        [
            v.p.map(|p| {
                if self.p_is_datetime() {
                    Self::dt_lit(db, p)
                } else {
                    p.to_string()
                }
            })
            .unwrap_or_else(null),
            v.s.as_deref().map(|s| str_lit(db, s)).unwrap_or_else(null),
            v.n.map(|n| n.to_string()).unwrap_or_else(null),
            v.ts.map(|t| Self::dt_lit(db, t)).unwrap_or_else(null),
        ]
    }

    fn create_source(&self) -> String {
        let t = &self.src_table;
        let dt = self.p_is_datetime();
        match self.case.src {
            Db::Pg => {
                let id = match self.case.key {
                    Key::Int => "bigint",
                    Key::Str => "text",
                    Key::Uuid => "uuid",
                };
                let p = if dt { "timestamptz" } else { "bigint" };
                format!(
                    "CREATE TABLE {t} (id {id} PRIMARY KEY, p {p}, s text, n bigint, ts timestamptz)"
                )
            }
            Db::My => {
                let id = match self.case.key {
                    Key::Int => "bigint",
                    Key::Str => "varchar(200) COLLATE utf8mb4_bin",
                    Key::Uuid => "char(36)",
                };
                let p = if dt { "datetime(6)" } else { "bigint" };
                format!(
                    "CREATE TABLE {t} (id {id} PRIMARY KEY, p {p}, s longtext, n bigint, \
                     ts datetime(6)) CHARACTER SET utf8mb4"
                )
            }
            Db::Ch => {
                let id = match self.case.key {
                    Key::Int => "Int64",
                    Key::Str => "String",
                    Key::Uuid => "UUID",
                };
                let p = if dt {
                    "Nullable(DateTime('UTC'))"
                } else {
                    "Nullable(Int64)"
                };
                format!(
                    "CREATE TABLE {t} (id {id}, p {p}, s Nullable(String), n Nullable(Int64), \
                     ts Nullable(DateTime('UTC'))) ENGINE = MergeTree ORDER BY id"
                )
            }
        }
    }

    async fn insert_rows(&self, dbs: &mut Dbs, rows: &[(K, Vals)]) {
        let db = self.case.src;
        for chunk in rows.chunks(200) {
            let tuples: Vec<String> = chunk
                .iter()
                .map(|(k, v)| {
                    let [p, s, n, ts] = self.vals_lits(db, v);
                    format!("({}, {p}, {s}, {n}, {ts})", self.key_lit(db, k))
                })
                .collect();
            exec(
                dbs,
                db,
                &format!(
                    "INSERT INTO {} (id, p, s, n, ts) VALUES {}",
                    self.src_table,
                    tuples.join(", ")
                ),
            )
            .await;
        }
    }

    /// Applies a round's changes to the model and the source table.
    async fn change(&mut self, dbs: &mut Dbs, round: usize) -> String {
        let rounds = self.case.rounds;
        let deletes_allowed = self.case.part != Part::Updated;
        let mut deleted: Vec<K> = Vec::new();
        let mut updated: Vec<K> = Vec::new();
        let mut inserted: Vec<K> = Vec::new();
        let mut what = String::new();
        if self.case.part == Part::Updated {
            self.clock += 3_600_000_000 + self.rng.range(0, 1_000_000_000);
        }
        let keys: Vec<K> = self.model.keys().cloned().collect();
        if round == 0 && self.case.empty_start {
            what.push_str("an empty source");
        } else if round == 0 || (round == 1 && self.case.empty_start) {
            what.push_str("initial load");
            for _ in 0..120 + self.rng.below(60) {
                let k = self.new_key();
                let v = self.new_vals();
                self.model.insert(k.clone(), v);
                inserted.push(k);
            }
        } else if deletes_allowed && round == rounds - 3 {
            what.push_str("every row deleted");
            deleted = keys;
        } else if deletes_allowed && round == rounds - 2 {
            what.push_str("a single row");
            let k = self.new_key();
            let v = self.new_vals();
            self.model.insert(k.clone(), v);
            inserted.push(k);
        } else {
            what.push_str("random changes");
            let (ins, upd, del) = (
                self.rng.below(25),
                self.rng.below(30),
                if deletes_allowed {
                    self.rng.below(15)
                } else {
                    0
                },
            );
            let ins = if round == rounds - 1 { ins + 100 } else { ins };
            for _ in 0..del {
                if keys.is_empty() {
                    break;
                }
                let k = self.rng.pick(&keys);
                if !deleted.contains(&k) {
                    deleted.push(k);
                }
            }
            for _ in 0..upd {
                if keys.is_empty() {
                    break;
                }
                let k = self.rng.pick(&keys);
                if deleted.contains(&k) || updated.contains(&k) {
                    continue;
                }
                updated.push(k);
            }
            for _ in 0..ins {
                let k = self.new_key();
                let v = self.new_vals();
                self.model.insert(k.clone(), v);
                inserted.push(k);
            }
            // A dense cluster of consecutive int keys.
            if self.case.key == Key::Int && self.rng.chance(50) {
                let start = self.rng.range(-20, 3_000);
                for id in start..start + self.rng.range(5, 30) {
                    let k = id.to_string();
                    if self.model.contains_key(&k) {
                        continue;
                    }
                    let v = self.new_vals();
                    self.model.insert(k.clone(), v);
                    inserted.push(k);
                }
            }
        }
        for k in &deleted {
            self.model.remove(k);
        }
        for k in &updated {
            let mut v = self.model[k].clone();
            match self.rng.below(6) {
                0 => v.s = self.text(),
                1 => v.n = self.number(),
                2 => {
                    v.s = None;
                    v.n = None;
                }
                3 if self.case.part == Part::IntCol || self.p_is_datetime() => {
                    // Moves the row to another block.
                    v.p = self.partition();
                }
                4 => {
                    let w = self.new_vals();
                    v = Vals { ts: v.ts, ..w };
                }
                _ => {
                    v.s = self.text();
                    v.p = if self.case.part == Part::IntCol || self.p_is_datetime() {
                        self.partition()
                    } else {
                        v.p
                    };
                }
            }
            if self.case.part == Part::Updated {
                // A row without a timestamp keeps none now and then (compared on every run).
                if v.ts.is_some() || self.rng.chance(50) {
                    v.ts = Some(self.tick());
                }
            } else if self.rng.chance(20) {
                v.ts = Some(self.datetime(BASE_2024, 86_400 * 400));
            }
            self.model.insert(k.clone(), v);
        }
        what.push_str(&format!(
            ": {} inserted, {} updated, {} deleted, {} rows",
            inserted.len(),
            updated.len(),
            deleted.len(),
            self.model.len()
        ));
        let db = self.case.src;
        if db == Db::Ch {
            // ClickHouse 18.16 cannot update a key column and applies mutations later: the
            // source is written again as a whole.
            drop_table(dbs, db, &self.src_table.clone()).await;
            exec(dbs, db, &self.create_source()).await;
            let rows: Vec<(K, Vals)> = self
                .model
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            self.insert_rows(dbs, &rows).await;
            return what;
        }
        for chunk in deleted.chunks(100) {
            let keys: Vec<String> = chunk.iter().map(|k| self.key_lit(db, k)).collect();
            exec(
                dbs,
                db,
                &format!(
                    "DELETE FROM {} WHERE id IN ({})",
                    self.src_table,
                    keys.join(", ")
                ),
            )
            .await;
        }
        for k in &updated {
            let [p, s, n, ts] = self.vals_lits(db, &self.model[k]);
            exec(
                dbs,
                db,
                &format!(
                    "UPDATE {} SET p = {p}, s = {s}, n = {n}, ts = {ts} WHERE id = {}",
                    self.src_table,
                    self.key_lit(db, k)
                ),
            )
            .await;
        }
        let rows: Vec<(K, Vals)> = inserted
            .iter()
            .map(|k| (k.clone(), self.model[k].clone()))
            .collect();
        self.insert_rows(dbs, &rows).await;
        what
    }

    // ---- reading -------------------------------------------------------------------------

    /// Every live row of `table` on `db`, normalised: `[id, p, s, n, ts]` as text.
    async fn read(&self, dbs: &mut Dbs, db: Db, table: &str, how: Read) -> Vec<Row> {
        let cols = "id, p, s, n, ts";
        let from = live_rows_from(db, table, cols, how);
        let dt = self.p_is_datetime();
        let rows: Vec<Row> = match db {
            Db::Pg => {
                let f = |c: &str| {
                    format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
                };
                let p = if dt { f("p") } else { "p::text".into() };
                support::pg_rows(
                    &dbs.pg,
                    &format!("SELECT id::text, {p}, s, n::text, {} FROM {from}", f("ts")),
                    &[],
                )
                .await
            }
            Db::My => {
                let f = |c: &str| format!("DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')");
                let p = if dt { f("p") } else { "CAST(p AS CHAR)".into() };
                support::mysql_rows(
                    &mut dbs.my,
                    &format!(
                        "SELECT CAST(id AS CHAR), {p}, s, CAST(n AS CHAR), {} FROM {from}",
                        f("ts")
                    ),
                    mysql_async::Params::Empty,
                )
                .await
            }
            Db::Ch => {
                let p = if dt {
                    "toString(p, 'UTC')"
                } else {
                    "toString(p)"
                };
                dbs.ch
                    .exec(&format!(
                        "SELECT toString(id), {p}, s, toString(n), toString(ts, 'UTC') \
                         FROM {from} FORMAT TabSeparated"
                    ))
                    .await
                    .lines()
                    .map(|l| l.split('\t').map(tsv_value).collect())
                    .collect()
            }
        };
        let mut rows: Vec<Row> = rows
            .into_iter()
            .map(|mut r| {
                let mut fix = |i: usize| {
                    if let Some(v) = r[i].as_mut() {
                        let (sec, frac) = v.split_once('.').unwrap_or((v, ""));
                        *v = format!("{sec}.{frac:0<6}");
                    }
                };
                if dt {
                    fix(1);
                }
                fix(4);
                if let Some(id) = r[0].as_mut() {
                    if self.case.key == Key::Uuid {
                        *id = id.to_ascii_lowercase();
                    }
                }
                r
            })
            .collect();
        rows.sort();
        rows
    }

    /// The model as rows in [`Self::read`]'s form.
    fn expected(&self) -> Vec<Row> {
        let dt = |m: i64| {
            chrono::DateTime::from_timestamp_micros(m)
                .expect("datetime")
                .naive_utc()
                .format("%Y-%m-%d %H:%M:%S%.6f")
                .to_string()
        };
        let mut rows: Vec<Row> = self
            .model
            .iter()
            .map(|(k, v)| {
                vec![
                    Some(k.clone()),
                    v.p.map(|p| {
                        if self.p_is_datetime() {
                            dt(p)
                        } else {
                            p.to_string()
                        }
                    }),
                    v.s.clone(),
                    v.n.map(|n| n.to_string()),
                    v.ts.map(dt),
                ]
            })
            .collect();
        rows.sort();
        rows
    }

    fn config(&self) -> String {
        let c = &self.case;
        let key_type = match c.key {
            Key::Int => "int",
            Key::Str => "str",
            Key::Uuid => "uuid",
        };
        let p_type = if self.p_is_datetime() {
            "datetime"
        } else {
            "int"
        };
        let recon = match c.part {
            Part::Updated => {
                "      - {name: r, strategy: timestamp, partition_column: ts}\n".to_string()
            }
            part => {
                let (col, ty) = match part {
                    Part::Key => ("id", key_type),
                    Part::IntCol => ("p", "int"),
                    _ => ("p", "datetime"),
                };
                let order = if c.strategy == "hash_md5_hash" {
                    "\n        source_order_column: id"
                } else {
                    ""
                };
                format!(
                    "      - name: r
        strategy: {}
        partition_column: {col}
        partition_column_type: {ty}{order}
        initial_partition_interval: {}
        max_block_size: {}
        interval_reduction_factor: {}
",
                    c.strategy, c.interval, c.max_block, c.factor
                )
            }
        };
        let allow_delete = c.part != Part::Updated;
        let rest = format!(
            r#"      batch_size: 16
      fields:
        - {{column: id, dtype: {key_type}}}
        - {{column: p, dtype: {p_type}}}
        - {{column: s, dtype: str}}
        - {{column: n, dtype: int}}
        - {{column: ts, dtype: datetime}}
    sink:
      datastore: SINK_STORE
      table: SINK_TABLE
      batch_size: 16
      merge_strategy: {{strategy: {}, allow_delete: {allow_delete}}}
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: p, source_column: p}}
        - {{column: s, source_column: s}}
        - {{column: n, source_column: n}}
        - {{column: ts, source_column: ts}}
    reconciliation:
{recon}"#,
            c.merge
        );
        support::edge_config(
            c.src.store(),
            &self.src_table,
            c.sink.store(),
            &self.sink_table,
            &rest,
        )
    }
}

/// Checks `plan --show-keys`' list against the rows the sink held (`before`) and the source
/// holds (`after`): every key listed once, as added (the source's only), modified or deleted
/// (the sink's only). A row whose partition value moved to another block (`moving`) is
/// listed as added to its new block, or deleted from its old one, as apply writes it.
fn check_listed_keys(
    what: &str,
    plan: &serde_json::Value,
    before: &[Row],
    after: &[Row],
    moving: bool,
) {
    let by_id = |rows: &[Row]| -> BTreeMap<String, Row> {
        rows.iter()
            .map(|r| (r[0].clone().expect("id"), r.clone()))
            .collect()
    };
    let (b, a) = (by_id(before), by_id(after));
    let keys = plan["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no keys in {plan}"));
    let mut seen = std::collections::BTreeSet::new();
    for k in keys {
        let id = match &k["key"]["id"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            other => panic!("{what}: key {other} in {plan}"),
        };
        let change = k["change"].as_str().unwrap_or_default();
        let expected = match (b.get(&id), a.get(&id)) {
            (None, Some(_)) => "added",
            (Some(_), None) => "deleted",
            (Some(x), Some(y)) if x != y => "modified",
            _ => "unchanged",
        };
        let moved = moving && expected == "modified" && matches!(change, "added" | "deleted");
        assert!(
            change == expected || moved,
            "{what}: key {id} listed as {change}, but it was {expected}: {plan}"
        );
        assert!(
            seen.insert((id.clone(), change.to_string())),
            "{what}: key {id} listed twice as {change}: {plan}"
        );
    }
}

/// Runs one case: rounds of changes, each repaired by `apply -r r` and checked.
async fn fuzz(case: Case) {
    let started = std::time::Instant::now();
    let mut dbs = dbs().await;
    let mut f = Fuzz::new(case);
    let src = f.case.src;
    let sink = f.case.sink;
    exec(&mut dbs, src, &f.create_source()).await;
    let cfg = write_config(&f.config());
    let how = sink_read(sink, f.case.merge);
    // What the sink holds before a round's apply: the source of the round before.
    let mut before: Option<Vec<Row>> = None;
    for round in 0..f.case.rounds {
        let change = f.change(&mut dbs, round).await;
        let what = format!("{}: {change}", f.what(round));
        eprintln!("{what}");
        let source = f
            .read(&mut dbs, src, &f.src_table.clone(), Read::Plain)
            .await;
        assert_same(
            &format!("{what}: the source against the model"),
            &source,
            &f.expected(),
        );
        let plan = (round > 0).then(|| {
            run_json(
                &cfg,
                &["plan", "-r", "r", "--show-keys", "100000"],
                0,
                &what,
            )
        });
        if let (Some(plan), Some(before)) = (&plan, &before) {
            check_listed_keys(&what, plan, before, &source, f.case.part != Part::Key);
        }
        let applied = run_json(&cfg, &["apply", "-r", "r"], 0, &what);
        let got = f.read(&mut dbs, sink, &f.sink_table.clone(), how).await;
        assert_same(
            &format!("{what}: the sink after apply ({applied})"),
            &got,
            &source,
        );
        if let Some(plan) = plan {
            assert_eq!(
                (n(&plan, "rows_written"), n(&plan, "rows_deleted")),
                (n(&applied, "rows_written"), n(&applied, "rows_deleted")),
                "{what}: plan and apply count alike\nplan: {plan}\napply: {applied}"
            );
        }
        let r = run_json(&cfg, &["plan", "--exit-code", "-r", "r"], 0, &what);
        assert_eq!(
            (n(&r, "rows_written"), n(&r, "rows_deleted")),
            (0, 0),
            "{what}: plan after apply: {r}"
        );
        let r = run_json(&cfg, &["apply", "-r", "r"], 0, &what);
        assert_eq!(
            (n(&r, "rows_written"), n(&r, "rows_deleted")),
            (0, 0),
            "{what}: a second apply: {r}"
        );
        before = Some(source);
    }
    drop_table(&mut dbs, src, &f.src_table.clone()).await;
    drop_table(&mut dbs, sink, &f.sink_table.clone()).await;
    eprintln!(
        "recon_fuzz {}: {} rounds in {:.1} s",
        f.case.name,
        f.case.rounds,
        started.elapsed().as_secs_f64()
    );
}

fn case(
    name: &'static str,
    src: Db,
    sink: Db,
    merge: &'static str,
    strategy: &'static str,
) -> Case {
    Case {
        name,
        src,
        sink,
        merge,
        strategy,
        key: Key::Int,
        part: Part::Key,
        interval: "1024",
        max_block: 8,
        factor: 4,
        rounds: 7,
        empty_start: false,
        seed: rng::name_seed(0xF022_5EED, name),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_pg_to_mariadb_upsert_md5sum_int_column() {
    fuzz(Case {
        part: Part::IntCol,
        interval: "256",
        max_block: 6,
        factor: 3,
        ..case("pg_my_up", Db::Pg, Db::My, "upsert", "md5sum_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_mariadb_to_pg_delete_insert_hash_md5_int_key() {
    fuzz(Case {
        interval: "4096",
        max_block: 5,
        factor: 2,
        ..case("my_pg_di", Db::My, Db::Pg, "delete_insert", "hash_md5_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_pg_to_clickhouse_collapse_md5sum_datetime_column() {
    fuzz(Case {
        part: Part::DatetimeCol,
        interval: "7*24*60*60",
        max_block: 10,
        factor: 3,
        ..case("pg_ch_co", Db::Pg, Db::Ch, "collapse", "md5sum_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_clickhouse_to_pg_upsert_hash_md5_str_key() {
    fuzz(Case {
        key: Key::Str,
        interval: "1",
        max_block: 6,
        factor: 2,
        ..case("ch_pg_up", Db::Ch, Db::Pg, "upsert", "hash_md5_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_pg_to_mariadb_collapse_hash_md5_uuid_key() {
    fuzz(Case {
        key: Key::Uuid,
        interval: "1",
        max_block: 8,
        factor: 2,
        ..case("pg_my_co", Db::Pg, Db::My, "collapse", "hash_md5_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_mariadb_to_clickhouse_upsert_md5sum_str_key() {
    fuzz(Case {
        key: Key::Str,
        interval: "1",
        max_block: 5,
        ..case("my_ch_up", Db::My, Db::Ch, "upsert", "md5sum_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_clickhouse_to_mariadb_delete_insert_md5sum_datetime_column() {
    fuzz(Case {
        part: Part::DatetimeCol,
        interval: "30*24*60*60",
        max_block: 7,
        factor: 4,
        ..case("ch_my_di", Db::Ch, Db::My, "delete_insert", "md5sum_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_pg_to_clickhouse_delete_insert_hash_md5_int_column() {
    fuzz(Case {
        part: Part::IntCol,
        interval: "64",
        max_block: 9,
        factor: 2,
        ..case("pg_ch_di", Db::Pg, Db::Ch, "delete_insert", "hash_md5_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_clickhouse_to_pg_collapse_md5sum_int_key() {
    fuzz(Case {
        interval: "512",
        max_block: 5,
        factor: 4,
        ..case("ch_pg_co", Db::Ch, Db::Pg, "collapse", "md5sum_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_timestamp_pg_to_mariadb_upsert() {
    fuzz(Case {
        part: Part::Updated,
        rounds: 5,
        ..case("ts_pg_my", Db::Pg, Db::My, "upsert", "timestamp")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_timestamp_mariadb_to_pg_delete_insert() {
    fuzz(Case {
        part: Part::Updated,
        rounds: 5,
        ..case("ts_my_pg", Db::My, Db::Pg, "delete_insert", "timestamp")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_timestamp_pg_to_clickhouse_collapse() {
    fuzz(Case {
        part: Part::Updated,
        rounds: 5,
        ..case("ts_pg_ch", Db::Pg, Db::Ch, "collapse", "timestamp")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_mariadb_to_pg_upsert_hash_md5_datetime_column_micros() {
    fuzz(Case {
        part: Part::DatetimeCol,
        interval: "24*60*60",
        max_block: 6,
        factor: 4,
        empty_start: true,
        ..case("my_pg_dt", Db::My, Db::Pg, "upsert", "hash_md5_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_pg_to_mariadb_delete_insert_md5sum_datetime_column_micros() {
    fuzz(Case {
        part: Part::DatetimeCol,
        interval: "7*24*60*60",
        max_block: 8,
        factor: 2,
        ..case("pg_my_dt", Db::Pg, Db::My, "delete_insert", "md5sum_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_pg_to_clickhouse_collapse_md5sum_uuid_key() {
    fuzz(Case {
        key: Key::Uuid,
        interval: "1",
        max_block: 5,
        empty_start: true,
        ..case("pg_ch_uu", Db::Pg, Db::Ch, "collapse", "md5sum_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_clickhouse_to_mariadb_upsert_hash_md5_uuid_key() {
    fuzz(Case {
        key: Key::Uuid,
        interval: "2",
        max_block: 7,
        ..case("ch_my_uu", Db::Ch, Db::My, "upsert", "hash_md5_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_pg_to_clickhouse_upsert_hash_md5_str_key() {
    fuzz(Case {
        key: Key::Str,
        interval: "1",
        max_block: 5,
        ..case("pg_ch_st", Db::Pg, Db::Ch, "upsert", "hash_md5_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_timestamp_clickhouse_to_pg_upsert() {
    fuzz(Case {
        part: Part::Updated,
        rounds: 5,
        empty_start: true,
        ..case("ts_ch_pg", Db::Ch, Db::Pg, "upsert", "timestamp")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_mariadb_to_pg_collapse_hash_md5_str_key() {
    fuzz(Case {
        key: Key::Str,
        interval: "1",
        max_block: 6,
        ..case("my_pg_st", Db::My, Db::Pg, "collapse", "hash_md5_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_pg_to_clickhouse_upsert_md5sum_int_column() {
    fuzz(Case {
        part: Part::IntCol,
        interval: "128",
        max_block: 6,
        factor: 2,
        ..case("pg_ch_upi", Db::Pg, Db::Ch, "upsert", "md5sum_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_mariadb_to_clickhouse_upsert_hash_md5_datetime_column() {
    fuzz(Case {
        part: Part::DatetimeCol,
        interval: "24*60*60",
        max_block: 6,
        factor: 3,
        ..case("my_ch_dt", Db::My, Db::Ch, "upsert", "hash_md5_hash")
    })
    .await;
}

/// A ClickHouse `delete_insert` sink gathers a reconciliation's leaves and merges them
/// together: rows moving between range blocks (the partition column is not the key) must
/// end with their new row whichever leaf came first.
#[tokio::test(flavor = "multi_thread")]
async fn fuzz_mariadb_to_clickhouse_delete_insert_md5sum_int_column() {
    fuzz(Case {
        part: Part::IntCol,
        interval: "128",
        max_block: 6,
        factor: 2,
        ..case("my_ch_di", Db::My, Db::Ch, "delete_insert", "md5sum_hash")
    })
    .await;
}

/// A timestamp run's window leaves and the rows after it, into a ClickHouse
/// `delete_insert` sink, each gathered and merged together.
#[tokio::test(flavor = "multi_thread")]
async fn fuzz_timestamp_pg_to_clickhouse_delete_insert() {
    fuzz(Case {
        part: Part::Updated,
        rounds: 5,
        ..case("ts_pg_ch_di", Db::Pg, Db::Ch, "delete_insert", "timestamp")
    })
    .await;
}

// Source and sink on one server: the most common deployment (a replica of a table, a
// reporting copy), with both sides' SQL from one dialect.

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_pg_to_pg_collapse_md5sum_int_column() {
    fuzz(Case {
        part: Part::IntCol,
        interval: "256",
        max_block: 6,
        factor: 4,
        ..case("pg_pg_co", Db::Pg, Db::Pg, "collapse", "md5sum_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_pg_to_pg_upsert_hash_md5_uuid_key() {
    fuzz(Case {
        key: Key::Uuid,
        interval: "1",
        max_block: 5,
        ..case("pg_pg_uu", Db::Pg, Db::Pg, "upsert", "hash_md5_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_mariadb_to_mariadb_delete_insert_hash_md5_str_key() {
    fuzz(Case {
        key: Key::Str,
        interval: "1",
        max_block: 6,
        ..case("my_my_di", Db::My, Db::My, "delete_insert", "hash_md5_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_clickhouse_to_clickhouse_upsert_md5sum_datetime_column() {
    fuzz(Case {
        part: Part::DatetimeCol,
        interval: "7*24*60*60",
        max_block: 6,
        factor: 4,
        // Each round's changes are ClickHouse mutations on the source: fewer rounds.
        rounds: 5,
        ..case("ch_ch_dt", Db::Ch, Db::Ch, "upsert", "md5sum_hash")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzz_timestamp_mariadb_to_mariadb_collapse() {
    fuzz(Case {
        part: Part::Updated,
        rounds: 5,
        ..case("ts_my_my_co", Db::My, Db::My, "collapse", "timestamp")
    })
    .await;
}
