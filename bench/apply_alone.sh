#!/usr/bin/env bash
# The consumer's apply alone, for two evrep builds in the same run: how long
# applying messages takes (parse, then the statements), without a broker or
# workers. Issue 20 item 3: the consumer built each message as jsonb first.
#
#   bench/apply_alone.sh copy [ROWS [ROUNDS]]    chunks of an initial copy
#   bench/apply_alone.sh events [ROWS [ROUNDS]]  messages of insert events
#
# ROWS rows (default 200000) in messages of 1000 (chunks, or events as a
# publisher writes them for a bulk INSERT), ROUNDS rounds (default 3),
# builds alternating.
#
# Builds: "new" is the one installed for $PG_CONFIG (default: the system's);
# "old" is EVREP_BENCH_OLD_COMMIT (default: the last commit before the
# change: 2ecdce4 for copy, 855d0ab for events) built into a copy of
# PostgreSQL (test/lib/evrep10.sh). One
# PostgreSQL server per build, no broker and no workers (evrep.database = ''):
# the chunks go through evrep_apply(), the consumer's own apply path. Each
# server's database holds customer (id int PRIMARY KEY, name text, email
# text, credit int, created timestamptz; bench/copy.sh's table), the source
# of the rows, and dst.customer, subscribed (copy_data => false). A round,
# per build: TRUNCATE dst.customer, then for copy evrep_resync (a new
# request), the messages written as a publisher writes them
# (evrep._row_json of each row, in key order, text not jsonb; for events
# with seq, op and commit_ts), then the time of applying them all, one
# evrep_apply() per message in one session, and a check that dst.customer
# equals customer.
#
# Output: a table on stdout and bench/results/copy_apply.md (copy) or
# bench/results/event_apply.md (events).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${EVREP_TEST_DIR:=/tmp/evrep-bench-copy-apply}"
export EVREP_TEST_DIR
source test/lib/pg.sh
source test/lib/evrep10.sh
source bench/lib.sh

MODE=${1:-}
[[ $MODE == copy || $MODE == events ]] || { echo "usage: $0 copy|events [ROWS [ROUNDS]]" >&2; exit 2; }
ROWS=${2:-200000}
ROUNDS=${3:-3}
CHUNK=1000
if [[ $MODE == copy ]]; then
    : "${EVREP_BENCH_OLD_COMMIT:=2ecdce4}"
    OUT=bench/results/copy_apply.md
else
    : "${EVREP_BENCH_OLD_COMMIT:=855d0ab}"
    OUT=bench/results/event_apply.md
fi
NEW_PGC=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
OLD_PGC=$(evrep_old_pg_config "$EVREP_BENCH_OLD_COMMIT")
mkdir -p "$EVREP_TEST_DIR"
bench_traps

declare -A PORT=([new]=7511 [old]=7512) PGC=([new]=$NEW_PGC [old]=$OLD_PGC)
DETAIL=()
for b in new old; do
    PG_CONFIG=${PGC[$b]} pg_init "ca$b" "${PORT[$b]}" --db cadb "evrep.database = ''" \
        "shared_buffers = 256MB" "max_wal_size = 4GB" "checkpoint_timeout = 30min"
    pg_start "ca$b"
    pg_psql "ca$b" -c "CREATE EXTENSION evrep" -c "
        CREATE TABLE customer (id int PRIMARY KEY, name text, email text, credit int,
            created timestamptz);
        INSERT INTO customer SELECT g, 'customer ' || g, 'c' || g || '@example.com', g % 1000,
            '2026-12-07 10:00+00'::timestamptz + g * interval '1 s'
        FROM generate_series(1, $ROWS) g;
        CREATE SCHEMA dst;
        CREATE TABLE dst.customer (LIKE customer INCLUDING ALL);
        SELECT evrep_subscribe('dst.customer', copy_data => false);
        CREATE TABLE chunk (n int PRIMARY KEY, body text);" -c "VACUUM ANALYZE customer" >/dev/null
    detail "$b: evrep $(pg_psql "ca$b" -c "SELECT extversion FROM pg_extension WHERE extname = 'evrep'") from $( [[ $b == new ]] && git rev-parse --short HEAD || echo "$EVREP_BENCH_OLD_COMMIT"), pg_config ${PGC[$b]}"
done

