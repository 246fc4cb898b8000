#!/usr/bin/env bash
# bench/twopc_report.sh [DIR] -- REPORT.md and PNG plots (gnuplot) from the
# CSV files that bench/twopc_vs_evrep.sh wrote into DIR (default
# bench/results/twopc).  Every figure in the report is computed from those
# files; run it again after editing this script without re-running the bench.

set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-$ROOT/bench/results/twopc}
RES=$DIR/results.csv FAULT=$DIR/fault.csv TL=$DIR/fault_timeline.csv WIN=$DIR/fault_window.csv
for f in "$RES" "$FAULT" "$TL" "$WIN" "$DIR/machine.txt"; do [[ -s $f ]] || { echo "missing $f" >&2; exit 1; }; done
command -v gnuplot >/dev/null || { echo "gnuplot is not installed (apt-get install gnuplot-nox)" >&2; exit 1; }
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT

# value MODE CALL N C FIELD  (fields by header name): the median over the
# repetitions of that run (the middle one; the lower middle for an even count)
value() {
    awk -F, -v m="$1" -v call="$2" -v n="$3" -v c="$4" -v f="$5" '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        $1 == m && $2 == call && $3 == n && $4 == c && $col[f] != "NA" { print $col[f] }' "$RES" \
    | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}
nreps() { awk -F, -v n="$1" 'NR > 1 && $3 == n && $NF > r { r = $NF } END { print r + 0 }' "$RES"; }
fault() {   # fault MODE FIELD
    awk -F, -v m="$1" -v f="$2" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next } $1 == m { print $col[f]; exit }' "$FAULT"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "NA" || b == "NA" || b + 0 == 0) print "NA"; else printf "%.2f", a / b }'; }
fmt() { awk -v v="$1" -v d="${2:-2}" 'BEGIN { if (v == "" || v == "NA") print "NA"; else printf "%.*f", d, v }'; }

SIZES=$(awk -F, 'NR > 1 && $2 == "createCustomer" && !s[$3]++ { print $3 }' "$RES" | sort -n | tr '\n' ' ')
CONCS=$(awk -F, 'NR > 1 && !s[$4]++ { print $4 }' "$RES" | sort -n | tr '\n' ' ')
CMAX=$(tr ' ' '\n' <<<"$CONCS" | grep . | tail -1)
NMAX=$(tr ' ' '\n' <<<"$SIZES" | grep . | tail -1)
CALLS=$(awk -F, 'NR > 1 && !s[$2]++ { print $2 }' "$RES" | tr '\n' ' ')
sizes_of() { awk -F, -v call="$1" 'NR > 1 && $2 == call && !s[$3]++ { print $3 }' "$RES" | sort -n | tr '\n' ' '; }

# ---- plot data: one row per (N, C): label evrep 2pc ----------------------------------
for call in $CALLS; do
    for f in p50_ms p99_ms req_per_s peer_complete_s; do
        : >"$TMP/$call.$f.dat"
        for n in $(sizes_of "$call"); do
            for c in $CONCS; do
                e=$(value evrep "$call" "$n" "$c" "$f"); t=$(value 2pc "$call" "$n" "$c" "$f")
                l=$(value local "$call" "$n" "$c" "$f")
                [[ -z $e && -z $t ]] && continue
                [[ $e == NA ]] && e=; [[ $t == NA ]] && t=; [[ $l == NA ]] && l=
                echo "\"N=$n C=$c\" ${e:-NaN} ${t:-NaN} ${l:-NaN}" >>"$TMP/$call.$f.dat"
            done
        done
    done
done

common='set terminal pngcairo size 1400,900 font "DejaVu Sans,12"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key outside top center horizontal
set xtics rotate by -25
set yrange [0:*]'

# latency: rows = calls, columns = p50 / p99; the local reference as a
# third bar where it was measured
ncalls=$(wc -w <<<"$CALLS")
bars() {   # bars FILE: the plot clause
    local extra=""
    awk '$NF != "NaN" { f = 1 } END { exit !f }' "$1" \
        && extra=", '' using 4 title 'local only' lc rgb '#9e9e9e'"
    echo "'$1' using 2:xtic(1) title 'evrep' lc rgb '#2a9d8f', '' using 3 title '2PC' lc rgb '#e76f51'$extra"
}
{
    echo "$common"
    echo "set terminal pngcairo size 1400,$((430 * ncalls + 60)) font 'DejaVu Sans,12'"
    echo "set output '$DIR/latency.png'"
    echo "set multiplot layout $ncalls,2 title 'Client-observed latency, evrep (own database only) vs two-phase commit (both databases)' font ',14'"
    for call in $CALLS; do
        for f in p50 p99; do
            echo "set title '$call $f (ms)'"
            echo "set ylabel 'ms'"
            echo "plot $(bars "$TMP/$call.${f}_ms.dat")"
        done
    done
    echo "unset multiplot"
} >"$TMP/latency.gp"
gnuplot "$TMP/latency.gp"

