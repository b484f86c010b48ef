//! Column references, filters and join conditions of the source and sink: qualifiers are
//! resolved to table aliases (a qualifier naming an aliased table, as in the seed's
//! `users.id` with `alias: u`, is rewritten to the alias), and join conditions are parsed with
//! sqlparser and restricted to column comparisons and boolean logic.

use super::Diags;
use crate::config::raw::RawFilter;
use crate::config::yaml::NodeValue;
use crate::config::Spanned;
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::{ColumnRef, Filter, FilterOp, Literal, TableRef};
use crate::types::Dtype;
use sqlparser::ast::{Expr, Ident, Value, ValueWithSpan};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

/// The tables visible in a source query.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Main table first, then joins.
    pub tables: Vec<TableRef>,
}

impl Scope {
    /// Resolve a qualifier to the alias (or name) columns use.
    pub fn qualifier(&self, q: &str) -> Option<String> {
        if let Some(t) = self.tables.iter().find(|t| t.qualifier() == q) {
            return Some(t.qualifier().to_string());
        }
        self.tables
            .iter()
            .find(|t| t.table.name == q)
            .map(|t| t.qualifier().to_string())
    }

    fn qualifiers(&self) -> Vec<&str> {
        self.tables.iter().map(|t| t.qualifier()).collect()
    }

    /// Parse `col` or `q.col` and resolve its qualifier.
    pub fn column(&self, s: &Spanned<String>, diags: &mut Diags) -> Option<ColumnRef> {
        let text = s.value.trim();
        let parts: Vec<&str> = text.split('.').collect();
        let bad = parts.iter().any(|p| p.is_empty()) || parts.len() > 2;
        if bad || text.is_empty() {
            diags.push(
                s.error(format!("`{text}` is not a column reference"))
                    .with_help("write `column` or `alias.column`"),
            );
            return None;
        }
        if parts.len() == 1 {
            return Some(ColumnRef {
                qualifier: None,
                name: parts[0].to_string(),
            });
        }
        match self.qualifier(parts[0]) {
            Some(q) => Some(ColumnRef {
                qualifier: Some(q),
                name: parts[1].to_string(),
            }),
            None => {
                let quals = self.qualifiers();
                let mut d = s
                    .error(format!("unknown table `{}` in `{text}`", parts[0]))
                    .with_label("not the source table or a joined table");
                d = match did_you_mean(parts[0], quals.iter().copied()) {
                    Some(x) => d.with_help(format!("did you mean `{x}`?")),
                    None => d.with_help(format!("tables in scope: {}", quals.join(", "))),
                };
                diags.push(d);
                None
            }
        }
    }

    /// Parse and validate a join condition.
    pub fn join_on(&self, on: &Spanned<String>, diags: &mut Diags) -> Option<Expr> {
        let parsed = Parser::new(&GenericDialect {})
            .try_with_sql(&on.value)
            .and_then(|mut p| {
                let e = p.parse_expr()?;
                p.expect_token(&sqlparser::tokenizer::Token::EOF)?;
                Ok(e)
            });
        let mut expr = match parsed {
            Ok(e) => e,
            Err(e) => {
                diags.push(on.error(format!("the join condition is not valid SQL: {e}")));
                return None;
            }
        };
        let mut problems = Vec::new();
        self.validate(&mut expr, &mut problems);
        if problems.is_empty() {
            Some(expr)
        } else {
            for p in problems {
                diags.push(on.error(p).with_label("in this join condition"));
            }
            None
        }
    }

