#!/usr/bin/env bash
# 64_large_rows: rows at PostgreSQL's size limits neither fail a writer nor
# stop a stream.  The broker refuses messages over 2 MB (max_message_size)
# and A sends at most 1 MB (evrep.max_message_bytes): several large rows in
# one transaction travel in several messages; a row whose JSON is over the
# limit (a long text, a 600 MB bytea whose hex form PostgreSQL cannot even
# build, a wide row of 1,600 columns, arrays and jsonb of several MB) is
# captured without failing the writer and travels with its largest values
# in parts, equal on B by md5, and the rows after it arrive; a delete of
# such a row goes out by key; a row captured whole under a larger limit is
# skipped when sent (B parks the skip naming its key, A records it in
# evrep.skipped); a copy (evrep_resync) cuts its chunks within the limit
# and sends the rows that do not fit ahead of their chunk, in parts.
# Ports: AMQP 6770, PostgreSQL 6771 (A) and 6772 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t64mq A=t64a B=t64b
BIG_DDL='CREATE TABLE big (id int PRIMARY KEY, t text, b bytea)'
TYPED_DDL='CREATE TABLE typed (id int PRIMARY KEY, a int[], j jsonb, n numeric[])'
WIDE_DDL="CREATE TABLE wide (id int PRIMARY KEY, $(for i in $(seq 2 1600); do printf 'c%d text,' "$i"; done | sed 's/,$//'))"

topo_up_tap <<EOF
broker $MQ port=6770
node $A port=6771 publish=big,wide,typed schema="$BIG_DDL" schema="$WIDE_DDL" schema="$TYPED_DDL" conf="evrep.max_message_bytes = '1MB'"
node $B port=6772 subscribe=big,wide,typed schema="$BIG_DDL" schema="$WIDE_DDL" schema="$TYPED_DDL"
EOF

# the broker's limit is read when a channel opens: A's publisher opens anew
ok "the broker refuses messages over 2 MB" rmq_ctl "$MQ" eval 'application:set_env(rabbit, max_message_size, 2097152).'
n0=$(grep -c "evrep publisher connected" "$(pg_logfile "$A")")
ok "A's publisher restarts" sql "$A" "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'evrep publisher'"
ok "A's publisher reconnects" wait_until 30 "[[ \$(grep -c 'evrep publisher connected' '$(pg_logfile "$A")') -gt $n0 ]]"

b_ids() { sql "$B" "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM $1"; }
big_md5() { sql "$1" "SELECT md5(coalesce(string_agg(id || ':' || md5(coalesce(t, '')) || ':' || md5(coalesce(b, '')), ',' ORDER BY id), '')) FROM big WHERE id = ANY ('{$2}')"; }
# warnings_none NODE SQL -- runs SQL; fails if it fails or warns that a row is not sent
warnings_none() {
    local err
    err=$(sql "$1" "$2" 2>&1 >/dev/null) || { diag "$err"; return 1; }
    ! grep -q '^WARNING:.*evrep does not send' <<<"$err" || { diag "$err"; return 1; }
}

# --- several large rows in one transaction: more than one message ---------------------
ok "A: five rows of 300 kB in one transaction, then a small one" sql "$A" "
    INSERT INTO big SELECT g, repeat(chr(64 + g), 300000), NULL FROM generate_series(1, 5) g;
    INSERT INTO big VALUES (6, 'small', '\\x06')"
ok "B receives all six" wait_value 60 "1,2,3,4,5,6" b_ids big
is "$(big_md5 "$B" 1,2,3,4,5,6)" "$(big_md5 "$A" 1,2,3,4,5,6)" "B's six rows equal A's (md5)"

# --- a bytea of a MB or more goes apart even in a row that fits ------------------------
ok "A: raise the limit to 8 MB" sql_script "$A" "ALTER SYSTEM SET evrep.max_message_bytes = '8MB'; SELECT pg_reload_conf();"
sleep 1
ok "A: a row with a 2 MB bytea (4 MB of JSON, under the limit)" warnings_none "$A" "INSERT INTO big VALUES (20, 'fits', convert_to(repeat('f', 2000000), 'UTF8'))"
# (as JSON it would be 4 MB, which the broker refuses: the last test below)
ok "B receives it" wait_value 60 1 sql "$B" "SELECT count(*) FROM big WHERE id = 20"
is "$(big_md5 "$B" 20)" "$(big_md5 "$A" 20)" "B's row equals A's (md5)"
# an update that leaves the bytea alone does not send it again
ok "A's publisher cannot reach the broker" sql_script "$A" "
ALTER SYSTEM SET evrep.broker_url = 'amqp://nobody:none@127.0.0.1:1/'; SELECT pg_reload_conf();"
ok "A's publisher left the broker" wait_value 30 f worker_connected "$A" publisher
ok "A: update row 20's text, not its bytea" sql "$A" "UPDATE big SET t = 'text changed' WHERE id = 20"
is "$(sql "$A" "SELECT op::text || ' ' || (row_data::jsonb -> 'unchanged')::text || ' ' || ((row_data::jsonb -> 'row') ? 'b')::text FROM evrep.outbox ORDER BY id DESC LIMIT 1")" \
   'v ["b"] false' "A's update names the bytea unchanged and leaves it out"
