#!/usr/bin/env bash
# 13_broker_outage: the broker is stopped for 20 s while A keeps writing.
# Writers never wait for the broker: every write succeeds, the events wait
# in A's outbox, and after the broker is back they are sent and B ends with
# every row exactly once.  The outbox's growth is visible: evrep.status
# shows depth and age, and one WARNING says it passed
# evrep.outbox_warn_depth.
# Ports: AMQP 5714, PostgreSQL 5827 (A) and 5828 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t13mq A=t13a B=t13b
OUTAGE=20

topo_up_tap <<EOF
broker $MQ port=5714
node $A port=5827 publish=customer schema="$CUSTOMER_DDL" conf='evrep.outbox_warn_depth = 300'
node $B port=5828 subscribe=customer schema="$CUSTOMER_DDL"
EOF
ok "A's publisher is connected" wait_value 60 t worker_connected "$A" publisher

# One transaction per row, ~50 a second, until told to stop.
ok "writer on A started" start_writer t13-w "$A" customer 1 1000000 0.02
ok "rows flow to B before the outage" wait_until 60 "[[ \$(row_count $B customer) -ge 100 ]]"

down_at=$SECONDS   # the outage counts from the start of the shutdown
ok "rmq_stop $MQ" rmq_stop "$MQ"
a_before=$(row_count "$A" customer)
ok "A's publisher notices: worker_state connected = f" wait_value 30 f worker_connected "$A" publisher
ok "A's outbox grows while the broker is down" wait_until 30 "[[ \$(outbox_depth $A) -gt 50 ]]"
like "$(sql "$A" "SELECT last_error FROM evrep.worker_state() WHERE worker = 'publisher'")" '.+' \
     "worker_state shows the publisher's last error"
is "$(sql "$A" "SELECT outbox_depth > 50, oldest_unsent_age > '0'::interval FROM evrep.status WHERE role = 'publish'")" \
   "t|t" "evrep.status shows the depth and the age of the oldest unsent event"
warned() { grep -c 'evrep outbox holds about [0-9]* events, more than evrep.outbox_warn_depth (300)' "$(pg_logfile "$A")"; }
ok "A's publisher warns once the outbox passes 300 events" wait_value 30 1 warned
like "$(grep -A1 'evrep outbox holds about' "$(pg_logfile "$A")")" 'not connected to the broker' \
     "the warning says the broker is unreachable"
b_during=$(row_count "$B" customer)
sleep $(( OUTAGE - (SECONDS - down_at) > 0 ? OUTAGE - (SECONDS - down_at) : 0 ))
a_after=$(row_count "$A" customer)
cmp_ok "$a_after" -gt $((a_before + 100)) "writes kept succeeding during the ${OUTAGE} s outage ($a_before -> $a_after rows)"
depth=$(outbox_depth "$A")
cmp_ok "$depth" -gt 200 "A's outbox holds the events ($depth)"
is "$(row_count "$B" customer)" "$b_during" "B got nothing while the broker was down"
ok "writer still running (no error)" bg_is_running t13-w

ok "rmq_start $MQ (same node, same data)" rmq_start "$MQ"
note "broker was down for $((SECONDS - down_at)) s"
ok "A's publisher reconnects" wait_value 60 t worker_connected "$A" publisher
ok "B's consumer reconnects" wait_value 60 t worker_connected "$B" consumer
sleep 2
stop_writer t13-w
ok "writer finished" wait_until 60 "writer_done t13-w"
last=$(writer_last t13-w)
is "$(writer_retries t13-w)" 0 "the writer never saw an error"
is "$(sql "$A" 'SELECT count(*), min(id), max(id) FROM customer')" "$last|1|$last" \
   "A has every row the writer wrote (1..$last)"

ok "A's outbox drains to 0" wait_value 120 0 outbox_depth "$A"
ok "A's publisher logs that the outbox is down again" \
    wait_until 30 "grep -q 'evrep outbox is down to about' '$(pg_logfile "$A")'"
is "$(warned)" 1 "it warned once for the whole outage"
ok "B catches up" wait_value 120 "$last" row_count "$B" customer
is "$(same_ids "$A" "$B" customer)" "$last|0|0" "B has every id of A, none missing, none extra"
is "$(table_md5 "$B" customer)" "$(table_md5 "$A" customer)" "B's rows equal A's"
last_seq=$(sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = 'customer'")
is "$last_seq" "$last" "A numbered each row once"
ok "B's progress reaches last_seq $last_seq with no gaps" wait_value 30 "$last_seq|{}" \
    sql "$B" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$A'"
is "$(applied "$B" "$A" customer)" "$last_seq" "each event applied once (applied = last_seq)"
note "skipped duplicates on B: $(skipped "$B" "$A" customer)"
is "$(sql "$A" "SELECT string_agg(worker || '=' || connected, ',' ORDER BY worker) FROM evrep.worker_state()")" \
   "consumer=true,publisher=true" "A: worker_state connected again"
is "$(sql "$B" "SELECT string_agg(worker || '=' || connected, ',' ORDER BY worker) FROM evrep.worker_state()")" \
   "consumer=true,publisher=true" "B: worker_state connected again"
is "$(sql "$B" 'SELECT count(*) FROM evrep.dead_letter')" 0 "no dead letters"
done_testing
