//! Enrichments: the external store, the lookup templates (checked against the row context
//! available at that point: source aliases plus outputs of earlier enrichments) and the
//! output expression of the looked-up value `v`.

use super::fields::{expression, template, template_escaped};
use super::Diags;
use crate::config::raw::RawEnrichment;
use crate::diag::Diagnostic;
use crate::expr::{Env, Type};
use crate::ir::{Enrichment, ExternalKind, Lookup, OnError, Source};
use crate::template::Escape;
use crate::types::Dtype;
use indexmap::IndexMap;

/// Check every enrichment, in order.
pub fn enrichments(
    raw: &[RawEnrichment],
    src: &Source,
    stores: &super::Stores,
    diags: &mut Diags,
) -> Vec<Enrichment> {
    let mut out: Vec<Enrichment> = Vec::new();
    for e in raw {
        if out.iter().any(|x| x.name == e.name.value) {
            diags.push(
                e.name
                    .error(format!("duplicate enrichment name `{}`", e.name.value)),
            );
            continue;
        }
        let Some(store) = stores.external(&e.externalstore, diags) else {
            continue;
        };
        if let Some(k) = &e.kind {
            let want = match store.kind {
                ExternalKind::Redis => "redis",
                ExternalKind::Http => "http",
            };
            if k.value != want {
                diags.push(k.error(format!(
                    "enrichment type `{}` does not match external store `{}`, which is {want}",
                    k.value, store.name
                )));
                continue;
            }
        }
        // The row context visible to this enrichment's templates.
        let mut known: Vec<String> = src.fields.iter().map(|f| f.alias.clone()).collect();
        for prev in &out {
            known.extend(prev.outputs.keys().cloned());
        }
        let known_refs: Vec<&str> = known.iter().map(String::as_str).collect();
        let lookup = match store.kind {
            ExternalKind::Redis => {
                let Some(k) = &e.key_template else {
                    diags.push(
                        Diagnostic::error(format!(
                            "redis enrichment `{}` needs `key_template`",
                            e.name.value
                        ))
                        .at_path(e.path.clone())
                        .with_span(e.name.span),
                    );
                    continue;
                };
                let Some(key) = template(k, &known_refs, diags) else {
                    continue;
                };
                Lookup::Redis { key }
            }
            ExternalKind::Http => {
                let Some(p) = e.http_path.as_ref().or(e.url.as_ref()) else {
                    diags.push(
                        Diagnostic::error(format!(
                            "http enrichment `{}` needs `path` (or `url`)",
                            e.name.value
                        ))
                        .at_path(e.path.clone())
                        .with_span(e.name.span),
                    );
                    continue;
                };
                // Values go into the path percent-encoded: a row's data can neither add
                // path segments or a query string nor name another host.
                let Some(path) = template_escaped(p, &known_refs, Escape::UrlPath, diags) else {
                    continue;
                };
                let mut params = IndexMap::new();
                for (k, v) in &e.params {
                    if let Some(t) = template(v, &known_refs, diags) {
                        // A parameter named like a secret (`api_key`) never shows its text.
                        let t = if crate::config::redact::is_secret_name(&k.value) {
                            t.into_secret()
                        } else {
                            t
                        };
                        params.insert(k.value.clone(), t);
                    }
                }
                Lookup::Http { path, params }
            }
        };
        let v_type = match store.kind {
            ExternalKind::Redis => Type::Str,
            ExternalKind::Http => Type::Json,
        };
        let (output, outputs) = match &e.output {
            None => {
                let mut m = IndexMap::new();
                m.insert(
                    e.name.value.clone(),
                    Type::to_dtype(&v_type).unwrap_or(Dtype::Str),
                );
                (None, m)
            }
            Some(o) => {
                let Some(t) = expression(o, &Env::value(v_type), diags) else {
                    continue;
                };
                let mut m = IndexMap::new();
                match &t.ty {
                    Type::Map(items) => {
                        for (k, ty) in items {
                            m.insert(k.clone(), ty.to_dtype().unwrap_or(Dtype::Str));
                        }
                    }
                    other => {
                        m.insert(e.name.value.clone(), other.to_dtype().unwrap_or(Dtype::Str));
                    }
                }
                (Some(t), m)
            }
        };
        let on_error = match e.on_error.as_ref().map(|s| s.value.as_str()) {
            None | Some("fail") => OnError::Fail,
            Some("null") => OnError::Null,
            Some("skip") => OnError::Skip,
            Some(other) => {
                let s = e.on_error.as_ref().expect("some");
                diags.push(
                    s.error(format!("unknown on_error policy `{other}`"))
                        .with_choices(other, &["fail", "null", "skip"]),
                );
                continue;
            }
        };
        for k in outputs.keys() {
            if src.fields.iter().any(|f| &f.alias == k) {
                diags.push(
                    e.output
                        .as_ref()
                        .unwrap_or(&e.name)
                        .error(format!(
                            "enrichment output `{k}` has the same name as a source field"
                        ))
                        .with_help(
                            "rename the output so that templates and expressions are unambiguous",
                        ),
                );
            }
        }
        out.push(Enrichment {
            name: e.name.value.clone(),
            store,
            lookup,
            output,
            outputs,
            on_error,
        });
    }
    out
}
