#!/usr/bin/env bash
# 52_upgrade: ALTER EXTENSION evrep UPDATE from 1.0 to 1.1 on two live nodes
# that replicate both ways, with writers running, events in flight and
# events held in the outbox. Both nodes run the current build (the 1.1
# library) on a 1.0 catalog (CREATE EXTENSION evrep VERSION '1.0'): the
# library must serve the old catalog until the update has run.
#
#   1. A publishes customer to B, B publishes orders to A; a writer on each
#      side (one row per transaction) and B follows.
#   2. The broker stops: the writers go on, both outboxes fill.
#   3. ALTER EXTENSION evrep UPDATE on A while its writer runs, its outbox
#      holds events numbered (or not) under the 1.0 catalog, and an
#      application transaction that has already locked customer (and not yet
#      written an outbox row) inserts a row: the update and the
#      transaction both succeed (a lock-order inversion would deadlock them).
#   4. The broker starts again; the outboxes drain; writes go on.
#   5. ALTER EXTENSION evrep UPDATE on B while the writers run, in a
#      transaction that captured 5 rows under the 1.0 catalog just before
#      (their publisher connected, waiting on the outbox's lock): they reach
#      A without a reconnect. Then more writes, updates and deletes on both
#      sides.
#   6. Afterwards: extversion 1.1 on both; the TRUNCATE trigger on every
#      published table; nothing lost (same ids, equal md5 per table),
#      nothing applied twice (applied = the origin's last_seq, no gaps, no
#      dead letters); no resync or repair was started by the update; the new
#      evrep.status columns are there and name the origin's history.
#   7. TRUNCATE after the update replicates in stream order (inserts,
#      TRUNCATE, inserts in quick succession: the subscriber ends with the
#      rows after the TRUNCATE only), both ways.
# Ports: AMQP 6300, PostgreSQL 6350 (A) and 6351 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t52mq A=t52a B=t52b

topo_up_tap <<EOF
broker $MQ port=6300
node $A port=6350 ext_version=1.0 publish=customer subscribe=orders schema="$CUSTOMER_DDL; $ORDERS_DDL" conf='evrep.message_events = 20'
node $B port=6351 ext_version=1.0 publish=orders subscribe=customer schema="$CUSTOMER_DDL; $ORDERS_DDL" conf='evrep.message_events = 20'
EOF

T0=$SECONDS
extversion() { sql "$1" "SELECT extversion FROM pg_extension WHERE extname = 'evrep'"; }
# must DESC CMD...: ok; if it fails, the test ends here (the steps after it
# depend on it, and each would only wait out its timeout)
must() { ok "$@" && return 0; diag "stopping here: the steps after this one depend on it"; exit 1; }
on_exit 'if (( _TAP_FAILED )); then for n in $A $B; do note "$n progress: $(sql $n "SELECT * FROM evrep.progress" 2>&1)"; note "$n dead letters: $(sql $n "SELECT id, origin, seq, sqlstate, error, left(body, 300) FROM evrep.dead_letter ORDER BY id LIMIT 5" 2>&1)"; note "$n sync: $(sql $n "SELECT * FROM evrep.sync" 2>&1)"; done; fi'

for n in "$A" "$B"; do
    is "$(extversion "$n")" 1.0 "$n: evrep created at version 1.0"
    is "$(sql "$n" "SELECT count(*) FROM pg_available_extension_versions WHERE name = 'evrep' AND version = '1.1'")" 1 \
       "$n: the install offers 1.1"
    is "$(sql "$n" "SELECT to_regclass('evrep.incarnation') IS NULL")" t "$n: a 1.0 catalog (no evrep.incarnation)"
done

# ==== 1. writers on both sides =================================================
ok "A: writer (customer from 1)" start_writer t52-a "$A" customer 1 900000 0.002
ok "B: writer (orders from 1)" start_writer t52-b "$B" orders 1 900000 0.002
must "1: both writers write and the other side follows" wait_until 60 \
    "[[ \$(row_count $B customer) -ge 300 && \$(row_count $A orders) -ge 300 ]]" 0.2
