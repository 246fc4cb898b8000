#!/usr/bin/env bash
# test_services.sh - end-to-end test of CustomerService, OrderService and
# CommonClient against a private PostgreSQL, TAP output (run with `prove`).
#
# Needs no evrep and no RabbitMQ: both databases get both tables, and where
# replication is needed the test copies rows into the replica table itself
# (a "fake replicator", psql COPY ... | psql COPY).
#
# Environment: EVREP_TEST_PGPORT (5821), EVREP_TEST_ORDER_PORT (9190),
# EVREP_TEST_CUSTOMER_PORT (9191), KEEP_TEST_DIR=1 keeps the work directory
# (it is always kept when a test failed).
#
# Starts: one PostgreSQL cluster (initdb as user postgres when run as root,
# unix socket only, under /tmp), customer_service, order_service, a fake
# replicator loop.  Stops exactly those, by pid / data directory, also on
# failure or interrupt.

set -u

HERE=$(cd "$(dirname "$0")" && pwd)
PGPORT_T=${EVREP_TEST_PGPORT:-5821}
ORDER_PORT=${EVREP_TEST_ORDER_PORT:-9190}
CUSTOMER_PORT=${EVREP_TEST_CUSTOMER_PORT:-9191}
PGBIN=${PGBIN:-$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
[ -x "$PGBIN/initdb" ] || PGBIN=/usr/lib/postgresql/15/bin

CLIENT=$HERE/common_client
WORK=$(mktemp -d /tmp/evrep-svc-test.XXXXXX)
chmod 755 "$WORK"
PGD=$WORK/pg                      # owned by postgres when we are root
. "$HERE/pg_private.sh"

CUST_PID=
ORDER_PID=
REPL_PID=
BG_PIDS=()

n=0
failures=0

# ---- TAP helpers ----------------------------------------------------------

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1)); failures=$((failures + 1))
    echo "not ok $n - $1"; shift
    local line
    for line in "$@"; do printf '%s\n' "$line" | sed 's/^/#   /'; done
}
diag() { printf '%s\n' "$@" | sed 's/^/# /'; }
bail() { echo "Bail out! $*"; exit 1; }

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
    if [ "$rc" -ne 0 ]; then not_ok "$desc" "exit $rc" "$out"; return 1; fi
    local p
    for p in "${patterns[@]}"; do
        if ! grep -qF -- "$p" <<<"$out"; then
            not_ok "$desc" "output lacks: $p" "$out"; return 1
        fi
    done
    ok "$desc"
}

