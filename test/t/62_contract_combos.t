#!/usr/bin/env bash
# 62_contract_combos: a contract (column list + row filter) together with a
# subscriber's own table name, the copy, a dead letter and its replay, a
# contract change in the middle of the stream, a resync and origin
# authentication, in one topology (60 and 61 cover the other combinations).
#   - A publishes orders with a column list and a filter; B subscribes it
#     into replica.orders_view with a copy of A's rows while writers run on A;
#   - a row B's target refuses (CHECK on a published column) is parked with
#     both names and only the contract's columns, then replayed once;
#   - A changes the contract (adds a column, narrows the filter) under the
#     writers; B's target converges to A's rows under the current contract,
#     and so does a resync of the target (rows damaged by hand first);
#   - S, a stranger, publishes public.orders too, as broker user "stranger"
#     that B has not allowed to speak for origin S: its events, its answers
#     to B's copy requests and a message it forges for origin A are parked,
#     none touches B's target or A's stream;
#   - an UPDATE on A of an unpublished column only sends nothing.
# Ports: AMQP 6740, PostgreSQL 6741 (A), 6742 (B), 6743 (S).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t62mq A=t62a B=t62b S=t62s
# remark is published only from the contract change on; margin never
DDL='CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, qty int NOT NULL, remark text, margin int)'
# B's replica has margin too: it must stay NULL, A never sends it
VIEW_DDL='CREATE SCHEMA replica; CREATE TABLE replica.orders_view (id int PRIMARY KEY, status text NOT NULL, qty int NOT NULL, remark text, margin int)'
STRANGER_URL="amqp://stranger:$(rmq_password stranger)@127.0.0.1:6740"

topo_up_tap <<EOF
broker $MQ port=6740 users=stranger
node $A port=6741 schema="$DDL" conf="evrep.copy_chunk_rows = 100" conf="evrep.copy_rate_limit = 400"
node $B port=6742 schema="$VIEW_DDL"
node $S port=6743 publish=orders schema="$DDL" conf="evrep.broker_url = '$STRANGER_URL'"
EOF

# the rows of a table under the final contract's columns, as one md5
rows_md5() {
    sql "$1" "SELECT md5(coalesce(string_agg(format('%s|%s|%s|%s', id, status, qty, remark), ',' ORDER BY id), '')) FROM $2"
}
FINAL_FILTER="status <> 'DRAFT' AND qty >= 10"
want() { rows_md5 "$A" "orders WHERE $FINAL_FILTER"; }
got() { rows_md5 "$B" replica.orders_view; }
# dead letters on B by cause: 23514 the CHECK, 28000 a sender refused
parked() { sql "$B" "SELECT count(*) FROM evrep.dead_letter WHERE sqlstate = '$1' AND origin = '$2'"; }
# events (of the given ops) in the messages of origin $2 parked with 28000
parked_events() {
    sql "$B" "SELECT count(*) FROM evrep.dead_letter d, jsonb_array_elements(d.body::jsonb -> 'events') e
              WHERE d.sqlstate = '28000' AND d.origin = '$2' AND e ->> 'op' = ANY ('$1')"
}
progress_a() { sql "$B" "SELECT last_seq, applied FROM evrep.progress WHERE origin = '$A' AND table_name = 'orders'"; }

ok "A publishes orders with a column list and a filter" \
    sql "$A" "SELECT evrep_publish('orders', columns => '{id,status,qty}', row_filter => 'status <> ''DRAFT''')"
ok "A: 600 rows before B subscribes" sql "$A" "
    INSERT INTO orders SELECT g, (ARRAY['DRAFT','OPEN','DONE'])[1 + g % 3], g % 50, 'pre ' || g, g * 13
      FROM generate_series(1, 600) g"
ok "S: 60 rows of its own public.orders, keys that A has too" sql "$S" "
    INSERT INTO orders SELECT g, 'FORGED', 40, 'stranger ' || g, 666 FROM generate_series(1, 60) g"
ok "S hears copy requests for public.orders" wait_until 30 "topo_bound $S copy.public.orders"
ok "S's outbox drains (its rows went out before B's queue was bound)" wait_value 30 0 outbox_depth "$S"

