#!/usr/bin/env bash
# 58_clone_and_repair_crash: two cases of issue 19 (promise 11) beyond 54-57.
#
#   1. A copy of an origin started beside it with the same evrep.node_name:
#      two live writers of one stream. A publishes customer to B (and
#      subscribes to B's orders); A2 is made from a base backup of A and
#      started on another port with A's postgresql.conf (same node_name,
#      broker URL and user) while A keeps running. A writes ids 1001..1020,
#      A2 writes 2001..2020, A 1021..1040. What must hold ("detected and
#      refused loudly, never merged"): one server speaks as a node. Each
#      worker holds an exclusive lock queue, evrep.<node>.lock.<role>, for
#      the life of its connection, so A2's publisher and consumer are
#        - refused loudly: a WARNING in A2's log naming the cause, the
#          error in A2's evrep.status; A's workers stay connected;
#        - never merged: A2's events wait in its outbox and never reach B;
#          B ends equal to A (md5), follows A's history, parks nothing and
#          starts no copy;
#        - one queue, one consumer: B's orders written while both run all
#          reach A, none reach A2 (RabbitMQ ignores the exclusive flag of a
#          consumer on a quorum queue: without the lock A2 took half).
#   2. Crashes during and right after a repair (pg_ctl stop -m immediate):
#      C publishes customer (20000 rows) to D on a second exchange, with
#      small copy chunks and a copy rate limit so that a copy takes seconds.
#        a. C restored from a base backup (D applied 200 rows of the lost
#           history): D starts copying again; D crashes in the middle of
#           the copy. After D's restart: no new history on D (incarnation
#           and the count of its histories unchanged, no "started a new
#           history" in its log), the same copy request completes, D equals
#           C (md5, ids), no gaps, no dead letters.
#        b. C restored again, and crashed as soon as evrep.incarnation has
#           the new history's row. After the restart exactly one new
#           history (no second one, no second WARNING), D converges and
#           its evrep.status shows the new history's finished repair.
# Ports: AMQP 6501, PostgreSQL 6551 (A), 6552 (B), 6553 (A2), 6554 (C), 6555 (D).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"
source "$(dirname "$0")/history_lib.sh"

MQ=t58mq A=t58a B=t58b A2=t58a2 C=t58c D=t58d T=customer O=orders
ROWS=20000
BACKUPS=$(evrep_base_dir)/backups
on_exit "rm -rf '$BACKUPS/$C-bk1' '$BACKUPS/$C-bk2' '$BACKUPS/$A-standby-$A2'"
on_exit 'if (( _TAP_FAILED )); then
  for n in $B $D; do note "$n progress: $(q $n "SELECT origin, table_name, last_seq, gaps, incarnation, prev_incarnation, prev_last_seq, parked, repair FROM evrep.progress")"; note "$n sync: $(q $n "SELECT * FROM evrep.sync")"; note "$n dead letters: $(q $n "SELECT id, origin, seq, error FROM evrep.dead_letter ORDER BY id LIMIT 5")"; done
  for n in $A $A2 $C; do note "$n incarnations: $(q $n "SELECT id, reason FROM evrep.incarnation ORDER BY id")"; done
fi'

topo_up_tap <<EOF
broker $MQ port=6501
node $A port=6551 publish=$T subscribe=$O schema="$CUSTOMER_DDL" schema="$ORDERS_DDL"
node $B port=6552 subscribe=$T publish=$O schema="$CUSTOMER_DDL" schema="$ORDERS_DDL"
node $C port=6554 publish=$T schema="$CUSTOMER_DDL" conf="evrep.exchange = 't58x'" conf="evrep.copy_chunk_rows = 250" conf="evrep.copy_rate_limit = 4000"
node $D port=6555 subscribe=$T schema="$CUSTOMER_DDL" conf="evrep.exchange = 't58x'"
EOF

# log lines of NODE written after topo_mark NODE
since_mark() { tail -c +$(( ${TOPO_LOGPOS[$1]:-0} + 1 )) "$(pg_logfile "$1")"; }
# ids of NODE's TABLE between LO and HI
ids_between() { q "$1" "SELECT count(*) FROM $2 WHERE id BETWEEN $3 AND $4"; }

# ==== 1. a copy of the origin started beside it =================================
ok "1: A: ids 1..100" sql_script "$A" "$(single_inserts $T 1 100)"
ok "1: B: orders 1..10" sql_script "$B" "$(single_inserts $O 1 10)"
assert_converged "1 start" "$A" "$B" $T 60
ok "1: A has B's 10 orders" wait_value 30 10 row_count "$A" $O
INC_A=$(incarnation "$A")

