#!/usr/bin/env bash
# Benchmarks (a script for people, not a test): full sync of ROWS generated rows from
# PostgreSQL into PostgreSQL, MariaDB and ClickHouse, then a reconciliation with ~100 scattered
# changes and a no-op reconciliation. Each is compared with a baseline measured in the same
# run:
#   PostgreSQL  psql COPY TO STDOUT | psql COPY FROM STDIN
#   MariaDB     psql COPY TO STDOUT | mysql LOAD DATA LOCAL INFILE
#   ClickHouse  psql COPY TO STDOUT | HTTP INSERT FORMAT TabSeparated
#   reconcile   one count(*), sum(row hash) scan per side
# Prints a Markdown table: wall time, rows/s, peak memory (RSS) and the ratio to the baseline.
# Usage: bench/run.sh            (ROWS=1000000 by default; ROWS=10000000 for the memory check)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
OUT=bench/out
mkdir -p "$OUT"

./scripts/services.sh >/dev/null
cargo build --release -q
BIN=target/release/synctool

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d test)
MYSQL=(mysql -h 127.0.0.1 -uroot test)
ch() { curl -sfS 'http://127.0.0.1:8123/' --data-binary "$1"; }

echo "generating $ROWS rows in PostgreSQL bench_src…" >&2
"${PSQL[@]}" <<SQL
DROP TABLE IF EXISTS bench_src, bench_dst, bench_base;
CREATE TABLE bench_src AS
SELECT g::bigint AS id,
       md5(g::text) AS name,
       ((g % 1000000) / 100.0)::numeric(12,2) AS amount,
       g % 2 = 0 AS flag,
       timestamptz '2020-01-01 00:00:00+00' + g * interval '1 second' + (g % 1000) * interval '1 microsecond' AS created_at,
       md5(g::text || 'u')::uuid AS uid
FROM generate_series(1, $ROWS) g;
ALTER TABLE bench_src ADD PRIMARY KEY (id);
ANALYZE bench_src;
SQL

# measure NAME CMD… → prints "seconds peak_kb" and logs stdout/stderr to $OUT/NAME.log
measure() {
    local name=$1; shift
    /usr/bin/time -f '%e %M' -o "$OUT/$name.time" "$@" >"$OUT/$name.log" 2>&1 || {
        echo "$name failed, see $OUT/$name.log" >&2; cat "$OUT/$name.log" >&2; exit 1; }
    cat "$OUT/$name.time"
}

COPY_SELECT="COPY (SELECT id, name, amount, flag::int, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), uid FROM bench_src) TO STDOUT"
COPY_SELECT_CH="COPY (SELECT id, name, amount, flag::int, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), uid FROM bench_src) TO STDOUT"

declare -A T M B
# run_pair NAME BASELINE_CMD CONFIG CLEANUP_CMD: the baseline, then CLEANUP_CMD (drops the
# baseline's table, so that the server's work on it after the load, such as ClickHouse
# merges or InnoDB page flushing, does not run during synctool's turn), then synctool.
run_pair() {
    local name=$1 base=$2 cfg=$3 cleanup=$4
    read -r bt bm < <(measure "${name}_baseline" bash -c "$base")
    bash -c "$cleanup" >/dev/null
    read -r st sm < <(measure "${name}_synctool" "$BIN" apply -c "$cfg" --full --format json)
    T[$name]=$st; M[$name]=$sm; B[$name]=$bt
}

# PostgreSQL. The baseline loads into a table of the sink's shape: the same columns and the
# primary key on id that synctool creates (as the MariaDB and ClickHouse baselines do). The
# same copy into a table without the key is measured too, for comparison with older runs.
"${PSQL[@]}" -c "CREATE TABLE bench_base (LIKE bench_src INCLUDING INDEXES)"
run_pair "pg_full" "${PSQL[*]} -c \"COPY bench_src TO STDOUT\" | ${PSQL[*]} -c \"COPY bench_base FROM STDIN\"" bench/configs/pg_to_pg.yaml \
    "${PSQL[*]} -c 'DROP TABLE bench_base' -c CHECKPOINT"
"${PSQL[@]}" -c "CREATE TABLE bench_base (LIKE bench_src)"
read -r nopk _ < <(measure pg_full_nopk_baseline bash -c "${PSQL[*]} -c \"COPY bench_src TO STDOUT\" | ${PSQL[*]} -c \"COPY bench_base FROM STDIN\"")
"${PSQL[@]}" -c "DROP TABLE bench_base"
# Vacuum now, so that autovacuum of the loaded table does not run during the next benchmarks.
"${PSQL[@]}" -c "VACUUM ANALYZE bench_dst" -c "CHECKPOINT"