{
    echo "$common"
    echo "set terminal pngcairo size 1400,$((430 * ncalls + 60)) font 'DejaVu Sans,12'"
    echo "set output '$DIR/throughput.png'"
    echo "set multiplot layout $ncalls,2 title 'Throughput, and time until the peer database holds every row' font ',14'"
    for call in $CALLS; do
        echo "set title '$call: requests per second'"
        echo "set ylabel 'req/s'"
        echo "plot $(bars "$TMP/$call.req_per_s.dat")"
        echo "set title '$call: peer complete, s after the last call returned'"
        echo "set ylabel 's'"
        echo "plot '$TMP/$call.peer_complete_s.dat' using 2:xtic(1) title 'evrep' lc rgb '#2a9d8f', '' using 3 title '2PC' lc rgb '#e76f51'"
    done
    echo "unset multiplot"
} >"$TMP/throughput.gp"
gnuplot "$TMP/throughput.gp"

# fault timeline: one panel per mode
for m in evrep 2pc; do
    # requests per second at the start of their second (steps); rows as
    # sampled at the end of it
    awk -F, -v m=$m 'NR > 1 && $1 == m { print $2, $3, $4, ($5 == "NA" ? "NaN" : $5), ($6 == "NA" ? "NaN" : $6), ($7 == "NA" ? "NaN" : $7) + ($8 == "NA" ? 0 : $8), $2 + 1 }' "$TL" >"$TMP/tl.$m.dat"
    # the last second again, so that steps draws it
    tail -1 "$TMP/tl.$m.dat" | awk '{ $1 += 1; print }' >>"$TMP/tl.$m.dat"
done
rate=$(awk -F, 'NR > 1 { if ($3 + $4 > m) m = $3 + $4 } END { print m }' "$TL")
tmax=$(awk -F, 'NR > 1 { if ($2 + 1 > m) m = $2 + 1 } END { print m }' "$TL")

# fault_panel MODE TITLE ROWS_A ROWS_B [PLOT...] -- one panel of fault.gp:
# MODE's outage window (light: B stopping / starting, dark: B certainly
# down), writes per second, the rows on each side (titled ROWS_A, ROWS_B),
# then the further plot elements PLOT
fault_panel() {
    local m=$1 s0 down s1 back
    read -r s0 down s1 back < <(awk -F, -v m="$m" '$1 == m { printf "%.2f %.2f %.2f %.2f\n", $2 / 1000, $3 / 1000, $4 / 1000, $5 / 1000 }' "$WIN")
    echo "set title '$2'"
    echo "set object 1 rect from $s0, graph 0 to $back, graph 1 fc rgb '#bbbbbb' fs transparent solid 0.2 noborder"
    echo "set object 2 rect from $down, graph 0 to $s1, graph 1 fc rgb '#777777' fs transparent solid 0.3 noborder"
    local plot=("'$TMP/tl.$m.dat' using 1:2 with steps lw 2 lc rgb '#2a9d8f' title 'succeeded/s'"
        "'' using 1:3 with steps lw 2 lc rgb '#d62828' title 'failed/s'"
        "'' using 7:4 axes x1y2 with lines lw 2 dt 2 lc rgb '#264653' title '$3'"
        "'' using 7:5 axes x1y2 with lines lw 2 lc rgb '#f4a261' title '$4'"
        "${@:5}")
    printf 'plot %s' "${plot[0]}"
    printf ',      %s' "${plot[@]:1}"
    echo
}
{
    cat <<EOF
set terminal pngcairo size 1400,1000 font "DejaVu Sans,12"
set output '$DIR/fault.png'
set multiplot layout 2,1 title "Peer database (B) stopped under createCustomer load: writes per second and rows on each side" font ",14"
set grid
set xlabel 's since the first request'
set ylabel 'writes per second'
set y2label 'rows of this run'
set ytics nomirror
set y2tics
set yrange [0:$((rate * 13 / 10 + 1))]
set y2range [0:*]
set xrange [0:$tmax]
set lmargin at screen 0.07
set rmargin at screen 0.74
set key outside right top vertical
set label 1 'grey: B down (light: pg_stop / pg_start running)' at screen 0.99, screen 0.02 right font ',10' noenhanced
EOF
    fault_panel evrep 'evrep: CustomerService writes its own database A; B gets the rows through RabbitMQ' \
        'rows on A (origin)' 'rows on B (peer)'
    fault_panel 2pc '2PC: every write goes to A and B in one distributed transaction' \
        'rows on A' 'rows on B' "'' using 7:6 with impulses lw 4 lc rgb '#6a4c93' title 'prepared txns (both sides)'"
    echo "unset multiplot"
} >"$TMP/fault.gp"
gnuplot "$TMP/fault.gp"

