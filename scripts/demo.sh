#!/usr/bin/env bash
# scripts/demo.sh -- evrep in one command: two service databases, RabbitMQ,
# CustomerService and OrderService, rows replicating both ways; then a third
# database joins late and catches up (evrep_subscribe copies the existing rows).
#
#   scripts/demo.sh          install deps, build, start everything, show
#                            replication, stop everything        (make demo)
#   scripts/demo.sh keep     the same, but leave it all running and print
#                            how to connect
#   scripts/demo.sh stop     stop a demo left running by "keep"  (make demo-stop)
#
# Run it as root on Debian 12 (scripts/install-deps.sh installs what is
# missing with apt; `make install` writes to PostgreSQL's directories).
# Everything it starts listens on 127.0.0.1 only and lives under the state
# directory; it stops exactly what it started (by pid / data directory).
#
#   RabbitMQ         AMQP 127.0.0.1:5690  (epmd 15690, distribution 25690)
#   customer_db      PostgreSQL 127.0.0.1:5490, publishes customer, subscribes orders
#   order_db         PostgreSQL 127.0.0.1:5491, publishes orders, subscribes customer
#   report_db        PostgreSQL 127.0.0.1:5492, started late, subscribes customer
#                    and orders (a reporting service that only reads)
#   CustomerService  127.0.0.1:9091 (Thrift), on customer_db
#   OrderService     127.0.0.1:9090 (Thrift), on order_db
#
# Environment: EVREP_DEMO_DIR (state directory, default /tmp/evrep-demo),
#   EVREP_DEMO_SKIP_DEPS=1 (do not run scripts/install-deps.sh),
#   EVREP_DEMO_SKIP_BUILD=1 (do not run make / make install / make -C services),
#   PG_CONFIG (default /usr/lib/postgresql/15/bin/pg_config).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=${1:-run}
case "$MODE" in
    run|keep|stop) ;;
    -h|--help|help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [keep|stop]" >&2; exit 2 ;;
esac

export EVREP_TEST_DIR=${EVREP_DEMO_DIR:-/tmp/evrep-demo}
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
STATE=$EVREP_TEST_DIR
LOG=$STATE/demo.log

AMQP_PORT=5690
CUST_PG_PORT=5490
ORDER_PG_PORT=5491
REPORT_PG_PORT=5492
CUST_SVC_PORT=9091
ORDER_SVC_PORT=9090
MQ=rabbitmq
CDB=customer_db
ODB=order_db
RDB=report_db
CLIENT=$ROOT/services/common_client

# The test harness libraries (private RabbitMQ / PostgreSQL / background
# processes, and the topology layer over them); their state lives in
# $EVREP_TEST_DIR, so "stop" from another process finds everything by its pid
# files and data directories.
# shellcheck source=../test/lib/topology.sh
source "$ROOT/test/lib/topology.sh"

# The demo's servers, in test/lib/topology.sh's description format.
# report_db is not in it: its server is started late, in step 9
# (topo_late_node); only its broker user (users=) exists from the start.
TOPOLOGY="broker $MQ port=$AMQP_PORT users=$RDB
node $CDB port=$CUST_PG_PORT publish=customer subscribe=orders schema=services/schema/customer_db.sql
node $ODB port=$ORDER_PG_PORT publish=orders subscribe=customer schema=services/schema/order_db.sql"
cd "$ROOT" || exit 1
topo_parse <<<"$TOPOLOGY" || exit 1

