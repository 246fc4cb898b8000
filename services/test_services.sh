#!/usr/bin/env bash
# test_services.sh - end-to-end test of CustomerService, OrderService and
# CommonClient against a private PostgreSQL, TAP output (run with `prove`).
#
# Needs no evrep and no RabbitMQ: both databases get both tables, and where
# replication is needed the test copies rows into the replica table itself
# (a "fake replicator", psql COPY ... | psql COPY).
#
# Uses the project's harness (test/lib/tap.sh, topology.sh, bg_start), which
# stops exactly what this script started, also on failure or interrupt:
# one PostgreSQL server described to topology.sh (node "svc", evrep=off, with
# databases customer_db and order_db), customer_service, order_service, the
# fake replicator loop.
# Client processes run as jobs of this shell (their exit status is
# checked); any still running at exit is stopped by its pid.
#
# Environment: EVREP_TEST_DIR (the work directory is made below it; default
# /tmp), EVREP_TEST_PGPORT (5891), EVREP_TEST_ORDER_PORT (9190),
# EVREP_TEST_CUSTOMER_PORT (9191), KEEP_TEST_DIR=1 keeps the work directory
# (it is always kept when a test failed).

set -uo pipefail

# shellcheck source=test_lib.sh
source "$(dirname "$0")/test_lib.sh" evrep-svc-test tap
HERE=$SVC_DIR

PGPORT_T=${EVREP_TEST_PGPORT:-5891}
ORDER_PORT=${EVREP_TEST_ORDER_PORT:-9190}
CUSTOMER_PORT=${EVREP_TEST_CUSTOMER_PORT:-9191}
CLIENT=$HERE/common_client
PG=svc                            # the topology node holding both databases
WORK=$EVREP_TEST_DIR

# ---- helpers ----------------------------------------------------------------

# run the client; sets $out (stdout+stderr) and $rc
client() {
    out=$("$CLIENT" --host 127.0.0.1 --customer-port "$CUSTOMER_PORT" \
                    --order-port "$ORDER_PORT" --timeout 20 "$@" 2>&1)
    rc=$?
}

# expect_ok DESC [--out PATTERN]... -- ARGS...
expect_ok() {
    local desc=$1; shift
    local patterns=()
    while [ "$1" = --out ]; do patterns+=("$2"); shift 2; done
    [ "$1" = -- ] && shift
    client "$@"
    if [ "$rc" -ne 0 ]; then fail "$desc" "exit $rc"$'\n'"$out"; return 1; fi
    local p
    for p in "${patterns[@]}"; do
        if ! grep -qF -- "$p" <<<"$out"; then
            fail "$desc" "output lacks: $p"$'\n'"$out"; return 1
        fi
    done
    pass "$desc"
}

# expect_fail DESC PATTERN ARGS... : non-zero exit and PATTERN in the output
expect_fail() {
    local desc=$1 pattern=$2; shift 2
    client "$@"
    if [ "$rc" -eq 0 ]; then fail "$desc" "unexpected success"$'\n'"$out"; return 1; fi
    if ! grep -qF -- "$pattern" <<<"$out"; then
        fail "$desc" "exit $rc, output lacks: $pattern"$'\n'"$out"; return 1
    fi
    pass "$desc"
}

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

psql_db() { local db=$1; shift; pg_psql "$PG" -d "$db" "$@"; }

# fake replication (what evrep does for real): copy the owner's rows into
# the other database's replica table
copy_customers() {
    psql_db customer_db -c "COPY customer TO STDOUT" |
        psql_db order_db -c "CREATE TEMP TABLE t (LIKE customer)" \
            -c "COPY t FROM STDIN" \
            -c "INSERT INTO customer SELECT * FROM t ON CONFLICT (id) DO NOTHING"
}
copy_orders() {
    psql_db order_db -c "COPY orders TO STDOUT" |
        psql_db customer_db -c "CREATE TEMP TABLE t (LIKE orders)" \
            -c "COPY t FROM STDIN" \
            -c "INSERT INTO orders SELECT * FROM t ON CONFLICT (id) DO NOTHING"
}

# start_service NAME PROG [ARGS...]: PROG under bg_start, through a shell
# that forwards SIGTERM to it and writes its exit status to
# $WORK/NAME.status: bg_start detaches its process, so this script cannot
# wait for the status itself.  Helper kept here, not in test/lib.
cat >"$WORK/with_status.sh" <<'EOF_WRAPPER'
status=$1; shift
"$@" & child=$!
interrupted=
trap 'kill -TERM $child 2>/dev/null; interrupted=1' TERM
wait "$child"; rc=$?
# a wait cut short by the trap returns 143, not the child's status: wait
# again (bash keeps the status of a child that has exited meanwhile)
while [ -n "$interrupted" ]; do
    interrupted=
    wait "$child"; rc=$?
