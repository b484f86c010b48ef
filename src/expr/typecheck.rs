//! Static type checking: untyped [`Lambda`] + [`Env`] → [`TypedExpr`].

use super::ast::{BinOp, BoolOp, CmpOp, Expr, ExprKind, KwArg, Lambda, Literal, UnaryOp};
use super::functions::{Func, NAMES, TRUNC_UNITS};
use super::types::Type;
use super::value::Value;
use super::{ExprError, ExprErrorKind};
use crate::diag::{did_you_mean, Span};
use crate::types::Dtype;
use indexmap::IndexMap;

/// What the lambda parameter and bare names refer to.
#[derive(Debug, Clone, PartialEq)]
pub struct Env {
    mode: Mode,
}

#[derive(Debug, Clone, PartialEq)]
enum Mode {
    Row(IndexMap<String, Type>),
    Value(Type),
    Constant,
}

impl Env {
    /// A row environment: the parameter (e.g. `r`) is the row, `r["x"]`, `r.x` and a bare `x`
    /// read the field with alias `x`.
    pub fn row(fields: impl IntoIterator<Item = (String, Dtype)>) -> Env {
        Env {
            mode: Mode::Row(
                fields
                    .into_iter()
                    .map(|(k, d)| (k, Type::from_dtype(d)))
                    .collect(),
            ),
        }
    }

    /// An enrichment-output environment: the parameter (e.g. `v`) is the looked-up value.
    pub fn value(ty: Type) -> Env {
        Env {
            mode: Mode::Value(ty),
        }
    }

    /// No row and no value: reconciliation `start` / `end` / interval expressions.
    pub fn constant() -> Env {
        Env {
            mode: Mode::Constant,
        }
    }
}

/// A type-checked expression node.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedExpr {
    /// The static type.
    pub ty: Type,
    /// Where it came from in the configuration file.
    pub span: Span,
    /// What the node computes.
    pub kind: TypedKind,
}

/// The kinds of typed expression nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum TypedKind {
    /// A constant (a literal, or a folded sub-expression).
    Const(Value),
    /// A row field, by alias.
    Column(String),
    /// The lambda parameter in a value environment (the looked-up value), by name.
    Param(String),
    /// Member / element access on a JSON value, mapping or list (NULL when absent).
    Get {
        /// The container.
        base: Box<TypedExpr>,
        /// The key or index.
        key: Box<TypedExpr>,
    },
    /// `-x`, `not x` (`+x` is dropped by the checker).
    Unary {
        /// `Neg` or `Not`.
        op: UnaryOp,
        /// The operand.
        expr: Box<TypedExpr>,
    },
    /// Arithmetic.
    Binary {
        /// The operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<TypedExpr>,
        /// Right operand.
        rhs: Box<TypedExpr>,
    },
    /// `==`, `!=`, `<`, `<=`, `>`, `>=` (only these operators occur here).
    Compare {
        /// The operator.
        op: CmpOp,
        /// Left operand.
        lhs: Box<TypedExpr>,
        /// Right operand.
        rhs: Box<TypedExpr>,
    },
    /// `x is None` / `x is not None`.
    IsNull {
        /// The operand.
        expr: Box<TypedExpr>,
        /// True for `is not None`.
        negated: bool,
    },
    /// `x in c` / `x not in c` (list, string containment, JSON, mapping keys).
    In {
        /// The needle.
        expr: Box<TypedExpr>,
        /// The container.
        container: Box<TypedExpr>,
        /// True for `not in`.
        negated: bool,
    },
    /// Three-valued `and` / `or`.
    Bool {
        /// The operator.
        op: BoolOp,
        /// Left operand.
        lhs: Box<TypedExpr>,
        /// Right operand.
        rhs: Box<TypedExpr>,
    },
    /// `then if cond else otherwise` (a NULL condition takes `otherwise`).
    Cond {
        /// The condition.
        cond: Box<TypedExpr>,
        /// Value when true.
        then: Box<TypedExpr>,
        /// Value when false or NULL.
        otherwise: Box<TypedExpr>,
    },
    /// A library function call; arguments in parameter order, `None` when omitted.
    Call {
        /// The function.
        func: Func,
        /// Arguments by position.
        args: Vec<Option<TypedExpr>>,
    },
    /// A list literal.
    List(Vec<TypedExpr>),
    /// A mapping literal.
    Map(Vec<(String, TypedExpr)>),
}