# --- writers on A during the copy, the dead letter and the contract change ------
STOP=$(evrep_base_dir)/t62.stop
rm -f "$STOP"
writer() {   # K: ids K*100000.., until $STOP exists (at most 400 rounds)
    local k=$1 r
    for r in $(seq 1 400); do
        [[ -e $STOP ]] && return 0
        sql_script "$A" "
INSERT INTO orders SELECT g, (ARRAY['DRAFT','OPEN','DONE'])[1 + g % 3], (g * 7 + $r) % 50, 'w' || g, g
  FROM generate_series($k * 100000 + $r * 10, $k * 100000 + $r * 10 + 9) g;
UPDATE orders SET status = (ARRAY['DRAFT','OPEN','DONE'])[1 + (id + $r) % 3], qty = (qty + $r) % 50
  WHERE id BETWEEN $k * 100000 AND $k * 100000 + 99999 AND id % 5 = $r % 5;
UPDATE orders SET remark = 'r$r' WHERE id BETWEEN $k * 100000 AND $k * 100000 + 99999 AND id % 3 = $r % 3;
UPDATE orders SET margin = margin + 1 WHERE id BETWEEN $k * 100000 AND $k * 100000 + 99999 AND id % 2 = 0;
DELETE FROM orders WHERE id BETWEEN $k * 100000 AND $k * 100000 + 99999 AND id % 11 = $r % 11;" >/dev/null || return 1
        sleep 0.1
    done
}
pids=()
for k in 1 2 3; do writer $k & pids+=($!); done
# the writers' progress: the highest id writer 1 committed
written() { sql "$A" "SELECT coalesce(max(id), 0) FROM orders WHERE id BETWEEN 100000 AND 199999"; }

# --- B subscribes into its own table, with a copy ---------------------------------
w0=$(written)
ok "B: evrep_subscribe('orders', target => 'replica.orders_view') while A's writers run" \
    sql "$B" "SELECT evrep_subscribe('orders', target => 'replica.orders_view')"
ok "B's copy finishes" wait_value 60 done sql "$B" "SELECT phase FROM evrep.sync_status WHERE role = 'receive'"
cmp_ok "$(written)" -gt "$w0" "A's writers committed rows while the copy ran (chunks of 100 rows, 400 rows/s)"
like "$(sql "$B" "SELECT schema_name, table_name, rows_copied FROM evrep.sync_status WHERE role = 'receive'")" \
     '^public\|orders\|[0-9]+$' "evrep.sync_status: public.orders copied"
ok "S answered B's copy request too: parked, as S's broker user may not speak for S" \
    wait_until 60 "[[ \$(parked_events '{copy}' $S) -ge 1 ]]"
is "$(sql "$B" "SELECT count(*) FROM replica.orders_view WHERE status = 'FORGED' OR margin IS NOT NULL")" 0 \
   "no row of S's copy and no unpublished column reached B's target"
is "$(sql "$B" "SELECT count(*) FROM replica.orders_view WHERE id <= 600")" \
   "$(sql "$A" "SELECT count(*) FROM orders WHERE id <= 600 AND status <> 'DRAFT'")" \
   "B's target holds A's first 600 rows that pass the filter (S's copy deleted none)"

# --- a row B's target refuses: parked with the contract's columns only ------------
ok "B: a CHECK constraint on a published column of its target" \
    sql "$B" "ALTER TABLE replica.orders_view ADD CONSTRAINT qty_small CHECK (qty < 1000)"
ok "A: a row that passes the filter with qty 5000 (unpublished: remark, margin)" \
    sql "$A" "INSERT INTO orders VALUES (700001, 'OPEN', 5000, 'secret remark', 4242)"
ok "B parks it" wait_value 60 1 parked 23514 "$A"
is "$(sql "$B" "SELECT origin, schema_name, table_name, target_schema, target_table, sqlstate FROM evrep.dead_letter WHERE sqlstate = '23514'")" \
   "$A|public|orders|replica|orders_view|23514" "evrep.dead_letter names the published table and B's own"
is "$(sql "$B" "SELECT jsonb_array_length(body::jsonb -> 'events'), body::jsonb -> 'events' -> 0 ->> 'op',
                       (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(body::jsonb -> 'events' -> 0 -> 'row') k)
                FROM evrep.dead_letter WHERE sqlstate = '23514'")" \
   "1|insert|id,qty,status" "its body is one insert with exactly the contract's columns"
