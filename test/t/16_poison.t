#!/usr/bin/env bash
# 16_poison: malformed and unappliable messages published straight to the
# evrep exchange by an AMQP client as the broker user of the origin they
# name (user_id set, as evrep's publisher does) are parked in B's
# evrep.dead_letter with their error; the stream behind them keeps flowing;
# an operator fixes a parked event and replays it, once.
# Ports: AMQP 5717, PostgreSQL 5833 (A) and 5834 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t16mq A=t16a B=t16b

topo_up_tap <<EOF
broker $MQ port=5717 users=poison_src,poison_v9
node $A port=5833 publish=customer schema="$CUSTOMER_DDL"
node $B port=5834 subscribe=customer schema="$CUSTOMER_DDL"
EOF
URL=$(topo_broker_url "$MQ" poison_src)

ok "A: rows 1..200 before the poison" sql_script "$A" "$(single_inserts customer 1 200)"
ok "B receives them" wait_value 60 200 row_count "$B" customer

# pub BODY [URL] -- publish BODY (- : standard input) with the URL's user as user_id
pub() { rmq_tool publish "${2:-$URL}" evrep public.customer "$1" =; }
msg() {   # ORIGIN FORMAT TABLE EVENTS_JSON
    printf '{"format": "%s", "origin": "%s", "schema": "public", "table": "%s", "key": ["id"], "events": [%s]}' \
        "$2" "$1" "$3" "$4"
}

ok "publish 'not json'" pub 'not json'
non_utf8() { printf '\xff\xfe{"format": "evrep.v1"' | pub -; }
ok "publish a non-UTF-8 body" non_utf8
ok "publish evrep.v1 JSON without events" pub '{"format": "evrep.v1", "origin": "poison_src"}'
ok "publish a message of an unknown format (evrep.v9)" \
    pub "$(msg poison_v9 evrep.v9 customer '{"seq": 1, "op": "insert", "row": {"id": 800001, "name": "v9", "credit": 1}}')" \
    "$(topo_broker_url "$MQ" poison_v9)"
ok "publish an event for a table B does not subscribe" \
    pub "$(msg poison_src evrep.v1 nosuch '{"seq": 1, "op": "insert", "row": {"id": 1, "note": "n"}}')"
ok "publish a well-formed message whose 2nd of 3 events has a bad type" \
    pub "$(msg poison_src evrep.v1 customer '
        {"seq": 1, "op": "insert", "row": {"id": 900001, "name": "good one", "credit": 1}},
        {"seq": 2, "op": "insert", "row": {"id": 900002, "name": "bad credit", "credit": "lots"}},
        {"seq": 3, "op": "insert", "row": {"id": 900003, "name": "good three", "credit": 3}}')"

ok "A: rows 201..400 after the poison" sql_script "$A" "$(single_inserts customer 201 400)"
ok "the stream continues: B receives A's later rows" \
    wait_value 90 400 sql "$B" "SELECT count(*) FROM customer WHERE id <= 400"
ok "six dead letters parked" wait_value 60 6 sql "$B" 'SELECT count(*) FROM evrep.dead_letter'

dl() { sql "$B" "SELECT $1 FROM evrep.dead_letter WHERE $2"; }
is "$(dl "count(*), bool_and(error <> ''), bool_and(sqlstate ~ '^[0-9A-Z]{5}\$')" "body = 'not json'")" "1|t|t" \
   "'not json' parked verbatim with an error and a SQLSTATE"
is "$(dl "body" "body LIKE '\\\\x%'")" '\xfffe7b22666f726d6174223a202265767265702e763122' \
   "the non-UTF-8 body parked as \\x hex"
is "$(dl "count(*)" "body LIKE '%\"poison_src\"}'")" 1 "the message without events parked"
is "$(dl "count(*)" "body LIKE '%evrep.v9%'")" 1 "the unknown format parked"
is "$(dl "count(*)" "table_name = 'nosuch'")" 1 "the event for an unsubscribed table parked"
is "$(dl "origin, table_name, seq, sqlstate" "body LIKE '%lots%'")" "poison_src|customer|2|22P02" \
   "the bad-type event parked alone: origin, table, seq, SQLSTATE 22P02"
like "$(dl error "body LIKE '%lots%'")" 'invalid input syntax for type integer' "its error text"
is "$(sql "$B" 'SELECT id, name FROM customer WHERE id > 800000 ORDER BY id')" \
   $'900001|good one\n900003|good three' "the good events around the bad one were applied; nothing of v9"
is "$(sql "$B" "SELECT dead_letters FROM evrep.status WHERE role = 'apply' AND origin = 'poison_src' AND table_name = 'customer'")" \
   1 "evrep.status counts the parked event"
is "$(worker_connected "$B" consumer)" t "B's consumer is still connected"

# --- replay ----------------------------------------------------------------------
bad=$(dl id "body LIKE '%lots%'")
is "$(sql "$B" "SELECT evrep_replay($bad)")" f "replay before the fix fails (false)"
is "$(dl "replay_count, replayed_at IS NULL" "id = $bad")" "1|t" "and leaves it parked, counted"
ok "fix the parked body" sql "$B" "UPDATE evrep.dead_letter SET body = replace(body, '\"lots\"', '7') WHERE id = $bad"
is "$(sql "$B" "SELECT evrep_replay($bad)")" t "replay after the fix applies it (true)"
is "$(sql "$B" 'SELECT name, credit FROM customer WHERE id = 900002')" "bad credit|7" "the fixed row is on B"
is "$(dl "replay_count, replayed_at IS NOT NULL" "id = $bad")" "2|t" "the dead letter is marked replayed"
ok "a second replay of it is refused" bash -c '! "$@"' _ sql "$B" "SELECT evrep_replay($bad)"
is "$(sql "$B" "SELECT dead_letters FROM evrep.status WHERE role = 'apply' AND origin = 'poison_src' AND table_name = 'customer'")" \
   0 "evrep.status: no dead letter waiting for poison_src/customer"

nosuch=$(dl id "table_name = 'nosuch'")
ok "subscribe the missing table" sql "$B" "CREATE TABLE nosuch (id int PRIMARY KEY, note text); SELECT evrep_subscribe('nosuch')"
is "$(sql "$B" "SELECT evrep_replay($nosuch)")" t "replay of the unsubscribed table's event after subscribing"
is "$(sql "$B" 'SELECT id, note FROM nosuch')" "1|n" "its row is applied"

notjson=$(dl id "body = 'not json'")
is "$(sql "$B" "SELECT evrep_replay($notjson)")" f "'not json' still cannot be applied"

ok "A: rows 401..500 after the replays" sql_script "$A" "$(single_inserts customer 401 500)"
ok "B has all of A's rows" wait_value 60 500 sql "$B" "SELECT count(*) FROM customer WHERE id <= 500"
is "$(same_ids "$A" "$B" "customer WHERE id <= 500")" "500|0|0" "A's stream intact: no id missing or extra"
ok "A's outbox drains to 0" wait_value 60 0 outbox_depth "$A"
is "$(applied "$B" "$A" customer)" 500 "B applied A's 500 events once each"
done_testing