# expect_fail DESC PATTERN ARGS... : non-zero exit and PATTERN in the output
expect_fail() {
    local desc=$1 pattern=$2; shift 2
    client "$@"
    if [ "$rc" -eq 0 ]; then not_ok "$desc" "unexpected success" "$out"; return 1; fi
    if ! grep -qF -- "$pattern" <<<"$out"; then
        not_ok "$desc" "exit $rc, output lacks: $pattern" "$out"; return 1
    fi
    ok "$desc"
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# ---- services ----------------------------------------------------------------

start_customer_service() {
    "$HERE/customer_service" --port "$CUSTOMER_PORT" --db "$CUSTOMER_DB" \
        >>"$WORK/customer_service.log" 2>&1 &
    CUST_PID=$!
}
start_order_service() {
    "$HERE/order_service" --port "$ORDER_PORT" --db "$ORDER_DB" \
        >>"$WORK/order_service.log" 2>&1 &
    ORDER_PID=$!
}

cleanup() {
    local pid
    stop_pid "$REPL_PID"
    for pid in "${BG_PIDS[@]}"; do stop_pid "$pid"; done
    stop_pid "$CUST_PID"
    stop_pid "$ORDER_PID"
    pg_teardown
    if [ "$failures" -gt 0 ] || [ "${KEEP_TEST_DIR:-0}" = 1 ]; then
        echo "# work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ============================================================================

# 1: build, warning-free
if build_out=$(make -C "$HERE" all 2>&1); then
    if grep -q 'warning:' <<<"$build_out"; then
        not_ok "services build without warnings" "$build_out"
    else
        ok "services build without warnings"
    fi
else
    not_ok "services build" "$build_out"
    bail "build failed"
fi

# 2: private PostgreSQL with both databases and schemas
if pg_setup "fsync = off"; then
    ok "private PostgreSQL on port $PGPORT_T with customer_db and order_db"
else
    not_ok "private PostgreSQL" "$(cat "$WORK/initdb.log" "$PGD/postgres.log" 2>/dev/null | tail -20)"
    bail "no database"
fi

# 3: services up
start_customer_service
start_order_service
if wait_port "$CUSTOMER_PORT" "$CUST_PID" && wait_port "$ORDER_PORT" "$ORDER_PID"; then
    ok "customer_service on $CUSTOMER_PORT and order_service on $ORDER_PORT accept connections"
else
    not_ok "services start" "$(tail -5 "$WORK"/*_service.log)"
    bail "services did not start"
fi

# 4: loopback only
if command -v ss >/dev/null; then
    listen=$(ss -Hltn "( sport = :$CUSTOMER_PORT or sport = :$ORDER_PORT )" | awk '{print $4}' | sort | tr '\n' ' ')
    expected=$(printf '%s\n' "127.0.0.1:$CUSTOMER_PORT" "127.0.0.1:$ORDER_PORT" | sort | tr '\n' ' ')
    if [ "$listen" = "$expected" ]; then
        ok "services listen on 127.0.0.1 only"
    else
        not_ok "services listen on 127.0.0.1 only" "ss: $listen"
    fi
fi

# ---- happy path ----
expect_ok "createCustomer 1" -- create-customer --id 1 --name Alice --credit 1000
expect_ok "CustomerService.getCustomers lists customer 1" \
    --out "Customer(id:1, customerName:Alice, creditLimit:1000)" -- list-customers
client list-customers --order-service
if [ "$rc" -eq 0 ] && ! grep -q "id:1," <<<"$out"; then
    ok "OrderService.getCustomers does not show it before replication"
else
    not_ok "OrderService.getCustomers does not show it before replication" "exit $rc" "$out"
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
if [ -z "$out" ]; then ok "... and prints nothing"; else not_ok "... and prints nothing" "$out"; fi
name200=$(printf 'n%.0s' $(seq 1 200))
expect_ok "a 200-character name is accepted" -- create-customer --id 3 --name "$name200" --credit 0
expect_ok "non-ASCII name is accepted and returned intact" --out "customerName:Zoë Ünal" -- \
    create-customer --id 4 --name "Zoë Ünal" --credit 5
client list-customers
if grep -qF "Customer(id:4, customerName:Zoë Ünal, creditLimit:5)" <<<"$out"; then
    ok "non-ASCII name round trip"; else not_ok "non-ASCII name round trip" "$out"; fi

# ---- bounded wait for a lagging replica ----
expect_ok "createCustomer 2" -- create-customer --id 2 --name Bob --credit 500
( sleep 0.7; copy_customers ) &
late=$!
BG_PIDS+=($late)
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
[ "$rc" = 1 ] && ok "... exit status 1 for an OperationFailedException" || not_ok "... exit status 1" "rc=$rc"
expect_fail "out-of-range customerId" "is not a valid integer" list-orders --customer 99999999999
t0=$(now_ms)
expect_fail "order for an unknown customer" "customer 999 not found (not yet replicated?)" \
    create-order --id 26 --amount 1 --status NEW --customer 999
t1=$(now_ms)
if [ $((t1 - t0)) -ge 1900 ] && [ $((t1 - t0)) -lt 6000 ]; then
    ok "... after the bounded wait ($((t1 - t0)) ms)"
else
    not_ok "... after the bounded wait" "took $((t1 - t0)) ms"
fi
client list-customers
if ! grep -qE "id:(20|21|22)," <<<"$out"; then ok "rejected customers were not stored"
else not_ok "rejected customers were not stored" "$out"; fi
client create-customer --id 30
[ "$rc" = 2 ] && ok "missing options: usage error, exit 2" || not_ok "missing options: usage error" "rc=$rc $out"
client frobnicate
[ "$rc" = 2 ] && ok "unknown command: exit 2" || not_ok "unknown command: exit 2" "rc=$rc $out"
out=$("$CLIENT" --customer-port 1 list-customers 2>&1); rc=$?
if [ "$rc" = 3 ] && grep -q "cannot connect to CustomerService" <<<"$out"; then
    ok "no service listening: exit 3 with a message"
else not_ok "no service listening: exit 3" "rc=$rc $out"; fi

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
    if [ "$r" = closed ] && kill -0 "$CUST_PID" 2>/dev/null; then
        ok "$what: connection closed at once, service alive"
    else
        not_ok "$what: connection closed at once, service alive" "$r"
    fi
done
expect_ok "service still answers after malformed requests" --out "id:1," -- list-customers

# ---- database outage ----
# a client that keeps its connection (and thereby the service thread's
# database session) across the restart
"$CLIENT" --customer-port "$CUSTOMER_PORT" list-customers --repeat 2 \
    --interval-ms 8000 >"$WORK/persistent.out" 2>&1 &
persistent=$!
BG_PIDS+=($persistent)
sleep 0.5
if pg_stop; then
    expect_fail "database stopped: createCustomer fails with an exception" "database unavailable" \
        create-customer --id 40 --name Down --credit 1
    expect_fail "database stopped: getCustomers fails with an exception" "database unavailable" \
        list-customers
    expect_fail "database stopped: createOrder fails with an exception" "database unavailable" \
        create-order --id 40 --amount 1 --status NEW --customer 1
    expect_fail "database stopped: getOrdersForCustomer fails with an exception" "database unavailable" \
        list-orders --customer 1
    if kill -0 "$CUST_PID" 2>/dev/null && kill -0 "$ORDER_PID" 2>/dev/null; then
        ok "services keep running while the database is down"
    else
        not_ok "services keep running while the database is down"
    fi
    pg_start
    expect_ok "database restarted: next createCustomer works" -- \
        create-customer --id 41 --name Back --credit 1
    expect_ok "database restarted: next createOrder works" -- \
        create-order --id 41 --amount 1 --status NEW --customer 1
    expect_ok "database restarted: getCustomers works" --out "id:41," -- list-customers
    wait "$persistent"; prc=$?
    if [ "$prc" = 0 ] && [ "$(grep -c 'id:1, customerName:Alice' "$WORK/persistent.out")" = 2 ]; then
        ok "a connection held across the restart gets answers before and after it"
    else
        not_ok "a connection held across the restart gets answers before and after it" \
            "exit $prc" "$(cat "$WORK/persistent.out")"
    fi
else
    not_ok "stop the database" "$(tail -5 "$PGD/postgres.log")"
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
BG_PIDS+=("${pids[@]}")
cfail=0
for p in "${pids[@]}"; do wait "$p" || cfail=$((cfail + 1)); done
t1=$(now_ms)
if [ "$cfail" = 0 ] && [ $((t1 - t0)) -lt 9000 ]; then
    ok "8 clients holding connections are served concurrently ($((t1 - t0)) ms)"
else
    not_ok "8 clients holding connections are served concurrently" "$cfail failed, $((t1 - t0)) ms"
fi

# load through 8 threads, with the fake replicator running both ways
( while :; do copy_customers; copy_orders; sleep 0.1; done ) >/dev/null 2>&1 &
REPL_PID=$!
for c in 1 8; do
    client load --customers 200 --orders 400 --concurrency $c --peer-db "$CUSTOMER_DB"
    if [ "$rc" = 0 ] && grep -q "^createCustomer .* 200 *0 " <<<"$out" &&
       grep -q "^createOrder .* 400 *0 " <<<"$out" &&
       grep -q "customers visible via OrderService.getCustomers" <<<"$out" &&
       grep -q "orders visible in the peer database" <<<"$out"; then
        ok "load --concurrency $c: 200 customers and 400 orders created and seen on the other side"
    else
        not_ok "load --concurrency $c" "exit $rc" "$out"
    fi
    diag "$(grep -v '^load: ' <<<"$out")"
done
stop_pid "$REPL_PID"; REPL_PID=

# ---- clean shutdown ----
"$CLIENT" --customer-port "$CUSTOMER_PORT" list-customers --repeat 3 \
    --interval-ms 3000 >/dev/null 2>&1 &
idle=$!
BG_PIDS+=($idle)
sleep 0.5
for svc in CUST ORDER; do
    pidvar=${svc}_PID
    pid=${!pidvar}
    t0=$(now_ms)
    kill -TERM "$pid"
    wait "$pid"; src=$?
    t1=$(now_ms)
    if [ "$src" = 0 ] && [ $((t1 - t0)) -lt 5000 ]; then
        ok "$svc service exits 0 on SIGTERM ($((t1 - t0)) ms, idle client connected)"
    else
        not_ok "$svc service exits 0 on SIGTERM" "exit $src after $((t1 - t0)) ms"
    fi
    printf -v "$pidvar" '%s' ""
done
wait "$idle" 2>/dev/null

echo "1..$n"
[ "$failures" = 0 ]
