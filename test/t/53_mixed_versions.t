#!/usr/bin/env bash
# 53_mixed_versions: a deployment in the middle of a rolling upgrade. Node
# OLD runs the released evrep 1.0 (commit f77a8fc, built into a copy of the
# PostgreSQL install by test/lib/evrep10.sh), node NEW the current build
# (catalog 1.1, wire format evrep.v1 revision 2), on one broker,
# replicating both ways: OLD publishes customer to NEW, NEW publishes orders
# to OLD.
#
#   1. Concurrent writers on both sides, then updates, deletes and key
#      updates: NEW applies OLD's revision-1 messages, OLD applies NEW's
#      revision-2 messages (it ignores the header fields it does not know).
#      Both converge: same ids, equal md5, applied = the origin's last_seq,
#      nothing skipped, no dead letters.
#   2. TRUNCATE orders on NEW: the truncate event reaches OLD, which cannot
#      apply it and parks its message in evrep.dead_letter (unknown op
#      "truncate"; the body is the raw revision-2 message), keeps its rows,
#      and goes on applying the orders NEW writes after it; exactly one
#      event of NEW's stream is not applied on OLD.
#   3. OLD still publishes to NEW after that.
#   4. A row too large for NEW's evrep.max_message_bytes (256kB here): NEW
#      sends its value in two part messages and a large event, alone in its
#      message; OLD parks the parts (not JSON) and the large event (unknown
#      op "large") and applies the rows before and after.
# Ports: AMQP 6301, PostgreSQL 6352 (OLD) and 6353 (NEW).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"
source "$(dirname "$0")/../lib/evrep10.sh"

MQ=t53mq OLD=t53old NEW=t53new
DOC_DDL='CREATE TABLE doc (id int PRIMARY KEY, body text)'

old_pgc=$(evrep_old_pg_config) || BAIL_OUT "cannot build evrep $EVREP_OLD_COMMIT (test/lib/evrep10.sh)"
note "evrep $EVREP_OLD_COMMIT: $old_pgc"

topo_up_tap <<EOF
broker $MQ port=6301
node $OLD port=6352 pg_config=$old_pgc publish=customer subscribe=orders,doc schema="$CUSTOMER_DDL; $ORDERS_DDL; $DOC_DDL"
node $NEW port=6353 publish=orders,doc subscribe=customer schema="$CUSTOMER_DDL; $ORDERS_DDL; $DOC_DDL" conf="evrep.max_message_bytes = '256kB'"
EOF

on_exit 'if (( _TAP_FAILED )); then for n in $OLD $NEW; do note "$n progress: $(sql $n "SELECT origin, table_name, last_seq, gaps, applied, skipped, parked FROM evrep.progress" 2>/dev/null)"; note "$n dead letters: $(sql $n "SELECT id, origin, seq, sqlstate, error, left(body, 300) FROM evrep.dead_letter ORDER BY id LIMIT 5" 2>/dev/null)"; done; fi'

# --- which build runs where --------------------------------------------------
exe_of() { readlink "/proc/$(head -n 1 "$(pg_datadir "$1")/postmaster.pid")/exe"; }
like "$(exe_of "$OLD")" "^$EVREP_OLD_BUILD_DIR/" "OLD's postmaster runs from the 1.0 build's PostgreSQL copy"
unlike "$(exe_of "$NEW")" "^$EVREP_OLD_BUILD_DIR/" "NEW's postmaster runs from the current install"
is "$(sql "$OLD" "SELECT extversion FROM pg_extension WHERE extname = 'evrep'")" 1.0 "OLD: evrep 1.0"
is "$(sql "$OLD" "SELECT string_agg(version, ',' ORDER BY version) FROM pg_available_extension_versions WHERE name = 'evrep'")" \
   1.0 "OLD's install knows only evrep 1.0 (the released build)"
is "$(sql "$NEW" "SELECT extversion FROM pg_extension WHERE extname = 'evrep'")" 1.1 "NEW: evrep 1.1 (the current build's default)"

# ==== 1. both ways, concurrent writers =======================================
t0=$SECONDS
ok "OLD: writer (customer 1..1500)" start_writer t53-old "$OLD" customer 1 1500
ok "NEW: writer (orders 1..1500)" start_writer t53-new "$NEW" orders 1 1500
ok "OLD: a multi-row customer insert meanwhile" \
    sql "$OLD" "INSERT INTO customer SELECT g, 'bulk ' || g, g FROM generate_series(10001, 11000) g"