ok "1: A: a multi-row update while the writers run" sql "$A" "UPDATE customer SET credit = credit + 1 WHERE id <= 200"
ok "1: B: a multi-row delete while the writers run" sql "$B" "DELETE FROM orders WHERE id <= 200 AND id % 3 = 0"

# ==== 2. the broker stops; the outboxes fill ==================================
must "2: stop the broker" rmq_stop "$MQ"
ok "2: A's outbox fills (writes go on without the broker)" wait_until 60 "[[ \$(outbox_depth $A) -ge 300 ]]" 0.2
ok "2: B's outbox fills" wait_until 60 "[[ \$(outbox_depth $B) -ge 300 ]]" 0.2

# ==== 3. the update on A, broker down, writer running ==========================
# Besides the writer, an application transaction that is under way when the
# update starts: it has touched customer (an UPDATE that matched no row: a
# lock on the table, no outbox row yet) and inserts a row 3 s later. The
# update must wait for it (or it for the update); neither may fail.
app_sql="BEGIN; UPDATE customer SET credit = credit WHERE id = -1; SELECT pg_sleep(3);
INSERT INTO customer VALUES (8000001, 'open across the update', 1); COMMIT;"
rm -f "$(bg_logfile t52-app)"   # bg_start appends to a log a former run left
ok "3: A: an application transaction holds customer when the update starts" \
    bg_start t52-app bash -c '"$1" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$2" -U postgres -d "$3" -c "$4"; echo "psql exit $?"' \
    _ "$PG_BINDIR/psql" "$(pg_port "$A")" "$(pg_dbname "$A")" "$app_sql"
ok "3: (it has its lock)" wait_until 10 "[[ \$(sql $A \"SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'customer' AND l.mode = 'RowExclusiveLock' AND l.granted AND l.pid IN (SELECT pid FROM pg_stat_activity WHERE query LIKE '%open across the update%')\") -ge 1 ]]" 0.1
a_depth=$(outbox_depth "$A") a_rows=$(row_count "$A" customer)
must "3: A: ALTER EXTENSION evrep UPDATE (writer running, $a_depth events in the outbox)" \
    sql "$A" "ALTER EXTENSION evrep UPDATE"
is "$(extversion "$A")" 1.1 "3: A's catalog is 1.1"
ok "3: the application transaction ended" wait_until 30 "grep -q '^psql exit' $(bg_logfile t52-app)"
is "$(grep -v '^$' "$(bg_logfile t52-app)" | grep -v '^# ' | paste -sd' ')" "psql exit 0" \
   "3: the application transaction open across the update committed (no error)"
is "$(sql "$A" "SELECT count(*) FROM customer WHERE id = 8000001")" 1 "3: its row is there"
must "3: A's writer goes on after the update" wait_until 30 "[[ \$(row_count $A customer) -ge $((a_rows + 200)) ]]" 0.2
ok "3: A's outbox still holds what the broker did not take" wait_until 10 "[[ \$(outbox_depth $A) -ge $a_depth ]]" 0.2

# ==== 4. the broker comes back ==================================================
must "4: start the broker" rmq_start "$MQ"
must "4: A's publisher reconnects" wait_value 60 t worker_connected "$A" publisher
must "4: B's publisher reconnects" wait_value 60 t worker_connected "$B" publisher
must "4: A's consumer reconnects" wait_value 60 t worker_connected "$A" consumer
must "4: B's consumer reconnects" wait_value 60 t worker_connected "$B" consumer
must "4: A's backlog drains while its writer runs" wait_until 60 "[[ \$(outbox_depth $A) -lt 100 ]]" 0.2
must "4: B's backlog drains while its writer runs" wait_until 60 "[[ \$(outbox_depth $B) -lt 100 ]]" 0.2
b_cust=$(row_count "$B" customer)
ok "4: B applies A's events sent under 1.1" wait_until 60 "[[ \$(row_count $B customer) -ge $((b_cust + 100)) ]]" 0.2