ok "1: A2: a base backup of A in a data directory of its own (port 6553)" pg_standby_create "$A" "$A2" 6553
rm -f "$(pg_datadir "$A2")/standby.signal"
ok "1: A2 starts from the backup, beside A" pg_start "$A2"
is "$(origin_name "$A2")" "$(origin_name "$A")" "1: A2 has A's evrep.node_name"
is "$(q "$A2" "SHOW evrep.broker_url")" "$(q "$A" "SHOW evrep.broker_url")" "1: A2 has A's broker settings"
ok "1: A2 records a new history (restored from a base backup)" \
    wait_until 30 "[[ \$(incarnation_rows $A2) == 2 ]]" 0.2
INC_A2=$(incarnation "$A2")
like "$(incarnation_reason "$A2")" backup "1: A2's new history says it was restored from a base backup"
cmp_ok "$INC_A2" -gt "$INC_A" "1: A2's history ($INC_A2) is newer than A's ($INC_A)"
is "$(incarnation "$A")" "$INC_A" "1: A keeps its history"
# -- refused loudly: one server speaks as a node (its workers' lock queues)
for role in publisher consumer; do
    ok "1: A2's $role is refused: another connection holds evrep.$A.lock.$role" \
        wait_until 60 "grep -q 'another connection holds \"evrep.$A.lock.$role\"' '$(pg_logfile "$A2")'" 0.3
done
like "$(grep 'another connection holds' "$(pg_logfile "$A2")" | head -n 1)" 'WARNING: .*a second server runs with evrep.node_name' \
     "1: A2's log says it as a WARNING, naming the cause"
like "$(q "$A2" "SELECT last_error FROM evrep.status WHERE role = 'publish' AND table_name = '$T'")" \
     'another connection holds' "1: A2's evrep.status shows it"
is "$(worker_connected "$A" publisher)|$(worker_connected "$A" consumer)" "t|t" "1: A's workers stay connected"

topo_mark "$B"
ok "1: A: ids 1001..1020 (after the clone started)" sql_script "$A" "$(single_inserts $T 1001 1020)"
ok "1: A2: ids 2001..2020" sql_script "$A2" "$(single_inserts $T 2001 2020)"
ok "1: A: ids 1021..1040" sql_script "$A" "$(single_inserts $T 1021 1040)"
ok "1: B applies A's 1001..1040" wait_value 30 40 ids_between "$B" $T 1001 1040
ok "1: B: orders 101..300 while A and A2 both run" sql_script "$B" "$(single_inserts $O 101 300)"
ok "1: A gets every one of B's orders 101..300" wait_value 30 200 ids_between "$A" $O 101 300
is "$(ids_between "$A2" $O 101 300)" 0 "1: A2 got none of B's orders 101..300 (it does not share A's queue)"

# -- never merged: A2's history never reaches B
ok "1: A's outbox drains" wait_value 30 0 outbox_depth "$A"
is "$(outbox_depth "$A2")" 20 "1: A2's 20 events wait in its outbox: its publisher does not send"
assert_converged "1 twin" "$A" "$B" $T 30
is "$(ids_between "$B" $T 2001 2040)" 0 "1: none of A2's rows reached B"
is "$(q "$B" "SELECT incarnation FROM evrep.progress WHERE origin = '$A' AND table_name = '$T'")" "$INC_A" \
   "1: B follows A's history"
is "$(q "$B" "SELECT count(*) FROM evrep.dead_letter")" 0 "1: nothing of A's was parked on B"
is "$(q "$B" "SELECT phase FROM evrep.sync WHERE table_name = '$T'")" skipped "1: B started no copy"
ok "1: stop A2 (the operator's remedy)" pg_stop "$A2" fast

# ==== 2. crashes during and right after a repair ===============================
ok "2: C: $ROWS rows" sql "$C" "INSERT INTO $T SELECT i, 'name ' || i, i % 1000 FROM generate_series(1, $ROWS) i"
assert_converged "2 start" "$C" "$D" $T 60
BK1=$(pg_basebackup_node "$C" bk1)
ok "2a: base backup of C" test -f "$BK1/backup_label"
ok "2a: C: ids 30001..30200 and 20 updates, after the backup (the history to be lost)" \
    sql_script "$C" "$(single_inserts $T 30001 30200; single_updates $T 1 20 "name = 'lost update'")"
