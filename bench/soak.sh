#!/usr/bin/env bash
# bench/soak.sh -- a long run through the evrep workers while the broker is
# restarted every few minutes: is their memory flat, and is nothing lost?
#
#   bench/soak.sh [EVENTS]        (default 5000000)
#
# Two nodes through test/lib/topology.sh: A (PostgreSQL 5893) publishes table
# ev, B (5894) subscribes it, one RabbitMQ (AMQP 5793). A writer on A issues
# multi-row statements of $BATCH rows, three per block of ids: INSERT the
# block, UPDATE it, DELETE the block before it (so the table holds at most two
# blocks, and its last rows are compared at the end), every statement BATCH
# events, paced at RATE events/s, until EVENTS events were written. Before each
# statement it also waits until A's outbox holds at most 4 x BATCH rows, so
# that the events flow through the publisher and the consumer all along.
#
# Meanwhile the broker is restarted (rmq_restart: orderly stop, start on the
# same data) every RESTART_S seconds, and every SAMPLE_S seconds VmRSS,
# RssAnon and RssShmem of A's 'evrep publisher' and B's 'evrep consumer'
# (pids from pg_stat_activity.backend_type; the broker restarts, PostgreSQL
# does not, so they must not change) are read from /proc/PID/status.
#
# Output in bench/results (BENCH_RESULTS):
#   soak.csv            one row per sample (bench/lib.sh's columns + the
#                       broker restarts done so far)
#   soak_restarts.csv   one row per restart: when the stop began, when the
#                       broker was up again (seconds into the run)
#   soak.png            the curves (gnuplot): RssAnon, VmRSS and RssShmem of
#                       both workers, events numbered and applied; restarts
#                       as dashed lines
#   soak.md             the summary: RssAnon growth after the warm-up (WARMUP
#                       events, default a tenth) against the goal (< 10 %),
#                       events numbered / confirmed / applied / skipped,
#                       whether B's table equals A's (md5) and B's progress
#                       reaches A's last_seq with no gaps, restarts, duration
# Exit status 1 if an event was lost or applied twice, the tables differ, a
# worker was restarted, or a wait gave up; the memory goal is reported, not
# enforced.
#
# It stops by itself: every wait is bounded (STALL s without progress, default
# 180; MAXWAIT s in all, default twice the paced duration + 15 min), and
# everything it started is stopped on exit, also on error or ^C.
#
# Environment: EVREP_TEST_DIR (default /tmp/evrep-bench-soak), BATCH (rows per
# statement, default 1000), RATE (events/s, default 4000: 5M events take
# about 21 min; 0 = as fast as the pipeline goes), RESTART_S (default 120),
# SAMPLE_S (default 5), WARMUP (events), STALL, MAXWAIT, BENCH_RESULTS.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
export EVREP_TEST_DIR=${EVREP_TEST_DIR:-/tmp/evrep-bench-soak}
# shellcheck source=../test/lib/topology.sh
source test/lib/topology.sh

EVENTS=${1:-5000000}
BATCH=${BATCH:-1000}
RATE=${RATE:-4000}
RESTART_S=${RESTART_S:-120}
SAMPLE_S=${SAMPLE_S:-5}
WARMUP=${WARMUP:-$((EVENTS / 10))}
STALL=${STALL:-180}
for v in EVENTS BATCH RATE RESTART_S WARMUP STALL; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "$0: $v must be a whole number, not '${!v}'" >&2; exit 2; }
done
(( EVENTS >= BATCH && BATCH > 0 && RESTART_S > 0 )) || { echo "usage: $0 [EVENTS >= BATCH]" >&2; exit 2; }
if (( RATE > 0 )); then MAXWAIT=${MAXWAIT:-$(( 2 * EVENTS / RATE + 900 ))}; else MAXWAIT=${MAXWAIT:-7200}; fi
MQ=soakmq A=soaka B=soakb TBL=ev
RES=${BENCH_RESULTS:-$ROOT/bench/results}
CSV=$RES/soak.csv RCSV=$RES/soak_restarts.csv PNG=$RES/soak.png MD=$RES/soak.md
mkdir -p "$RES" || exit 1
# shellcheck source=lib.sh
source bench/lib.sh
bench_traps

STATE=$EVREP_TEST_DIR/soak.$$
mkdir -p "$STATE" || exit 1

