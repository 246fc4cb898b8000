#!/usr/bin/env bash
# 11_bidirectional: customer A -> B and orders B -> A at the same time, with
# concurrent writers on both sides; no loops.
#
# Each node publishes BOTH tables and subscribes the one the other owns, so
# that an echo would be visible: if the apply worker's writes were captured
# again, A's outbox would get rows for orders (and B's for customer), and
# those publications' last_seq would leave 0.
# Ports: AMQP 5712, PostgreSQL 5823 (A) and 5824 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t11mq A=t11a B=t11b

topo_up_tap <<EOF
broker $MQ port=5712
node $A port=5823 publish=customer,orders subscribe=orders schema="$CUSTOMER_DDL; $ORDERS_DDL"
node $B port=5824 publish=customer,orders subscribe=customer schema="$CUSTOMER_DDL; $ORDERS_DDL"
EOF

# The no-echo check, sampled while everything runs: outbox rows of the
# "foreign" table on each side (they must never appear).
echo_log=$EVREP_TEST_DIR/t11-echo.$$.log
: >"$echo_log"
echo_probe() {
    local a b
    while :; do
        a=$(sql "$A" "SELECT count(*) FROM evrep.outbox o JOIN evrep.publication p ON p.id = o.pub_id WHERE p.table_name = 'orders'" 2>/dev/null)
        b=$(sql "$B" "SELECT count(*) FROM evrep.outbox o JOIN evrep.publication p ON p.id = o.pub_id WHERE p.table_name = 'customer'" 2>/dev/null)
        echo "${a:-?} ${b:-?}" >>"$echo_log"
        sleep 0.5
    done
}
echo_probe &
probe_pid=$!
on_exit "kill $probe_pid 2>/dev/null; rm -f $echo_log"

# --- concurrent writers: two per side, plus multi-row statements -------------
t0=$SECONDS
ok "A: writer 1 (customer 1..1000)" start_writer t11-a1 "$A" customer 1 1000
ok "A: writer 2 (customer 100001..101000)" start_writer t11-a2 "$A" customer 100001 101000
ok "B: writer 1 (orders 1..1000)" start_writer t11-b1 "$B" orders 1 1000
ok "B: writer 2 (orders 200001..201000)" start_writer t11-b2 "$B" orders 200001 201000
ok "A: multi-row customer insert while the writers run" \
    sql "$A" "INSERT INTO customer SELECT g, 'bulk ' || g, g FROM generate_series(50001, 51000) g"
ok "B: multi-row orders insert and update while the writers run" \
    sql_script "$B" "INSERT INTO orders SELECT g, g % 10, g FROM generate_series(50001, 51000) g;
                     UPDATE orders SET amount = amount + 1 WHERE id BETWEEN 50001 AND 50500;"
for w in t11-a1 t11-a2 t11-b1 t11-b2; do
    ok "writer $w finished" wait_until 120 "writer_done $w"
done
note "writers done after $((SECONDS - t0)) s"
is "$(row_count "$A" customer)" 3000 "A has 3000 customers"
is "$(row_count "$B" orders)" 3000 "B has 3000 orders"
ok "A: update some customers (after the inserts)" \
    sql "$A" "UPDATE customer SET credit = -credit WHERE id % 7 = 0"
ok "B: delete some orders" sql "$B" "DELETE FROM orders WHERE id % 11 = 0"

n_orders=$(row_count "$B" orders)

# --- convergence --------------------------------------------------------------
ok "A's outbox drains to 0" wait_value 120 0 outbox_depth "$A"
ok "B's outbox drains to 0" wait_value 120 0 outbox_depth "$B"
ok "B's customer equals A's" wait_until 120 '[[ $(table_md5 "$B" customer) == $(table_md5 "$A" customer) ]]'
ok "A's orders equals B's" wait_until 120 '[[ $(table_md5 "$A" orders) == $(table_md5 "$B" orders) ]]'
note "converged after $((SECONDS - t0)) s"
is "$(row_count "$B" customer)" 3000 "B: 3000 customers"
is "$(row_count "$A" orders)" "$n_orders" "A: $n_orders orders"

# --- quiescence: nothing moves any more, nothing echoes ------------------------
snapshot() {   # one query per node
    local n
    for n in "$A" "$B"; do
        sql "$n" "SELECT (SELECT count(*) FROM customer), (SELECT count(*) FROM orders),
                         (SELECT coalesce(sum(outbox_depth), 0) FROM evrep.status WHERE role = 'publish'),
                         (SELECT string_agg(table_name || '=' || last_seq, ',' ORDER BY table_name) FROM evrep.publication),
                         (SELECT string_agg(table_name || '=' || applied, ',' ORDER BY table_name) FROM evrep.progress)"
    done
}
s1=$(snapshot)
sleep 5
s2=$(snapshot)
is "$s2" "$s1" "after quiescence counts, outboxes, last_seq and applied stay put for 5 s"
is "$(outbox_depth "$A")|$(outbox_depth "$B")" "0|0" "both outboxes stay at 0"

a_cust_seq=$(sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = 'customer'")
b_ord_seq=$(sql "$B" "SELECT last_seq FROM evrep.publication WHERE table_name = 'orders'")
# customer events on A: 3000 inserts + the update of ids % 7 = 0
is "$a_cust_seq" $((3000 + $(sql "$A" "SELECT count(*) FROM customer WHERE id % 7 = 0"))) \
   "A numbered exactly its own customer changes"
is "$(sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = 'orders'")" 0 \
   "no loop: A never captured the orders rows its apply wrote (publication last_seq 0)"
is "$(sql "$B" "SELECT last_seq FROM evrep.publication WHERE table_name = 'customer'")" 0 \
   "no loop: B never captured the customer rows its apply wrote (publication last_seq 0)"
kill "$probe_pid" 2>/dev/null
is "$(sort -u "$echo_log" | tr '\n' ' ')" "0 0 " \
   "sampled $(wc -l <"$echo_log") times while running: no foreign-table rows in either outbox"
is "$(applied "$B" "$A" customer)" "$a_cust_seq" "B applied each of A's customer events once"
is "$(applied "$A" "$B" orders)" "$b_ord_seq" "A applied each of B's orders events once"
is "$(sql "$A" "SELECT count(*) FROM evrep.progress WHERE origin <> '$B'")|$(sql "$B" "SELECT count(*) FROM evrep.progress WHERE origin <> '$A'")" \
   "0|0" "each side applied only the other's origin"
is "$(sql "$A" 'SELECT count(*) FROM evrep.dead_letter')|$(sql "$B" 'SELECT count(*) FROM evrep.dead_letter')" \
   "0|0" "no dead letters"
done_testing
