//! Tests of the whole generator over the fixtures of [`super::testing`].

use super::testing::{self, render};
use super::*;

fn step<'a>(steps: &'a [SqlStep], id: &str) -> &'a SqlStep {
    steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

fn sql(steps: &[SqlStep], id: &str) -> String {
    step(steps, id).sql().join(";\n")
}

#[test]
fn snapshots() {
    for p in testing::all() {
        let steps = generate(&p).unwrap();
        insta::assert_snapshot!(p.name.clone(), render(&steps));
    }
}

#[test]
fn deterministic() {
    for p in testing::all() {
        assert_eq!(
            render(&generate(&p).unwrap()),
            render(&generate(&p).unwrap())
        );
    }
}

/// Writes every statement, one per line, to `$SYNCTOOL_SQL_DUMP/<dialect>.sql` for running
/// against real servers by hand.
#[test]
fn dump_for_servers() {
    let Ok(dir) = std::env::var("SYNCTOOL_SQL_DUMP") else {
        return;
    };
    let mut files: std::collections::BTreeMap<&str, String> = Default::default();
    for p in testing::all() {
        for s in generate(&p).unwrap() {
            for st in s.sql() {
                let f = files.entry(s.dialect.name()).or_default();
                f.push_str(&format!("-- {} {}\n{st}\n", p.name, s.id));
            }
        }
    }
    for (d, text) in files {
        std::fs::write(format!("{dir}/{d}.sql"), text).unwrap();
    }
}