ok "A: back to the broker" sql_script "$A" "ALTER SYSTEM RESET evrep.broker_url; SELECT pg_reload_conf();"
ok "B applies the update" wait_value 60 "text changed" sql "$B" "SELECT t FROM big WHERE id = 20"
is "$(big_md5 "$B" 20)" "$(big_md5 "$A" 20)" "B's row still equals A's, bytea included (md5)"
ok "B: its row 20 goes" sql "$B" "DELETE FROM big WHERE id = 20"
ok "A: another update of the text" sql "$A" "UPDATE big SET t = 'again' WHERE id = 20"
ok "B parks it: without the row it cannot keep the bytea" wait_value 60 1 \
    sql "$B" "SELECT count(*) FROM evrep.dead_letter WHERE error LIKE 'the row of this update is not in public.big%'"
is "$(sql "$B" "SELECT count(*) FROM big WHERE id = 20")" 0 "B did not insert a row without its bytea"
ok "B: the dead letter is seen to" sql "$B" "DELETE FROM evrep.dead_letter"
ok "A: delete it (its key alone goes)" sql "$A" "DELETE FROM big WHERE id = 20"
ok "A's outbox drains" wait_value 60 0 outbox_depth "$A"
ok "A: back to 1 MB" sql_script "$A" "ALTER SYSTEM RESET evrep.max_message_bytes; SELECT pg_reload_conf();"
sleep 1

# --- rows over the limit travel with their largest values in parts ----------------------
ok "A: a 3 MB row (no WARNING)" warnings_none "$A" "INSERT INTO big VALUES (7, repeat('x', 3000000), NULL)"
ok "A: a small row after it" sql "$A" "INSERT INTO big VALUES (8, 'after', NULL)"
ok "B receives both" wait_value 60 "1,2,3,4,5,6,7,8" b_ids big
is "$(big_md5 "$B" 7)" "$(big_md5 "$A" 7)" "B's 3 MB row equals A's (md5)"

# the limit classes: a 150 MB text (over RabbitMQ's default 128 MB), a
# 600 MB bytea (its hex form is over PostgreSQL's 1 GB), a 1,600-column row
ok "A: a 150 MB text" warnings_none "$A" "INSERT INTO big VALUES (9, repeat('t', 150 * 1024 * 1024), NULL)"
ok "A: a 600 MB bytea" warnings_none "$A" "INSERT INTO big VALUES (10, NULL, convert_to(repeat('b', 600 * 1024 * 1024), 'UTF8'))"
is "$(sql "$A" "SELECT octet_length(b) FROM big WHERE id = 10")" 629145600 "the 600 MB bytea is in A's table"
# (a page holds some 450 values stored apart from their row at most)
ok "A: a row of 1,600 columns, 300 of them 5 kB" warnings_none "$A" "INSERT INTO wide (id, $(for i in $(seq 2 301); do printf 'c%d,' "$i"; done | sed 's/,$//')) SELECT 1, $(for i in $(seq 2 301); do printf "repeat('w%d', 2500)," "$((i % 10))"; done | sed 's/,$//')"
ok "A: a small row of each table after them" sql "$A" "INSERT INTO big VALUES (11, 'after', NULL); INSERT INTO wide (id, c2) VALUES (2, 'small')"
ok "B receives them all" wait_until 300 "[[ \$(b_ids big) == 1,2,3,4,5,6,7,8,9,10,11 && \$(b_ids wide) == 1,2 ]]"
is "$(big_md5 "$B" 9,10)" "$(big_md5 "$A" 9,10)" "B's 150 MB text and 600 MB bytea equal A's (md5)"
wide_md5() { sql "$1" "SELECT md5(string_agg(w::text, ',' ORDER BY id)) FROM wide w"; }
is "$(wide_md5 "$B")" "$(wide_md5 "$A")" "B's wide rows equal A's (md5)"
ok "A: two wide rows in one statement" warnings_none "$A" "INSERT INTO wide (id, $(for i in $(seq 2 301); do printf 'c%d,' "$i"; done | sed 's/,$//')) SELECT g, $(for i in $(seq 2 301); do printf "repeat('v', 5000),"; done | sed 's/,$//') FROM generate_series(3, 4) g"
ok "B receives both" wait_value 60 "1,2,3,4" b_ids wide
is "$(wide_md5 "$B")" "$(wide_md5 "$A")" "B's wide rows still equal A's (md5)"

