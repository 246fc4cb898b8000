#!/usr/bin/env bash
# 66_outbox_crash: the publisher crashes (SIGKILLs itself, through the
# developer setting evrep.crash_at) at each step of the outbox's life, under
# load, with the writes arranged so that the order of commits differs from
# the order of outbox ids. The outbox rows are written once: a batch the
# publisher numbers is one row of evrep.outbox_batch, the numbers of its
# events are derived from it, confirmed batches are marked, and drained
# partitions are emptied by TRUNCATE. A SIGKILLed background worker makes
# the postmaster restart every process with crash recovery (the writers lose
# their sessions and go on).
#
# For each crash point -- claimed (a new outbox_batch row committed, not yet
# sent), sent (its messages published, no confirm processed), confirming
# (inside the transaction marking confirmed batches), rotating (inside the
# transaction that TRUNCATEs a drained partition) -- one round:
#   1. writers on A: one INSERT per transaction (retried when the outcome is
#      unknown), a loop of long transactions that take outbox ids early
#      (insert, update rows the short transactions committed, sleep 1.5 s,
#      insert and update more, commit) while short transactions commit, and
#      single-row UPDATEs of the newest rows (an update applied before its
#      insert, or an old value winning, shows as a different md5), and bulk
#      transactions (a 3,000-row INSERT ... SELECT and an UPDATE of 1,000 of
#      its rows: outbox rows of 1,000 events each, batches cut inside them);
#   2. once a long transaction is open, evrep.crash_at = the point (ALTER
#      SYSTEM, reload); the publisher writes $PGDATA/evrep_crashed_<point>,
#      says so in the log and SIGKILLs itself, once; A recovers;
#   3. evrep.crash_at is reset, the writers go on after the recovery (1000
#      more short rows, two more long transactions committed), then stop; A
#      holds exactly the short writer's committed ids;
#   4. A's outbox drains (evrep.outbox_pending is empty), B has exactly A's
#      ids and rows (md5), B's progress reaches A's last_seq with no gaps and
#      applied = last_seq (each event applied once, none lost), no dead
#      letters. Events B skipped as already applied (re-sent after the crash)
#      are expected: noted.
# Finally, writes stopped, the outbox partitions are truncated (their size
# drops to at most 16384 bytes) and evrep.outbox_batch keeps at most 3 rows.
# Timing-dependent figures (rows before the crash, long transactions lost in
# the crash, skipped duplicates) are noted, not asserted.
# Ports: AMQP 6901 (epmd 16901, distribution 26901), PostgreSQL 6902 (A) and 6903 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t66mq A=t66a B=t66b

topo_up_tap <<EOF
broker $MQ port=6901
node $A port=6902 publish=customer schema="$CUSTOMER_DDL"
node $B port=6903 subscribe=customer schema="$CUSTOMER_DDL"
EOF

T_START=$SECONDS SKIPPED=0
pending() { sql "$1" 'SELECT count(*) FROM evrep.outbox_pending'; }
crash_at() { sql "$1" "SELECT '[' || current_setting('evrep.crash_at') || ']'"; }
on_exit 'if (( _TAP_FAILED )); then note "$(sql $B "SELECT origin, last_seq, gaps, applied, skipped, parked FROM evrep.progress" 2>/dev/null)"; note "$(sql $B "SELECT id, seq, sqlstate, error FROM evrep.dead_letter ORDER BY id LIMIT 20" 2>/dev/null)"; note "A outbox_batch: $(sql $A "SELECT id, after_id, upto_id, pub_ids, first_seqs, counts, confirmed FROM evrep.outbox_batch ORDER BY id" 2>/dev/null)"; note "A pending: $(sql $A "SELECT count(*), min(id), max(id) FROM evrep.outbox_pending" 2>/dev/null)"; fi'

# log_since NODE -- NODE's server log since topo_mark NODE
log_since() { tail -c +$(( ${TOPO_LOGPOS[$1]:-0} + 1 )) "$(pg_logfile "$1")" 2>/dev/null; }
# recovered NODE -- true once NODE's log since topo_mark has a process
# SIGKILLed and, after it, the server ready again (crash recovery done)
recovered() {
    log_since "$1" | awk '/terminated by signal 9/ { k = 1 } k && /database system is ready to accept connections/ { f = 1 } END { exit !f }'
}

