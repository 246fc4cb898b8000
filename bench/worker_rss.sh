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
# statement, default 5000), SAMPLE_S (default 2), WARMUP (events).
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
RES=$ROOT/bench/results
CSV=$RES/worker_rss.csv
TXT=$RES/worker_rss.txt
[[ "$EVENTS" =~ ^[0-9]+$ && "$BATCH" =~ ^[0-9]+$ ]] && (( EVENTS >= BATCH && BATCH > 0 )) \
    || { echo "usage: $0 [EVENTS >= BATCH]" >&2; exit 2; }
mkdir -p "$RES" || exit 1

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
SAMPLER=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    [[ -n "$SAMPLER" ]] && kill "$SAMPLER" 2>/dev/null && wait "$SAMPLER" 2>/dev/null
    if (( rc != 0 )); then
        evrep_tail "$(pg_logfile $A)" 20; evrep_tail "$(pg_logfile $B)" 20
    fi
    evrep_stop_registered
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

so=$("$PG_CONFIG" --pkglibdir)/evrep.so
log "starting RabbitMQ and two PostgreSQL nodes (dir $EVREP_TEST_DIR)"
topo_up <<EOF || { log "the nodes did not come up"; exit 1; }
broker $MQ port=5791
node $A port=5891 publish=ev schema="CREATE TABLE ev (id bigint PRIMARY KEY, n int NOT NULL, payload text)"
node $B port=5892 subscribe=ev schema="CREATE TABLE ev (id bigint PRIMARY KEY, n int NOT NULL, payload text)"
EOF

q() { local n=$1; shift; pg_psql "$n" -c "$*"; }
numbered() { q $A "SELECT last_seq FROM evrep.publication WHERE table_name = 'ev'"; }
applied() { q $B "SELECT coalesce(sum(applied), 0) FROM evrep.progress WHERE table_name = 'ev'"; }
depth() { q $A "SELECT count(*) FROM evrep.outbox"; }
wpid() { q "$1" "SELECT coalesce(min(pid)::text, '') FROM pg_stat_activity WHERE backend_type = '$2'"; }
# status_kb PID FIELD -- a field of /proc/PID/status in kB (empty if gone)
status_kb() { [[ -n "$1" ]] && awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null; }

sample() {   # T0 -> one CSV row
    local p c
    p=$(wpid $A 'evrep publisher') c=$(wpid $B 'evrep consumer')
    printf '%.1f,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' \
        "$(awk -v a="$EPOCHREALTIME" -v b="$1" 'BEGIN {print a - b}')" \
        "$(numbered)" "$(applied)" \
        "$p" "$(status_kb "$p" VmRSS)" "$(status_kb "$p" RssAnon)" "$(status_kb "$p" RssShmem)" \
        "$c" "$(status_kb "$c" VmRSS)" "$(status_kb "$c" RssAnon)" "$(status_kb "$c" RssShmem)"
}

T0=$EPOCHREALTIME
echo "t_s,events_numbered_on_A,events_applied_on_B,publisher_pid,publisher_vmrss_kb,publisher_rssanon_kb,publisher_rssshmem_kb,consumer_pid,consumer_vmrss_kb,consumer_rssanon_kb,consumer_rssshmem_kb" >"$CSV"
sample "$T0" >>"$CSV"
( while sleep "$SAMPLE_S"; do sample "$T0" >>"$CSV"; done ) &
SAMPLER=$!

# ---- the writer -----------------------------------------------------------------
stmts=$(( (EVENTS + BATCH - 1) / BATCH ))
log "writing $((stmts * BATCH)) events on A: $stmts statements of $BATCH rows (INSERT, UPDATE, DELETE per block)"
start=$SECONDS
for ((i = 0; i < stmts; i++)); do
    lo=$(( (i / 3) * BATCH + 1 )) hi=$(( (i / 3 + 1) * BATCH ))
    case $((i % 3)) in
        0) sql="INSERT INTO ev SELECT g, 0, md5(g::text) FROM generate_series($lo, $hi) g" ;;
        1) sql="UPDATE ev SET n = n + 1, payload = md5(payload) WHERE id BETWEEN $lo AND $hi" ;;
        2) sql="DELETE FROM ev WHERE id BETWEEN $lo AND $hi" ;;
    esac
    # keep the pipeline flowing rather than filling the outbox
    last=-1 since=$SECONDS
    while d=$(depth) && (( d > 4 * BATCH )); do
        (( d != last )) && { last=$d since=$SECONDS; }
        (( SECONDS - since >= STALL )) && { log "STUCK: A's outbox holds $d rows for ${STALL}s"; exit 1; }
        (( SECONDS - start >= MAXWAIT )) && { log "TOO SLOW: ${MAXWAIT}s"; exit 1; }
        sleep 0.2
    done
    [[ -n "${d:-}" ]] || { log "cannot read A's outbox"; exit 1; }
    q $A "$sql" >/dev/null || { log "statement $i failed: $sql"; exit 1; }
    (( i % 30 == 29 )) && log "  $(( (i + 1) * BATCH )) events written ($((SECONDS - start)) s)"