# ---- output helpers ------------------------------------------------------------
if [[ -t 1 ]]; then B=$'\e[1m' D=$'\e[2m' G=$'\e[32m' R=$'\e[31m' N=$'\e[0m'
else B='' D='' G='' R='' N=''; fi
T_START=$SECONDS
STEP=0 STEPS=10  # + 1 when a kept demo is stopped first, + 1 for keep
step() { STEP=$((STEP + 1)); printf '\n%s[%d/%d] %s%s  %s(+%ds)%s\n' "$B" "$STEP" "$STEPS" "$1" "$N" "$D" $((SECONDS - T_START)) "$N"; }
say() { printf '      %s\n' "$*"; }
explain() { printf '%s' "$D"; printf '      %s\n' "$@"; printf '%s' "$N"; }
indent() { sed 's/^/        /'; }
die() {
    printf '\n%sdemo failed: %s%s\n' "$R" "$*" "$N" >&2
    [[ -s "$LOG" ]] && { echo "---- last lines of $LOG ----" >&2; tail -n 25 "$LOG" >&2; }
    exit 1
}
# run_logged DESC CMD...: run CMD with its output in the log; print "ok (Ns)".
run_logged() {
    local desc=$1 t0=$SECONDS; shift
    printf '      %-34s ' "$desc"
    echo "==== $desc: $*" >>"$LOG"
    if "$@" >>"$LOG" 2>&1; then
        printf '%sok%s (%ds)\n' "$G" "$N" $((SECONDS - t0))
    else
        printf '%sFAILED%s\n' "$R" "$N"
        die "$desc failed (command: $*)"
    fi
}
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
# wait_for TIMEOUT_S DESC CMD...: poll CMD until it succeeds.
wait_for() {
    local timeout=$1 desc=$2; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        (( SECONDS >= deadline )) && die "timed out after ${timeout}s waiting for: $desc"
        sleep 0.1
    done
}

# psql helpers: q = unaligned, tuples only; show = aligned table, indented.
q() { local n=$1; shift; pg_psql "$n" -c "$*"; }
show() {
    local n=$1; shift
    printf '      %s%s=# %s%s\n' "$D" "$n" "$*" "$N"
    PGCONNECT_TIMEOUT=10 "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -P footer=off \
        -h 127.0.0.1 -p "$(pg_port "$n")" -U postgres -d "$n" -c "$*" | sed '/^$/d' | indent
}
client() { "$CLIENT" --customer-port "$CUST_SVC_PORT" --order-port "$ORDER_SVC_PORT" --timeout 20 "$@"; }

# ---- start / stop ----------------------------------------------------------------
anything_running() {
    local n
    bg_is_running customer_service || bg_is_running order_service && return 0
    for n in $(topo_nodes) $RDB; do pg_is_running "$n" && return 0; done
    for n in $(topo_broker_members); do rmq_is_running "$n" && return 0; done
    return 1
}

demo_stop() {
    bg_stop customer_service 10
    bg_stop order_service 10
    bg_stop report_load 10
    [[ -d "$(pg_datadir $RDB)" ]] && { pg_stop $RDB fast || pg_stop $RDB immediate || pg_kill $RDB; }
    topo_down
    rm -f "$STATE/KEPT" "$(evrep_registry_file)"
    return 0
}

if [[ "$MODE" == stop ]]; then
    if [[ ! -d "$STATE" ]] || ! anything_running; then
        echo "evrep demo: nothing running (state directory $STATE)"
        rm -f "$STATE/KEPT"
        exit 0
    fi
    echo "evrep demo: stopping the services, the PostgreSQL servers and RabbitMQ ($STATE)"
    demo_stop >>"$LOG" 2>&1
    if anything_running; then echo "evrep demo: something is still running, see $LOG" >&2; exit 1; fi
    echo "evrep demo: stopped"
    exit 0
fi

# ---- run / keep ------------------------------------------------------------------
KEEP=0; [[ "$MODE" == keep ]] && KEEP=1 STEPS=$((STEPS + 1))
PREVIOUS=0; anything_running && PREVIOUS=1 STEPS=$((STEPS + 1))
mkdir -p "$STATE" && chmod 755 "$STATE" || { echo "cannot create $STATE" >&2; exit 1; }
: >"$LOG"

on_exit() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if (( KEEP && rc == 0 )); then
        rm -f "$(evrep_registry_file)"
        exit 0
    fi
    printf '\n%s' "$B"; echo "Stopping everything the demo started ...$N"
    demo_stop >>"$LOG" 2>&1
    if anything_running; then echo "      something is still running; see $LOG" >&2
    else say "services, PostgreSQL (customer_db, order_db, report_db) and RabbitMQ stopped"; fi
    (( rc == 0 )) && say "total time $((SECONDS - T_START)) s (data and logs stay in $STATE until the next run)"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