is "$(sql "$B" "SELECT count(*) FROM evrep.dead_letter WHERE sqlstate = '23514'
                AND (body LIKE '%remark%' OR body LIKE '%margin%' OR body LIKE '%4242%')")" 0 \
   "no unpublished column (name or value) appears in it"
like "$(sql "$B" "SELECT last_error FROM evrep.status WHERE role = 'apply' AND origin = '$A'")" 'qty_small' \
     "evrep.status: last_error names B's constraint"
ok "B: the constraint goes" sql "$B" "ALTER TABLE replica.orders_view DROP CONSTRAINT qty_small"
is "$(sql "$B" "SELECT evrep_replay(id) FROM evrep.dead_letter WHERE sqlstate = '23514'")" t "evrep_replay applies it"
is "$(sql "$B" "SELECT id, status, qty, remark, margin FROM replica.orders_view WHERE id = 700001")" \
   "700001|OPEN|5000||" "B's target holds the row, without its unpublished columns"
out=$(sql "$B" "SELECT evrep_replay(id) FROM evrep.dead_letter WHERE sqlstate = '23514'" 2>&1); rc=$?
isnt "$rc" 0 "a second evrep_replay of it is refused"
like "$out" 'already replayed' "because it was already replayed: $out"
is "$(sql "$B" "SELECT replay_count, replayed_at IS NOT NULL FROM evrep.dead_letter WHERE sqlstate = '23514'")" \
   "1|t" "it was applied once"
is "$(sql "$B" "SELECT dead_letters FROM evrep.status WHERE role = 'apply' AND origin = '$A'")" 0 \
   "evrep.status: no dead letter of A's stream left"

# --- the contract changes in the middle of the stream ------------------------------
sleep 1
ok "A: evrep_alter_publication adds remark and narrows the filter, writers running" \
    sql "$A" "SELECT evrep_alter_publication('orders', columns => '{id,status,qty,remark}', row_filter => '${FINAL_FILTER//\'/\'\'}')"
w0=$(written)
sleep 2
touch "$STOP"
fails=0
for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
is "$fails" 0 "the writers finished without error"
w1=$(written)
note "writer 1: highest id $w0 when the contract changed, $w1 at the end"
cmp_ok "$w1" -gt "$w0" "they wrote on after the contract change"
is "$(sql "$A" "SELECT column_list::text || ' ' || row_filter FROM evrep.publication WHERE table_name = 'orders'")" \
   "{id,status,qty,remark} ((status <> 'DRAFT'::text) AND (qty >= 10))" "evrep.publication shows the new contract"
note "A: $(row_count "$A" orders) rows, $(sql "$A" "SELECT count(*) FROM orders WHERE $FINAL_FILTER") under the contract"
ok "A's outbox drains" wait_value 60 0 outbox_depth "$A"
ok "B's target equals A's rows under the current contract (md5)" wait_value 60 "$(want)" got
is "$(row_count "$B" replica.orders_view)" "$(sql "$A" "SELECT count(*) FROM orders WHERE $FINAL_FILTER")" "same row count"
is "$(sql "$B" "SELECT count(*) FROM replica.orders_view WHERE margin IS NOT NULL OR remark IS NULL")" 0 \
   "every row has its remark, none a margin"
is "$(sql "$B" "SELECT count(*) FROM evrep.dead_letter WHERE sqlstate <> '28000' AND replayed_at IS NULL")" 0 \
   "no other dead letter on B"

# --- a resync of the target ----------------------------------------------------------
ok "B: rows of its target damaged by hand" sql "$B" "
    DELETE FROM replica.orders_view WHERE id % 4 = 0;
    UPDATE replica.orders_view SET remark = 'wrong', qty = 49 WHERE id % 7 = 1;
    INSERT INTO replica.orders_view VALUES (-1, 'OPEN', 20, 'stray', NULL)"
isnt "$(got)" "$(want)" "B's target differs now"
req=$(sql "$B" "SELECT max(request_id) FROM evrep.sync")
ok "B: evrep_resync('replica.orders_view')" sql "$B" "SELECT evrep_resync('replica.orders_view')"
ok "the resync finishes" wait_until 60 \
    "[[ \$(sql $B \"SELECT phase FROM evrep.sync WHERE request_id > $req\") == done ]]"
is "$(got)" "$(want)" "after the resync B's target equals A's rows under the contract"
is "$(sql "$B" "SELECT count(*) FROM replica.orders_view WHERE margin IS NOT NULL")" 0 "still no margin"

