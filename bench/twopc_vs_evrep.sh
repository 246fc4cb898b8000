#!/usr/bin/env bash
# bench/twopc_vs_evrep.sh -- event-driven replication (evrep) against
# two-phase commit (the 2PC baseline binaries in services/twopc/,
# customer_service_2pc and order_service_2pc), on the same servers, in one
# run.
#
#   bench/twopc_vs_evrep.sh            full run (about 10 minutes on 2 vCPUs)
#   SIZES="100 1000" bench/twopc_vs_evrep.sh      a shorter one
#
# Setup: one RabbitMQ node (AMQP 5751) and two PostgreSQL 15 servers, A on
# 5881 and B on 5882, both with evrep preloaded.
#   evrep mode: A's database customer_db publishes customer and subscribes
#               orders; B's order_db publishes orders and subscribes customer.
#               The product services (services/customer_service,
#               services/order_service) write their own database only.
#   2pc mode:   databases customer_2pc on A and order_2pc on B, same schema,
#               no evrep in them (nothing published or subscribed).  The 2PC
#               baseline binaries (services/twopc/customer_service_2pc and
#               order_service_2pc, each given the other's database
#               as --peer-db) write both databases in one distributed
#               transaction.
#   local:      reference only, createCustomer only: the product
#               customer_service on customer_2pc, so one plain INSERT with no
#               replication at all (the floor both modes add to).
# CustomerService listens on 9391, OrderService on 9390; they are restarted
# as the other mode's binaries between runs.  fsync and synchronous_commit
# are on.
#
# 1. Latency/throughput: for every N in $SIZES and C in $CONCS, both modes
#    (the mode that goes first rotates), $REPS times where N <= $REPS_MAX_N
#    and once above (the report takes medians): `common_client load` creates N
#    customers through CustomerService, then min(N, $ORDERS_MAX) orders
#    through OrderService, at concurrency C.  Client-observed p50/p99/max and
#    req/s per call; and the time from the last call until the peer
#    database holds every row (evrep: replication; 2PC: there already).
# 2. Fault: createCustomer at $FAULT_RATE req/s with $FAULT_CONC clients for
#    $FAULT_SECS s; B (the peer of CustomerService) is stopped at
#    $FAULT_DOWN_AT s for $FAULT_DOWN_SECS s.  Per request success and
#    latency; after B is back, the time until B holds every row committed
#    on A (evrep) or the in-doubt prepared transactions and the time until
#    recovery settled them (2PC).  Counts are asserted: every acknowledged
#    row is on both sides, no failed one is.
#
# Output in $OUT (default bench/results/twopc): results.csv, fault.csv,
# fault_timeline.csv, machine.txt, then bench/twopc_report.sh writes
# REPORT.md and the PNG plots.  Exit status 1 if an assertion failed.
# Stops exactly what it started (test/lib registry), also on failure.

set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${EVREP_TEST_DIR:=/tmp/evrep-bench-twopc}"
export EVREP_TEST_DIR
# shellcheck source=../test/lib/topology.sh
source "$ROOT/test/lib/topology.sh"
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"

OUT=${OUT:-$ROOT/bench/results/twopc}
SIZES=${SIZES:-"100 1000 10000"}
MODES=${MODES:-"evrep 2pc local"}
REPS=${REPS:-3}                 # repetitions of each (N, C) with N <= REPS_MAX_N
REPS_MAX_N=${REPS_MAX_N:-1000}  # (short runs are noisy; the report takes medians)
CONCS=${CONCS:-"1 8"}
ORDERS_MAX=${ORDERS_MAX:-10000}
FAULT_RATE=${FAULT_RATE:-100}
FAULT_CONC=${FAULT_CONC:-4}
FAULT_SECS=${FAULT_SECS:-40}
FAULT_DOWN_AT=${FAULT_DOWN_AT:-8}
FAULT_DOWN_SECS=${FAULT_DOWN_SECS:-10}
AMQP_PORT=5751 A_PORT=5881 B_PORT=5882 CS_PORT=9391 OS_PORT=9390
MQ=twopcmq A=customer_db B=order_db
CLIENT=$ROOT/services/common_client
WORK=$EVREP_TEST_DIR/work
FAILED=0

die() { log "FATAL: $*"; exit 1; }
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
check() {   # check DESC GOT EXPECTED
    if [[ "$2" == "$3" ]]; then log "ok: $1 ($2)"; else log "FAILED: $1: got '$2' expected '$3'"; FAILED=1; fi
}

