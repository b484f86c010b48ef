"""Run ClickHouse statements on the current engine embedded by chdb (PyPI chdb-core).

Reads a JSON list of {"sql": ..., "params": {name: value}} from stdin, runs them in order
in one session (so tables persist between statements) and prints a JSON list of each
statement's TabSeparated output. Fails loudly when chdb is missing.
"""
import json
import sys
import tempfile

try:
    from chdb import session
except ImportError as e:  # pragma: no cover - the message is the point
    sys.exit(f"chdb is not installed ({e}); run scripts/services.sh "
             "(pip install chdb-core==26.9.0)")


def main() -> None:
    statements = json.load(sys.stdin)
    outputs = []
    with tempfile.TemporaryDirectory() as path:
        sess = session.Session(path)
        try:
            for st in statements:
                params = st.get("params") or None
                res = sess.query(st["sql"], "TabSeparated", params=params)
                outputs.append(res.bytes().decode("utf-8") if res is not None else "")
        finally:
            sess.close()
    json.dump(outputs, sys.stdout)


if __name__ == "__main__":
    main()