# ---- REPORT.md --------------------------------------------------------------------------
m() { sed -n "s/^$1: //p" "$DIR/machine.txt"; }

# headline at the highest concurrency and the largest N
hl_call=createCustomer
e50=$(value evrep $hl_call "$NMAX" "$CMAX" p50_ms); t50=$(value 2pc $hl_call "$NMAX" "$CMAX" p50_ms)
e99=$(value evrep $hl_call "$NMAX" "$CMAX" p99_ms); t99=$(value 2pc $hl_call "$NMAX" "$CMAX" p99_ms)
ers=$(value evrep $hl_call "$NMAX" "$CMAX" req_per_s); trs=$(value 2pc $hl_call "$NMAX" "$CMAX" req_per_s)
evis=$(value evrep $hl_call "$NMAX" "$CMAX" peer_complete_s); tvis=$(value 2pc $hl_call "$NMAX" "$CMAX" peer_complete_s)
l50=$(value local $hl_call "$NMAX" "$CMAX" p50_ms); l99=$(value local $hl_call "$NMAX" "$CMAX" p99_ms)
lrs=$(value local $hl_call "$NMAX" "$CMAX" req_per_s)
e_out=$(fault evrep outage_success_pct); t_out=$(fault 2pc outage_success_pct)
conv=$(fault evrep converge_s); behind=$(fault evrep backlog_rows)
doubt=$(fault 2pc in_doubt_at_return); settled=$(fault 2pc in_doubt_settled_s)
lost_e=$(fault evrep lost); lost_t=$(fault 2pc lost); extra_e=$(fault evrep extra); extra_t=$(fault 2pc extra)

# goal: evrep p50 <= 0.5 x 2PC p50 at C=CMAX, for every N
goal_lat=""
for n in $SIZES; do
    r=$(ratio "$(value evrep createCustomer "$n" "$CMAX" p50_ms)" "$(value 2pc createCustomer "$n" "$CMAX" p50_ms)")
    r99=$(ratio "$(value evrep createCustomer "$n" "$CMAX" p99_ms)" "$(value 2pc createCustomer "$n" "$CMAX" p99_ms)")
    met=$(awk -v r="$r" 'BEGIN { print (r != "NA" && r <= 0.5) ? "met" : "not met" }')
    goal_lat+="| evrep createCustomer p50 ≤ 0.5 × 2PC at C=$CMAX, N=$n | $r× (p99: $r99×) | $met |"$'\n'
done
goal_avail=$(awk -v v="$e_out" 'BEGIN { print (v + 0 == 100) ? "met" : "not met" }')