done
echo "$rc" >"$status"
EOF_WRAPPER
start_service() {
    local name=$1; shift
    rm -f "$WORK/$name.status"
    bg_start "$name" bash "$WORK/with_status.sh" "$WORK/$name.status" "$@"
}
# service_up NAME PORT: NAME runs and accepts connections on PORT
service_up() { wait_until 10 "bg_is_running $1 && evrep_port_in_use $2" 0.1; }

start_customer_service() {
    start_service customer_service "$HERE/customer_service" --port "$CUSTOMER_PORT" \
        --db "$CUSTOMER_DB"
}
start_order_service() {
    start_service order_service "$HERE/order_service" --port "$ORDER_PORT" --db "$ORDER_DB"
}

stop_jobs() { local p; for p in $(jobs -pr); do kill "$p" 2>/dev/null; done; }
on_exit stop_jobs

# ============================================================================

# 1: build, warning-free
if build_out=$(make -C "$HERE" all 2>&1); then
    if grep -q 'warning:' <<<"$build_out"; then
        fail "services build without warnings" "$build_out"
    else
        pass "services build without warnings"
    fi
else
    fail "services build" "$build_out"
    BAIL_OUT "build failed"
fi

# 2: private PostgreSQL (no evrep, no broker) with both databases and schemas
topo_up_tap <<EOF
node $PG port=$PGPORT_T evrep=off db=customer_db schema="$HERE/schema/customer_db.sql" \
    extra_db=order_db:"$HERE/schema/order_db.sql" conf="fsync = off"
EOF
CUSTOMER_DB=$(pg_connstr "$PG" customer_db)
ORDER_DB=$(pg_connstr "$PG" order_db)

# 3: services up
start_customer_service
start_order_service
ok "customer_service on $CUSTOMER_PORT and order_service on $ORDER_PORT accept connections" \
    eval 'service_up customer_service "$CUSTOMER_PORT" && service_up order_service "$ORDER_PORT"' \
    || BAIL_OUT "services did not start"

# 4: loopback only
if command -v ss >/dev/null; then
    listen=$(ss -Hltn "( sport = :$CUSTOMER_PORT or sport = :$ORDER_PORT )" | awk '{print $4}' | sort | tr '\n' ' ')
    expected=$(printf '%s\n' "127.0.0.1:$CUSTOMER_PORT" "127.0.0.1:$ORDER_PORT" | sort | tr '\n' ' ')
    is "$listen" "$expected" "services listen on 127.0.0.1 only"
fi

# ---- happy path ----
expect_ok "createCustomer 1" -- create-customer --id 1 --name Alice --credit 1000
expect_ok "CustomerService.getCustomers lists customer 1" \
    --out "Customer(id:1, customerName:Alice, creditLimit:1000)" -- list-customers
client list-customers --order-service
if [ "$rc" -eq 0 ] && ! grep -q "id:1," <<<"$out"; then
    pass "OrderService.getCustomers does not show it before replication"
else
    fail "OrderService.getCustomers does not show it before replication" "exit $rc"$'\n'"$out"
fi
copy_customers
expect_ok "OrderService.getCustomers shows it after copying into order_db's replica" \
    --out "Customer(id:1, customerName:Alice, creditLimit:1000)" -- list-customers --order-service
expect_ok "createOrder 10 for customer 1" -- \
    create-order --id 10 --amount 250 --status NEW --customer 1
expect_ok "getOrdersForCustomer returns the order with its customer" \
    --out "Orders(id:10, orderAmount:250, status:NEW, customer:Customer(id:1, customerName:Alice, creditLimit:1000))" \
    -- list-orders --customer 1
expect_ok "getOrdersForCustomer of a customer without orders is empty" -- list-orders --customer 12345
is "$out" "" "... and prints nothing"
name200=$(printf 'n%.0s' $(seq 1 200))
expect_ok "a 200-character name is accepted" -- create-customer --id 3 --name "$name200" --credit 0
expect_ok "non-ASCII name is accepted and returned intact" --out "customerName:Zoë Ünal" -- \
    create-customer --id 4 --name "Zoë Ünal" --credit 5
client list-customers
if grep -qF "Customer(id:4, customerName:Zoë Ünal, creditLimit:5)" <<<"$out"; then
    pass "non-ASCII name round trip"; else fail "non-ASCII name round trip" "$out"; fi

# ---- bounded wait for a lagging replica ----
expect_ok "createCustomer 2" -- create-customer --id 2 --name Bob --credit 500
( sleep 0.7; copy_customers ) &
late=$!
t0=$(now_ms)
expect_ok "createOrder waits for a customer that is replicated 0.7 s later" -- \
    create-order --id 11 --amount 40 --status NEW --customer 2
