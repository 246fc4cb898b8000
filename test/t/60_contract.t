#!/usr/bin/env bash
# 60_contract: a table published with a column list and a row filter.
# Four clients insert, update (into and out of the filter) and delete on A;
# B subscribes from the start, C joins late (a copy).  In the middle of the
# stream A changes the contract (adds a column, narrows the filter) with
# evrep_alter_publication.  At the end each subscriber's table equals A's
# rows as the current contract shows them, and so does a resync of B.
# Ports: AMQP 6700, PostgreSQL 6701 (A), 6702 (B), 6703 (C).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t60mq A=t60a B=t60b C=t60c
DDL='CREATE TABLE item (id int PRIMARY KEY, status text NOT NULL, qty int NOT NULL, note text)'

topo_up_tap <<EOF
broker $MQ port=6700
node $A port=6701 schema="$DDL"
node $B port=6702 schema="$DDL"
node $C port=6703 schema="$DDL"
EOF

ok "A publishes item with a column list and a filter" \
    sql "$A" "SELECT evrep_publish('item', columns => '{id,status,qty}', row_filter => 'status <> ''DRAFT''')"
ok "B subscribes from the start" sql "$B" "SELECT evrep_subscribe('item')"

# client K: rounds of inserts of its own ids, updates across the filter, deletes
client() {
    local k=$1 r
    for r in $(seq 1 30); do
        sql_script "$A" "
INSERT INTO item SELECT g, (ARRAY['DRAFT','OPEN','DONE'])[1 + g % 3], (g * 7 + $r) % 50, 'n' || g
  FROM generate_series($k * 100000 + $r * 20, $k * 100000 + $r * 20 + 19) g;
UPDATE item SET status = (ARRAY['DRAFT','OPEN','DONE'])[1 + (id + $r) % 3], qty = (qty + $r) % 50,
  note = 'u$r' WHERE id BETWEEN $k * 100000 AND $k * 100000 + 99999 AND id % 5 = $r % 5;
UPDATE item SET note = 'only note $r' WHERE id BETWEEN $k * 100000 AND $k * 100000 + 99999 AND id % 3 = 0;
DELETE FROM item WHERE id BETWEEN $k * 100000 AND $k * 100000 + 99999 AND id % 11 = $r % 11;" >/dev/null || return 1
        sleep 0.1
    done
}
pids=()
for k in 1 2 3 4; do client $k & pids+=($!); done

ok "rows flow to B" wait_until 60 "[[ \$(row_count $B item) -ge 50 ]]"
sleep 1
ok "A changes the contract in the middle of the stream" \
    sql "$A" "SELECT evrep_alter_publication('item', columns => '{id,status,qty,note}', row_filter => 'status <> ''DRAFT'' AND qty >= 10')"
ok "C subscribes late (a copy)" sql "$C" "SELECT evrep_subscribe('item')"
fails=0
for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
is "$fails" 0 "the clients finished without error"

expected="SELECT md5(coalesce(string_agg(format('%s|%s|%s|%s', id, status, qty, note), ',' ORDER BY id), '')) FROM item"
want=$(sql "$A" "$expected WHERE status <> 'DRAFT' AND qty >= 10")
note "A: $(row_count "$A" item) rows, $(sql "$A" "SELECT count(*) FROM item WHERE status <> 'DRAFT' AND qty >= 10") under the contract"
is "$(sql "$A" "SELECT column_list::text || ' ' || row_filter FROM evrep.publication WHERE table_name = 'item'")" \
   "{id,status,qty,note} ((status <> 'DRAFT'::text) AND (qty >= 10))" "evrep.publication shows the contract"
ok "A's outbox drains" wait_value 120 0 outbox_depth "$A"
ok "C's copy is done" wait_value 120 done sql "$C" "SELECT phase FROM evrep.sync_status WHERE role = 'receive' AND table_name = 'item'"
ok "B equals A's rows under the current contract" wait_value 60 "$want" sql "$B" "$expected"
ok "C (copied late) equals them too" wait_value 60 "$want" sql "$C" "$expected"

ok "B resyncs" sql "$B" "SELECT evrep_resync('item')"
ok "B's resync is done" wait_value 120 done sql "$B" "SELECT phase FROM evrep.sync_status WHERE role = 'receive' AND table_name = 'item'"
is "$(sql "$B" "$expected")" "$want" "after the resync B still equals A's rows under the contract"
is "$(sql "$B" 'SELECT count(*) FROM evrep.dead_letter')" 0 "no dead letters on B"
is "$(sql "$C" 'SELECT count(*) FROM evrep.dead_letter')" 0 "no dead letters on C"
done_testing