# --- the stranger ----------------------------------------------------------------------
p0=$(progress_a)
note "B's progress of A's stream: $p0"
ok "S: 20 inserts and an update of its 60 rows, as broker user stranger" sql_script "$S" "
$(for i in $(seq 800001 800020); do echo "INSERT INTO orders VALUES ($i, 'OPEN', 30, 'stranger', 666);"; done)
UPDATE orders SET status = 'FORGED2', qty = 45 WHERE id <= 60;"
seq_a=$(last_seq "$A" orders)
forged=$(printf '{"format": "evrep.v1", "origin": "%s", "schema": "public", "table": "orders", "key": ["id"], "events": [{"seq": %s, "op": "update", "row": {"id": 10, "status": "FORGED3", "qty": 44, "remark": "forged", "margin": 666}}]}' \
    "$A" $((seq_a + 1)))
ok "stranger publishes a message claiming origin $A, the next number of A's stream" \
    rmq_tool publish "$STRANGER_URL" evrep public.orders "$forged" =
ok "B parks S's 80 events" wait_value 60 80 parked_events '{insert,update,delete}' "$S"
ok "and the forgery" wait_value 60 1 parked 28000 "$A"
is "$(sql "$B" "SELECT DISTINCT origin || ' ' || error FROM evrep.dead_letter WHERE sqlstate = '28000' AND origin = '$S'")" \
   "$S broker user \"stranger\" may not speak for evrep origin \"$S\"" "the error says who may not speak for whom"
is "$(sql "$B" "SELECT DISTINCT schema_name, table_name, target_schema, target_table FROM evrep.dead_letter WHERE sqlstate = '28000'")" \
   "public|orders|replica|orders_view" "S's dead letters name the published table and B's target"
is "$(sql "$B" "SELECT count(*) FROM replica.orders_view WHERE status LIKE 'FORGED%' OR id > 800000 OR margin IS NOT NULL")" 0 \
   "nothing of S's reached B's target"
is "$(sql "$B" "SELECT count(*) FROM evrep.progress WHERE origin = '$S'")" 0 "S has no stream progress on B"
is "$(progress_a)" "$p0" "A's stream on B did not move"
is "$(got)" "$(want)" "B's target still equals A's rows under the contract"

# --- an UPDATE of an unpublished column sends nothing --------------------------------
# In one REPEATABLE READ transaction the outbox shows only this transaction's
# own new events: counted before and after each UPDATE (evrep.outbox_pending
# has one row per event; a statement's events are one outbox row).
outbox_delta=$(sql_script "$A" "
    BEGIN ISOLATION LEVEL REPEATABLE READ;
    CREATE TEMP TABLE c0 AS SELECT count(*) AS n FROM evrep.outbox_pending;
    UPDATE orders SET margin = coalesce(margin, 0) + 1000;
    CREATE TEMP TABLE c1 AS SELECT count(*) AS n FROM evrep.outbox_pending;
    UPDATE orders SET remark = remark || '+' WHERE $FINAL_FILTER;
    SELECT (SELECT n FROM c1) - (SELECT n FROM c0), (SELECT count(*) FROM evrep.outbox_pending) - (SELECT n FROM c1);
    ROLLBACK")
is "$outbox_delta" "0|$(sql "$A" "SELECT count(*) FROM orders WHERE $FINAL_FILTER")" \
   "A's outbox: an UPDATE of margin on every row captures 0 events, one of remark one per row in the filter"
seq0=$(last_seq "$A" orders) app0=$(applied "$B" "$A" orders)
ok "A: margin of every row changed (committed), then one new row" sql_script "$A" "
UPDATE orders SET margin = coalesce(margin, 0) + 1000;
INSERT INTO orders VALUES (700002, 'OPEN', 20, 'marker', 1);"
ok "B applies the new row" wait_value 60 1 sql "$B" "SELECT count(*) FROM replica.orders_view WHERE id = 700002"
is "$(last_seq "$A" orders)" $((seq0 + 1)) "A's stream grew by the new row's event only"
is "$(applied "$B" "$A" orders)" $((app0 + 1)) "B applied one event"
is "$(sql "$B" "SELECT count(*) FROM replica.orders_view WHERE margin IS NOT NULL")" 0 "B's target has no margin"
is "$(got)" "$(want)" "B's target equals A's rows under the contract at the end"
done_testing
