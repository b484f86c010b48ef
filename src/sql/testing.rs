//! Hand-built IR fixtures for the generator's tests.

use crate::ir::*;
use crate::sql::{DialectKind, SqlStep};
use crate::types::Dtype;

/// A SQL datastore.
pub fn store(name: &str, d: DialectKind) -> Store {
    Store {
        name: name.into(),
        kind: StoreKind::Sql(d),
        target: Default::default(),
    }
}

/// A qualified column.
pub fn cref(q: &str, name: &str) -> ColumnRef {
    ColumnRef {
        qualifier: Some(q.into()),
        name: name.into(),
    }
}

fn field(q: &str, name: &str, alias: &str, dtype: Dtype) -> SourceField {
    SourceField {
        column: cref(q, name),
        alias: alias.into(),
        dtype,
    }
}

fn sink_field(column: &str, alias: &str, dtype: Dtype) -> SinkField {
    SinkField {
        column: column.into(),
        dtype,
        value: FieldValue::Column {
            alias: alias.into(),
        },
        track: true,
    }
}

fn filter(column: ColumnRef, op: FilterOp, n: usize, dtype: Dtype, base: &str) -> Filter {
    let params: Vec<String> = if n == 1 {
        vec![base.to_string()]
    } else {
        (0..n).map(|i| format!("{base}_{i}")).collect()
    };
    Filter {
        column,
        op,
        values: params.iter().map(|_| Literal::Int(1)).collect(),
        dtype,
        params,
    }
}

fn recon(
    name: &str,
    strategy: ReconStrategy,
    src: ColumnRef,
    sink: &str,
    kind: PartitionKind,
) -> Reconciliation {
    Reconciliation {
        name: name.into(),
        strategy,
        source_partition: src,
        sink_partition: sink.into(),
        kind,
        start: None,
        end: None,
        initial_interval: 86400,
        max_block_size: 1000,
        reduction_factor: 10,
        partition_multiplier: None,
        source_order: vec![],
        lookback_seconds: 0,
    }
}

/// The seed's users ⋈ orders, PostgreSQL → MySQL upsert, with a column named `select`,
/// an `in` filter and md5sum_hash (datetime) + timestamp reconciliations.
pub fn users_orders() -> Pipeline {
    let fields = vec![
        field("u", "id", "id", Dtype::Int),
        field("u", "name", "u__name", Dtype::Str),
        field(
            "o",
            "total",
            "o__total",
            Dtype::Decimal {
                precision: 18,
                scale: 4,
            },
        ),
        field("u", "updated_at", "updated_at", Dtype::Datetime),
        field("u", "select", "select", Dtype::Str),
    ];
    let sink_fields = vec![
        sink_field("id", "id", Dtype::Int),
        sink_field("name", "u__name", Dtype::Str),
        sink_field(
            "total",
            "o__total",
            Dtype::Decimal {
                precision: 18,
                scale: 4,
            },
        ),
        sink_field("updated_at", "updated_at", Dtype::Datetime),
        sink_field("select", "select", Dtype::Str),
    ];
    let on = sqlparser::parser::Parser::new(&sqlparser::dialect::GenericDialect {})
        .try_with_sql("u.id = o.user_id")
        .unwrap()
        .parse_expr()
        .unwrap();
    Pipeline {
        name: "users_orders".into(),
        source: Source {
            store: store("pg", DialectKind::Postgres),
            table: TableRef {
                table: TableName {
                    schema: Some("public".into()),
                    name: "users".into(),
                },
                alias: Some("u".into()),
            },
            joins: vec![Join {
                kind: JoinKind::Left,
                table: TableRef {
                    table: TableName {
                        schema: None,
                        name: "orders".into(),
                    },
                    alias: Some("o".into()),
                },
                on,
            }],
            filters: vec![
                filter(
                    cref("u", "active"),
                    FilterOp::Eq,
                    1,
                    Dtype::Bool,
                    "filter_0",
                ),
                filter(cref("o", "status"), FilterOp::In, 2, Dtype::Str, "filter_1"),
                filter(
                    cref("u", "deleted_at"),
                    FilterOp::IsNull,
                    0,
                    Dtype::Datetime,
                    "filter_2",
                ),
            ],
            fields,
            pushed: vec![],
            batch_size: 100,
            meta: SourceMeta::default(),
            final_: None,
        },
        sink: Sink {
            store: store("my", DialectKind::Mysql),
            table: TableName {
                schema: Some("myschema".into()),
                name: "users".into(),
            },
            batch_size: 100,
            merge: MergeStrategy {
                kind: MergeKind::Upsert,
                allow_delete: true,
                sign_column: "sign".into(),
                version_column: None,
            },
            unique_key: vec!["id".into()],
            filters: vec![],
            fields: sink_fields,
            meta: SinkMeta::default(),
            url_path: None,
            subject: None,
        },
        enrichments: vec![],
        reconciliations: vec![
            recon(
                "daily",
                ReconStrategy::Md5sumHash,
                cref("u", "updated_at"),
                "updated_at",
                PartitionKind::Datetime,
            ),
            recon(
                "recent",
                ReconStrategy::Timestamp,
                cref("u", "updated_at"),
                "updated_at",
                PartitionKind::Datetime,
            ),
        ],
        row_hash: RowHash {
            source: vec![
                HashInput {
                    name: "id".into(),
                    dtype: Dtype::Int,
                },
                HashInput {
                    name: "u__name".into(),
                    dtype: Dtype::Str,
                },
                HashInput {
                    name: "o__total".into(),
                    dtype: Dtype::Decimal {
                        precision: 18,
                        scale: 4,
                    },
                },
                HashInput {
                    name: "updated_at".into(),
                    dtype: Dtype::Datetime,
                },
                HashInput {
                    name: "select".into(),
                    dtype: Dtype::Str,
                },
            ],
            sink: SinkHash::Columns(vec![
                HashInput {
                    name: "id".into(),
                    dtype: Dtype::Int,
                },
                HashInput {
                    name: "name".into(),
                    dtype: Dtype::Str,
                },
                HashInput {
                    name: "total".into(),
                    dtype: Dtype::Decimal {
                        precision: 18,
                        scale: 4,
                    },
                },
                HashInput {
                    name: "updated_at".into(),
                    dtype: Dtype::Datetime,
                },
                HashInput {
                    name: "select".into(),
                    dtype: Dtype::Str,
                },
            ]),
            seconds_precision: false,
            definitions: None,
        },
        source_state: None,
        sink_state: None,
        key: vec![KeyPair {
            source_alias: "id".into(),
            sink_column: "id".into(),
            dtype: Dtype::Int,
        }],
    }
}

