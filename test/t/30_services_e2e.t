#!/usr/bin/env bash
# 30_services_e2e: the real CustomerService and OrderService on two evrep
# nodes and one RabbitMQ, driven through common_client.
#
#   customer_db (t30_customer_db): CustomerService's database, owns customer,
#                                  subscribes orders
#   order_db    (t30_order_db):    OrderService's database, owns orders,
#                                  subscribes customer
#
# Each node also publishes its replica table, so that an echo would be
# visible: if rows written by the apply worker were captured again, the
# replica table's publication would get a last_seq > 0 and outbox rows.
#
# Checks: a customer created via CustomerService shows up in
# OrderService.getCustomers; an order created via OrderService shows up in
# customer_db's orders with the right columns; createOrder right after
# createCustomer succeeds (bounded wait for the replica); every error case
# comes back as OperationFailedException through the client and writes
# nothing; `common_client load` at concurrency 8 converges; no loops.
#
# Builds the services (make -C services) if their binaries are missing.
# Ports: AMQP 5741, PostgreSQL 5871 (customer_db) and 5872 (order_db),
# OrderService 9290, CustomerService 9291.
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SVC=$ROOT/services
CLIENT=$SVC/common_client
MQ=t30mq CDB=t30_customer_db ODB=t30_order_db
AMQP_PORT=5741 CDB_PORT=5871 ODB_PORT=5872 ORDER_SVC_PORT=9290 CUST_SVC_PORT=9291

# --- the services' binaries ------------------------------------------------------
missing=()
for b in customer_service order_service common_client; do
    [[ -x "$SVC/$b" ]] || missing+=("$b")