# --- an update over the limit, then a delete of that row -------------------------------
ok "A: an update to 2 MB" warnings_none "$A" "UPDATE big SET t = repeat('u', 2000000) WHERE id = 2"
ok "A: a small update after it" sql "$A" "UPDATE big SET t = 'changed' WHERE id = 6"
ok "B applies the small update" wait_value 60 changed sql "$B" "SELECT t FROM big WHERE id = 6"
is "$(sql "$B" "SELECT length(t) FROM big WHERE id = 2")" 2000000 "B applied the large update before it"
ok "A: delete id 2, whose row is over the limit" sql "$A" "DELETE FROM big WHERE id = 2"
ok "B deletes it by key" wait_value 60 "1,3,4,5,6,7,8,9,10,11" b_ids big
ok "A's values in parts are gone once confirmed" wait_value 60 0 sql "$A" "SELECT count(*) FROM evrep.outbox_value"
is "$(sql "$B" "SELECT count(*) FROM evrep.inbox_part")" 0 "B kept no part after applying its event"

# --- captured under a larger limit, sent under the smaller one ----------------------------
ok "A: the publisher cannot reach the broker; the limit is 4 MB" sql_script "$A" "
ALTER SYSTEM SET evrep.broker_url = 'amqp://nobody:none@127.0.0.1:1/';
ALTER SYSTEM SET evrep.max_message_bytes = '4MB';
SELECT pg_reload_conf();"
sleep 1
# (each value under the MB past which a value always goes apart)
ok "A: a 1.6 MB row is captured whole under 4 MB" warnings_none "$A" "INSERT INTO big VALUES (12, repeat('s', 800000), convert_to(repeat('c', 400000), 'UTF8'))"
ok "A: a small row after it" sql "$A" "INSERT INTO big VALUES (13, 'after', NULL)"
ok "A: back to the broker, and to 1 MB" sql_script "$A" "
ALTER SYSTEM RESET evrep.broker_url;
ALTER SYSTEM RESET evrep.max_message_bytes;
SELECT pg_reload_conf();"
ok "B receives the row after it" wait_value 60 "1,3,4,5,6,7,8,9,10,11,13" b_ids big
is "$(sql "$A" "SELECT count(*) FROM evrep.skipped WHERE key::text = '{\"id\":12}'")" 1 \
   "A's publisher recorded the 1.6 MB row in evrep.skipped when it sent it"

# --- a skip is a parked event on B naming its key; no number is missing -----------------
is "$(sql "$B" "SELECT string_agg(table_name || ' ' || (body::json -> 'events' -> 0 -> 'skip' ->> 'op') || ' ' || (body::json -> 'events' -> 0 -> 'skip' -> 'key')::jsonb::text, '; ' ORDER BY id) FROM evrep.dead_letter")" \
   'big insert {"id": 12}' "B parked the skip event, naming its key"
like "$(sql "$B" "SELECT DISTINCT error FROM evrep.dead_letter")" 'the origin skipped this event' "the error says the origin skipped it"
is "$(sql "$A" "SELECT count(*) FROM evrep.skipped")" 1 "A's evrep.skipped holds it alone"
is "$(sql "$A" "SELECT string_agg(table_name || ' ' || not_sent, ' ' ORDER BY table_name) FROM evrep.status WHERE role = 'publish'")" \
   "big 1 typed 0 wide 0" "A's evrep.status counts it (not_sent)"
for t in big wide; do
    ok "$t: A's outbox drains" wait_value 60 0 outbox_depth "$A"
    seq=$(last_seq "$A" "$t")
    ok "$t: B's progress reaches A's last_seq $seq with no gaps" wait_value 60 "$seq|{}" \
        sql "$B" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$A' AND table_name = '$t'"
    is "$(sql "$B" "SELECT applied + parked FROM evrep.progress WHERE origin = '$A' AND table_name = '$t'")" "$seq" \
       "$t: every number applied or parked once on B"
