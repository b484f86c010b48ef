//! Queries over typed trees (constness, columns read) and constant folding.

use super::ast::BoolOp;
use super::eval::{eval, EvalCtx};
use super::typecheck::{TypedExpr, TypedKind};
use super::value::Value;
use super::{ExprError, ExprErrorKind};

impl TypedExpr {
    /// The direct sub-expressions, in source order.
    pub fn children(&self) -> Vec<&TypedExpr> {
        match &self.kind {
            TypedKind::Const(_) | TypedKind::Column(_) | TypedKind::Param(_) => Vec::new(),
            TypedKind::Get { base: a, key: b }
            | TypedKind::Binary { lhs: a, rhs: b, .. }
            | TypedKind::Compare { lhs: a, rhs: b, .. }
            | TypedKind::Bool { lhs: a, rhs: b, .. }
            | TypedKind::In {
                expr: a,
                container: b,
                ..
            } => vec![a, b],
            TypedKind::Unary { expr, .. } | TypedKind::IsNull { expr, .. } => vec![expr],
            TypedKind::Cond {
                cond,
                then,
                otherwise,
            } => vec![then, cond, otherwise],
            TypedKind::Call { args, .. } => args.iter().flatten().collect(),
            TypedKind::List(items) => items.iter().collect(),
            TypedKind::Map(entries) => entries.iter().map(|(_, v)| v).collect(),
        }
    }

    /// True when the value depends on neither the row, the lambda value, nor the run's
    /// `now` (`now()`, `today()`): it can be computed once at compile time.
    pub fn is_constant(&self) -> bool {
        match &self.kind {
            TypedKind::Column(_) | TypedKind::Param(_) => false,
            TypedKind::Call { func, .. } if func.is_volatile() => false,
            _ => self.children().into_iter().all(TypedExpr::is_constant),
        }
    }

    /// True when the expression calls `now()` / `today()` (or their `datetime.*` spellings).
    pub fn uses_now(&self) -> bool {
        matches!(&self.kind, TypedKind::Call { func, .. } if func.is_volatile())
            || self.children().into_iter().any(TypedExpr::uses_now)
    }

    /// Row aliases the expression reads, in order of first use, without duplicates.
    pub fn columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out
    }

    fn collect_columns(&self, out: &mut Vec<String>) {
        if let TypedKind::Column(c) = &self.kind {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        for c in self.children() {
            c.collect_columns(out);
        }
    }

    /// The value, when the node is a constant.
    pub fn const_value(&self) -> Option<Value> {
        match &self.kind {
            TypedKind::Const(v) => Some(v.clone()),
            _ => None,
        }
    }

    /// Constant folding: every constant sub-tree is replaced by its value
    /// (`1*365*24*60*60` becomes `31536000`), and conditionals / `and` / `or` with a
    /// constant condition are simplified. An error while computing a constant (division
    /// by zero, overflow, invalid date) is a compile error at that sub-expression.
    pub fn fold(&self) -> Result<TypedExpr, ExprError> {
        let folded = self.fold_children()?;
        let all_const = folded
            .children()
            .into_iter()
            .all(|c| matches!(c.kind, TypedKind::Const(_)));
        let foldable = match &folded.kind {
            TypedKind::Const(_) | TypedKind::Column(_) | TypedKind::Param(_) => false,
            TypedKind::Call { func, .. } => !func.is_volatile() && all_const,
            _ => all_const,
        };
        if foldable {
            let ctx = EvalCtx::constant(chrono::DateTime::UNIX_EPOCH.naive_utc());
            let v = eval(&folded, &ctx).map_err(|e| {
                ExprError::new(
                    ExprErrorKind::Constant,
                    format!("constant expression cannot be computed: {}", e.message),
                    e.span,
                )
                .with_label("evaluated at compile time")
            })?;
            return Ok(TypedExpr {
                ty: folded.ty,
                span: folded.span,
                kind: TypedKind::Const(v),
            });
        }
        Ok(simplify(folded))
    }

    fn fold_children(&self) -> Result<TypedExpr, ExprError> {
        let f = |e: &TypedExpr| e.fold().map(Box::new);
        let kind = match &self.kind {
            k @ (TypedKind::Const(_) | TypedKind::Column(_) | TypedKind::Param(_)) => k.clone(),
            TypedKind::Get { base, key } => TypedKind::Get {
                base: f(base)?,
                key: f(key)?,
            },
            TypedKind::Unary { op, expr } => TypedKind::Unary {
                op: *op,
                expr: f(expr)?,
            },
            TypedKind::Binary { op, lhs, rhs } => TypedKind::Binary {
                op: *op,
                lhs: f(lhs)?,
                rhs: f(rhs)?,
            },
            TypedKind::Compare { op, lhs, rhs } => TypedKind::Compare {
                op: *op,
                lhs: f(lhs)?,
                rhs: f(rhs)?,
            },
            TypedKind::IsNull { expr, negated } => TypedKind::IsNull {
                expr: f(expr)?,
                negated: *negated,
            },
            TypedKind::In {
                expr,
                container,
                negated,
            } => TypedKind::In {
                expr: f(expr)?,
                container: f(container)?,
                negated: *negated,
            },
            TypedKind::Bool { op, lhs, rhs } => TypedKind::Bool {
                op: *op,
                lhs: f(lhs)?,
                rhs: f(rhs)?,
            },
            TypedKind::Cond {
                cond,
                then,
                otherwise,
            } => TypedKind::Cond {
                cond: f(cond)?,
                then: f(then)?,
                otherwise: f(otherwise)?,
            },
            TypedKind::Call { func, args } => TypedKind::Call {
                func: *func,
                args: args
                    .iter()
                    .map(|a| a.as_ref().map(|a| a.fold()).transpose())
                    .collect::<Result<_, _>>()?,
            },
            TypedKind::List(items) => {
                TypedKind::List(items.iter().map(|i| i.fold()).collect::<Result<_, _>>()?)
            }
            TypedKind::Map(entries) => TypedKind::Map(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.fold()?)))
                    .collect::<Result<_, ExprError>>()?,
            ),
        };
        Ok(TypedExpr {
            ty: self.ty.clone(),
            span: self.span,
            kind,
        })
    }
}

/// Simplifications that keep semantics: a constant condition selects its branch;
/// `False and x` is False, `True or x` is True, `True and x` / `False or x` is `x`.
fn simplify(e: TypedExpr) -> TypedExpr {
    let TypedExpr { ty, span, kind } = e;
    match kind {
        TypedKind::Cond {
            cond,
            then,
            otherwise,
        } if matches!(cond.kind, TypedKind::Const(_)) => {
            let branch = if cond.const_value() == Some(Value::Bool(true)) {
                then
            } else {
                otherwise
            };
            TypedExpr { ty, ..*branch }
        }
        TypedKind::Bool { op, lhs, rhs } => match (op, lhs.const_value()) {
            (BoolOp::And, Some(Value::Bool(false))) | (BoolOp::Or, Some(Value::Bool(true))) => {
                TypedExpr {
                    ty,
                    span,
                    kind: lhs.kind,
                }
            }
            (BoolOp::And, Some(Value::Bool(true))) | (BoolOp::Or, Some(Value::Bool(false))) => {
                TypedExpr { ty, ..*rhs }
            }
            _ => TypedExpr {
                ty,
                span,
                kind: TypedKind::Bool { op, lhs, rhs },
            },
        },
        kind => TypedExpr { ty, span, kind },
    }
}
