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
# Environment: BENCH_FSYNC (on), EVREP_TEST_DIR (the work directory is made
# below it; default /tmp), EVREP_TEST_PGPORT (5891), EVREP_TEST_ORDER_PORT
# (9190), EVREP_TEST_CUSTOMER_PORT (9191).
# Starts its own PostgreSQL (a test/lib/topology.sh node with evrep=off)
# and services (bg_start) and stops exactly those.

set -uo pipefail
# shellcheck source=test_lib.sh
source "$(dirname "$0")/test_lib.sh" evrep-svc-bench
HERE=$SVC_DIR

PGPORT_T=${EVREP_TEST_PGPORT:-5891}
ORDER_PORT=${EVREP_TEST_ORDER_PORT:-9190}
CUSTOMER_PORT=${EVREP_TEST_CUSTOMER_PORT:-9191}
PG=svc
CUSTOMERS=${1:-2000}
ORDERS=${2:-4000}
shift $(( $# > 2 ? 2 : $# ))
CONCURRENCY=${*:-1 8}

cleanup() {
    evrep_stop_registered
    rm -rf "$EVREP_TEST_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql_db() { local db=$1; shift; pg_psql "$PG" -d "$db" "$@"; }

make -s -C "$HERE" all || exit 1
topo_up 2>"$EVREP_TEST_DIR/setup.log" <<EOF || { cat "$EVREP_TEST_DIR/setup.log"; exit 1; }
node $PG port=$PGPORT_T evrep=off db=customer_db schema="$HERE/schema/customer_db.sql" \
    extra_db=order_db:"$HERE/schema/order_db.sql" conf="fsync = ${BENCH_FSYNC:-on}"
EOF
bg_start cs "$HERE/customer_service" --port "$CUSTOMER_PORT" \
    --db "$(pg_connstr "$PG" customer_db)" 2>/dev/null
bg_start os "$HERE/order_service" --port "$ORDER_PORT" \
    --db "$(pg_connstr "$PG" order_db)" 2>/dev/null
for i in $(seq 1 100); do
    evrep_port_in_use "$CUSTOMER_PORT" && evrep_port_in_use "$ORDER_PORT" && break
    if ! bg_is_running cs || ! bg_is_running os || (( i == 100 )); then
        cat "$(bg_logfile cs)" "$(bg_logfile os)"; exit 1
    fi
    sleep 0.1
done

load() {
    "$HERE/common_client" --customer-port "$CUSTOMER_PORT" --order-port "$ORDER_PORT" \
        load --visibility-timeout 0 "$@" 2>/dev/null | grep -v -e '^all ' -e 'not measured'
}

echo "# $(nproc) CPUs, fsync=${BENCH_FSYNC:-on}, $CUSTOMERS customers / $ORDERS orders per run"
for c in $CONCURRENCY; do
    load --customers "$CUSTOMERS" --orders 0 --concurrency "$c" || exit 1
done
# what evrep would do: copy the customers into order_db's replica
psql_db customer_db -c "COPY customer TO STDOUT" |
    psql_db order_db -c "COPY customer FROM STDIN" || exit 1
for c in $CONCURRENCY; do
    load --customers 0 --orders "$ORDERS" --concurrency "$c" || exit 1
done