done

# --- a copy meets the same rows: chunks within the limit, large rows apart ------------
# B changes its row for key 7 and holds one of its own for key 99 (which A
# lacks). The chunks leave the large rows (7, 9, 10, and 12, which A's
# publisher skipped) out and send each ahead of its chunk as a large event
# in parts: B ends with exactly A's rows, 12 included, and no new dead letter.
ok "B: its own row for key 7 and 99" sql "$B" "UPDATE big SET t = 'local' WHERE id = 7; INSERT INTO big VALUES (99, 'local', NULL)"
ok "B: evrep_resync('big')" sql "$B" "SELECT evrep_resync('big')"
ok "the copy is done on B" wait_value 120 done \
    sql "$B" "SELECT phase FROM evrep.sync_status WHERE role = 'receive' AND table_name = 'big'"
is "$(b_ids big)" "1,3,4,5,6,7,8,9,10,11,12,13" "B holds A's rows, the large ones and 12 too, not its row for key 99"
is "$(big_md5 "$B" 1,3,4,5,6,7,8,9,10,11,12,13)" "$(big_md5 "$A" 1,3,4,5,6,7,8,9,10,11,12,13)" "B's rows equal A's (md5)"
is "$(sql "$B" "SELECT count(*) FROM evrep.dead_letter")" 1 "the copy parked nothing (the skip of 12 before it stays)"
is "$(grep -c 'leaves out' "$(pg_logfile "$A")")" 0 "A's copy left no row out"
is "$(sql "$B" "SELECT count(*) FROM evrep.inbox_part")" 0 "B keeps no part after the copy"
ok "A: a row after the copy" sql "$A" "INSERT INTO big VALUES (14, 'after the copy', NULL)"
ok "B receives it" wait_value 60 1 sql "$B" "SELECT count(*) FROM big WHERE id = 14"

# --- a backlog of rows near the limit: rounds stop at their bytes ------------------------
# (a round reads rows of two messages at most; every row is numbered once)
ok "A: ten rows of 900 kB in one transaction" sql "$A" "
    INSERT INTO big SELECT g, repeat(chr(33 + g % 90), 900000), NULL FROM generate_series(30, 39) g"
ok "B receives the ten" wait_value 60 10 sql "$B" "SELECT count(*) FROM big WHERE id BETWEEN 30 AND 39"
is "$(big_md5 "$B" 30,31,32,33,34,35,36,37,38,39)" "$(big_md5 "$A" 30,31,32,33,34,35,36,37,38,39)" "B's ten rows equal A's (md5)"
ok "A's outbox drains" wait_value 60 0 outbox_depth "$A"
seq=$(last_seq "$A" big)
ok "big: B's progress reaches A's last_seq $seq with no gaps" wait_value 60 "$seq|{}" \
    sql "$B" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$A' AND table_name = 'big'"
# --- other value forms: arrays written by to_json, jsonb and numeric[] as text --------
# (each decides by its own form's length: under 1 MB it arrives equal, over it
# the row is skipped; nothing fails the writer)
typed_row() {   # ID ELEMENTS
    printf "INSERT INTO typed SELECT %d, array_agg(g), jsonb_agg(jsonb_build_object('k', g, 'v', 'x' || g)), array_agg(g * 1.5) FROM generate_series(1, %d) g" "$1" "$2"
}
ok "A: a row of arrays and jsonb of 20,000 elements each" warnings_none "$A" "$(typed_row 1 20000)"
ok "A: one of 200,000 elements each (several MB, in parts)" warnings_none "$A" "$(typed_row 2 200000)"
ok "A: a small typed row after it" sql "$A" "INSERT INTO typed VALUES (3, '{1}', '[]', '{1.5}')"
ok "B receives rows 1, 2 and 3" wait_value 60 "1,2,3" b_ids typed
is "$(sql "$B" "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM typed t")" \
   "$(sql "$A" "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM typed t")" \
   "B's typed rows equal A's (arrays, jsonb, numeric[]; md5)"

is "$(grep -c 'PRECONDITION_FAILED' "$(pg_logfile "$A")")" 0 "the broker never refused a message of A's"
# gigabytes of data: gone once the test passed
if (( ! _TAP_FAILED )); then topo_down && rm -rf "$(dirname "$(pg_datadir "$A")")" "$(dirname "$(pg_datadir "$B")")"; fi
done_testing
