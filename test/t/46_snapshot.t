#!/usr/bin/env bash
# 46_snapshot: snapshot on subscribe (issue 9). A owns the tables and already
# holds rows when B subscribes: evrep_subscribe (copy_data => true, the
# default) asks A for a copy, A's publisher sends the table in chunks of
# evrep.copy_chunk_rows rows by primary key, numbered in the table's event
# stream so that they are ordered against the live changes, and B ends up
# equal to A; evrep_resync does it again as a repair. Every case asserts the
# exact end state: md5 of all rows in key order and row counts equal on A
# and B, evrep.sync_status phase 'done' on both sides, no dead letters, A's
# outbox drained.
#
#   1. late subscribe of 100k rows while 4 pgbench writers on A (800 txn/s) update,
#      delete, insert, re-insert and re-key rows the whole time
#   2. evrep_resync after rows were deleted, altered and added by hand on B
#      (also below the first and past the last key)
#   3. copies of 200k rows interrupted between 10% and 60%: SIGKILL of B's
#      consumer, restart of A (the origin), restart of the broker; each copy
#      finishes and does not start over (chunks sent, rows copied)
#   4. an empty table (B's local rows are deleted: the origin has none)
#   5. a composite primary key with quoted identifiers
#      ("Odd Schema"."Line Item"), chunk boundaries inside one order
#   6. copy_data => false: phase 'skipped', existing rows do not arrive,
#      later changes do (updates of old keys as upserts)
# Copy events take stream numbers (A's publication.last_seq grows by the
# chunks sent) but do not count in B's evrep.progress applied/skipped.
# Ports: AMQP 5961, PostgreSQL 5971 (A) and 5972 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t46mq A=t46a B=t46b
CHUNK=500                 # evrep.copy_chunk_rows on both nodes
RATE=60000                # evrep.copy_rate_limit on A: a 200k-row copy lasts
                          # seconds, long enough to interrupt it between 10% and 60%
N_CUST=100000             # case 1: rows on A before B subscribes
N_BIG=200000              # case 3: rows of the table whose copies are interrupted
N_LATE=1000               # case 6
BIG_DDL='CREATE TABLE big (id int PRIMARY KEY, payload text, n int)'
EMPTY_DDL='CREATE TABLE empty_tbl (id int PRIMARY KEY, v text)'
LATE_DDL='CREATE TABLE late_nocopy (id int PRIMARY KEY, v text)'
ODD_DDL='CREATE SCHEMA "Odd Schema"; CREATE TABLE "Odd Schema"."Line Item" ("Order Id" int, "line#" int, "Note" text, PRIMARY KEY ("Order Id", "line#"))'
ODD='"Odd Schema"."Line Item"'
ODD_KEY='"Order Id", "line#"'

# A's rows exist before evrep_publish runs (schema= comes first): they are
# not events, so every table's stream starts at 0.
# (one line: a topology line does not span lines)
A_SCHEMA="$CUSTOMER_DDL; $BIG_DDL; $EMPTY_DDL; $LATE_DDL;"
A_SCHEMA+=" INSERT INTO customer SELECT g, 'name ' || g, g % 1000 FROM generate_series(1, $N_CUST) g;"
A_SCHEMA+=" INSERT INTO big SELECT g, md5(g::text), g % 7 FROM generate_series(1, $N_BIG) g;"
A_SCHEMA+=" INSERT INTO late_nocopy SELECT g, 'old ' || g FROM generate_series(1, $N_LATE) g;"
A_SCHEMA+=" ANALYZE customer; ANALYZE big; ANALYZE late_nocopy"

topo_up_tap <<EOF
broker $MQ port=5961
node $A port=5971 publish=customer,big,empty_tbl,late_nocopy schema="$A_SCHEMA" conf='evrep.copy_chunk_rows = $CHUNK' conf='evrep.copy_rate_limit = $RATE'
node $B port=5972 conf='evrep.copy_chunk_rows = $CHUNK'
EOF

