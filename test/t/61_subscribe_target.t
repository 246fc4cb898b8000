#!/usr/bin/env bash
# 61_subscribe_target: a subscriber keeps its replica under a name of its
# own. A publishes public.customer; B subscribes it into
# replica.customer_copy with evrep_subscribe('customer', target => ...), and
# has an unrelated public.customer of its own that nothing may touch. The
# copy of existing rows, live inserts, updates, deletes and TRUNCATE,
# evrep_resync, and a dead letter (a CHECK constraint of B's target) shown
# with both names, fixed and replayed: B's replica ends equal to A's table.
# Then the target is renamed, and B dumped and reloaded into a new cluster:
# the subscription still applies into the renamed table.
# Ports: AMQP 6720, PostgreSQL 6721 (A) and 6722 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"
source "$(dirname "$0")/history_lib.sh"

MQ=t61mq A=t61a B=t61b
REPLICA_DDL='CREATE SCHEMA replica; CREATE TABLE replica.customer_copy (id int PRIMARY KEY, name text NOT NULL, credit int)'
OWN_DDL="CREATE TABLE customer (id int PRIMARY KEY, label text, since date); INSERT INTO customer SELECT g, 'b-own ' || g, date '2020-01-01' + g FROM generate_series(1, 50) g"

topo_up_tap <<EOF
broker $MQ port=6720
node $A port=6721 publish=customer schema="$CUSTOMER_DDL"
node $B port=6722 schema="$REPLICA_DDL; $OWN_DDL"
EOF
own_md5=$(table_md5 "$B" customer)

# --- rows A had before B subscribed arrive by the copy --------------------------
ok "A: 500 rows before the subscription" \
    sql "$A" "INSERT INTO customer SELECT g, 'pre ' || g, g % 100 FROM generate_series(1, 500) g"
topo_mark "$B"
ok "B: evrep_subscribe('customer', target => 'replica.customer_copy')" \
    sql "$B" "SELECT evrep_subscribe('customer', target => 'replica.customer_copy')"
is "$(sql "$B" 'SELECT schema_name, table_name, relid, target_schema, target_table FROM evrep.subscription')" \
   "public|customer|replica.customer_copy|replica|customer_copy" "evrep.subscription: published public.customer, target replica.customer_copy"
ok "B's queue is bound to the published name public.customer" wait_until 30 "topo_bound $B public.customer"
ok "the copy finishes" wait_value 60 done sql "$B" "SELECT phase FROM evrep.sync_status WHERE role = 'receive'"
is "$(sql "$B" "SELECT schema_name, table_name, rows_copied FROM evrep.sync_status WHERE role = 'receive'")" \
   "public|customer|500" "evrep.sync_status: 500 rows of public.customer copied"
is "$(table_md5 "$B" replica.customer_copy)" "$(table_md5 "$A" customer)" "B's replica equals A's table after the copy"

# --- live changes ----------------------------------------------------------------
ok "A: inserts, updates, deletes" sql "$A" "
    INSERT INTO customer SELECT g, 'live ' || g, g % 100 FROM generate_series(501, 800) g;
    UPDATE customer SET name = 'updated ' || id, credit = credit + 1 WHERE id % 7 = 0;
    DELETE FROM customer WHERE id % 11 = 0;
    INSERT INTO customer VALUES (801, 'single', 1);
    UPDATE customer SET name = 'single, changed' WHERE id = 801"
ok "B's replica follows" wait_until 60 "[[ \$(table_md5 $B replica.customer_copy) == \$(table_md5 $A customer) ]]"
is "$(table_md5 "$B" customer)" "$own_md5" "B's own public.customer is untouched"

ok "A: TRUNCATE, then new rows" sql "$A" "TRUNCATE customer;
    INSERT INTO customer SELECT g, 'after truncate ' || g, g % 100 FROM generate_series(1000, 1199) g"
ok "B's replica is truncated and refilled" \
    wait_until 60 "[[ \$(table_md5 $B replica.customer_copy) == \$(table_md5 $A customer) ]]"
is "$(row_count "$B" customer)" 50 "TRUNCATE left B's own public.customer alone (50 rows)"

# --- evrep_resync repairs rows changed by hand -------------------------------------
ok "B: rows of the replica changed by hand" sql "$B" "
    DELETE FROM replica.customer_copy WHERE id < 1010;
    UPDATE replica.customer_copy SET name = 'wrong' WHERE id = 1100;
    INSERT INTO replica.customer_copy VALUES (5, 'stray', 0)"
isnt "$(table_md5 "$B" replica.customer_copy)" "$(table_md5 "$A" customer)" "the replica differs now"
req=$(sql "$B" "SELECT request_id FROM evrep.sync")
ok "B: evrep_resync('replica.customer_copy')" sql "$B" "SELECT evrep_resync('replica.customer_copy')"
ok "the resync finishes" wait_until 60 \
    "[[ \$(sql $B \"SELECT phase FROM evrep.sync WHERE request_id > $req\") == done ]]"
