#!/usr/bin/env bash
# bench_services.sh - throughput and latency of the demo services through
# `common_client load`, against a private PostgreSQL (no evrep needed).
#
#   ./bench_services.sh [CUSTOMERS [ORDERS [CONCURRENCY...]]]
#   defaults: 2000 customers, 4000 orders, concurrency 1 and 8
#
# createCustomer runs go to CustomerService; the customers are then copied
# into order_db's replica (what evrep would do) and the createOrder runs go
# to OrderService for those customers.  Visibility is not measured here
# (--visibility-timeout 0): without evrep there is no replication to time.
# Environment: BENCH_FSYNC (on), EVREP_TEST_PGPORT (5821),
# EVREP_TEST_ORDER_PORT (9190), EVREP_TEST_CUSTOMER_PORT (9191).
# Starts its own PostgreSQL and services and stops exactly those.

set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PGPORT_T=${EVREP_TEST_PGPORT:-5821}
ORDER_PORT=${EVREP_TEST_ORDER_PORT:-9190}
CUSTOMER_PORT=${EVREP_TEST_CUSTOMER_PORT:-9191}
PGBIN=${PGBIN:-$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
[ -x "$PGBIN/initdb" ] || PGBIN=/usr/lib/postgresql/15/bin
CUSTOMERS=${1:-2000}
ORDERS=${2:-4000}
shift $(( $# > 2 ? 2 : $# ))
CONCURRENCY=${*:-1 8}

WORK=$(mktemp -d /tmp/evrep-svc-bench.XXXXXX)
chmod 755 "$WORK"
PGD=$WORK/pg
. "$HERE/pg_private.sh"
CUST_PID=
ORDER_PID=

cleanup() {
    stop_pid "$CUST_PID"
    stop_pid "$ORDER_PID"
    pg_teardown
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make -s -C "$HERE" all || exit 1
pg_setup "fsync = ${BENCH_FSYNC:-on}" || { cat "$WORK/initdb.log" "$PGD/postgres.log"; exit 1; }
"$HERE/customer_service" --port "$CUSTOMER_PORT" --db "$CUSTOMER_DB" >"$WORK/cs.log" 2>&1 &
CUST_PID=$!
"$HERE/order_service" --port "$ORDER_PORT" --db "$ORDER_DB" >"$WORK/os.log" 2>&1 &
ORDER_PID=$!
wait_port "$CUSTOMER_PORT" "$CUST_PID" && wait_port "$ORDER_PORT" "$ORDER_PID" || {
    cat "$WORK"/*.log; exit 1; }

load() {
    "$HERE/common_client" --customer-port "$CUSTOMER_PORT" --order-port "$ORDER_PORT" \
        load --visibility-timeout 0 "$@" 2>/dev/null | grep -v -e '^all ' -e 'not measured'
}

echo "# $(nproc) CPUs, fsync=${BENCH_FSYNC:-on}, $CUSTOMERS customers / $ORDERS orders per run"
for c in $CONCURRENCY; do
    load --customers "$CUSTOMERS" --orders 0 --concurrency "$c" || exit 1
done
copy_customers
for c in $CONCURRENCY; do
    load --customers 0 --orders "$ORDERS" --concurrency "$c" || exit 1
done
