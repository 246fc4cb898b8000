#!/usr/bin/env bash
# 57_dump_reload: pg_dump -Fc of a node and pg_restore into a new cluster
# (initdb: a new system identifier) that takes the node's place, same port,
# configuration and evrep.node_name (promise 11, issue 19). A publishes
# customer, B subscribes; each node allows an extra sender (evrep.sender).
#
#   1. the subscriber: B is dumped with 100 rows, then applies (and acks) 100
#      more and 10 updates, then B is replaced by a new cluster with the dump.
#      Its subscription and sender rows are in the dump; B is a new
#      incarnation; it copies the table again (a copy requested after the
#      reload, done) and ends equal to A; then 50 changes on A, equal again.
#   2. the origin: A is dumped, writes 50 rows and 10 updates that B applies,
#      then A is replaced by a new cluster with the dump (its publication,
#      sequence and sender rows and the capture trigger are in the dump). A is
#      a new incarnation ("new cluster"); 50 changes on A (new ids, ids that
#      only the lost history had, updates, deletes); B ends equal to A, and
#      evrep.status on B shows A's new incarnation and a repair whose copy is
#      done.
# Each part: md5 of all rows and ids equal, B's progress at A's last_seq with
# no gaps, no dead letters.
# Ports: AMQP 6415, PostgreSQL 6465 (A) and 6466 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"
source "$(dirname "$0")/history_lib.sh"

MQ=t57mq A=t57a B=t57b T=customer
DUMPS=$(evrep_base_dir)/t57-dumps
rm -rf "$DUMPS" && mkdir -p "$DUMPS" && chmod 755 "$DUMPS"

topo_up_tap <<EOF
broker $MQ port=6415
node $A port=6465 publish=$T schema="$CUSTOMER_DDL"
node $B port=6466 subscribe=$T schema="$CUSTOMER_DDL"
EOF
on_exit 'if (( _TAP_FAILED )); then history_notes $B $A $B; fi'

ok "A allows an extra sender" sql "$A" "SELECT evrep_allow_sender('elsewhere', 'relay_a')"
ok "B allows an extra sender" sql "$B" "SELECT evrep_allow_sender('elsewhere_b', 'relay_b')"
ok "A: ids 1..100, one transaction each" sql_script "$A" "$(single_inserts $T 1 100)"
assert_converged "start" "$A" "$B" $T 60

SUBS_SQL="SELECT schema_name, table_name, key_columns, (SELECT rolname FROM pg_roles WHERE oid = s.owner), relid = '$T'::regclass FROM evrep.subscription s ORDER BY 1, 2"
PUBS_SQL="SELECT id, schema_name, table_name, key_columns, active, relid = '$T'::regclass FROM evrep.publication ORDER BY id"
SENDERS_SQL="SELECT origin, broker_user FROM evrep.sender ORDER BY 1, 2"
TRIG_SQL="SELECT tgname || ' ' || pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = '$T'::regclass AND NOT tgisinternal ORDER BY tgname"

# ==== 1. the subscriber =======================================================
SUBS_B=$(q "$B" "$SUBS_SQL") SENDERS_B=$(q "$B" "$SENDERS_SQL")
like "$SUBS_B" "^public[|]$T[|]" "1: B subscribes $T"
SYSID_B=$(pg_system_id "$B") INC_B0=$(incarnation "$B")
ok "1: pg_dump -Fc of B" pg_dump_node "$B" "$DUMPS/b.dump"
ok "1: A: ids 101..200 and 10 updates after B's dump" \
    sql_script "$A" "$(single_inserts $T 101 200; single_updates $T 1 10 "name = 'updated after the dump'")"