    /// Allow only column references, literals, comparisons, boolean logic, arithmetic,
    /// IS [NOT] NULL, IN lists, BETWEEN and parentheses; resolve qualifiers; unquote idents.
    fn validate(&self, e: &mut Expr, problems: &mut Vec<String>) {
        match e {
            Expr::Identifier(id) => id.quote_style = None,
            Expr::CompoundIdentifier(ids) => {
                if ids.len() != 2 {
                    problems.push(format!("`{e}`: write columns as `alias.column`"));
                    return;
                }
                match self.qualifier(&ids[0].value) {
                    Some(q) => {
                        ids[0] = Ident::new(q);
                        ids[1].quote_style = None;
                    }
                    None => {
                        let quals = self.qualifiers();
                        let hint = did_you_mean(&ids[0].value, quals.iter().copied())
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        problems.push(format!("unknown table `{}` in the join condition{hint}", ids[0].value));
                    }
                }
            }
            Expr::Value(ValueWithSpan { value, .. }) => match value {
                Value::Number(..) | Value::SingleQuotedString(_) | Value::Boolean(_) | Value::Null => {}
                other => problems.push(format!("literal `{other}` is not allowed in a join condition")),
            },
            Expr::BinaryOp { left, op, right } => {
                use sqlparser::ast::BinaryOperator as B;
                match op {
                    B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq | B::And | B::Or | B::Plus
                    | B::Minus | B::Multiply | B::Divide | B::Modulo => {}
                    other => problems.push(format!("operator `{other}` is not allowed in a join condition")),
                }
                self.validate(left, problems);
                self.validate(right, problems);
            }
            Expr::UnaryOp { expr, .. } | Expr::Nested(expr) | Expr::IsNull(expr) | Expr::IsNotNull(expr) => {
                self.validate(expr, problems)
            }
            Expr::InList { expr, list, .. } => {
                self.validate(expr, problems);
                for x in list {
                    self.validate(x, problems);
                }
            }
            Expr::Between { expr, low, high, .. } => {
                self.validate(expr, problems);
                self.validate(low, problems);
                self.validate(high, problems);
            }
            other => problems.push(format!(
                "`{other}` is not allowed in a join condition (only columns, literals, comparisons, AND/OR/NOT, IS NULL, IN, BETWEEN)"
            )),
        }
    }
}

/// Parse a filter operator.
pub fn filter_op(s: Option<&Spanned<String>>, diags: &mut Diags) -> Option<FilterOp> {
    let Some(s) = s else {
        return Some(FilterOp::Eq);
    };
    let norm = s
        .value
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    Some(match norm.as_str() {
        "=" | "==" | "eq" => FilterOp::Eq,
        "!=" | "<>" | "ne" => FilterOp::NotEq,
        "<" | "lt" => FilterOp::Lt,
        "<=" | "le" | "lte" => FilterOp::LtEq,
        ">" | "gt" => FilterOp::Gt,
        ">=" | "ge" | "gte" => FilterOp::GtEq,
        "in" => FilterOp::In,
        "not in" => FilterOp::NotIn,
        "is null" => FilterOp::IsNull,
        "is not null" => FilterOp::IsNotNull,
        "like" => FilterOp::Like,
        other => {
            const OPS: &[&str] = &[
                "=",
                "!=",
                "<",
                "<=",
                ">",
                ">=",
                "in",
                "not in",
                "is null",
                "is not null",
                "like",
            ];
            diags.push(
                s.error(format!("unknown filter operator `{other}`"))
                    .with_choices(other, OPS),
            );
            return None;
        }
    })
}