# ---- helpers ---------------------------------------------------------------------
# sync_recv NODE TABLE COLS -- the table's 'receive' row (one per subscribed table)
sync_recv() { sql "$1" "SELECT $3 FROM evrep.sync_status WHERE role = 'receive' AND table_name = '$2'"; }
# sync_send TABLE COLS [REQUEST_ID] -- A's 'send' row of TABLE for B (one per table and node)
sync_send() {
    sql "$A" "SELECT $2 FROM evrep.sync_status WHERE role = 'send' AND table_name = '$1' AND node = '$B'${3:+ AND request_id = $3}"
}
# key_md5 NODE TABLE ORDER -- "count:md5" of all rows in key order
key_md5() {
    sql "$1" "SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, ',' ORDER BY $3), '')) FROM $2 t"
}
pub_seq() { sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = '$1'"; }
prog() { sql "$B" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$A' AND table_name = '$1'"; }
prog_seq() { sql "$B" "SELECT last_seq FROM evrep.progress WHERE origin = '$A' AND table_name = '$1'"; }
dead_letters() { sql "$1" 'SELECT count(*) FROM evrep.dead_letter'; }
ceil_div() { echo $(( ($1 + $2 - 1) / $2 )); }
# show_sync -- both sides' sync_status, as a note (for the log)
show_sync() {
    note "$(sql "$B" "SELECT role, node, table_name, request_id, phase, rows_copied, rows_estimated, chunks, rows_per_second FROM evrep.sync_status ORDER BY table_name")"
    note "$(sql "$A" "SELECT role, node, table_name, request_id, phase, rows_copied, rows_estimated, chunks, rows_per_second FROM evrep.sync_status ORDER BY table_name")"
}
on_exit 'if (( _TAP_FAILED )); then show_sync 2>/dev/null; note "$(sql $B "SELECT id, origin, table_name, seq, sqlstate, error FROM evrep.dead_letter ORDER BY id LIMIT 20" 2>/dev/null)"; fi'

T_START=$SECONDS

# ==== 4. an empty table ================================================================
ok "B: create empty_tbl with 3 local rows the origin does not have" \
    sql "$B" "$EMPTY_DDL; INSERT INTO empty_tbl VALUES (-1, 'local'), (5, 'local'), (99, 'local')"
seq0=$(pub_seq empty_tbl)
ok "B: evrep_subscribe('empty_tbl') (copy_data defaults to true)" sql "$B" "SELECT evrep_subscribe('empty_tbl')"
like "$(sync_recv "$B" empty_tbl "phase || '|' || coalesce(node, '<null>')")" '^(requested\|<null>|copying\|'"$A"'|done\|'"$A"')$' \
     "sync_status on B: a receive row right away, origin NULL until the first chunk"
ok "copy of the empty table done" wait_value 60 'done' sync_recv "$B" empty_tbl phase
req=$(sync_recv "$B" empty_tbl request_id)
is "$(sync_recv "$B" empty_tbl "node || '|' || rows_copied")" "$A|0" "B: copied from $A, 0 rows"
is "$(row_count "$B" empty_tbl)" 0 "B's local rows are gone: the origin has none"
ok "A's send row for B is done" wait_value 30 'done' sync_send empty_tbl phase "$req"
chunks=$(sync_send empty_tbl chunks "$req")
is "$(sync_send empty_tbl rows_copied "$req")" 0 "A sent 0 rows"
is "$(( $(pub_seq empty_tbl) - seq0 ))" "$chunks" "A's stream for empty_tbl grew by the $chunks chunk(s) sent"
ok "B's progress for empty_tbl reaches A's last_seq" wait_value 30 "$(pub_seq empty_tbl)|{}" prog empty_tbl
is "$(applied "$B" "$A" empty_tbl)|$(skipped "$B" "$A" empty_tbl)" "0|0" "copy events count neither as applied nor skipped"
ok "a live insert after the copy arrives" sql "$A" "INSERT INTO empty_tbl VALUES (7, 'live')"
ok "B gets it" wait_value 30 "7|live" sql "$B" "SELECT id, v FROM empty_tbl"

# ==== 5. composite key, quoted identifiers ===========================================
# 3217 rows, 7 lines per order: chunks of 500 end inside an order.
ok "A: $ODD with 3217 rows, then evrep_publish" sql_script "$A" "$ODD_DDL;
INSERT INTO $ODD SELECT (g - 1) / 7 + 1, (g - 1) % 7 + 1,
       CASE WHEN g % 11 = 0 THEN NULL WHEN g % 5 = 0 THEN 'quote '' \"dq\" , comma ' || g ELSE 'note ' || g END
FROM generate_series(1, 3217) g;
SELECT evrep_publish('$ODD');"
ok "B: the same schema and table" sql_script "$B" "$ODD_DDL"
# A's consumer binds the copy requests of a table published while it runs on
# its next poll; a request sent before that is unroutable and B asks again
# only 30 s later. Wait for the binding so that the copy is not delayed.
t0=$(_tap_now_ms)
ok "A's consumer binds its queue to the copy requests for $ODD" \
    wait_until 60 "topo_bound $A 'copy.Odd Schema.Line Item'" 0.1
note "A bound copy.Odd Schema.Line Item $(( $(_tap_now_ms) - t0 )) ms after evrep_publish returned"
seq0=$(pub_seq 'Line Item')
ok "B: evrep_subscribe('$ODD')" sql "$B" "SELECT evrep_subscribe('$ODD')"
ok "B's consumer binds its queue to \"Odd Schema.Line Item\"" wait_until 60 "topo_bound $B 'Odd Schema.Line Item'"
ok "copy of $ODD done" wait_value 60 'done' sync_recv "$B" 'Line Item' phase
req=$(sync_recv "$B" 'Line Item' request_id)
is "$(sync_recv "$B" 'Line Item' "schema_name || '|' || node || '|' || rows_copied")" "Odd Schema|$A|3217" \
   "B: schema_name, origin and rows_copied"
is "$(key_md5 "$B" "$ODD" "$ODD_KEY")" "$(key_md5 "$A" "$ODD" "$ODD_KEY")" "$ODD: B's rows equal A's (count:md5 by key)"
ok "A's send row done" wait_value 30 'done' sync_send 'Line Item' phase "$req"
chunks=$(sync_send 'Line Item' chunks "$req")
cmp_ok "$chunks" -ge "$(ceil_div 3217 $CHUNK)" "A sent at least ceil(3217/$CHUNK) chunks ($chunks)"
is "$(( $(pub_seq 'Line Item') - seq0 ))" "$chunks" "A's stream for $ODD grew by the chunks sent"
ok "B's progress reaches A's last_seq" wait_value 30 "$(pub_seq 'Line Item')|{}" prog 'Line Item'
is "$(applied "$B" "$A" 'Line Item')" 0 "copy events are not counted as applied"
ok "A: live update, delete, insert on $ODD" sql_script "$A" "
UPDATE $ODD SET \"Note\" = 'changed' WHERE \"Order Id\" = 72 AND \"line#\" = 3;
DELETE FROM $ODD WHERE \"Order Id\" = 100;
INSERT INTO $ODD VALUES (100000, 1, 'new');"
ok "the live changes arrive on B" wait_until 30 \
   "[[ \$(key_md5 $B '$ODD' '$ODD_KEY') == \$(key_md5 $A '$ODD' '$ODD_KEY') ]]"
is "$(applied "$B" "$A" 'Line Item')" 9 "9 live events applied (1 update, 7 deletes, 1 insert)"

# ==== 6. copy_data => false ==========================================================
ok "B: create late_nocopy" sql "$B" "$LATE_DDL"
ok "B: evrep_subscribe('late_nocopy', copy_data => false)" \
    sql "$B" "SELECT evrep_subscribe('late_nocopy', copy_data => false)"
is "$(sync_recv "$B" late_nocopy "phase || '|' || coalesce(node, '<null>') || '|' || rows_copied")" "skipped|<null>|0" \
   "sync_status on B: phase skipped, no origin, 0 rows"
ok "A: update 10 old keys, insert 10 new, delete 10 old (B never had them)" sql_script "$A" "
UPDATE late_nocopy SET v = 'changed ' || id WHERE id <= 10;
INSERT INTO late_nocopy SELECT g, 'new ' || g FROM generate_series($((N_LATE + 1)), $((N_LATE + 10))) g;
DELETE FROM late_nocopy WHERE id > $((N_LATE - 10)) AND id <= $N_LATE;"
ok "B's progress reaches A's 30 events" wait_value 30 30 prog_seq late_nocopy
is "$(sql "$B" "SELECT count(*), min(id), max(id), count(*) FILTER (WHERE id <= 10 AND v = 'changed ' || id) FROM late_nocopy")" \
   "20|1|$((N_LATE + 10))|10" "B has exactly the 10 updated old keys (as upserts) and the 10 new ones"
is "$(key_md5 "$B" late_nocopy id)" \
   "$(key_md5 "$A" "(SELECT * FROM late_nocopy WHERE id <= 10 OR id > $N_LATE)" id)" "those rows equal A's"
is "$(sql "$B" "SELECT count(*) FROM late_nocopy WHERE id > 10 AND id <= $N_LATE")" 0 "no pre-existing row was copied"
is "$(applied "$B" "$A" late_nocopy)" 30 "each live event applied once"
is "$(sync_recv "$B" late_nocopy phase)" skipped "phase stays skipped"
is "$(sql "$A" "SELECT count(*) FROM evrep.sync_status WHERE table_name = 'late_nocopy'")" 0 "A sent no copy"
note "cases 4-6 took $((SECONDS - T_START)) s"

# ==== 1. late subscribe of 100k rows under 4 writers ==================================
W=$EVREP_TEST_DIR/t46-pgbench
mkdir -p "$W"
cat >"$W/upd.sql" <<'EOF'
\set id random(1, 100000)
UPDATE customer SET credit = credit + 1, name = 'upd ' || :client_id WHERE id = :id;
EOF
cat >"$W/del.sql" <<'EOF'
\set id random(1, 130000)
DELETE FROM customer WHERE id = :id;
EOF
cat >"$W/ins.sql" <<'EOF'
\set id random(100001, 130000)
INSERT INTO customer VALUES (:id, 'new ' || :client_id, :id % 1000)
  ON CONFLICT (id) DO UPDATE SET credit = customer.credit + 1000, name = EXCLUDED.name;
EOF
cat >"$W/revive.sql" <<'EOF'
\set id random(1, 100000)
INSERT INTO customer VALUES (:id, 'revived', -:id)
  ON CONFLICT (id) DO UPDATE SET name = 'revived ' || customer.credit;
EOF
# several rows in one transaction, in ascending key order (no deadlocks)
cat >"$W/txn.sql" <<'EOF'
\set a random(1, 130000)
\set b random(1, 130000)
\set lo least(:a, :b)
\set hi greatest(:a, :b)
BEGIN;
UPDATE customer SET credit = credit - 7 WHERE id = :lo;
INSERT INTO customer VALUES (:hi, 'txn', 7) ON CONFLICT (id) DO UPDATE SET credit = customer.credit + 7;
DELETE FROM customer WHERE id = :hi + 1;
COMMIT;
EOF
# a primary key change (delete + insert on the wire), to a key range of this client's own
cat >"$W/move.sql" <<'EOF'
\set o random(1, 100000)
\set n 1000000 + :client_id * 100000 + random(1, 99999)
UPDATE customer SET id = :n WHERE id = :o AND NOT EXISTS (SELECT 1 FROM customer WHERE id = :n);
EOF
ok "B: create customer (empty)" sql "$B" "$CUSTOMER_DDL"
ok "4 pgbench writers on A (800 txn/s in all)" bg_start t46-writers "$PG_BINDIR/pgbench" -n \
    -h 127.0.0.1 -p "$(pg_port "$A")" -U postgres -c 4 -j 2 -R 800 -T 900 --max-tries=10 \
    -f "$W/upd.sql@4" -f "$W/del.sql@1" -f "$W/ins.sql@2" -f "$W/revive.sql@1" -f "$W/txn.sql@1" \
    -f "$W/move.sql@1" "$(pg_dbname "$A")"
ok "the writers are writing" wait_until 30 "[[ \$(pub_seq customer) -ge 300 ]]"
seq_sub=$(pub_seq customer)
t_sub=$SECONDS
ok "B: evrep_subscribe('customer') while they write" sql "$B" "SELECT evrep_subscribe('customer')"
req=$(sync_recv "$B" customer request_id)
like "$(sync_recv "$B" customer phase)" '^(requested|copying)$' "B: phase requested or copying at once"
ok "B's queue is bound to public.customer" wait_until 60 "topo_bound $B public.customer"
ok "the copy starts (phase copying or done)" wait_until 60 "[[ \$(sync_recv $B customer phase) =~ ^(copying|done)$ ]]"
ok "copy of customer done while the writers run" wait_value 150 'done' sync_recv "$B" customer phase
copy_s=$((SECONDS - t_sub))
seq_done=$(pub_seq customer)
ok "the writers still run" bg_is_running t46-writers
sleep 3   # live changes after the copy, too
ok "stop the writers" bg_stop t46-writers
is "$(grep -ciE 'aborted|error' "$(bg_logfile t46-writers)")" 0 "no pgbench client failed"
ok "A's send row done" wait_value 30 'done' sync_send customer phase "$req"
send_chunks=$(sync_send customer chunks "$req")
live=$((seq_done - seq_sub - send_chunks))
note "copy of customer: ${copy_s} s, $send_chunks chunks; $live live events numbered during it"
cmp_ok "$live" -ge 50 "the writers kept writing during the copy ($live events)"
ok "A's outbox drains to 0" wait_value 120 0 outbox_depth "$A"
a_seq=$(pub_seq customer)
ok "B's progress reaches A's last_seq $a_seq" wait_value 120 "$a_seq" prog_seq customer
a_count=$(row_count "$A" customer)
is "$(same_ids "$A" "$B" customer)" "$a_count|0|0" "customer: B has every id of A, none extra"
is "$(table_md5 "$B" customer)" "$(table_md5 "$A" customer)" "customer: B's rows equal A's (md5 by id)"
is "$(sync_recv "$B" customer "request_id || '|' || node || '|' || phase")" "$req|$A|done" \
   "B: the same request, from $A, done"
is "$(sync_recv "$B" customer "requested_at <= started_at AND started_at <= finished_at")" t \
   "B: requested_at <= started_at <= finished_at"
rows=$(sync_recv "$B" customer rows_copied)
note "B copied $rows rows, estimated $(sync_recv "$B" customer rows_estimated), $(sync_recv "$B" customer rows_per_second) rows/s"
cmp_ok "$rows" -ge $((N_CUST * 9 / 10)) "B copied the existing rows ($rows)"
cmp_ok "$rows" -le $((a_count * 3 / 2)) "B copied them once (rows_copied <= 1.5 x $a_count)"
cmp_ok "$(sync_send customer rows_copied "$req")" -eq "$rows" "A sent as many rows as B copied"
cmp_ok "$(( $(applied "$B" "$A" customer) + $(skipped "$B" "$A" customer) ))" -le $((a_seq - send_chunks)) \
   "applied + skipped count only live events (<= last_seq - chunks)"

# ==== 2. resync after changes by hand on B ============================================
ok "B: by hand, add rows A lacks (inside, below and past the keys), delete and alter rows" sql_script "$B" "
INSERT INTO customer SELECT g, 'extra', 0 FROM generate_series(1, 130000) g
  WHERE g % 3 = 0 AND NOT EXISTS (SELECT 1 FROM customer c WHERE c.id = g);
INSERT INTO customer SELECT g, 'extra', 0 FROM generate_series(-50, 0) g;
INSERT INTO customer SELECT g, 'extra', 0 FROM generate_series(5000001, 5000100) g;
DELETE FROM customer WHERE id % 97 = 0 AND name <> 'extra';
UPDATE customer SET name = 'tampered', credit = -1 WHERE id % 89 = 0 AND name <> 'extra';"
note "B now: $(sql "$B" "SELECT count(*) FILTER (WHERE name = 'extra') || ' extra, ' || count(*) FILTER (WHERE name = 'tampered') || ' altered, ' || count(*) || ' rows' FROM customer") (A: $a_count rows)"
isnt "$(table_md5 "$B" customer)" "$(table_md5 "$A" customer)" "B differs from A now"
seq0=$(pub_seq customer)
ok "B: evrep_resync('customer')" sql "$B" "SELECT evrep_resync('customer')"
req2=$(sync_recv "$B" customer request_id)
cmp_ok "$req2" -gt "$req" "a new request_id"
ok "resync done" wait_value 120 'done' sync_recv "$B" customer phase
is "$(table_md5 "$B" customer)" "$(table_md5 "$A" customer)" "customer: B's rows equal A's again"
is "$(same_ids "$A" "$B" customer)" "$a_count|0|0" "every id of A, none extra"
is "$(sql "$B" "SELECT count(*) FROM customer WHERE name IN ('extra', 'tampered')")" 0 "the extra and altered rows are gone"
ok "A's send row done" wait_value 30 'done' sync_send customer phase "$req2"
send_chunks=$(sync_send customer chunks "$req2")
is "$(( $(pub_seq customer) - seq0 ))" "$send_chunks" "A's stream grew by the $send_chunks chunks sent"
ok "B's progress reaches it" wait_value 30 "$(pub_seq customer)" prog_seq customer
ok "a live change after the resync arrives" sql "$A" "UPDATE customer SET credit = 424242 WHERE id = (SELECT min(id) FROM customer)"
ok "B gets it" wait_value 30 1 sql "$B" "SELECT count(*) FROM customer WHERE credit = 424242"
note "cases 1-2 done after $((SECONDS - T_START)) s"

# ==== 3. interrupted copies of 200k rows ==============================================
NEED=$(ceil_div $N_BIG $CHUNK)
LO=$((N_BIG / 10)) HI=$((N_BIG * 6 / 10))
BIG_A=$(key_md5 "$A" big id)

# at_fraction SIDE -- wait until the copy of big moved LO rows (SIDE receive:
# rows_copied on B; send: rows sent by A), print "rows|phase" at that moment
at_fraction() {
    if [[ $1 == receive ]]; then
        wait_until 120 "[[ \$(sync_recv $B big 'rows_copied') -ge $LO ]]" 0.05 >&2 || return 1
        sync_recv "$B" big "rows_copied || '|' || phase"
    else
        wait_until 120 "[[ \$(sync_send big rows_copied $req) -ge $LO ]]" 0.05 >&2 || return 1
        sync_send big "rows_copied || '|' || phase" "$req"
    fi
}

# big_done LABEL AT SEQ0 -- the copy of big (request $req), interrupted at AT
# rows, finished and did not start over
big_done() {
    local label=$1 at=$2 seq0=$3 chunks rows
    ok "$label: copy done" wait_value 150 'done' sync_recv "$B" big phase
    is "$(sync_recv "$B" big request_id)" "$req" "$label: B kept its request (no new one)"
    is "$(key_md5 "$B" big id)" "$BIG_A" "$label: big on B equals A ($N_BIG rows, md5 by id)"
    ok "$label: A's send row done" wait_value 30 'done' sync_send big phase "$req"
    chunks=$(sync_send big chunks "$req")
    rows=$(sync_recv "$B" big rows_copied)
    note "$label: B rows_copied $rows ($(sync_recv "$B" big rows_per_second) rows/s), A sent $(sync_send big rows_copied "$req") rows in $chunks chunks; interrupted at $at rows"
    cmp_ok "$chunks" -ge "$NEED" "$label: A sent at least $NEED chunks"
    cmp_ok "$chunks" -lt $((NEED + at / CHUNK)) "$label: A did not start over ($chunks chunks < $NEED + $((at / CHUNK)) done before)"
    cmp_ok "$(sync_send big rows_copied "$req")" -lt $((N_BIG + at)) "$label: A sent fewer than $N_BIG + $at rows"
    cmp_ok "$rows" -le $((N_BIG * 3 / 2)) "$label: B's rows_copied <= 1.5 x $N_BIG"
    # chunks are numbered in the transaction that moves A's cursor, and B
    # skips a chunk it applied by its number: every row is counted once
    is "$(sync_send big rows_copied "$req")|$rows" "$N_BIG|$N_BIG" "$label: A sent and B copied each row once"
    is "$(( $(pub_seq big) - seq0 ))" "$chunks" "$label: A's stream grew by the chunks sent"
    ok "$label: B's progress reaches A's last_seq, no gaps" wait_value 60 "$(pub_seq big)|{}" prog big
    is "$(applied "$B" "$A" big)|$(skipped "$B" "$A" big)" "0|0" "$label: copy events count neither as applied nor skipped"
}

# -- 3a. SIGKILL of B's consumer during the first copy
ok "B: create big" sql "$B" "$BIG_DDL"
seq0=$(pub_seq big)
ok "B: evrep_subscribe('big')" sql "$B" "SELECT evrep_subscribe('big')"
req=$(sync_recv "$B" big request_id)
con=$(worker_pid "$B" 'evrep consumer')
at_rows='' at_phase=''
at=$(at_fraction receive) && IFS='|' read -r at_rows at_phase <<<"$at"
ok "SIGKILL B's consumer (pid $con) mid-copy" kill -KILL "$con"
cmp_ok "${at_rows:-0}" -le "$HI" "3a: killed at ${at_rows:-?} rows copied (10%..60% of $N_BIG)"
isnt "${at_phase:-done}" 'done' "3a: the copy was still running"
ok "B restarts its consumer" wait_until 90 "p=\$(worker_pid $B 'evrep consumer'); [[ -n \$p && \$p != $con ]]"
big_done 3a "${at_rows:-0}" "$seq0"
ok "B's log shows the consumer's SIGKILL" \
    grep -q "background worker \"evrep consumer\" (PID $con) was terminated by signal 9" "$(pg_logfile "$B")"

# -- 3b. crash of A (the origin: pg_ctl stop -m immediate, then start) during a resync
seq0=$(pub_seq big)   # before the request: A may send its first chunk at once
ok "B: TRUNCATE big, then evrep_resync('big')" sql_script "$B" "TRUNCATE big; SELECT evrep_resync('big');"
req=$(sync_recv "$B" big request_id)
at_rows='' at_phase=''
at=$(at_fraction send) && IFS='|' read -r at_rows at_phase <<<"$at"
topo_mark "$A"
ok "crash A (stop -m immediate) and start it mid-copy" pg_restart "$A" immediate
cmp_ok "${at_rows:-0}" -le "$HI" "3b: A crashed at ${at_rows:-?} rows sent (10%..60% of $N_BIG)"
isnt "${at_phase:-done}" 'done' "3b: A was still sending"
ok "A's workers reconnect" topo_wait_ready 60 "$A"
big_done 3b "${at_rows:-0}" "$seq0"

# -- 3c. broker restart during a resync
seq0=$(pub_seq big)
ok "B: TRUNCATE big, then evrep_resync('big')" sql_script "$B" "TRUNCATE big; SELECT evrep_resync('big');"
req=$(sync_recv "$B" big request_id)
at_rows='' at_phase=''
at=$(at_fraction receive) && IFS='|' read -r at_rows at_phase <<<"$at"
ok "rmq_stop $MQ mid-copy" rmq_stop "$MQ"
cmp_ok "${at_rows:-0}" -le "$HI" "3c: broker stopped at ${at_rows:-?} rows copied (10%..60% of $N_BIG)"
isnt "${at_phase:-done}" 'done' "3c: the copy was still running"
note "3c: B's phase with the broker down: $(sync_recv "$B" big "phase || ', ' || rows_copied || ' rows'")"
sleep 2
ok "rmq_start $MQ" rmq_start "$MQ"
ok "A's publisher reconnects" wait_value 60 t worker_connected "$A" publisher
ok "B's consumer reconnects" wait_value 60 t worker_connected "$B" consumer
big_done 3c "${at_rows:-0}" "$seq0"

# ==== the end state ===================================================================
ok "A's outbox drains to 0" wait_value 60 0 outbox_depth "$A"
is "$(sql "$B" "SELECT string_agg(table_name || '=' || phase, ',' ORDER BY table_name) FROM evrep.sync_status WHERE role = 'receive'")" \
   "Line Item=done,big=done,customer=done,empty_tbl=done,late_nocopy=skipped" "B: every copy done (late_nocopy skipped)"
is "$(sql "$A" "SELECT string_agg(table_name || '=' || role || '/' || node, ',' ORDER BY table_name) FROM evrep.sync_status")" \
   "Line Item=send/$B,big=send/$B,customer=send/$B,empty_tbl=send/$B" "A: one send row per table copied to B"
is "$(sql "$A" "SELECT count(*) FROM evrep.sync_status WHERE role <> 'send' OR phase <> 'done'")" 0 "A: every send row done"
for t in customer big empty_tbl; do
    is "$(table_md5 "$B" "$t")" "$(table_md5 "$A" "$t")" "$t: B equals A at the end"
done
is "$(key_md5 "$B" "$ODD" "$ODD_KEY")" "$(key_md5 "$A" "$ODD" "$ODD_KEY")" "$ODD: B equals A at the end"
is "$(dead_letters "$B")" 0 "no dead letters on B"
is "$(dead_letters "$A")" 0 "no dead letters on A"
note "whole test: $((SECONDS - T_START)) s after the topology was up"
done_testing