assert_converged "1 before the reload" "$A" "$B" $T 60
ok "1: B's queue holds nothing more" wait_value 30 0 rmq_queue_depth "$MQ" "$(topo_queue "$B")"
B_T0=$(node_now "$B")
topo_mark "$B"
ok "1: stop B" pg_stop "$B"
ok "1: B replaced by a new cluster (initdb) with the dump restored (pg_restore)" pg_reload_dump "$B" "$DUMPS/b.dump"
# looked at with the workers held off, before a copy changes the rows
ok "1: start B, workers held off" pg_start "$B" "-c evrep.database=''"
isnt "$(pg_system_id "$B")" "$SYSID_B" "1: B is a new cluster (system identifier)"
is "$(row_count "$B" $T)" 100 "1: B has the dump's 100 rows"
is "$(q "$B" "SELECT schema_name, table_name, key_columns, owner_name FROM evrep.subscription ORDER BY 1, 2")" \
   "public|$T|{id}|postgres" "1: B's subscription is in the dump"
is "$(q "$B" "$SENDERS_SQL")" "$SENDERS_B" "1: B's evrep.sender rows are in the dump"
ok "1: stop B" pg_stop "$B"
ok "1: start B" pg_start "$B"
ok "1: B's workers found the table and owner again" wait_value 30 "$SUBS_B" q "$B" "$SUBS_SQL"
ok "1: B's workers are ready (queue bound)" topo_wait_ready 60 "$B"
assert_converged "1 reloaded" "$A" "$B" $T 90
assert_sub_new_history "1" "$B" $T "$INC_B0" "$B_T0" 'cluster' "reload into a new cluster"
ok "1: A: 50 changes (20 new ids, 10 more new ids, 10 updates, 10 deletes)" \
    new_writes "$A" $T 1000 300 21 31
assert_converged "1 after" "$A" "$B" $T 60

# ==== 2. the origin ==========================================================
PUBS_A=$(q "$A" "$PUBS_SQL") SENDERS_A=$(q "$A" "$SENDERS_SQL") TRIG_A=$(q "$A" "$TRIG_SQL")
like "$TRIG_A" 'evrep_capture ' "2: A's $T has the capture trigger"
SYSID_A=$(pg_system_id "$A") INC_A0=$(incarnation "$A")
ok "2: pg_dump -Fc of A" pg_dump_node "$A" "$DUMPS/a.dump"
A_DUMPED=$(row_count "$A" $T)
ok "2: A: ids 2001..2050 and 10 updates after the dump" \
    sql_script "$A" "$(single_inserts $T 2001 2050; single_updates $T 41 50 "name = 'lost update'")"
assert_converged "2 before the reload" "$A" "$B" $T 60
B_T0=$(node_now "$B")
topo_mark "$A"
ok "2: stop A" pg_stop "$A"
ok "2: A replaced by a new cluster (initdb) with the dump restored (pg_restore)" pg_reload_dump "$A" "$DUMPS/a.dump"
ok "2: start A" pg_start "$A"
isnt "$(pg_system_id "$A")" "$SYSID_A" "2: A is a new cluster (system identifier)"
is "$(row_count "$A" $T)" "$A_DUMPED" "2: A has the dump's $A_DUMPED rows"
is "$(q "$A" "$PUBS_SQL")" "$PUBS_A" "2: A's publication is in the dump (table found again)"
is "$(q "$A" "$SENDERS_SQL")" "$SENDERS_A" "2: A's evrep.sender rows are in the dump"
is "$(q "$A" "$TRIG_SQL")" "$TRIG_A" "2: A's capture triggers are in the dump, naming the same publication"
ok "2: A's workers are ready" topo_wait_ready 60 "$A"
ok "2: A: 50 changes (20 new ids, 10 ids only the lost history had, 10 updates, 10 deletes)" \
    new_writes "$A" $T 3000 2001 51 61
assert_converged "2" "$A" "$B" $T 120
is "$(q "$B" "SELECT count(*) FROM $T WHERE id BETWEEN 2011 AND 2050 OR name = 'lost update'")" 0 \
   "2: rows and updates of the lost history are gone from B"
assert_origin_new_history "2" "$A" "$B" $T "$INC_A0" "$B_T0" 'cluster' "new cluster"
is "$(q "$A" 'SELECT count(*) FROM evrep.dead_letter')" 0 "no dead letters on A"
done_testing