is "$(table_md5 "$B" replica.customer_copy)" "$(table_md5 "$A" customer)" "B's replica equals A's table after the resync"
is "$(table_md5 "$B" customer)" "$own_md5" "B's own public.customer is untouched"

# --- a row B's target refuses: parked with both names, fixed, replayed ------------
ok "B: a CHECK constraint on the replica" \
    sql "$B" "ALTER TABLE replica.customer_copy ADD CONSTRAINT credit_small CHECK (credit < 1000)"
ok "A: a row with credit 5000" sql "$A" "INSERT INTO customer VALUES (2000, 'big spender', 5000)"
ok "B parks it" wait_value 60 1 sql "$B" "SELECT count(*) FROM evrep.dead_letter"
is "$(sql "$B" 'SELECT origin, schema_name, table_name, target_schema, target_table, seq IS NOT NULL, sqlstate FROM evrep.dead_letter')" \
   "$A|public|customer|replica|customer_copy|t|23514" "evrep.dead_letter names the published table and the local one"
is "$(sql "$B" "SELECT origin, schema_name, table_name, target_schema, target_table, dead_letters FROM evrep.status WHERE role = 'apply'")" \
   "$A|public|customer|replica|customer_copy|1" "evrep.status names both, one dead letter"
like "$(sql "$B" "SELECT last_error FROM evrep.status WHERE role = 'apply'")" 'credit_small' \
   "evrep.status: last_error names the constraint"
ok "A: later rows flow on" sql "$A" "INSERT INTO customer VALUES (2001, 'after', 1)"
ok "B applies the later row" wait_value 60 1 sql "$B" "SELECT count(*) FROM replica.customer_copy WHERE id = 2001"
ok "B: the constraint goes" sql "$B" "ALTER TABLE replica.customer_copy DROP CONSTRAINT credit_small"
is "$(sql "$B" 'SELECT evrep_replay(id) FROM evrep.dead_letter')" t "evrep_replay applies the parked row"
is "$(sql "$B" "SELECT dead_letters FROM evrep.status WHERE role = 'apply'")" 0 "no dead letter left"

# --- the end state -----------------------------------------------------------------
ok "A's outbox drains to 0" wait_value 60 0 outbox_depth "$A"
is "$(table_md5 "$B" replica.customer_copy)" "$(table_md5 "$A" customer)" "B's replica equals A's table (md5)"
is "$(row_count "$B" replica.customer_copy)" "$(row_count "$A" customer)" "same row count"
is "$(table_md5 "$B" customer)" "$own_md5" "B's own public.customer is unchanged (md5)"
is "$(sql "$B" "SELECT n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE schemaname = 'public' AND relname = 'customer'")" 0 \
   "no row of B's own public.customer was ever updated or deleted"
# --- a rename of the target, then a dump and reload of B ---------------------------
ok "B: the target renamed to replica.customer_renamed" \
    sql "$B" "ALTER TABLE replica.customer_copy RENAME TO customer_renamed"
ok "A: a row after the rename" sql "$A" "INSERT INTO customer VALUES (2002, 'after rename', 2)"
ok "B applies it into the renamed table" \
    wait_value 60 1 sql "$B" "SELECT count(*) FROM replica.customer_renamed WHERE id = 2002"
is "$(sql "$B" "SELECT target_schema, target_table FROM evrep.status WHERE role = 'apply'")" \
   "replica|customer_renamed" "evrep.status names the target as it is called now"
DUMPS=$(evrep_base_dir)/t61-dumps
rm -rf "$DUMPS"; mkdir -p "$DUMPS"; (( EUID == 0 )) && chown postgres: "$DUMPS"
ok "pg_dump -Fc of B" pg_dump_node "$B" "$DUMPS/b.dump"
ok "stop B" pg_stop "$B"
ok "B replaced by a new cluster with the dump restored" pg_reload_dump "$B" "$DUMPS/b.dump"
ok "start B, workers held off" pg_start "$B" "-c evrep.database=''"
is "$(sql "$B" "SELECT schema_name, table_name, relid, relid = 'replica.customer_renamed'::regclass FROM evrep.subscription")" \
   "public|customer|replica.customer_renamed|t" "the restored subscription's relid is the renamed table of the new cluster"
ok "stop B" pg_stop "$B"
topo_mark "$B"
ok "start B" pg_start "$B"
ok "B's queue is bound again" wait_until 60 "topo_bound $B public.customer"
ok "A: changes after the reload" sql "$A" "INSERT INTO customer VALUES (2003, 'after reload', 3);
    UPDATE customer SET name = 'changed after reload' WHERE id = 1100"
ok "B's renamed replica converges with A's table" \
    wait_until 90 "[[ \$(table_md5 $B replica.customer_renamed) == \$(table_md5 $A customer) ]]"
is "$(table_md5 "$B" customer)" "$own_md5" "B's own public.customer survived the reload unchanged"
done_testing
