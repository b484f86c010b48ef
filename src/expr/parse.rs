//! Parser: pest grammar (`grammar/expr.pest`) → [`ast`](super::ast) with absolute spans.

use super::ast::{
    BinOp, BoolOp, CmpOp, Expr, ExprKind, KwArg, Lambda, Literal, MapEntry, Parsed, UnaryOp,
};
use super::{ExprError, ExprErrorKind};
use crate::diag::{Diagnostic, Span};
use pest::iterators::Pair;
use pest::Parser;

/// Longest expression text accepted, in bytes.
pub const MAX_LEN: usize = 4096;
/// Deepest bracket / conditional nesting accepted.
pub const MAX_NESTING: usize = 32;
/// Deepest syntax tree accepted (bounds recursion in every later stage).
pub const MAX_DEPTH: usize = 256;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/expr.pest"]
struct ExprParser;

/// Parse expression text. `origin` is the span of `src` inside the configuration file
/// (`src` byte 0 is `origin.start`); every span in the result is absolute.
///
/// Accepts `lambda p: body`, `lambda: body` and a bare `body`. A lambda with two or more
/// parameters is an error.
pub fn parse(src: &str, origin: Span) -> Result<Parsed, ExprError> {
    let b = Builder {
        base: origin.start,
        warnings: Vec::new(),
    };
    b.run(src)
}

struct Builder {
    base: usize,
    warnings: Vec<Diagnostic>,
}

fn friendly(rule: &Rule) -> String {
    match rule {
        Rule::EOI => "end of expression",
        Rule::expr | Rule::disjunction | Rule::conjunction | Rule::inversion => "an expression",
        Rule::comparison | Rule::sum | Rule::term | Rule::factor | Rule::primary => "an expression",
        Rule::comp_op => "a comparison",
        Rule::add_op | Rule::mul_op => "an operator",
        Rule::call => "`(`",
        Rule::index => "`[`",
        Rule::attr => "`.`",
        Rule::ident | Rule::params => "a name",
        Rule::int | Rule::float => "a number",
        Rule::string => "a string",
        Rule::kw_else => "`else`",
        Rule::kw_if => "`if`",
        Rule::kw_and => "`and`",
        Rule::kw_or => "`or`",
        Rule::kw_in => "`in`",
        Rule::kw_lambda => "`lambda`",
        Rule::entry => "a `key: value` entry",
        Rule::tuple_comma => "`,`",
        _ => return format!("{rule:?}"),
    }
    .to_string()
}

impl Builder {
    fn span(&self, p: &pest::Span<'_>) -> Span {
        Span::new(self.base + p.start(), self.base + p.end())
    }

    fn err(&self, kind: ExprErrorKind, msg: impl Into<String>, span: Span) -> ExprError {
        ExprError::new(kind, msg, span)
    }