# what the servers load: taken now, as others may install another build meanwhile
so=$("$PG_CONFIG" --pkglibdir)/evrep.so
so_desc="md5 $(md5sum <"$so" | cut -c1-12), built $(date -u -r "$so" +%FT%TZ)"
commit=$(git rev-parse --short HEAD 2>/dev/null) started=$(date -u +%FT%TZ)
DDL="CREATE TABLE ev (id bigint PRIMARY KEY, n int NOT NULL, payload text)"
log "starting RabbitMQ and two PostgreSQL nodes (dir $EVREP_TEST_DIR)"
topo_up <<EOF || { log "the nodes did not come up"; exit 1; }
broker $MQ port=5793
node $A port=5893 publish=ev schema="$DDL"
node $B port=5894 subscribe=ev schema="$DDL"
EOF
pub0=$(bench_wpid $A 'evrep publisher') con0=$(bench_wpid $B 'evrep consumer')
loglines0_a=$(wc -l <"$(pg_logfile $A)") loglines0_b=$(wc -l <"$(pg_logfile $B)")

T0=$EPOCHREALTIME
elapsed() { awk -v a="$EPOCHREALTIME" -v b="$T0" 'BEGIN {printf "%.1f", a - b}'; }
echo "restart,t_stop_s,t_up_s" >"$RCSV"
restarts_done() { echo $(( $(wc -l <"$RCSV") - 1 )); }
bench_sample_extra() { printf ',%s' "$(restarts_done)"; }
echo "$BENCH_CSV_HEADER,broker_restarts" >"$CSV"
bench_sample "$T0" >>"$CSV"
( while sleep "$SAMPLE_S"; do bench_sample "$T0" >>"$CSV"; done ) &
BENCH_BG+=($!)

# the workers' PostgreSQL memory contexts (palloc) into their server logs:
# the "Grand total" lines tell a palloc leak from malloc'd memory (rabbitmq-c,
# the C library's arenas), which RssAnon counts as well
log_contexts() {
    q $A "SELECT pg_log_backend_memory_contexts(pid) FROM pg_stat_activity WHERE backend_type = 'evrep publisher'" >/dev/null
    q $B "SELECT pg_log_backend_memory_contexts(pid) FROM pg_stat_activity WHERE backend_type = 'evrep consumer'" >/dev/null
}
# grand_totals NODE WORKER: the Grand totals WORKER logged after the start, in MB
grand_totals() {
    local from=$loglines0_b
    [[ "$1" == "$A" ]] && from=$loglines0_a
    tail -n +$((from + 1)) "$(pg_logfile "$1")" \
        | sed -n "s/.* evrep $2 LOG: *Grand total: \([0-9]*\) bytes.*/\1/p" \
        | awk '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $1 / 1048576 }'
}

# ---- the broker restarter ------------------------------------------------------------
# every RESTART_S s until $STATE/stop exists; a restart under way is finished
restarter() {
    local n=0 next=$((SECONDS + RESTART_S)) t_stop
    while [[ ! -e "$STATE/stop" ]]; do
        if (( SECONDS >= next )); then
            n=$((n + 1)) t_stop=$(elapsed)
            log "broker restart $n"
            log_contexts
            if ! rmq_stop "$MQ" >>"$STATE/restarts.log" 2>&1; then
                log "restart $n: rmq_stop failed"; echo failed >"$STATE/restarter"; return 1
            fi
            if ! rmq_start "$MQ" >>"$STATE/restarts.log" 2>&1; then
                sleep 5
                rmq_start "$MQ" >>"$STATE/restarts.log" 2>&1 \
                    || { log "restart $n: rmq_start failed twice"; echo failed >"$STATE/restarter"; return 1; }
            fi
            echo "$n,$t_stop,$(elapsed)" >>"$RCSV"
            next=$((next + RESTART_S))   # from start to start
        fi
        sleep 1
    done
    echo done >"$STATE/restarter"
}
restarter &
RESTARTER=$!
BENCH_BG+=("$RESTARTER")
restarter_ok() { [[ "$(cat "$STATE/restarter" 2>/dev/null)" != failed ]]; }