done
total=$((stmts * BATCH))
log "writer done after $((SECONDS - start)) s; waiting for B"
last=-1 since=$SECONDS
while got=$(applied) && (( got < total )); do
    (( got != last )) && { last=$got since=$SECONDS; }
    (( SECONDS - since >= STALL )) && { log "STUCK: B applied $got of $total for ${STALL}s"; exit 1; }
    (( SECONDS - start >= MAXWAIT )) && { log "TOO SLOW: B applied $got of $total after ${MAXWAIT}s"; exit 1; }
    sleep 0.5
done
secs=$((SECONDS - start))
kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; SAMPLER=
sample "$T0" >>"$CSV"

# ---- verdict and summary ----------------------------------------------------------------
FAILED=0
n=$(numbered) a=$(applied)
[[ "$n|$a" == "$total|$total" ]] || { log "FAILED: A numbered $n, B applied $a, expected $total each"; FAILED=1; }
summary=$(awk -F, -v warm="$WARMUP" '
    function mb(kb) { return kb == "" ? "?" : sprintf("%.1f", kb / 1024) }
    function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "?" : sprintf("%.2f", a / b) }
    NR == 1 { next }
    {
        # publisher: columns 2 (numbered), 4-7; consumer: 3 (applied), 8-11
        for (w = 0; w < 2; w++) {
            prog = $(2 + w); pid = $(4 + 4 * w); rss = $(5 + 4 * w); anon = $(6 + 4 * w); shm = $(7 + 4 * w)
            if (pid == "") continue
            if (!(w in f)) { f[w] = 1; fr[w] = rss; fa[w] = anon; fs[w] = shm; fp[w] = pid; ft[w] = $1 }
            if (!(w in wr) && prog >= warm) { wr[w] = rss; wa[w] = anon; ws[w] = shm; wt[w] = $1; we[w] = prog }
            lr[w] = rss; la[w] = anon; ls[w] = shm; lt[w] = $1
            if (pid != fp[w]) restarted[w] = 1
            n[w]++
        }
    }
    END {
        name[0] = "publisher (A)"; name[1] = "consumer (B)"
        print "MB of VmRSS / RssAnon / RssShmem (seconds into the run)"
        printf "%-14s %-26s %-38s %-26s %s\n", "worker", "first", "after warm-up", "last", "last / after warm-up"
        for (w = 0; w < 2; w++)
            printf "%-14s %-26s %-38s %-26s VmRSS %s, RssAnon %s%s\n", name[w],
                sprintf("%s / %s / %s (%ss)", mb(fr[w]), mb(fa[w]), mb(fs[w]), ft[w]),
                sprintf("%s / %s / %s (%ss, %d events)", mb(wr[w]), mb(wa[w]), mb(ws[w]), wt[w], we[w]),
                sprintf("%s / %s / %s (%ss)", mb(lr[w]), mb(la[w]), mb(ls[w]), lt[w]),
                ratio(lr[w], wr[w]), ratio(la[w], wa[w]),
                restarted[w] ? "  RESTARTED during the run (pid changed)" : ""
        printf "%d samples every '"$SAMPLE_S"' s", n[0]
        if (restarted[0] || restarted[1]) exit 3
    }' "$CSV") || { log "FAILED: a worker was restarted during the run"; FAILED=1; }
{
    echo "bench/worker_rss.sh $EVENTS on $(date -u +%FT%TZ), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null)"
    echo "installed evrep.so: md5 $(md5sum <"$so" | cut -c1-12), built $(date -u -r "$so" +%FT%TZ)"
    echo "$total events ($BATCH-row INSERT/UPDATE/DELETE statements) through A's publisher and B's consumer in $secs s ($((total / (secs > 0 ? secs : 1))) events/s); A numbered $n, B applied $a"
    echo "$summary"
    echo "samples: $CSV"
} | tee "$TXT"
exit "$FAILED"