# t66_long NODE IDBASE LO HI STOPFILE -- long transactions until STOPFILE
# exists: each inserts 5 rows with ids from IDBASE on (taking its outbox ids
# early), updates 3 rows of LO..HI (committed by the short writer meanwhile),
# sleeps 1.5 s while the short transactions commit, inserts 5 more rows,
# updates its own first rows and 3 more rows of LO..HI, commits. Ids are
# never reused (a transaction whose outcome is unknown may have committed).
t66_long() {
    local node=$1 base=$2 lo=$3 hi=$4 stop=$5 k=0 ok=0 failed=0 id q
    while [[ ! -e "$stop" ]]; do
        k=$((k + 1)) id=$((base + k * 10))
        q="BEGIN;
INSERT INTO customer SELECT g, 'long $k', g % 1000 FROM generate_series($id, $id + 4) g;
UPDATE customer SET credit = credit + 100, name = 'long $k' WHERE id IN (SELECT id FROM customer WHERE id BETWEEN $lo AND $hi ORDER BY id DESC LIMIT 3 OFFSET 30);
SELECT pg_sleep(1.5);
INSERT INTO customer SELECT g, 'long $k late', g % 1000 FROM generate_series($id + 5, $id + 9) g;
UPDATE customer SET credit = credit + 1, name = name || ' again' WHERE id BETWEEN $id AND $id + 2;
UPDATE customer SET name = name || ' L$k' WHERE id IN (SELECT id FROM customer WHERE id BETWEEN $lo AND $hi ORDER BY id DESC LIMIT 3 OFFSET 10);
COMMIT;"
        if printf '%s\n' "$q" | pg_psql "$node" >/dev/null 2>&1; then
            ok=$((ok + 1))
        else
            failed=$((failed + 1)); sleep 0.3
        fi
    done
    echo "long done committed=$ok failed=$failed"
}

# t66_updater NODE LO HI STOPFILE -- until STOPFILE exists, one UPDATE per
# transaction of the newest row of LO..HI (just inserted by the short
# writer) and of the 8th newest, 20 a session, 10 ms apart
t66_updater() {
    local node=$1 lo=$2 hi=$3 stop=$4 c=0 i failed=0 q
    while [[ ! -e "$stop" ]]; do
        c=$((c + 1)) q=
        for ((i = 0; i < 20; i++)); do
            q+="UPDATE customer SET credit = credit + 1, name = 'u$c.$i' WHERE id = (SELECT max(id) FROM customer WHERE id BETWEEN $lo AND $hi);
UPDATE customer SET credit = credit + 3, name = name || ' v$c.$i' WHERE id = (SELECT max(id) - 7 FROM customer WHERE id BETWEEN $lo AND $hi);
SELECT pg_sleep(0.01);
"
        done
        if printf '%s' "$q" | pg_psql "$node" >/dev/null 2>&1; then
            :
        else
            failed=$((failed + 1)); sleep 0.3
        fi
    done
    echo "updater done sessions=$c failed=$failed"
}

# t66_bulk NODE BASE STOPFILE -- until STOPFILE exists (8 at most), one
# transaction of a 3,000-row INSERT ... SELECT (three outbox rows of 1,000
# events) and an UPDATE of its first 1,000 rows (one more), 0.3 s apart
t66_bulk() {
    local node=$1 base=$2 stop=$3 k=0 ok=0 failed=0 id
    while [[ ! -e "$stop" ]] && ((k < 8)); do
        id=$((base + k * 3000)) k=$((k + 1))
        if printf '%s\n' "BEGIN;
INSERT INTO customer SELECT g, 'bulk $k', g % 1000 FROM generate_series($id, $id + 2999) g;
UPDATE customer SET credit = credit + 7, name = name || ' b' WHERE id BETWEEN $id AND $id + 999;
COMMIT;" | pg_psql "$node" >/dev/null 2>&1; then
            ok=$((ok + 1))
        else
            failed=$((failed + 1))
        fi
        sleep 0.3
    done
    echo "bulk done committed=$ok failed=$failed"
}