# on exit (bench_traps), before the servers stop: the fault phase's samplers
bench_on_exit() { declare -F stop_samplers >/dev/null && stop_samplers; }
bench_traps

# connection strings: the evrep pair and the 2PC pair
A_EVREP=$(printf 'host=127.0.0.1 port=%s user=postgres dbname=customer_db' $A_PORT)
B_EVREP=$(printf 'host=127.0.0.1 port=%s user=postgres dbname=order_db' $B_PORT)
A_2PC=$(printf 'host=127.0.0.1 port=%s user=postgres dbname=customer_2pc' $A_PORT)
B_2PC=$(printf 'host=127.0.0.1 port=%s user=postgres dbname=order_2pc' $B_PORT)
a_db() { [[ $1 == evrep ]] && echo customer_db || echo customer_2pc; }
b_db() { [[ $1 == evrep ]] && echo order_db || echo order_2pc; }
a_conn() { [[ $1 == evrep ]] && echo "$A_EVREP" || echo "$A_2PC"; }
b_conn() { [[ $1 == evrep ]] && echo "$B_EVREP" || echo "$B_2PC"; }
psql_at() { local conn=$1; shift; PGCONNECT_TIMEOUT=3 "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$conn" "$@"; }

# ---- setup ---------------------------------------------------------------------

T_START=$SECONDS
mkdir -p "$OUT" || die "cannot create $OUT"
evrep_base_dir >/dev/null || die "no $EVREP_TEST_DIR"
rm -rf "$WORK"; mkdir -p "$WORK"
make -s -C "$ROOT/services" all >/dev/null || die "services build failed"
[[ -e "$("$PG_CONFIG" --pkglibdir)/evrep.so" ]] || die "evrep is not installed (make && make install)"

log "starting RabbitMQ $MQ on $AMQP_PORT and PostgreSQL $A on $A_PORT, $B on $B_PORT"
# test/lib/topology.sh: returns once both nodes' workers are connected and
# each consumer has bound its queue, so evrep is live both ways
topo_up <<EOF >>"$WORK/setup.out" 2>&1 || die "the servers did not come up: $(tail -30 "$WORK/setup.out")"
broker $MQ port=$AMQP_PORT
node $A port=$A_PORT publish=customer subscribe=orders schema="$ROOT/services/schema/customer_db.sql" \
    conf="max_prepared_transactions = 64" conf="max_connections = 200"
node $B port=$B_PORT publish=orders subscribe=customer schema="$ROOT/services/schema/order_db.sql" \
    conf="max_prepared_transactions = 64" conf="max_connections = 200"
EOF
pg_psql $A -c "CREATE DATABASE customer_2pc" && pg_psql $A -d customer_2pc -f "$ROOT/services/schema/customer_db.sql" >/dev/null \
    || die "customer_2pc"
pg_psql $B -c "CREATE DATABASE order_2pc" && pg_psql $B -d order_2pc -f "$ROOT/services/schema/order_db.sql" >/dev/null \
    || die "order_2pc"
log "evrep is ready both ways ($((SECONDS - T_START)) s of setup)"

# ---- machine -------------------------------------------------------------------

