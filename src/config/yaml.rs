//! A small YAML loader that keeps a source span on every node, built on yaml-rust2's event
//! parser. Scalars are typed by the YAML 1.2 core schema, except that quoted scalars are
//! always strings. Anchors and aliases are supported (an alias is a copy of its anchor).

use crate::diag::{Diagnostic, Span};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML node with its span in the source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: NodeValue,
    /// Where it is in the source.
    pub span: Span,
    /// For string scalars: the span of the characters of the value itself (inside quotes).
    pub content: Span,
    /// Whether a string scalar was quoted (quoted scalars are never typed as numbers).
    pub quoted: bool,
}

/// The value of a YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    /// `~`, `null` or empty.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order (key node, value node).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short name of the node's type for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }

    /// The string value, if this is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Parse a YAML document into a spanned node tree. An empty document is `Null`.
pub fn parse(text: &str) -> Result<Node, Box<Diagnostic>> {
    let offsets = CharOffsets::new(text);
    let mut b = Builder {
        text,
        offsets: &offsets,
        stack: Vec::new(),
        anchors: HashMap::new(),
        copied: 0,
        root: None,
        error: None,
    };
    let mut parser = Parser::new_from_str(text);
    // Every document is read, so that a second one is refused (see `DocumentStart` below)
    // rather than silently left out.
    let loaded = parser.load(&mut b, true);
    // The builder's own errors come from earlier in the text than where the parser stopped.
    if let Some(e) = b.error {
        return Err(Box::new(e));
    }
    if let Err(e) = loaded {
        let mut at = offsets.byte(e.marker().index());
        let msg = e.to_string();
        // yaml-rust2 appends " at byte … line … column …": keep only the description.
        let msg = msg.split(" at ").next().unwrap_or(&msg).to_string();
        // A tab is reported at the start of the scalar before it: point at the tab.
        let mut label = "here";
        if msg.contains("found a tab") {
            if let Some(tab) = text.get(at..).and_then(|rest| rest.find('\t')) {
                at += tab;
                label = "a tab: YAML indents with spaces only";
            }
        }
        return Err(Box::new(
            Diagnostic::error(format!("malformed YAML: {msg}"))
                .with_span(Span::new(at, at + 1))
                .with_label(label),
        ));
    }
    Ok(b.root.unwrap_or(Node {
        value: NodeValue::Null,
        span: Span::new(0, 0),
        content: Span::new(0, 0),
        quoted: false,
    }))
}

/// The prefix of the YAML core schema's tags (`!!str` is `tag:yaml.org,2002:str`).
const CORE: &str = "tag:yaml.org,2002:";

/// The core-schema name of a tag (`str` for `!!str` and `!<tag:yaml.org,2002:str>`).
fn core_name(tag: &Tag) -> Option<&str> {
    if tag.handle == CORE {
        Some(&tag.suffix)
    } else if tag.handle.is_empty() {
        tag.suffix.strip_prefix(CORE)
    } else {
        None
    }
}

