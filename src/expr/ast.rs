//! Untyped syntax tree produced by the parser. Every node carries its absolute source span.

use crate::diag::{Diagnostic, Span};

/// The result of parsing: the lambda and any warnings (seed-compatibility repairs).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The parsed expression, as a lambda (a bare expression is a lambda without parameters).
    pub lambda: Lambda,
    /// Warnings, e.g. a repaired unbalanced quote.
    pub warnings: Vec<Diagnostic>,
}

/// `lambda p: body`, or a bare `body` (then `params` is empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Lambda {
    /// Parameter names: zero or one.
    pub params: Vec<String>,
    /// The body.
    pub body: Expr,
    /// Span of the whole expression text.
    pub span: Span,
}

/// An expression node with its source span.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What the node is.
    pub kind: ExprKind,
    /// Where it is in the configuration file.
    pub span: Span,
}

/// A literal constant as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// A string literal (escapes resolved).
    Str(String),
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `+x`
    Pos,
    /// `not x`
    Not,
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (true division)
    Div,
    /// `//` (floor division)
    FloorDiv,
    /// `%` (floored modulo, sign of the divisor)
    Mod,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(&self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::FloorDiv => "//",
            BinOp::Mod => "%",
        }
    }
}

/// Comparison operators (including membership and identity with `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in`
    In,
    /// `not in`
    NotIn,
    /// `is`
    Is,
    /// `is not`
    IsNot,
}

impl CmpOp {
    /// The operator as written.
    pub fn symbol(&self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::In => "in",
            CmpOp::NotIn => "not in",
            CmpOp::Is => "is",
            CmpOp::IsNot => "is not",
        }
    }
}

/// `and` / `or`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BoolOp {
    /// `and`
    And,
    /// `or`
    Or,
}

/// A keyword argument `name=value` in a call.
#[derive(Debug, Clone, PartialEq)]
pub struct KwArg {
    /// The keyword.
    pub name: String,
    /// Span of the keyword.
    pub name_span: Span,
    /// The value.
    pub value: Expr,
}

/// One `key: value` entry of a mapping literal.
#[derive(Debug, Clone, PartialEq)]
pub struct MapEntry {
    /// The key (mapping keys are always strings).
    pub key: String,
    /// Span of the key as written.
    pub key_span: Span,
    /// The value.
    pub value: Expr,
}

/// The kinds of expression nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A literal.
    Lit(Literal),
    /// A bare name: the lambda parameter, a row alias, or a function / module name.
    Name(String),
    /// `base.name`.
    Attr {
        /// The object.
        base: Box<Expr>,
        /// The attribute.
        name: String,
        /// Span of the attribute name.
        name_span: Span,
    },
    /// `base[index]`.
    Index {
        /// The object.
        base: Box<Expr>,
        /// The subscript.
        index: Box<Expr>,
    },
    /// `func(args…, kw=value…)`.
    Call {
        /// The callee (a name or dotted attribute path).
        func: Box<Expr>,
        /// Positional arguments.
        args: Vec<Expr>,
        /// Keyword arguments.
        kwargs: Vec<KwArg>,
    },
    /// A unary operation.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        expr: Box<Expr>,
    },
    /// An arithmetic operation.
    Binary {
        /// The operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// A comparison (chains `a < b < c` are expanded to `a < b and b < c`).
    Compare {
        /// The operator.
        op: CmpOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `and` / `or`.
    Bool {
        /// The operator.
        op: BoolOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `then if cond else otherwise`.
    Cond {
        /// The condition.
        cond: Box<Expr>,
        /// Value when the condition is true.
        then: Box<Expr>,
        /// Value otherwise (also when the condition is NULL).
        otherwise: Box<Expr>,
    },
    /// `[a, b]` or `(a, b)`.
    List(Vec<Expr>),
    /// `{"k": v}`.
    Map(Vec<MapEntry>),
}

impl Expr {
    /// Depth of the tree (a leaf has depth 1). Iterative over the left spine is not needed:
    /// the parser bounds the input size, so recursion stays shallow.
    pub fn depth(&self) -> usize {
        1 + match &self.kind {
            ExprKind::Lit(_) | ExprKind::Name(_) => 0,
            ExprKind::Attr { base, .. } => base.depth(),
            ExprKind::Index { base, index } => base.depth().max(index.depth()),
            ExprKind::Call { func, args, kwargs } => func
                .depth()
                .max(args.iter().map(Expr::depth).max().unwrap_or(0))
                .max(kwargs.iter().map(|k| k.value.depth()).max().unwrap_or(0)),
            ExprKind::Unary { expr, .. } => expr.depth(),
            ExprKind::Binary { lhs, rhs, .. }
            | ExprKind::Compare { lhs, rhs, .. }
            | ExprKind::Bool { lhs, rhs, .. } => lhs.depth().max(rhs.depth()),
            ExprKind::Cond {
                cond,
                then,
                otherwise,
            } => cond.depth().max(then.depth()).max(otherwise.depth()),
            ExprKind::List(items) => items.iter().map(Expr::depth).max().unwrap_or(0),
            ExprKind::Map(entries) => entries.iter().map(|e| e.value.depth()).max().unwrap_or(0),
        }
    }

    /// The dotted path of a name or attribute chain (`datetime.datetime.now`), if it is one.
    pub fn dotted_path(&self) -> Option<String> {
        match &self.kind {
            ExprKind::Name(n) => Some(n.clone()),
            ExprKind::Attr { base, name, .. } => Some(format!("{}.{}", base.dotted_path()?, name)),
            _ => None,
        }
    }
}
