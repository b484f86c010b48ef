//! A ClickHouse sink table's engine, as `system.tables` lists it (`sink.engine`: `engine`,
//! `engine_full`, `sorting_key`, on 18.16 and current servers alike), and whether it fits
//! the pipeline's merge strategy.
//!
//! synctool creates `ReplacingMergeTree[(version_column)]` for upsert,
//! `CollapsingMergeTree(sign_column)` for collapse and `MergeTree` for delete_insert, each
//! `ORDER BY` the unique_key. An existing table must merge rows the same way, or the sink
//! never converges (duplicates, or distinct keys merged into one row) or loses rows (rows
//! written with sign 0); see [`ChEngine::misfit`] for the rules.
//!
//! The engine's parameters are read from `engine_full` (`CollapsingMergeTree(sign) ORDER BY
//! id SETTINGS …`) by a small scanner that respects quotes and brackets; no server lists
//! them on their own.

use crate::ir::{MergeKind, MergeStrategy};

/// How an engine merges rows (the `Replicated` / `Shared` prefix removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `MergeTree`: keeps every row.
    MergeTree,
    /// `ReplacingMergeTree([version[, is_deleted]])`: one row per sorting key.
    Replacing,
    /// `CollapsingMergeTree(sign)`: rows cancel by sign.
    Collapsing,
    /// `VersionedCollapsingMergeTree(sign, version)`.
    VersionedCollapsing,
    /// `SummingMergeTree`, `AggregatingMergeTree`, `GraphiteMergeTree`, `CoalescingMergeTree`:
    /// merges change the rows' values.
    Aggregating,
    /// Anything else (`Distributed`, `Buffer`, `Log`, `Memory`, …).
    Other,
}

/// One element of a sorting key, or one engine parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A plain column (unquoted).
    Column(String),
    /// Any other expression, as listed.
    Expr(String),
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Column(c) if is_bare(c) => f.write_str(c),
            Part::Column(c) => write!(f, "`{}`", c.replace('\\', "\\\\").replace('`', "\\`")),
            Part::Expr(e) => f.write_str(e),
        }
    }
}

/// A ClickHouse table's engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChEngine {
    /// The engine as listed (`ReplicatedCollapsingMergeTree`).
    pub name: String,
    /// How it merges rows.
    pub family: Family,
    /// The engine's own parameters: the sign and version columns of the MergeTree family
    /// (without a replicated table's path and replica, or the old syntax's date column,
    /// key and granularity); a `Distributed` table's cluster, database, table, ….
    pub params: Vec<Part>,
    /// The sorting key (`ORDER BY`); empty for `tuple()` and for engines without one.
    pub sorting_key: Vec<Part>,
}