assert_converged "2a before the restore" "$C" "$D" $T 60
INC_D=$(incarnation "$D") ROWS_D=$(incarnation_rows "$D")
D_T0=$(node_now "$D")
INC_C0=$(incarnation "$C")
ok "2a: C replaced by its base backup" pg_restore_backup "$C" "$BK1" fast
ok "2a: C's workers are ready" topo_wait_ready 60 "$C"
ok "2a: C: 50 changes in its new history" new_writes "$C" $T 40000 30150 21 31
ok "2a: D is in the middle of the copy" \
    wait_until 60 "[[ \$(q $D \"SELECT phase = 'copying' AND rows_copied BETWEEN 4000 AND $ROWS - 4000 FROM evrep.sync WHERE table_name = '$T'\") == t ]]" 0.05
REQ=$(q "$D" "SELECT request_id FROM evrep.sync WHERE table_name = '$T'")
note "2a: D before the crash: $(q "$D" "SELECT phase || ', ' || rows_copied || ' rows, ' || chunks || ' chunks' FROM evrep.sync WHERE table_name = '$T'")"
topo_mark "$D"
ok "2a: crash D (stop -m immediate)" pg_stop "$D" immediate
ok "2a: start D (crash recovery)" pg_start "$D"
ok "2a: D ran crash recovery" grep -q 'redo done at' <(since_mark "$D")
ok "2a: D's workers are ready again" topo_wait_ready 60 "$D"
assert_converged "2a after D's crash" "$C" "$D" $T 90
is "$(q "$D" "SELECT request_id || '|' || phase FROM evrep.sync WHERE table_name = '$T'")" "$REQ|done" \
   "2a: D's copy request $REQ completed (no new request)"
is "$(incarnation "$D")" "$INC_D" "2a: D's incarnation is unchanged ($INC_D)"
is "$(incarnation_rows "$D")" "$ROWS_D" "2a: D recorded no new history"
is "$(since_mark "$D" | grep -c 'started a new history')" 0 "2a: D's log has no new history after the crash"
is "$(q "$D" "SELECT count(*) FROM $T WHERE name = 'lost update' OR id BETWEEN 30001 AND 30200 AND id NOT BETWEEN 30150 AND 30159")" 0 \
   "2a: rows and updates of C's lost history are gone from D"
assert_origin_new_history "2a" "$C" "$D" $T "$INC_C0" "$D_T0"

BK2=$(pg_basebackup_node "$C" bk2)
ok "2b: base backup of C" test -f "$BK2/backup_label"
ok "2b: C: ids 50001..50100 after the backup (the history to be lost)" sql_script "$C" "$(single_inserts $T 50001 50100)"
assert_converged "2b before the restore" "$C" "$D" $T 60
INC_C1=$(incarnation "$C") ROWS_C1=$(incarnation_rows "$C")
D_T0=$(node_now "$D")
topo_mark "$C"
ok "2b: C replaced by its base backup" pg_restore_backup "$C" "$BK2" fast
ok "2b: C records its new history" wait_until 30 "[[ \$(incarnation_rows $C) -gt $ROWS_C1 ]]" 0.02
ok "2b: crash C at once (stop -m immediate)" pg_stop "$C" immediate
note "2b: C's log up to the crash: $(since_mark "$C" | grep -E 'new history|connected to broker|copy for node' | sed 's/^[^]]*] //' | tr '\n' ';')"
ok "2b: start C (crash recovery)" pg_start "$C"
ok "2b: C's workers are ready again" topo_wait_ready 60 "$C"
sleep 1   # a second history, if any, is recorded at the workers' first check
is "$(incarnation_rows "$C")" "$((ROWS_C1 + 1))" "2b: C has exactly one new history"
is "$(since_mark "$C" | grep -c 'this database started a new history')" 1 "2b: C's log says once that it started a new history"
ok "2b: C: 50 changes in its new history" new_writes "$C" $T 60000 50050 41 51
assert_converged "2b" "$C" "$D" $T 90
is "$(ids_between "$D" $T 50001 50049)" 0 "2b: rows of C's lost history are gone from D"
assert_origin_new_history "2b" "$C" "$D" $T "$INC_C1" "$D_T0" 'backup' "restore from a base backup"
is "$(q "$C" 'SELECT count(*) FROM evrep.dead_letter')" 0 "no dead letters on C"
done_testing
