//! Tests of the expression language: parsing, checking, folding, printing, evaluation.

use super::*;
use crate::diag::{Severity, Span};
use crate::types::Dtype;
use chrono::NaiveDate;
use indexmap::IndexMap;
use proptest::prelude::*;

/// Expressions are placed at a non-zero offset so that absolute spans are exercised.
const BASE: usize = 1000;

fn origin(src: &str) -> Span {
    Span::new(BASE, BASE + src.len())
}

fn slice(src: &str, span: Span) -> &str {
    &src[span.start - BASE..span.end - BASE]
}

fn row_env() -> Env {
    Env::row([
        ("o__total".to_string(), Dtype::Int),
        ("name".to_string(), Dtype::Str),
        ("price".to_string(), Dtype::Float),
        (
            "amount".to_string(),
            Dtype::Decimal {
                precision: 18,
                scale: 4,
            },
        ),
        ("created_at".to_string(), Dtype::Datetime),
        ("birthday".to_string(), Dtype::Date),
        ("active".to_string(), Dtype::Bool),
        ("payload".to_string(), Dtype::Json),
    ])
}

fn typed_in(src: &str, env: &Env) -> Result<TypedExpr, ExprError> {
    let p = parse(src, origin(src))?;
    check(&p.lambda, env)
}

fn typed(src: &str) -> TypedExpr {
    typed_in(src, &row_env()).unwrap_or_else(|e| panic!("{src}: {e:?}"))
}

fn err(src: &str) -> ExprError {
    match typed_in(src, &row_env()) {
        Ok(t) => panic!("{src} type-checked as {t}"),
        Err(e) => e,
    }
}

fn now() -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(2024, 5, 6)
        .unwrap()
        .and_hms_micro_opt(7, 8, 9, 10)
        .unwrap()
}

fn row(pairs: &[(&str, Value)]) -> IndexMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn eval_row(src: &str, r: &IndexMap<String, Value>) -> Result<Value, EvalError> {
    eval(&typed(src), &EvalCtx::row(r, now()))
}

fn eval_const(src: &str) -> Value {
    let t = typed_in(src, &Env::constant()).unwrap_or_else(|e| panic!("{src}: {e:?}"));
    eval(&t, &EvalCtx::constant(now())).unwrap()
}

fn dt(y: i32, m: u32, d: u32) -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
}

// ---- seed expressions ----

#[test]
fn seed_row_lambda() {
    let src = r#"lambda r: 1 if r["o__total"]>1000 else 0"#;
    let p = parse(src, origin(src)).unwrap();
    assert_eq!(p.lambda.params, vec!["r"]);
    assert!(p.warnings.is_empty());
    assert_eq!(p.lambda.span, origin(src));
    let t = check(&p.lambda, &row_env()).unwrap();
    assert_eq!(t.ty, Type::Int);
    assert_eq!(t.columns(), vec!["o__total"]);
    assert!(!t.is_constant());
    assert_eq!(t.to_string(), "1 if o__total > 1000 else 0");
    let f = t.fold().unwrap();
    assert_eq!(f, t);
    let r = row(&[("o__total", Value::Int(1500))]);
    assert_eq!(eval(&t, &EvalCtx::row(&r, now())).unwrap(), Value::Int(1));
    let r = row(&[("o__total", Value::Null)]);
    assert_eq!(eval(&t, &EvalCtx::row(&r, now())).unwrap(), Value::Int(0));
}

