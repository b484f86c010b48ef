//! Checker tests on whole configs: the examples, the seed README's snippets, and the errors
//! of SPEC §6 with their YAML paths and spans.

use crate::driver::{frontend, Failed, Frontend};
use crate::ir::{FieldValue, SinkHash};
use std::collections::HashMap;

fn ok(text: &str) -> Frontend {
    let env: HashMap<String, String> = HashMap::new();
    match frontend("t.yaml", text, &env, &[]) {
        Ok(f) => f,
        Err(e) => panic!("expected ok:\n{}", e.render()),
    }
}

/// The messages of `f`'s errors (not its warnings).
fn error_messages(f: &Failed) -> Vec<&str> {
    f.diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.message.as_str())
        .collect()
}

fn fail(text: &str) -> Failed {
    let env: HashMap<String, String> = HashMap::new();
    match frontend("t.yaml", text, &env, &[]) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e,
    }
}

const EXAMPLES: &[(&str, &str)] = &[
    ("quickstart", include_str!("../../examples/quickstart.yaml")),
    (
        "pg_to_pg_upsert",
        include_str!("../../examples/pg_to_pg_upsert.yaml"),
    ),
    (
        "mysql_to_pg_delete_insert",
        include_str!("../../examples/mysql_to_pg_delete_insert.yaml"),
    ),
    (
        "pg_to_clickhouse_upsert",
        include_str!("../../examples/pg_to_clickhouse_upsert.yaml"),
    ),
    (
        "pg_to_clickhouse_collapse",
        include_str!("../../examples/pg_to_clickhouse_collapse.yaml"),
    ),
    ("recon_uuid", include_str!("../../examples/recon_uuid.yaml")),
    (
        "timestamp_incremental",
        include_str!("../../examples/timestamp_incremental.yaml"),
    ),
    ("enrichment", include_str!("../../examples/enrichment.yaml")),
    (
        "webhook_and_nats",
        include_str!("../../examples/webhook_and_nats.yaml"),
    ),
    (
        "nats_source",
        include_str!("../../examples/nats_source.yaml"),
    ),
];

#[test]
fn every_example_checks() {
    for (name, text) in EXAMPLES {
        let env: HashMap<String, String> = HashMap::new();
        if let Err(e) = frontend(name, text, &env, &[]) {
            panic!("{name}:\n{}", e.render());
        }
    }
}

#[test]
fn quickstart_resolves_like_the_seed_intends() {
    let fe = ok(EXAMPLES[0].1);
    let p = &fe.checked.program.pipelines[0];
    // `users.id` in the join condition is rewritten to the alias `u`.
    assert_eq!(p.source.joins[0].on.to_string(), "u.id = o.user_id");
    let by_col = |c: &str| p.sink.fields.iter().find(|f| f.column == c).unwrap();
    assert!(matches!(&by_col("sname").value, FieldValue::Column { alias } if alias == "name"));
    // The left join's missing order id is 0, in the source query.
    assert!(matches!(&by_col("sid").value, FieldValue::Pushed { .. }));
    assert!(matches!(&by_col("label").value, FieldValue::Template(_)));
    assert!(
        matches!(&by_col("big_spender").value, FieldValue::Pushed { .. }),
        "the lambda is pushed down to postgres"
    );
    assert!(
        matches!(&by_col("redis_name").value, FieldValue::Enrichment { name, output } if name == "redis1" && output == "redis_name")
    );
    assert!(matches!(&p.row_hash.sink, SinkHash::Stored(h) if h == "_synctool_hash"));
    let r = &p.reconciliations[0];
    assert_eq!(r.initial_interval, 31_536_000, "1*365*24*60*60 is folded");
    assert!(matches!(r.start, Some(crate::ir::Bound::Const(_))));
    assert!(
        matches!(r.end, Some(crate::ir::Bound::Runtime(_))),
        "now() is evaluated at run time"
    );
}

#[test]
fn seed_enrichment_output_typo_is_accepted_with_a_warning() {
    let text = EXAMPLES[0].1.replace(
        r#"output: 'lambda v: {"redis_name": v}'"#,
        r#"output: 'lambda v: {redis_name":v}'"#,
    );
    let fe = ok(&text);
    assert!(
        fe.checked
            .warnings
            .iter()
            .any(|w| w.message.contains("redis_name")),
        "{:?}",
        fe.checked.warnings
    );
}

#[test]
fn allow_delete_with_a_timestamp_reconciliation_is_warned_about() {
    let text = EXAMPLES[6].1.replace(
        "merge_strategy: {strategy: upsert}",
        "merge_strategy: {strategy: upsert, allow_delete: true}",
    );
    assert_ne!(text, EXAMPLES[6].1);
    let fe = ok(&text);
    let w = fe
        .checked
        .warnings
        .iter()
        .find(|w| w.message.contains("never deletes"))
        .unwrap_or_else(|| panic!("{:?}", fe.checked.warnings));
    assert_eq!(
        w.path.as_deref(),
        Some("pipelines[0].reconciliation[0].strategy")
    );
    assert!(ok(EXAMPLES[6].1).checked.warnings.is_empty());
}

/// Constant bounds that leave nothing between them are refused where `end` is written.
#[test]
fn an_empty_reconciliation_range_is_refused() {
    let text = EXAMPLES[1].1.replace(
        "partition_column: id\n",
        "partition_column: id\n        start: \"100\"\n        end: \"5\"\n",
    );
    assert_ne!(text, EXAMPLES[1].1);
    let e = fail(&text);
    assert_eq!(
        error_messages(&e),
        ["`end` (5) is not after `start` (100): the range is empty"]
    );
}

#[test]
fn transformed_sink_needs_a_hash_column_to_reconcile() {
    let text = EXAMPLES[0].1.replace(
        "      meta_columns:\n        hash_column: _synctool_hash\n",
        "",
    );
    let e = fail(&text);
    let d = &e.diagnostics[0];
    assert!(d.message.contains("cannot recompute"), "{}", d.message);
    assert_eq!(
        d.path.as_deref(),
        Some("pipelines[0].reconciliation[0].name")
    );
}