# ---- the writer -----------------------------------------------------------------
bench_stmt() {   # I -> statement I: block J = I/3: INSERT J, UPDATE J, DELETE J-1
    local j=$(($1 / 3)) lo hi
    lo=$(( j * BATCH + 1 )) hi=$(( (j + 1) * BATCH ))
    case $(($1 % 3)) in
        0) echo "INSERT INTO ev SELECT g, 0, md5(g::text) FROM generate_series($lo, $hi) g" ;;
        1) echo "UPDATE ev SET n = n + 1, payload = md5(payload) WHERE id BETWEEN $lo AND $hi" ;;
        2) if (( j == 0 )); then
               echo "UPDATE ev SET n = n + 1, payload = md5(payload) WHERE id BETWEEN $lo AND $hi"
           else
               echo "DELETE FROM ev WHERE id BETWEEN $(( lo - BATCH )) AND $(( hi - BATCH ))"
           fi ;;
    esac
}
stmts=$(( (EVENTS + BATCH - 1) / BATCH ))
total=$((stmts * BATCH))
log "writing $total events on A: $stmts statements of $BATCH rows at ${RATE:-0} events/s (0: unpaced); broker restart every ${RESTART_S}s"
start=$SECONDS
FAILED=0
bench_write "$stmts" "$BATCH" || FAILED=1
write_s=$((SECONDS - start))
if (( !FAILED )); then
    log "writer done after $write_s s; waiting for B"
    bench_wait_applied "$total" || FAILED=1
fi
secs=$((SECONDS - start))
touch "$STATE/stop"
log "stopping the restarter (it finishes a restart under way)"
wait "$RESTARTER"
restarter_ok || FAILED=1
# a restart may have cut off the last confirms: wait until both nodes are
# connected again and A's outbox is empty (what is sent again is skipped on B)
settled() {
    [[ $(q $A "SELECT count(*) FROM evrep.worker_state() WHERE connected") == 2 \
       && $(q $B "SELECT count(*) FROM evrep.worker_state() WHERE connected") == 2 && $(bench_depth) == 0 ]]
}
for ((i = 0; i < 240; i++)); do settled && break; sleep 0.5; done
settled || { log "the workers did not reconnect, or A's outbox did not drain, within 120 s"; FAILED=1; }
kill "${BENCH_BG[0]}" 2>/dev/null; wait "${BENCH_BG[0]}" 2>/dev/null; BENCH_BG=()
sleep 2   # the consumer's last progress commit and ack
bench_sample "$T0" >>"$CSV"
log_contexts
sleep 1

# ---- verdict -------------------------------------------------------------------------
n=$(bench_numbered) a=$(bench_applied)
prog=$(q $B "SELECT last_seq, gaps, applied, skipped FROM evrep.progress WHERE origin = '$A' AND table_name = 'ev'")
IFS='|' read -r b_last b_gaps b_applied b_skipped <<<"$prog"
depth=$(bench_depth)
dead=$(q $B "SELECT count(*) FROM evrep.dead_letter")
md5sql="SELECT count(*) || ' rows, md5 ' || md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM ev t"
tab_a=$(q $A "$md5sql") tab_b=$(q $B "$md5sql")
sent=$(q $A "SELECT events FROM evrep.worker_state() WHERE worker = 'publisher'")
got=$(q $B "SELECT events FROM evrep.worker_state() WHERE worker = 'consumer'")
pub1=$(bench_wpid $A 'evrep publisher') con1=$(bench_wpid $B 'evrep consumer')
reconn_a=$(tail -n +$((loglines0_a + 1)) "$(pg_logfile $A)" | grep -c 'evrep publisher connected to broker')
reconn_b=$(tail -n +$((loglines0_b + 1)) "$(pg_logfile $B)" | grep -c 'evrep consumer connected to broker')
nrest=$(restarts_done)
lost=$(( total - ${b_applied:-0} ))

check() {   # CONDITION-STATUS TEXT
    if [[ "$1" == 0 ]]; then echo "- ok: $2"; else echo "- **FAILED**: $2"; FAILED=1; fi
}
[[ "$n" == "$total" ]]; c1=$?
[[ "$b_last" == "$n" && "$b_gaps" == "{}" ]]; c2=$?
[[ "$b_applied" == "$n" ]]; c3=$?
[[ "$tab_a" == "$tab_b" ]]; c4=$?
[[ "$depth" == 0 && "$dead" == 0 ]]; c5=$?
[[ "$pub1" == "$pub0" && "$con1" == "$con0" ]]; c6=$?
(( nrest >= secs / RESTART_S - 1 )); c7=$?
checks=$(
    check $c1 "A numbered $n events of $total written"
    check $c2 "B's evrep.progress for ($A, ev): last_seq $b_last, gaps $b_gaps (A's publication last_seq $n)"
    check $c3 "B applied $b_applied events = A's last_seq $n: none lost, none applied twice ($b_skipped duplicates skipped)"
    check $c4 "B's table equals A's: A $tab_a; B $tab_b"
    check $c5 "A's outbox empty ($depth rows), no dead letter on B ($dead)"
    check $c6 "worker pids unchanged: publisher $pub0 -> $pub1, consumer $con0 -> $con1"
    check $c7 "$nrest broker restarts done (one every ${RESTART_S} s over $secs s)"
)
grep -q FAILED <<<"$checks" && FAILED=1