impl ChEngine {
    /// Reads the `engine`, `engine_full` and `sorting_key` columns of the table's
    /// `system.tables` row.
    pub fn read(engine: &str, engine_full: &str, sorting_key: &str) -> ChEngine {
        let name = engine.trim().to_string();
        let base = name
            .strip_prefix("Replicated")
            .or_else(|| name.strip_prefix("Shared"))
            .filter(|b| b.ends_with("MergeTree"))
            .unwrap_or(&name);
        let family = match base {
            "MergeTree" => Family::MergeTree,
            "ReplacingMergeTree" => Family::Replacing,
            "CollapsingMergeTree" => Family::Collapsing,
            "VersionedCollapsingMergeTree" => Family::VersionedCollapsing,
            b if b.ends_with("MergeTree") => Family::Aggregating,
            _ => Family::Other,
        };
        let mut args = engine_args(engine_full, &name);
        if family != Family::Other {
            if base.len() < name.len() {
                // A replicated table's ZooKeeper path and replica name (optional on current
                // servers, which then take them from the configuration).
                let paths = args
                    .iter()
                    .take(2)
                    .take_while(|a| a.starts_with('\''))
                    .count();
                args.drain(..paths);
            }
            // The old syntax: `MergeTree(date, [sampling,] key, granularity[, params…])`.
            if let Some(g) = args
                .iter()
                .skip(2)
                .position(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
            {
                args.drain(..g + 3);
            }
        }
        ChEngine {
            name,
            family,
            params: args.iter().map(|a| part(a)).collect(),
            sorting_key: key_parts(sorting_key),
        }
    }

    /// The engine as it would be declared, its parameters and (MergeTree family) sorting
    /// key: `CollapsingMergeTree(sign) ORDER BY (id)`.
    pub fn describe(&self) -> String {
        let mut s = self.name.clone();
        if !self.params.is_empty() {
            s += &format!("({})", join(&self.params));
        }
        if self.family != Family::Other {
            s += &match self.sorting_key.as_slice() {
                [] => " ORDER BY tuple()".to_string(),
                key => format!(" ORDER BY ({})", join(key)),
            };
        }
        s
    }

    /// The first engine parameter, when it is a column (the sign column of a collapsing
    /// engine, the version column of a replacing one).
    fn column_param(&self, i: usize) -> Option<&str> {
        match self.params.get(i) {
            Some(Part::Column(c)) => Some(c),
            _ => None,
        }
    }

    /// The sorting key's columns, sorted; none when an element is an expression.
    fn key_columns(&self, drop_last: Option<&str>) -> Option<Vec<&str>> {
        let mut key = self.sorting_key.as_slice();
        if let (Some(v), Some((Part::Column(last), rest))) = (drop_last, key.split_last()) {
            if last == v {
                key = rest;
            }
        }
        let mut cols = key
            .iter()
            .map(|p| match p {
                Part::Column(c) => Some(c.as_str()),
                Part::Expr(_) => None,
            })
            .collect::<Option<Vec<&str>>>()?;
        cols.sort_unstable();
        Some(cols)
    }

    /// Whether the sorting key is exactly the columns of `key` (in any order). A
    /// VersionedCollapsingMergeTree's version column, which current servers list at the
    /// end of its sorting key, is not counted.
    fn keyed_by(&self, key: &[String]) -> bool {
        let version = match self.family {
            Family::VersionedCollapsing => self.column_param(1),
            _ => None,
        };
        let mut want: Vec<&str> = key.iter().map(String::as_str).collect();
        want.sort_unstable();
        self.key_columns(version).is_some_and(|k| k == want)
    }

    /// Whether every column of `key` is a sorting key column: then rows of distinct keys
    /// are never merged into one.
    fn covers(&self, key: &[String]) -> bool {
        key.iter()
            .all(|k| self.sorting_key.contains(&Part::Column(k.clone())))
    }

    /// Why this engine does not fit merge strategy `merge` with `unique_key`, if it does
    /// not; the message names the engine, what the strategy needs and the ways out.
    ///
    /// - upsert: a Replacing engine whose sorting key is exactly the unique_key and whose
    ///   version column is `version_column` (none when none is set; an `is_deleted`
    ///   parameter is left alone, as synctool never sets it).
    /// - collapse: a Collapsing engine on `sign_column` whose sorting key is exactly the
    ///   unique_key (a VersionedCollapsing one too: synctool's cancelling rows copy the
    ///   version column along).
    /// - delete_insert: a MergeTree, or a Replacing engine whose sorting key holds every
    ///   unique_key column (one row per key is left after each delete, so nothing is
    ///   replaced); never a Collapsing engine, which takes rows written without a sign as
    ///   neither state.
    /// - Summing, Aggregating, Graphite and Coalescing engines change rows as they merge
    ///   them, and an engine outside the MergeTree family (Distributed, Buffer, Log, …)
    ///   hides how rows are merged or cannot delete: refused under every strategy.
    ///
    /// The `Replicated` (and Cloud's `Shared`) variants are judged as their base engine.
    pub fn misfit(&self, merge: &MergeStrategy, unique_key: &[String]) -> Option<String> {
        let keys = unique_key.join(", ");
        let exact = self.keyed_by(unique_key);
        let not_exact = || {
            if self.covers(unique_key) {
                format!("its sorting key is not exactly the unique_key ({keys}), so a row whose other sorting key columns changed would be kept beside the old one")
            } else {
                format!("its sorting key does not hold every unique_key column ({keys}), so rows of distinct keys would be merged into one")
            }
        };
        let sign = &merge.sign_column;
        let (strategy, needs) = match merge.kind {
            MergeKind::Upsert => (
                "upsert",
                match &merge.version_column {
                    Some(v) => format!("ReplacingMergeTree({v}) ORDER BY ({keys})"),
                    None => format!("ReplacingMergeTree ORDER BY ({keys})"),
                },
            ),
            MergeKind::Collapse => (
                "collapse",
                format!("CollapsingMergeTree({sign}) ORDER BY ({keys})"),
            ),
            MergeKind::DeleteInsert => ("delete_insert", format!("MergeTree ORDER BY ({keys})")),
        };
        let why = match (merge.kind, self.family) {
            (_, Family::Aggregating) => Some("it changes the rows it merges (sums or aggregates their values)".to_string()),
            (_, Family::Other) => Some(match merge.kind {
                MergeKind::DeleteInsert => "it is not of the MergeTree family, and delete_insert deletes with ALTER TABLE … DELETE".to_string(),
                _ => "it is not of the MergeTree family, so how it merges rows is not known".to_string(),
            }),
            (MergeKind::Upsert, Family::Replacing) => {
                let version = self.column_param(0);
                match (&merge.version_column, version) {
                    _ if !exact => Some(not_exact()),
                    (None, Some(v)) => Some(format!("it keeps the row with the highest `{v}`, not the last one written, and the config sets no version_column")),
                    (Some(c), None) => Some(format!("it keeps the last row written, not the one with the highest `{c}` (version_column)")),
                    (Some(c), Some(v)) if c != v => Some(format!("it keeps the row with the highest `{v}`, and version_column is `{c}`")),
                    _ => None,
                }
            }
            (MergeKind::Upsert, Family::MergeTree) => {
                Some("it keeps every row: every run would add another copy of each row".to_string())
            }
            (MergeKind::Upsert | MergeKind::DeleteInsert, Family::Collapsing | Family::VersionedCollapsing) => Some(format!(
                "rows would be written with {} = 0, which it takes as neither state: they drop out of FINAL reads as parts merge, and OPTIMIZE … FINAL fails",
                self.column_param(0).unwrap_or("the sign")
            )),
            (MergeKind::Collapse, Family::Collapsing | Family::VersionedCollapsing) => {
                match self.column_param(0) {
                    Some(s) if s == sign => (!exact).then(not_exact),
                    found => Some(format!(
                        "its sign column is {}, not sign_column `{sign}`: rows would be written with {} = 0, which it takes as neither state",
                        found.map_or("not a column".to_string(), |s| format!("`{s}`")),
                        found.map_or("its sign".to_string(), |s| format!("`{s}`")),
                    )),
                }
            }
            (MergeKind::Collapse, Family::MergeTree | Family::Replacing) => Some(
                "collapse writes cancelling rows (sign -1), which only a Collapsing engine removes"
                    .to_string(),
            ),
            (MergeKind::DeleteInsert, Family::Replacing) => (!self.covers(unique_key)).then(not_exact),
            (MergeKind::DeleteInsert, Family::MergeTree) => None,
        }?;
        let fits_table = match self.fitting_config() {
            Some(c) => format!(", or change the config to fit the table ({c})"),
            None => String::new(),
        };
        Some(format!(
            "its engine is {}, and merge strategy {strategy} with unique_key ({keys}) needs {needs} (as synctool creates it): {why}. Recreate the table with that engine (or drop it, and the next run creates it){fits_table}",
            self.describe()
        ))
    }

    /// A merge strategy and unique_key this table fits, if any.
    fn fitting_config(&self) -> Option<String> {
        let version = match self.family {
            Family::VersionedCollapsing => self.column_param(1),
            _ => None,
        };
        let cols = self.key_columns(version)?;
        if cols.is_empty() {
            return None;
        }
        let key = format!("unique_key [{}]", cols.join(", "));
        let strategy = match self.family {
            Family::MergeTree => "strategy: delete_insert".to_string(),
            Family::Replacing => match self.params.first() {
                None => "strategy: upsert".to_string(),
                Some(Part::Column(v)) => format!("strategy: upsert, version_column: {v}"),
                Some(Part::Expr(_)) => return None,
            },
            Family::Collapsing | Family::VersionedCollapsing => {
                format!("strategy: collapse, sign_column: {}", self.column_param(0)?)
            }
            _ => return None,
        };
        Some(format!("merge_strategy {{{strategy}}}, {key}"))
    }
}

fn join(parts: &[Part]) -> String {
    parts
        .iter()
        .map(Part::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_bare(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The arguments of `engine_full`'s leading `name(…)`; none without parentheses (or when
/// they do not close).
fn engine_args(engine_full: &str, name: &str) -> Vec<String> {
    let Some(rest) = engine_full.trim_start().strip_prefix(name) else {
        return Vec::new();
    };
    let Some(inner) = rest.trim_start().strip_prefix('(') else {
        return Vec::new();
    };
    match split_top(inner) {
        Some((args, Some(_))) if args.iter().any(|a| !a.is_empty()) => args,
        _ => Vec::new(),
    }
}

/// The elements of a sorting key as listed (`id, `x y``, `(id)`, `tuple()`).
fn key_parts(listed: &str) -> Vec<Part> {
    let Some((mut parts, None)) = split_top(listed) else {
        return vec![Part::Expr(listed.trim().to_string())];
    };
    // A single element that is itself a tuple: `(id, v)`, `tuple(id)`.
    if let [one] = parts.as_slice() {
        let inner = one
            .strip_prefix("tuple")
            .unwrap_or(one)
            .trim_start()
            .strip_prefix('(');
        if let Some(inner) = inner {
            if let Some((p, Some(end))) = split_top(inner) {
                if end == inner.len() {
                    parts = p;
                }
            }
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.iter().map(|p| part(p)).collect()
}

/// A column when `s` is an identifier (bare, or quoted with backquotes or double quotes),
/// else an expression.
fn part(s: &str) -> Part {
    let s = s.trim();
    if is_bare(s) {
        return Part::Column(s.to_string());
    }
    for q in ['`', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            if let Some(name) = unquote(inner, q) {
                return Part::Column(name);
            }
        }
    }
    Part::Expr(s.to_string())
}

/// The text of a quoted identifier's inside, when it is one identifier (every quote
/// character in it escaped, by a backslash or by doubling).
fn unquote(inner: &str, q: char) -> Option<String> {
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(match chars.next()? {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                'b' => '\u{8}',
                'f' => '\u{c}',
                other => other,
            }),
            c if c == q => {
                if chars.next()? != q {
                    return None;
                }
                out.push(q);
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// Splits `s` at its commas outside brackets and quotes, each part trimmed. Stops after an
/// unmatched `)`, returning the byte offset past it; `None` when a quote or bracket does
/// not close, or another bracket is unmatched.
fn split_top(s: &str) -> Option<(Vec<String>, Option<usize>)> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                cur.push(c);
                loop {
                    let (_, d) = chars.next()?;
                    cur.push(d);
                    if d == '\\' {
                        cur.push(chars.next()?.1);
                    } else if d == c {
                        if chars.peek().map(|p| p.1) == Some(c) {
                            cur.push(c);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                cur.push(c);
            }
            ')' | ']' | '}' => {
                if depth == 0 {
                    if c != ')' {
                        return None;
                    }
                    parts.push(cur.trim().to_string());
                    return Some((parts, Some(i + 1)));
                }
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => {
                parts.push(cur.trim().to_string());
                cur.clear();
            }
            c => cur.push(c),
        }
    }
    if depth != 0 {
        return None;
    }
    parts.push(cur.trim().to_string());
    Some((parts, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(c: &str) -> Part {
        Part::Column(c.into())
    }

    fn merge(kind: MergeKind, sign: &str, version: Option<&str>) -> MergeStrategy {
        MergeStrategy {
            kind,
            allow_delete: false,
            sign_column: sign.into(),
            version_column: version.map(Into::into),
        }
    }

    fn key(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn engines_are_read_from_system_tables_as_18_16_and_current_servers_list_them() {
        let e = ChEngine::read(
            "CollapsingMergeTree",
            "CollapsingMergeTree(sign) ORDER BY (id, `we ird`) SETTINGS index_granularity = 8192",
            "id, `we ird`",
        );
        assert_eq!(e.family, Family::Collapsing);
        assert_eq!(e.params, vec![col("sign")]);
        assert_eq!(e.sorting_key, vec![col("id"), col("we ird")]);
        assert_eq!(
            e.describe(),
            "CollapsingMergeTree(sign) ORDER BY (id, `we ird`)"
        );
        // A current server lists `ORDER BY (id)` with a partition key as `(id)`.
        let e = ChEngine::read(
            "ReplacingMergeTree",
            "ReplacingMergeTree(`v,)'er`) PARTITION BY id % 3 ORDER BY (id) TTL toDateTime(id) + toIntervalDay(1) SETTINGS index_granularity = 8192",
            "(id)",
        );
        assert_eq!(e.params, vec![col("v,)'er")]);
        assert_eq!(e.sorting_key, vec![col("id")]);
        // 18.16 escapes the quote inside backquotes.
        let e = ChEngine::read(
            "ReplacingMergeTree",
            r"ReplacingMergeTree(`v,)\'er`) ORDER BY id SETTINGS index_granularity = 8192",
            "id",
        );
        assert_eq!(e.params, vec![col("v,)'er")]);
        let e = ChEngine::read(
            "ReplacingMergeTree",
            "ReplacingMergeTree ORDER BY (id, intHash32(ver)) SETTINGS index_granularity = 8192",
            "id, intHash32(ver)",
        );
        assert!(e.params.is_empty());
        assert_eq!(
            e.sorting_key,
            vec![col("id"), Part::Expr("intHash32(ver)".into())]
        );
        let e = ChEngine::read(
            "MergeTree",
            "MergeTree ORDER BY tuple() SETTINGS index_granularity = 8192",
            "",
        );
        assert!(e.sorting_key.is_empty());
        assert_eq!(e.describe(), "MergeTree ORDER BY tuple()");
        assert_eq!(key_parts("tuple(a, \"b c\")"), vec![col("a"), col("b c")]);
        assert_eq!(
            key_parts("(a + b) * 2"),
            vec![Part::Expr("(a + b) * 2".into())]
        );
    }

    #[test]
    fn replicated_and_old_syntax_parameters_are_skipped() {
        let e = ChEngine::read(
            "ReplicatedCollapsingMergeTree",
            "ReplicatedCollapsingMergeTree('/clickhouse/tables/{shard}/t', '{replica}', s2) ORDER BY id",
            "id",
        );
        assert_eq!(e.family, Family::Collapsing);
        assert_eq!(e.params, vec![col("s2")]);
        assert_eq!(
            e.describe(),
            "ReplicatedCollapsingMergeTree(s2) ORDER BY (id)"
        );
        // Current servers take the path and replica from the configuration.
        let e = ChEngine::read(
            "ReplicatedReplacingMergeTree",
            "ReplicatedReplacingMergeTree(ver) ORDER BY id",
            "id",
        );
        assert_eq!((e.family, e.params), (Family::Replacing, vec![col("ver")]));
        let e = ChEngine::read(
            "SharedReplacingMergeTree",
            "SharedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}') ORDER BY id",
            "id",
        );
        assert_eq!((e.family, e.params), (Family::Replacing, vec![]));
        let e = ChEngine::read(
            "ReplacingMergeTree",
            "ReplacingMergeTree(d, id, 8192, ver)",
            "id",
        );
        assert_eq!(e.params, vec![col("ver")]);
        let e = ChEngine::read(
            "ReplicatedMergeTree",
            "ReplicatedMergeTree('/p', 'r', d, (id, ver), 8192)",
            "id, ver",
        );
        assert_eq!((e.family, e.params), (Family::MergeTree, vec![]));
        let e = ChEngine::read("Distributed", "Distributed(c, default, t, rand())", "");
        assert_eq!(e.family, Family::Other);
        assert_eq!(e.describe(), "Distributed(c, default, t, rand())");
        assert_eq!(
            ChEngine::read("SummingMergeTree", "SummingMergeTree ORDER BY id", "id").family,
            Family::Aggregating
        );
        assert_eq!(
            ChEngine::read("ReplicatedLog", "ReplicatedLog", "").family,
            Family::Other
        );
    }

    #[test]
    fn upsert_needs_a_replacing_engine_on_the_key_and_version() {
        let up = merge(MergeKind::Upsert, "sign", None);
        let up_v = merge(MergeKind::Upsert, "sign", Some("ver"));
        let k = key(&["id"]);
        let plain = ChEngine::read("ReplacingMergeTree", "ReplacingMergeTree ORDER BY id", "id");
        assert_eq!(plain.misfit(&up, &k), None);
        let replicated = ChEngine::read(
            "ReplicatedReplacingMergeTree",
            "ReplicatedReplacingMergeTree('/p', 'r') ORDER BY id",
            "id",
        );
        assert_eq!(replicated.misfit(&up, &k), None);
        let m = plain.misfit(&up, &key(&["id", "ver"])).unwrap();
        assert!(
            m.contains("does not hold every unique_key column (id, ver)"),
            "{m}"
        );
        assert!(
            m.starts_with("its engine is ReplacingMergeTree ORDER BY (id), and merge strategy upsert with unique_key (id, ver) needs ReplacingMergeTree ORDER BY (id, ver)"),
            "{m}"
        );
        assert!(
            m.ends_with("or change the config to fit the table (merge_strategy {strategy: upsert}, unique_key [id])"),
            "{m}"
        );
        let two = ChEngine::read(
            "ReplacingMergeTree",
            "ReplacingMergeTree ORDER BY (ver, id)",
            "ver, id",
        );
        assert_eq!(two.misfit(&up, &key(&["id", "ver"])), None);
        assert!(two
            .misfit(&up, &k)
            .unwrap()
            .contains("not exactly the unique_key (id)"));
        let versioned = ChEngine::read(
            "ReplacingMergeTree",
            "ReplacingMergeTree(amount) ORDER BY id",
            "id",
        );
        let m = versioned.misfit(&up, &k).unwrap();
        assert!(
            m.contains(
                "highest `amount`, not the last one written, and the config sets no version_column"
            ),
            "{m}"
        );
        assert!(m.contains("version_column: amount"), "{m}");
        assert!(versioned
            .misfit(&up_v, &k)
            .unwrap()
            .contains("highest `amount`, and version_column is `ver`"));
        assert!(plain
            .misfit(&up_v, &k)
            .unwrap()
            .contains("keeps the last row written, not the one with the highest `ver`"));
        let with_deleted = ChEngine::read(
            "ReplacingMergeTree",
            "ReplacingMergeTree(ver, del) ORDER BY id",
            "id",
        );
        assert_eq!(with_deleted.misfit(&up_v, &k), None);
        let hashed = ChEngine::read(
            "ReplacingMergeTree",
            "ReplacingMergeTree ORDER BY intHash32(id)",
            "intHash32(id)",
        );
        assert!(hashed.misfit(&up, &k).is_some());
        for (engine, why) in [
            ("MergeTree", "every run would add another copy"),
            ("CollapsingMergeTree(sign)", "written with sign = 0"),
            ("SummingMergeTree", "sums or aggregates"),
        ] {
            let name = engine.split('(').next().unwrap();
            let e = ChEngine::read(name, &format!("{engine} ORDER BY id"), "id");
            let m = e.misfit(&up, &k).unwrap();
            assert!(m.contains(why), "{engine}: {m}");
        }
        let d = ChEngine::read("Distributed", "Distributed(c, default, t)", "");
        assert!(d
            .misfit(&up, &k)
            .unwrap()
            .contains("not of the MergeTree family"));
    }

    #[test]
    fn collapse_needs_a_collapsing_engine_on_the_sign_column_and_key() {
        let co = merge(MergeKind::Collapse, "sign", None);
        let k = key(&["id"]);
        let e = ChEngine::read(
            "CollapsingMergeTree",
            "CollapsingMergeTree(sign) ORDER BY id",
            "id",
        );
        assert_eq!(e.misfit(&co, &k), None);
        let m = e
            .misfit(&merge(MergeKind::Collapse, "s2", None), &k)
            .unwrap();
        assert!(
            m.contains("its sign column is `sign`, not sign_column `s2`"),
            "{m}"
        );
        assert!(
            m.contains("needs CollapsingMergeTree(s2) ORDER BY (id)"),
            "{m}"
        );
        assert!(
            m.contains("(merge_strategy {strategy: collapse, sign_column: sign}, unique_key [id])"),
            "{m}"
        );
        assert!(e.misfit(&co, &key(&["id", "ver"])).is_some());
        let v = ChEngine::read(
            "VersionedCollapsingMergeTree",
            "VersionedCollapsingMergeTree(sign, ver) ORDER BY id",
            "id, ver",
        );
        assert_eq!(v.misfit(&co, &k), None);
        let r = ChEngine::read("ReplacingMergeTree", "ReplacingMergeTree ORDER BY id", "id");
        assert!(r
            .misfit(&co, &k)
            .unwrap()
            .contains("only a Collapsing engine"));
        let m = ChEngine::read("MergeTree", "MergeTree ORDER BY id", "id");
        assert!(m.misfit(&co, &k).is_some());
    }

    #[test]
    fn delete_insert_refuses_collapsing_engines_and_keys_that_merge_rows() {
        let di = merge(MergeKind::DeleteInsert, "sign", None);
        let k = key(&["id", "ver"]);
        let any = ChEngine::read("MergeTree", "MergeTree ORDER BY tuple()", "");
        assert_eq!(any.misfit(&di, &k), None);
        let c = ChEngine::read(
            "CollapsingMergeTree",
            "CollapsingMergeTree(sign) ORDER BY (id, ver)",
            "id, ver",
        );
        let m = c.misfit(&di, &k).unwrap();
        assert!(m.contains("written with sign = 0"), "{m}");
        assert!(m.contains("needs MergeTree ORDER BY (id, ver)"), "{m}");
        let r = ChEngine::read(
            "ReplacingMergeTree",
            "ReplacingMergeTree(ver) ORDER BY (id, ver, x)",
            "id, ver, x",
        );
        assert_eq!(r.misfit(&di, &k), None);
        let r = ChEngine::read("ReplacingMergeTree", "ReplacingMergeTree ORDER BY id", "id");
        assert!(r
            .misfit(&di, &k)
            .unwrap()
            .contains("rows of distinct keys would be merged into one"));
        let l = ChEngine::read("Log", "Log", "");
        assert!(l.misfit(&di, &k).unwrap().contains("ALTER TABLE … DELETE"));
    }

    #[test]
    fn scanning_respects_quotes_and_brackets() {
        assert_eq!(
            split_top("a, 'x,)''y', [1, 2], f(b, c)) rest"),
            Some((
                vec![
                    "a".to_string(),
                    "'x,)''y'".to_string(),
                    "[1, 2]".to_string(),
                    "f(b, c)".to_string()
                ],
                Some(29)
            ))
        );
        assert_eq!(split_top("a, (b"), None);
        assert_eq!(split_top("'open"), None);
        assert_eq!(part("`a``b`"), col("a`b"));
        assert_eq!(part(r"`a\`b`"), col("a`b"));
        assert_eq!(part("`a` + `b`"), Part::Expr("`a` + `b`".into()));
        assert_eq!(col("a`b").to_string(), r"`a\`b`");
    }
}