    fn run(mut self, src: &str) -> Result<Parsed, ExprError> {
        let whole = Span::new(self.base, self.base + src.len());
        self.check_limits(src)?;
        let mut pairs = ExprParser::parse(Rule::program, src).map_err(|e| {
            let (start, end) = match e.location {
                pest::error::InputLocation::Pos(p) => (p, p),
                pest::error::InputLocation::Span((s, e)) => (s, e),
            };
            let found = src[start.min(src.len())..]
                .chars()
                .next()
                .map(|c| format!("unexpected `{c}`"))
                .unwrap_or_else(|| "unexpected end of expression".to_string());
            let expected = match &e.variant {
                pest::error::ErrorVariant::ParsingError { positives, .. } => {
                    let mut names: Vec<String> = positives.iter().map(friendly).collect();
                    names.sort();
                    names.dedup();
                    names.join(", ")
                }
                pest::error::ErrorVariant::CustomError { message } => message.clone(),
            };
            let end = if end == start {
                // Point at one character (or the end).
                src[start.min(src.len())..]
                    .chars()
                    .next()
                    .map_or(start, |c| start + c.len_utf8())
            } else {
                end
            };
            let mut err = self.err(
                ExprErrorKind::Syntax,
                format!("syntax error in expression: {found}"),
                Span::new(self.base + start, self.base + end),
            );
            if !expected.is_empty() {
                err = err.with_label(format!("expected {expected}"));
            }
            err
        })?;
        let program = pairs
            .next()
            .ok_or_else(|| self.err(ExprErrorKind::Syntax, "empty expression", whole))?;
        let first = program
            .into_inner()
            .next()
            .ok_or_else(|| self.err(ExprErrorKind::Syntax, "empty expression", whole))?;
        let lambda = match first.as_rule() {
            Rule::lambda => {
                let span = self.span(&first.as_span());
                let mut params = Vec::new();
                let mut body = None;
                for p in first.into_inner() {
                    match p.as_rule() {
                        Rule::params => {
                            for id in p.into_inner() {
                                params.push((id.as_str().to_string(), self.span(&id.as_span())));
                            }
                        }
                        Rule::expr => body = Some(self.expr(p)?),
                        _ => {}
                    }
                }
                if params.len() > 1 {
                    let sp = params[1].1.join(params[params.len() - 1].1);
                    return Err(self
                        .err(
                            ExprErrorKind::Syntax,
                            format!(
                                "a lambda takes at most one parameter (the row or the looked-up value), found {}",
                                params.len()
                            ),
                            sp,
                        )
                        .with_label("extra parameter"));
                }
                let body = body.ok_or_else(|| {
                    self.err(ExprErrorKind::Syntax, "lambda without a body", span)
                })?;
                Lambda {
                    params: params.into_iter().map(|p| p.0).collect(),
                    body,
                    span,
                }
            }
            _ => {
                let body = self.expr(first)?;
                Lambda {
                    params: Vec::new(),
                    span: body.span,
                    body,
                }
            }
        };
        if lambda.body.depth() > MAX_DEPTH {
            return Err(self.err(
                ExprErrorKind::Limit,
                format!("expression is nested too deeply (more than {MAX_DEPTH} levels)"),
                whole,
            ));
        }
        Ok(Parsed {
            lambda,
            warnings: self.warnings,
        })
    }

