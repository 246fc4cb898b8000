#!/usr/bin/env bash
# 63_contract_dump: a contract survives pg_dump / pg_restore into another
# database before any worker has looked at it.  Right after the restore the
# publication rows still name the old tables' oids (a worker renames them
# when it notices the reload); the capture and the ALTER TABLE guard find
# the contract by the publication id their trigger carries, so a writer on
# the restored database never sends a column or a row the contract leaves
# out, and a rename that would break the contract is refused there too.
# No broker: workers are off, the outbox is what is looked at.
# Ports: PostgreSQL 6760.
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

N=t63a
DDL='CREATE TABLE item (id int PRIMARY KEY, status text NOT NULL, qty int, secret text)'

topo_up_tap <<EOF
node $N port=6760 workers=off schema="$DDL"
EOF

ok "publish item: columns id, status; rows not DRAFT" \
    sql "$N" "SELECT evrep_publish('item', columns => '{id,status}', row_filter => 'status <> ''DRAFT''')"
ok "rows on the origin" sql "$N" "INSERT INTO item VALUES (1, 'OPEN', 1, 's1'), (2, 'DRAFT', 2, 's2')"

copy() { pg_psql "$N" -d copydb "$@"; }
dump=$EVREP_TEST_DIR/t63.dump
ok "CREATE DATABASE copydb" sql "$N" "CREATE DATABASE copydb"
ok "pg_dump" "$PG_BINDIR/pg_dump" -h 127.0.0.1 -p 6760 -U postgres -Fc -f "$dump" "$(pg_dbname "$N")"
ok "pg_restore into copydb" "$PG_BINDIR/pg_restore" -h 127.0.0.1 -p 6760 -U postgres -d copydb "$dump"

is "$(copy -c "SELECT schema_name || '.' || table_name || ' ' || column_list::text || ' ' || row_filter
               FROM evrep.publication")" \
   "public.item {id,status} (status <> 'DRAFT'::text)" "the contract is restored"
isnt "$(copy -c "SELECT relid FROM evrep.publication")" "$(copy -c "SELECT 'item'::regclass::oid")" \
     "its relid still names the old table (no worker has run here)"

ok "copydb: empty the outbox the restore filled" copy -c "TRUNCATE evrep.outbox"
ok "copydb: an OPEN and a DRAFT row, and an update of secret only" \
    copy -c "INSERT INTO item VALUES (3, 'OPEN', 3, 'x'), (4, 'DRAFT', 4, 'x'); UPDATE item SET secret = 'y' WHERE id = 1"
is "$(copy -c "SELECT op::text || ' ' || row_data::text FROM evrep.outbox ORDER BY id")" \
   'i {"id":3,"status":"OPEN"}' "copydb captures the OPEN row only, without qty and secret"
unlike "$(copy -c "SELECT coalesce(string_agg(row_data::text, ' '), '') FROM evrep.outbox")" "secret|qty" \
       "no unlisted column in copydb's outbox"

like "$(copy -c "ALTER TABLE item RENAME status TO state" 2>&1)" "its evrep contract would break" \
     "copydb refuses to rename a column the contract lists"
ok "copydb: renaming a column outside the contract is allowed" copy -c "ALTER TABLE item RENAME secret TO hidden"

done_testing