cat <<EOF
${B}evrep demo${N} -- two microservices, each with its own PostgreSQL database,
kept in sync through RabbitMQ by the evrep extension.

      common_client (Thrift)                     common_client (Thrift)
              │                                          │
      CustomerService :$CUST_SVC_PORT                         OrderService :$ORDER_SVC_PORT
              │ SQL                                      │ SQL
      customer_db :$CUST_PG_PORT  ─── customer rows ──>   order_db :$ORDER_PG_PORT
        + evrep           <──  orders rows ───     + evrep
                         via RabbitMQ :$AMQP_PORT

  customer_db owns ${B}customer${N} and holds a replica of ${B}orders${N};
  order_db    owns ${B}orders${N}   and holds a replica of ${B}customer${N}.
  The services only run plain SQL against their own database. An INSERT fires
  evrep's capture trigger (an outbox row in the same transaction); after the
  commit evrep's publisher sends it to RabbitMQ, and the other database's
  consumer applies it there.
  At the end a third database, ${B}report_db${N} :$REPORT_PG_PORT (a reporting service that
  only reads), joins late: evrep_subscribe copies the rows the origins already
  hold, then the live stream follows.
EOF

# A demo kept running by "keep": stop it first (same ports, same directories).
if (( PREVIOUS )); then
    step "Stopping the demo left running before"
    demo_stop >>"$LOG" 2>&1
    anything_running && die "could not stop the previous demo in $STATE"
    say "stopped"
fi

step "Dependencies (scripts/install-deps.sh)"
if [[ "${EVREP_DEMO_SKIP_DEPS:-0}" == 1 ]]; then
    say "skipped (EVREP_DEMO_SKIP_DEPS=1)"
else
    "$ROOT/scripts/install-deps.sh" 2>&1 | indent
    (( PIPESTATUS[0] == 0 )) || die "scripts/install-deps.sh failed"
fi

for p in $AMQP_PORT $((AMQP_PORT + 10000)) $((AMQP_PORT + 20000)) $CUST_PG_PORT $ORDER_PG_PORT $REPORT_PG_PORT $CUST_SVC_PORT $ORDER_SVC_PORT; do
    evrep_port_in_use "$p" && die "port $p on 127.0.0.1 is in use by another program (the demo needs 5490, 5491, 5492, 5690, 15690, 25690, 9090, 9091)"
done

step "Build: the evrep extension and the Thrift services"
if [[ "${EVREP_DEMO_SKIP_BUILD:-0}" == 1 ]]; then
    say "skipped (EVREP_DEMO_SKIP_BUILD=1)"
else
    run_logged "make (extension)" make -C "$ROOT" PG_CONFIG="$PG_CONFIG"
    run_logged "make install" make -C "$ROOT" PG_CONFIG="$PG_CONFIG" install
    run_logged "make -C services" make -C "$ROOT/services"
fi
for f in customer_service order_service common_client; do
    [[ -x "$ROOT/services/$f" ]] || die "services/$f is missing (run make -C services)"
done

step "Start RabbitMQ and two PostgreSQL servers (with evrep preloaded), all at once"
explain "test/lib/topology.sh starts them from this description, loads each service's schema," \
        "creates the extension, publishes and subscribes, and waits until both consumers have" \
        "bound their queues (the broker drops events no queue is bound for):"
printf '%s\n' "$TOPOLOGY" | indent
explain "Each server gets shared_preload_libraries = 'evrep', evrep.node_name and" \
        "evrep.database = its database, evrep.broker_url, track_commit_timestamp = on."
t0=$SECONDS
echo "==== topo_start" >>"$LOG"
topo_start >>"$LOG" 2>&1 || die "the servers did not come up (see $LOG)"
say "customer_db  127.0.0.1:$CUST_PG_PORT  publishes customer, subscribes orders"
say "order_db     127.0.0.1:$ORDER_PG_PORT  publishes orders,   subscribes customer"
say "RabbitMQ     127.0.0.1:$AMQP_PORT  queues $(topo_queue "$ODB") <- public.customer, $(topo_queue "$CDB") <- public.orders"
say "ready after $((SECONDS - t0)) s"