ok "NEW: a multi-row orders insert meanwhile" \
    sql "$NEW" "INSERT INTO orders SELECT g, g % 10, g FROM generate_series(10001, 11000) g"
ok "OLD's writer finished" wait_until 120 "writer_done t53-old"
ok "NEW's writer finished" wait_until 120 "writer_done t53-new"
note "writers done after $((SECONDS - t0)) s"
ok "OLD: updates, deletes, a key update of customer" sql_script "$OLD" "
    UPDATE customer SET credit = -credit, name = name || ' (upd)' WHERE id % 7 = 0;
    DELETE FROM customer WHERE id % 11 = 0;
    UPDATE customer SET id = id + 100000 WHERE id BETWEEN 1 AND 5;
    INSERT INTO customer VALUES (1, 'key reused', 1);"
ok "NEW: updates, deletes, a key update of orders" sql_script "$NEW" "
    UPDATE orders SET amount = amount + 1000 WHERE id % 7 = 0;
    DELETE FROM orders WHERE id % 11 = 0;
    UPDATE orders SET id = id + 100000 WHERE id BETWEEN 1 AND 5;
    INSERT INTO orders VALUES (1, 42, 42);"

# converged LABEL ORIGIN SUB TABLE -- the end state of a stream, nothing sent twice
converged() {
    assert_stream_converged "$@"
    is "$(skipped "$3" "$2" "$4")" 0 "$1: none sent twice"
}
converged "1.0 -> 1.1 (customer)" "$OLD" "$NEW" customer
converged "1.1 -> 1.0 (orders)" "$NEW" "$OLD" orders
is "$(dead_letters "$NEW")" 0 "1: no dead letters on NEW"
is "$(dead_letters "$OLD")" 0 "1: no dead letters on OLD"
is "$(sql "$OLD" "SELECT name FROM customer WHERE id = 1")|$(sql "$NEW" "SELECT name FROM customer WHERE id IN (1, 100001) ORDER BY id" | paste -sd,)" \
   "key reused|key reused,name 1" "1: a key update and the reused key reached NEW"
note "NEW's apply status of OLD's stream: $(sql "$NEW" "SELECT * FROM evrep.status WHERE role = 'apply'" 2>&1)"

# ==== 2. a TRUNCATE from NEW reaches OLD ======================================
old_rows=$(row_count "$OLD" orders) old_md5=$(table_md5 "$OLD" orders)
seq0=$(last_seq "$NEW" orders)
ok "2: NEW: TRUNCATE orders" sql "$NEW" "TRUNCATE orders"
ok "2: NEW's outbox drains (the truncate is sent alone)" wait_value 60 0 outbox_depth "$NEW"
is "$(last_seq "$NEW" orders)" $((seq0 + 1)) "2: NEW numbered one event for the TRUNCATE"
ok "2: OLD parks the message in evrep.dead_letter" wait_value 60 1 dead_letters "$OLD"
IFS='|' read -r dl_state dl_error <<<"$(sql "$OLD" "SELECT sqlstate, error FROM evrep.dead_letter")"
like "$dl_error" 'unknown op "truncate"' "2: OLD's dead letter says why: $dl_error"
is "$dl_state" 22023 "2: sqlstate 22023 (invalid message)"
dl_body=$(sql "$OLD" "SELECT body FROM evrep.dead_letter")
like "$dl_body" '"op": ?"truncate"' "2: the dead letter holds the truncate event"
like "$dl_body" "\"origin\": ?\"$NEW\"" "2: the dead letter's body names the origin $NEW"
like "$dl_body" '"revision": ?2' "2: it is a revision-2 message (so were the ones OLD applied before)"
like "$dl_body" '"incarnation": ?\{' "2: with the incarnation header OLD does not know"
note "2: OLD's dead letter row: $(sql "$OLD" "SELECT id, origin, schema_name, table_name, seq, attempts FROM evrep.dead_letter")"
is "$(row_count "$OLD" orders)|$(table_md5 "$OLD" orders)" "$old_rows|$old_md5" \
   "2: OLD keeps its $old_rows orders (the truncate was not applied, nothing else changed)"

