//! The expression language (SPEC §3): a small, statically typed, Python-lambda-compatible
//! language used for computed sink fields, enrichment outputs and reconciliation bounds.
//!
//! Pipeline: [`parse`] (pest grammar `grammar/expr.pest`) → [`check`] (static types against
//! the row's dtypes, giving a [`TypedExpr`]) → [`TypedExpr::fold`] (constant folding) →
//! either [`crate::sql::pushdown::to_sql`] (pushed into the extract SQL) or [`eval`] per row.
//!
//! Nothing in the language can reach files, the network or the process: the only names are
//! the lambda parameter, row aliases, and the functions in [`functions`].

pub mod ast;
mod display;
pub mod eval;
mod fold;
pub mod functions;
pub mod parse;
pub mod typecheck;
pub mod types;
pub mod value;

#[cfg(test)]
mod tests;

pub use ast::{Expr, Lambda, Parsed};
pub use eval::{eval, EvalCtx, EvalError, EvalErrorKind};
pub use parse::parse;
pub use typecheck::{check, Env, TypedExpr, TypedKind};
pub use types::Type;
pub use value::{Decimal, Value};

use crate::diag::{Diagnostic, Span};

/// What kind of compile-time problem an [`ExprError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExprErrorKind {
    /// The text does not follow the grammar.
    Syntax,
    /// An operand or argument has the wrong type.
    Type,
    /// A name that is not a field, parameter or function.
    UnknownName,
    /// A construct that is deliberately not available (imports, dunders, attributes…).
    Forbidden,
    /// A function called with the wrong number or names of arguments.
    Arity,
    /// Evaluating a constant sub-expression at compile time failed (e.g. division by zero).
    Constant,
    /// The expression is too long or too deeply nested.
    Limit,
}

/// A compile-time error in an expression, located by an absolute span in the config file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// The category.
    pub kind: ExprErrorKind,
    /// One-line message.
    pub message: String,
    /// The offending text.
    pub span: Span,
    /// Short caret label.
    pub label: Option<String>,
    /// A hint, e.g. "did you mean `lower`?".
    pub help: Option<String>,
}

impl ExprError {
    /// A new error without label or help.
    pub fn new(kind: ExprErrorKind, message: impl Into<String>, span: Span) -> Self {
        ExprError {
            kind,
            message: message.into(),
            span,
            label: None,
            help: None,
        }
    }

    /// Attach a caret label.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Attach a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Attach an optional help line.
    pub fn with_opt_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }
}

impl From<ExprError> for Diagnostic {
    fn from(e: ExprError) -> Diagnostic {
        let mut d = Diagnostic::error(e.message).with_span(e.span);
        if let Some(l) = e.label {
            d = d.with_label(l);
        }
        if let Some(h) = e.help {
            d = d.with_help(h);
        }
        d
    }
}
