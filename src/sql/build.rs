//! Small constructors for the sqlparser AST nodes the generator uses, so that the rest of
//! the module reads like the SQL it builds. Nothing here formats text: every helper returns
//! AST, and identifiers are quoted by the caller's [`Dialect`].

use crate::sql::Dialect;
use sqlparser::ast::{
    helpers::attached_token::AttachedToken, BinaryOperator, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, ObjectName,
    OrderBy, OrderByExpr, OrderByKind, OrderByOptions, Query, Select, SelectFlavor, SelectItem,
    SetExpr, TableAlias, TableFactor, TableVersion, TableWithJoins, Value,
};

/// A possibly qualified, quoted object name (`"schema"."table"`).
pub fn object_name(d: &dyn Dialect, schema: Option<&str>, name: &str) -> ObjectName {
    let mut parts = Vec::with_capacity(2);
    if let Some(s) = schema {
        parts.push(d.ident(s));
    }
    parts.push(d.ident(name));
    ObjectName::from(parts)
}

/// An unquoted name for built-in objects (`information_schema.columns`).
pub fn builtin_name(parts: &[&str]) -> ObjectName {
    ObjectName::from(parts.iter().map(|p| Ident::new(*p)).collect::<Vec<_>>())
}

/// A quoted column, qualified when `qualifier` is given.
pub fn col(d: &dyn Dialect, qualifier: Option<&str>, name: &str) -> Expr {
    match qualifier {
        Some(q) => Expr::CompoundIdentifier(vec![d.ident(q), d.ident(name)]),
        None => Expr::Identifier(d.ident(name)),
    }
}

/// An unquoted built-in identifier (`FINAL`, `EXCLUDED`).
pub fn keyword(name: &str) -> Expr {
    Expr::Identifier(Ident::new(name))
}

/// An integer literal.
pub fn int(n: i64) -> Expr {
    Expr::Value(Value::Number(n.to_string(), false).with_empty_span())
}

/// A string literal (a constant of the generator, never config or data).
pub fn string(s: &str) -> Expr {
    Expr::Value(Value::SingleQuotedString(s.to_string()).with_empty_span())
}

/// A function call with positional arguments (`name` is a constant of the generator).
pub fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// `count(*)`.
pub fn count_star() -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new("count")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Wildcard)],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// `left <op> right`.
pub fn binop(left: Expr, op: BinaryOperator, right: Expr) -> Expr {
    Expr::BinaryOp {
        left: Box::new(left),
        op,
        right: Box::new(right),
    }
}

/// `left = right`.
pub fn eq(left: Expr, right: Expr) -> Expr {
    binop(left, BinaryOperator::Eq, right)
}

/// The conjunction of `preds`, or `None` when empty. Disjunctions inside are parenthesised
/// by the caller.
pub fn and_all(preds: Vec<Expr>) -> Option<Expr> {
    preds
        .into_iter()
        .reduce(|a, b| binop(a, BinaryOperator::And, b))
}

/// A single expression, or a parenthesised tuple of several (`(a, b)`), for `IN` lists.
pub fn tuple_or_single(mut exprs: Vec<Expr>) -> Expr {
    if exprs.len() == 1 {
        exprs.remove(0)
    } else {
        Expr::Tuple(exprs)
    }
}

/// `expr [NOT] IN (subquery)`.
pub fn in_subquery(expr: Expr, q: Query, negated: bool) -> Expr {
    Expr::InSubquery {
        expr: Box::new(expr),
        subquery: Box::new(q),
        negated,
    }
}

/// `expr AS alias`.
pub fn aliased(d: &dyn Dialect, expr: Expr, alias: &str) -> SelectItem {
    SelectItem::ExprWithAlias {
        expr,
        alias: d.ident(alias),
    }
}

/// The prefix of the alias a ClickHouse result column gets when its expression is not the
/// bare column of its name ([`read_item`]); [`crate::sql::Stmt::result_columns`] names the
/// column without it.
pub const READ_ALIAS_PREFIX: &str = "_synctool_read_";

/// `expr AS alias` for a column of a result the runtime reads by position (extract
/// columns, leaf-diff keys).
///
/// ClickHouse lets an alias of the SELECT list stand for its expression everywhere else in
/// the query, in WHERE, ORDER BY and inside other expressions, ahead of the table's column
/// of the same name (18.16 and current servers alike; qualifying the column does not help
/// on 18.16). So `toInt32("d") AS "d"` turned every other `"d"` of the query (a range
/// predicate, the row hash) into the day number. There an expression other than the bare
/// column `alias` is aliased `_synctool_read_<alias>`, a name no column of the query has.
/// PostgreSQL and MySQL keep `alias`: their WHERE does not see aliases.
pub fn read_item(d: &dyn Dialect, expr: Expr, alias: &str) -> SelectItem {
    let itself = matches!(&expr, Expr::Identifier(i) if i.value == alias);
    if d.kind() == crate::sql::DialectKind::Clickhouse && !itself {
        return aliased(d, expr, &format!("{READ_ALIAS_PREFIX}{alias}"));
    }
    aliased(d, expr, alias)
}

