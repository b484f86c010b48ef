//! Placeholder for expression push-down (being written on its own branch): translates a
//! typed expression into the source dialect, or `None` when it cannot be pushed.

use crate::sql::Dialect;

/// Translates `e` into an SQL expression of dialect `d`, resolving row fields with
/// `column`; `None` when the expression cannot be computed by the database.
pub fn to_sql(
    e: &crate::expr::TypedExpr,
    d: &dyn Dialect,
    column: &dyn Fn(&str) -> Option<sqlparser::ast::Expr>,
) -> Option<sqlparser::ast::Expr> {
    let _ = (e, d, column);
    None
}