    /// Reject inputs that would make the recursive-descent parser recurse too deeply.
    fn check_limits(&self, src: &str) -> Result<(), ExprError> {
        let whole = Span::new(self.base, self.base + src.len());
        if src.len() > MAX_LEN {
            return Err(self.err(
                ExprErrorKind::Limit,
                format!(
                    "expression is too long ({} bytes, at most {MAX_LEN})",
                    src.len()
                ),
                whole,
            ));
        }
        let bytes = src.as_bytes();
        let mut depth = 0usize;
        let mut ifs = 0usize;
        let mut quote: Option<u8> = None;
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if let Some(q) = quote {
                if c == b'\\' {
                    i += 1;
                } else if c == q || c == b'\n' {
                    quote = None;
                }
            } else {
                match c {
                    b'"' | b'\'' => quote = Some(c),
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                    b'i' if bytes.get(i + 1) == Some(&b'f')
                        && (i == 0 || !is_ident_byte(bytes[i - 1]))
                        && bytes.get(i + 2).is_none_or(|b| !is_ident_byte(*b)) =>
                    {
                        ifs += 1
                    }
                    _ => {}
                }
                if depth + ifs > MAX_NESTING {
                    return Err(self.err(
                        ExprErrorKind::Limit,
                        format!("expression is nested too deeply (more than {MAX_NESTING} levels)"),
                        Span::new(self.base + i, self.base + i + 1),
                    ));
                }
            }
            i += 1;
        }
        Ok(())
    }

    fn expr(&mut self, p: Pair<'_, Rule>) -> Result<Expr, ExprError> {
        match p.as_rule() {
            Rule::expr => {
                let mut inner = p.into_inner().filter(|p| !is_keyword(p.as_rule()));
                let then = self.expr(next(&mut inner)?)?;
                match inner.next() {
                    None => Ok(then),
                    Some(cond) => {
                        let cond = self.expr(cond)?;
                        let otherwise = self.expr(next(&mut inner)?)?;
                        Ok(Expr {
                            span: then.span.join(otherwise.span),
                            kind: ExprKind::Cond {
                                cond: Box::new(cond),
                                then: Box::new(then),
                                otherwise: Box::new(otherwise),
                            },
                        })
                    }
                }
            }
            Rule::disjunction | Rule::conjunction => {
                let op = if p.as_rule() == Rule::disjunction {
                    BoolOp::Or
                } else {
                    BoolOp::And
                };
                let mut inner = p.into_inner().filter(|p| !is_keyword(p.as_rule()));
                let mut acc = self.expr(next(&mut inner)?)?;
                for rhs in inner {
                    let rhs = self.expr(rhs)?;
                    acc = Expr {
                        span: acc.span.join(rhs.span),
                        kind: ExprKind::Bool {
                            op,
                            lhs: Box::new(acc),
                            rhs: Box::new(rhs),
                        },
                    };
                }
                Ok(acc)
            }
            Rule::inversion => {
                let mut nots = Vec::new();
                let mut operand = None;
                for c in p.into_inner() {
                    match c.as_rule() {
                        Rule::not_op => nots.push(self.span(&c.as_span())),
                        _ => operand = Some(self.expr(c)?),
                    }
                }
                let mut e = operand.ok_or_else(|| internal("inversion without operand"))?;
                for sp in nots.into_iter().rev() {
                    e = Expr {
                        span: sp.join(e.span),
                        kind: ExprKind::Unary {
                            op: UnaryOp::Not,
                            expr: Box::new(e),
                        },
                    };
                }
                Ok(e)
            }
            Rule::comparison => {
                let mut inner = p.into_inner();
                let first = self.expr(next(&mut inner)?)?;
                let mut links = Vec::new();
                while let Some(op) = inner.next() {
                    let op = cmp_op(op)?;
                    let rhs = self.expr(next(&mut inner)?)?;
                    links.push((op, rhs));
                }
                let mut lhs = first;
                let mut acc: Option<Expr> = None;
                for (op, rhs) in links {
                    let cmp = Expr {
                        span: lhs.span.join(rhs.span),
                        kind: ExprKind::Compare {
                            op,
                            lhs: Box::new(lhs),
                            rhs: Box::new(rhs.clone()),
                        },
                    };
                    acc = Some(match acc {
                        None => cmp,
                        Some(prev) => Expr {
                            span: prev.span.join(cmp.span),
                            kind: ExprKind::Bool {
                                op: BoolOp::And,
                                lhs: Box::new(prev),
                                rhs: Box::new(cmp),
                            },
                        },
                    });
                    lhs = rhs;
                }
                Ok(acc.unwrap_or(lhs))
            }
            Rule::sum | Rule::term => {
                let mut inner = p.into_inner();
                let mut acc = self.expr(next(&mut inner)?)?;
                while let Some(op) = inner.next() {
                    let op = bin_op(op)?;
                    let rhs = self.expr(next(&mut inner)?)?;
                    acc = Expr {
                        span: acc.span.join(rhs.span),
                        kind: ExprKind::Binary {
                            op,
                            lhs: Box::new(acc),
                            rhs: Box::new(rhs),
                        },
                    };
                }
                Ok(acc)
            }
            Rule::factor => {
                let mut ops = Vec::new();
                let mut operand = None;
                for c in p.into_inner() {
                    match c.as_rule() {
                        Rule::unary_op => {
                            let sp = self.span(&c.as_span());
                            let op = match c.into_inner().next().map(|x| x.as_rule()) {
                                Some(Rule::minus) => UnaryOp::Neg,
                                _ => UnaryOp::Pos,
                            };
                            ops.push((op, sp));
                        }
                        _ => operand = Some(self.expr(c)?),
                    }
                }
                let mut e = operand.ok_or_else(|| internal("factor without operand"))?;
                for (op, sp) in ops.into_iter().rev() {
                    e = Expr {
                        span: sp.join(e.span),
                        kind: ExprKind::Unary {
                            op,
                            expr: Box::new(e),
                        },
                    };
                }
                Ok(e)
            }
            Rule::primary => {
                let mut inner = p.into_inner();
                let mut acc = self.expr(next(&mut inner)?)?;
                for t in inner {
                    let tspan = self.span(&t.as_span());
                    let span = acc.span.join(tspan);
                    acc = match t.as_rule() {
                        Rule::call => {
                            let mut args = Vec::new();
                            let mut kwargs: Vec<KwArg> = Vec::new();
                            for a in t.into_inner() {
                                if a.as_rule() == Rule::kwarg {
                                    let mut ki = a.into_inner();
                                    let name = next(&mut ki)?;
                                    let value = self.expr(next(&mut ki)?)?;
                                    let name_span = self.span(&name.as_span());
                                    if kwargs.iter().any(|k| k.name == name.as_str()) {
                                        return Err(self.err(
                                            ExprErrorKind::Syntax,
                                            format!(
                                                "keyword argument `{}` repeated",
                                                name.as_str()
                                            ),
                                            name_span,
                                        ));
                                    }
                                    kwargs.push(KwArg {
                                        name: name.as_str().to_string(),
                                        name_span,
                                        value,
                                    });
                                } else {
                                    let e = self.expr(a)?;
                                    if !kwargs.is_empty() {
                                        return Err(self.err(
                                            ExprErrorKind::Syntax,
                                            "positional argument follows keyword argument",
                                            e.span,
                                        ));
                                    }
                                    args.push(e);
                                }
                            }
                            Expr {
                                span,
                                kind: ExprKind::Call {
                                    func: Box::new(acc),
                                    args,
                                    kwargs,
                                },
                            }
                        }
                        Rule::index => {
                            let idx = self.expr(next(&mut t.into_inner())?)?;
                            Expr {
                                span,
                                kind: ExprKind::Index {
                                    base: Box::new(acc),
                                    index: Box::new(idx),
                                },
                            }
                        }
                        Rule::attr => {
                            let id = next(&mut t.into_inner())?;
                            Expr {
                                span,
                                kind: ExprKind::Attr {
                                    base: Box::new(acc),
                                    name: id.as_str().to_string(),
                                    name_span: self.span(&id.as_span()),
                                },
                            }
                        }
                        _ => return Err(internal("unknown trailer")),
                    };
                }
                Ok(acc)
            }
            _ => self.atom(p),
        }
    }

    fn atom(&mut self, p: Pair<'_, Rule>) -> Result<Expr, ExprError> {
        let span = self.span(&p.as_span());
        let lit = |l| {
            Ok(Expr {
                kind: ExprKind::Lit(l),
                span,
            })
        };
        match p.as_rule() {
            Rule::int => {
                let text: String = p.as_str().chars().filter(|c| *c != '_').collect();
                match text.parse::<i64>() {
                    Ok(v) => lit(Literal::Int(v)),
                    Err(_) => Err(self.err(
                        ExprErrorKind::Syntax,
                        "integer literal does not fit in 64 bits",
                        span,
                    )),
                }
            }
            Rule::float => match p.as_str().parse::<f64>() {
                Ok(v) if v.is_finite() => lit(Literal::Float(v)),
                _ => Err(self.err(ExprErrorKind::Syntax, "float literal out of range", span)),
            },
            Rule::string => {
                let s =
                    unescape(p.as_str()).map_err(|m| self.err(ExprErrorKind::Syntax, m, span))?;
                lit(Literal::Str(s))
            }
            Rule::kw_true => lit(Literal::Bool(true)),
            Rule::kw_false => lit(Literal::Bool(false)),
            Rule::kw_none => lit(Literal::None),
            Rule::ident => Ok(Expr {
                kind: ExprKind::Name(p.as_str().to_string()),
                span,
            }),
            Rule::paren => {
                let mut items = Vec::new();
                let mut tuple = false;
                for c in p.into_inner() {
                    if c.as_rule() == Rule::tuple_comma {
                        tuple = true;
                    } else {
                        items.push(self.expr(c)?);
                    }
                }
                if !tuple && items.len() == 1 {
                    let mut e = items.remove(0);
                    // The parenthesised span covers the brackets too.
                    e.span = span;
                    Ok(e)
                } else {
                    Ok(Expr {
                        kind: ExprKind::List(items),
                        span,
                    })
                }
            }
            Rule::list => {
                let items = p
                    .into_inner()
                    .map(|c| self.expr(c))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Expr {
                    kind: ExprKind::List(items),
                    span,
                })
            }
            Rule::map => {
                let mut entries: Vec<MapEntry> = Vec::new();
                for e in p.into_inner() {
                    let mut ei = e.into_inner();
                    let k = next(&mut ei)?;
                    let key_span = self.span(&k.as_span());
                    let key = match k.as_rule() {
                        Rule::string => unescape(k.as_str())
                            .map_err(|m| self.err(ExprErrorKind::Syntax, m, key_span))?,
                        Rule::stray_quote_key => {
                            let name = k.as_str()[..k.as_str().len() - 1].to_string();
                            self.warnings.push(
                                Diagnostic::warning(format!(
                                    "unbalanced quote in mapping key; read as \"{name}\""
                                ))
                                .with_span(key_span)
                                .with_label("quote without a partner")
                                .with_help(format!("write the key as \"{name}\"")),
                            );
                            name
                        }
                        _ => k.as_str().to_string(),
                    };
                    if entries.iter().any(|x| x.key == key) {
                        return Err(self.err(
                            ExprErrorKind::Syntax,
                            format!("mapping key \"{key}\" repeated"),
                            key_span,
                        ));
                    }
                    let value = self.expr(next(&mut ei)?)?;
                    entries.push(MapEntry {
                        key,
                        key_span,
                        value,
                    });
                }
                Ok(Expr {
                    kind: ExprKind::Map(entries),
                    span,
                })
            }
            Rule::expr => self.expr(p),
            r => Err(internal(&format!("unexpected rule {r:?}"))),
        }
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_keyword(r: Rule) -> bool {
    matches!(
        r,
        Rule::kw_if | Rule::kw_else | Rule::kw_and | Rule::kw_or | Rule::kw_lambda
    )
}