step "Start CustomerService (:$CUST_SVC_PORT, customer_db) and OrderService (:$ORDER_SVC_PORT, order_db)"
bg_start customer_service "$ROOT/services/customer_service" --port $CUST_SVC_PORT --db "$(pg_connstr $CDB)" >>"$LOG" 2>&1 \
    || die "cannot start customer_service"
bg_start order_service "$ROOT/services/order_service" --port $ORDER_SVC_PORT --db "$(pg_connstr $ODB)" >>"$LOG" 2>&1 \
    || die "cannot start order_service"
svc_up() { bg_is_running "$1" || die "$1 exited; see $(bg_logfile "$1")"; evrep_port_in_use "$2"; }
wait_for 15 "CustomerService on port $CUST_SVC_PORT" svc_up customer_service $CUST_SVC_PORT
wait_for 15 "OrderService on port $ORDER_SVC_PORT" svc_up order_service $ORDER_SVC_PORT
say "both accept connections (logs: $(bg_logfile customer_service), $(bg_logfile order_service))"

# lag_rows TABLE ORIGIN REPLICA LABEL_SQL HEADER: one line per row of ORIGIN's
# TABLE (LABEL_SQL formats its columns; rpad counts characters, not bytes)
# with the commit time of its INSERT at the origin, the commit time of the
# apply transaction that wrote it on the replica, and the difference. Both
# servers run on this machine, so their clocks agree.
ts_cols="to_char(pg_xact_commit_timestamp(xmin), 'HH24:MI:SS.MS'), (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint"
lag_rows() {
    local table=$1 origin=$2 replica=$3 label=$4 hdr=$5
    local fo fr
    fo=$(mktemp) fr=$(mktemp)
    pg_psql "$origin" -F $'\t' -c "SELECT id, $label, $ts_cols FROM $table ORDER BY id" >"$fo"
    pg_psql "$replica" -F $'\t' -c "SELECT id, $ts_cols FROM $table" >"$fr"
    printf '        %s  %-14s %-14s %s\n' "$hdr" "committed on" "applied on" "lag"
    printf '        %*s  %-14s %-14s\n' "${#hdr}" "" "$origin" "$replica"
    awk -F'\t' 'NR == FNR { at[$1] = $2; us[$1] = $3; next }
        ($1 in us) { printf "        %s  %-14s %-14s %6.1f ms\n", $2, $3, at[$1], (us[$1] - $4) / 1000.0; next }
        { printf "        %s  %-14s %-14s\n", $2, $3, "(not yet)" }' "$fr" "$fo"
    rm -f "$fo" "$fr"
}

# lag_stats TABLE ORIGIN REPLICA [WHERE]: rows, p50, p99 and max of the lag.
lag_stats() {
    local table=$1 origin=$2 replica=$3 where=${4:-true}
    local fo fr
    fo=$(mktemp) fr=$(mktemp)
    pg_psql "$origin" -F $'\t' -c "SELECT id, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint FROM $table WHERE $where" >"$fo"
    pg_psql "$replica" -F $'\t' -c "SELECT id, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint FROM $table WHERE $where" >"$fr"
    awk -F'\t' 'NR == FNR { us[$1] = $2; next } ($1 in us) { printf "%.1f\n", (us[$1] - $2) / 1000.0 }' "$fr" "$fo" \
        | sort -n | awk -v t="$table" -v o="$origin" -v r="$replica" '
            { v[NR] = $1 }
            END { if (NR == 0) { print "no rows"; exit }
                  p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1]
                  printf "%-8s %s -> %s: %d rows, lag p50 %s ms, p99 %s ms, max %s ms\n", t, o, r, NR, p50, p99, v[NR] }'
    rm -f "$fo" "$fr"
}
count_is() { [[ $(q "$1" "SELECT count(*) FROM $2") == "$3" ]]; }