t1=$(now_ms)
diag "createOrder took $((t1 - t0)) ms"
wait "$late"

# ---- errors ----
expect_fail "duplicate customer id" "customer 1 already exists" \
    create-customer --id 1 --name Again --credit 1
expect_fail "duplicate order id" "order 10 already exists" \
    create-order --id 10 --amount 1 --status NEW --customer 1
expect_fail "empty customer name" "customerName must not be empty" \
    create-customer --id 20 --name "" --credit 1
expect_fail "blank customer name" "customerName must not be empty" \
    create-customer --id 20 --name "   " --credit 1
name300=$(printf 'x%.0s' $(seq 1 300))
expect_fail "300-character customer name" "customerName is too long (300 characters, at most 200)" \
    create-customer --id 21 --name "$name300" --credit 1
expect_fail "negative credit limit" "creditLimit must not be negative (got -5)" \
    create-customer --id 22 --name Neg --credit -5
expect_fail "negative order amount" "orderAmount must not be negative (got -7)" \
    create-order --id 23 --amount -7 --status NEW --customer 1
expect_fail "empty status" "status must not be empty" \
    create-order --id 24 --amount 1 --status "" --customer 1
expect_fail "300-character status" "status is too long" \
    create-order --id 25 --amount 1 --status "$name300" --customer 1
expect_fail "non-numeric customerId" "customerId 'abc' is not a valid integer" \
    list-orders --customer abc
is "$rc" 1 "... exit status 1 for an OperationFailedException"
expect_fail "out-of-range customerId" "is not a valid integer" list-orders --customer 99999999999
t0=$(now_ms)
expect_fail "order for an unknown customer" "customer 999 not found (not yet replicated?)" \
    create-order --id 26 --amount 1 --status NEW --customer 999
t1=$(now_ms)
if [ $((t1 - t0)) -ge 1900 ] && [ $((t1 - t0)) -lt 6000 ]; then
    pass "... after the bounded wait ($((t1 - t0)) ms)"
else
    fail "... after the bounded wait" "took $((t1 - t0)) ms"
fi
client list-customers
unlike "$out" "id:(20|21|22)," "rejected customers were not stored"
client create-customer --id 30
is "$rc" 2 "missing options: usage error, exit 2"
client frobnicate
is "$rc" 2 "unknown command: exit 2"
out=$("$CLIENT" --customer-port 1 list-customers 2>&1); rc=$?
like "$rc:$out" "^3:.*cannot connect to CustomerService" "no service listening: exit 3 with a message"

# ---- the prototype's demo commands ----
expect_ok "'customer' creates a sample customer and lists" --out "created Customer(id:5," \
    --out "Customer(id:1, customerName:Alice" -- customer
copy_customers
expect_ok "'order' creates a sample order and lists the customer's orders" \
    --out "created Orders(id:12," --out "Orders(id:10, orderAmount:250" -- order

