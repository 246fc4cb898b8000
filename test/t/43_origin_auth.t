#!/usr/bin/env bash
# 43_origin_auth: only an origin speaks for itself.  A broker user that may
# publish to the exchange cannot write rows for another node by naming it
# as "origin", cannot push a stream's numbers, cannot set another user's
# user_id (RabbitMQ refuses); a message without user_id is parked;
# evrep_allow_sender lets another user speak for an origin.  docs/operations.md's
# least-privilege recipe (one broker user per node, topic permissions) is
# applied to A and replication still works, while a stranger restricted the
# same way cannot publish a routing key it does not own.
# Ports: AMQP 5791, PostgreSQL 5931 (A) and 5932 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t43mq A=t43a B=t43b

topo_up_tap <<EOF
broker $MQ port=5791 users=mallory
node $A port=5931 publish=customer schema="$CUSTOMER_DDL"
node $B port=5932 subscribe=customer schema="$CUSTOMER_DDL"
EOF
MALLORY=$(topo_broker_url "$MQ" mallory)

msg() {   # ORIGIN SEQ ID NAME
    printf '{"format": "evrep.v1", "origin": "%s", "schema": "public", "table": "customer", "key": ["id"], "events": [{"seq": %s, "op": "insert", "row": {"id": %s, "name": "%s", "credit": 0}}]}' \
        "$1" "$2" "$3" "$4"
}
progress() { sql "$B" "SELECT last_seq, applied FROM evrep.progress WHERE origin = '$A'"; }
parked() { sql "$B" "SELECT count(*) FROM evrep.dead_letter WHERE sqlstate = '28000'"; }

ok "A: rows 1..50" sql_script "$A" "$(single_inserts customer 1 50)"
ok "B gets them from A" wait_value 60 50 row_count "$B" customer
ok "B's progress for A settles at 50" wait_value 30 "50|50" progress

# --- a stranger names A as the origin -------------------------------------------
ok "mallory publishes an event claiming origin $A (user_id mallory)" \
    rmq_tool publish "$MALLORY" evrep public.customer "$(msg "$A" 51 9001 forged)" =
ok "mallory publishes one that would push A's stream to the largest number" \
    rmq_tool publish "$MALLORY" evrep public.customer "$(msg "$A" 9223372036854775807 9002 forged)" =
ok "both are parked" wait_value 60 2 parked
is "$(sql "$B" "SELECT count(*) FROM customer WHERE name = 'forged'")" 0 "no forged row was written"
is "$(progress)" "50|50" "A's stream on B did not move"
is "$(sql "$B" "SELECT DISTINCT origin || ' ' || error FROM evrep.dead_letter WHERE sqlstate = '28000'")" \
   "$A broker user \"mallory\" may not speak for evrep origin \"$A\"" "the error says who may not speak for whom"
ok "A: rows 51..80 after the forgeries" sql_script "$A" "$(single_inserts customer 51 80)"
ok "B applies A's real events 51..80 (their numbers were not taken)" wait_value 60 80 row_count "$B" customer
is "$(progress)" "80|80" "A's stream on B: 80 applied, no gap"

# --- RabbitMQ refuses a user_id that is not the login ---------------------------
out=$(rmq_tool publish "$MALLORY" evrep public.customer "$(msg "$A" 81 9003 impersonated)" "$A" 2>&1); rc=$?
isnt "$rc" 0 "mallory cannot set user_id $A"
like "$out" "406|PRECONDITION_FAILED|user_id" "RabbitMQ says why: $out"

# --- no user_id at all --------------------------------------------------------------
ok "a message without user_id (amqp-publish as guest)" \
    amqp-publish --url="$(topo_broker_url "$MQ")" -e evrep -r public.customer -p -b "$(msg "$A" 82 9004 anonymous)"
ok "is parked" wait_value 60 3 parked
like "$(sql "$B" "SELECT error FROM evrep.dead_letter WHERE body LIKE '%anonymous%'")" 'carries no AMQP user_id' \
     "because it carries no user_id"
is "$(sql "$B" "SELECT count(*) FROM customer WHERE id > 9000")" 0 "none of them wrote a row"

# --- evrep_allow_sender ---------------------------------------------------------------
ok "B: evrep_allow_sender('mallory_origin', 'mallory')" sql "$B" "SELECT evrep_allow_sender('mallory_origin', 'mallory')"
ok "mallory publishes for origin mallory_origin" \
    rmq_tool publish "$MALLORY" evrep public.customer "$(msg mallory_origin 1 9101 allowed)" =
ok "B applies it" wait_value 60 1 sql "$B" "SELECT count(*) FROM customer WHERE id = 9101"
ok "B: evrep_disallow_sender" sql "$B" "SELECT evrep_disallow_sender('mallory_origin', 'mallory')"
ok "mallory publishes for mallory_origin again" \
    rmq_tool publish "$MALLORY" evrep public.customer "$(msg mallory_origin 2 9102 refused)" =