#[test]
fn errors_carry_path_and_span() {
    let text = EXAMPLES[1].1.replace(
        "partition_column_type: int",
        "partition_column_type: integr",
    );
    let e = fail(&text);
    let d = &e.diagnostics[0];
    assert_eq!(
        d.path.as_deref(),
        Some("pipelines[0].reconciliation[0].partition_column_type")
    );
    let span = d.span.unwrap();
    assert_eq!(&text[span.start..span.end], "integr");
    assert_eq!(d.help.as_deref(), Some("did you mean `int`?"));
}

#[test]
fn type_error_in_lambda_points_at_the_comparison() {
    let text = EXAMPLES[0]
        .1
        .replace(r#"r["o__total"]>1000"#, r#"r["name"]>1000"#);
    let e = fail(&text);
    let d = e
        .diagnostics
        .iter()
        .find(|d| d.path.as_deref() == Some("pipelines[0].sink.fields[4].source_column"))
        .expect("located");
    let span = d.span.unwrap();
    assert_eq!(&text[span.start..span.end], r#"r["name"]>1000"#);
}

#[test]
fn unknown_references_suggest() {
    let text = EXAMPLES[1]
        .1
        .replace("source_column: email}", "source_column: emial}");
    let e = fail(&text);
    assert!(
        e.diagnostics
            .iter()
            .any(|d| d.help.as_deref() == Some("did you mean `email`?")),
        "{}",
        e.render()
    );
    let text = EXAMPLES[0]
        .1
        .replace("on: \"users.id = o.user_id\"", "on: \"usr.id = o.user_id\"");
    let e = fail(&text);
    assert!(e.render().contains("unknown table `usr`"), "{}", e.render());
}

#[test]
fn join_conditions_reject_anything_but_comparisons() {
    let text = EXAMPLES[0]
        .1
        .replace("on: \"users.id = o.user_id\"", "on: \"u.id = (SELECT 1)\"");
    let e = fail(&text);
    assert!(
        e.render().contains("not allowed in a join condition"),
        "{}",
        e.render()
    );
}

#[test]
fn filters_are_typed() {
    let text = EXAMPLES[0].1.replace("value: TRUE", "value: 'yes'");
    // `u.active` is not a selected field, so its type is unknown: text is accepted.
    ok(&text);
    let text = EXAMPLES[2].1.replace("value: 0}", "value: abc}");
    let e = fail(&text);
    assert!(
        e.render()
            .contains("does not fit the column type decimal(12,2)"),
        "{}",
        e.render()
    );
}

#[test]
fn tls_settings_are_checked_where_they_are_written() {
    // mysql_to_pg_delete_insert sets `sslmode: prefer` on its PostgreSQL sink.
    let base = EXAMPLES[2].1;
    assert!(base.contains("sslmode: prefer"));
    for mode in crate::config::TlsMode::NAMES {
        ok(&base.replace("sslmode: prefer", &format!("sslmode: {mode}")));
    }
    ok(&base.replace(
        "sslmode: prefer",
        "sslmode: verify-full\n    sslrootcert: /etc/ssl/ca.pem",
    ));

    let text = base.replace("sslmode: prefer", "sslmode: verify-fll");
    let d = &fail(&text).diagnostics[0];
    let span = d.span.unwrap();
    assert_eq!(&text[span.start..span.end], "verify-fll");
    assert!(
        d.path.as_deref().unwrap().ends_with(".sslmode"),
        "{:?}",
        d.path
    );
    assert_eq!(d.help.as_deref(), Some("did you mean `verify-full`?"));

    let text = base.replace("sslmode: prefer", "sslmode: require\n    tls: true");
    let d = &fail(&text).diagnostics[0];
    assert!(
        d.message.contains("either `sslmode` or `tls`"),
        "{}",
        d.message
    );

    let text = base.replace("sslmode: prefer", "tls: false\n    sslrootcert: /ca.pem");
    let d = &fail(&text).diagnostics[0];
    let span = d.span.unwrap();
    assert_eq!(&text[span.start..span.end], "/ca.pem");

    ok(&base.replace(
        "sslmode: prefer",
        "sslmode: verify-full\n    sslcert: /c.pem\n    sslkey: /c.key",
    ));
    let text = base.replace("sslmode: prefer", "sslmode: require\n    sslcert: /c.pem");
    let d = &fail(&text).diagnostics[0];
    assert_eq!(d.message, "`sslcert` needs `sslkey`");
    let span = d.span.unwrap();
    assert_eq!(&text[span.start..span.end], "/c.pem");
    let text = base.replace(
        "sslmode: prefer",
        "sslmode: disable\n    sslcert: /c.pem\n    sslkey: /c.key",
    );
    let f = fail(&text);
    assert_eq!(f.diagnostics.len(), 2, "{:?}", f.diagnostics);
    assert!(f.diagnostics[1].message.contains("`sslkey` has no effect"));
}

#[test]
fn redis_and_nats_take_the_tls_keys_and_http_stores_refuse_them() {
    let enrichment = include_str!("../../examples/enrichment.yaml");
    let redis = "    port: 6379\n    db: 0\n";
    assert!(enrichment.contains(redis));
    ok(&enrichment.replace(
        redis,
        "    port: 6380\n    db: 0\n    sslmode: verify-ca\n    sslrootcert: /ca.pem\n    sslcert: /c.pem\n    sslkey: /c.key\n",
    ));
    let text = enrichment.replace(
        redis,
        "    port: 6380\n    db: 0\n    sslmode: verify-fll\n",
    );
    let d = &fail(&text).diagnostics[0];
    assert_eq!(d.help.as_deref(), Some("did you mean `verify-full`?"));

    let text = enrichment.replace("    timeout: 5\n", "    timeout: 5\n    tls: true\n");
    let d = &fail(&text).diagnostics[0];
    assert_eq!(d.message, "`tls` does not apply to an http external store");
    assert!(d.path.as_deref().unwrap().ends_with(".tls"), "{:?}", d.path);

    let nats = include_str!("../../examples/webhook_and_nats.yaml");
    let servers = r#"servers: ["nats://127.0.0.1:4222"]"#;
    assert!(nats.contains(servers));
    ok(&nats.replace(
        servers,
        "servers: [\"tls://127.0.0.1:4223\"]\n    sslrootcert: /ca.pem",
    ));
    let text = nats.replace(
        servers,
        "servers: [\"tls://127.0.0.1:4223\"]\n    tls: false",
    );
    let d = &fail(&text).diagnostics[0];
    assert!(d.message.contains("needs TLS"), "{}", d.message);
    let span = d.span.unwrap();
    assert_eq!(&text[span.start..span.end], "tls://127.0.0.1:4223");
}

const NATS_SOURCE: &str = r#"
datastores:
  - {name: pg, type: postgres, host: 127.0.0.1, username: u, database: d}
  - {name: bus, type: nats, servers: ["nats://127.0.0.1:4222"], subject: orders, stream: ORDERS, durable: sync}
pipelines:
  - name: from_bus
    source:
      datastore: bus
      fields:
        - {column: id, dtype: int}
        - {column: total, dtype: "decimal(10,2)"}
    sink:
      datastore: pg
      table: orders
      unique_key: [id]
      fields:
        - {column: id, source_column: id}
        - {column: total, source_column: total}
        - {column: big, dtype: int, source_column: 'lambda r: 1 if r["total"] > 100 else 0'}
"#;

#[test]
fn a_nats_source_checks_and_evaluates_expressions_in_the_runtime() {
    let fe = ok(NATS_SOURCE);
    let p = &fe.checked.program.pipelines[0];
    // Nothing can be pushed into a query a NATS source does not have.
    assert!(p.source.pushed.is_empty());
    assert!(matches!(p.sink.fields[2].value, FieldValue::Expr(_)));
}

#[test]
fn a_template_without_its_closing_paren_says_so() {
    let text = EXAMPLES[0].1.replace(
        "'TMPL({{ name }} - ${{ o__total }})'",
        "'TMPL({{ name }} - ${{ o__total }}'",
    );
    assert_ne!(text, EXAMPLES[0].1);
    assert_eq!(
        error_messages(&fail(&text)),
        ["a template is written `TMPL(...)`: the closing `)` is missing"]
    );
}

/// A bare number is a constant, not a column named `1e5`.
#[test]
fn a_bare_number_is_a_constant() {
    for text in ["1e5", "1.5e3", "42", "0.25"] {
        let cfg = NATS_SOURCE.replace(
            "source_column: 'lambda r: 1 if r[\"total\"] > 100 else 0'",
            &format!("source_column: \"{text}\""),
        );
        let cfg = cfg.replace("{column: big, dtype: int,", "{column: big, dtype: float,");
        let fe = ok(&cfg);
        let f = &fe.checked.program.pipelines[0].sink.fields[2];
        assert!(!matches!(f.value, FieldValue::Column { .. }), "{text}");
    }
}

#[test]
fn a_nats_source_refuses_sql_only_settings_with_path_and_span() {
    let cases = [
        (
            "      fields:\n        - {column: id",
            "      filters:\n        - {column: id, operator: '>', value: 5}\n      fields:\n        - {column: id",
            "a NATS source cannot have filters",
            "pipelines[0].source.filters[0].column",
            "id",
        ),
        (
            "      fields:\n        - {column: id",
            "      joins:\n        - {table: customers, on: \"customers.id = id\"}\n      fields:\n        - {column: id",
            "a NATS source cannot have joins",
            "pipelines[0].source.joins[0].table",
            "customers",
        ),
        (
            "      unique_key: [id]",
            "      unique_key: [id]\n      merge_strategy: {strategy: upsert, allow_delete: true}",
            "`allow_delete` cannot be used with a NATS source",
            "pipelines[0].sink.merge_strategy.allow_delete",
            "true",
        ),
        (
            "      unique_key: [id]",
            "      unique_key: [id]\n      meta_columns: {hash_column: h}",
            "a NATS source has no row hash to store in `hash_column`",
            "pipelines[0].sink.meta_columns.hash_column",
            "h",
        ),
    ];
    for (from, to, message, path, at) in cases {
        let text = NATS_SOURCE.replacen(from, to, 1);
        assert_ne!(text, NATS_SOURCE);
        let f = fail(&text);
        let d = f
            .diagnostics
            .iter()
            .find(|d| d.message == message)
            .unwrap_or_else(|| panic!("no `{message}` in:\n{}", f.render()));
        assert_eq!(d.path.as_deref(), Some(path), "{}", f.render());
        let span = d.span.unwrap();
        assert_eq!(&text[span.start..span.end], at);
        assert!(f.render().contains("t.yaml:"), "{}", f.render());
    }
}

#[test]
fn sink_names_longer_than_the_database_keeps_are_refused() {
    let long = "c".repeat(64);
    let text = EXAMPLES[1]
        .1
        .replace("table: accounts_copy", &format!("table: {long}"));
    let e = fail(&text);
    let d = &e.diagnostics[0];
    assert!(
        d.message
            .contains("is 64 bytes long; PostgreSQL names hold at most 63"),
        "{}",
        e.render()
    );
    let span = d.span.unwrap();
    assert_eq!(&text[span.start..span.end], long);
    // 63 bytes is fine; a multi-byte name counts bytes.
    ok(&EXAMPLES[1].1.replace(
        "table: accounts_copy",
        &format!("table: {}", "c".repeat(63)),
    ));
    let e = fail(&EXAMPLES[1].1.replace(
        "table: accounts_copy",
        &format!("table: {}", "é".repeat(32)),
    ));
    assert!(e.render().contains("is 64 bytes long"), "{}", e.render());
    // `schema.table` is two names, each within the limit.
    ok(&EXAMPLES[1].1.replace(
        "table: accounts_copy\n      dbschema: public",
        &format!("table: shop.{}", "c".repeat(60)),
    ));
    let e = fail(&EXAMPLES[1].1.replace(
        "table: accounts_copy\n      dbschema: public",
        &format!("table: {}.t", "s".repeat(64)),
    ));
    assert!(e.render().contains("is 64 bytes long"), "{}", e.render());
}

#[test]
fn datastores_may_share_settings_through_merge_keys_and_x_keys() {
    let text = EXAMPLES[1].1.replace(
        "datastores:
  - name: app
    type: postgres
    host: ${PGHOST:-127.0.0.1}
    port: 5432
    username: ${PGUSER:-postgres}
    password: ${PGPASSWORD:-}
    database: test
  - name: warehouse
    type: postgres
    host: ${PGHOST:-127.0.0.1}
    port: 5432
    username: ${PGUSER:-postgres}
    password: ${PGPASSWORD:-}
    database: test
",
        "x-pg: &pg {type: postgres, host: 127.0.0.1, port: 5432, username: postgres, database: test}
datastores:
  - {<<: *pg, name: app}
  - {<<: *pg, name: warehouse, database: dw}
",
    );
    assert!(
        text.starts_with("# PostgreSQL") && text.contains("x-pg"),
        "replaced"
    );
    let fe = ok(&text);
    let raw = &fe.loaded.raw.datastores;
    assert_eq!(raw.len(), 2);
    let db = |i: usize| raw[i].database.as_ref().map(|d| d.value.clone());
    assert_eq!(db(0).as_deref(), Some("test"));
    assert_eq!(db(1).as_deref(), Some("dw"), "a key of its own wins");
    // An `x-` key is not read: an unset variable in it is no error, and an anchor's variable
    // is expanded where the anchor is used.
    let text = text.replace(
        "x-pg: &pg {type: postgres, host: 127.0.0.1,",
        "x-unused: {password: \"${NOPE_UNSET}\"}\nx-pg: &pg {type: postgres, host: \"${NOPE_HOST:-10.0.0.9}\",",
    );
    assert!(text.contains("x-unused"), "replaced");
    let fe = ok(&text);
    let host = fe.loaded.raw.datastores[0]
        .host
        .as_ref()
        .map(|h| h.value.clone());
    assert_eq!(host.as_deref(), Some("10.0.0.9"));
    let e = fail(&text.replace("${NOPE_HOST:-10.0.0.9}", "${NOPE_HOST}"));
    assert_eq!(e.error_count(), 2, "once per use:\n{}", e.render());
}

#[test]
fn only_expressions_the_field_reads_as_they_are_are_pushed_down() {
    let text = r#"
datastores:
  - {name: pg, type: postgres, host: 127.0.0.1, username: u, database: d}
pipelines:
  - name: p
    source:
      datastore: pg
      table: t
      fields:
        - {column: id, dtype: int}
        - {column: amount, dtype: "decimal(10,2)"}
        - {column: at, dtype: datetime}
    sink:
      datastore: pg
      table: s
      unique_key: [id]
      fields:
        - {column: id, source_column: id}
        - {column: as_float, dtype: float, source_column: "id + 1"}
        - {column: id_text, dtype: str, source_column: "id * 2"}
        - {column: scaled, dtype: "decimal(12,1)", source_column: "amount * amount"}
        - {column: float_text, dtype: str, source_column: "id * 1.5"}
        - {column: decimal_text, dtype: str, source_column: "amount * 2"}
        - {column: bool_text, dtype: str, source_column: "id > 0"}
        - {column: time_text, dtype: str, source_column: "coalesce(at, at)"}
"#;
    let fe = ok(text);
    let p = &fe.checked.program.pipelines[0];
    let value = |c: &str| &p.sink.fields.iter().find(|f| f.column == c).unwrap().value;
    for pushed in ["as_float", "id_text", "scaled"] {
        assert!(
            matches!(value(pushed), FieldValue::Pushed { .. }),
            "{pushed}"
        );
    }
    // A float, decimal, bool or datetime as text: each database writes its own text, and
    // the extract could not read it as a str; the runtime converts them.
    for runtime in ["float_text", "decimal_text", "bool_text", "time_text"] {
        assert!(matches!(value(runtime), FieldValue::Expr(_)), "{runtime}");
    }
    let scaled = p
        .source
        .pushed
        .iter()
        .find(|x| x.alias == "_expr_scaled")
        .unwrap();
    assert_eq!(scaled.round_to, Some(1));
}

#[test]
fn a_full_join_on_a_mysql_source_is_refused_where_it_is_written() {
    let text = r#"
datastores:
  - {name: my, type: mysql, host: 127.0.0.1, username: u, database: d}
pipelines:
  - name: p
    source:
      datastore: my
      table: {table: users, alias: u}
      joins:
        - {table: orders, alias: o, type: full, on: "u.id = o.user_id"}
      fields:
        - {column: u.id, dtype: int, alias: id}
    sink:
      datastore: my
      table: s
      unique_key: [id]
"#;
    let f = fail(text);
    assert_eq!(f.diagnostics.len(), 1, "{:?}", f.diagnostics);
    let d = &f.diagnostics[0];
    assert_eq!(d.message, "MySQL and MariaDB have no FULL JOIN");
    assert_eq!(d.path.as_deref(), Some("pipelines[0].source.joins[0].type"));
    // The same join on PostgreSQL is fine.
    ok(&text.replace("type: mysql", "type: postgres"));
}

#[test]
fn mysql_sink_fields_differing_only_in_case_are_refused_where_written() {
    let text = r#"
datastores:
  - {name: my, type: mysql, host: 127.0.0.1, username: u, database: d}
pipelines:
  - name: p
    source:
      datastore: my
      table: users
      fields:
        - {column: id, dtype: int}
        - {column: name, dtype: str}
    sink:
      datastore: my
      table: s
      unique_key: [id]
      fields:
        - {column: id, source_column: id}
        - {column: ID, source_column: name}
"#;
    let f = fail(text);
    let msgs = error_messages(&f);
    assert_eq!(
        msgs,
        vec!["sink fields `id` and `ID` name one column: MySQL column names ignore case"],
        "{:?}",
        f.diagnostics
    );
    let d = f.diagnostics.iter().find(|d| d.is_error()).unwrap();
    assert_eq!(
        d.path.as_deref(),
        Some("pipelines[0].sink.fields[1].column")
    );
    let span = d.span.unwrap();
    assert_eq!(&text[span.start..span.end], "ID");
    // PostgreSQL keeps them apart.
    ok(&text.replace("type: mysql", "type: postgres"));
}

#[test]
fn dotted_table_names_are_schema_and_table_and_joins_share_the_source_schema() {
    let text = r#"
datastores:
  - {name: pg, type: postgres, host: 127.0.0.1, username: u, database: d}
pipelines:
  - name: p
    source:
      datastore: pg
      table: shop.users
      joins:
        - {table: orders, alias: o, type: left, on: "users.id = o.user_id"}
        - {table: {table: regions, dbschema: geo}, alias: g, on: "users.region = g.id"}
      fields:
        - {column: users.id, dtype: int, alias: id}
    sink:
      datastore: pg
      table: analytics.users_copy
      unique_key: [id]
"#;
    let fe = ok(text);
    let p = &fe.checked.program.pipelines[0];
    let name = |t: &crate::ir::TableName| (t.schema.clone(), t.name.clone());
    let some = |s: &str, n: &str| (Some(s.to_string()), n.to_string());
    assert_eq!(name(&p.source.table.table), some("shop", "users"));
    assert_eq!(name(&p.source.joins[0].table.table), some("shop", "orders"));
    assert_eq!(name(&p.source.joins[1].table.table), some("geo", "regions"));
    assert_eq!(name(&p.sink.table), some("analytics", "users_copy"));
    // With a `dbschema`, the name is taken as it is.
    let fe = ok(&text.replace(
        "table: analytics.users_copy",
        "table: users.copy\n      dbschema: analytics",
    ));
    let p = &fe.checked.program.pipelines[0];
    assert_eq!(name(&p.sink.table), some("analytics", "users.copy"));
}

#[test]
fn a_source_without_fields_reads_the_columns_its_sink_fields_copy() {
    // The seed README's source and sink sections: source `fields` are optional.
    let text = r#"
datastores:
  - {name: db1, type: postgres, host: 127.0.0.1, username: u, database: d}
  - {name: db2, type: mysql, host: 127.0.0.1, username: u, database: d}
pipelines:
  - name: seed_style
    source:
      datastore: db1
      batch_size: 100
      table: {table: users, alias: u, dbschema: public}
      filters:
        - {column: 'u.active', operator: '=', value: TRUE}
    sink:
      datastore: db2
      table: users
      unique_key: [sid]
      fields:
        - {column: sname, dtype: str, source_column: 'u.name'}
        - {column: sid, dtype: int, source_column: 'u.id'}
        - {column: active, dtype: bool, source_column: 'u.active'}
        - {column: label, dtype: str, source_column: 'TMPL({{ u__name }}!)'}
"#;
    let fe = ok(text);
    let p = &fe.checked.program.pipelines[0];
    let fields: Vec<(String, String, String)> = p
        .source
        .fields
        .iter()
        .map(|f| (f.column.to_string(), f.alias.clone(), f.dtype.to_string()))
        .collect();
    let f = |c: &str, a: &str, d: &str| (c.to_string(), a.to_string(), d.to_string());
    assert_eq!(
        fields,
        vec![
            f("u.name", "u__name", "str"),
            f("u.id", "u__id", "int"),
            f("u.active", "u__active", "bool")
        ]
    );
    assert_eq!(p.source.filters.len(), 1);
    // A copying sink field without a dtype cannot type its source column.
    let e = fail(&text.replace(
        "{column: sid, dtype: int, source_column: 'u.id'}",
        "{column: sid, source_column: 'u.id'}",
    ));
    assert!(
        e.diagnostics.iter().any(|d| d
            .message
            .contains("the source has no `fields`, so sink field `sid` needs a `dtype`")
            && d.path.as_deref() == Some("pipelines[0].sink.fields[1].source_column")),
        "{:?}",
        e.diagnostics
    );
}

#[test]
fn a_decimal_wider_than_38_digits_is_named_as_such() {
    let text = r#"
datastores:
  - {name: my, type: mysql, host: 127.0.0.1, username: u, database: d}
pipelines:
  - name: p
    source:
      datastore: my
      table: t
      fields:
        - {column: id, dtype: int}
        - {column: big, dtype: "decimal(65,30)"}
    sink:
      datastore: my
      table: s
      unique_key: [id]
"#;
    let f = fail(text);
    assert_eq!(f.diagnostics.len(), 1, "{:?}", f.diagnostics);
    let d = &f.diagnostics[0];
    assert_eq!(
        d.message,
        "`decimal(65,30)` is not a decimal synctool keeps"
    );
    assert!(
        d.help.iter().any(|h| h.contains("from 1 to 38")),
        "{:?}",
        d.help
    );
}

#[test]
fn a_clickhouse_collapse_sink_refuses_decimals_wider_than_18_digits() {
    let text = r#"
datastores:
  - {name: pg, type: postgres, host: 127.0.0.1, username: u, database: d}
  - {name: ch, type: clickhouse, host: 127.0.0.1, database: d}
pipelines:
  - name: p
    source:
      datastore: pg
      table: t
      fields:
        - {column: id, dtype: int}
        - {column: dd, dtype: "decimal(20,6)"}
        - {column: small, dtype: "decimal(18,6)"}
    sink:
      datastore: ch
      table: s
      merge_strategy: {strategy: collapse}
      unique_key: [id]
      fields:
        - {column: id, source_column: id}
        - {column: dd, source_column: dd}
        - {column: small, source_column: small}
"#;
    let f = fail(text);
    assert_eq!(f.diagnostics.len(), 1, "{:?}", f.diagnostics);
    assert!(f.diagnostics[0]
        .message
        .starts_with("a ClickHouse collapse sink cannot hold `dd` as decimal(20,6)"));
    ok(&text.replace("strategy: collapse", "strategy: upsert"));
    // A sink field taken from the source's has no line of its own: the strategy is shown.
    let (without_fields, _) = text
        .split_once("      fields:\n        - {column: id, source_column")
        .unwrap();
    let f = fail(without_fields);
    let d = &f.diagnostics[0];
    assert!(d.message.contains("cannot hold `dd`"), "{}", d.message);
    let span = d.span.expect("a span");
    assert_eq!(&without_fields[span.start..span.end], "collapse");
}

#[test]
fn a_clickhouse_source_takes_inner_and_left_joins_only() {
    let text = r#"
datastores:
  - {name: ch, type: clickhouse, host: 127.0.0.1, database: d}
pipelines:
  - name: p
    source:
      datastore: ch
      table: {table: facts, alias: f}
      joins:
        - {table: dims, alias: d, type: right, on: "f.dim = d.id"}
      fields:
        - {column: f.id, dtype: int, alias: id}
    sink:
      datastore: ch
      table: s
      unique_key: [id]
"#;
    for kind in ["right", "full"] {
        let f = fail(&text.replace("type: right", &format!("type: {kind}")));
        assert_eq!(f.diagnostics.len(), 1, "{:?}", f.diagnostics);
        assert_eq!(
            f.diagnostics[0].message,
            "a ClickHouse source takes inner and left joins only"
        );
    }
    ok(&text.replace("type: right", "type: left"));
}

/// The fields an enrichment's lookup is built from are in the source row hash, though no
/// sink field copies them: a changed `zip` changes the row, which is then looked up again.
#[test]
fn lookup_inputs_are_in_the_source_row_hash() {
    let text = include_str!("../../examples/enrichment.yaml").replace(
        r#"        - {column: greeting, dtype: str, source_column: "TMPL(Hello {{ name|upper }} from {{ zip }})"}
"#,
        "",
    );
    let text = text.replace(
        r#"key_template: "customer:{{ id }}:segment""#,
        r#"key_template: "customer:{{ code }}:segment""#,
    );
    let text = text.replace(
        "        - {column: c.zip, dtype: str, alias: zip}\n",
        "        - {column: c.zip, dtype: str, alias: zip}\n        - {column: c.code, dtype: str, alias: code}\n        - {column: c.unused, dtype: str, alias: unused}\n",
    );
    assert!(!text.contains("greeting"));
    let fe = ok(&text);
    let p = &fe.checked.program.pipelines[0];
    let names: Vec<&str> = p.row_hash.source.iter().map(|h| h.name.as_str()).collect();
    assert!(names.contains(&"zip"), "{names:?}");
    assert!(names.contains(&"code"), "{names:?}");
    assert!(!names.contains(&"unused"), "{names:?}");
}

/// Two pipelines on one durable consumer would each get part of the messages.
#[test]
fn two_pipelines_cannot_share_a_durable_consumer() {
    let second = NATS_SOURCE
        .split("pipelines:\n")
        .nth(1)
        .unwrap()
        .replace("name: from_bus", "name: from_bus_too")
        .replace("table: orders", "table: orders2");
    let f = fail(&format!("{NATS_SOURCE}{second}"));
    let d = &f.diagnostics[0];
    assert!(
        d.message.contains("pipelines `from_bus` and `from_bus_too` both read NATS datastore `bus` through its durable consumer `sync`"),
        "{}",
        d.message
    );
    assert_eq!(d.path.as_deref(), Some("pipelines[1].source.datastore"));
}

/// `compile` shows where a webhook posts, without the base URL's credentials or token.
#[test]
fn a_webhook_target_is_shown_without_its_secrets() {
    let text = r#"
datastores:
  - {name: pg, type: postgres, host: 127.0.0.1, username: u, database: d}
  - {name: hooks, type: webhook, base_url: "https://user:PwSecret@hooks.example.com/api?token=TokSecret"}
pipelines:
  - name: to_hook
    source:
      datastore: pg
      table: t
      fields: [{column: id, dtype: int}]
    sink:
      datastore: hooks
      url_path: v1/rows
"#;
    let fe = ok(text);
    let p = &fe.checked.program.pipelines[0];
    assert_eq!(
        crate::plan::sink_target(p).as_deref(),
        Some("POST https://hooks.example.com/api/v1/rows")
    );
    // Shown as the runtime joins it: repeated slashes and a query of its own.
    let fe = ok(&text.replace("url_path: v1/rows", "url_path: '//v1/rows?x=1'"));
    assert_eq!(
        crate::plan::sink_target(&fe.checked.program.pipelines[0]).as_deref(),
        Some("POST https://hooks.example.com/api/v1/rows")
    );
    // A path the runtime would refuse is refused here.
    let f = fail(&text.replace("url_path: v1/rows", "url_path: v1/../admin"));
    assert_eq!(
        error_messages(&f),
        ["`url_path`: the path `v1/../admin` has a `.` or `..` segment"]
    );
}

/// `final` is a ClickHouse reading mode: on another source it is an error at its line.
#[test]
fn final_is_for_clickhouse_sources_only() {
    let text = NATS_SOURCE.replace(
        "      datastore: bus\n",
        "      datastore: bus\n      final: true\n",
    );
    let f = fail(&text);
    let d = &f.diagnostics[0];
    assert!(
        d.message
            .contains("`final` applies to ClickHouse sources only"),
        "{}",
        d.message
    );
    assert_eq!(d.path.as_deref(), Some("pipelines[0].source.final"));
}

/// A sink field that fails its own check is one error: the unique key naming it is not
/// reported again as "not a sink field".
#[test]
fn a_broken_key_field_is_reported_once() {
    let text = NATS_SOURCE.replace(
        "        - {column: id, source_column: id}\n",
        "        - {column: id, source_column: idd}\n",
    );
    let f = fail(&text);
    let errors = error_messages(&f);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("`idd`"), "{errors:?}");
}

/// A source field with a bad dtype, and an enrichment with a bad output expression, are
/// one error each: the sink fields naming them are not reported as unknown.
#[test]
fn broken_source_fields_and_enrichments_are_reported_once() {
    let text = NATS_SOURCE.replace(
        "{column: total, dtype: \"decimal(10,2)\"}",
        "{column: total, dtype: decimall}",
    );
    let f = fail(&text);
    let errors = error_messages(&f);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("decimall"), "{errors:?}");
    // Nor by a template that prints it.
    let f = fail(&text.replace(
        "{column: total, source_column: total}",
        "{column: total, source_column: 'TMPL(total {{ total }})'}",
    ));
    let errors = error_messages(&f);
    assert_eq!(errors.len(), 1, "{errors:?}");

    let text = include_str!("../../examples/enrichment.yaml").replace(
        r#"output: 'lambda v: {"city": json_get(v, "city")}'"#,
        r#"output: 'lambda v: {"city": v + 1}'"#,
    );
    let f = fail(&text);
    let errors = error_messages(&f);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(!errors[0].contains("unknown enrichment"), "{errors:?}");
}