step "Customers: created through CustomerService, replicated to order_db"
explain "common_client create-customer -> CustomerService -> INSERT INTO customer on customer_db." \
        "OrderService reads the replica in order_db; nothing else copies the rows."
names=("Ada Lovelace" "Alan Turing" "Grace Hopper" "Edsger Dijkstra" "Zoë Ünal")
credits=(1000 2500 750 0 1200)
for i in "${!names[@]}"; do
    out=$(client create-customer --id $((i + 1)) --name "${names[i]}" --credit "${credits[i]}" 2>&1) \
        || die "createCustomer failed: $out"
    printf '      %s$ common_client create-customer --id %d --name "%s" --credit %d%s\n        %s\n' \
        "$D" $((i + 1)) "${names[i]}" "${credits[i]}" "$N" "$out"
done
wait_for 30 "5 customers in order_db" count_is $ODB customer 5
echo
say "When each row was committed on customer_db and when evrep's consumer committed it on order_db"
say "(pg_xact_commit_timestamp(xmin) on both sides; track_commit_timestamp = on):"
lag_rows customer $CDB $ODB "rpad(id::text, 3) || rpad(customer_name, 17) || lpad(credit_limit::text, 6)" \
    "$(printf '%-3s%-17s%6s' id customer_name credit)"
echo
say "OrderService.getCustomers (reads order_db's replica):"
printf '      %s$ common_client list-customers --order-service%s\n' "$D" "$N"
client list-customers --order-service 2>&1 | indent

step "Orders: created through OrderService, replicated to customer_db"
explain "createOrder inserts only if the customer is in order_db's replica (it waits up to 2 s" \
        "for a customer that has not arrived yet)."
orders=("101 250 NEW 1" "102 40 NEW 1" "103 999 PAID 2" "104 15 NEW 3" "105 320 SHIPPED 5")
for o in "${orders[@]}"; do
    read -r oid amt st cid <<<"$o"
    out=$(client create-order --id "$oid" --amount "$amt" --status "$st" --customer "$cid" 2>&1) \
        || die "createOrder failed: $out"
    printf '      %s$ common_client create-order --id %d --amount %d --status %s --customer %d%s\n        %s\n' \
        "$D" "$oid" "$amt" "$st" "$cid" "$N" "$out"
done
echo
say "A brand-new customer and, right away, an order for it:"
out=$(client create-customer --id 6 --name "Barbara Liskov" --credit 3000 2>&1) || die "createCustomer failed: $out"
t_ms=$(now_ms)
out2=$(client create-order --id 106 --amount 77 --status NEW --customer 6 2>&1) || die "createOrder for a fresh customer failed: $out2"
t_ms=$(( $(now_ms) - t_ms ))
printf '        %s\n        %s\n' "$out" "$out2"
say "createOrder returned after $t_ms ms: customer 6 first had to reach order_db's replica"
say "(OrderService polls for it every 50 ms, for up to 2 s)."
wait_for 30 "6 orders in customer_db" count_is $CDB orders 6
echo
say "Orders committed on order_db and applied on customer_db:"
lag_rows orders $ODB $CDB "rpad(id::text, 5) || lpad(order_amount::text, 6) || '  ' || rpad(status, 8) || lpad(customer_id::text, 8)" \
    "$(printf '%-5s%6s  %-8s%8s' id amount status customer)"
echo
say "OrderService.getOrdersForCustomer(\"1\") (orders joined with the customer replica):"
printf '      %s$ common_client list-orders --customer 1%s\n' "$D" "$N"
client list-orders --customer 1 2>&1 | indent
echo
say "The orders replica in customer_db (CustomerService's database):"
show $CDB "SELECT o.*, c.customer_name FROM orders o JOIN customer c ON c.id = o.customer_id ORDER BY o.id"

step "Monitoring: SELECT * FROM evrep.status on both databases"
explain "role publish: this node's outbox (depth 0 = everything confirmed by RabbitMQ) and last seq;" \
        "role apply: events applied from the other node, dead letters, lag = apply time - origin commit."