#[test]
fn quoting_placeholders_and_final() {
    let uo = generate(&testing::users_orders()).unwrap();
    let extract = sql(&uo, "source.extract");
    assert!(extract.contains(r#""u"."select" AS "select""#), "{extract}");
    // The fixture has a timestamp reconciliation: rows stream in its column's order.
    assert!(
        extract.contains(
            r#"IN ($2, $3) AND "u"."deleted_at" IS NULL ORDER BY "u"."updated_at", "u"."id""#
        ),
        "{extract}"
    );
    let names: Vec<&str> = step(&uo, "recon.daily.source.block_hash")
        .params
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "interval",
            "interval",
            "filter_0",
            "filter_1_0",
            "filter_1_1",
            "range_start",
            "range_end"
        ]
    );
    assert!(sql(&uo, "recon.daily.sink.block_hash").contains("DIV CAST(? AS SIGNED)"));

    let ev = generate(&testing::pg_to_ch_upsert()).unwrap();
    assert!(sql(&ev, "source.extract").contains(r#""e"."we""ird" AS "weird", "e"."back`tick""#));
    let leaf = sql(&ev, "recon.by_id.sink.leaf_diff");
    assert!(
        leaf.contains(r#"FROM "analytics"."events" FINAL WHERE "tenant" = {sink_filter_0:Int64}"#),
        "{leaf}"
    );
    assert!(
        sql(&ev, "sink.create").contains(r#"ENGINE = ReplacingMergeTree("ver") ORDER BY ("id")"#)
    );
}

#[test]
fn mysql_stage_insert_has_one_tuple_per_row() {
    let s = stage_insert(&testing::users_orders(), 3).unwrap();
    assert_eq!(s.params.len(), 15);
    assert!(s.sql()[0].ends_with("VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)"));
}

/// Every statement sqlparser's own dialect parser accepts round-trips to the same text.
#[test]
fn reparses() {
    use sqlparser::dialect::{ClickHouseDialect, MySqlDialect, PostgreSqlDialect};
    for p in testing::all() {
        for s in generate(&p).unwrap() {
            let parser: Box<dyn sqlparser::dialect::Dialect> = match s.dialect {
                DialectKind::Postgres => Box::new(PostgreSqlDialect {}),
                DialectKind::Mysql => Box::new(MySqlDialect {}),
                DialectKind::Clickhouse => Box::new(ClickHouseDialect {}),
            };
            for (st, text) in s.statements.iter().zip(s.sql()) {
                // Skipped: own statement kinds, and syntax sqlparser's parsers lack (ClickHouse
                // `{name:Type}` placeholders and `DateTime('UTC')`, PostgreSQL binary COPY);
                // those were run against the real servers instead.
                if !matches!(st, Stmt::Ast(_))
                    || text.contains('{')
                    || text.contains("DateTime('UTC')")
                    || text.starts_with("COPY")
                {
                    continue;
                }
                let parsed = sqlparser::parser::Parser::parse_sql(&*parser, &text)
                    .unwrap_or_else(|e| panic!("{}: {e}\n{text}", s.id));
                assert_eq!(parsed.len(), 1, "{text}");
            }
        }
    }
}

/// `source.row_estimate` reads the catalog's count of the main table, only where that count
/// is the number of rows a full sync streams: no filters, nothing but LEFT joins.
#[test]
fn row_estimate_where_the_table_count_is_the_streams() {
    let has = |p: &crate::ir::Pipeline| {
        generate(p)
            .unwrap()
            .iter()
            .any(|s| s.id == "source.row_estimate")
    };
    // Every fixture filters its source: the table's count is only an upper bound.
    for p in testing::all() {
        assert!(!has(&p), "{}", p.name);
    }

    // PostgreSQL with a schema and a LEFT join, just before the extract.
    let mut p = testing::users_orders();
    p.source.filters.clear();
    let steps = generate(&p).unwrap();
    let at = steps
        .iter()
        .position(|s| s.id == "source.row_estimate")
        .expect("no source.row_estimate");
    assert_eq!(steps[at + 1].id, "source.extract");
    let est = &steps[at];
    assert_eq!(
        est.sql(),
        [
            r#"SELECT CAST("c"."reltuples" AS BIGINT) AS "estimate" FROM pg_catalog.pg_class AS "c" JOIN pg_catalog.pg_namespace AS "n" ON "n"."oid" = "c"."relnamespace" WHERE "n"."nspname" = $1 AND "c"."relname" = $2"#
        ]
    );
    let names: Vec<&str> = est.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["schema", "table"]);
    // Without a schema, the table the search path finds, as the extract does.
    p.source.table.table.schema = None;
    assert_eq!(
        sql(&generate(&p).unwrap(), "source.row_estimate"),
        r#"SELECT CAST("c"."reltuples" AS BIGINT) AS "estimate" FROM pg_catalog.pg_class AS "c" WHERE "c"."relname" = $1 AND pg_table_is_visible("c"."oid")"#
    );
    // Inner, right and full joins drop or add rows of the main table: no estimate.
    for kind in [
        crate::ir::JoinKind::Inner,
        crate::ir::JoinKind::Right,
        crate::ir::JoinKind::Full,
    ] {
        p.source.joins[0].kind = kind;
        assert!(!has(&p), "{kind:?}");
    }

    // MySQL without a schema.
    let mut p = testing::collapse_to_ch();
    p.source.filters.clear();
    assert_eq!(
        sql(&generate(&p).unwrap(), "source.row_estimate"),
        "SELECT table_rows AS `estimate` FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?"
    );

    // ClickHouse with a database.
    let mut p = testing::pg_to_ch_upsert();
    p.source.filters.clear();
    p.source.store = testing::store("ch_src", DialectKind::Clickhouse);
    p.source.table.table.schema = Some("raw".into());
    assert_eq!(
        sql(&generate(&p).unwrap(), "source.row_estimate"),
        r#"SELECT sum(rows) AS "estimate" FROM system.parts WHERE database = {schema:String} AND table = {table:String} AND active = 1"#
    );
}

/// The pipelines of `yaml` (datastores `pg`, `my`, `ch`), checked.
fn pipelines(yaml: &str) -> Vec<crate::ir::Pipeline> {
    let env = std::collections::HashMap::<String, String>::new();
    let text = format!(
        "datastores:\n  - {{name: pg, type: postgres, host: h, database: d}}\n  - {{name: my, type: mysql, host: h, database: d}}\n  - {{name: ch, type: clickhouse, host: h, database: d}}\n{yaml}"
    );
    match crate::driver::frontend("t.yaml", &text, &env, &[]) {
        Ok(fe) => fe.checked.program.pipelines,
        Err(failed) => panic!("{}", failed.render()),
    }
}

/// Source and sink reads of a date, datetime, float, renamed and computed column in both
/// directions between `a` and `b`, keyed by the date, reconciled by it and by the id.
fn reads(a: &str, b: &str) -> String {
    format!(
        r#"pipelines:
  - name: reads
    source:
      datastore: {a}
      table: t
      filters: [{{column: d, operator: '>=', value: '2000-01-01'}}]
      fields:
        - {{column: id, dtype: int}}
        - {{column: d, dtype: date}}
        - {{column: at, dtype: datetime}}
        - {{column: f, dtype: float}}
        - {{column: other, dtype: int, alias: id2}}
        - {{column: id2, dtype: int, alias: k}}
    sink:
      datastore: {b}
      table: s
      merge_strategy: {{strategy: upsert, allow_delete: true}}
      unique_key: [k, d]
      meta_columns: {{hash_column: h}}
      fields:
        - {{column: k, source_column: k}}
        - {{column: d, source_column: d}}
        - {{column: at, source_column: at}}
        - {{column: f, source_column: f}}
        - {{column: id, source_column: id}}
        - {{column: f2, dtype: float, source_column: "f * 2"}}
    reconciliation:
      - {{name: by_id, partition_column: id, initial_partition_interval: 100}}
      - {{name: by_day, strategy: hash_md5_hash, partition_column: d, initial_partition_interval: 30}}
      - {{name: inc, strategy: timestamp, partition_column: d}}
"#
    )
}

/// A query's aliased SELECT items (alias, expression) and its ORDER BY expressions.
type SelectParts = (
    Vec<(String, sqlparser::ast::Expr)>,
    Vec<sqlparser::ast::Expr>,
);

/// The aliased items of a query's SELECT list, and its ORDER BY expressions.
fn select_parts(st: &Stmt) -> Option<SelectParts> {
    use sqlparser::ast::{OrderByKind, SelectItem, SetExpr, Statement};
    let Stmt::Ast(s) = st else { return None };
    let Statement::Query(q) = s.as_ref() else {
        return None;
    };
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return None;
    };
    let items = sel
        .projection
        .iter()
        .filter_map(|i| match i {
            SelectItem::ExprWithAlias { expr, alias } => Some((alias.value.clone(), expr.clone())),
            _ => None,
        })
        .collect();
    let order = match q.order_by.as_ref().map(|o| &o.kind) {
        Some(OrderByKind::Expressions(e)) => e.iter().map(|o| o.expr.clone()).collect(),
        _ => vec![],
    };
    Some((items, order))
}

fn is_column(e: &sqlparser::ast::Expr, name: &str) -> bool {
    matches!(e, sqlparser::ast::Expr::Identifier(i) if i.value == name)
}

/// ClickHouse lets a SELECT alias stand for its expression everywhere in the query: a read
/// that converts a column (`toInt32("d")`, `toTimeZone`, `toFloat64`), renames one or
/// computes one is never aliased to a name the query's tables may have, so its range
/// predicates, filters and row hashes see the columns themselves. Only the bare column of
/// the same name, or synctool's own `_synctool_` names, keep their alias.
#[test]
fn clickhouse_reads_never_alias_a_column_name_to_another_expression() {
    let mut all = pipelines(&reads("ch", "ch"));
    all.extend(pipelines(&reads("pg", "ch")));
    all.extend(pipelines(&reads("ch", "pg")));
    all.extend(testing::all());
    let mut checked = 0;
    for p in &all {
        for s in generate(p).unwrap() {
            if s.dialect != DialectKind::Clickhouse
                || !(s.id.starts_with("source.extract")
                    || s.id.starts_with("recon.")
                    || s.id == "source.keys"
                    || s.id == "sink.keys")
            {
                continue;
            }
            for st in &s.statements {
                let Some((items, _)) = select_parts(st) else {
                    continue;
                };
                for (alias, expr) in items {
                    assert!(
                        alias.starts_with("_synctool_") || is_column(&expr, &alias),
                        "{} {}: `{expr} AS {alias}`\n{st}",
                        p.name,
                        s.id
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 50, "{checked}");
    let ch = generate(&pipelines(&reads("ch", "ch"))[0]).unwrap();
    let extract = sql(&ch, "source.extract");
    assert!(
        extract.contains(r#"toInt32("d") AS "_synctool_read_d""#)
            && extract.contains(r#""d" >= "#)
            && extract.contains(r#""other" AS "_synctool_read_id2""#),
        "{extract}"
    );
    // Errors still name the columns by their own names.
    assert_eq!(
        step(&ch, "recon.by_day.sink.leaf_diff").statements[0].result_columns(),
        ["k", "d", "_synctool_hash"]
    );
}

/// PostgreSQL and MySQL take a bare name in ORDER BY for the result column of that name
/// first: a field renamed to another source column's name (`other AS id2` beside
/// `id2 AS k`, the key) is renamed in the extract, which orders by the key column itself.
#[test]
fn an_alias_never_takes_the_place_of_an_order_column() {
    for d in ["pg", "my"] {
        let steps = generate(&pipelines(&reads(d, "pg"))[0]).unwrap();
        let mut checked = 0;
        for s in steps.iter().filter(|s| {
            s.side == Side::Source && s.id.contains("extract") || s.id.ends_with("leaf_diff")
        }) {
            for st in &s.statements {
                let Some((items, order)) = select_parts(st) else {
                    continue;
                };
                for (alias, expr) in &items {
                    let shadows = order.iter().any(|o| is_column(o, alias));
                    assert!(
                        !shadows || is_column(expr, alias),
                        "{d} {}: `{expr} AS {alias}` is also an ORDER BY column\n{st}",
                        s.id
                    );
                }
                checked += 1;
            }
        }
        assert!(checked >= 4, "{d}: {checked}");
        let extract = sql(&steps, "source.extract");
        assert!(extract.contains("_synctool_read_id2"), "{d}: {extract}");
    }
}

/// A collapse sink is reconciled per version with its sign sum: a version not live exactly
/// once (sum 2, or below zero) hashes as a value that never matches, and every cancel
/// brings a version's sum to zero whatever it is (ClickHouse by repeating ±1 rows, the
/// plain tables by one row of the opposite sum); a leaf cancels only its own range's keys.
#[test]
fn collapse_sinks_are_read_and_cancelled_by_sign_sum() {
    let mut my = testing::collapse_to_pg();
    my.sink.store = testing::store("my2", DialectKind::Mysql);
    for (p, q) in [
        (testing::collapse_to_ch(), '"'),
        (testing::collapse_to_pg(), '"'),
        (my, '`'),
    ] {
        let steps = generate(&p).unwrap();
        let name = &p.name;
        let qt = |s: &str| s.replace('"', &q.to_string());
        let versions = qt(r#"sum("sign") AS "_synctool_sign""#);
        for what in [
            "block_hash",
            "leaf_diff",
            "nulls",
            "null_leaf_diff",
            "range",
        ] {
            let s = sql(&steps, &format!("recon.daily.sink.{what}"));
            assert!(s.contains(&versions), "{name} {what}: {s}");
            assert!(
                s.contains(&qt(r#"HAVING sum("sign") <> 0"#)),
                "{name} {what}: {s}"
            );
            if what != "range" {
                assert!(
                    s.contains(&qt(r#"CASE WHEN "_synctool_sign" = 1 THEN "#)),
                    "{name} {what}: {s}"
                );
            }
        }
        let merge = sql(&steps, "sink.merge");
        assert!(
            merge.contains(&qt(r#"HAVING sum("sign") <> 0 AND (sum("sign") <> 1 OR "#)),
            "{name}: {merge}"
        );
        let neutral = if p.sink.store.kind == crate::ir::StoreKind::Sql(DialectKind::Clickhouse) {
            r#"arrayJoin(replicate(if("_synctool_sign" > 0, -1, 1), range(toUInt64(abs("_synctool_sign")))))"#
                .to_string()
        } else {
            qt(r#"-"_synctool_sign" FROM"#)
        };
        for id in [
            "sink.merge",
            "sink.delete_keys",
            "sink.delete_absent",
            "recon.daily.sink.cancel_leaf_keys",
            "recon.daily.sink.cancel_null_leaf_keys",
        ] {
            let s = sql(&steps, id);
            assert!(s.contains(&neutral), "{name} {id}: {s}");
        }
        let leaf = sql(&steps, "recon.daily.sink.cancel_leaf_keys");
        assert!(leaf.contains(&qt(r#""updated_at" >= "#)), "{name}: {leaf}");
        let null_leaf = sql(&steps, "recon.daily.sink.cancel_null_leaf_keys");
        assert!(
            null_leaf.contains(&qt(r#""updated_at" IS NULL"#)),
            "{name}: {null_leaf}"
        );
    }
}

/// A sink with a field synctool computes (a template) and no `hash_column` keeps no row
/// hash, so the extract computes none; with a `hash_column` it does, for the load to
/// write.
#[test]
fn the_extract_computes_a_row_hash_only_for_a_hash_column() {
    let yaml = |meta: &str| {
        format!(
            r#"pipelines:
  - name: p
    source:
      datastore: pg
      table: t
      fields: [{{column: id, dtype: int}}, {{column: s, dtype: str}}]
    sink:
      datastore: my
      table: s
      unique_key: [id]{meta}
      fields:
        - {{column: id, source_column: id}}
        - {{column: g, dtype: str, source_column: "TMPL(hi {{{{ s }}}})"}}
"#
        )
    };
    let extract = |meta: &str| {
        sql(
            &generate(&pipelines(&yaml(meta))[0]).unwrap(),
            "source.extract",
        )
    };
    let without = extract("");
    assert!(!without.contains("_synctool_hash"), "{without}");
    let with = extract("\n      meta_columns: {hash_column: h}");
    assert!(with.contains("_synctool_hash"), "{with}");
}

/// `sink.analyze` (`ANALYZE TABLE`) is a MySQL sink's only: PostgreSQL's autovacuum
/// analyzes a loaded table soon, and ClickHouse keeps no such statistics.
#[test]
fn only_a_mysql_sink_refreshes_the_statistics_of_a_new_table() {
    for (store, want) in [("my", true), ("pg", false), ("ch", false)] {
        let yaml = format!(
            "pipelines:\n  - name: p\n    source: {{datastore: pg, table: t, fields: [{{column: id, dtype: int}}]}}\n    sink: {{datastore: {store}, table: s, unique_key: [id], merge_strategy: {{strategy: collapse}}}}\n"
        );
        let steps = generate(&pipelines(&yaml)[0]).unwrap();
        let got = steps.iter().find(|s| s.id == "sink.analyze");
        assert_eq!(got.is_some(), want, "{store}");
        if want {
            assert_eq!(sql(&steps, "sink.analyze"), "ANALYZE TABLE `s`");
        }
    }
}