# ==== 5. the update on B, writers running =======================================
b_rows=$(row_count "$B" orders)
must "5: B's publisher is connected" wait_value 60 t worker_connected "$B" publisher
b_pub=$(sql "$B" "SELECT pid FROM evrep.worker_state() WHERE worker = 'publisher'")
# Rows captured under 1.0 and not yet numbered when the update runs, while
# the publisher stays connected: the update's own transaction locks orders
# and the outbox first (the writer and the publisher wait), inserts 5 rows,
# then updates the catalog. They must be sent without a reconnect.
# Just before, 20,000 rows are committed at once: the publisher is numbering
# them, by batches, when the update takes the outbox, so its next claim waits
# for the update (the update numbers the rest of them).
must "5: B: ALTER EXTENSION evrep UPDATE (writers running, $(outbox_depth "$B") events in B's outbox; 20,000 rows being numbered; 5 rows captured in the update's own transaction)" \
    sql_script "$B" "INSERT INTO orders SELECT g, 901, g FROM generate_series(800001, 820000) g;
    BEGIN;
    LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE;
    LOCK TABLE evrep.outbox IN ACCESS EXCLUSIVE MODE;
    INSERT INTO orders SELECT g, 900, g FROM generate_series(900001, 900005) g;
    ALTER EXTENSION evrep UPDATE;
    COMMIT;"
ok "5: A gets the 5 rows captured in the update's transaction" \
    wait_value 30 5 sql "$A" "SELECT count(*) FROM orders WHERE id BETWEEN 900001 AND 900005"
is "$(sql "$B" "SELECT pid FROM evrep.worker_state() WHERE worker = 'publisher'")|$(worker_connected "$B" publisher)" \
   "$b_pub|t" "5: B's publisher did not restart nor reconnect meanwhile"
is "$(extversion "$B")" 1.1 "5: B's catalog is 1.1"
b_rows=$(row_count "$B" orders)
must "5: B's writer goes on after the update" wait_until 30 "[[ \$(row_count $B orders) -ge $((b_rows + 200)) ]]" 0.2
ok "5: A: updates, deletes and a key update after both updates" sql_script "$A" "
    UPDATE customer SET name = name || ' (upd)', credit = -credit WHERE id % 7 = 0;
    DELETE FROM customer WHERE id % 11 = 0;
    UPDATE customer SET id = id + 1000000 WHERE id BETWEEN 1 AND 5;"
ok "5: B: updates and deletes after both updates" sql_script "$B" "
    UPDATE orders SET amount = amount + 1000 WHERE id % 7 = 0;
    DELETE FROM orders WHERE id % 13 = 0;"
stop_writer t52-a; stop_writer t52-b
ok "5: A's writer finished" wait_until 60 "writer_done t52-a"
ok "5: B's writer finished" wait_until 60 "writer_done t52-b"
is "$(writer_retries t52-a)|$(writer_retries t52-b)" "0|0" \
   "5: no writer transaction failed during the updates (retries; see the writers' logs)"
note "writers: A committed customer 1..$(writer_last t52-a), B orders 1..$(writer_last t52-b), $((SECONDS - T0)) s after setup"

# ==== 6. the end state ===========================================================
is "$(extversion "$A")|$(extversion "$B")" "1.1|1.1" "6: extversion 1.1 on A and B"
for n in "$A" "$B"; do
    is "$(sql "$n" "SELECT string_agg(c.relname || ':' || t.tgname, ',' ORDER BY c.relname, t.tgname) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal")" \
       "$([[ $n == "$A" ]] && echo customer || echo orders):evrep_capture,$([[ $n == "$A" ]] && echo customer || echo orders):evrep_capture_truncate" \
       "6: $n: the published table has the row and the TRUNCATE capture triggers"