fn next<'a>(it: &mut impl Iterator<Item = Pair<'a, Rule>>) -> Result<Pair<'a, Rule>, ExprError> {
    it.next().ok_or_else(|| internal("missing operand"))
}

fn internal(what: &str) -> ExprError {
    ExprError::new(
        ExprErrorKind::Syntax,
        format!("internal parser error: {what}"),
        Span::default(),
    )
}

fn cmp_op(p: Pair<'_, Rule>) -> Result<CmpOp, ExprError> {
    let inner = p
        .into_inner()
        .next()
        .ok_or_else(|| internal("empty comparison operator"))?;
    Ok(match inner.as_rule() {
        Rule::eq => CmpOp::Eq,
        Rule::ne => CmpOp::Ne,
        Rule::lt => CmpOp::Lt,
        Rule::le => CmpOp::Le,
        Rule::gt => CmpOp::Gt,
        Rule::ge => CmpOp::Ge,
        Rule::op_in => CmpOp::In,
        Rule::not_in => CmpOp::NotIn,
        Rule::op_is => CmpOp::Is,
        Rule::is_not => CmpOp::IsNot,
        _ => return Err(internal("unknown comparison operator")),
    })
}

fn bin_op(p: Pair<'_, Rule>) -> Result<BinOp, ExprError> {
    let inner = p
        .into_inner()
        .next()
        .ok_or_else(|| internal("empty operator"))?;
    Ok(match inner.as_rule() {
        Rule::plus => BinOp::Add,
        Rule::minus => BinOp::Sub,
        Rule::mul => BinOp::Mul,
        Rule::div => BinOp::Div,
        Rule::floordiv => BinOp::FloorDiv,
        Rule::modulo => BinOp::Mod,
        _ => return Err(internal("unknown operator")),
    })
}

/// Resolve the escapes of a quoted string literal (quotes included in `raw`).
fn unescape(raw: &str) -> Result<String, String> {
    let body = &raw[1..raw.len() - 1];
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some('\'') => out.push('\''),
            Some('"') => out.push('"'),
            Some(k @ ('x' | 'u' | 'U')) => {
                let n = match k {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = chars.by_ref().take(n).collect();
                let cp = (hex.len() == n)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("invalid escape `\\{k}{hex}` in string"))?;
                out.push(cp);
            }
            Some(other) => {
                // Python keeps unknown escapes verbatim.
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Ok(out)
}