# The messages of a round, as a publisher writes them, into table chunk.
write_copy() {
    pg_psql "ca$1" -c "SELECT evrep_resync('dst.customer')" \
        -c "INSERT INTO chunk SELECT k, format('{\"format\":\"evrep.v1\",\"origin\":\"bench\",'
            '\"schema\":\"dst\",\"table\":\"customer\",\"events\":[{\"seq\":%s,\"op\":\"copy\",'
            '\"copy\":{\"for\":\"ca$b\",\"request\":%s,\"estimate\":$ROWS,'
            '\"key\":[{\"column\":\"id\",\"collation\":null}],\"after\":%s,\"upto\":%s,\"rows\":[%s]}}]}',
            coalesce((SELECT last_seq FROM evrep.progress WHERE table_name = 'customer'), 0) + k,
            (SELECT request_id FROM evrep.sync WHERE table_name = 'customer'),
            CASE WHEN k = 1 THEN 'null' ELSE format('{\"id\":%s}', (k - 1) * $CHUNK) END,
            CASE WHEN k * $CHUNK >= $ROWS THEN 'null' ELSE format('{\"id\":%s}', k * $CHUNK) END,
            (SELECT string_agg(evrep._row_json(c)::text, ',' ORDER BY id) FROM customer c
             WHERE id > (k - 1) * $CHUNK AND id <= k * $CHUNK))
        FROM generate_series(1, ($ROWS + $CHUNK - 1) / $CHUNK) k" >/dev/null
}
write_events() {
    pg_psql "ca$1" -c "DELETE FROM evrep.progress WHERE schema_name = 'dst'" \
        -c "INSERT INTO chunk SELECT k, format('{\"format\":\"evrep.v1\",\"origin\":\"bench\",'
            '\"schema\":\"dst\",\"table\":\"customer\",\"revision\":2,\"incarnation\":{\"id\":1,'
            '\"since\":1,\"reason\":\"bench\"},\"lsn\":\"0/%s\",\"key\":[\"id\"],\"events\":[%s]}',
            to_hex(1000 + k),
            (SELECT string_agg(format('{\"seq\":%s,\"op\":\"insert\",'
                '\"commit_ts\":\"2026-12-08T01:00:00.123456+00:00\",\"row\":%s}',
                id, evrep._row_json(c)::text), ',' ORDER BY id) FROM customer c
             WHERE id > (k - 1) * $CHUNK AND id <= k * $CHUNK))
        FROM generate_series(1, ($ROWS + $CHUNK - 1) / $CHUNK) k" >/dev/null
}

# One round of build b: prints the seconds the messages took to apply.
round() {
    local b=$1 t0 t1
    pg_psql "ca$b" -c "TRUNCATE dst.customer, chunk" >/dev/null
    "write_$MODE" "$b"
    pg_psql "ca$b" -c "CHECKPOINT" >/dev/null
    t0=$(now)
    pg_psql "ca$b" -c "SELECT evrep_apply(body) FROM chunk ORDER BY n" >/dev/null
    t1=$(now)
    [[ $(pg_psql "ca$b" -c "SELECT (SELECT count(*) FROM dst.customer) = $ROWS AND NOT EXISTS (
            (SELECT * FROM customer EXCEPT SELECT * FROM dst.customer)
            UNION ALL (SELECT * FROM dst.customer EXCEPT SELECT * FROM customer))") == t ]] ||
        { evrep_err "$b: dst.customer differs from customer after round"; return 1; }
    fsub "$t1" "$t0"
}

declare -A SECS
busy=$(machine_busy 3)
detail "machine busy before the rounds: $busy% of $(nproc) CPUs; load average $(loadavg); also running: $(others)"
for ((r = 1; r <= ROUNDS; r++)); do
    order="new old"; (( r % 2 == 0 )) && order="old new"
    for b in $order; do
        s=$(round "$b")
        SECS[$b]+="$s "
        detail "round $r $b: $ROWS rows in $s s = $(fdiv "$ROWS" "$s" 0) rows/s"
    done
done
med_new=$(bench_median ${SECS[new]}); med_old=$(bench_median ${SECS[old]})
ratios=""
read -ra n_arr <<< "${SECS[new]}"; read -ra o_arr <<< "${SECS[old]}"
for ((i = 0; i < ROUNDS; i++)); do ratios+="$(fdiv "${o_arr[$i]}" "${n_arr[$i]}") "; done
{
    if [[ $MODE == copy ]]; then
        echo "# A copy's chunks applied by the consumer: text rows (evrep._json_rows) vs jsonb"
    else
        echo "# Messages of insert events applied by the consumer: read from their text vs built as jsonb"
    fi
    echo
    echo "\`bench/apply_alone.sh $MODE $ROWS $ROUNDS\` on $(date -u +%F), new = $(git rev-parse --short HEAD), old = $EVREP_BENCH_OLD_COMMIT;"
    echo "$(nproc) vCPUs; machine busy before the rounds $busy%; also running: $(others)."
    echo
    if [[ $MODE == copy ]]; then
        echo "Each round applies $ROWS rows of bench/copy.sh's customer table in $CHUNK-row chunks through"
        echo "\`evrep_apply()\` (parse, empty the chunk's key range, insert its rows), one server per build, builds alternating."
    else
        echo "Each round applies $ROWS rows of bench/copy.sh's customer table as insert events, $CHUNK per message"
        echo "(as a bulk INSERT's are sent), through \`evrep_apply()\` (parse, one INSERT per message), one server per build, builds alternating."
    fi
    echo
    echo "| build | seconds per round | median | rows/s (median) |"
    echo "|---|---|---|---|"
    echo "| new | ${SECS[new]}| $med_new | $(fdiv "$ROWS" "$med_new" 0) |"
    echo "| old | ${SECS[old]}| $med_old | $(fdiv "$ROWS" "$med_old" 0) |"
    echo
    echo "old / new time per round: $ratios(median of the medians: $(fdiv "$med_old" "$med_new"))."
    bench_details_md
} > "$OUT"
cat "$OUT"
