//! Placeholder for the canonical row encoding and hash expressions (being written on its own
//! branch). The bodies below only produce recognisable function calls.

use crate::ir::PartitionKind;
use crate::sql::Dialect;
use crate::types::Dtype;
use sqlparser::ast::{self, Expr, Ident, ObjectName};

/// The precision at which datetimes are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePrecision {
    /// Microseconds.
    Micros,
    /// Whole seconds.
    Seconds,
}

/// One hashed column.
#[derive(Debug, Clone)]
pub struct HashCol {
    /// The column expression.
    pub expr: ast::Expr,
    /// The dtype it is hashed as.
    pub dtype: Dtype,
    /// Datetime precision.
    pub precision: TimePrecision,
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    use ast::{Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments};
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

fn cols(c: &[HashCol]) -> Vec<Expr> {
    c.iter().map(|c| c.expr.clone()).collect()
}

/// The canonical text of a row.
pub fn canonical_text(d: &dyn Dialect, cols_: &[HashCol]) -> ast::Expr {
    let _ = d;
    call("canonical_text", cols(cols_))
}

/// The 64-bit signed row hash.
pub fn row_hash(d: &dyn Dialect, cols_: &[HashCol]) -> ast::Expr {
    let _ = d;
    call("row_hash", cols(cols_))
}

/// The row md5 as hex text.
pub fn row_md5(d: &dyn Dialect, cols_: &[HashCol]) -> ast::Expr {
    let _ = d;
    call("row_md5", cols(cols_))
}

/// The exact sum of row hashes in a block.
pub fn block_sum(d: &dyn Dialect, h: ast::Expr) -> ast::Expr {
    let _ = d;
    call("block_sum", vec![h])
}

/// The row count of a block.
pub fn block_count(d: &dyn Dialect) -> ast::Expr {
    let _ = d;
    call("block_count", vec![])
}

/// md5 of the ordered concatenation of row md5s.
pub fn block_md5_concat(d: &dyn Dialect, row_md5: ast::Expr, order_by: &[ast::Expr]) -> ast::Expr {
    let _ = d;
    let mut args = vec![row_md5];
    args.extend(order_by.iter().cloned());
    call("block_md5_concat", args)
}

/// Epoch microseconds of a timestamp.
pub fn epoch_micros(d: &dyn Dialect, e: ast::Expr) -> ast::Expr {
    let _ = d;
    call("epoch_micros", vec![e])
}

/// Epoch seconds of a timestamp.
pub fn epoch_seconds(d: &dyn Dialect, e: ast::Expr) -> ast::Expr {
    let _ = d;
    call("epoch_seconds", vec![e])
}

/// The block id of a partition value (floor division).
pub fn block_id(
    d: &dyn Dialect,
    partition: ast::Expr,
    kind: PartitionKind,
    interval: ast::Expr,
) -> ast::Expr {
    let _ = (d, kind);
    call("block_id", vec![partition, interval])
}

/// The first `prefix_len` hex chars of md5 of the key text.
pub fn key_bucket(d: &dyn Dialect, key: ast::Expr, prefix_len: ast::Expr) -> ast::Expr {
    let _ = d;
    call("key_bucket", vec![key, prefix_len])
}

/// Session setup statements.
pub fn session_setup(d: &dyn Dialect) -> Vec<ast::Statement> {
    let _ = d;
    vec![]
}

/// A bound-parameter placeholder.
pub fn param(d: &dyn Dialect, index: usize, name: &str, ty: Dtype) -> ast::Expr {
    d.placeholder(index, name, ty)
}
