#!/usr/bin/env bash
# 44_cluster: evrep on a three-node RabbitMQ cluster with quorum queues.
# Two nodes replicate both ways (4 writers each) while the broker node that
# leads the subscriber's queue is SIGKILLed, then the node a worker is
# connected to, then all three are restarted one after another; at the end
# both sides are equal, nothing lost, nothing applied twice, and no writer
# saw an error.  With two of three broker nodes down publishing waits (no
# quorum: no confirms), the outbox grows, nothing is lost, and it resumes
# when one node comes back.  Last, a 100 MB value travels in parts of 1 MB
# while the leader of the subscriber's queue is SIGKILLed between them.
# Ports: cluster AMQP 5841-5843, PostgreSQL 5941 (A) and 5942 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t44mq A=t44a B=t44b
WRITERS=4

topo_up_tap <<EOF
broker $MQ port=5841 nodes=3
node $A port=5941 publish=customer subscribe=orders schema="$CUSTOMER_DDL" schema="$ORDERS_DDL"
node $B port=5942 publish=orders subscribe=customer schema="$CUSTOMER_DDL" schema="$ORDERS_DDL"
EOF
like "$(sql "$A" "SELECT current_setting('evrep.broker_url')")" '^amqp://[^,]+,amqp://[^,]+,amqp://[^,]+$' \
     "the nodes know all three broker URLs"
QB=$(topo_queue "$B") QA=$(topo_queue "$A")
members() {   # QUEUE -- how many members its Raft group has
    rmq_ctl "${MQ}1" -q list_queues --no-table-headers name members 2>/dev/null \
        | awk -v q="$1" -F'\t' '$1 == q { print $2 }' | grep -o 'evrep-' | wc -l
}
is "$(members "$QB") $(members "$QA")" "3 3" "each queue has a member on every broker node"
is "$(rmq_ctl "${MQ}1" -q list_queues --no-table-headers name type 2>/dev/null | sort | grep '^evrep' | grep -v '\.lock\.' | tr '\t' ' ')" \
   "$QA quorum"$'\n'"$QB quorum" "each node's queue is a quorum queue"

running() { rmq_cluster_running "$MQ"; }
restart_member() { rmq_stop "$MQ$1" && rmq_cluster_restart "$MQ" "$1"; }
stop_members() { local m; for m in "$@"; do rmq_stop "$MQ$m" || return 1; done; }

# 4 writers on each node, one transaction per row, ids in disjoint ranges
for ((w = 1; w <= WRITERS; w++)); do
    ok "writer $w on A" start_writer "t44-a$w" "$A" customer $((w * 1000000)) $((w * 1000000 + 999999)) 0.02
    ok "writer $w on B" start_writer "t44-b$w" "$B" orders $((w * 1000000)) $((w * 1000000 + 999999)) 0.02
done
ok "rows flow both ways" wait_until 60 "[[ \$(row_count $B customer) -ge 200 && \$(row_count $A orders) -ge 200 ]]"

# --- the leader of B's queue dies ---------------------------------------------------
lead=$(rmq_cluster_leader "$MQ" "$QB")
like "$lead" '^[123]$' "B's queue has a leader: member $lead"
ok "SIGKILL member $lead, the leader of $QB" rmq_cluster_kill "$MQ" "$lead"
t_kill=$SECONDS
n_before=$(row_count "$B" customer)
ok "B applies again after the leader's death" \
    wait_until 60 "[[ \$(row_count $B customer) -gt $((n_before + 50)) ]]" 0.2
note "B applied again $((SECONDS - t_kill)) s after the kill"
new_lead=$(rmq_cluster_leader "$MQ" "$QB")
isnt "$new_lead" "$lead" "a new leader took over ($new_lead)"
ok "restart member $lead" rmq_cluster_restart "$MQ" "$lead"
ok "3 members running" wait_until 60 '[[ $(running) == 3 ]]' 1

# --- the node A's consumer is connected to dies ------------------------------------
conn=$(topo_connected_member "$A" consumer)
like "$conn" '^[123]$' "A's consumer is connected to member $conn"
ok "SIGKILL member $conn" rmq_cluster_kill "$MQ" "$conn"
n_before=$(row_count "$A" orders)
ok "A's consumer reconnects to another member and applies again" \
    wait_until 60 "[[ \$(row_count $A orders) -gt $((n_before + 50)) ]]" 0.2
isnt "$(topo_connected_member "$A" consumer)" "$conn" "A's consumer moved to another member"
ok "restart member $conn" rmq_cluster_restart "$MQ" "$conn"
ok "3 members running" wait_until 60 '[[ $(running) == 3 ]]' 1

# --- rolling restart -------------------------------------------------------------------
for m in 1 2 3; do
    ok "rolling restart: member $m" restart_member "$m"
    ok "3 members running after member $m" wait_until 60 '[[ $(running) == 3 ]]' 1
done
n_before=$(row_count "$B" customer)
ok "replication goes on after the rolling restart" \
    wait_until 60 "[[ \$(row_count $B customer) -gt $((n_before + 50)) ]]"