status_sql="SELECT role, origin, table_name AS table, outbox_depth AS depth, oldest_unsent_age AS oldest_unsent, last_seq, applied, skipped, dead_letters AS dead, to_char(last_applied_at, 'HH24:MI:SS.MS') AS last_applied_at, lag, coalesce(left(last_error, 50), '') AS last_error FROM evrep.status ORDER BY role DESC, table_name"
outbox_empty() { [[ $(q "$1" "SELECT count(*) FROM evrep.outbox") == 0 ]]; }
wait_for 30 "outboxes to drain" outbox_empty $CDB
wait_for 30 "outboxes to drain" outbox_empty $ODB
for n in $CDB $ODB; do
    say "on $n (SELECT * FROM evrep.status, columns renamed to fit):"
    show "$n" "$status_sql" | sed 1d
done
say "The workers (SELECT * FROM evrep.worker_state()):"
explain "The servers started while RabbitMQ was still booting: a worker whose first attempt" \
        "failed keeps that error as last_error, with its time, after it connected."
for n in $CDB $ODB; do
    show "$n" "SELECT '$n' AS node, worker, pid, connected, events, coalesce(left(last_error, 50), '') AS last_error, last_error_at FROM evrep.worker_state()" | sed 1d
done

step "Load: 200 customers and 200 orders through the services, 8 client threads"
explain "common_client load: phase 1 creates the customers through CustomerService and waits" \
        "until OrderService sees all of them; phase 2 creates the orders through OrderService" \
        "and waits until customer_db's replica holds all of them (--peer-db)."
printf '      %s$ common_client load --customers 200 --orders 200 --concurrency 8 --peer-db "%s"%s\n' \
    "$D" "$(pg_connstr $CDB)" "$N"
if [[ -t 1 ]]; then
    client load --customers 200 --orders 200 --concurrency 8 --peer-db "$(pg_connstr $CDB)" | indent
    rc=${PIPESTATUS[0]}
else
    client load --customers 200 --orders 200 --concurrency 8 --peer-db "$(pg_connstr $CDB)" 2>>"$LOG" | indent
    rc=${PIPESTATUS[0]}
fi
(( rc == 0 )) || die "common_client load failed (exit $rc)"
wait_for 60 "outboxes to drain" outbox_empty $CDB
wait_for 60 "outboxes to drain" outbox_empty $ODB
same_count() { [[ $(q $CDB "SELECT count(*) FROM $1") == $(q $ODB "SELECT count(*) FROM $1") ]]; }
wait_for 60 "customer counts to agree" same_count customer
wait_for 60 "orders counts to agree" same_count orders
echo
say "Row counts afterwards (outboxes empty):"
printf '        %-10s %12s %12s\n' table customer_db order_db
for t in customer orders; do
    printf '        %-10s %12s %12s\n' "$t" "$(q $CDB "SELECT count(*) FROM $t")" "$(q $ODB "SELECT count(*) FROM $t")"
done
md5_sql() { echo "SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM $1 t"; }
for t in customer orders; do
    if [[ $(q $CDB "$(md5_sql $t)") == $(q $ODB "$(md5_sql $t)") ]]; then
        say "$t: identical on both sides (md5 of all rows)"
    else
        die "$t differs between customer_db and order_db"
    fi
done
echo
say "Per-row lag over all rows (origin commit -> replica commit):"
lag_stats customer $CDB $ODB | indent
lag_stats orders $ODB $CDB | indent
echo
for n in $CDB $ODB; do
    say "evrep.status on $n:"
    show "$n" "$status_sql" | sed 1d
done

step "A third service joins late: report_db, a reporting service that only reads"
explain "customer_db and order_db hold rows published long ago, before any queue of a new" \
        "subscriber existed. evrep_subscribe(table) (copy_data => true, the default) asks the" \
        "table's origin for a copy: the origin's publisher sends the existing rows in primary-key" \
        "chunks, numbered in the same event stream as the live changes, and the live stream" \
        "follows; evrep.sync_status shows the copy on both sides."