done
if (( ${#missing[@]} )); then
    note "services not built (missing: ${missing[*]}); running make -C services"
    if build_out=$(make -C "$SVC" 2>&1); then
        pass "make -C services built ${missing[*]}"
    else
        fail "make -C services" "$(tail -n 30 <<<"$build_out")"
        BAIL_OUT "cannot build the services: make -C services failed (its output is above)"
    fi
else
    pass "services are built (customer_service, order_service, common_client)"
fi

# --- helpers -------------------------------------------------------------------------
count() { row_count "$@"; }
# client ARGS...: run common_client; sets OUT (stdout + stderr) and RC.
client() {
    OUT=$("$CLIENT" --host 127.0.0.1 --customer-port "$CUST_SVC_PORT" --order-port "$ORDER_SVC_PORT" \
              --timeout 20 "$@" 2>&1) && RC=0 || RC=$?
}
# client_ok DESC ARGS...: the call succeeds.
client_ok() {
    local desc=$1; shift
    client "$@"
    (( RC == 0 )) && { pass "$desc"; return; }
    fail "$desc" "common_client $* -> exit $RC: $OUT"
}
# client_exception DESC MESSAGE ARGS...: exit 1 and "OperationFailedException: MESSAGE".
client_exception() {
    local desc=$1 msg=$2; shift 2
    client "$@"
    if (( RC == 1 )) && [[ "$OUT" == *"OperationFailedException: $msg"* ]]; then
        pass "$desc"; return
    fi
    fail "$desc" "common_client $* -> exit $RC: $OUT"$'\n'"expected exit 1 and: OperationFailedException: $msg"
}
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

# --- RabbitMQ and both nodes: each publishes both tables, subscribes its replica ----
topo_up_tap <<EOF
broker $MQ port=$AMQP_PORT
node $CDB port=$CDB_PORT publish=customer,orders subscribe=orders schema="$SVC/schema/customer_db.sql"
node $ODB port=$ODB_PORT publish=orders,customer subscribe=customer schema="$SVC/schema/order_db.sql"
EOF

# --- the services -------------------------------------------------------------------------
bg_start t30-customer_service "$SVC/customer_service" --port "$CUST_SVC_PORT" --db "$(pg_connstr "$CDB")"
bg_start t30-order_service "$SVC/order_service" --port "$ORDER_SVC_PORT" --db "$(pg_connstr "$ODB")"
ok "CustomerService listens on $CUST_SVC_PORT" \
    wait_until 20 "bg_is_running t30-customer_service && evrep_port_in_use $CUST_SVC_PORT" \
    || BAIL_OUT "CustomerService did not start"
ok "OrderService listens on $ORDER_SVC_PORT" \
    wait_until 20 "bg_is_running t30-order_service && evrep_port_in_use $ORDER_SVC_PORT" \
    || BAIL_OUT "OrderService did not start"

# --- customer: CustomerService -> customer_db -> evrep -> order_db -> OrderService ---------
client_ok "createCustomer 1 via CustomerService" create-customer --id 1 --name Ann --credit 100
ok "customer 1 appears in OrderService.getCustomers (order_db's replica)" \
    wait_until 30 'client list-customers --order-service; [[ $OUT == *"Customer(id:1, customerName:Ann, creditLimit:100)"* ]]'
note "visible through OrderService after ${WAIT_ELAPSED_MS} ms"
is "$(sql "$ODB" "SELECT id, customer_name, credit_limit FROM customer")" "1|Ann|100" \
   "order_db's customer replica holds the row with its columns"

client_ok "createCustomer 3 with a non-ASCII name" create-customer --id 3 --name "Zoë Ünal" --credit 0
ok "... replicated intact to OrderService.getCustomers" \
    wait_until 30 'client list-customers --order-service; [[ $OUT == *"Customer(id:3, customerName:Zoë Ünal, creditLimit:0)"* ]]'

# --- order: OrderService -> order_db -> evrep -> customer_db --------------------------------
client_ok "createOrder 10 for customer 1 via OrderService" \
    create-order --id 10 --amount 250 --status NEW --customer 1
ok "order 10 appears in customer_db's orders" \
    wait_until 30 '[[ $(count "$CDB" "orders WHERE id = 10") == 1 ]]'
note "visible in customer_db after ${WAIT_ELAPSED_MS} ms"
is "$(sql "$CDB" "SELECT id, order_amount, status, customer_id FROM orders WHERE id = 10")" "10|250|NEW|1" \
   "customer_db's orders row has the right columns (id, order_amount, status, customer_id)"
client list-orders --customer 1
is "$RC|$OUT" "0|Orders(id:10, orderAmount:250, status:NEW, customer:Customer(id:1, customerName:Ann, creditLimit:100))" \
   "OrderService.getOrdersForCustomer(\"1\") joins the order with the customer replica"

# createOrder right after createCustomer: OrderService waits (bounded) until
# evrep has brought the customer into order_db.
client_ok "createCustomer 2" create-customer --id 2 --name Bob --credit 500
t0=$(now_ms)
client_ok "createOrder 11 for customer 2 immediately afterwards succeeds (waits for the replica)" \
    create-order --id 11 --amount 40 --status PAID --customer 2
t1=$(now_ms)
cmp_ok $((t1 - t0)) -lt 2000 "... within the 2 s bound ($((t1 - t0)) ms)"
ok "order 11 appears in customer_db" \
    wait_until 30 '[[ $(sql "$CDB" "SELECT id, order_amount, status, customer_id FROM orders WHERE id = 11") == "11|40|PAID|2" ]]'

# --- error cases: OperationFailedException through the client, nothing written ------------
before="$(count "$CDB" customer) $(count "$CDB" orders) $(count "$ODB" customer) $(count "$ODB" orders)"
client_exception "duplicate customer id" "customer 1 already exists" \
    create-customer --id 1 --name Again --credit 1
client_exception "duplicate order id" "order 10 already exists" \
    create-order --id 10 --amount 1 --status NEW --customer 1
client_exception "empty customer name" "customerName must not be empty" \
    create-customer --id 20 --name "" --credit 1
long=$(printf 'x%.0s' $(seq 1 201))
client_exception "overlong customer name (201 characters)" "customerName is too long (201 characters, at most 200)" \
    create-customer --id 21 --name "$long" --credit 1
client_exception "negative credit limit" "creditLimit must not be negative (got -5)" \
    create-customer --id 22 --name Neg --credit -5
client_exception "negative order amount" "orderAmount must not be negative (got -7)" \
    create-order --id 23 --amount -7 --status NEW --customer 1
client_exception "non-numeric customerId" "customerId 'abc' is not a valid integer" \
    list-orders --customer abc
t0=$(now_ms)
client_exception "order for an unknown customer" "customer 999 not found (not yet replicated?)" \
    create-order --id 24 --amount 1 --status NEW --customer 999
t1=$(now_ms)
cmp_ok $((t1 - t0)) -ge 1900 "... only after the bounded wait ($((t1 - t0)) ms)"
cmp_ok $((t1 - t0)) -lt 6000 "... which is bounded"
ok "the services are still running after the errors" \
    bash -c "kill -0 $(bg_pid t30-customer_service) && kill -0 $(bg_pid t30-order_service)"
ok "outboxes drain after the errors" \
    wait_until 30 '[[ $(outbox_depth "$CDB")/$(outbox_depth "$ODB") == 0/0 ]]'
is "$(count "$CDB" customer) $(count "$CDB" orders) $(count "$ODB" customer) $(count "$ODB" orders)" "$before" \
   "rejected requests wrote nothing on either side (customer_db: customer orders, order_db: customer orders)"

# --- load at concurrency 8 -------------------------------------------------------------
client load --customers 200 --orders 200 --concurrency 8 --peer-db "$(pg_connstr "$CDB")"
summary=$(grep -v '^load: ' <<<"$OUT")
if (( RC == 0 )) && grep -qE '^createCustomer +200 +0 ' <<<"$OUT" && grep -qE '^createOrder +200 +0 ' <<<"$OUT" \
   && grep -q 'customers visible via OrderService.getCustomers' <<<"$OUT" \
   && grep -q 'orders visible in the peer database' <<<"$OUT"; then
    pass "load --customers 200 --orders 200 --concurrency 8: no errors, all rows seen on the other side"
else
    fail "load --customers 200 --orders 200 --concurrency 8" "exit $RC"$'\n'"$OUT"
fi
note "$summary"

n_cust=$((3 + 200)) n_ord=$((2 + 200))
is "$(count "$CDB" customer)|$(count "$ODB" orders)" "$n_cust|$n_ord" \
   "origins hold $n_cust customers (customer_db) and $n_ord orders (order_db)"
ok "customer_db's outbox drains to 0" wait_until 60 '[[ $(outbox_depth "$CDB") == 0 ]]'
ok "order_db's outbox drains to 0" wait_until 60 '[[ $(outbox_depth "$ODB") == 0 ]]'
ok "order_db's customer replica equals customer_db's customer (md5 of all rows)" \
    wait_until 60 '[[ $(table_md5 "$ODB" customer) == $(table_md5 "$CDB" customer) ]]'
ok "customer_db's orders replica equals order_db's orders (md5 of all rows)" \
    wait_until 60 '[[ $(table_md5 "$CDB" orders) == $(table_md5 "$ODB" orders) ]]'
is "$(count "$ODB" customer)|$(count "$CDB" orders)" "$n_cust|$n_ord" "replica counts equal the origins'"
client list-customers --order-service
is "$(grep -c '^Customer(' <<<"$OUT")" "$n_cust" "OrderService.getCustomers lists all $n_cust customers"

# --- no loops: nothing moves any more, nothing echoes -----------------------------------
snapshot() {
    local n
    for n in "$CDB" "$ODB"; do
        printf '%s: outbox=%s pub=%s applied=%s; ' "$n" "$(outbox_depth "$n")" \
            "$(sql "$n" "SELECT string_agg(table_name || ':' || last_seq, ',' ORDER BY table_name) FROM evrep.publication")" \
            "$(sql "$n" "SELECT string_agg(origin || '/' || table_name || ':' || applied || '/' || skipped, ',' ORDER BY origin, table_name) FROM evrep.progress")"
    done
}
s1=$(snapshot)
max_depth=0
for _ in $(seq 1 10); do
    d=$(( $(outbox_depth "$CDB") + $(outbox_depth "$ODB") ))
    (( d > max_depth )) && max_depth=$d
    sleep 0.5
done
s2=$(snapshot)
is "$max_depth" 0 "both outboxes stay at 0 for 5 s (sampled 10 times)"
is "$s2" "$s1" "publication last_seq and progress stay put for 5 s"
note "$s2"
is "$(sql "$CDB" "SELECT table_name || ':' || last_seq FROM evrep.publication ORDER BY table_name")" \
   "customer:$n_cust"$'\n'"orders:0" \
   "customer_db numbered exactly its $n_cust customer inserts and never captured the orders it applied"
is "$(sql "$ODB" "SELECT table_name || ':' || last_seq FROM evrep.publication ORDER BY table_name")" \
   "customer:0"$'\n'"orders:$n_ord" \
   "order_db numbered exactly its $n_ord order inserts and never captured the customers it applied"
is "$(sql "$ODB" "SELECT origin, table_name, last_seq, applied FROM evrep.progress")" \
   "$CDB|customer|$n_cust|$n_cust" "order_db applied each customer event once, only from customer_db"
is "$(sql "$CDB" "SELECT origin, table_name, last_seq, applied FROM evrep.progress")" \
   "$ODB|orders|$n_ord|$n_ord" "customer_db applied each orders event once, only from order_db"
is "$(count "$CDB" evrep.dead_letter)|$(count "$ODB" evrep.dead_letter)" "0|0" "no dead letters"
is "$(sql "$ODB" "SELECT role, outbox_depth, last_seq, applied, dead_letters FROM evrep.status WHERE table_name = 'orders' OR role = 'apply' ORDER BY role")" \
   "apply||$n_cust|$n_cust|0"$'\n'"publish|0|$n_ord||" "order_db's evrep.status agrees"
done_testing