/// PostgreSQL → ClickHouse upsert (ReplacingMergeTree with a version column), awkward
/// identifiers (a double quote and a backtick), a stored hash column, a sink filter and a
/// uuid-partitioned hash_md5_hash reconciliation.
pub fn pg_to_ch_upsert() -> Pipeline {
    let mut p = users_orders();
    p.name = "events".into();
    p.source.joins.clear();
    p.source.filters = vec![filter(
        cref("e", "kind"),
        FilterOp::Like,
        1,
        Dtype::Str,
        "filter_0",
    )];
    p.source.table = TableRef {
        table: TableName {
            schema: None,
            name: "events".into(),
        },
        alias: Some("e".into()),
    };
    p.source.fields = vec![
        field("e", "id", "id", Dtype::Uuid),
        field("e", "we\"ird", "weird", Dtype::Str),
        field("e", "back`tick", "back", Dtype::Float),
        field("e", "ts", "ts", Dtype::Datetime),
        field("e", "ver", "ver", Dtype::Int),
    ];
    p.sink.store = store("ch", DialectKind::Clickhouse);
    p.sink.table = TableName {
        schema: Some("analytics".into()),
        name: "events".into(),
    };
    p.sink.merge = MergeStrategy {
        kind: MergeKind::Upsert,
        allow_delete: false,
        sign_column: "sign".into(),
        version_column: Some("ver".into()),
    };
    p.sink.unique_key = vec!["id".into()];
    p.sink.filters = vec![Filter {
        column: ColumnRef {
            qualifier: None,
            name: "tenant".into(),
        },
        op: FilterOp::Eq,
        values: vec![Literal::Int(7)],
        dtype: Dtype::Int,
        params: vec!["sink_filter_0".into()],
    }];
    p.sink.fields = vec![
        sink_field("id", "id", Dtype::Uuid),
        sink_field("we\"ird", "weird", Dtype::Str),
        sink_field("back`tick", "back", Dtype::Float),
        sink_field("ts", "ts", Dtype::Datetime),
        sink_field("ver", "ver", Dtype::Int),
    ];
    p.sink.meta.hash_column = Some("_hash".into());
    p.row_hash = RowHash {
        source: vec![
            HashInput {
                name: "id".into(),
                dtype: Dtype::Uuid,
            },
            HashInput {
                name: "weird".into(),
                dtype: Dtype::Str,
            },
            HashInput {
                name: "ts".into(),
                dtype: Dtype::Datetime,
            },
        ],
        sink: SinkHash::Stored("_hash".into()),
        seconds_precision: true,
        definitions: None,
    };
    p.key = vec![KeyPair {
        source_alias: "id".into(),
        sink_column: "id".into(),
        dtype: Dtype::Uuid,
    }];
    p.reconciliations = vec![recon(
        "by_id",
        ReconStrategy::HashMd5Hash,
        cref("e", "id"),
        "id",
        PartitionKind::Uuid,
    )];
    p.reconciliations[0].initial_interval = 2;
    p
}