/// Type-check a parsed lambda against an environment.
pub fn check(lambda: &Lambda, env: &Env) -> Result<TypedExpr, ExprError> {
    let c = Checker {
        env,
        param: lambda.params.first().map(String::as_str),
    };
    c.expr(&lambda.body)
}

struct Checker<'a> {
    env: &'a Env,
    param: Option<&'a str>,
}

/// Names that look like an escape hatch in Python; always rejected.
const FORBIDDEN: &[&str] = &[
    "os",
    "sys",
    "subprocess",
    "open",
    "eval",
    "exec",
    "compile",
    "globals",
    "locals",
    "vars",
    "getattr",
    "setattr",
    "delattr",
    "import",
    "importlib",
    "builtins",
    "input",
    "print",
    "breakpoint",
    "exit",
    "quit",
    "socket",
    "shutil",
    "pathlib",
    "type",
    "object",
    "dir",
];

fn not_available(name: &str, span: Span) -> ExprError {
    let help =
        did_you_mean(name, NAMES.iter().map(|(n, _)| *n)).map(|n| format!("did you mean `{n}`?"));
    ExprError::new(
        ExprErrorKind::Forbidden,
        format!("`{name}` is not available in expressions"),
        span,
    )
    .with_label("not a field or function of the expression language")
    .with_opt_help(help)
}

fn te(ty: Type, span: Span, kind: TypedKind) -> TypedExpr {
    TypedExpr { ty, span, kind }
}

fn type_err(msg: impl Into<String>, span: Span) -> ExprError {
    ExprError::new(ExprErrorKind::Type, msg, span)
}