{
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MiB"}')"
    echo "kernel: $(uname -r)"
    echo "os: $(. /etc/os-release; echo "$PRETTY_NAME")"
    echo "postgresql: $("$PG_BINDIR/postgres" --version)"
    echo "rabbitmq: $(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null)"
    echo "erlang: $(dpkg-query -W -f '${Version}' erlang-base 2>/dev/null)"
    echo "librabbitmq: $(dpkg-query -W -f '${Version}' librabbitmq4 2>/dev/null)"
    echo "thrift c_glib: $(dpkg-query -W -f '${Version}' libthrift-c-glib0 2>/dev/null)"
    echo "evrep.so: installed $(date -u -r "$("$PG_CONFIG" --pkglibdir)/evrep.so" +%FT%TZ), md5 $(md5sum <"$("$PG_CONFIG" --pkglibdir)/evrep.so" | cut -c1-12)"
    echo "fsync: $(pg_psql $A -c 'SHOW fsync'), synchronous_commit: $(pg_psql $A -c 'SHOW synchronous_commit'), wal_sync_method: $(pg_psql $A -c 'SHOW wal_sync_method')"
    echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

# ---- services --------------------------------------------------------------------

SVC_MODE=
start_services() {   # start_services evrep|2pc
    local mode=$1
    [[ $SVC_MODE == "$mode" ]] && return 0
    bg_stop cs; bg_stop os
    if [[ $mode == evrep ]]; then
        bg_start cs "$ROOT/services/customer_service" --port $CS_PORT --db "$A_EVREP" || die "cs"
        bg_start os "$ROOT/services/order_service" --port $OS_PORT --db "$B_EVREP" || die "os"
    elif [[ $mode == local ]]; then
        bg_start cs "$ROOT/services/customer_service" --port $CS_PORT --db "$A_2PC" || die "cs"
        bg_start os "$ROOT/services/order_service" --port $OS_PORT --db "$B_2PC" || die "os"
    else
        bg_start cs "$ROOT/services/twopc/customer_service_2pc" --port $CS_PORT --db "$A_2PC" \
            --peer-db "$B_2PC" --recovery-interval-ms 1000 || die "cs"
        bg_start os "$ROOT/services/twopc/order_service_2pc" --port $OS_PORT --db "$B_2PC" \
            --peer-db "$A_2PC" --recovery-interval-ms 1000 || die "os"
    fi
    local i
    for i in $(seq 1 200); do
        evrep_port_in_use $CS_PORT && evrep_port_in_use $OS_PORT && { SVC_MODE=$mode; return 0; }
        sleep 0.05
    done
    die "services ($mode) did not start: $(tail -5 "$(bg_logfile cs)" "$(bg_logfile os)")"
}

# ---- 1: latency and throughput ------------------------------------------------------

RES=$OUT/results.csv
echo "mode,call,n,concurrency,ok,errors,seconds,req_per_s,p50_ms,p99_ms,max_ms,peer_complete_s,rep" >"$RES"
NEXT_ID=1
run=0
for n in $SIZES; do
  reps=$(( n <= REPS_MAX_N ? REPS : 1 ))
  for r in $(seq 1 "$reps"); do
    for c in $CONCS; do
        # the mode that goes first rotates from one (N, C, rep) to the next
        read -ra ml <<<"$MODES"
        modes=()
        for i in "${!ml[@]}"; do modes+=("${ml[(i + run) % ${#ml[@]}]}"); done
        run=$((run + 1))
        for mode in "${modes[@]}"; do
            start_services "$mode"
            norders=$(( n < ORDERS_MAX ? n : ORDERS_MAX ))
            vis=600
            if [[ $mode == local ]]; then norders=0 vis=0; fi
            log "run: $mode, $n customers + $norders orders, concurrency $c, repetition $r/$reps"
            t0=$SECONDS
            out=$("$CLIENT" --customer-port $CS_PORT --order-port $OS_PORT --timeout 60 load \
                      --customers "$n" --orders "$norders" --concurrency "$c" \
                      --id-base $NEXT_ID --order-id-base $NEXT_ID --warmup \
                      --order-db "$(b_conn $mode)" --peer-db "$(a_conn $mode)" \
                      --visibility-timeout $vis 2>"$WORK/load-$mode-$n-$c.err")
            rc=$?
            printf '%s\n' "$out" >"$WORK/load-$mode-$n-$c.out"
            [[ $rc == 0 ]] || { log "FAILED: load exit $rc: $(tail -3 "$WORK/load-$mode-$n-$c.err")"; FAILED=1; }
            cvis=$(sed -n 's/^customers visible .* \([0-9.]*\) s after.*/\1/p' <<<"$out")
            ovis=$(sed -n 's/^orders visible .* \([0-9.]*\) s after.*/\1/p' <<<"$out")
            awk -v mode="$mode" -v n="$n" -v no="$norders" -v c="$c" -v cv="${cvis:-NA}" -v ov="${ovis:-NA}" -v r="$r" '
                $1 == "createCustomer" || $1 == "createOrder" {
                    printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", mode, $1,
                        ($1 == "createCustomer" ? n : no), c, $2, $3, $4, $5, $6, $7, $8,
                        ($1 == "createCustomer" ? cv : ov), r
                }' <<<"$out" >>"$RES"
            grep -E '^(createCustomer|createOrder) ' <<<"$out" | sed "s/^/    $mode c=$c: /" >&2
            # nothing lost: every id of the run on both sides
            last=$((NEXT_ID + n - 1)) olast=$((NEXT_ID + norders - 1))
            counts="$(psql_at "$(a_conn $mode)" -c "SELECT count(*) FROM customer WHERE id BETWEEN $NEXT_ID AND $last")"
            if [[ $mode == local ]]; then
                check "$mode N=$n C=$c: customers on A" "$counts" "$n"
            else
                counts+="|$(psql_at "$(b_conn $mode)" -c "SELECT count(*) FROM customer WHERE id BETWEEN $NEXT_ID AND $last")"
                counts+="|$(psql_at "$(b_conn $mode)" -c "SELECT count(*) FROM orders WHERE id BETWEEN $NEXT_ID AND $olast")"
                counts+="|$(psql_at "$(a_conn $mode)" -c "SELECT count(*) FROM orders WHERE id BETWEEN $NEXT_ID AND $olast")"
                check "$mode N=$n C=$c: customers A|B, orders B|A" "$counts" "$n|$n|$norders|$norders"
            fi
            log "    ($((SECONDS - t0)) s)"
            NEXT_ID=$((NEXT_ID + n + c))     # + the warm-up ids
        done
    done
  done
done
T_LOAD=$((SECONDS - T_START))

# ---- 2: the peer database stopped under load ------------------------------------------

FAULT=$OUT/fault.csv
TL=$OUT/fault_timeline.csv
echo "mode,requests,ok,failed,success_pct,outage_requests,outage_ok,outage_success_pct,after_return_requests,after_return_ok,down_s,stop_s,start_s,backlog_rows,converge_s,in_doubt_at_return,in_doubt_settled_s,origin_rows,peer_rows,acknowledged,lost,extra" >"$FAULT"
echo "mode,t_s,ok,failed,origin_rows,peer_rows,prepared_origin,prepared_peer" >"$TL"
nfault=$((FAULT_RATE * FAULT_SECS))

# sampler CONNINFO LO HI: every 0.25 s "unix_ms,rows of the range,our
# prepared transactions", over one session (psql \watch); reconnects while
# the server is down
sampler() {
    local sql="SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint || ',' || (SELECT count(*) FROM customer WHERE id BETWEEN $2 AND $3) || ',' || (SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'evrep2pc:%')"
    while :; do
        printf '%s \\watch 0.25\n' "$sql" | psql_at "$1" 2>/dev/null
        sleep 0.2
    done
}
SAMPLERS=()
stop_samplers() {
    local p
    for p in "${SAMPLERS[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null; done
    SAMPLERS=()
}

for mode in evrep 2pc; do
    start_services "$mode"
    lo=$NEXT_ID hi=$((NEXT_ID + nfault - 1))
    log "fault: $mode, $nfault createCustomer at $FAULT_RATE/s, concurrency $FAULT_CONC; $B down at ${FAULT_DOWN_AT}s for ${FAULT_DOWN_SECS}s"
    setsid bash -c "$(declare -f sampler psql_at); PG_BINDIR=$PG_BINDIR; sampler '$(a_conn $mode)' $lo $hi" >"$WORK/fault-$mode.samples-a" 2>/dev/null &
    SAMPLERS+=($!)
    setsid bash -c "$(declare -f sampler psql_at); PG_BINDIR=$PG_BINDIR; sampler '$(b_conn $mode)' $lo $hi" >"$WORK/fault-$mode.samples-b" 2>/dev/null &
    SAMPLERS+=($!)
    t0=$(now_ms)
    "$CLIENT" --customer-port $CS_PORT --order-port $OS_PORT --timeout 60 load \
        --customers $nfault --orders 0 --concurrency $FAULT_CONC --rate $FAULT_RATE \
        --id-base $lo --order-db "$(b_conn $mode)" --visibility-timeout 300 --warmup \
        --request-log "$WORK/fault-$mode.requests.csv" \
        >"$WORK/fault-$mode.out" 2>"$WORK/fault-$mode.err" &
    lpid=$!
    sleep "$(awk -v a=$FAULT_DOWN_AT -v t0=$t0 -v now="$(now_ms)" 'BEGIN { s = a - (now - t0) / 1000; print (s > 0 ? s : 0) }')"
    # B refuses new sessions from the start of the stop until it is ready
    # again; it is certainly down between the end of pg_stop and the start
    # of pg_start, which is the outage window counted below
    t_stop0=$(now_ms)
    pg_stop $B fast >>"$WORK/setup.out" 2>&1 || die "cannot stop $B"
    t_down=$(now_ms)
    sleep "$FAULT_DOWN_SECS"
    # what B must catch up on (evrep): every row A has now
    a_at_start=$(psql_at "$(a_conn $mode)" -c "SELECT count(*) FROM customer WHERE id BETWEEN $lo AND $hi")
    t_start0=$(now_ms)
    pg_start $B >>"$WORK/setup.out" 2>&1 || die "cannot start $B"
    t_back=$(now_ms)
    log "    $B: pg_stop took $((t_down - t_stop0)) ms, pg_start $((t_back - t_start0)) ms" 
    # B's rows before it went down (the last sample)
    b_before=$(awk -F, -v t=$t_stop0 'NF == 3 && $1 < t { c = $2 } END { print c + 0 }' "$WORK/fault-$mode.samples-b")
    # in doubt: prepared before B went down and still there
    # (nothing can prepare while B is down: a 2PC write starts on both sides)
    doubt_sql="SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'evrep2pc:%' AND prepared < to_timestamp($t_start0 / 1000.0)"
    doubt_at_back=$(( $(psql_at "$(a_conn $mode)" -c "$doubt_sql" || echo 0) + $(psql_at "$(b_conn $mode)" -c "$doubt_sql" || echo 0) ))
    converge=NA settled=NA
    while (( $(now_ms) - t_back < 300000 )); do
        if [[ $mode == evrep ]]; then
            b_now=$(psql_at "$(b_conn $mode)" -c "SELECT count(*) FROM customer WHERE id BETWEEN $lo AND $hi" 2>/dev/null)
            if [[ -n $b_now ]] && (( b_now >= a_at_start )); then converge=$(awk -v d=$(( $(now_ms) - t_start0 )) 'BEGIN { printf "%.3f", d / 1000 }'); break; fi
        else
            pa=$(psql_at "$(a_conn $mode)" -c "$doubt_sql" 2>/dev/null) pb=$(psql_at "$(b_conn $mode)" -c "$doubt_sql" 2>/dev/null)
            if [[ $pa == 0 && $pb == 0 ]]; then settled=$(awk -v d=$(( $(now_ms) - t_back )) 'BEGIN { printf "%.3f", d / 1000 }'); break; fi
        fi
        sleep 0.05
    done
    [[ $mode == 2pc && $doubt_at_back == 0 ]] && settled=NA     # nothing to settle
    wait "$lpid"; lrc=$?
    log "    load exit $lrc: $(grep -E '^createCustomer ' "$WORK/fault-$mode.out")"
    sleep 1
    stop_samplers
    # after the load: nothing left in doubt, nothing lost, nothing extra
    for i in $(seq 1 120); do
        p=$(( $(psql_at "$(a_conn $mode)" -c "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'evrep2pc:%'") \
            + $(psql_at "$(b_conn $mode)" -c "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'evrep2pc:%'") ))
        (( p == 0 )) && break
        sleep 0.5
    done
    okids="$WORK/fault-$mode.okids"
    # (comm needs the plain lexical order of sort, not sort -n)
    awk -F, 'NR > 1 && $5 == 1 { print $2 }' "$WORK/fault-$mode.requests.csv" | sort >"$okids"
    acked=$(wc -l <"$okids")
    psql_at "$(a_conn $mode)" -c "SELECT id FROM customer WHERE id BETWEEN $lo AND $hi" | sort >"$WORK/fault-$mode.a"
    psql_at "$(b_conn $mode)" -c "SELECT id FROM customer WHERE id BETWEEN $lo AND $hi" | sort >"$WORK/fault-$mode.b"
    a_rows=$(wc -l <"$WORK/fault-$mode.a") b_rows=$(wc -l <"$WORK/fault-$mode.b")
    # acknowledged but missing on either side / on either side but not acknowledged
    lost=$(comm -12 "$WORK/fault-$mode.a" "$WORK/fault-$mode.b" | comm -23 "$okids" - | wc -l)
    extra=$(sort -u "$WORK/fault-$mode.a" "$WORK/fault-$mode.b" | comm -13 "$okids" - | wc -l)
    check "$mode fault: nothing left prepared" "$p" 0
    check "$mode fault: acknowledged rows on A and on B" "$a_rows|$b_rows" "$acked|$acked"
    check "$mode fault: acknowledged rows missing on a side | rows nobody acknowledged" "$lost|$extra" "0|0"
    awk -F, -v mode=$mode -v td=$t_down -v ts=$t_start0 -v t0=$t_stop0 -v tb=$t_back -v bb="$((a_at_start - b_before))" -v cv=$converge \
        -v dab=$doubt_at_back -v st=$settled -v ar=$a_rows -v br=$b_rows -v ak=$acked -v lo=$lost -v ex=$extra '
        NR > 1 { n++; ok += $5; if ($3 >= td && $3 < ts) { on++; ook += $5 } else if ($3 >= tb) { an++; aok += $5 } }
        END {
            printf "%s,%d,%d,%d,%.1f,%d,%d,%.1f,%d,%d,%.1f,%.1f,%.1f,%s,%s,%s,%s,%d,%d,%d,%d,%d\n", mode, n, ok, n - ok,
                n ? 100 * ok / n : 0, on, ook, on ? 100 * ook / on : 0, an, aok, (ts - td) / 1000,
                (td - t0) / 1000, (tb - ts) / 1000,
                (mode == "evrep" ? bb : "NA"), cv, (mode == "2pc" ? dab : "NA"), st, ar, br, ak, lo, ex
        }' "$WORK/fault-$mode.requests.csv" >>"$FAULT"
    # per-second timeline relative to the first request, with the samples
    # (%.0f: mawk's %d stops at 2^31)
    first=$(awk -F, 'NR == 2 { m = $3 } NR > 2 && $3 < m { m = $3 } END { printf "%.0f", m }' "$WORK/fault-$mode.requests.csv")
    awk -F, -v mode=$mode -v f="$first" -v sa="$WORK/fault-$mode.samples-a" -v sb="$WORK/fault-$mode.samples-b" '
        BEGIN {
            # the last sample of each second on each side
            while ((getline line < sa) > 0) {
                if (split(line, s, ",") != 3) continue
                sec = int((s[1] - f) / 1000)
                if (sec < 0 || sec > 100000) continue
                orig[sec] = s[2]; pa[sec] = s[3]
            }
            while ((getline line < sb) > 0) {
                if (split(line, s, ",") != 3) continue
                sec = int((s[1] - f) / 1000)
                if (sec < 0 || sec > 100000) continue
                peer[sec] = s[2]; pb[sec] = s[3]
            }
        }
        NR > 1 { sec = int(($3 - f) / 1000); if ($5 == 1) ok[sec]++; else bad[sec]++; if (sec > maxs && sec < 100000) maxs = sec }
        END {
            for (t = 0; t <= maxs; t++)
                printf "%s,%d,%d,%d,%s,%s,%s,%s\n", mode, t, ok[t] + 0, bad[t] + 0,
                    (t in orig ? orig[t] : "NA"), (t in peer ? peer[t] : "NA"), (t in pa ? pa[t] : "NA"), (t in pb ? pb[t] : "NA")
        }' "$WORK/fault-$mode.requests.csv" >>"$TL"
    echo "$mode $((t_stop0 - first)) $((t_down - first)) $((t_start0 - first)) $((t_back - first))" >>"$WORK/fault-window"
    NEXT_ID=$((NEXT_ID + nfault + FAULT_CONC))     # + the warm-up ids
done
# the outage window of each mode, in ms after its first request
{ echo "mode,stop_begin_ms,down_ms,start_begin_ms,back_ms"; tr ' ' , <"$WORK/fault-window"; } >"$OUT/fault_window.csv"

bg_stop cs; bg_stop os
T_TOTAL=$((SECONDS - T_START))
{
    echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "bench wall time: ${T_TOTAL} s (setup and latency runs ${T_LOAD} s, fault runs $((T_TOTAL - T_LOAD)) s)"
    echo "sizes: $SIZES; concurrency: $CONCS; modes: $MODES; orders per run: min(N, $ORDERS_MAX); repetitions: $REPS where N <= $REPS_MAX_N, else 1"
    echo "fault: $FAULT_RATE req/s, concurrency $FAULT_CONC, $FAULT_SECS s, peer down at ${FAULT_DOWN_AT} s for ${FAULT_DOWN_SECS} s"
    echo "assertions: $([[ $FAILED == 0 ]] && echo 'all passed' || echo 'SOME FAILED (see the bench log)')"
} >>"$OUT/machine.txt"
log "done in ${T_TOTAL} s; writing the report"
"$ROOT/bench/twopc_report.sh" "$OUT" || FAILED=1
exit "$FAILED"