{
cat <<EOF
# Event-driven replication (evrep) vs two-phase commit

Issue 5: the same two services write the same rows on the same servers,
once with evrep (each service writes its own database, evrep replicates the
row through RabbitMQ) and once with two-phase commit (each service writes its
own and the peer's database in one distributed transaction). All figures
below come from the CSV files next to this report and were produced by one
run of \`bench/twopc_vs_evrep.sh\` (then \`bench/twopc_report.sh\` made this
file and the plots). They come from one run on a shared, noisy machine.
Take the ratios as the result, not the absolute numbers. Each (mode, N, C)
was run $(for n in $SIZES; do printf '%s× for N=%s, ' "$(nreps "$n")" "$n"; done | sed 's/, $//').
Tables and plots show the median of those repetitions; "All runs" lists
every one.

## Machine

| | |
|---|---|
| date, commit | $(m date), $(m commit) |
| CPUs | $(m nproc) × $(m cpu) |
| memory | $(m memory) |
| OS, kernel | $(m os), $(m kernel) |
| PostgreSQL | $(m postgresql) |
| RabbitMQ, Erlang, librabbitmq | $(m rabbitmq), $(m erlang), $(m librabbitmq) |
| Thrift c_glib | $(m 'thrift c_glib') |
| durability | fsync $(m fsync) |
| load average before / after | $(m 'load average before the run') / $(m 'load average after the run') |
| bench wall time | $(m 'bench wall time') |

Other jobs were running on the machine during the run; the load average
above shows how busy it was. Everything (RabbitMQ, both PostgreSQL servers,
both services, the client) shares these $(m nproc) CPUs and one disk.

## Setup

* Servers: one RabbitMQ node, and two PostgreSQL servers, A (port 5881) and
  B (port 5882), both with evrep preloaded. fsync and synchronous_commit are
  on. The same servers serve both modes in the same run.
* **evrep mode**: databases \`customer_db\` on A and \`order_db\` on B. A
  publishes \`customer\` and subscribes to \`orders\`. B publishes \`orders\`
  and subscribes to \`customer\`. The product services
  (\`customer_service\`, \`order_service\`) run: createCustomer inserts
  into A only, and createOrder inserts into B only.
  A call returns when the local transaction, including evrep's outbox row,
  has committed.
* **2PC mode**: databases \`customer_2pc\` on A and \`order_2pc\` on B, with
  the same tables and **no evrep in them**: nothing is published or
  subscribed. The 2PC baseline binaries \`customer_service_2pc\` and
  \`order_service_2pc\` run (each with the other's database as
  \`--peer-db\`) and act as coordinators.
  Each request runs BEGIN and INSERT on both databases, then \`PREPARE
  TRANSACTION\` on both, then commits the decision row to the coordinator's
  own database, then \`COMMIT PREPARED\` on both. The two databases work in
  parallel at every step. A call returns when both sides are committed. Any
  failure before the decision rolls both sides back. Recovery runs every
  1 s (\`--recovery-interval-ms 1000\`) and at start, and settles in-doubt
  transactions from the decision log (see services/README.md).
* **local only** (reference, createCustomer only): the product
  \`customer_service\` on \`customer_2pc\`. That is one plain INSERT with no
  replication at all, the floor that both modes add to.
* Client: \`common_client load\`. Each of C threads has its own Thrift
  connection and sends its requests one after another. A run first creates
  N customers through CustomerService, then min(N, ORDERS_MAX) orders through
  OrderService. "peer complete" is the time from the moment the last call
  returned until the peer database held every row of the run (polled every
  10 ms with \`count(*)\`). For 2PC the rows are already there.
* Order: for each (N, C, repetition) the three modes run back to back, and
  which one goes first rotates, so slow drift of the machine does not favour one mode.
  Every run checks that all N rows are in both databases. Compare modes
  within one (N, C) group. Between groups the machine's other load changed:
  the local-only p50 at C=1 was $(for n in $SIZES; do v=$(value local createCustomer "$n" 1 p50_ms); [[ -n $v ]] && printf '%s ms (N=%s), ' "$(fmt "$v")" "$n"; done | sed 's/, $//') (medians).
* Warm-up (\`--warmup\`): before the clock starts, each client thread makes
  one untimed call of the same kind, with an id outside the measured range.
  The services open a thread's PostgreSQL connections at its first call:
  one connection in evrep mode, two in 2PC mode. On this busy machine that
  took up to about 0.6 s, and it would otherwise be the p99 of every small
  run. That cost is therefore not in the figures, and 2PC pays it twice
  per new client connection.

## Headline

createCustomer, N=$NMAX, concurrency $CMAX:

| metric | evrep | 2PC | 2PC / evrep | local only (reference) |
|---|---|---|---|---|
| latency p50 (ms) | $(fmt "$e50") | $(fmt "$t50") | $(ratio "$t50" "$e50")× | $(fmt "$l50") |
| latency p99 (ms) | $(fmt "$e99") | $(fmt "$t99") | $(ratio "$t99" "$e99")× | $(fmt "$l99") |
| throughput (req/s) | $(fmt "$ers" 0) | $(fmt "$trs" 0) | $(ratio "$trs" "$ers")× | $(fmt "$lrs" 0) |
| peer database complete after the last call (s) | $(fmt "$evis" 3) | $(fmt "$tvis" 3) (the poll's own time: the rows are there when the call returns) | | |
| writes that succeeded while the peer was down | $(fmt "$e_out" 1) % | $(fmt "$t_out" 1) % | | |
| after the peer returned | caught up on $behind rows $(fmt "$conv" 3) s after pg_start began | $doubt in-doubt prepared transactions$( [[ $doubt != 0 ]] && echo ", settled after $(fmt "$settled" 3) s") | |
| acknowledged rows lost / rows nobody acknowledged | $lost_e / $extra_e | $lost_t / $extra_t | |

### Goals

| goal | measured | |
|---|---|---|
${goal_lat}| 100 % of writes succeed with the peer down (evrep) | $(fmt "$e_out" 1) % (2PC: $(fmt "$t_out" 1) %) | $goal_avail |
| convergence time after the peer returns (evrep), measured | $(fmt "$conv" 3) s from the start of pg_start ($behind rows) | measured |

### Who wins what, by how much

EOF
# ratio table: one row per (call, C, N)
echo "Ratios of the medians (same N, C and call):"
echo
echo "| call | C | N | p50: 2PC / evrep | p99: 2PC / evrep | req/s: evrep / 2PC | p50: evrep / local only | p50: 2PC / local only |"
echo "|---|---|---|---|---|---|---|---|"
for call in $CALLS; do
    for c in $CONCS; do
        for n in $(sizes_of "$call"); do
            [[ -z $(value evrep "$call" "$n" "$c" p50_ms) ]] && continue
            echo "| $call | $c | $n | $(ratio "$(value 2pc "$call" "$n" "$c" p50_ms)" "$(value evrep "$call" "$n" "$c" p50_ms)")× | $(ratio "$(value 2pc "$call" "$n" "$c" p99_ms)" "$(value evrep "$call" "$n" "$c" p99_ms)")× | $(ratio "$(value evrep "$call" "$n" "$c" req_per_s)" "$(value 2pc "$call" "$n" "$c" req_per_s)")× | $(ratio "$(value evrep "$call" "$n" "$c" p50_ms)" "$(value local "$call" "$n" "$c" p50_ms)" | sed 's/^NA$/–/;s/[0-9]$/&×/') | $(ratio "$(value 2pc "$call" "$n" "$c" p50_ms)" "$(value local "$call" "$n" "$c" p50_ms)" | sed 's/^NA$/–/;s/[0-9]$/&×/') |"
        done
    done
done
echo
# ranges of the ratios, per concurrency, over calls and N
range() {   # range C FIELD NUM_MODE DEN_MODE
    local c=$1 f=$2 a=$3 b=$4 call n r
    for call in $CALLS; do for n in $(sizes_of "$call"); do
        r=$(ratio "$(value "$a" "$call" "$n" "$c" "$f")" "$(value "$b" "$call" "$n" "$c" "$f")"); [[ $r != NA ]] && echo "$r"
    done; done | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%s–%s×", lo, hi; else printf "NA" }'
}
range_local() {   # range_local MODE: p50 over local-only, createCustomer, all N and C
    local c n r
    for c in $CONCS; do for n in $SIZES; do
        r=$(ratio "$(value "$1" createCustomer "$n" "$c" p50_ms)" "$(value local createCustomer "$n" "$c" p50_ms)"); [[ $r != NA ]] && echo "$r"
    done; done | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%s–%s×", lo, hi; else printf "not measured" }'
}
for c in $CONCS; do
    echo "* Latency and throughput at C=$c: 2PC's p50 is $(range "$c" p50_ms 2pc evrep) evrep's,"
    echo "  and its p99 $(range "$c" p99_ms 2pc evrep). evrep serves $(range "$c" req_per_s evrep 2pc) 2PC's requests per second."
    echo "  These ranges cover both calls and every N."
done
vis_range=$(awk -F, 'NR > 1 && $1 == "evrep" && $12 != "NA" { if (min == "" || $12 < min) min = $12; if ($12 > max) max = $12 } END { printf "%.3f–%.3f", min, max }' "$RES")
vis_2pc=$(awk -F, 'NR > 1 && $1 == "2pc" && $12 != "NA" { if (min == "" || $12 < min) min = $12; if ($12 > max) max = $12 } END { printf "%.3f–%.3f", min, max }' "$RES")
cat <<EOF
* Freshness: 2PC wins. When a 2PC call returns, the peer already has the row.
  With evrep the peer held every row of a run $vis_range s after the run's
  last call returned (all runs, both calls). The same poll takes
  $vis_2pc s for 2PC, where the rows are already there, which is its own
  cost (one query, polled every 10 ms).
* Availability: evrep wins. With the peer database down, $(fmt "$e_out" 1) %
  of evrep's writes succeeded against $(fmt "$t_out" 1) % of 2PC's. evrep's
  peer had caught up on the $behind rows it missed $(fmt "$conv" 3) s after
  it began to start. 2PC had $doubt
  in-doubt prepared transactions when the peer came back$( [[ $doubt != 0 ]] && echo ", and recovery settled them $(fmt "$settled" 3) s later"). Neither mode
  lost an acknowledged row or kept one that was not acknowledged.
* Cost of each over a plain local INSERT (createCustomer p50, last two
  columns of the table): evrep $(range_local evrep), 2PC $(range_local 2pc).
  evrep's extra is the capture trigger's outbox row in the same
  transaction, plus the publisher's and consumer's work on the same CPUs.
  2PC's extra is the second database, two more synchronous commits (PREPARE,
  the decision) and four more round trips (five steps instead of one).

## All runs

| mode | call | N | C | rep | ok | errors | s | req/s | p50 ms | p99 ms | max ms | peer complete s |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
$(awk -F, 'NR > 1 { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $13, $5, $6, $7, $8, $9, $10, $11, $12 }' "$RES" | sort -t'|' -k4,4n -k5,5n -k3,3 -k2,2 -k6,6n)

![latency](latency.png)

![throughput](throughput.png)

## Fault: the peer database stopped under load

$(m fault | sed 's/^/Load: /'). Only createCustomer was sent, through
CustomerService, at a fixed rate (\`--rate\`). Server B, the peer of
CustomerService, was stopped with \`pg_ctl stop -m fast\` during the run and
then started again. Both modes ran against the same servers, one after the
other. "B down" is the time between the end of \`pg_stop\` and the start of
\`pg_start\`, when B was certainly down; "outage" counts the requests that
started in that window. B also refused new sessions while \`pg_stop\` (stop
s) and \`pg_start\` (start s) ran. "backlog" is the number of rows that A
had when \`pg_start\` began and B did not have before the stop. "converge"
is the time from the start of \`pg_start\` until B held all of them. It
includes B's startup, and evrep's consumer starts applying as soon as B
accepts sessions. "in doubt"
counts the services' prepared transactions that were still there when B
came back. They were all prepared before B went down, because a 2PC write
starts on both sides. "settled" is the time until recovery had finished
them. A fast shutdown rarely hits the short window between a side's
PREPARE and its COMMIT PREPARED, so this count is often 0. The crash tests
in \`services/test_twopc.sh\` cover resolving in-doubt transactions. Assertions: every acknowledged row is in both databases, and no
unacknowledged row is in either.

| mode | requests | ok | success % | outage requests | outage ok | outage success % | after return ok / requests | B down s | stop s | start s | backlog rows | converge s | in doubt at return | settled s | rows A / B | acknowledged | lost | extra |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    { printf "| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s |\n",
        $c["mode"], $c["requests"], $c["ok"], $c["success_pct"], $c["outage_requests"], $c["outage_ok"], $c["outage_success_pct"],
        $c["after_return_ok"], $c["after_return_requests"], $c["down_s"], $c["stop_s"], $c["start_s"], $c["backlog_rows"],
        $c["converge_s"], $c["in_doubt_at_return"], $c["in_doubt_settled_s"], $c["origin_rows"], $c["peer_rows"], $c["acknowledged"],
        $c["lost"], $c["extra"] }' "$FAULT")

![fault timeline](fault.png)

## Files

* \`results.csv\`: one row per (mode, call, N, C).
* \`fault.csv\`: one row per mode of the fault run.
* \`fault_timeline.csv\` and \`fault_window.csv\`: the fault runs per second,
  and the outage window.
* \`machine.txt\`: the machine, versions, settings and wall time.
* Reproduce with \`bench/twopc_vs_evrep.sh\` (as root, needs \`make install\`
  and gnuplot), for example with \`SIZES="100 1000"\` for a shorter run.
EOF
} >"$DIR/REPORT.md"
echo "wrote $DIR/REPORT.md, latency.png, throughput.png, fault.png" >&2