# ---- malformed and hostile requests ----
# raw_request PORT FILE: send FILE's bytes; "closed" if the service closes
# (or resets) the connection within 3 s, "open" otherwise
raw_request() {
    local r
    exec 3<>"/dev/tcp/127.0.0.1/$1" || { echo "noconnect"; return; }
    cat "$2" >&3 2>/dev/null
    timeout 3 cat <&3 >/dev/null 2>&1
    if [ $? = 124 ]; then r=open; else r=closed; fi
    exec 3<&- 3>&-
    echo "$r"
}
hdr() {   # hdr METHOD: strict binary T_CALL message header, seqid 1
    printf '\x80\x01\x00\x01'
    printf "\\x$(printf %02x $((${#1} >> 24 & 255)))\\x$(printf %02x $((${#1} >> 16 & 255)))\\x$(printf %02x $((${#1} >> 8 & 255)))\\x$(printf %02x $((${#1} & 255)))"
    printf '%s' "$1"
    printf '\x00\x00\x00\x01'
}
{ hdr createCustomer; printf '\x0c\x00\x01\x0b\x00\x02\x03\x20\x00\x00'; } >"$WORK/big.bin"
{ hdr getCustomers; printf '\x0c\x00\x63%.0s' $(seq 1 100000); } >"$WORK/deep.bin"
printf 'GET / HTTP/1.0\r\n\r\n' >"$WORK/http.bin"
for kind in big:"a string claiming 50 MB" deep:"100000 nested structs" http:"an HTTP request"; do
    f=${kind%%:*}; what=${kind#*:}
    r=$(raw_request "$CUSTOMER_PORT" "$WORK/$f.bin")
    if [ "$r" = closed ] && bg_is_running customer_service; then
        pass "$what: connection closed at once, service alive"
    else
        fail "$what: connection closed at once, service alive" "$r"
    fi
done
expect_ok "service still answers after malformed requests" --out "id:1," -- list-customers

# ---- database outage ----
# a client that keeps its connection (and thereby the service thread's
# database session) across the restart
"$CLIENT" --customer-port "$CUSTOMER_PORT" list-customers --repeat 2 \
    --interval-ms 8000 >"$WORK/persistent.out" 2>&1 &
persistent=$!
sleep 0.5
if ok "stop the database" pg_stop "$PG"; then
    expect_fail "database stopped: createCustomer fails with an exception" "database unavailable" \
        create-customer --id 40 --name Down --credit 1
    expect_fail "database stopped: getCustomers fails with an exception" "database unavailable" \
        list-customers
    expect_fail "database stopped: createOrder fails with an exception" "database unavailable" \
        create-order --id 40 --amount 1 --status NEW --customer 1
    expect_fail "database stopped: getOrdersForCustomer fails with an exception" "database unavailable" \
        list-orders --customer 1
    ok "services keep running while the database is down" \
        eval 'bg_is_running customer_service && bg_is_running order_service'
    ok "start the database again" pg_start "$PG"
    expect_ok "database restarted: next createCustomer works" -- \
        create-customer --id 41 --name Back --credit 1
    expect_ok "database restarted: next createOrder works" -- \
        create-order --id 41 --amount 1 --status NEW --customer 1
    expect_ok "database restarted: getCustomers works" --out "id:41," -- list-customers
    wait "$persistent"; prc=$?
    if [ "$prc" = 0 ] && [ "$(grep -c 'id:1, customerName:Alice' "$WORK/persistent.out")" = 2 ]; then
        pass "a connection held across the restart gets answers before and after it"
    else
        fail "a connection held across the restart gets answers before and after it" \
            "exit $prc"$'\n'"$(cat "$WORK/persistent.out")"
    fi
fi

# ---- concurrency ----
# 8 clients that each hold their connection for ~1.5 s: a server that serves
# one connection at a time would need >= 12 s
t0=$(now_ms)
pids=()
for i in $(seq 1 8); do
    "$CLIENT" --customer-port "$CUSTOMER_PORT" list-customers --repeat 4 \
        --interval-ms 500 >"$WORK/conc$i.out" 2>&1 &
    pids+=($!)
done
cfail=0
for p in "${pids[@]}"; do wait "$p" || cfail=$((cfail + 1)); done
t1=$(now_ms)
if [ "$cfail" = 0 ] && [ $((t1 - t0)) -lt 9000 ]; then
    pass "8 clients holding connections are served concurrently ($((t1 - t0)) ms)"
else
    fail "8 clients holding connections are served concurrently" "$cfail failed, $((t1 - t0)) ms"
fi

# load through 8 threads, with the fake replicator running both ways (a
# shell of its own, with pg.sh and the copy functions)
{
    printf 'source %q\nPG=%q\n' "$HERE/../test/lib/pg.sh" "$PG"
    declare -f psql_db copy_customers copy_orders
    echo 'while :; do copy_customers; copy_orders; sleep 0.1; done'
} >"$WORK/replicator.sh"
bg_start replicator bash "$WORK/replicator.sh"
for c in 1 8; do
    client load --customers 200 --orders 400 --concurrency $c --peer-db "$CUSTOMER_DB"
    if [ "$rc" = 0 ] && grep -q "^createCustomer .* 200 *0 " <<<"$out" &&
       grep -q "^createOrder .* 400 *0 " <<<"$out" &&
       grep -q "customers visible via OrderService.getCustomers" <<<"$out" &&
       grep -q "orders visible in the peer database" <<<"$out"; then
        pass "load --concurrency $c: 200 customers and 400 orders created and seen on the other side"
    else
        fail "load --concurrency $c" "exit $rc"$'\n'"$out"
    fi
    diag "$(grep -v '^load: ' <<<"$out")"
done
bg_stop replicator

# ---- clean shutdown ----
"$CLIENT" --customer-port "$CUSTOMER_PORT" list-customers --repeat 3 \
    --interval-ms 3000 >/dev/null 2>&1 &
idle=$!
sleep 0.5
for svc in customer_service order_service; do
    t0=$(now_ms)
    kill -TERM "$(bg_pid "$svc")"
    evrep_wait_pid_exit "$(bg_pid "$svc")" 10
    t1=$(now_ms)
    src=$(cat "$WORK/$svc.status" 2>/dev/null || echo "none")
    if [ "$src" = 0 ] && [ $((t1 - t0)) -lt 5000 ]; then
        pass "$svc exits 0 on SIGTERM ($((t1 - t0)) ms, idle client connected)"
    else
        fail "$svc exits 0 on SIGTERM" "exit $src after $((t1 - t0)) ms"
    fi
done
wait "$idle" 2>/dev/null

done_testing
svc_test_end