# --- two of three down: no quorum, publishing waits -----------------------------------
ok "stop members 2 and 3" stop_members 2 3
sleep 3
depth0=$(outbox_depth "$A")
ok "A keeps writing and its outbox grows without a quorum" \
    wait_until 60 "[[ \$(outbox_depth $A) -gt $((depth0 + 100)) ]]"
ok "bring member 2 back" rmq_cluster_restart "$MQ" 2
ok "A's outbox drains again" wait_until 120 "[[ \$(outbox_depth $A) -lt 100 ]]"
ok "bring member 3 back" rmq_cluster_restart "$MQ" 3
ok "3 members running" wait_until 60 '[[ $(running) == 3 ]]' 1

# --- the end: everything arrived once ---------------------------------------------------------
for ((w = 1; w <= WRITERS; w++)); do stop_writer "t44-a$w"; stop_writer "t44-b$w"; done
for ((w = 1; w <= WRITERS; w++)); do
    ok "writer $w on A finished" wait_until 120 "writer_done t44-a$w"
    ok "writer $w on B finished" wait_until 120 "writer_done t44-b$w"
done
retries=0
for ((w = 1; w <= WRITERS; w++)); do
    retries=$((retries + $(writer_retries "t44-a$w") + $(writer_retries "t44-b$w")))
done
is "$retries" 0 "no writer saw an error"
ok "A's outbox drains" wait_value 120 0 outbox_depth "$A"
ok "B's outbox drains" wait_value 120 0 outbox_depth "$B"
ok "customer converges on B" wait_until 120 '[[ $(table_md5 "$B" customer) == $(table_md5 "$A" customer) ]]'
ok "orders converges on A" wait_until 120 '[[ $(table_md5 "$A" orders) == $(table_md5 "$B" orders) ]]'
is "$(same_ids "$A" "$B" customer)" "$(row_count "$A" customer)|0|0" "customer: nothing lost, nothing extra"
is "$(same_ids "$B" "$A" orders)" "$(row_count "$B" orders)|0|0" "orders: nothing lost, nothing extra"
for pair in "$A:$B:customer" "$B:$A:orders"; do
    IFS=: read -r from to t <<<"$pair"
    last=$(sql "$from" "SELECT last_seq FROM evrep.publication WHERE table_name = '$t'")
    ok "$to applied $from's $t up to $last" wait_value 60 "$last|{}" \
        sql "$to" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$from' AND table_name = '$t'"
    is "$(applied "$to" "$from" "$t")" "$last" "$to applied each of $from's $last $t events once"
    note "$to skipped $(skipped "$to" "$from" "$t") duplicates of $from's $t (resends after broker failures)"
done
is "$(sql "$A" 'SELECT count(*) FROM evrep.dead_letter') $(sql "$B" 'SELECT count(*) FROM evrep.dead_letter')" \
   "0 0" "no dead letters"

# --- a large value in parts while the leader of B's queue dies ------------------------------
ok "A sends at most 1 MB a message" sql_script "$A" "ALTER SYSTEM SET evrep.max_message_bytes = '1MB'; SELECT pg_reload_conf();"
sleep 1
ok "A: a customer whose name is 100 MB (some 100 parts)" \
    sql "$A" "INSERT INTO customer VALUES (1, repeat(md5('t44'), 100 * 1024 * 1024 / 32), 0)"
ok "B keeps parts of it, not yet all" wait_until 60 \
    "(( \$(sql $B 'SELECT count(*) FROM evrep.inbox_part' 2>/dev/null || echo 0) >= 10 )) && [[ \$(sql $B 'SELECT count(*) FROM customer WHERE id = 1') == 0 ]]" 0.1
lead=$(rmq_cluster_leader "$MQ" "$QB")
ok "SIGKILL member $lead, the leader of $QB, in the middle of the parts" rmq_cluster_kill "$MQ" "$lead"
ok "B applies the 100 MB customer" wait_value 120 1 sql "$B" "SELECT count(*) FROM customer WHERE id = 1"
is "$(sql "$B" "SELECT md5(name) FROM customer WHERE id = 1")" "$(sql "$A" "SELECT md5(name) FROM customer WHERE id = 1")" \
   "B's 100 MB name equals A's (md5)"
ok "A's outbox drains" wait_value 120 0 outbox_depth "$A"
last=$(sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = 'customer'")
ok "B applied A's customer up to $last" wait_value 60 "$last|{}" \
    sql "$B" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$A' AND table_name = 'customer'"
is "$(applied "$B" "$A" customer)" "$last" "B applied each of A's $last customer events once"
is "$(sql "$A" 'SELECT count(*) FROM evrep.outbox_value') $(sql "$B" 'SELECT count(*) FROM evrep.inbox_part') $(sql "$B" 'SELECT count(*) FROM evrep.dead_letter')" \
   "0 0 0" "no value left on A, no part on B, no dead letter"
ok "restart member $lead" rmq_cluster_restart "$MQ" "$lead"
done_testing
