#!/usr/bin/env bash
# bench/worker_rss.sh -- memory of the evrep workers over a million events.
#
#   bench/worker_rss.sh [EVENTS]        (default 1000000)
#
# Two nodes through test/lib/topology.sh: A (PostgreSQL 5891) publishes table
# ev, B (5892) subscribes it, one RabbitMQ (AMQP 5791). A writer on A issues
# multi-row statements of $BATCH rows, cycling INSERT, UPDATE, DELETE over one
# block of ids at a time (each statement is BATCH events; the table stays
# small), until EVENTS events were written. Before each statement it waits
# until A's outbox holds at most 4 x BATCH rows, so that the events flow
# through the publisher and the consumer all along instead of piling up.
#
# Every $SAMPLE_S seconds it reads VmRSS, RssAnon and RssShmem of A's 'evrep
# publisher' and B's 'evrep consumer' (pids from pg_stat_activity.backend_type)
# from /proc/PID/status, with the events A has numbered and B has applied so far.
# VmRSS also counts the pages of shared memory the process has touched
# (RssShmem), which grows towards shared_buffers by itself as the worker
# reads more of the tables; RssAnon is the process's private memory, where a
# leak per loop turn shows.
#
# Output: bench/results/worker_rss.csv (one row per sample) and, on stdout
# and in bench/results/worker_rss.txt, for each worker the first sample, the
# first after the warm-up (WARMUP events, default a tenth of EVENTS), the
# last, and last / after-warm-up. Exit status 1 if B did not apply every
# event exactly once or a worker was restarted during the run.
#
# It stops by itself: every wait is bounded (EVREP_BENCH_STALL s without
# progress, default 60; EVREP_BENCH_MAXWAIT s in all, default 1800), and
# everything it started is stopped on exit, also on error or ^C.
#
# Environment: EVREP_TEST_DIR (default /tmp/evrep-bench-rss), BATCH (rows per
# statement, default 5000), SAMPLE_S (default 2), WARMUP (events),
# BENCH_RESULTS (directory of the outputs, default bench/results). The
# helpers are bench/lib.sh's, shared with bench/soak.sh.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
export EVREP_TEST_DIR=${EVREP_TEST_DIR:-/tmp/evrep-bench-rss}
# shellcheck source=../test/lib/topology.sh
source test/lib/topology.sh

EVENTS=${1:-1000000}
BATCH=${BATCH:-5000}
SAMPLE_S=${SAMPLE_S:-2}
WARMUP=${WARMUP:-$((EVENTS / 10))}
STALL=${EVREP_BENCH_STALL:-60}
MAXWAIT=${EVREP_BENCH_MAXWAIT:-1800}
MQ=rssmq A=rssa B=rssb
RATE=0   # bench/lib.sh: no pacing, as fast as the pipeline goes
RES=${BENCH_RESULTS:-$ROOT/bench/results}
CSV=$RES/worker_rss.csv
TXT=$RES/worker_rss.txt
[[ "$EVENTS" =~ ^[0-9]+$ && "$BATCH" =~ ^[0-9]+$ ]] && (( EVENTS >= BATCH && BATCH > 0 )) \
    || { echo "usage: $0 [EVENTS >= BATCH]" >&2; exit 2; }
mkdir -p "$RES" || exit 1
TBL=ev
# shellcheck source=lib.sh
source bench/lib.sh
bench_traps

so=$("$PG_CONFIG" --pkglibdir)/evrep.so
log "starting RabbitMQ and two PostgreSQL nodes (dir $EVREP_TEST_DIR)"
topo_up <<EOF || { log "the nodes did not come up"; exit 1; }
broker $MQ port=5791
node $A port=5891 publish=ev schema="CREATE TABLE ev (id bigint PRIMARY KEY, n int NOT NULL, payload text)"
node $B port=5892 subscribe=ev schema="CREATE TABLE ev (id bigint PRIMARY KEY, n int NOT NULL, payload text)"
EOF

T0=$EPOCHREALTIME
echo "$BENCH_CSV_HEADER" >"$CSV"
bench_sample "$T0" >>"$CSV"
( while sleep "$SAMPLE_S"; do bench_sample "$T0" >>"$CSV"; done ) &
BENCH_BG+=($!)

# ---- the writer -----------------------------------------------------------------
bench_stmt() {   # I -> statement I: INSERT, UPDATE, DELETE of one block of ids
    local lo=$(( ($1 / 3) * BATCH + 1 )) hi=$(( ($1 / 3 + 1) * BATCH ))
    case $(($1 % 3)) in
        0) echo "INSERT INTO ev SELECT g, 0, md5(g::text) FROM generate_series($lo, $hi) g" ;;
        1) echo "UPDATE ev SET n = n + 1, payload = md5(payload) WHERE id BETWEEN $lo AND $hi" ;;
        2) echo "DELETE FROM ev WHERE id BETWEEN $lo AND $hi" ;;
    esac
}
stmts=$(( (EVENTS + BATCH - 1) / BATCH ))
log "writing $((stmts * BATCH)) events on A: $stmts statements of $BATCH rows (INSERT, UPDATE, DELETE per block)"
start=$SECONDS
bench_write "$stmts" "$BATCH" || exit 1
total=$((stmts * BATCH))
log "writer done after $((SECONDS - start)) s; waiting for B"
bench_wait_applied "$total" || exit 1
secs=$((SECONDS - start))
kill "${BENCH_BG[@]}" 2>/dev/null; wait "${BENCH_BG[@]}" 2>/dev/null; BENCH_BG=()
bench_sample "$T0" >>"$CSV"

# ---- verdict and summary ----------------------------------------------------------------
FAILED=0
n=$(bench_numbered) a=$(bench_applied)
[[ "$n|$a" == "$total|$total" ]] || { log "FAILED: A numbered $n, B applied $a, expected $total each"; FAILED=1; }
summary=$(bench_rss_summary "$CSV" "$WARMUP" text) || { log "FAILED: a worker was restarted during the run"; FAILED=1; }
{
    echo "bench/worker_rss.sh $EVENTS on $(date -u +%FT%TZ), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null)"
    echo "installed evrep.so: md5 $(md5sum <"$so" | cut -c1-12), built $(date -u -r "$so" +%FT%TZ)"
    echo "$total events ($BATCH-row INSERT/UPDATE/DELETE statements) through A's publisher and B's consumer in $secs s ($((total / (secs > 0 ? secs : 1))) events/s); A numbered $n, B applied $a"
    echo "$summary"
    echo "samples: $CSV"
} | tee "$TXT"
exit "$FAILED"
