#!/usr/bin/env bash
# 50_first_setup: the obvious first setup, one broker user for every node,
# says what is wrong and how to fix it, once, where the operator looks:
#   - A's publisher, connected as broker user "svc" instead of its node name,
#     logs one WARNING at connect, with both fixes, however often it
#     reconnects;
#   - B parks A's events (evrep.dead_letter keeps each), logs one WARNING for
#     the pair (origin, broker user), not one per message, and evrep.status
#     shows the stream (it has no progress) with the fix in last_error;
#   - A refuses B's copy request the same way, once;
#   - the fixes the messages name work: evrep_allow_sender on both sides,
#     evrep_replay of the dead letters, a copy, and new rows flow.
# Ports: AMQP 6801, PostgreSQL 6851 (A) and 6852 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t50mq A=t50a B=t50b

topo_up_tap <<EOF2
broker $MQ port=6801 users=svc
node $A port=6851 publish=customer schema="$CUSTOMER_DDL"
node $B port=6852 subscribe=customer schema="$CUSTOMER_DDL"
EOF2
SVC=$(topo_broker_url "$MQ" svc)
count_in_log() { grep -c -- "$2" "$(pg_logfile "$1")"; }
# a refused message is parked whole: count the events in the dead letters
dead() { sql "$B" "SELECT coalesce(sum(jsonb_array_length(body::jsonb -> 'events')), 0) FROM evrep.dead_letter WHERE sqlstate = '28000' AND replayed_at IS NULL"; }
dead_letters() { sql "$B" "SELECT count(*) FROM evrep.dead_letter WHERE sqlstate = '28000' AND replayed_at IS NULL"; }

for n in $A $B; do
    topo_mark "$n"
    ok "$n: evrep.broker_url as user svc, the same for both nodes" \
        sql "$n" "ALTER SYSTEM SET evrep.broker_url = '$SVC'"
    ok "$n: reload" sql "$n" "SELECT pg_reload_conf()"
done
ok "A's publisher reconnects as svc and says so" \
    wait_until 60 "grep -q 'evrep publisher connects as broker user \"svc\", not as \"$A\"' '$(pg_logfile "$A")'"
ok "B's consumer is connected again" wait_value 60 t sql "$B" "SELECT connected FROM evrep.worker_state() WHERE worker = 'consumer'"

ok "A: 20 rows in 20 transactions" sql_script "$A" "$(single_inserts customer 1 20)"
ok "B parks every one of them" wait_value 60 20 dead
is "$(row_count "$B" customer)" 0 "B applied none"
is "$(count_in_log "$B" "evrep parks the events of origin \"$A\" sent by broker user \"svc\"")" 1 \
   "B says it once as a WARNING, not once per message"
like "$(grep -A2 "evrep parks the events of origin \"$A\"" "$(pg_logfile "$B")")" \
     "WARNING.*HINT:  Run SELECT evrep_allow_sender\\('$A', 'svc'\\) on this node, or let origin \"$A\" connect to the broker as user \"$A\"" \
     "the WARNING names both fixes"
is "$(sql "$B" "SELECT dead_letters FROM evrep.status WHERE role = 'apply' AND origin = '$A'")" "$(dead_letters)" \
   "evrep.status shows the stream, which has no progress, with its dead letters"
like "$(sql "$B" "SELECT last_error FROM evrep.status WHERE role = 'apply' AND origin = '$A'")" \
     "may not speak for evrep origin \"$A\" HINT: Run SELECT evrep_allow_sender\\('$A', 'svc'\\)" \
     "and last_error names the fix"

ok "restart A's publisher (a reconnect)" sql "$A" "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'evrep publisher'"
ok "A: row 21" sql "$A" "INSERT INTO customer VALUES (21, 'c21', 21)"
ok "parked too" wait_value 60 21 dead
is "$(count_in_log "$A" 'evrep publisher connects as broker user "svc"')" 2 \
   "A's publisher said it once per process (two processes), not per reconnect or message"

# the copy request: B speaks for itself as svc too
ok "B: evrep_resync('customer')" sql "$B" "SELECT evrep_resync('customer')"
ok "A refuses B's copy request, once, naming the fix" \
    wait_until 60 "grep -q 'evrep parks the events of origin \"$B\" sent by broker user \"svc\"' '$(pg_logfile "$A")'"

# the fixes
ok "B: evrep_allow_sender('$A', 'svc')" sql "$B" "SELECT evrep_allow_sender('$A', 'svc')"
ok "B: replay the dead letters" sql "$B" "SELECT bool_and(evrep_replay(id)) FROM evrep.dead_letter WHERE sqlstate = '28000' ORDER BY 1"
is "$(row_count "$B" customer)" 21 "B holds the 21 rows"
ok "A: evrep_allow_sender('$B', 'svc') for B's copy requests" sql "$A" "SELECT evrep_allow_sender('$B', 'svc')"
ok "B's copy, asked again every 10 s, goes through" \
    wait_value 60 done sql "$B" "SELECT phase FROM evrep.sync_status WHERE role = 'receive'"
ok "A: rows 22..40" sql_script "$A" "$(single_inserts customer 22 40)"
ok "B gets them as they come" wait_value 60 40 row_count "$B" customer
is "$(table_md5 "$B" customer)" "$(table_md5 "$A" customer)" "B equals A"
is "$(count_in_log "$B" "evrep parks the events of origin \"$A\"")" 1 "no more refusals on B"
done_testing
