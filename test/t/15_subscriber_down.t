#!/usr/bin/env bash
# 15_subscriber_down: B is stopped while A writes. The publisher does not
# depend on the subscriber: A's outbox keeps draining into B's durable
# queue, which holds the events until B is back; then B catches up fully.
# Ports: AMQP 5716, PostgreSQL 5831 (A) and 5832 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t15mq A=t15a B=t15b

topo_up_tap <<EOF
broker $MQ port=5716
node $A port=5831 publish=customer schema="$CUSTOMER_DDL"
node $B port=5832 subscribe=customer schema="$CUSTOMER_DDL"
EOF

Q=$(topo_queue "$B")
ok "writer 1 on A started" start_writer t15-w1 "$A" customer 1 1000000 0.01
ok "rows flow to B" wait_until 60 "[[ \$(row_count $B customer) -ge 200 ]]"

ok "pg_stop $B (while A writes)" pg_stop "$B"
sleep 5
stop_writer t15-w1
ok "writer 1 finished" wait_until 60 "writer_done t15-w1"
last1=$(writer_last t15-w1)
is "$(writer_retries t15-w1)" 0 "writer 1 never saw an error"
ok "A's outbox drains to 0 with B down (the broker holds the events)" wait_value 60 0 outbox_depth "$A"
# a quorum queue's message count lags by a metrics tick (~5 s)
ok "B's durable queue $Q holds messages while B is down" \
    wait_until 30 "[[ \$(rmq_queue_depth $MQ $Q) -gt 0 ]]" 1

# more writes while B is still down, and on past its restart
ok "writer 2 on A started" start_writer t15-w2 "$A" customer 100001 1000000 0.01
ok "writer 2 writes while B is down" wait_until 30 "[[ \$(row_count $A customer) -gt $((last1 + 100)) ]]"
ok "pg_start $B" pg_start "$B"
ok "B's consumer reconnects" wait_value 60 t worker_connected "$B" consumer
a_now=$(row_count "$A" customer)
ok "writer 2 goes on after B is back" wait_until 60 "[[ \$(row_count $A customer) -gt $((a_now + 100)) ]]"
stop_writer t15-w2
ok "writer 2 finished" wait_until 60 "writer_done t15-w2"
last2=$(writer_last t15-w2)
total=$((last1 + last2 - 100000))
is "$(row_count "$A" customer)" "$total" "A has 1..$last1 and 100001..$last2 ($total rows)"

ok "A's outbox drains to 0" wait_value 120 0 outbox_depth "$A"
ok "B catches up fully" wait_value 120 "$total" row_count "$B" customer
is "$(same_ids "$A" "$B" customer)" "$total|0|0" "B has every id of A, none missing, none extra"
is "$(table_md5 "$B" customer)" "$(table_md5 "$A" customer)" "B's rows equal A's"
last_seq=$(sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = 'customer'")
is "$last_seq" "$total" "A numbered each row once"
ok "B's progress reaches last_seq with no gaps" wait_value 30 "$last_seq|{}" \
    sql "$B" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$A'"
is "$(applied "$B" "$A" customer)" "$last_seq" "each event applied once (applied = last_seq)"
note "skipped duplicates on B: $(skipped "$B" "$A" customer)"
ok "B's queue is drained" wait_until 60 "[[ \$(rmq_queue_depth $MQ $Q) == 0 ]]" 1
is "$(sql "$B" 'SELECT count(*) FROM evrep.dead_letter')" 0 "no dead letters"
done_testing