say "A bulk import straight into the origins first, so that the copy has something to carry:"
bulk_c="INSERT INTO customer SELECT g, 'customer ' || g, g % 5000 FROM generate_series(1001, 21000) g"
bulk_o="INSERT INTO orders SELECT g, g % 1000, 'NEW', 1001 + g % 20000 FROM generate_series(1001, 21000) g"
printf '      %s%s=# %s;%s\n' "$D" $CDB "$bulk_c" "$N"
q $CDB "$bulk_c" >>"$LOG" 2>&1 || die "bulk import into customer_db failed"
printf '      %s%s=# %s;%s\n' "$D" $ODB "$bulk_o" "$N"
q $ODB "$bulk_o" >>"$LOG" 2>&1 || die "bulk import into order_db failed"
echo
say "report_db: a new PostgreSQL server (127.0.0.1:$REPORT_PG_PORT, evrep preloaded, evrep.node_name = '$RDB'):"
printf '      %s%s=# CREATE EXTENSION evrep;%s\n' "$D" $RDB "$N"
printf '      %s%s=# \\i services/schema/customer_db.sql   -- the same customer and orders tables%s\n' "$D" $RDB "$N"
topo_late_node "node $RDB port=$REPORT_PG_PORT schema=services/schema/customer_db.sql" >>"$LOG" 2>&1 \
    || die "cannot start report_db's server, or create the extension or the tables in it"
wait_for 60 "report_db's workers to connect to RabbitMQ" topo_ready $RDB
# ids above the bulk import; visibility through order_db itself (listing 20000
# customers through OrderService for every poll would be slow)
load_args=(load --customers 500 --orders 500 --concurrency 2 --rate 100 --id-base 21001 --order-id-base 21001
           --order-db "$(pg_connstr $ODB)" --peer-db "$(pg_connstr $CDB)")
say "The services keep taking requests while report_db subscribes (in the background, about 10 s):"
printf '      %s$ common_client %s --order-db ... --peer-db ...%s\n' "$D" "${load_args[*]:0:13}" "$N"
rm -f "$(bg_logfile report_load)"
bg_start report_load bash -c '"$@"; echo "load exit $?"' _ "$CLIENT" --customer-port "$CUST_SVC_PORT" \
    --order-port "$ORDER_SVC_PORT" --timeout 20 "${load_args[@]}" >>"$LOG" 2>&1 || die "cannot start common_client load"
printf '      %s%s=# SELECT evrep_subscribe('"'customer'"'); SELECT evrep_subscribe('"'orders'"');%s\n' "$D" $RDB "$N"
t0_ms=$(now_ms)
printf '%s\n' "SELECT evrep_subscribe('customer');" "SELECT evrep_subscribe('orders');" | pg_psql $RDB >>"$LOG" 2>&1 \
    || die "evrep_subscribe on report_db failed"
echo
say "evrep.sync_status on report_db while it copies (role receive; a line whenever it changes):"
sync_line="SELECT string_agg(format('%-8s %-9s %13s rows %3s chunks', table_name, phase,
                                  rows_copied || coalesce('/' || rows_estimated, ''), chunks), '   ' ORDER BY table_name)
           FROM evrep.sync_status WHERE role = 'receive'"
sync_done="SELECT count(*) FROM evrep.sync_status WHERE role = 'receive' AND phase = 'done'"
prev='' lines=0 deadline=$((SECONDS + 90))
while :; do
    cur=$(q $RDB "$sync_line" 2>>"$LOG")
    if [[ "$cur" != "$prev" ]]; then
        (( lines < 12 )) && printf '        %s+%5d ms%s  %s\n' "$D" $(( $(now_ms) - t0_ms )) "$N" "$cur"
        (( lines == 12 )) && printf '        ...\n'
        prev=$cur lines=$((lines + 1))
    fi
    [[ $(q $RDB "$sync_done" 2>>"$LOG") == 2 ]] && break
    (( SECONDS >= deadline )) && die "the copies to report_db did not finish within 90 s (sync_status: $cur)"
    sleep 0.2