# MariaDB
"${MYSQL[@]}" -e "DROP TABLE IF EXISTS bench_dst, bench_base; CREATE TABLE bench_base (id BIGINT PRIMARY KEY, name LONGTEXT, amount DECIMAL(12,2), flag BOOLEAN, created_at DATETIME(6), uid CHAR(36)) DEFAULT CHARSET=utf8mb4"
run_pair "mysql_full" "${PSQL[*]} -c \"$COPY_SELECT\" | mysql --local-infile=1 -h 127.0.0.1 -uroot test -e \"LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE bench_base\"" bench/configs/pg_to_mysql.yaml \
    "${MYSQL[*]} -e 'DROP TABLE bench_base'"
"${MYSQL[@]}" -e "DROP TABLE bench_dst"

# ClickHouse
ch "DROP TABLE IF EXISTS bench_dst" >/dev/null; ch "DROP TABLE IF EXISTS bench_base" >/dev/null
ch "CREATE TABLE bench_base (id Int64, name String, amount Decimal(12,2), flag UInt8, created_at DateTime('UTC'), uid UUID) ENGINE = MergeTree ORDER BY id" >/dev/null
run_pair "ch_full" "${PSQL[*]} -c \"$COPY_SELECT_CH\" | curl -sfS 'http://127.0.0.1:8123/?query=INSERT%20INTO%20bench_base%20FORMAT%20TabSeparated' -X POST -T -" bench/configs/pg_to_ch.yaml \
    "curl -sfS http://127.0.0.1:8123/ --data-binary 'DROP TABLE bench_base'"
# Dropping the table stops ClickHouse's background merges, which would otherwise take CPU
# from the reconciliation measured next.
ch "DROP TABLE bench_dst" >/dev/null

# Reconciliation PostgreSQL → PostgreSQL: baseline is one count+sum(row hash) scan per side.
# Both tables are vacuumed and checkpointed first, so that no run pays for hint bits or
# dirty pages the full sync left behind.
"${PSQL[@]}" -c "VACUUM ANALYZE bench_src" -c "VACUUM ANALYZE bench_dst" -c "CHECKPOINT"
RECON_BASE="for t in bench_src bench_dst; do ${PSQL[*]} -c \"SELECT count(*), sum(('x' || substr(md5(b::text), 1, 16))::bit(64)::bigint) FROM \$t b\"; done"
read -r rbt _ < <(measure recon_baseline bash -c "$RECON_BASE")
read -r nt nm < <(measure recon_noop "$BIN" apply -c bench/configs/pg_to_pg.yaml -r by_id --format json)
"${PSQL[@]}" <<SQL
UPDATE bench_src SET name = name || 'x' WHERE id % ($ROWS / 40) = 7;
DELETE FROM bench_src WHERE id % ($ROWS / 30) = 11;
INSERT INTO bench_src SELECT id + $ROWS * 2, name, amount, flag, created_at, uid FROM bench_src WHERE id % ($ROWS / 30) = 13;
SQL
read -r ct cm < <(measure recon_changes "$BIN" apply -c bench/configs/pg_to_pg.yaml -r by_id --format json)
read -r pt _ < <(measure recon_verify "$BIN" plan -c bench/configs/pg_to_pg.yaml -r by_id --exit-code --format json)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
rate() { awk -v n="$ROWS" -v s="$1" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

echo
echo "| benchmark ($ROWS rows) | synctool wall s | rows/s | peak MB | baseline s | throughput vs baseline |"
echo "|---|---|---|---|---|---|"
for n in pg_full mysql_full ch_full; do
    echo "| full sync ${n%_full} | ${T[$n]} | $(rate "${T[$n]}") | $(mb "${M[$n]}") | ${B[$n]} | $(ratio "${B[$n]}" "${T[$n]}")× |"
done
echo "| full sync pg, baseline table without primary key | ${T[pg_full]} | $(rate "${T[pg_full]}") | $(mb "${M[pg_full]}") | $nopk | $(ratio "$nopk" "${T[pg_full]}")× |"
echo "| reconcile, ~100 changes | $ct | – | $(mb "$cm") | $rbt | time $(ratio "$ct" "$rbt")× baseline |"
echo "| reconcile, no changes | $nt | – | $(mb "$nm") | $rbt | time $(ratio "$nt" "$rbt")× baseline |"
echo "(plan after repair: ${pt}s, no drift)"
