//! Property test: the YAML frontend and checker never panic, whatever the input. Inputs are
//! the example configs with random byte-level edits (deletions, insertions of YAML-significant
//! characters, swapped lines), which reach far deeper than random strings would.

use proptest::prelude::*;
use std::collections::HashMap;
use synctool::driver::frontend;

fn corpus() -> Vec<String> {
    super::examples::example_files()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    SwapLines(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(a, n)| Edit::Delete(a, n)),
        (
            any::<usize>(),
            prop::sample::select(vec![
                ":",
                "- ",
                "{",
                "}",
                "[",
                "]",
                "'",
                "\"",
                "#",
                "&a ",
                "*a",
                "\n  ",
                "${X}",
                "lambda r: ",
                "TMPL(",
                "{{ x }}",
                "é",
                "\t",
                "---\n",
                "~",
            ])
        )
            .prop_map(|(a, s)| Edit::Insert(a, s.to_string())),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

fn apply(text: &str, e: &Edit) -> String {
    let mut s = text.to_string();
    let at = |i: usize, s: &str| {
        let mut i = i % (s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match e {
        Edit::Delete(a, n) => {
            let start = at(*a, &s);
            let end = at(start + n, &s).max(start);
            s.replace_range(start..end, "");
        }
        Edit::Insert(a, t) => {
            let i = at(*a, &s);
            s.insert_str(i, t);
        }
        Edit::SwapLines(a, b) => {
            let mut lines: Vec<&str> = s.lines().collect();
            if !lines.is_empty() {
                let (x, y) = (a % lines.len(), b % lines.len());
                lines.swap(x, y);
            }
            s = lines.join("\n");
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn frontend_never_panics(which in 0usize..64, edits in prop::collection::vec(edit(), 1..6)) {
        let corpus = corpus();
        let mut text = corpus[which % corpus.len()].clone();
        for e in &edits {
            text = apply(&text, e);
        }
        let env: HashMap<String, String> = HashMap::new();
        match frontend("fuzz.yaml", &text, &env, &[]) {
            Ok(fe) => {
                // A config that checks must also plan without panicking.
                let _ = synctool::plan::build(&fe.checked.program);
            }
            Err(failed) => {
                prop_assert!(failed.error_count() > 0);
                for d in &failed.diagnostics {
                    let _ = synctool::diag::render(d, Some(&failed.source));
                }
            }
        }
    }
}
