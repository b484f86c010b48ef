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