ok "parked" wait_value 60 4 parked
is "$(sql "$B" "SELECT count(*) FROM customer WHERE id = 9102")" 0 "and not applied"

# --- docs/operations.md's least-privilege recipe ---------------------------
esc=${A//./\\.}
ok "A's broker user gets only its queue and the exchange" \
    rmq_ctl "$MQ" -q set_permissions -p / "$A" "^(evrep|evrep\\.$esc(\\.quorum|\\.lock\\.publisher|\\.lock\\.consumer)?)\$" \
        "^(evrep|evrep\\.$esc(\\.quorum|\\.lock\\.publisher|\\.lock\\.consumer)?)\$" "^(evrep|evrep\\.$esc(\\.quorum|\\.lock\\.publisher|\\.lock\\.consumer)?)\$"
ok "and may publish only public.customer" \
    rmq_ctl "$MQ" -q set_topic_permissions -p / "$A" evrep '^public\.customer$' '.*'
restrict_mallory() {
    rmq_ctl "$MQ" -q set_permissions -p / mallory '^$' '^evrep$' '^$' \
        && rmq_ctl "$MQ" -q set_topic_permissions -p / mallory evrep '^public\.mallory$' '^$'
}
ok "mallory may configure nothing, and publish only public.mallory" restrict_mallory
is "$(rmq_ctl "$MQ" -q list_users --no-table-headers 2>/dev/null | grep -c impersonator)" 0 "no broker user has the impersonator tag"
topo_mark "$A"
ok "restart A: its workers reconnect under the restricted permissions" pg_restart "$A"
ok "A's workers are connected again" topo_wait_ready 90 "$A"
ok "A: rows 101..150 under least privilege" sql_script "$A" "$(single_inserts customer 101 150)"
ok "B gets them" wait_value 90 50 sql "$B" 'SELECT count(*) FROM customer WHERE id BETWEEN 101 AND 150'
out=$(rmq_tool publish "$MALLORY" evrep public.customer "$(msg mallory 1 9201 topic)" = 2>&1); rc=$?
isnt "$rc" 0 "mallory cannot publish public.customer"
like "$out" "403|ACCESS_REFUSED|access" "RabbitMQ refuses it: $out"

is "$(same_ids "$A" "$B" "customer WHERE id < 9000")" "$(row_count "$A" customer)|0|0" "B has every row of A, and no other below 9000"
is "$(sql "$B" "SELECT count(*) FROM customer WHERE id > 9000 AND id <> 9101")" 0 \
   "of the strangers' messages only the allowed one wrote a row"

# --- a subscriber under the recipe asks its origin for a copy ---------------------
# B publishes nothing; to ask for copies it needs to publish copy.<table>.
escb=${B//./\\.}
ok "B's broker user gets only its queue and the exchange" \
    rmq_ctl "$MQ" -q set_permissions -p / "$B" "^(evrep|evrep\\.$escb(\\.quorum|\\.lock\\.publisher|\\.lock\\.consumer)?)\$" \
        "^(evrep|evrep\\.$escb(\\.quorum|\\.lock\\.publisher|\\.lock\\.consumer)?)\$" "^(evrep|evrep\\.$escb(\\.quorum|\\.lock\\.publisher|\\.lock\\.consumer)?)\$"
ok "B: topic permission to publish nothing" rmq_ctl "$MQ" -q set_topic_permissions -p / "$B" evrep '^$' '.*'
topo_mark "$B"
ok "restart B under the restricted permissions" pg_restart "$B"
ok "B's workers are connected again" topo_wait_ready 90 "$B"
ok "B: evrep_resync('customer')" sql "$B" "SELECT evrep_resync('customer')"
ok "the broker refuses B's copy request (WARNING in B's log)" \
    wait_until 60 "grep -q 'refused a copy request' '$(pg_logfile "$B")'"
ok "A: rows 151..160 while B's request is refused" sql_script "$A" "$(single_inserts customer 151 160)"
ok "B's consumer keeps applying" wait_value 60 10 sql "$B" 'SELECT count(*) FROM customer WHERE id BETWEEN 151 AND 160'
is "$(sql "$B" "SELECT phase FROM evrep.sync_status WHERE role = 'receive'")" requested "the copy waits (phase requested)"
ok "B may publish copy.public.customer (the recipe for a subscriber)" \
    rmq_ctl "$MQ" -q set_topic_permissions -p / "$B" evrep '^copy\.public\.customer$' '.*'
ok "the copy goes through once the request is repeated" \
    wait_value 60 done sql "$B" "SELECT phase FROM evrep.sync_status WHERE role = 'receive'"
is "$(table_md5 "$B" customer)" "$(table_md5 "$A" customer)" "B equals A again (the strangers' rows are gone)"
done_testing
