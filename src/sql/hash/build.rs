//! Small constructors for the sqlparser AST nodes the hash builders assemble.
//!
//! Every binary operation is wrapped in parentheses ([`Expr::Nested`]) so that the rendered
//! text never depends on operator precedence, which differs between dialects.

use sqlparser::ast::helpers::attached_token::AttachedToken;
use sqlparser::ast::{
    BinaryOperator, CaseWhen, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, Value,
};

/// `name(args...)`.
pub(super) fn func(name: &str, args: Vec<Expr>) -> Expr {
    func_with(name, args, Vec::new())
}

/// `name(args... clauses...)`, e.g. `string_agg(x, '' ORDER BY k)`.
pub(super) fn func_with(name: &str, args: Vec<Expr>, clauses: Vec<FunctionArgumentClause>) -> Expr {
    let args = args
        .into_iter()
        .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
        .collect();
    call(name, args, clauses)
}

/// `name(*)`.
pub(super) fn func_star(name: &str) -> Expr {
    call(
        name,
        vec![FunctionArg::Unnamed(FunctionArgExpr::Wildcard)],
        Vec::new(),
    )
}

fn call(name: &str, args: Vec<FunctionArg>, clauses: Vec<FunctionArgumentClause>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses,
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// A single-quoted string literal. Callers only pass fixed texts without backslashes.
pub(super) fn lit(s: &str) -> Expr {
    Expr::value(Value::SingleQuotedString(s.to_string()))
}

/// An integer literal.
pub(super) fn num(n: i64) -> Expr {
    Expr::value(Value::Number(n.to_string(), false))
}

/// `(l op r)`.
pub(super) fn bin(l: Expr, op: BinaryOperator, r: Expr) -> Expr {
    Expr::Nested(Box::new(Expr::BinaryOp {
        left: Box::new(l),
        op,
        right: Box::new(r),
    }))
}

/// `(l + r)`.
pub(super) fn add(l: Expr, r: Expr) -> Expr {
    bin(l, BinaryOperator::Plus, r)
}

/// `(l - r)`.
pub(super) fn sub(l: Expr, r: Expr) -> Expr {
    bin(l, BinaryOperator::Minus, r)
}

/// `(l * r)`.
pub(super) fn mul(l: Expr, r: Expr) -> Expr {
    bin(l, BinaryOperator::Multiply, r)
}

pub(super) use crate::sql::build::cast;

/// `CASE WHEN c1 THEN r1 ... [ELSE e] END`.
pub(super) fn case(whens: Vec<(Expr, Expr)>, else_result: Option<Expr>) -> Expr {
    Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: None,
        conditions: whens
            .into_iter()
            .map(|(condition, result)| CaseWhen { condition, result })
            .collect(),
        else_result: else_result.map(Box::new),
    }
}

/// An unquoted keyword-like identifier, e.g. `MICROSECOND` in `TIMESTAMPDIFF`.
pub(super) fn keyword(name: &str) -> Expr {
    Expr::Identifier(Ident::new(name))
}

/// `e LIKE 'pattern'`.
pub(super) fn like(e: Expr, pattern: &str) -> Expr {
    Expr::Like {
        negated: false,
        any: false,
        expr: Box::new(e),
        pattern: Box::new(lit(pattern)),
        escape_char: None,
    }
}