# ---- memory ----------------------------------------------------------------------------
rss_md=$(bench_rss_summary "$CSV" "$WARMUP" md) || FAILED=1
verdict=$(bench_rss_summary "$CSV" "$WARMUP" growth | awk '
    { g = ($2 > 0) ? 100 * ($3 - $2) / $2 : 0; m = ($2 > 0) ? 100 * ($4 - $2) / $2 : 0
      printf "- %s: RssAnon %.1f MB after warm-up, %.1f MB at the end (%+.1f %%), at most %.1f MB (%+.1f %%): goal < 10 %% %s\n",
             $1, $2 / 1024, $3 / 1024, g, $4 / 1024, m, (g < 10 ? "met" : "NOT met") }')
warm_t=$(awk -F, -v w="$WARMUP" 'NR > 1 && $2 >= w && $3 >= w { print $1; exit }' "$CSV")
# per stretch between restarts (column 12: restarts done): RssAnon at its last sample and at most
segments=$(awk -F, 'NR == 1 { next }
    { k = $12 + 0
      if (!(k in t0)) { t0[k] = $1; e0[k] = $3; order[nk++] = k }
      t1[k] = $1; e1[k] = $3; pl[k] = $6; cl[k] = $10
      if ($6 + 0 > pm[k]) pm[k] = $6 + 0
      if ($10 + 0 > cm[k]) cm[k] = $10 + 0 }
    END {
      print "| broker restarts done | seconds into the run | events applied on B | publisher RssAnon last / max (MB) | consumer RssAnon last / max (MB) |"
      print "|---|---|---|---|---|"
      for (i = 0; i < nk; i++) { k = order[i]
          printf "| %d | %s-%s | %d-%d | %.2f / %.2f | %.2f / %.2f |\n", k, t0[k], t1[k], e0[k], e1[k],
              pl[k] / 1024, pm[k] / 1024, cl[k] / 1024, cm[k] / 1024 } }' "$CSV")
palloc_pub=$(grand_totals $A publisher) palloc_con=$(grand_totals $B consumer)

# ---- plot -------------------------------------------------------------------------------
plot_ok=0 C1=dark-violet C2=sea-green
if command -v gnuplot >/dev/null; then
    {
        echo "set terminal pngcairo size 1200,1000 font ',10'"
        echo "set output '$PNG'"
        echo "set datafile separator ','"
        echo "set key outside right top"
        echo "set grid"
        echo "set lmargin at screen 0.07"
        echo "set rmargin at screen 0.80"
        echo "set multiplot layout 3,1 title 'bench/soak.sh: $total events; broker restarted every ${RESTART_S} s, $nrest times (grey: broker down); green: end of warm-up'"
        echo "set xlabel 'minutes'"
        echo "set autoscale xfix"
        tail -n +2 "$RCSV" | while IFS=, read -r _ ts tu; do
            echo "set object rect from $ts/60.0, graph 0 to $tu/60.0, graph 1 fc rgb 'gray80' fs solid 0.6 noborder behind"
        done
        [[ -n "$warm_t" ]] && echo "set arrow from $warm_t/60.0, graph 0 to $warm_t/60.0, graph 1 nohead lw 2 lc rgb 'dark-green'"
        echo "set ylabel 'RssAnon (MB)'"
        echo "set yrange [0:*]"
        # the goal: 10 % above the RssAnon after warm-up
        bench_rss_summary "$CSV" "$WARMUP" growth | awk -v c1="$C1" -v c2="$C2" '$2 > 0 {
            printf "set arrow from graph 0, first %f to graph 1, first %f nohead dt 3 lc rgb \"%s\"\n", $2 * 1.1 / 1024, $2 * 1.1 / 1024, NR == 1 ? c1 : c2 }'
        echo "plot '$CSV' every ::1 using (\$1/60):(\$6/1024) with lines lw 2 lc rgb '$C1' title 'publisher (A) RssAnon', \\"
        echo "     '' every ::1 using (\$1/60):(\$10/1024) with lines lw 2 lc rgb '$C2' title 'consumer (B) RssAnon', \\"
        echo "     NaN with lines dt 3 lc rgb 'black' title 'goal: +10 % of warm-up'"
        echo "unset arrow"
        [[ -n "$warm_t" ]] && echo "set arrow from $warm_t/60.0, graph 0 to $warm_t/60.0, graph 1 nohead lw 2 lc rgb 'dark-green'"
        echo "set ylabel 'MB'"
        echo "plot '$CSV' every ::1 using (\$1/60):(\$5/1024) with lines lw 2 lc rgb '$C1' title 'publisher VmRSS', \\"
        echo "     '' every ::1 using (\$1/60):(\$7/1024) with lines dt 2 lc rgb '$C1' title 'publisher RssShmem', \\"
        echo "     '' every ::1 using (\$1/60):(\$9/1024) with lines lw 2 lc rgb '$C2' title 'consumer VmRSS', \\"
        echo "     '' every ::1 using (\$1/60):(\$11/1024) with lines dt 2 lc rgb '$C2' title 'consumer RssShmem'"
        echo "set ylabel 'million events'"
        echo "plot '$CSV' every ::1 using (\$1/60):(\$2/1e6) with lines lw 2 lc rgb '$C1' title 'numbered on A', \\"
        echo "     '' every ::1 using (\$1/60):(\$3/1e6) with lines dt 2 lw 2 lc rgb '$C2' title 'applied on B'"
        echo "unset multiplot"
    } >"$STATE/soak.gp"
    gnuplot "$STATE/soak.gp" 2>"$STATE/gnuplot.err" && plot_ok=1 || { log "gnuplot failed:"; cat "$STATE/gnuplot.err" >&2; }
else
    log "gnuplot not found (scripts/install-deps.sh installs gnuplot-nox): no $PNG"
fi

# ---- summary ----------------------------------------------------------------------------
downs=$(awk -F, 'NR > 1 { d = $3 - $2; s += d; if (d > m) m = d; n++ } END { if (n) printf "%.1f s on average, %.1f s at most (stop, start, until the broker answers)", s / n, m }' "$RCSV")
{
    echo "# Soak: $total events through the evrep workers while the broker restarts"
    echo
    echo "\`bench/soak.sh $EVENTS\` (BATCH=$BATCH RATE=$RATE RESTART_S=$RESTART_S SAMPLE_S=$SAMPLE_S WARMUP=$WARMUP)"
    echo "started $started, $(nproc) CPUs, commit $commit; evrep.so loaded: $so_desc."
    echo
    echo "A publishes \`ev\`, B subscribes it, one RabbitMQ; $stmts statements of $BATCH rows on A"
    echo "(per block: INSERT, UPDATE, DELETE of the previous block), paced at $RATE events/s"
    echo "(0: unpaced) and kept flowing (A's outbox at most $((4 * BATCH)) rows before each statement)."
    echo "Broker restarts: $nrest, one every $RESTART_S s from start to start (down $downs)."
    echo "Writing took $write_s s; B had applied everything $secs s after the first statement"
    echo "($((total / (secs > 0 ? secs : 1))) events/s overall)."
    echo
    echo "## Nothing lost"
    echo
    echo "$checks"
    echo "- evrep.worker_state().events: A's publisher $sent events confirmed by the broker, B's consumer"
    echo "  $got applied. The consumer counts a batch once its ack went through: a batch committed"
    echo "  whose ack a restart cut off is not counted, and comes again as duplicates, skipped."
    echo "- After the start the publisher connected $reconn_a times and the consumer $reconn_b times"
    echo "  (each once per restart, if every reconnect held)."
    echo "- lost events: $lost"
    echo
    echo "## Worker memory (/proc/PID/status)"
    echo
    echo "$rss_md"
    echo
    echo "Warm-up: the first sample after $WARMUP events numbered and applied (${warm_t:-?} s)."
    echo "RssAnon is the worker's private memory, where a leak per loop turn or per reconnect would"
    echo "show; VmRSS also counts the shared buffers the worker has touched (RssShmem), which grow"
    echo "towards the tables' size by themselves."
    echo
    echo "$verdict"
    echo
    echo "Between restarts (does a reconnect leak?):"
    echo
    echo "$segments"
    echo
    echo "PostgreSQL memory contexts of the workers (pg_log_backend_memory_contexts, Grand total,"
    echo "MB), before each restart and at the end; the rest of RssAnon is malloc'd outside them"
    echo "(rabbitmq-c's buffers, the C library's arenas):"
    echo
    echo "- publisher: ${palloc_pub:-?}"
    echo "- consumer: ${palloc_con:-?}"
    echo
    if (( plot_ok )); then echo "![soak curves](soak.png)"; echo; fi
    echo "Samples: [soak.csv](soak.csv); restarts: [soak_restarts.csv](soak_restarts.csv)."
    (( FAILED )) && { echo; echo "**The run FAILED** (see the checks above)."; }
} >"$MD"
cat "$MD"
exit "$FAILED"