/// MySQL → ClickHouse collapse with allow_delete and a date-partitioned md5sum_hash.
pub fn collapse_to_ch() -> Pipeline {
    let mut p = users_orders();
    p.name = "ledger".into();
    p.source.store = store("my", DialectKind::Mysql);
    p.source.table.table.schema = None;
    p.sink.store = store("ch", DialectKind::Clickhouse);
    p.sink.table = TableName {
        schema: None,
        name: "ledger".into(),
    };
    p.sink.merge = MergeStrategy {
        kind: MergeKind::Collapse,
        allow_delete: true,
        sign_column: "sign".into(),
        version_column: None,
    };
    p.sink.meta.hash_column = Some("_hash".into());
    p.row_hash.sink = SinkHash::Stored("_hash".into());
    p.reconciliations.truncate(1);
    p.reconciliations[0].kind = PartitionKind::Date;
    p
}

/// The same collapse into PostgreSQL without a hash column, and a delete_insert variant.
pub fn collapse_to_pg() -> Pipeline {
    let mut p = collapse_to_ch();
    p.name = "ledger_pg".into();
    p.sink.store = store("pg2", DialectKind::Postgres);
    p.sink.meta.hash_column = None;
    p.row_hash.sink = users_orders().row_hash.sink;
    p
}

/// PostgreSQL → ClickHouse delete_insert with allow_delete and an int partition.
pub fn delete_insert_to_ch() -> Pipeline {
    let mut p = collapse_to_ch();
    p.name = "orders".into();
    p.source.store = store("pg", DialectKind::Postgres);
    p.sink.merge.kind = MergeKind::DeleteInsert;
    p.reconciliations[0].kind = PartitionKind::Int;
    p.reconciliations[0].source_partition = cref("u", "id");
    p.reconciliations[0].sink_partition = "id".into();
    p
}

/// PostgreSQL → MySQL delete_insert.
pub fn delete_insert_to_mysql() -> Pipeline {
    let mut p = delete_insert_to_ch();
    p.name = "orders_my".into();
    p.sink.store = store("my", DialectKind::Mysql);
    p
}

/// MySQL → PostgreSQL upsert with a stored hash column (skips unchanged rows by hash).
pub fn mysql_to_pg_upsert() -> Pipeline {
    let mut p = collapse_to_ch();
    p.name = "users_pg".into();
    p.sink.store = store("pg2", DialectKind::Postgres);
    p.sink.table = TableName {
        schema: Some("public".into()),
        name: "users_copy".into(),
    };
    p.sink.merge.kind = MergeKind::Upsert;
    p
}

/// Every fixture.
pub fn all() -> Vec<Pipeline> {
    vec![
        users_orders(),
        pg_to_ch_upsert(),
        collapse_to_ch(),
        collapse_to_pg(),
        delete_insert_to_ch(),
        delete_insert_to_mysql(),
        mysql_to_pg_upsert(),
    ]
}

/// The steps as a plan-like text: id, store, dialect, purpose, SQL and params.
pub fn render(steps: &[SqlStep]) -> String {
    let mut out = String::new();
    for s in steps {
        out.push_str(&format!(
            "-- {} [{} {}] {}\n",
            s.id,
            s.store,
            s.dialect.name(),
            s.purpose
        ));
        for st in s.sql() {
            out.push_str(&st);
            out.push_str(";\n");
        }
        if !s.params.is_empty() {
            let ps: Vec<String> = s
                .params
                .iter()
                .map(|p| format!("{}:{}", p.name, p.dtype))
                .collect();
            out.push_str(&format!("-- params: {}\n", ps.join(", ")));
        }
        out.push('\n');
    }
    out
}
