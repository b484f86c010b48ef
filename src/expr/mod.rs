//! Placeholder for the expression language (being written on its own branch).

/// A type-checked expression.
#[derive(Debug, Clone)]
pub struct TypedExpr;

/// A runtime value.
#[derive(Debug, Clone)]
pub enum Value {
    /// NULL
    Null,
}
