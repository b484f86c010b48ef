//! Placeholder for expression pushdown (the implementation lands from its own branch).
#![allow(missing_docs, unused_variables)]
use super::Dialect;
use crate::expr::TypedExpr;

pub fn to_sql(
    e: &TypedExpr,
    d: &dyn Dialect,
    column: &dyn Fn(&str) -> Option<sqlparser::ast::Expr>,
) -> Option<sqlparser::ast::Expr> {
    None
}