#[test]
fn seed_start_end_and_interval() {
    let t = typed_in("lambda: datetime.datetime(2020,2,1)", &Env::constant()).unwrap();
    assert_eq!(t.ty, Type::Datetime);
    assert!(t.is_constant());
    let f = t.fold().unwrap();
    assert_eq!(f.const_value(), Some(Value::Datetime(dt(2020, 2, 1))));
    assert_eq!(f.to_string(), "datetime.datetime(2020, 2, 1)");

    let t = typed_in("lambda: datetime.datetime.now()", &Env::constant()).unwrap();
    assert_eq!(t.ty, Type::Datetime);
    assert!(!t.is_constant());
    assert!(t.uses_now());
    let f = t.fold().unwrap();
    assert!(f.const_value().is_none());
    assert_eq!(f.to_string(), "now()");
    assert_eq!(
        eval(&f, &EvalCtx::constant(now())).unwrap(),
        Value::Datetime(now())
    );

    let t = typed_in("1*365*24*60*60", &Env::constant()).unwrap();
    assert_eq!(t.ty, Type::Int);
    assert_eq!(
        t.fold().unwrap().const_value(),
        Some(Value::Int(31_536_000))
    );
    assert_eq!(t.fold().unwrap().to_string(), "31536000");
}

#[test]
fn seed_enrichment_outputs() {
    let env = Env::value(Type::Str);
    let src = r#"lambda v: {"redis_name": v}"#;
    let p = parse(src, origin(src)).unwrap();
    assert!(p.warnings.is_empty());
    let t = check(&p.lambda, &env).unwrap();
    assert_eq!(t.ty, Type::Map(vec![("redis_name".into(), Type::Str)]));
    let v = Value::Str("Ann".into());
    let out = eval(&t, &EvalCtx::value(&v, now())).unwrap();
    assert_eq!(
        out,
        Value::map(row(&[("redis_name", Value::Str("Ann".into()))]))
    );

    // The seed README's typo: accepted with a warning.
    let src = r#"lambda v: {redis_name":v}"#;
    let p = parse(src, origin(src)).unwrap();
    assert_eq!(p.warnings.len(), 1);
    let w = &p.warnings[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(
        w.message,
        "unbalanced quote in mapping key; read as \"redis_name\""
    );
    assert_eq!(slice(src, w.span.unwrap()), "redis_name\"");
    let t = check(&p.lambda, &env).unwrap();
    assert_eq!(t.to_string(), r#"{"redis_name": v}"#);

    // Unquoted identifier keys.
    let src = "lambda v: {redis_name: v}";
    let p = parse(src, origin(src)).unwrap();
    assert!(p.warnings.is_empty());
    assert_eq!(
        check(&p.lambda, &env).unwrap().to_string(),
        r#"{"redis_name": v}"#
    );
}

#[test]
fn bare_expressions_resolve_aliases() {
    let t = typed("o__total * 2 + 1");
    assert_eq!(t.columns(), vec!["o__total"]);
    assert_eq!(t.ty, Type::Int);
    let t = typed("lambda r: r.name + r['name']");
    assert_eq!(t.columns(), vec!["name"]);
    assert_eq!(t.ty, Type::Str);
}

#[test]
fn two_parameter_lambda_is_an_error() {
    let src = "lambda a, b: a";
    let e = parse(src, origin(src)).unwrap_err();
    assert_eq!(e.kind, ExprErrorKind::Syntax);
    assert_eq!(slice(src, e.span), "b");
}

#[test]
fn syntax_errors_point_into_the_text() {
    let src = "1 +* 2";
    let e = parse(src, origin(src)).unwrap_err();
    assert_eq!(e.kind, ExprErrorKind::Syntax);
    assert_eq!(slice(src, e.span), "*");
    let src = "(1 + 2";
    assert!(parse(src, origin(src)).is_err());
    let src = "99999999999999999999";
    assert!(parse(src, origin(src)).is_err());
}

// ---- types ----

#[test]
fn type_rules() {
    assert_eq!(typed("o__total / 2").ty, Type::Float);
    assert_eq!(typed("o__total // 2").ty, Type::Int);
    assert_eq!(typed("o__total + price").ty, Type::Float);
    assert_eq!(typed("amount * 2").ty, Type::Decimal);
    assert_eq!(
        typed("created_at - datetime.timedelta(days=1, hours=2)").ty,
        Type::Datetime
    );
    assert_eq!(typed("created_at - created_at").ty, Type::Interval);
    assert_eq!(
        typed("birthday + datetime.timedelta(days=1)").ty,
        Type::Date
    );
    assert_eq!(typed("created_at > birthday").ty, Type::Bool);
    assert_eq!(typed("None if active else o__total").ty, Type::Int);
    assert_eq!(typed("[1, 2.5]").ty, Type::List(Box::new(Type::Float)));
    assert_eq!(typed("payload['a']").ty, Type::Json);
    assert_eq!(typed("json_get(payload, 'a') == 3").ty, Type::Bool);
    assert_eq!(typed("round(price)").ty, Type::Int);
    assert_eq!(typed("round(price, 2)").ty, Type::Float);
    assert_eq!(typed("coalesce(name, 'x')").ty, Type::Str);
}

#[test]
fn comparing_str_with_int_is_an_error_at_the_comparison() {
    let src = r#"lambda r: 1 if r["name"] > 1000 else 0"#;
    let e = typed_in(src, &row_env()).unwrap_err();
    assert_eq!(e.kind, ExprErrorKind::Type);
    assert_eq!(slice(src, e.span), r#"r["name"] > 1000"#);
    assert!(
        e.message.contains("`str`") && e.message.contains("`int`"),
        "{}",
        e.message
    );
    let d: crate::diag::Diagnostic = e.into();
    assert!(d.is_error());
    assert!(d.label.is_some());
}

#[test]
fn other_type_errors_have_spans() {
    let src = "name + 1";
    let e = err(src);
    assert_eq!(slice(src, e.span), "name + 1");
    let src = "1 if name else 0";
    assert_eq!(slice(src, err(src).span), "name");
    let src = "'a' if active else 1";
    assert!(err(src).message.contains("different types"));
    let src = "lower(o__total)";
    assert_eq!(slice(src, err(src).span), "o__total");
    let src = "payload + 1";
    assert!(err(src).help.unwrap().contains("int()"));
    let src = "name is 3";
    assert_eq!(slice(src, err(src).span), "3");
}

#[test]
fn unknown_fields_suggest() {
    let src = r#"lambda r: r["o__totl"] + 1"#;
    let e = err(src);
    assert_eq!(e.kind, ExprErrorKind::UnknownName);
    assert_eq!(slice(src, e.span), r#"r["o__totl"]"#);
    assert_eq!(e.help.as_deref(), Some("did you mean `o__total`?"));
    let src = "nmae";
    assert_eq!(err(src).help.as_deref(), Some("did you mean `name`?"));
}

#[test]
fn forbidden_constructs() {
    for (src, text) in [
        ("__import__('os')", "__import__"),
        ("os.system('ls')", "os"),
        ("open('/etc/passwd')", "open"),
        ("r.__class__", "__class__"),
        ("lambda r: r.name.__len__()", "__len__"),
        ("eval('1')", "eval"),
        ("exec('x')", "exec"),
        ("getattr(name, 'x')", "getattr"),
    ] {
        let e = err(src);
        assert!(
            matches!(
                e.kind,
                ExprErrorKind::Forbidden | ExprErrorKind::UnknownName
            ),
            "{src}: {e:?}"
        );
        assert!(
            slice(src, e.span).contains(text),
            "{src}: {:?}",
            slice(src, e.span)
        );
    }
    let src = "os.system('ls')";
    let e = err(src);
    assert_eq!(e.message, "`os` is not available in expressions");
    // Unknown function with a close spelling.
    let src = "lowr(name)";
    let e = typed_in(src, &Env::constant()).unwrap_err();
    assert_eq!(e.message, "`lowr` is not available in expressions");
    assert_eq!(e.help.as_deref(), Some("did you mean `lower`?"));
    assert_eq!(slice(src, e.span), "lowr");
    // Methods on values.
    let src = "lambda r: r['name'].upper()";
    let e = err(src);
    assert_eq!(e.kind, ExprErrorKind::Forbidden);
    assert!(e.help.unwrap().contains("upper(x"));
    // datetime.* that does not exist.
    let src = "datetime.datetime.fromtimestamp(0)";
    assert_eq!(err(src).kind, ExprErrorKind::Forbidden);
    // Attribute on a non-row value.
    let src = "payload.x";
    assert_eq!(err(src).kind, ExprErrorKind::Forbidden);
}

#[test]
fn function_argument_errors() {
    let src = "datetime.timedelta(dayz=1)";
    let e = err(src);
    assert_eq!(e.kind, ExprErrorKind::Arity);
    assert_eq!(slice(src, e.span), "dayz");
    assert_eq!(e.help.as_deref(), Some("did you mean `days`?"));
    assert_eq!(err("datetime.datetime(2020)").kind, ExprErrorKind::Arity);
    assert_eq!(err("lower(name, name)").kind, ExprErrorKind::Arity);
    let src = "date_trunc('mnth', created_at)";
    let e = err(src);
    assert_eq!(slice(src, e.span), "'mnth'");
}

#[test]
fn constant_env_has_no_row() {
    let e = typed_in("lambda r: r['x']", &Env::constant()).unwrap_err();
    assert_eq!(e.kind, ExprErrorKind::Type);
    let e = typed_in("lambda r: r", &row_env()).unwrap_err();
    assert!(e.message.contains("cannot be used as a value"));
}

// ---- folding and printing ----

#[test]
fn folding_replaces_constant_subtrees() {
    let t = typed("o__total * (60 * 60) + 0").fold().unwrap();
    assert_eq!(t.to_string(), "o__total * 3600 + 0");
    let t = typed("datetime.timedelta(days=1, hours=2)").fold().unwrap();
    assert_eq!(t.const_value(), Some(Value::Interval(93_600_000_000)));
    assert_eq!(t.to_string(), "datetime.timedelta(days=1, seconds=7200)");
    let t = typed("name if True else 'x'").fold().unwrap();
    assert_eq!(t.to_string(), "name");
    let t = typed("False and active").fold().unwrap();
    assert_eq!(t.const_value(), Some(Value::Bool(false)));
    let t = typed("today() - datetime.timedelta(days=7)")
        .fold()
        .unwrap();
    assert!(t.uses_now());
    assert_eq!(t.to_string(), "today() - datetime.timedelta(days=7)");
}

#[test]
fn folding_errors_are_compile_errors() {
    let src = "o__total + 1 // 0";
    let e = typed(src).fold().unwrap_err();
    assert_eq!(e.kind, ExprErrorKind::Constant);
    assert_eq!(slice(src, e.span), "1 // 0");
    assert!(e.message.contains("division by zero"));
    let src = "datetime.datetime(2020, 2, 30)";
    let e = typed(src).fold().unwrap_err();
    assert!(e.message.contains("invalid date"));
    let src = "9223372036854775807 + 1";
    assert_eq!(typed(src).fold().unwrap_err().kind, ExprErrorKind::Constant);
}

#[test]
fn printing_is_canonical_and_reparses() {
    for src in [
        "(o__total + 1) * 2",
        "o__total - (1 - price)",
        "not (active and o__total > 1)",
        "name if active else lower(name)",
        "(1 if active else 2) + 3",
        "o__total in [1, 2, 3] or name not in ('a', 'b')",
        "coalesce(name, \"a\\\"b\")",
        "datetime.timedelta(hours=2)",
        "-(-o__total)",
        "name is not None",
    ] {
        let t = typed(src);
        let printed = t.to_string();
        let again = typed(&printed);
        assert_eq!(printed, again.to_string(), "{src}");
    }
    assert_eq!(
        typed("(o__total + 1) * 2").to_string(),
        "(o__total + 1) * 2"
    );
    assert_eq!(
        typed("o__total - (1 - 2)").to_string(),
        "o__total - (1 - 2)"
    );
    assert_eq!(
        typed("datetime.timedelta(hours=2)").to_string(),
        "datetime.timedelta(hours=2)"
    );
}

// ---- evaluation ----

#[test]
fn null_semantics() {
    let r = row(&[
        ("o__total", Value::Null),
        ("active", Value::Null),
        ("name", Value::Str("x".into())),
    ]);
    assert_eq!(eval_row("o__total + 1", &r).unwrap(), Value::Null);
    assert_eq!(eval_row("o__total > 1", &r).unwrap(), Value::Null);
    assert_eq!(eval_row("o__total == None", &r).unwrap(), Value::Null);
    assert_eq!(eval_row("o__total is None", &r).unwrap(), Value::Bool(true));
    assert_eq!(
        eval_row("active and False", &r).unwrap(),
        Value::Bool(false)
    );
    assert_eq!(eval_row("active and True", &r).unwrap(), Value::Null);
    assert_eq!(eval_row("active or True", &r).unwrap(), Value::Bool(true));
    assert_eq!(eval_row("active or False", &r).unwrap(), Value::Null);
    assert_eq!(eval_row("not active", &r).unwrap(), Value::Null);
    assert_eq!(eval_row("1 if active else 2", &r).unwrap(), Value::Int(2));
    assert_eq!(eval_row("o__total in [1, 2]", &r).unwrap(), Value::Null);
    assert_eq!(eval_row("3 in [1, None]", &r).unwrap(), Value::Null);
    assert_eq!(eval_row("1 in [1, None]", &r).unwrap(), Value::Bool(true));
    assert_eq!(
        eval_row("coalesce(o__total, 5)", &r).unwrap(),
        Value::Int(5)
    );
    assert_eq!(eval_row("upper(None)", &r).unwrap(), Value::Null);
}

#[test]
fn arithmetic_follows_python() {
    let r = row(&[]);
    assert_eq!(eval_row("7 // -2", &r).unwrap(), Value::Int(-4));
    assert_eq!(eval_row("-7 % 3", &r).unwrap(), Value::Int(2));
    assert_eq!(eval_row("7 / 2", &r).unwrap(), Value::Float(3.5));
    assert_eq!(eval_row("-7.5 // 2", &r).unwrap(), Value::Float(-4.0));
    assert_eq!(eval_row("'a' + 'b'", &r).unwrap(), Value::Str("ab".into()));
    assert_eq!(eval_row("1 < 2 < 3", &r).unwrap(), Value::Bool(true));
    assert_eq!(eval_row("3 > 2 > 2", &r).unwrap(), Value::Bool(false));
    assert_eq!(eval_row("'bc' in 'abcd'", &r).unwrap(), Value::Bool(true));
    assert_eq!(eval_row("round(2.5)", &r).unwrap(), Value::Int(2));
    assert_eq!(
        eval_row("int('42') + int(3.9)", &r).unwrap(),
        Value::Int(45)
    );
    assert_eq!(
        eval_row("str(1.0) + str(True)", &r).unwrap(),
        Value::Str("1.0True".into())
    );
    assert_eq!(
        eval_row("substr('hello', 2, 3)", &r).unwrap(),
        Value::Str("ell".into())
    );
    assert_eq!(eval_row("length('héllo')", &r).unwrap(), Value::Int(5));
    assert_eq!(
        eval_row("replace(trim('  a-b '), '-', '+')", &r).unwrap(),
        Value::Str("a+b".into())
    );
}

#[test]
fn decimal_arithmetic_is_exact() {
    let r = row(&[("amount", Value::Decimal(Decimal::parse("0.1").unwrap()))]);
    assert_eq!(
        eval_row("amount + amount + amount", &r).unwrap(),
        Value::Decimal(Decimal::parse("0.3").unwrap())
    );
    // Decimal against float compares as float.
    assert_eq!(
        eval_row("amount * 3 == 0.3", &r).unwrap(),
        Value::Bool(true)
    );
    assert_eq!(eval_row("amount * 3 > 0", &r).unwrap(), Value::Bool(true));
}

#[test]
fn runtime_errors_do_not_panic() {
    let r = row(&[("o__total", Value::Int(0)), ("price", Value::Float(0.0))]);
    let e = eval_row("10 // o__total", &r).unwrap_err();
    assert_eq!(e.kind, EvalErrorKind::DivisionByZero);
    assert_eq!(
        eval_row("1 / price", &r).unwrap_err().kind,
        EvalErrorKind::DivisionByZero
    );
    let r = row(&[("o__total", Value::Int(i64::MAX))]);
    assert_eq!(
        eval_row("o__total + 1", &r).unwrap_err().kind,
        EvalErrorKind::Overflow
    );
    assert_eq!(
        eval_row("-(o__total) - 2", &r).unwrap_err().kind,
        EvalErrorKind::Overflow
    );
    let r = row(&[("o__total", Value::Int(13))]);
    assert_eq!(
        eval_row("datetime.datetime(2020, o__total, 1)", &r)
            .unwrap_err()
            .kind,
        EvalErrorKind::InvalidDate
    );
    assert_eq!(
        eval_row("int(name)", &row(&[("name", Value::Str("x".into()))]))
            .unwrap_err()
            .kind,
        EvalErrorKind::InvalidArgument
    );
    // Missing field.
    assert_eq!(
        eval_row("o__total", &row(&[])).unwrap_err().kind,
        EvalErrorKind::MissingField
    );
}

#[test]
fn datetime_arithmetic() {
    let r = row(&[
        ("created_at", Value::Datetime(dt(2020, 2, 28))),
        (
            "birthday",
            Value::Date(NaiveDate::from_ymd_opt(2020, 3, 1).unwrap()),
        ),
    ]);
    assert_eq!(
        eval_row("created_at + datetime.timedelta(days=1, hours=2)", &r).unwrap(),
        Value::Datetime(dt(2020, 2, 29) + chrono::Duration::hours(2))
    );
    assert_eq!(
        eval_row("birthday - created_at", &r).unwrap(),
        Value::Interval(2 * 86_400_000_000)
    );
    assert_eq!(
        eval_row("birthday - datetime.timedelta(hours=1)", &r).unwrap(),
        Value::Date(NaiveDate::from_ymd_opt(2020, 2, 29).unwrap())
    );
    assert_eq!(
        eval_row("created_at < birthday", &r).unwrap(),
        Value::Bool(true)
    );
    assert_eq!(
        eval_row("date_trunc('month', created_at)", &r).unwrap(),
        Value::Datetime(dt(2020, 2, 1))
    );
    assert_eq!(eval_const("today()"), Value::Date(now().date()));
    assert_eq!(
        eval_const("datetime.datetime(2020, 1, 1, 12, 30) - datetime.datetime(2020, 1, 1)"),
        Value::Interval(45_000_000_000)
    );
    assert_eq!(
        eval_const("datetime.timedelta(weeks=1) * 2 if False else datetime.timedelta(minutes=1.5)"),
        Value::Interval(90_000_000)
    );
}

/// A document with a number beyond `f64`'s range parses as nothing: reading it is an error,
/// not a NULL.
#[test]
fn a_document_beyond_f64_is_refused_not_read_as_null() {
    let r = row(&[(
        "payload",
        Value::json_text(r#"{"a": 1e400, "s": "x"}"#).unwrap(),
    )]);
    for src in ["payload['s']", "json_get(payload, 'a')", "payload"] {
        let e = eval_row(src, &r).unwrap_err();
        assert!(
            e.message.contains("`payload`") && e.message.contains("beyond the range"),
            "{src}: {e:?}"
        );
    }
}

#[test]
fn json_access() {
    let r = row(&[(
        "payload",
        Value::json(serde_json::json!({"a": {"b": 3}, "l": [1, 2], "s": "x"})),
    )]);
    assert_eq!(
        eval_row("payload['a']['b'] == 3", &r).unwrap(),
        Value::Bool(true)
    );
    assert_eq!(
        eval_row("int(json_get(payload, 'a')['b']) + 1", &r).unwrap(),
        Value::Int(4)
    );
    assert_eq!(eval_row("payload['missing']", &r).unwrap(), Value::Null);
    assert_eq!(
        eval_row("payload['l'][1]", &r).unwrap(),
        Value::json(serde_json::json!(2))
    );
    assert_eq!(eval_row("'a' in payload", &r).unwrap(), Value::Bool(true));
    assert_eq!(
        eval_row("str(payload['s'])", &r).unwrap(),
        Value::Str("x".into())
    );
    let env = Env::value(Type::Json);
    let t = typed_in("lambda v: {'score': v['score'], 'ok': v.ok}", &env).unwrap();
    let v = Value::json(serde_json::json!({"score": 700, "ok": true}));
    let out = eval(&t, &EvalCtx::value(&v, now())).unwrap();
    assert_eq!(out.to_json(), serde_json::json!({"score": 700, "ok": true}));
}

// ---- robustness ----

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let src = format!("{}1{}", "(".repeat(500), ")".repeat(500));
    assert_eq!(
        parse(&src, origin(&src)).unwrap_err().kind,
        ExprErrorKind::Limit
    );
    let src = "-".repeat(3000) + "1";
    assert_eq!(
        parse(&src, origin(&src)).unwrap_err().kind,
        ExprErrorKind::Limit
    );
    let src = "1 if True else ".repeat(100) + "1";
    assert_eq!(
        parse(&src, origin(&src)).unwrap_err().kind,
        ExprErrorKind::Limit
    );
    let src = "1".repeat(5000);
    assert_eq!(
        parse(&src, origin(&src)).unwrap_err().kind,
        ExprErrorKind::Limit
    );
}

const TOKENS: &[&str] = &[
    "lambda",
    "r",
    ":",
    "v",
    "if",
    "else",
    "and",
    "or",
    "not",
    "in",
    "is",
    "None",
    "True",
    "False",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "=",
    "1",
    "0",
    "2.5",
    "'a'",
    "\"b\"",
    "\"",
    "'",
    "r[\"o__total\"]",
    "name",
    "datetime",
    "datetime.datetime",
    "now",
    "lower",
    "coalesce",
    "__import__",
    "os",
    "1e400",
    "99999999999999999999",
    "é",
    "\\",
];

fn arith() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![(-20i64..20).prop_map(|i| if i < 0 {
        format!("({i})")
    } else {
        i.to_string()
    }),];
    leaf.prop_recursive(5, 32, 2, |inner| {
        (
            inner.clone(),
            prop::sample::select(vec!["+", "-", "*", "//", "%"]),
            inner,
        )
            .prop_map(|(a, op, b)| format!("({a} {op} {b})"))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_arbitrary_text(s in ".{0,200}") {
        let _ = parse(&s, Span::new(0, s.len()));
    }

    #[test]
    fn parse_and_check_never_panic_on_token_soup(
        toks in prop::collection::vec(prop::sample::select(TOKENS.to_vec()), 0..40)
    ) {
        let src = toks.join(" ");
        if let Ok(p) = parse(&src, Span::new(7, 7 + src.len())) {
            for env in [row_env(), Env::value(Type::Json), Env::constant()] {
                if let Ok(t) = check(&p.lambda, &env) {
                    let _ = t.to_string();
                    if let Ok(f) = t.fold() {
                        let _ = f.to_string();
                    }
                }
            }
        }
    }

    #[test]
    fn fold_equals_eval_on_small_int_arithmetic(src in arith()) {
        let t = typed_in(&src, &Env::constant()).unwrap();
        let evaluated = eval(&t, &EvalCtx::constant(now()));
        match (t.fold(), evaluated) {
            (Ok(f), Ok(v)) => prop_assert_eq!(f.const_value(), Some(v)),
            (Err(e), Err(_)) => prop_assert_eq!(e.kind, ExprErrorKind::Constant),
            (a, b) => prop_assert!(false, "fold {:?} vs eval {:?}", a, b),
        }
        // The canonical text re-parses to the same value.
        if let Ok(f) = t.fold() {
            let again = typed_in(&t.to_string(), &Env::constant()).unwrap().fold().unwrap();
            prop_assert_eq!(again.const_value(), f.const_value());
        }
    }
}
