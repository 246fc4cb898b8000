#!/usr/bin/env bash
# 54_restore_origin: the origin's history goes back (promise 11, issue 19).
# A publishes customer, B subscribes.
#
#   1. a plain restart and a crash (pg_ctl stop -m immediate, with events
#      still in the outbox) of A are not new histories: A's incarnation and
#      its count of histories are unchanged, B's evrep.sync has no new copy
#      request, B's progress keeps A's history; B ends equal to A.
#   2. A restored from a base backup: 100 rows, backup, 100 more (B has 200),
#      A replaced by the backup (so it has 100 rows again and numbers its
#      next events with numbers B already applied in the lost history), then
#      50 changes on A: 20 new ids, 10 ids that the lost history had (other
#      values), 10 updates and 10 deletes of old rows. B ends equal to A (md5
#      of all rows, same ids), B's progress reaches A's last_seq, no dead
#      letters; evrep.status on B shows A's new incarnation and a repair
#      whose copy is done. A restart of the restored A after that is again no
#      new history.
#   3. point-in-time recovery of A (WAL archive, recovery_target_lsn) to a
#      point in the middle of a stream of single-row transactions that B
#      applied entirely: A is on a new timeline with the rows up to the
#      target; then 50 changes as in 2; B ends equal to A, same checks.
# Ports: AMQP 6401, PostgreSQL 6451 (A) and 6452 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"
source "$(dirname "$0")/history_lib.sh"

MQ=t54mq A=t54a B=t54b T=customer
ARCH1=$(evrep_base_dir)/t54-archive1 ARCH2=$(evrep_base_dir)/t54-archive2
rm -rf "$ARCH1" "$ARCH2"
mapfile -t ARCH_CONF < <(pg_archive_conf "$ARCH1")
A_CONF=
for l in "${ARCH_CONF[@]}"; do A_CONF+=" conf=\"$l\""; done

topo_up_tap <<EOF
broker $MQ port=6401
node $A port=6451 publish=$T schema="$CUSTOMER_DDL" $A_CONF
node $B port=6452 subscribe=$T schema="$CUSTOMER_DDL"
EOF
on_exit 'if (( _TAP_FAILED )); then history_notes $B $A; fi'

is "$(q "$A" "SHOW archive_mode")" on "A archives its WAL"
ok "A: ids 1..100, one transaction each" sql_script "$A" "$(single_inserts $T 1 100)"
assert_converged "start" "$A" "$B" $T 60
INC0=$(incarnation "$A")
like "$INC0" '^[0-9]+$' "A has a current incarnation ($INC0)"
ROWS0=$(incarnation_rows "$A")
SYNC0=$(sync_state "$B" $T) PROG0=$(progress_history "$B" "$A" $T)
like "$PROG0" "^$INC0[|]" "B's progress of A's stream is in A's incarnation $INC0"

# ==== 1. restart and crash are not new histories ===============================
topo_mark "$A"
ok "1: restart A (fast)" pg_restart "$A" fast
ok "1: A's workers are ready again" topo_wait_ready 60 "$A"
ok "1: A: 20 updates after the restart" sql_script "$A" "$(single_updates $T 1 20 "credit = credit + 1")"
assert_converged "1 restart" "$A" "$B" $T 60
assert_same_history "1 restart" "$A" "$B" $T "$INC0" "$SYNC0" "$PROG0" "$ROWS0"

topo_mark "$A"
ok "1: A: 100 updates, then at once a crash (stop -m immediate)" \
    sql_script "$A" "$(single_updates $T 1 100 "credit = credit + 1")"
note "1: A's outbox just before the crash: $(outbox_depth "$A") events"
ok "1: crash A" pg_stop "$A" immediate
ok "1: start A (crash recovery)" pg_start "$A"
like "$(tail -c +$(( ${TOPO_LOGPOS[$A]:-0} + 1 )) "$(pg_logfile "$A")" | grep -c 'redo done at')" '^[1-9]' "1: A ran crash recovery"
ok "1: A's workers are ready again" topo_wait_ready 60 "$A"
assert_converged "1 crash" "$A" "$B" $T 60
assert_same_history "1 crash" "$A" "$B" $T "$INC0" "$SYNC0" "$PROG0" "$ROWS0"

# ==== 2. A restored from a base backup =========================================
BK1=$(pg_basebackup_node "$A" bk1)
ok "2: base backup of A with 100 rows" test -f "$BK1/backup_label"
ok "2: A: ids 101..200 and 10 updates, after the backup" \
    sql_script "$A" "$(single_inserts $T 101 200; single_updates $T 41 50 "name = 'lost update'")"
assert_converged "2 before the restore" "$A" "$B" $T 60
is "$(row_count "$B" $T)" 200 "2: B has 200 rows"
SEQ_LOST=$(pub_seq "$A" $T)
B_T0=$(node_now "$B")
topo_mark "$A"
ok "2: A replaced by its base backup" pg_restore_backup "$A" "$BK1" fast
ok "2: A started from the backup (completed backup recovery)" \
    grep -q 'completed backup recovery' <(tail -c +$(( ${TOPO_LOGPOS[$A]:-0} + 1 )) "$(pg_logfile "$A")")