impl Checker<'_> {
    fn expr(&self, e: &Expr) -> Result<TypedExpr, ExprError> {
        let span = e.span;
        match &e.kind {
            ExprKind::Lit(l) => Ok(match l {
                Literal::None => te(Type::Null, span, TypedKind::Const(Value::Null)),
                Literal::Bool(b) => te(Type::Bool, span, TypedKind::Const(Value::Bool(*b))),
                Literal::Int(i) => te(Type::Int, span, TypedKind::Const(Value::Int(*i))),
                Literal::Float(f) => te(Type::Float, span, TypedKind::Const(Value::Float(*f))),
                Literal::Str(s) => te(Type::Str, span, TypedKind::Const(Value::Str(s.clone()))),
            }),
            ExprKind::Name(n) => self.name(n, span),
            ExprKind::Attr {
                base,
                name,
                name_span,
            } => self.attr(e, base, name, *name_span),
            ExprKind::Index { base, index } => self.index(base, index, span),
            ExprKind::Call { func, args, kwargs } => self.call(func, args, kwargs, span),
            ExprKind::Unary { op, expr } => {
                let inner = self.expr(expr)?;
                match op {
                    UnaryOp::Pos | UnaryOp::Neg => {
                        if !(inner.ty.is_numeric()
                            || matches!(inner.ty, Type::Interval | Type::Null))
                        {
                            return Err(type_err(
                                format!("cannot negate a value of type `{}`", inner.ty),
                                span,
                            )
                            .with_label(format!("this is `{}`", inner.ty)));
                        }
                        if *op == UnaryOp::Pos {
                            return Ok(TypedExpr { span, ..inner });
                        }
                        Ok(te(
                            inner.ty.clone(),
                            span,
                            TypedKind::Unary {
                                op: UnaryOp::Neg,
                                expr: Box::new(inner),
                            },
                        ))
                    }
                    UnaryOp::Not => {
                        self.want_bool(&inner, "not")?;
                        Ok(te(
                            Type::Bool,
                            span,
                            TypedKind::Unary {
                                op: UnaryOp::Not,
                                expr: Box::new(inner),
                            },
                        ))
                    }
                }
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let l = self.expr(lhs)?;
                let r = self.expr(rhs)?;
                let ty = arith_type(*op, &l.ty, &r.ty).ok_or_else(|| {
                    let mut err = type_err(
                        format!(
                            "cannot apply `{}` to `{}` and `{}`",
                            op.symbol(),
                            l.ty,
                            r.ty
                        ),
                        span,
                    )
                    .with_label(format!(
                        "`{}` {} `{}`",
                        l.ty,
                        op.symbol(),
                        r.ty
                    ));
                    if l.ty == Type::Json || r.ty == Type::Json {
                        err =
                            err.with_help("convert JSON values first with int(), float() or str()");
                    } else if l.ty == Type::Str || r.ty == Type::Str {
                        err = err.with_help("use str(x) to turn a value into text");
                    }
                    err
                })?;
                Ok(te(
                    ty,
                    span,
                    TypedKind::Binary {
                        op: *op,
                        lhs: Box::new(l),
                        rhs: Box::new(r),
                    },
                ))
            }
            ExprKind::Compare { op, lhs, rhs } => self.compare(*op, lhs, rhs, span),
            ExprKind::Bool { op, lhs, rhs } => {
                let l = self.expr(lhs)?;
                let r = self.expr(rhs)?;
                let word = if *op == BoolOp::And { "and" } else { "or" };
                self.want_bool(&l, word)?;
                self.want_bool(&r, word)?;
                Ok(te(
                    Type::Bool,
                    span,
                    TypedKind::Bool {
                        op: *op,
                        lhs: Box::new(l),
                        rhs: Box::new(r),
                    },
                ))
            }
            ExprKind::Cond {
                cond,
                then,
                otherwise,
            } => {
                let c = self.expr(cond)?;
                self.want_bool(&c, "if")?;
                let t = self.expr(then)?;
                let o = self.expr(otherwise)?;
                let ty = t.ty.unify(&o.ty).ok_or_else(|| {
                    type_err(
                        format!(
                            "the branches of the conditional have different types: `{}` and `{}`",
                            t.ty, o.ty
                        ),
                        span,
                    )
                    .with_label(format!("`{}` if … else `{}`", t.ty, o.ty))
                })?;
                Ok(te(
                    ty,
                    span,
                    TypedKind::Cond {
                        cond: Box::new(c),
                        then: Box::new(t),
                        otherwise: Box::new(o),
                    },
                ))
            }
            ExprKind::List(items) => {
                let items = items
                    .iter()
                    .map(|i| self.expr(i))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut ty = Type::Null;
                for i in &items {
                    ty = ty.unify(&i.ty).ok_or_else(|| {
                        type_err(
                            format!("list elements have different types: `{ty}` and `{}`", i.ty),
                            i.span,
                        )
                    })?;
                }
                Ok(te(Type::List(Box::new(ty)), span, TypedKind::List(items)))
            }
            ExprKind::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                let mut tys = Vec::with_capacity(entries.len());
                for en in entries {
                    let v = self.expr(&en.value)?;
                    tys.push((en.key.clone(), v.ty.clone()));
                    out.push((en.key.clone(), v));
                }
                Ok(te(Type::Map(tys), span, TypedKind::Map(out)))
            }
        }
    }

    fn want_bool(&self, e: &TypedExpr, what: &str) -> Result<(), ExprError> {
        if matches!(e.ty, Type::Bool | Type::Null) {
            return Ok(());
        }
        let mut err = type_err(format!("`{what}` needs a bool, found `{}`", e.ty), e.span)
            .with_label(format!("this is `{}`", e.ty));
        if what == "or" {
            err = err.with_help("use coalesce(a, b) for a default value");
        } else {
            err = err.with_help("compare explicitly, e.g. `x is not None` or `x != \"\"`");
        }
        Err(err)
    }

    fn row_fields(&self) -> Option<&IndexMap<String, Type>> {
        match &self.env.mode {
            Mode::Row(f) => Some(f),
            _ => None,
        }
    }

    fn column(&self, name: &str, span: Span) -> Result<TypedExpr, ExprError> {
        let fields = self
            .row_fields()
            .ok_or_else(|| type_err("this expression has no row", span))?;
        match fields.get(name) {
            Some(t) => Ok(te(t.clone(), span, TypedKind::Column(name.to_string()))),
            None => {
                let help = did_you_mean(name, fields.keys().map(String::as_str))
                    .map(|n| format!("did you mean `{n}`?"))
                    .or_else(|| {
                        (!fields.is_empty()).then(|| {
                            format!(
                                "known fields: {}",
                                crate::diag::name_list(
                                    &fields.keys().map(String::as_str).collect::<Vec<_>>()
                                )
                            )
                        })
                    });
                Err(ExprError::new(
                    ExprErrorKind::UnknownName,
                    format!("unknown field `{name}`"),
                    span,
                )
                .with_label("not a field alias of the source row")
                .with_opt_help(help))
            }
        }
    }

    fn name(&self, n: &str, span: Span) -> Result<TypedExpr, ExprError> {
        if n.starts_with("__") || FORBIDDEN.contains(&n) {
            return Err(not_available(n, span));
        }
        if Some(n) == self.param {
            return match &self.env.mode {
                Mode::Row(_) => Err(type_err(
                    format!("the row `{n}` cannot be used as a value"),
                    span,
                )
                .with_help(format!("read a field with {n}[\"field\"] or {n}.field"))),
                Mode::Value(t) => Ok(te(t.clone(), span, TypedKind::Param(n.to_string()))),
                Mode::Constant => Err(type_err(
                    format!("`{n}` has no value here: this expression is evaluated without a row"),
                    span,
                )
                .with_help("write `lambda: …` or a bare expression")),
            };
        }
        if let Some(fields) = self.row_fields() {
            if fields.contains_key(n) {
                return self.column(n, span);
            }
        }
        if let Some(f) = Func::lookup(n) {
            return Err(type_err(format!("function `{n}` must be called"), span)
                .with_help(format!("write `{}()`", f.name())));
        }
        if n == "datetime" {
            return Err(
                type_err("`datetime` is a module, not a value", span).with_help(
                    "call datetime.datetime(…), datetime.date(…) or datetime.timedelta(…)",
                ),
            );
        }
        if self.row_fields().is_some() {
            return self.column(n, span);
        }
        Err(not_available(n, span))
    }

    fn attr(
        &self,
        whole: &Expr,
        base: &Expr,
        name: &str,
        name_span: Span,
    ) -> Result<TypedExpr, ExprError> {
        if name.starts_with("__") {
            return Err(not_available(name, name_span));
        }
        if let ExprKind::Name(b) = &base.kind {
            if Some(b.as_str()) == self.param {
                if self.row_fields().is_some() {
                    return self.column(name, whole.span);
                }
                if let Mode::Value(t) = &self.env.mode {
                    let base = te(t.clone(), base.span, TypedKind::Param(b.clone()));
                    let key = te(
                        Type::Str,
                        name_span,
                        TypedKind::Const(Value::Str(name.to_string())),
                    );
                    return self.get(base, key, whole.span);
                }
            }
        }
        if let Some(path) = whole.dotted_path() {
            if let Some(f) = Func::lookup(&path) {
                return Err(
                    type_err(format!("function `{path}` must be called"), whole.span)
                        .with_help(format!("write `{}()`", f.name())),
                );
            }
            let root = path.split('.').next().unwrap_or(&path);
            if root != "datetime" && Some(root) != self.param {
                return Err(not_available(root, base_root_span(base)));
            }
            if root == "datetime" {
                return Err(not_available(&path, whole.span));
            }
        }
        Err(ExprError::new(
            ExprErrorKind::Forbidden,
            format!("attribute `.{name}` is not available"),
            name_span,
        )
        .with_label("attributes are only allowed on the row parameter and `datetime`")
        .with_help("use x[\"key\"] to read a JSON member"))
    }

    fn index(&self, base: &Expr, index: &Expr, span: Span) -> Result<TypedExpr, ExprError> {
        if let ExprKind::Name(b) = &base.kind {
            if Some(b.as_str()) == self.param && self.row_fields().is_some() {
                return match &index.kind {
                    ExprKind::Lit(Literal::Str(s)) => self.column(s, span),
                    _ => Err(
                        type_err("a row field must be named by a string literal", index.span)
                            .with_help(format!("write {b}[\"field\"]")),
                    ),
                };
            }
        }
        let b = self.expr(base)?;
        let k = self.expr(index)?;
        self.get(b, k, span)
    }

    fn get(&self, base: TypedExpr, key: TypedExpr, span: Span) -> Result<TypedExpr, ExprError> {
        let ty = match (&base.ty, &key.ty) {
            (Type::Json, Type::Str | Type::Int | Type::Null) => Type::Json,
            (Type::Null, _) => Type::Null,
            (Type::List(t), Type::Int | Type::Null) => (**t).clone(),
            (Type::Map(fields), _) => {
                let TypedKind::Const(Value::Str(k)) = &key.kind else {
                    return Err(type_err("a mapping key must be a string literal", key.span));
                };
                match fields.iter().find(|(n, _)| n == k) {
                    Some((_, t)) => t.clone(),
                    None => {
                        let help = did_you_mean(k, fields.iter().map(|(n, _)| n.as_str()))
                            .map(|n| format!("did you mean \"{n}\"?"));
                        return Err(ExprError::new(
                            ExprErrorKind::UnknownName,
                            format!("the mapping has no key \"{k}\""),
                            key.span,
                        )
                        .with_opt_help(help));
                    }
                }
            }
            (b, k) => {
                return Err(type_err(
                    format!("cannot index a value of type `{b}` with `{k}`"),
                    span,
                )
                .with_label(format!("this is `{b}`")))
            }
        };
        Ok(te(
            ty,
            span,
            TypedKind::Get {
                base: Box::new(base),
                key: Box::new(key),
            },
        ))
    }

    fn call(
        &self,
        func: &Expr,
        args: &[Expr],
        kwargs: &[KwArg],
        span: Span,
    ) -> Result<TypedExpr, ExprError> {
        let path = func.dotted_path();
        let f = path.as_deref().and_then(Func::lookup);
        let Some(f) = f else {
            return Err(self.bad_callee(func, path.as_deref()));
        };
        let path = path.unwrap_or_default();
        let params = f.params();
        let n_slots = if f.variadic() {
            args.len().max(f.required())
        } else {
            params.len()
        };
        if args.len() > n_slots {
            return Err(ExprError::new(
                ExprErrorKind::Arity,
                format!(
                    "`{}` takes at most {} argument{}, {} given",
                    path,
                    params.len(),
                    if params.len() == 1 { "" } else { "s" },
                    args.len()
                ),
                span,
            ));
        }
        let mut slots: Vec<Option<TypedExpr>> = vec![None; n_slots];
        for (i, a) in args.iter().enumerate() {
            slots[i] = Some(self.expr(a)?);
        }
        for kw in kwargs {
            let idx = if f.variadic() {
                None
            } else {
                params.iter().position(|p| *p == kw.name)
            };
            let Some(idx) = idx else {
                let help = did_you_mean(&kw.name, params.iter().copied())
                    .map(|n| format!("did you mean `{n}`?"))
                    .unwrap_or_else(|| format!("parameters: {}", params.join(", ")));
                return Err(ExprError::new(
                    ExprErrorKind::Arity,
                    format!("`{path}` has no parameter `{}`", kw.name),
                    kw.name_span,
                )
                .with_help(help));
            };
            if slots[idx].is_some() {
                return Err(ExprError::new(
                    ExprErrorKind::Arity,
                    format!("argument `{}` of `{path}` given twice", kw.name),
                    kw.name_span,
                ));
            }
            slots[idx] = Some(self.expr(&kw.value)?);
        }
        if let Some(missing) = (0..f.required()).find(|i| slots[*i].is_none()) {
            return Err(ExprError::new(
                ExprErrorKind::Arity,
                format!(
                    "`{path}` is missing argument `{}`",
                    params.get(missing).copied().unwrap_or("value")
                ),
                span,
            ));
        }
        // Trailing omitted optional arguments are dropped so that printing stays short.
        while slots.len() > f.required() && slots.last().is_some_and(Option::is_none) {
            slots.pop();
        }
        let tys: Vec<Option<Type>> = slots
            .iter()
            .map(|s| s.as_ref().map(|e| e.ty.clone()))
            .collect();
        let ty = f.result_type(&tys).map_err(|(i, msg)| {
            let sp = slots
                .get(i)
                .and_then(|s| s.as_ref())
                .map_or(span, |e| e.span);
            type_err(msg, sp)
        })?;
        if f == Func::DateTrunc {
            if let Some(Some(TypedExpr {
                kind: TypedKind::Const(Value::Str(u)),
                span: usp,
                ..
            })) = slots.first()
            {
                if !TRUNC_UNITS.contains(&u.as_str()) {
                    let help = did_you_mean(u, TRUNC_UNITS.iter().copied())
                        .map(|n| format!("did you mean \"{n}\"?"))
                        .unwrap_or_else(|| format!("units: {}", TRUNC_UNITS.join(", ")));
                    return Err(
                        type_err(format!("unknown date_trunc unit \"{u}\""), *usp).with_help(help)
                    );
                }
            }
        }
        Ok(te(
            ty,
            span,
            TypedKind::Call {
                func: f,
                args: slots,
            },
        ))
    }

    /// The error for calling something that is not a library function.
    fn bad_callee(&self, func: &Expr, path: Option<&str>) -> ExprError {
        if let ExprKind::Attr {
            name,
            name_span,
            base,
        } = &func.kind
        {
            if name.starts_with("__") {
                return not_available(name, *name_span);
            }
            let root = path.and_then(|p| p.split('.').next());
            if root != Some("datetime") {
                if let Some(r) = root.filter(|r| Some(*r) != self.param) {
                    return not_available(r, base_root_span(base));
                }
                let err = ExprError::new(
                    ExprErrorKind::Forbidden,
                    format!("methods are not available: `.{name}()`"),
                    *name_span,
                );
                return match Func::lookup(name) {
                    Some(f) => {
                        err.with_help(format!("call the function instead: {}(x, …)", f.name()))
                    }
                    None => err,
                };
            }
        }
        match path {
            Some(p) => {
                let head = if p.starts_with("datetime") {
                    p
                } else {
                    p.split('.').next().unwrap_or(p)
                };
                let span = if p.starts_with("datetime") {
                    func.span
                } else {
                    base_root_span(func)
                };
                not_available(head, span)
            }
            None => type_err("only library functions can be called", func.span),
        }
    }

    fn compare(
        &self,
        op: CmpOp,
        lhs: &Expr,
        rhs: &Expr,
        span: Span,
    ) -> Result<TypedExpr, ExprError> {
        match op {
            CmpOp::Is | CmpOp::IsNot => {
                if !matches!(rhs.kind, ExprKind::Lit(Literal::None)) {
                    return Err(type_err("`is` can only compare with None", rhs.span)
                        .with_help("use `==` to compare values"));
                }
                let l = self.expr(lhs)?;
                Ok(te(
                    Type::Bool,
                    span,
                    TypedKind::IsNull {
                        expr: Box::new(l),
                        negated: op == CmpOp::IsNot,
                    },
                ))
            }
            CmpOp::In | CmpOp::NotIn => {
                let l = self.expr(lhs)?;
                let r = self.expr(rhs)?;
                let ok = match &r.ty {
                    Type::List(t) => l.ty.comparable(t),
                    Type::Str => matches!(l.ty, Type::Str | Type::Null),
                    Type::Json | Type::Null => true,
                    Type::Map(_) => matches!(l.ty, Type::Str | Type::Null),
                    _ => false,
                };
                if !ok {
                    return Err(type_err(
                        format!("cannot test whether `{}` is in `{}`", l.ty, r.ty),
                        span,
                    )
                    .with_label(format!("`{}` in `{}`", l.ty, r.ty)));
                }
                Ok(te(
                    Type::Bool,
                    span,
                    TypedKind::In {
                        expr: Box::new(l),
                        container: Box::new(r),
                        negated: op == CmpOp::NotIn,
                    },
                ))
            }
            _ => {
                let l = self.expr(lhs)?;
                let r = self.expr(rhs)?;
                if !l.ty.comparable(&r.ty) {
                    let mut err =
                        type_err(format!("cannot compare `{}` with `{}`", l.ty, r.ty), span)
                            .with_label(format!("`{}` {} `{}`", l.ty, op.symbol(), r.ty));
                    if l.ty == Type::Str || r.ty == Type::Str {
                        err = err.with_help("convert with int(…), float(…) or str(…) first");
                    }
                    return Err(err);
                }
                Ok(te(
                    Type::Bool,
                    span,
                    TypedKind::Compare {
                        op,
                        lhs: Box::new(l),
                        rhs: Box::new(r),
                    },
                ))
            }
        }
    }
}