done
assert_stream_converged "6: customer A -> B" "$A" "$B" customer
assert_stream_converged "6: orders B -> A" "$B" "$A" orders
is "$(dead_letters "$A")|$(dead_letters "$B")" "0|0" "6: no dead letters on A or B"
is "$(sql "$B" "SELECT name FROM customer WHERE id IN (1000001, 1000005) ORDER BY id" | paste -sd,)" \
   "name 1,name 5" "6: the key update reached B"
for n in "$A" "$B"; do
    is "$(sql "$n" "SELECT string_agg(table_name || ':' || phase, ',') FROM evrep.sync")" \
       "$([[ $n == "$A" ]] && echo orders || echo customer):skipped" "6: $n: the update started no resync (evrep.sync unchanged)"
    ok "6: $n: evrep.status has the 1.1 columns" \
        sql "$n" "SELECT incarnation, history_reason, history_changed_at, repair FROM evrep.status"
    is "$(sql "$n" "SELECT count(*) FROM evrep.status WHERE repair IS NOT NULL")" 0 "6: $n: evrep.status shows no repair"
done
# the origin's current history, as its subscriber's status sees it
for pair in "$A:$B:customer" "$B:$A:orders"; do
    IFS=: read -r o s t <<<"$pair"
    inc=$(sql "$o" "SELECT max(id) FROM evrep.incarnation")
    like "$inc" '^[0-9]+$' "6: $o has a current history (evrep.incarnation: $inc)"
    is "$(sql "$o" "SELECT incarnation FROM evrep.status WHERE role = 'publish' AND table_name = '$t'")" "$inc" \
       "6: $o's status shows it for its publication of $t"
    is "$(sql "$s" "SELECT incarnation FROM evrep.status WHERE role = 'apply' AND origin = '$o' AND table_name = '$t'")" "$inc" \
       "6: $s's status shows $o's history for $t"
    note "6: $s's apply status of $o's $t: $(sql "$s" "SELECT incarnation, history_reason, history_changed_at, repair FROM evrep.status WHERE role = 'apply'")"
done

# ==== 7. TRUNCATE after the update, both ways =====================================
# truncate_round ORIGIN SUBSCRIBER TABLE BASE
truncate_round() {
    local o=$1 s=$2 t=$3 base=$4 seq0
    seq0=$(last_seq "$o" "$t")
    ok "7: $o: inserts, TRUNCATE $t, inserts, one transaction each, in quick succession" sql_script "$o" "
        $(single_inserts "$t" "$base" $((base + 99)))
        TRUNCATE $t;
        $(single_inserts "$t" $((base + 100)) $((base + 249)))
        UPDATE $t SET id = id WHERE id = $((base + 100));"
    is "$(row_count "$o" "$t")" 150 "7: $o holds the 150 rows written after the TRUNCATE"
    ok "7: $s's $t converges to $o's" wait_until 60 "[[ \$(table_md5 $s $t) == \$(table_md5 $o $t) ]]" 0.3
    is "$(sql "$s" "SELECT count(*), min(id), max(id) FROM $t")" "150|$((base + 100))|$((base + 249))" \
       "7: $s holds exactly the rows after the TRUNCATE"
    is "$(last_seq "$o" "$t")" $((seq0 + 100 + 1 + 150 + 1)) "7: $o numbered one event for the TRUNCATE"
    assert_stream_converged "7: $t $o -> $s" "$o" "$s" "$t"
}
truncate_round "$A" "$B" customer 5000000
truncate_round "$B" "$A" orders 6000000
is "$(dead_letters "$A")|$(dead_letters "$B")" "0|0" "7: no dead letters on A or B"
note "whole test: $((SECONDS - T0)) s after the topology was up"
done_testing