/// Gives the read alias ([`READ_ALIAS_PREFIX`]) to every item of `projection` whose alias
/// is the bare column name of an `order_by` expression but whose expression is not that
/// column: PostgreSQL and MySQL take a bare name in ORDER BY for the result column of that
/// name first, so `SELECT "id" AS "key_id", "other" AS "id" … ORDER BY "id"` would order by
/// `other`. (ClickHouse items have the read alias already, [`read_item`].)
pub fn unshadow_order(d: &dyn Dialect, projection: &mut [SelectItem], order_by: &[Expr]) {
    for item in projection.iter_mut() {
        let SelectItem::ExprWithAlias { expr, alias } = item else {
            continue;
        };
        let itself = matches!(expr, Expr::Identifier(i) if i.value == alias.value);
        let ordered = order_by
            .iter()
            .any(|o| matches!(o, Expr::Identifier(i) if i.value == alias.value));
        if ordered && !itself {
            *alias = d.ident(&format!("{READ_ALIAS_PREFIX}{}", alias.value));
        }
    }
}

/// A select item without alias.
pub fn item(expr: Expr) -> SelectItem {
    SelectItem::UnnamedExpr(expr)
}

/// A table in FROM, with an optional alias and (ClickHouse) the `FINAL` modifier.
pub fn table(name: ObjectName, alias: Option<Ident>, final_: bool) -> TableFactor {
    TableFactor::Table {
        name,
        alias: alias.map(|name| TableAlias {
            name,
            columns: vec![],
        }),
        args: None,
        with_hints: vec![],
        // sqlparser has no FINAL modifier; a version "function" prints verbatim after the
        // alias, which is where ClickHouse expects it.
        version: final_.then(|| TableVersion::Function(keyword("FINAL"))),
        with_ordinality: false,
        partitions: vec![],
        json_path: None,
        sample: None,
        index_hints: vec![],
    }
}

/// A derived table `(subquery) AS alias`.
pub fn derived(q: Query, alias: Ident) -> TableFactor {
    TableFactor::Derived {
        lateral: false,
        subquery: Box::new(q),
        alias: Some(TableAlias {
            name: alias,
            columns: vec![],
        }),
    }
}

/// The parts of a SELECT the generator varies.
#[derive(Default)]
pub struct SelectParts {
    /// Projection.
    pub projection: Vec<SelectItem>,
    /// FROM (one relation with its joins).
    pub from: Option<TableWithJoins>,
    /// WHERE.
    pub selection: Option<Expr>,
    /// GROUP BY expressions.
    pub group_by: Vec<Expr>,
    /// HAVING.
    pub having: Option<Expr>,
    /// ORDER BY expressions (ascending).
    pub order_by: Vec<Expr>,
}

/// A SELECT query from its parts.
pub fn select(p: SelectParts) -> Query {
    let select = Select {
        select_token: AttachedToken::empty(),
        distinct: None,
        top: None,
        top_before_distinct: false,
        projection: p.projection,
        exclude: None,
        into: None,
        from: p.from.into_iter().collect(),
        lateral_views: vec![],
        prewhere: None,
        selection: p.selection,
        group_by: GroupByExpr::Expressions(p.group_by, vec![]),
        cluster_by: vec![],
        distribute_by: vec![],
        sort_by: vec![],
        having: p.having,
        named_window: vec![],
        qualify: None,
        window_before_qualify: false,
        value_table_mode: None,
        connect_by: None,
        flavor: SelectFlavor::Standard,
    };
    let order_by = (!p.order_by.is_empty()).then(|| OrderBy {
        kind: OrderByKind::Expressions(
            p.order_by
                .into_iter()
                .map(|expr| OrderByExpr {
                    expr,
                    options: OrderByOptions {
                        asc: None,
                        nulls_first: None,
                    },
                    with_fill: None,
                })
                .collect(),
        ),
        interpolate: None,
    });
    Query {
        with: None,
        body: Box::new(SetExpr::Select(Box::new(select))),
        order_by,
        limit_clause: None,
        fetch: None,
        locks: vec![],
        for_clause: None,
        settings: None,
        format_clause: None,
        pipe_operators: vec![],
    }
}

/// A relation without joins.
pub fn from(relation: TableFactor) -> TableWithJoins {
    TableWithJoins {
        relation,
        joins: vec![],
    }
}

/// `JOIN relation ON on` (an inner join).
pub fn join_on(relation: TableFactor, on: Expr) -> sqlparser::ast::Join {
    sqlparser::ast::Join {
        relation,
        global: false,
        join_operator: sqlparser::ast::JoinOperator::Join(sqlparser::ast::JoinConstraint::On(on)),
    }
}

/// `CAST(e AS ty)`.
pub fn cast(e: Expr, ty: sqlparser::ast::DataType) -> Expr {
    Expr::Cast {
        kind: sqlparser::ast::CastKind::Cast,
        expr: Box::new(e),
        data_type: ty,
        format: None,
    }
}

/// ClickHouse: `SELECT c1 AS c1, … FROM system.tables WHERE <preds>`, columns of the
/// `system.tables` row of the table the predicates name (database and name): `engine`, and
/// for a sink `engine_full` and `sorting_key` too (all three on 18.16 and current servers).
pub fn ch_engine_query(d: &dyn crate::sql::Dialect, columns: &[&str], preds: Vec<Expr>) -> Query {
    select(SelectParts {
        projection: columns.iter().map(|c| aliased(d, keyword(c), c)).collect(),
        from: Some(from(table(
            builtin_name(&["system", "tables"]),
            None,
            false,
        ))),
        selection: and_all(preds),
        ..Default::default()
    })
}
