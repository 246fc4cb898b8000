#!/usr/bin/env bash
# 56_restore_subscriber: the subscriber's history goes back (promise 11,
# issue 19: "a subscriber can go back too"). A publishes customer, B
# subscribes. B applies 100 rows, a base backup of B is taken, B applies and
# acks 100 more rows and 10 updates (the broker no longer has them), then B
# is replaced by its backup: it lacks what it acked. Only the origin can fill
# that hole. (The first start from the backup runs without evrep's workers,
# to count B's rows; the workers start at the next.)
#
#   1. with A idle, B ends equal to A by itself (md5 of all rows, same ids,
#      progress at A's last_seq with no gaps, no dead letters); B started a
#      new incarnation (restored from a base backup) and evrep.sync_status on
#      B shows a copy requested after the restore, done.
#   2. then 50 changes on A (new ids, updates, deletes): B ends equal again.
#   3. a restart of the restored B is no new history (incarnation and copy
#      request unchanged), and B still follows A.
# Ports: AMQP 6410, PostgreSQL 6460 (A) and 6461 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"
source "$(dirname "$0")/history_lib.sh"

MQ=t56mq A=t56a B=t56b T=customer

topo_up_tap <<EOF
broker $MQ port=6410
node $A port=6460 publish=$T schema="$CUSTOMER_DDL"
node $B port=6461 subscribe=$T schema="$CUSTOMER_DDL"
EOF
on_exit 'if (( _TAP_FAILED )); then history_notes $B $B; fi'

ok "A: ids 1..100, one transaction each" sql_script "$A" "$(single_inserts $T 1 100)"
assert_converged "start" "$A" "$B" $T 60
INC_B0=$(incarnation "$B")
like "$INC_B0" '^[0-9]+$' "B has a current incarnation ($INC_B0)"

BK=$(pg_basebackup_node "$B" bk)
ok "base backup of B with 100 rows" test -f "$BK/backup_label"
ok "A: ids 101..200 and 10 updates after B's backup" \
    sql_script "$A" "$(single_inserts $T 101 200; single_updates $T 1 10 "name = 'updated after the backup'")"
assert_converged "before the restore" "$A" "$B" $T 60
is "$(row_count "$B" $T)" 200 "B applied (and acked) 200 rows"
ok "B's queue holds nothing more" wait_value 30 0 rmq_queue_depth "$MQ" "$(topo_queue "$B")"
B_T0=$(node_now "$B")

# B's first start from the backup holds its workers off (evrep.database =
# ''), so that the rows it lost can be counted before a copy brings them back;
# the workers meet the restored data directory at the next start.
topo_mark "$B"
ok "stop B" pg_stop "$B" fast
ok "B's data directory replaced by its base backup" pg_replace_data "$B" "$BK"
ok "B starts from the backup, workers held off" pg_start "$B" "-c evrep.database=''"
ok "B started from the backup (completed backup recovery)" \
    grep -q 'completed backup recovery' <(tail -c +$(( ${TOPO_LOGPOS[$B]:-0} + 1 )) "$(pg_logfile "$B")")
is "$(row_count "$B" $T)" 100 "B has the backup's 100 rows"
topo_mark "$B"
ok "restart B with its workers" pg_restart "$B" fast
ok "B's workers are ready" topo_wait_ready 60 "$B"

# ==== 1. A idle: B fills the hole by itself ======================================
assert_converged "1 A idle" "$A" "$B" $T 90
assert_sub_new_history "1" "$B" $T "$INC_B0" "$B_T0" 'backup' "restore from a base backup"
INC_B1=$(incarnation "$B")
is "$(q "$A" "SELECT phase FROM evrep.sync_status WHERE role = 'send' AND node = '$B' AND table_name = '$T' AND requested_at >= '$B_T0'")" \
   done "1: A's evrep.sync_status: the copy for B sent"

# ==== 2. A writes on ==========================================================
ok "2: A: 50 changes (20 new ids, 10 more new ids, 10 updates, 10 deletes)" \
    new_writes "$A" $T 1000 300 21 31
assert_converged "2" "$A" "$B" $T 60

# ==== 3. a restart of the restored B is no new history ===========================
SYNC1=$(sync_state "$B" $T)
topo_mark "$B"
ok "3: restart B" pg_restart "$B" fast
ok "3: B's workers are ready again" topo_wait_ready 60 "$B"
ok "3: A: ids 2001..2050" sql_script "$A" "$(single_inserts $T 2001 2050)"
assert_converged "3" "$A" "$B" $T 60
if [[ "$INC_B1" =~ ^[0-9]+$ ]]; then is "$(incarnation "$B")" "$INC_B1" "3: B's incarnation is unchanged"
else fail "3: B's incarnation is unchanged" "no incarnation to compare: '$INC_B1'"; fi
is "$(sync_state "$B" $T)" "$SYNC1" "3: B's evrep.sync has no new copy request"
done_testing