ok "2: NEW writes orders after the TRUNCATE" sql_script "$NEW" "$(single_inserts orders 20001 20300)
UPDATE orders SET amount = -1 WHERE id BETWEEN 20001 AND 20100;
DELETE FROM orders WHERE id BETWEEN 20101 AND 20150;"
ok "2: NEW's outbox drains" wait_value 60 0 outbox_depth "$NEW"
seq1=$(last_seq "$NEW" orders)
ok "2: OLD's progress reaches NEW's last_seq $seq1" wait_value 60 "$seq1" \
    sql "$OLD" "SELECT last_seq FROM evrep.progress WHERE origin = '$NEW' AND table_name = 'orders'"
is "$(sql "$OLD" "SELECT count(*) || '|' || md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM orders t WHERE id BETWEEN 20001 AND 20300")" \
   "$(sql "$NEW" "SELECT count(*) || '|' || md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM orders t")" \
   "2: the stream behind the truncate continues: OLD's new orders equal all of NEW's"
is "$(row_count "$OLD" orders)" $((old_rows + 250)) "2: OLD holds its old orders and the 250 new ones"
is "$(applied "$OLD" "$NEW" orders)" $((seq1 - 1)) "2: exactly one event of NEW's stream was not applied on OLD (applied = last_seq - 1)"
is "$(skipped "$OLD" "$NEW" orders)" 0 "2: none sent twice"
is "$(dead_letters "$OLD")" 1 "2: still exactly one dead letter on OLD"
note "2: OLD's progress for NEW's orders: $(sql "$OLD" "SELECT last_seq, gaps, applied, parked FROM evrep.progress WHERE origin = '$NEW'"); OLD's status: $(sql "$OLD" "SELECT applied, dead_letters, last_error FROM evrep.status WHERE role = 'apply'")"

# ==== 3. OLD still publishes to NEW ==========================================
ok "3: OLD writes customers" sql_script "$OLD" "$(single_inserts customer 30001 30200)
UPDATE customer SET credit = 7 WHERE id BETWEEN 30001 AND 30050;
DELETE FROM customer WHERE id BETWEEN 30051 AND 30060;"
converged "3: 1.0 -> 1.1 (customer)" "$OLD" "$NEW" customer
is "$(dead_letters "$NEW")" 0 "3: no dead letters on NEW"
is "$(dead_letters "$OLD")" 1 "3: OLD's one dead letter is the truncate"

# ==== 4. a row too large for one message, between two that fit ===============
ok "4: NEW: a small doc, one of 300 kB, another small one" sql_script "$NEW" "
INSERT INTO doc VALUES (1, 'before');
INSERT INTO doc VALUES (2, repeat('x', 300000));
INSERT INTO doc VALUES (3, 'after');"
is "$(sql "$NEW" "SELECT count(*) FROM evrep.skipped")" 0 "4: NEW skipped nothing: row 2 goes as a large event, in parts"
ok "4: NEW's outbox drains" wait_value 60 0 outbox_depth "$NEW"
seq2=$(last_seq "$NEW" doc)
ok "4: OLD's progress reaches NEW's last_seq $seq2 for doc" wait_value 60 "$seq2" \
    sql "$OLD" "SELECT last_seq FROM evrep.progress WHERE origin = '$NEW' AND table_name = 'doc'"
is "$(sql "$OLD" "SELECT string_agg(id || ':' || body, ',' ORDER BY id) FROM doc")" "1:before,3:after" \
   "4: OLD applied the rows before and after the large one"
# a message 1.0 cannot parse is parked without its table (as the truncate's)
like "$(sql "$OLD" "SELECT error FROM evrep.dead_letter ORDER BY id DESC LIMIT 1")" 'unknown op "large"' \
   "4: OLD parked the large event's message: unknown op \"large\""
like "$(sql "$OLD" "SELECT body FROM evrep.dead_letter ORDER BY id DESC LIMIT 1")" '"op": ?"large"' \
   "4: the dead letter holds the large event"
# 300,000 bytes in parts of 256 kB less the envelope's 16 kB: two parts
is "$(sql "$OLD" "SELECT count(*) FROM evrep.dead_letter WHERE body LIKE '{\"format\":\"evrep.v1\"%\"part\":{%'")" 2 \
   "4: OLD parked the two parts before it, as messages it cannot read"
is "$(dead_letters "$OLD")" 4 "4: nothing else besides the truncate"
is "$(sql "$NEW" "SELECT count(*) FROM evrep.outbox_value")" 0 "4: NEW keeps no value of the sent event"
done_testing