#[test]
fn the_stored_row_hash_covers_computed_definitions_but_not_their_layout_or_secrets() {
    let base = include_str!("../../examples/enrichment.yaml");
    let fp = |text: &str| {
        ok(text).checked.program.pipelines[0]
            .row_hash
            .definitions
            .clone()
            .expect("a stored hash over computed fields has a fingerprint")
    };
    let first = fp(base);
    // The same definitions written differently.
    let spaced = base.replace(
        r#"'lambda v: {"city": json_get(v, "city")}'"#,
        r#"'lambda v: { "city" : json_get( v , "city" ) }'"#,
    );
    assert_ne!(spaced, base);
    assert_eq!(fp(&spaced), first);
    // A changed lookup or output is a changed definition.
    let key = base.replace("customer:{{ id }}:segment", "cust:{{ id }}:segment");
    assert_ne!(fp(&key), first);
    let out = base.replace(r#"json_get(v, "city")"#, r#"json_get(v, "town")"#);
    assert_ne!(fp(&out), first);
    // A secret query parameter (a rotated API key) is not part of it.
    let with_key = |k: &str| {
        let t = base.replace(
            "country: \"TMPL(de)\"",
            &format!("country: \"TMPL(de)\"\n          api_key: {k}"),
        );
        assert_ne!(t, base);
        t
    };
    assert_eq!(fp(&with_key("k1")), fp(&with_key("k2")));
}

#[test]
fn a_timestamp_reconciliation_refuses_a_computed_watermark_column_and_a_range() {
    let base = include_str!("../../examples/timestamp_incremental.yaml");
    ok(base);
    let copy = "{column: updated_at, source_column: updated_at}";
    assert!(base.contains(copy));
    let text = base.replace(
        copy,
        r#"{column: updated_at, dtype: datetime, source_column: "lambda r: r['updated_at'] + datetime.timedelta(hours=1)"}"#,
    );
    let f = fail(&text);
    assert!(
        error_messages(&f)
            .iter()
            .any(|m| m.contains("the sink column `updated_at` is computed")),
        "{:?}",
        f.diagnostics
    );
    let text = base.replace(
        "lookback: 10*60",
        "lookback: 10*60\n        start: \"2024-01-01\"",
    );
    let f = fail(&text);
    let d = f
        .diagnostics
        .iter()
        .find(|d| d.message.contains("`start` and `end` do not apply"))
        .expect("start is refused");
    let span = d.span.unwrap();
    assert_eq!(&text[span.start..span.end], "2024-01-01");
}

#[test]
fn a_transformed_timestamp_pipeline_without_a_hash_column_is_warned_about() {
    let base = include_str!("../../examples/timestamp_incremental.yaml");
    let says = |fe: &Frontend| {
        fe.checked
            .warnings
            .iter()
            .any(|w| w.message.contains("no `hash_column` keeps the row hash"))
    };
    assert!(!says(&ok(base)));
    let text = base.replace(
        "{column: subject, source_column: subject}",
        r#"{column: subject, source_column: "TMPL(#{{ subject }})"}"#,
    );
    assert_ne!(text, base);
    assert!(says(&ok(&text)));
    let with_hash = text.replace(
        "      unique_key: [id]\n",
        "      unique_key: [id]\n      meta_columns: {hash_column: h}\n",
    );
    assert_ne!(with_hash, text);
    assert!(!says(&ok(&with_hash)));
}

#[test]
fn a_sink_state_table_is_said_to_be_read_only() {
    let base = include_str!("../../examples/pg_to_pg_upsert.yaml");
    let says = |fe: &Frontend| {
        fe.checked
            .warnings
            .iter()
            .any(|w| w.message.contains("never writes it"))
    };
    assert!(!says(&ok(base)));
    let with_state = |state: &str| {
        let text = base.replacen(
            "    reconciliation:",
            &format!("    sinkstate: {state}\n    reconciliation:"),
            1,
        );
        assert_ne!(text, base);
        text
    };
    assert!(says(&ok(&with_state(
        "{datastore: warehouse, table: accounts_state, partition_column: id, hash_column: checksum}"
    ))));
    // "The same as the sink" is the sink itself, which synctool writes.
    assert!(!says(&ok(&with_state("{use_sink: true}"))));
}

#[test]
fn a_lookback_is_whole_seconds_however_it_is_written() {
    let base = include_str!("../../examples/timestamp_incremental.yaml");
    let lookback = |text: &str| {
        let fe = ok(&base.replace("lookback: 10*60", &format!("lookback: {text}")));
        fe.checked.program.pipelines[0].reconciliations[0].lookback_seconds
    };
    assert_eq!(lookback("600"), 600);
    assert_eq!(lookback("600.0"), 600);
    assert_eq!(lookback("1e3"), 1000);
    assert_eq!(lookback("'datetime.timedelta(minutes=10)'"), 600);
    assert_eq!(lookback("'datetime.timedelta(milliseconds=2000)'"), 2);
    for (bad, shown) in [
        ("0.5", "not 0.5"),
        ("3.5", "not 3.5"),
        ("-1", "not -1"),
        (
            "'datetime.timedelta(milliseconds=500)'",
            "not a timedelta of 0.5 seconds",
        ),
        (
            "'datetime.timedelta(seconds=1.5)'",
            "not a timedelta of 1.5 seconds",
        ),
    ] {
        let f = fail(&base.replace("lookback: 10*60", &format!("lookback: {bad}")));
        let messages = error_messages(&f);
        assert!(
            messages.iter().any(|m| m
                .contains("`lookback` must be a non-negative number of whole seconds")
                && m.contains(shown)),
            "{bad}: {messages:?}"
        );
    }
}

#[test]
fn a_comma_splitting_a_flow_mapping_value_says_to_quote_it() {
    let text = r#"
datastores:
  - {name: pg, type: postgres, host: h, database: d}
pipelines:
  - name: p
    source: {datastore: pg, table: t, fields: [{column: id, dtype: int}, {column: a, dtype: decimal(12,2)}]}
    sink: {datastore: pg, table: u, unique_key: [id]}
"#;
    let e = fail(text);
    let d = e
        .diagnostics
        .iter()
        .find(|d| d.message == "unknown key `2)` in a source field")
        .unwrap_or_else(|| panic!("{}", e.render()));
    assert_eq!(d.path.as_deref(), Some("pipelines[0].source.fields[1].2)"));
    assert!(
        d.help
            .as_deref()
            .is_some_and(|h| h.contains("quote a value that holds a comma")),
        "{:?}",
        d.help
    );
    // An ordinary misspelt key keeps its "did you mean".
    let e = fail(&text.replace("dtype: decimal(12,2)", "dtyp: str"));
    assert_eq!(
        e.diagnostics[0].help.as_deref(),
        Some("did you mean `dtype`?")
    );
}

/// Rows of several sources in one sink table, told apart by a constant key column
/// (`lambda: "eu"` beside the source's key): the constant is pushed down into the source
/// query, as the key must be read from it; a constant outside the key stays the runtime's.
#[test]
fn a_constant_key_column_is_pushed_down() {
    let text = r#"
datastores:
  - {name: pg, type: postgres, host: 127.0.0.1, database: test}
pipelines:
  - name: eu
    source:
      datastore: pg
      table: orders_eu
      fields: [{column: id, dtype: int}, {column: v, dtype: str}]
    sink:
      datastore: pg
      table: orders
      unique_key: [region, id]
      filters: [{column: region, operator: "=", value: eu}]
      merge_strategy: {strategy: upsert, allow_delete: true}
      fields:
        - {column: region, dtype: str, source_column: 'lambda: "eu"'}
        - {column: id, source_column: id}
        - {column: v, source_column: v}
        - {column: origin, dtype: str, source_column: 'lambda: "eu-west"'}
"#;
    let fe = ok(text);
    let p = &fe.checked.program.pipelines[0];
    assert!(
        matches!(&p.sink.fields[0].value, FieldValue::Pushed { .. }),
        "{:?}",
        p.sink.fields[0].value
    );
    assert!(matches!(&p.sink.fields[3].value, FieldValue::Expr(_)));
}

/// A `max_block_size` or `interval_reduction_factor` out of range is an error that names
/// the key (the line alone showed the value, not whose it was, in a flow mapping).
#[test]
fn a_block_size_out_of_range_names_its_key() {
    for (key, value) in [("max_block_size", "0"), ("interval_reduction_factor", "0")] {
        let text = EXAMPLES
            .iter()
            .find(|(n, _)| *n == "pg_to_pg_upsert")
            .unwrap()
            .1
            .replace(
                "        max_block_size: 1000\n        interval_reduction_factor: 10\n",
                &format!("        {key}: {value}\n"),
            );
        let f = fail(&text);
        let msgs = error_messages(&f);
        assert!(
            msgs.iter()
                .any(|m| m.contains(&format!("`{key}` must be a positive integer"))),
            "{msgs:?}"
        );
    }
}

/// A JSON value (`json_get`) for a scalar field is an error whose help names the
/// conversion (`float(…)`), which the function library has.
#[test]
fn a_json_value_for_a_float_field_suggests_the_conversion() {
    let text = r#"
datastores:
  - {name: pg, type: postgres, host: 127.0.0.1, database: test}
pipelines:
  - name: p
    source:
      datastore: pg
      table: t
      fields: [{column: id, dtype: int}, {column: j, dtype: json}]
    sink:
      datastore: pg
      table: t2
      unique_key: [id]
      fields:
        - {column: id, source_column: id}
        - {column: a, dtype: float, source_column: 'json_get(j, "a")'}
"#;
    let f = fail(text);
    let d = f
        .diagnostics
        .iter()
        .find(|d| d.message.contains("gives json"))
        .unwrap_or_else(|| panic!("{}", f.render()));
    assert!(
        d.help.as_deref().is_some_and(|h| h.contains("float(")),
        "{}",
        f.render()
    );
    // The suggested form checks.
    ok(&text.replace(r#"'json_get(j, "a")'"#, r#"'float(json_get(j, "a"))'"#));
}

/// A reconciled PostgreSQL collapse sink with a tracked `json` field hashed from its
/// columns is warned about (its `jsonb` column re-serialises documents); a stored row hash,
/// `track: false`, an upsert or another sink dialect are not.
#[test]
fn a_json_field_in_a_reconciled_postgres_collapse_table_is_warned_about() {
    let yaml = |sink: &str, merge: &str, field: &str, meta: &str| {
        format!(
            r#"datastores:
  - {{name: pg, type: postgres, host: h, database: d}}
  - {{name: ch, type: clickhouse, host: h, database: d}}
pipelines:
  - name: p
    source:
      datastore: pg
      table: t
      fields: [{{column: id, dtype: int}}, {{column: doc, dtype: json}}]
    sink:
      datastore: {sink}
      table: s
      unique_key: [id]
      merge_strategy: {{strategy: {merge}}}{meta}
      fields:
        - {{column: id, source_column: id}}
        - {{column: doc, source_column: doc{field}}}
    reconciliation:
      - {{name: r, strategy: md5sum_hash, partition_column: id}}
"#
        )
    };
    let warned = |text: &str| {
        ok(text)
            .checked
            .warnings
            .iter()
            .any(|w| w.message.contains("keeps as jsonb"))
    };
    let w = ok(&yaml("pg", "collapse", "", ""));
    let d = w
        .checked
        .warnings
        .iter()
        .find(|w| w.message.contains("keeps as jsonb"))
        .unwrap_or_else(|| panic!("{:?}", w.checked.warnings));
    assert_eq!(
        d.path.as_deref(),
        Some("pipelines[0].sink.fields[1].column")
    );
    assert!(!warned(&yaml("pg", "collapse", ", track: false", "")));
    assert!(!warned(&yaml(
        "pg",
        "collapse",
        "",
        "\n      meta_columns: {hash_column: h}"
    )));
    assert!(!warned(&yaml("pg", "upsert", "", "")));
    assert!(!warned(&yaml("ch", "collapse", "", "")));
}