/// Build a filter. `dtype` is the column's field type when known.
pub fn filter(
    f: &RawFilter,
    i: usize,
    prefix: &str,
    column: ColumnRef,
    dtype: Option<Dtype>,
    diags: &mut Diags,
) -> Option<Filter> {
    let op = filter_op(f.operator.as_ref(), diags)?;
    let needs_value = !matches!(op, FilterOp::IsNull | FilterOp::IsNotNull);
    let mut values = Vec::new();
    match (&f.value, needs_value) {
        (None, true) => {
            diags.push(
                Diagnostic::error(format!(
                    "this filter needs a `value` for operator `{}`",
                    op_text(op)
                ))
                .at_path(f.path.clone())
                .with_span(f.column.span),
            );
            return None;
        }
        (Some((p, n)), false) => {
            diags.push(
                Diagnostic::error(format!("`{}` takes no value", op_text(op)))
                    .at_path(p.clone())
                    .with_span(n.span),
            );
            return None;
        }
        (Some((p, n)), true) => {
            let list = matches!(op, FilterOp::In | FilterOp::NotIn);
            let items: Vec<&crate::config::yaml::Node> = match (&n.value, list) {
                (NodeValue::Seq(items), true) => items.iter().collect(),
                (_, true) => {
                    diags.push(
                        Diagnostic::error(format!("`{}` needs a list value", op_text(op)))
                            .at_path(p.clone())
                            .with_span(n.span),
                    );
                    return None;
                }
                (NodeValue::Seq(_), false) => {
                    diags.push(
                        Diagnostic::error(format!(
                            "`{}` compares with one value, not a list",
                            op_text(op)
                        ))
                        .at_path(p.clone())
                        .with_span(n.span),
                    );
                    return None;
                }
                _ => vec![n],
            };
            if items.is_empty() {
                diags.push(
                    Diagnostic::error("the value list is empty")
                        .at_path(p.clone())
                        .with_span(n.span),
                );
                return None;
            }
            for it in items {
                let lit = match &it.value {
                    NodeValue::Null => Literal::Null,
                    NodeValue::Bool(b) => Literal::Bool(*b),
                    NodeValue::Int(i) => Literal::Int(*i),
                    NodeValue::Float(x) => Literal::Float(*x),
                    NodeValue::Str(s) => Literal::Str(s.clone()),
                    _ => {
                        diags.push(
                            Diagnostic::error("a filter value must be a scalar")
                                .at_path(p.clone())
                                .with_span(it.span),
                        );
                        return None;
                    }
                };
                if lit == Literal::Null {
                    diags.push(
                        Diagnostic::error("compare with NULL using `is null` / `is not null`")
                            .at_path(p.clone())
                            .with_span(it.span),
                    );
                    return None;
                }
                if let Some(dt) = dtype {
                    if !literal_fits(&lit, dt) {
                        diags.push(
                            Diagnostic::error(format!(
                                "filter value `{lit}` does not fit the column type {dt}"
                            ))
                            .at_path(p.clone())
                            .with_span(it.span),
                        );
                        return None;
                    }
                }
                values.push(lit);
            }
        }
        (None, false) => {}
    }
    let dtype = dtype.unwrap_or(match values.first() {
        Some(Literal::Bool(_)) => Dtype::Bool,
        Some(Literal::Int(_)) => Dtype::Int,
        Some(Literal::Float(_)) => Dtype::Float,
        _ => Dtype::Str,
    });
    let params = match values.len() {
        0 => Vec::new(),
        1 if !matches!(op, FilterOp::In | FilterOp::NotIn) => vec![format!("{prefix}filter_{i}")],
        _ => (0..values.len())
            .map(|j| format!("{prefix}filter_{i}_{j}"))
            .collect(),
    };
    Some(Filter {
        column,
        op,
        values,
        dtype,
        params,
    })
}

fn literal_fits(l: &Literal, dt: Dtype) -> bool {
    match (l, dt) {
        (Literal::Bool(_), Dtype::Bool) => true,
        (Literal::Int(_), Dtype::Int | Dtype::Float | Dtype::Decimal { .. }) => true,
        (Literal::Float(_), Dtype::Float | Dtype::Decimal { .. }) => true,
        (Literal::Str(s), Dtype::Date) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        (Literal::Str(s), Dtype::Datetime) => parse_datetime(s).is_some(),
        (Literal::Str(s), Dtype::Uuid) => {
            s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        }
        (Literal::Str(s), Dtype::Decimal { .. }) => s.parse::<f64>().is_ok(),
        (Literal::Str(_), Dtype::Str | Dtype::Json) => true,
        (Literal::Int(_) | Literal::Float(_) | Literal::Bool(_), Dtype::Str) => true,
        _ => false,
    }
}

/// Parse a datetime literal in the accepted forms (ISO 8601, with `T` or a space).
pub fn parse_datetime(s: &str) -> Option<chrono::NaiveDateTime> {
    const FORMATS: &[&str] = &[
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ];
    let t = s.trim().trim_end_matches('Z');
    FORMATS
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(t, f).ok())
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

/// The operator as written in configs.
pub fn op_text(op: FilterOp) -> &'static str {
    match op {
        FilterOp::Eq => "=",
        FilterOp::NotEq => "!=",
        FilterOp::Lt => "<",
        FilterOp::LtEq => "<=",
        FilterOp::Gt => ">",
        FilterOp::GtEq => ">=",
        FilterOp::In => "in",
        FilterOp::NotIn => "not in",
        FilterOp::IsNull => "is null",
        FilterOp::IsNotNull => "is not null",
        FilterOp::Like => "like",
    }
}