/// A tag as written (`!!int`, `!local`).
fn tag_text(tag: &Tag) -> String {
    if tag.handle == CORE {
        format!("!!{}", tag.suffix)
    } else if tag.handle.is_empty() && tag.suffix == "!" {
        "!".to_string()
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

fn unsupported_tag(tag: &Tag, at: usize) -> Box<Diagnostic> {
    Box::new(
        Diagnostic::error(format!("unsupported YAML tag `{}`", tag_text(tag)))
            .with_span(Span::new(at, at + 1))
            .with_help(
                "a config takes no application tags; only the core schema's `!!str`, `!!int`, \
                 `!!float`, `!!bool`, `!!null`, `!!seq` and `!!map` are read",
            ),
    )
}

/// Type a tagged scalar as its core-schema tag says (`!!str 5432` is a string); any other
/// tag is refused. A value that does not fit its tag is an error; the value is not quoted
/// in it (it may be a secret).
fn apply_scalar_tag(
    node: &mut Node,
    text: String,
    tag: &Tag,
    at: usize,
) -> Result<(), Box<Diagnostic>> {
    let non_specific = tag.handle.is_empty() && tag.suffix == "!";
    let suffix = if non_specific {
        "str"
    } else if let Some(name) = core_name(tag) {
        name
    } else {
        return Err(unsupported_tag(tag, at));
    };
    let mismatch = |what: &str| {
        Box::new(
            Diagnostic::error(format!("a value tagged `{}` must be {what}", tag_text(tag)))
                .with_span(node.span),
        )
    };
    node.value = match suffix {
        "str" => {
            // Never re-typed, as if quoted.
            node.quoted = true;
            NodeValue::Str(text)
        }
        "int" => match resolve_plain(text) {
            NodeValue::Int(i) => NodeValue::Int(i),
            _ => return Err(mismatch("an integer")),
        },
        "float" => match resolve_plain(text) {
            NodeValue::Float(f) => NodeValue::Float(f),
            NodeValue::Int(i) => NodeValue::Float(i as f64),
            _ => return Err(mismatch("a number")),
        },
        "bool" => match resolve_plain(text) {
            NodeValue::Bool(b) => NodeValue::Bool(b),
            _ => return Err(mismatch("`true` or `false`")),
        },
        "null" => match resolve_plain(text) {
            NodeValue::Null => NodeValue::Null,
            _ => return Err(mismatch("null")),
        },
        _ => return Err(unsupported_tag(tag, at)),
    };
    Ok(())
}

/// A tag on a sequence or mapping: only `!!seq` / `!!map` (and the non-specific `!`).
fn collection_tag_error(tag: &Tag, kind: &str, at: usize) -> Option<Box<Diagnostic>> {
    let non_specific = tag.handle.is_empty() && tag.suffix == "!";
    if non_specific || core_name(tag) == Some(kind) {
        return None;
    }
    if matches!(core_name(tag), Some("seq" | "map")) {
        let what = if kind == "seq" { "a list" } else { "a mapping" };
        return Some(Box::new(
            Diagnostic::error(format!(
                "a value tagged `{}` cannot be {what}",
                tag_text(tag)
            ))
            .with_span(Span::new(at, at + 1)),
        ));
    }
    Some(unsupported_tag(tag, at))
}

/// Converts yaml-rust2's character indices into byte offsets.
struct CharOffsets {
    bytes: Vec<usize>,
}

impl CharOffsets {
    fn new(text: &str) -> Self {
        let mut bytes: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        bytes.push(text.len());
        CharOffsets { bytes }
    }
    fn byte(&self, char_index: usize) -> usize {
        *self
            .bytes
            .get(char_index)
            .unwrap_or(self.bytes.last().expect("never empty"))
    }
}

enum Frame {
    Seq(Vec<Node>, usize, usize),
    Map(Vec<(Node, Node)>, Option<Node>, usize, usize),
}

struct Builder<'a> {
    text: &'a str,
    offsets: &'a CharOffsets,
    stack: Vec<Frame>,
    /// Anchored nodes, with their size in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes copied by aliases so far (see [`MAX_ALIAS_NODES`]).
    copied: usize,
    root: Option<Node>,
    error: Option<Diagnostic>,
}

/// The most nodes aliases may copy in one file: far beyond any config, far below what a
/// "billion laughs" file (aliases of aliases, each copying the one before many times) would
/// build in memory.
const MAX_ALIAS_NODES: usize = 100_000;

/// Resolves YAML merge keys (`<<: *base`, `<<: [*a, *b]`): the entries of the merged
/// mappings are added where the mapping does not set the key itself (the first of several
/// merged mappings wins). A `<<` whose value is not a mapping (or a list of them) stays, and
/// is reported as an unknown key.
fn merge_keys(entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    let is_merge = |k: &Node| k.as_str() == Some("<<") && !k.quoted;
    let mergeable = |v: &Node| match &v.value {
        NodeValue::Map(_) => true,
        NodeValue::Seq(items) => items.iter().all(|i| matches!(i.value, NodeValue::Map(_))),
        _ => false,
    };
    if !entries.iter().any(|(k, v)| is_merge(k) && mergeable(v)) {
        return entries;
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|(k, v)| is_merge(k) && mergeable(v));
    for (_, v) in merges {
        let maps = match v.value {
            NodeValue::Map(m) => vec![m],
            NodeValue::Seq(items) => items
                .into_iter()
                .filter_map(|i| match i.value {
                    NodeValue::Map(m) => Some(m),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        for (k, v) in maps.into_iter().flatten() {
            if !own.iter().any(|(o, _)| o.value == k.value) {
                own.push((k, v));
            }
        }
    }
    own
}

/// The number of nodes in `n` (itself included).
fn size(n: &Node) -> usize {
    1 + match &n.value {
        NodeValue::Seq(items) => items.iter().map(size).sum(),
        NodeValue::Map(entries) => entries.iter().map(|(k, v)| size(k) + size(v)).sum(),
        _ => 0,
    }
}

impl Builder<'_> {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size(&node)));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, key, _, _)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }

    fn scalar(&self, value: String, style: TScalarStyle, start: usize) -> Node {
        let text = self.text;
        let (end, content) = match style {
            TScalarStyle::SingleQuoted => {
                let end = scan_single_quoted(text, start);
                (
                    end,
                    Span::new(start + 1, end.saturating_sub(1).max(start + 1)),
                )
            }
            TScalarStyle::DoubleQuoted => {
                let end = scan_double_quoted(text, start);
                (
                    end,
                    Span::new(start + 1, end.saturating_sub(1).max(start + 1)),
                )
            }
            TScalarStyle::Plain => {
                // A plain scalar on one line is its value verbatim.
                let end = if text[start..].starts_with(value.as_str()) {
                    start + value.len()
                } else {
                    line_end(text, start)
                };
                (end, Span::new(start, end))
            }
            _ => {
                // Block scalars: the span covers the indicator line.
                let end = line_end(text, start);
                (end, Span::new(start, end))
            }
        };
        let quoted = style != TScalarStyle::Plain;
        let v = if quoted {
            NodeValue::Str(value)
        } else {
            resolve_plain(value)
        };
        Node {
            value: v,
            span: Span::new(start, end),
            content,
            quoted,
        }
    }
}

fn line_end(text: &str, start: usize) -> usize {
    text[start..]
        .find('\n')
        .map(|i| start + i)
        .unwrap_or(text.len())
}

fn scan_single_quoted(text: &str, start: usize) -> usize {
    let b = text.as_bytes();
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\'' {
            if b.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn scan_double_quoted(text: &str, start: usize) -> usize {
    let b = text.as_bytes();
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// Type a plain scalar by the YAML 1.2 core schema (used again after interpolation).
pub(crate) fn resolve_plain_pub(s: String) -> NodeValue {
    resolve_plain(s)
}

fn resolve_plain(s: String) -> NodeValue {
    match s.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        _ => {}
    }
    let t = s.strip_prefix('+').unwrap_or(&s);
    if !t.is_empty()
        && t.trim_start_matches('-')
            .chars()
            .all(|c| c.is_ascii_digit())
    {
        if let Ok(i) = s.parse::<i64>() {
            return NodeValue::Int(i);
        }
    }
    if let Some(h) = t.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(h, 16) {
            return NodeValue::Int(i);
        }
    }
    let looks_float = t.chars().any(|c| c.is_ascii_digit())
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
    if looks_float {
        if let Ok(f) = t.parse::<f64>() {
            return NodeValue::Float(f);
        }
    }
    match t {
        ".inf" | ".Inf" | ".INF" => return NodeValue::Float(f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeValue::Float(f64::NAN),
        _ => {}
    }
    if s == "-.inf" {
        return NodeValue::Float(f64::NEG_INFINITY);
    }
    NodeValue::Str(s)
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let at = self.offsets.byte(mark.index());
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let raw = tag.as_ref().map(|_| value.clone());
                let mut node = self.scalar(value, style, at);
                if let (Some(tag), Some(raw)) = (tag, raw) {
                    if let Err(e) = apply_scalar_tag(&mut node, raw, &tag, at) {
                        self.error = Some(*e);
                        return;
                    }
                }
                self.push_node(node, anchor);
            }
            Event::SequenceStart(anchor, tag) => {
                if let Some(e) = tag.and_then(|t| collection_tag_error(&t, "seq", at)) {
                    self.error = Some(*e);
                    return;
                }
                self.stack.push(Frame::Seq(Vec::new(), at, anchor))
            }
            Event::MappingStart(anchor, tag) => {
                if let Some(e) = tag.and_then(|t| collection_tag_error(&t, "map", at)) {
                    self.error = Some(*e);
                    return;
                }
                self.stack.push(Frame::Map(Vec::new(), None, at, anchor))
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, start, anchor)) = self.stack.pop() {
                    let end = items.last().map(|n| n.span.end).unwrap_or(at).max(start);
                    let node = Node {
                        value: NodeValue::Seq(items),
                        span: Span::new(start, end),
                        content: Span::new(start, end),
                        quoted: false,
                    };
                    self.push_node(node, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, _, start, anchor)) = self.stack.pop() {
                    let entries = merge_keys(entries);
                    let end = entries
                        .last()
                        .map(|(_, v)| v.span.end)
                        .unwrap_or(at)
                        .max(start);
                    let node = Node {
                        value: NodeValue::Map(entries),
                        span: Span::new(start, end),
                        content: Span::new(start, end),
                        quoted: false,
                    };
                    self.push_node(node, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((_, n)) if self.copied + n > MAX_ALIAS_NODES => {
                    self.error = Some(
                        Diagnostic::error(format!(
                            "aliases copy more than {MAX_ALIAS_NODES} YAML nodes: the file expands far beyond any config"
                        ))
                        .with_span(Span::new(at, at + 1))
                        .with_help("write the repeated parts out, or anchor smaller parts"),
                    )
                }
                Some((n, count)) => {
                    let mut n = n.clone();
                    self.copied += count;
                    n.span = Span::new(at, at + 1);
                    self.push_node(n, 0);
                }
                None => {
                    self.error = Some(
                        Diagnostic::error("alias to an unknown anchor")
                            .with_span(Span::new(at, at + 1)),
                    )
                }
            },
            Event::DocumentStart if self.root.is_some() => {
                let end = (at + 3).min(self.text.len()).max(at);
                self.error = Some(
                    Diagnostic::error("the config must be a single YAML document")
                        .with_span(Span::new(at, end))
                        .with_label("a second document starts here")
                        .with_help(
                            "merge its keys into the first document, or keep each config in a file of its own",
                        ),
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(text: &str, s: Span) -> &str {
        &text[s.start..s.end]
    }

    #[test]
    fn spans_and_types() {
        let text =
            "a: 1\nb: 'x''y'\nc: \"q\\\"r\"\nd: TRUE\ne: 1*365*24*60*60\nf: [1, ~]\ng: é ok\n";
        let n = parse(text).unwrap();
        let NodeValue::Map(m) = &n.value else {
            panic!()
        };
        assert_eq!(m[0].1.value, NodeValue::Int(1));
        assert_eq!(slice(text, m[1].1.span), "'x''y'");
        assert_eq!(m[1].1.value, NodeValue::Str("x'y".into()));
        assert_eq!(slice(text, m[2].1.span), "\"q\\\"r\"");
        assert_eq!(m[3].1.value, NodeValue::Bool(true));
        assert_eq!(m[4].1.value, NodeValue::Str("1*365*24*60*60".into()));
        assert_eq!(slice(text, m[4].1.span), "1*365*24*60*60");
        assert_eq!(slice(text, m[6].1.span), "é ok");
        assert_eq!(slice(text, m[6].0.span), "g");
    }

    #[test]
    fn malformed_yaml_is_located() {
        let text = "a: 1\nb: [1, 2\n";
        let e = parse(text).unwrap_err();
        assert!(e.message.starts_with("malformed YAML"), "{}", e.message);
        assert!(e.span.is_some());
    }

    #[test]
    fn a_tab_is_pointed_at() {
        let text = "a:\n  b: 1\n\tc: 2\n";
        let e = parse(text).unwrap_err();
        assert!(e.message.contains("tab"), "{}", e.message);
        let span = e.span.expect("a span");
        assert_eq!(&text[span.start..span.end], "\t", "{}", e.message);
    }

    #[test]
    fn aliases_copy_anchors() {
        let n = parse("a: &x {k: 1}\nb: *x\n").unwrap();
        let NodeValue::Map(m) = &n.value else {
            panic!()
        };
        assert_eq!(m[0].1.value, m[1].1.value);
    }

    #[test]
    fn merge_keys_add_the_entries_a_mapping_does_not_set() {
        let n = parse("base: &b {host: h, port: 1}\nx: {<<: *b, port: 2, name: n}\n").unwrap();
        let NodeValue::Map(m) = &n.value else {
            panic!()
        };
        let NodeValue::Map(x) = &m[1].1.value else {
            panic!()
        };
        let get = |k: &str| {
            x.iter()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|(_, v)| v.value.clone())
        };
        assert_eq!(get("port"), Some(NodeValue::Int(2)), "its own value wins");
        assert_eq!(get("host"), Some(NodeValue::Str("h".into())));
        assert_eq!(get("name"), Some(NodeValue::Str("n".into())));
        assert_eq!(get("<<"), None);
        // A quoted `<<` is an ordinary key.
        let n = parse("x: {'<<': 1}\n").unwrap();
        assert!(format!("{n:?}").contains("<<"));
    }

    #[test]
    fn aliases_that_copy_without_end_are_refused() {
        // Nine levels of ten aliases each: 10^9 copies of `a` if expanded.
        let mut text = String::from("l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n");
        for i in 1..10 {
            let prev = format!("*l{}", i - 1);
            text.push_str(&format!("l{i}: &l{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let e = parse(&text).unwrap_err();
        assert!(
            e.message
                .contains("aliases copy more than 100000 YAML nodes"),
            "{e:?}"
        );
        // Ordinary reuse is fine.
        assert!(parse("d: &d {host: h, port: 1}\na: *d\nb: *d\n").is_ok());
    }

    #[test]
    fn a_second_document_is_refused_at_its_start() {
        let text = "a: 1\n---\nb: 2\n";
        let e = parse(text).unwrap_err();
        assert!(e.message.contains("single YAML document"), "{}", e.message);
        let span = e.span.expect("a span");
        assert_eq!(&text[span.start..span.end], "---");
        // Even when the second document does not parse.
        let e = parse("a: 1\n---\nb: [\n").unwrap_err();
        assert!(e.message.contains("single YAML document"), "{}", e.message);
        assert!(parse("---\na: 1\n...\n").is_ok());
        assert!(parse("# only a comment\n").is_ok());
    }

    #[test]
    fn core_tags_type_their_value_and_others_are_refused() {
        let n = parse("a: !!str 5432\nb: !!int '7'\nc: !!float 1\nd: !!bool 'true'\ne: ! 12\nf: !!map {x: 1}\ng: !!null ''\n").unwrap();
        let NodeValue::Map(m) = &n.value else {
            panic!()
        };
        assert_eq!(m[0].1.value, NodeValue::Str("5432".into()));
        assert!(m[0].1.quoted, "never re-typed after interpolation");
        assert_eq!(m[1].1.value, NodeValue::Int(7));
        assert_eq!(m[2].1.value, NodeValue::Float(1.0));
        assert_eq!(m[3].1.value, NodeValue::Bool(true));
        assert_eq!(m[4].1.value, NodeValue::Str("12".into()));
        assert!(matches!(m[5].1.value, NodeValue::Map(_)));
        assert_eq!(m[6].1.value, NodeValue::Null);
        for (text, needle) in [
            (
                "p: !!python/object:os.system 5432\n",
                "unsupported YAML tag `!!python/object:os.system`",
            ),
            ("p: !env X\n", "unsupported YAML tag `!env`"),
            ("p: !!binary aGk=\n", "unsupported YAML tag `!!binary`"),
            ("p: !!set {a: 1}\n", "unsupported YAML tag `!!set`"),
            ("p: !!map [1]\n", "a value tagged `!!map` cannot be a list"),
            ("p: !!int x\n", "a value tagged `!!int` must be an integer"),
            ("p: !!bool 1\n", "a value tagged `!!bool` must be"),
            ("p: !<tag:example.com,2000:x> 1\n", "unsupported YAML tag"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(needle), "{text}: {}", e.message);
            assert!(e.span.is_some(), "{text}");
        }
    }
}