is "$(row_count "$A" $T)" 100 "2: A has the backup's 100 rows"
ok "2: A's workers are ready" topo_wait_ready 60 "$A"
SEQ_BK=$(pub_seq "$A" $T)
cmp_ok "$SEQ_BK" -lt "$SEQ_LOST" "2: A's stream went back ($SEQ_BK < $SEQ_LOST): its next numbers were used by the lost history"
ok "2: A: 50 changes (20 new ids, 10 ids of the lost history, 10 updates, 10 deletes)" \
    new_writes "$A" $T 1000 150 21 31
assert_converged "2" "$A" "$B" $T 120
is "$(q "$B" "SELECT count(*) FROM $T WHERE id BETWEEN 101 AND 200 AND id NOT BETWEEN 150 AND 159")" 0 \
   "2: rows of the lost history are gone from B"
is "$(q "$B" "SELECT count(*) FROM $T WHERE name = 'lost update'")" 0 "2: updates of the lost history are gone from B"
assert_origin_new_history "2" "$A" "$B" $T "$INC0" "$B_T0" 'backup' "restore from a base backup"
INC1=$(incarnation "$A") ROWS1=$(incarnation_rows "$A")
SYNC1=$(sync_state "$B" $T) PROG1=$(progress_history "$B" "$A" $T)
topo_mark "$A"
ok "2: restart the restored A" pg_restart "$A" fast
ok "2: A's workers are ready again" topo_wait_ready 60 "$A"
ok "2: A: 10 updates after the restart" sql_script "$A" "$(single_updates $T 51 60 "credit = 7")"
assert_converged "2 restart" "$A" "$B" $T 60
assert_same_history "2 restart" "$A" "$B" $T "$INC1" "$SYNC1" "$PROG1" "$ROWS1"

# ==== 3. point-in-time recovery of A in the middle of a stream =================
pg_archive_conf "$ARCH2" >/dev/null
ok "3: A archives into a new directory" sql_script "$A" "ALTER SYSTEM SET archive_command = 'cp %p $ARCH2/%f';
SELECT pg_reload_conf();"
ok "3: archive_command in effect" wait_until 10 "[[ \$(q $A 'SHOW archive_command') == *t54-archive2* ]]"
BK2=$(pg_basebackup_node "$A" bk2)
ok "3: base backup of A" test -f "$BK2/backup_label"
TL0=$(pg_timeline "$A")
ok "3: writer on A started (ids 2001..)" start_writer t54-w "$A" $T 2001 2600
ok "3: the writer is in the middle of its stream" \
    wait_until 60 "[[ \$(q $A 'SELECT count(*) FROM $T WHERE id > 2000') -ge 250 ]]" 0.1
# rows counted first: every one of them committed below the target
AT_TARGET=$(q "$A" "SELECT count(*) FROM $T WHERE id > 2000")
TARGET=$(q "$A" "SELECT pg_current_wal_insert_lsn()")
note "3: recovery target $TARGET, with $AT_TARGET of the writer's rows"
ok "3: writer finished" wait_until 120 "writer_done t54-w"
ok "3: A: updates and deletes after the target" \
    sql_script "$A" "UPDATE $T SET name = 'after target' WHERE id BETWEEN 61 AND 70;
DELETE FROM $T WHERE id BETWEEN 71 AND 80;"
assert_converged "3 before the PITR" "$A" "$B" $T 60
ALL=$(row_count "$A" $T)
ok "3: A's WAL is archived up to now" pg_archive_switch "$A"
B_T0=$(node_now "$B")
topo_mark "$A"
ok "3: A recovered to $TARGET from the backup and the archive" pg_pitr "$A" "$BK2" "$ARCH2" "lsn:$TARGET" fast
TL1=$(pg_timeline "$A")
cmp_ok "$TL1" -gt "$TL0" "3: A is on a new timeline ($TL1, was $TL0)"
n=$(q "$A" "SELECT count(*) FROM $T WHERE id > 2000")
cmp_ok "$n" -ge "$AT_TARGET" "3: A has the writer's rows up to the target ($n >= $AT_TARGET)"
cmp_ok "$(row_count "$A" $T)" -lt "$ALL" "3: A lacks rows written after the target ($(row_count "$A" $T) < $ALL)"
is "$(q "$A" "SELECT count(*) FROM $T WHERE name = 'after target'")" 0 "3: A lacks the updates after the target"
ok "3: A's workers are ready" topo_wait_ready 60 "$A"
LAST_ID=$(q "$A" "SELECT max(id) FROM $T")
ok "3: A: 50 changes (20 new ids, 10 ids of the lost history, 10 updates, 10 deletes)" \
    new_writes "$A" $T 3000 $((LAST_ID + 1)) 81 91
assert_converged "3" "$A" "$B" $T 120
is "$(q "$B" "SELECT count(*) FROM $T WHERE name = 'after target'")" 0 "3: updates after the target are gone from B"
assert_origin_new_history "3" "$A" "$B" $T "$INC1" "$B_T0" 'timeline' "new timeline"
is "$(q "$A" 'SELECT count(*) FROM evrep.dead_letter')" 0 "no dead letters on A"
done_testing
