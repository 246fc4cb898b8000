#!/usr/bin/env bash
# 17_live_subscribe: A publishes customer and orders; B subscribes only
# customer. While both streams flow, B creates orders and subscribes it
# without a restart: the consumer binds its queue to public.orders, and
# orders rows A writes after that arrive on B; customer keeps flowing.
#
# With copy_data => false, orders rows A wrote BEFORE evrep_subscribe
# returned are not expected on B: no queue was bound to public.orders, so
# the broker dropped those messages as unroutable. Every row committed after
# it returned must arrive: the consumer binds before it returns.
# Ports: AMQP 5718, PostgreSQL 5835 (A) and 5836 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t17mq A=t17a B=t17b

topo_up_tap <<EOF
broker $MQ port=5718
node $A port=5835 publish=customer,orders schema="$CUSTOMER_DDL; $ORDERS_DDL"
node $B port=5836 subscribe=customer schema="$CUSTOMER_DDL"
EOF

ok "customer writer on A started" start_writer t17-c "$A" customer 1 1000000 0.01
ok "orders writer on A started" start_writer t17-o "$A" orders 1 1000000 0.01
ok "customer rows flow to B" wait_until 60 "[[ \$(row_count $B customer) -ge 100 ]]"
ok "A publishes orders too" wait_until 60 "[[ \$(sql $A \"SELECT last_seq FROM evrep.publication WHERE table_name = 'orders'\") -ge 100 ]]"
consumer=$(worker_pid "$B" 'evrep consumer')
like "$consumer" '^[0-9]+$' "B's consumer runs (pid $consumer)"

# --- subscribe orders on B while everything runs ---------------------------------
ok "B: CREATE TABLE orders" create_orders "$B"
t_sub=$(_tap_now_ms)
# copy_data => false: the consumer binds before evrep_subscribe returns, so
# every row committed after that must arrive (test 46 covers the copy). The
# subscribing transaction stays open 2 s after the binding: what arrives
# meanwhile must wait for its commit, not be parked as not subscribed.
sub_out=$EVREP_TEST_DIR/t17-subscribe.out
sql "$B" "BEGIN; SELECT evrep_subscribe('orders', copy_data => false); SELECT pg_sleep(2); COMMIT" \
    >"$sub_out" 2>&1 &
sub_pid=$!
ok "B's consumer binds orders while the subscribing transaction is open" \
    wait_until 30 "grep -q 'routing key \"public.orders\" for evrep_subscribe' $(pg_logfile "$B")"
mark=$(sql "$A" 'SELECT max(id) FROM orders')
wait "$sub_pid"
is "$(grep -v '^$' "$sub_out")" "" "B: evrep_subscribe('orders', copy_data => false) while the streams flow, no warning"
note "the subscribing transaction took $(( $(_tap_now_ms) - t_sub )) ms; orders rows up to id $mark may predate the binding"
ok "B's consumer logged the binding" topo_bound "$B" public.orders
is "$(sql "$B" "SELECT phase FROM evrep.sync_status WHERE table_name = 'orders'")" skipped \
   "sync_status: no copy (phase skipped)"
ok "B receives orders written after the subscription" \
    wait_until 60 "[[ \$(sql $B 'SELECT count(*) FROM orders WHERE id > $mark') -ge 100 ]]"

stop_writer t17-c; stop_writer t17-o
ok "customer writer finished" wait_until 60 "writer_done t17-c"
ok "orders writer finished" wait_until 60 "writer_done t17-o"
clast=$(writer_last t17-c) olast=$(writer_last t17-o)
is "$(sql "$A" 'SELECT count(*), max(id) FROM orders')" "$olast|$olast" "A has orders 1..$olast"

ok "A's outbox drains to 0" wait_value 120 0 outbox_depth "$A"
ok "every orders row written after the subscription arrives" \
    wait_value 120 $((olast - mark)) sql "$B" "SELECT count(*) FROM orders WHERE id > $mark"
is "$(same_ids "$A" "$B" "orders WHERE id > $mark")" "$((olast - mark))|0|0" \
   "orders after id $mark: none missing, none extra"
early=$(sql "$B" "SELECT count(*) FROM orders WHERE id <= $mark")
note "orders rows from before the binding that still reached B: $early of $mark (unroutable ones were dropped by the broker, as documented)"
b_ids=$(sql "$B" "SELECT coalesce(string_agg(id::text, ','), '0') FROM orders")
is "$(sql "$B" "SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o")" \
   "$(sql "$A" "SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o WHERE id IN ($b_ids)")" \
   "every orders row on B equals A's row with that id"
is "$(applied "$B" "$A" orders)" "$(row_count "$B" orders)" "each orders event B received was applied once"

ok "customer stream complete" wait_value 120 "$clast" row_count "$B" customer
is "$(same_ids "$A" "$B" customer)" "$clast|0|0" "customer: every id of A on B, none extra (unaffected by the rebinding)"
is "$(table_md5 "$B" customer)" "$(table_md5 "$A" customer)" "customer rows equal"
is "$(worker_pid "$B" 'evrep consumer')" "$consumer" "B's consumer was not restarted (same pid)"
is "$(sql "$B" 'SELECT count(*) FROM evrep.dead_letter')" 0 "no dead letters"
done_testing
