#!/usr/bin/env bash
# 45_queue_type: a node that had a classic queue with messages in it moves
# to a quorum queue (evrep.queue_type) and loses nothing, and applies every
# key's changes in order: the consumer binds the new queue, drains the old
# one first, deletes it, then reads the new one.
# Ports: AMQP 5851, PostgreSQL 5951 (A) and 5952 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t45mq A=t45a B=t45b

topo_up_tap <<EOF
broker $MQ port=5851
node $A port=5951 publish=customer schema="$CUSTOMER_DDL"
node $B port=5952 subscribe=customer schema="$CUSTOMER_DDL" conf="evrep.queue_type = classic"
EOF
queues() { rmq_ctl "$MQ" -q list_queues --no-table-headers name type messages 2>/dev/null | grep '^evrep' | grep -v '\.lock\.' | sort; }
bump() {   # one transaction per statement: every key's credit goes up by one
    local i
    for ((i = 0; i < $1; i++)); do echo "UPDATE customer SET credit = credit + 1 WHERE id <= 100;"; done
}

is "$(topo_queue "$B")" "evrep.$B" "B starts with the classic queue evrep.$B"
ok "A: rows 1..300" sql_script "$A" "$(single_inserts customer 1 300)"
ok "B has them" wait_value 60 300 row_count "$B" customer

ok "stop B" pg_stop "$B"
ok "A: rows 301..2000 and 20 updates of rows 1..100 while B is down" \
    sql_script "$A" "$(single_inserts customer 301 2000; bump 20)"
ok "A's outbox drains into B's classic queue" wait_value 60 0 outbox_depth "$A"
ok "the classic queue holds them" wait_until 30 "queues | grep -q \"^evrep.$B	classic	[1-9]\""
note "$(queues)"

ok "B: evrep.queue_type = quorum" bash -c "echo \"evrep.queue_type = 'quorum'\" >>\"\$1\"" _ "$(pg_datadir "$B")/postgresql.conf"
topo_mark "$B"
ok "start B" pg_start "$B"
ok "A: 20 more updates of rows 1..100 and rows 2001..2500 while B switches" \
    sql_script "$A" "$(bump 20; single_inserts customer 2001 2500)"
ok "B drains the classic queue and deletes it" \
    wait_until 90 "grep -q 'drained and deleted queue \"evrep.$B\"' '$(pg_logfile "$B")'"
ok "B converges to A" wait_until 90 '[[ $(table_md5 "$B" customer) == $(table_md5 "$A" customer) ]]'
is "$(sql "$B" 'SELECT string_agg(credit::text, $$,$$ ORDER BY id) FROM customer WHERE id <= 100')" \
   "$(sql "$A" 'SELECT string_agg((id % 1000 + 40)::text, $$,$$ ORDER BY id) FROM customer WHERE id <= 100')" \
   "every key ends with its 40th update, as on A"
is "$(topo_queue "$B")" "evrep.$B.quorum" "B's queue is now the quorum queue"
is "$(queues | cut -f1,2 | tr '\t' ' ')" "evrep.$A.quorum quorum"$'\n'"evrep.$B.quorum quorum" \
   "the classic queue is gone; both nodes have quorum queues"
last=$(sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = 'customer'")
ok "B's progress reaches $last with no gap" wait_value 60 "$last|{}" \
    sql "$B" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$A'"
is "$(applied "$B" "$A" customer)" "$last" "each of A's $last events applied once"
ok "A: rows 2501..2600 after the switch" sql_script "$A" "$(single_inserts customer 2501 2600)"
ok "arrive through the quorum queue" wait_value 60 2600 row_count "$B" customer
done_testing