fn base_root_span(e: &Expr) -> Span {
    match &e.kind {
        ExprKind::Attr { base, .. } => base_root_span(base),
        _ => e.span,
    }
}

/// The result type of an arithmetic operation, or `None` when it is not allowed.
pub(crate) fn arith_type(op: BinOp, l: &Type, r: &Type) -> Option<Type> {
    use Type::*;
    let numeric = |l: &Type, r: &Type| -> Option<Type> {
        Some(match (l, r) {
            (Int, Int) => Int,
            (Float, _) | (_, Float) => Float,
            (Decimal, _) | (_, Decimal) => Decimal,
            _ => return None,
        })
    };
    match (l, r) {
        (Null, Null) => return Some(Null),
        (Null, t) | (t, Null) => {
            // NULL with a type the operator accepts: the result has the type the operator
            // would give with that type on both sides (NULL at run time).
            return arith_type(op, t, t).or_else(|| match (op, t) {
                (BinOp::Add | BinOp::Sub, Interval) => Some(Interval),
                (BinOp::Add | BinOp::Sub, Datetime | Date) => Some(t.clone()),
                _ => None,
            });
        }
        _ => {}
    }
    match op {
        BinOp::Add => match (l, r) {
            (a, b) if a.is_numeric() && b.is_numeric() => numeric(a, b),
            (Str, Str) => Some(Str),
            (Datetime, Interval) | (Interval, Datetime) => Some(Datetime),
            (Date, Interval) | (Interval, Date) => Some(Date),
            (Interval, Interval) => Some(Interval),
            _ => None,
        },
        BinOp::Sub => match (l, r) {
            (a, b) if a.is_numeric() && b.is_numeric() => numeric(a, b),
            (Datetime, Interval) => Some(Datetime),
            (Date, Interval) => Some(Date),
            (a, b) if a.is_temporal() && b.is_temporal() => Some(Interval),
            (Interval, Interval) => Some(Interval),
            _ => None,
        },
        BinOp::Mul => match (l, r) {
            (a, b) if a.is_numeric() && b.is_numeric() => numeric(a, b),
            (Interval, Int) | (Int, Interval) => Some(Interval),
            _ => None,
        },
        BinOp::Div => match (l, r) {
            (Int, Int) => Some(Float),
            (a, b) if a.is_numeric() && b.is_numeric() => numeric(a, b),
            (Interval, Interval) => Some(Float),
            _ => None,
        },
        BinOp::FloorDiv | BinOp::Mod => match (l, r) {
            (a, b) if a.is_numeric() && b.is_numeric() => numeric(a, b),
            _ => None,
        },
    }
}