done
(( lines > 12 )) && printf '        %s+%5d ms%s  %s\n' "$D" $(( $(now_ms) - t0_ms )) "$N" "$cur"
echo
say "Done: evrep.sync_status on report_db, and on the origins (role send, node = who asked):"
show $RDB "SELECT role, node AS origin, table_name, phase, rows_copied, chunks, to_char(requested_at, 'HH24:MI:SS.MS') AS requested_at, finished_at - started_at AS took, round(rows_per_second::numeric) AS rows_per_s FROM evrep.sync_status ORDER BY table_name" | sed 1d
for n in $CDB $ODB; do
    show $n "SELECT '$n' AS on_db, role, node AS requester, table_name, phase, rows_copied, chunks FROM evrep.sync_status WHERE role = 'send'" | sed 1d
done

step "report_db caught up: the same rows as the origins"
load_done() { grep -q '^load exit' "$(bg_logfile report_load)" && ! bg_is_running report_load; }
wait_for 120 "the background common_client load to finish" load_done
grep -q '^load exit 0$' "$(bg_logfile report_load)" \
    || die "the background common_client load failed; see $(bg_logfile report_load)"
say "The background load finished without errors (500 customers, 500 orders through the services)."
wait_for 60 "outboxes to drain" outbox_empty $CDB
wait_for 60 "outboxes to drain" outbox_empty $ODB
same_count3() { local c; c=$(q $CDB "SELECT count(*) FROM $1"); [[ $(q $ODB "SELECT count(*) FROM $1") == "$c" && $(q $RDB "SELECT count(*) FROM $1") == "$c" ]]; }
wait_for 60 "customer counts to agree" same_count3 customer
wait_for 60 "orders counts to agree" same_count3 orders
say "Row counts (outboxes empty):"
printf '        %-10s %12s %12s %12s\n' table customer_db order_db report_db
for t in customer orders; do
    printf '        %-10s %12s %12s %12s\n' "$t" "$(q $CDB "SELECT count(*) FROM $t")" \
        "$(q $ODB "SELECT count(*) FROM $t")" "$(q $RDB "SELECT count(*) FROM $t")"
done
for t in customer orders; do
    m=$(q $CDB "$(md5_sql $t)")
    if [[ $(q $ODB "$(md5_sql $t)") == "$m" && $(q $RDB "$(md5_sql $t)") == "$m" ]]; then
        say "$t: identical in all three databases (md5 of all rows)"
    else
        die "$t differs between customer_db, order_db and report_db"
    fi
done
say "dead letters: customer_db $(q $CDB "SELECT count(*) FROM evrep.dead_letter"), order_db $(q $ODB "SELECT count(*) FROM evrep.dead_letter"), report_db $(q $RDB "SELECT count(*) FROM evrep.dead_letter")"

if (( KEEP )); then
    date >"$STATE/KEPT"
    step "Left running (scripts/demo.sh keep)"
    cat <<EOF
      customer_db   psql -h 127.0.0.1 -p $CUST_PG_PORT -U postgres customer_db
      order_db      psql -h 127.0.0.1 -p $ORDER_PG_PORT -U postgres order_db
      report_db     psql -h 127.0.0.1 -p $REPORT_PG_PORT -U postgres report_db
                    e.g.  SELECT * FROM evrep.status;  SELECT * FROM evrep.worker_state();
                          SELECT * FROM evrep.sync_status;  SELECT evrep_resync('customer');  (report_db)
      services      $CLIENT customer        # create a sample customer
                    $CLIENT order           # create a sample order
                    $CLIENT list-customers --order-service
      RabbitMQ      $(topo_broker_url)   (queues: evrep.customer_db, evrep.order_db)
      logs          $(pg_logfile $CDB)
                    $(pg_logfile $ODB)
                    $(pg_logfile $RDB)
                    $(bg_logfile customer_service), $(bg_logfile order_service)

      Stop it all with:  ${B}make demo-stop${N}   (or scripts/demo.sh stop)
      Total time $((SECONDS - T_START)) s.
EOF
fi
exit 0
