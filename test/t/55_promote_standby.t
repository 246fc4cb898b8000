#!/usr/bin/env bash
# 55_promote_standby: an asynchronous failover of the origin (promise 11,
# issue 19). A publishes customer, B subscribes; S is a streaming standby of
# A (pg_basebackup -R, its own port, A's postgresql.conf: the same
# evrep.node_name, so once promoted it speaks for A's origin).
#
# A writer inserts single-row transactions on A. S's replay is paused in the
# middle of the stream (S lags), later S stops receiving WAL altogether
# (primary_conninfo = ''), while A writes on, updates and deletes old rows,
# and B applies all of it. A crashes (pg_ctl stop -m immediate) in the middle
# of the stream; S is promoted (a new timeline) with fewer rows than B holds.
# Then S writes 50 changes (new ids, ids that only the lost history had,
# updates, deletes). B ends equal to S: every row S has, no row S does not
# have (md5 of all rows, same ids), B's progress reaches S's last_seq with no
# gaps, no dead letters; evrep.status on B shows S's new incarnation (A's
# origin name) and a repair whose copy is done.
# Ports: AMQP 6405, PostgreSQL 6455 (A), 6456 (B), 6457 (S).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"
source "$(dirname "$0")/history_lib.sh"

MQ=t55mq A=t55a B=t55b S=t55s T=customer

topo_up_tap <<EOF
broker $MQ port=6405
node $A port=6455 publish=$T schema="$CUSTOMER_DDL"
node $B port=6456 subscribe=$T schema="$CUSTOMER_DDL"
EOF
on_exit 'if (( _TAP_FAILED )); then history_notes $B $S; evrep_tail "$(pg_logfile $S)" 30; fi'

ok "A: ids 1..100, one transaction each" sql_script "$A" "$(single_inserts $T 1 100)"
assert_converged "start" "$A" "$B" $T 60
INC0=$(incarnation "$A")
like "$INC0" '^[0-9]+$' "A has a current incarnation ($INC0)"

ok "S: a streaming standby of A on port 6457" pg_standby_create "$A" "$S" 6457
ok "S: start" pg_start "$S"
is "$(q "$S" 'SELECT pg_is_in_recovery()')" t "S is in recovery"
is "$(q "$S" 'SHOW evrep.node_name')" "$A" "S has A's evrep.node_name"
ok "S replays A's 100 rows" wait_value 30 100 row_count "$S" $T
is "$(q "$S" "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'evrep%'")" 0 "S runs no evrep worker while in recovery"

ok "writer on A started (ids 1001..)" start_writer t55-w "$A" $T 1001 200000 0.005
ok "the writer writes, B follows" \
    wait_until 60 "[[ \$(row_count $B $T) -ge 400 ]]" 0.1
ok "S: replay paused (S lags from here)" pg_standby_pause "$S"
ok "A writes on while S's replay is paused" \
    wait_until 60 "[[ \$(row_count $A $T) -ge $(( $(row_count "$A" $T) + 300 )) ]]" 0.1
ok "S: stop receiving WAL (primary_conninfo = '')" pg_standby_detach "$S"
S_RECEIVED=$(q "$S" 'SELECT pg_last_wal_receive_lsn()')
is "$(q "$S" 'SELECT pg_get_wal_replay_pause_state()')" paused "S's replay is still paused"
ok "A: updates and deletes of old rows after S stopped receiving" \
    sql_script "$A" "UPDATE $T SET name = 'after the failover point' WHERE id BETWEEN 41 AND 50;
DELETE FROM $T WHERE id BETWEEN 51 AND 60;"
ok "A writes on after S stopped receiving, B follows" \
    wait_until 60 "[[ \$(row_count $B $T) -ge $(( $(row_count "$A" $T) + 300 )) ]]" 0.1
A_ROWS=$(row_count "$A" $T)
ok "crash A in the middle of the stream (stop -m immediate)" pg_stop "$A" immediate
bg_stop t55-w 5
ok "B has A's updates after the failover point" \
    wait_value 30 10 sql "$B" "SELECT count(*) FROM $T WHERE name = 'after the failover point'"
sleep 1
B_ROWS=$(row_count "$B" $T)
note "A had $A_ROWS rows before its crash, B has $B_ROWS; S received WAL up to $S_RECEIVED and replayed up to $(pg_replay_lsn "$S")"
B_T0=$(node_now "$B")

ok "S: promoted" pg_promote "$S"
cmp_ok "$(pg_timeline "$S")" -gt 1 "S is on a new timeline ($(pg_timeline "$S"))"
S_ROWS=$(row_count "$S" $T)
cmp_ok "$S_ROWS" -lt "$B_ROWS" "S lacks A's last transactions that B applied ($S_ROWS < $B_ROWS rows)"
is "$(q "$S" "SELECT count(*) FROM $T WHERE name = 'after the failover point'")" 0 "S lacks A's updates after the failover point"
ok "S's publisher and consumer connect" wait_value 60 "t" sql "$S" \
    "SELECT bool_and(connected) AND count(*) = 2 FROM evrep.worker_state()"
LAST_ID=$(q "$S" "SELECT max(id) FROM $T")
ok "S: 50 changes (20 new ids, 10 ids only the lost history had, 10 updates, 10 deletes)" \
    new_writes "$S" $T 20000 $((LAST_ID + 1)) 21 31
assert_converged "promoted" "$S" "$B" $T 120
is "$(q "$B" "SELECT count(*) FROM $T WHERE name = 'after the failover point'")" 0 "B has none of A's updates that S lacks"
is "$(q "$B" "SELECT count(*) FROM $T WHERE id > $LAST_ID + 10 AND id < 20000")" 0 "B has none of A's rows that S lacks"
assert_origin_new_history "promoted" "$S" "$B" $T "$INC0" "$B_T0" 'timeline' "new timeline"

# ---- S writes on: plain replication in the new history ---------------------------
ok "S: ids 30001..30100" sql_script "$S" "$(single_inserts $T 30001 30100)"
assert_converged "after" "$S" "$B" $T 60
is "$(q "$S" 'SELECT count(*) FROM evrep.dead_letter')" 0 "no dead letters on S"
done_testing