# bg_fn NAME FUNCTION ARGS... -- FUNCTION (defined above) in the background
bg_fn() {
    local name=$1 log; shift
    log=$(bg_logfile "$name") || return 1
    rm -f "$log" "$log.stop"
    bg_start "$name" bash -c 'source "$1/../lib/pg.sh" && source "$1/replication_lib.sh" && eval "$2" && shift 2 && "$@"' \
        _ "$REPL_LIB_DIR" "$(declare -f t66_long t66_updater t66_bulk)" "$@"
}
bg_fn_done() { grep -q ' done ' "$(bg_logfile "$1")" 2>/dev/null; }

# round R POINT -- one crash of A's publisher at POINT under load, then the
# end state
round() {
    local r=$1 p=$2 lo=$(( $1 * 100000 + 1 )) hi=$(( $1 * 100000 + 49999 ))
    local lbase=$(( $1 * 100000 + 50000 )) lend=$(( $1 * 100000 + 99999 ))
    local marker n0 n1 l1 seq n sk t0 pl
    marker=$(pg_datadir "$A")/evrep_crashed_$p
    ok "$p: no marker file before the round" test ! -e "$marker"
    ok "$p: short writer started (ids $lo.., one per transaction)" start_writer "t66-w$r" "$A" customer "$lo" "$hi"
    ok "$p: updater started" bg_fn "t66-u$r" t66_updater "$A" "$lo" "$hi" "$(bg_logfile "t66-u$r").stop"
    ok "$p: long transactions started" bg_fn "t66-l$r" t66_long "$A" "$lbase" "$lo" "$hi" "$(bg_logfile "t66-l$r").stop"
    ok "$p: bulk transactions started (ids from $((lbase + 20000)))" bg_fn "t66-b$r" t66_bulk "$A" "$((lbase + 20000))" "$(bg_logfile "t66-b$r").stop"
    ok "$p: under load: 200 short rows and a long transaction open (in its sleep)" \
        wait_until 60 "[[ \$(sql $A \"SELECT count(*) FROM customer WHERE id BETWEEN $lo AND $hi\") -ge 200 && \$(sql $A \"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(1.5)%'\") -ge 1 ]]" 0.1

    topo_mark "$A"
    t0=$SECONDS
    ok "$p: evrep.crash_at = '$p' on A (ALTER SYSTEM, reload)" \
        sql_script "$A" "ALTER SYSTEM SET evrep.crash_at = '$p'; SELECT pg_reload_conf();"
    ok "$p: A's new sessions see evrep.crash_at = '$p'" wait_value 10 "[$p]" crash_at "$A"
    n0=$(sql "$A" "SELECT count(*) FROM customer")
    ok "$p: the publisher crashes on purpose: $marker exists" wait_until 60 "[[ -e $marker ]]" 0.1
    note "$p: marker file after $((SECONDS - t0)) s; A had $n0 rows when the setting was made"
    ok "$p: A recovers from the crash (ready to accept connections again)" \
        wait_until 60 "recovered $A" 0.2
    is "$(log_since "$A" | grep -cF "evrep publisher crashes on purpose at \"$p\" (evrep.crash_at)")" 1 \
        "$p: A's log says once that the publisher crashes on purpose at \"$p\""
    is "$(log_since "$A" | grep -c 'terminated by signal 9')" 1 "$p: one process of A was SIGKILLed"
    like "$(log_since "$A" | grep 'terminated by signal 9')" 'background worker "evrep publisher" \(PID [0-9]+\) was terminated by signal 9' \
        "$p: it was the publisher"
    ok "$p: A's workers are ready again" topo_wait_ready 60 "$A"
    ok "$p: reset evrep.crash_at (ALTER SYSTEM RESET, reload)" \
        sql_script "$A" "ALTER SYSTEM RESET evrep.crash_at; SELECT pg_reload_conf();"
    ok "$p: A's new sessions see evrep.crash_at = ''" wait_value 10 "[]" crash_at "$A"

    n1=$(sql "$A" "SELECT count(*) FROM customer WHERE id BETWEEN $lo AND $hi")
    l1=$(sql "$A" "SELECT count(*) FROM customer WHERE id BETWEEN $lbase AND $lend")
    ok "$p: the short writer goes on after the recovery (1000 more rows)" \
        wait_until 60 "[[ \$(sql $A \"SELECT count(*) FROM customer WHERE id BETWEEN $lo AND $hi\") -ge $((n1 + 1000)) ]]" 0.1
    ok "$p: two long transactions commit after the recovery" \
        wait_until 60 "[[ \$(sql $A \"SELECT count(*) FROM customer WHERE id BETWEEN $lbase AND $lend\") -ge $((l1 + 20)) ]]" 0.2
    stop_writer "t66-w$r"; touch "$(bg_logfile "t66-u$r").stop" "$(bg_logfile "t66-l$r").stop" "$(bg_logfile "t66-b$r").stop"
    ok "$p: short writer finished" wait_until 60 "writer_done t66-w$r"
    ok "$p: updater finished" wait_until 60 "bg_fn_done t66-u$r"
    ok "$p: long transactions finished" wait_until 60 "bg_fn_done t66-l$r"
    ok "$p: bulk transactions finished" wait_until 60 "bg_fn_done t66-b$r"
    note "$p: $(grep -h '^writer done' "$(bg_logfile "t66-w$r")"); $(grep -h ' done ' "$(bg_logfile "t66-u$r")"); $(grep -h ' done ' "$(bg_logfile "t66-l$r")"); $(grep -h ' done ' "$(bg_logfile "t66-b$r")") (failed: lost in the crash)"
    pl=$(writer_last "t66-w$r")
    is "$(sql "$A" "SELECT count(*), min(id), max(id) FROM customer WHERE id BETWEEN $lo AND $hi")" \
       "$((pl - lo + 1))|$lo|$pl" "$p: A holds exactly the short writer's committed ids $lo..$pl"

    # ---- the end state ----
    ok "$p: A's outbox drains (evrep.outbox_pending empty)" wait_value 90 0 pending "$A"
    seq=$(last_seq "$A" customer) n=$(row_count "$A" customer)
    like "$seq" '^[0-9]+$' "$p: A's publication has a last_seq ($seq)"
    ok "$p: B's progress reaches last_seq $seq with no gaps" wait_value 90 "$seq|{}" \
        sql "$B" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$A' AND table_name = 'customer'"
    is "$(same_ids "$A" "$B" customer)" "$n|0|0" "$p: B has every id of A, none missing, none extra"
    is "$(table_md5 "$B" customer)" "$(table_md5 "$A" customer)" "$p: B's rows equal A's (md5)"
    is "$(applied "$B" "$A" customer)" "$seq" "$p: each event applied once on B (applied = last_seq)"
    is "$(dead_letters "$B")" 0 "$p: no dead letters on B"
    sk=$(skipped "$B" "$A" customer)
    note "$p: $n rows, last_seq $seq; B skipped $((sk - SKIPPED)) re-sent events (already applied) in this round; $((SECONDS - T_START)) s since setup"
    SKIPPED=$sk
}

r=0
for point in claimed sent confirming rotating; do
    r=$((r + 1))
    round "$r" "$point"
done

# ---- writes stopped: the outbox ends small --------------------------------------
ok "the drained outbox partitions are truncated (size <= 16384 bytes)" wait_until 60 \
    "[[ \$(sql $A \"SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('evrep.outbox')\") -le 16384 ]]" 0.5
note "outbox size after $((WAIT_ELAPSED_MS / 1000)) s: $(sql "$A" "SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('evrep.outbox')") bytes"
cmp_ok "$(sql "$A" 'SELECT count(*) FROM evrep.outbox_batch')" -le 3 "evrep.outbox_batch holds at most 3 rows"
is "$(pending "$A")" 0 "nothing pending on A"
is "$(dead_letters "$A")" 0 "no dead letters on A"
for point in claimed sent confirming rotating; do
    is "$(grep -cF "evrep publisher crashes on purpose at \"$point\"" "$(pg_logfile "$A")")" 1 \
       "the publisher crashed on purpose at \"$point\" once in the whole test"
done
note "whole test: $((SECONDS - T_START)) s after the topology was up"
done_testing
