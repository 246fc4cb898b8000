#!/usr/bin/env bash
# 48_crash_stream: crashes in the middle of a stream, with the consumer's
# asynchronous apply commits (evrep.apply_async_commit, the default). B's
# apply transactions commit without waiting for their WAL flush, and a batch
# is acked only once the flush passed its commit record. B runs with
# wal_writer_delay = 10 s and a large wal_writer_flush_after, so its commits
# stay unflushed for long while it applies a backlog. Promise: nothing acked
# is lost, nothing is applied twice.
#
#   1. B catches up a backlog (B was down while A wrote it, one row per
#      transaction, 2 events per message): crash B (pg_ctl stop -m
#      immediate) between 10% and 90% of the catch-up. B's consumer is held
#      off the broker after the crash recovery (ALTER SYSTEM points
#      evrep.broker_url at a closed port before the crash; RESET and reload
#      afterwards), so the row count after the recovery is exact.
#   2. The same with SIGKILL of B's postmaster (pg_kill) and a plain
#      restart. Its children run on until they notice: the consumer may
#      finish the backlog (and ack it, after its flush) before it exits.
#   3. The same with SIGKILL of all of B's processes at once (kill_all): the
#      WAL still in shared memory is lost, so commits whose WAL was not yet
#      written out are lost, and the broker must deliver them again.
#   4. A (the origin) crashes (stop -m immediate) while a writer runs and B
#      applies the live stream; the writer retries what it did not see commit.
#   5. The broker is SIGKILLed during B's catch-up of another backlog, with
#      apply commits in flight and unacked; then started again.
# B's rows just before each crash and just after the restart are noted, with
# its WAL positions (a drop below the count before the crash means
# committed, unflushed apply transactions were lost), and per round the
# events B skipped as already applied (deliveries held back from the ack by
# the flush, delivered again). They depend on timing: noted, not asserted.
# After each: A's outbox drains, A numbered each row once (last_seq = rows),
# B has every id and no other (same_ids), equal md5, B's progress reaches
# last_seq with no gaps, applied = last_seq (each event applied once), no
# dead letters.
# Ports: AMQP 5748 (epmd 15748, distribution 25748), PostgreSQL 5881 (A) and 5882 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t48mq A=t48a B=t48b
N=${T48_ROWS:-30000}      # rows per backlog
MSG_EVENTS=2              # evrep.message_events on A: N / 2 messages per backlog

topo_up_tap <<EOF
broker $MQ port=5748
node $A port=5881 publish=customer schema="$CUSTOMER_DDL" conf='evrep.message_events = $MSG_EVENTS'
node $B port=5882 subscribe=customer schema="$CUSTOMER_DDL" conf='wal_writer_delay = 10000ms' conf='wal_writer_flush_after = 1GB' conf='wal_buffers = 64MB' conf='evrep.prefetch = 10000'
EOF

T_START=$SECONDS SKIPPED=0
pub_seq() { sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = 'customer'"; }
dead_letters() { sql "$1" 'SELECT count(*) FROM evrep.dead_letter'; }
# B's rows, its WAL insert position, and the bytes of WAL not yet written
# out and not yet flushed, as "rows|lsn|unwritten|unflushed"
b_state() {
    sql "$B" "SELECT count(*), pg_current_wal_insert_lsn(), pg_wal_lsn_diff(pg_current_wal_insert_lsn(), pg_current_wal_lsn()), pg_wal_lsn_diff(pg_current_wal_insert_lsn(), pg_current_wal_flush_lsn()) FROM customer"
}
on_exit 'if (( _TAP_FAILED )); then note "$(sql $B "SELECT origin, last_seq, gaps, applied, skipped, parked FROM evrep.progress" 2>/dev/null)"; note "$(sql $B "SELECT id, seq, sqlstate, error FROM evrep.dead_letter ORDER BY id LIMIT 20" 2>/dev/null)"; fi'

# backlog FIRST LAST -- ids FIRST..LAST into customer on A, one transaction
# per row (asynchronous commits on A: only the writing is faster)
backlog() {
    { echo 'SET synchronous_commit = off;'; single_inserts customer "$1" "$2"; } | pg_psql "$A"
}

# verify LABEL -- the end state after a round
verify() {
    local label=$1 n seq sk
    ok "$label: A's outbox drains to 0" wait_value 120 0 outbox_depth "$A"
    n=$(row_count "$A" customer) seq=$(pub_seq)
    is "$seq" "$n" "$label: A numbered each row once (last_seq = $n rows)"
    ok "$label: B's progress reaches last_seq $seq with no gaps" wait_value 120 "$seq|{}" \
        sql "$B" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$A' AND table_name = 'customer'"
    is "$(same_ids "$A" "$B" customer)" "$n|0|0" "$label: B has every id of A, none missing, none extra"
    is "$(table_md5 "$B" customer)" "$(table_md5 "$A" customer)" "$label: B's rows equal A's"
    is "$(applied "$B" "$A" customer)" "$seq" "$label: each event applied once (applied = last_seq)"
    is "$(dead_letters "$B")" 0 "$label: no dead letters on B"
    sk=$(skipped "$B" "$A" customer)
    note "$label: B skipped $((sk - SKIPPED)) redelivered events (already applied) in this round; $((SECONDS - T_START)) s since setup"
    SKIPPED=$sk
}

# start_backlog LABEL FIRST LAST -- B down, A writes FIRST..LAST, its outbox
# drains into B's queue; sets BASE (B's rows before), TOTAL, LO and HI
# (10% and 90% of the catch-up)
start_backlog() {
    local label=$1 first=$2 last=$3 t0
    BASE=$(row_count "$B" customer)
    ok "$label: stop B" pg_stop "$B"
    t0=$SECONDS
    ok "$label: A writes ids $first..$last, one transaction each, while B is down" backlog "$first" "$last"
    ok "$label: A's outbox drains into B's queue" wait_value 60 0 outbox_depth "$A"
    TOTAL=$(row_count "$A" customer)
    LO=$((BASE + (TOTAL - BASE) / 10)) HI=$((BASE + (TOTAL - BASE) * 9 / 10))
    note "$label: backlog of $((TOTAL - BASE)) rows written and published in $((SECONDS - t0)) s"
    topo_mark "$B"
    ok "$label: start B" pg_start "$B"
}

# kill_all NODE -- SIGKILL the postmaster and every process it started, at
# once (the postmaster is stopped first, so that it forks no more): no
# process finishes its work, the WAL still in shared memory is lost, what
# was written to the kernel is kept. pg_kill kills only the postmaster, and
# its children run on until they notice.
kill_all() {
    local pid kids k
    pid=$(head -n 1 "$(pg_datadir "$1")/postmaster.pid") && evrep_pid_alive "$pid" || return 1
    kill -STOP "$pid"
    kids=$(pgrep -P "$pid")
    # shellcheck disable=SC2086
    kill -KILL "$pid" $kids
    for k in $pid $kids; do evrep_wait_pid_exit "$k" 10 || return 1; done
}

# drop_words BEFORE AFTER HOLD -- what the counts before and after a crash say
drop_words() {
    if (( $1 > $2 )); then echo "at least $(($1 - $2)) committed rows lost in the crash"
    elif (( $1 == $2 )); then echo "no drop"
    else echo "no drop seen (B applied more between the count and its death$( (($3)) || echo ', or after the restart'))"
    fi
}

# crash_b LABEL HOW HOLD -- once B's catch-up passed 10%, crash B (HOW:
# immediate = pg_stop -m immediate, pg_kill = SIGKILL of the postmaster,
# kill_all = SIGKILL of all of B's processes), then start it. HOLD=1: the
# consumer is held off the broker until the rows after the recovery were
# counted. Notes the counts.
crash_b() {
    local label=$1 how=$2 hold=$3 st before lsn unwritten unflushed after redo
    ok "$label: B's catch-up passes 10% ($LO rows)" \
        wait_until 60 "[[ \$(row_count $B customer) -ge $LO ]]" 0.05
    if (( hold )); then
        # read at the next start only (no reload before the crash)
        sql "$B" "ALTER SYSTEM SET evrep.broker_url = 'amqp://guest:guest@127.0.0.1:1'" >/dev/null
    fi
    st=$(b_state)
    IFS='|' read -r before lsn unwritten unflushed <<<"$st"
    case $how in
        immediate) ok "$label: crash B (stop -m immediate)" pg_stop "$B" immediate ;;
        pg_kill)   ok "$label: SIGKILL B's postmaster (pg_kill)" pg_kill "$B" ;;
        kill_all)  ok "$label: SIGKILL all of B's processes at once" kill_all "$B" ;;
    esac
    cmp_ok "$before" -le "$HI" "$label: B crashed during its catch-up, before 90% ($before rows, $HI at 90%)"
    topo_mark "$B"
    ok "$label: start B (crash recovery)" pg_start "$B"
    after=$(row_count "$B" customer)
    redo=$(tail -c +$(( ${TOPO_LOGPOS[$B]:-0} + 1 )) "$(pg_logfile "$B")" | sed -n 's/.*redo done at \([0-9A-F/]*\).*/\1/p' | tail -n 1)
    like "$redo" '^[0-9A-F]+/[0-9A-F]+$' "$label: B ran crash recovery"
    note "$label: B had $before rows ($((before - BASE)) of $((TOTAL - BASE)) in the catch-up) just before the crash, WAL inserted to $lsn with $unwritten bytes not yet written and $unflushed not yet flushed; crash recovery replayed to $redo; $after rows just after the restart$( ((hold)) || echo ' (the consumer was already running)'): $(drop_words "$before" "$after" "$hold")"
    if (( hold )); then
        like "$(worker_connected "$B" consumer)" '^(f|none)$' "$label: B's consumer is held off the broker"
        ok "$label: release it (ALTER SYSTEM RESET, reload)" \
            sql_script "$B" "ALTER SYSTEM RESET evrep.broker_url; SELECT pg_reload_conf();"
    fi
    ok "$label: B's workers are ready again" topo_wait_ready 60 "$B"
    ok "$label: B catches up" wait_value 120 "$TOTAL" row_count "$B" customer
}

# ==== 1. crash of B (stop -m immediate) during its catch-up ===========================
start_backlog 1 1 "$N"
crash_b 1 immediate 1
verify 1

# ==== 2. SIGKILL of B's postmaster during its catch-up ================================
start_backlog 2 100001 $((100000 + N))
crash_b 2 pg_kill 0
verify 2

# ==== 3. SIGKILL of all of B's processes during its catch-up ==========================
start_backlog 3 200001 $((200000 + N))
crash_b 3 kill_all 0
verify 3

# ==== 4. crash of A (the origin) with a writer running ===============================
ok "4: writer on A started" start_writer t48-w "$A" customer 300001 399999
a0=$(row_count "$A" customer)
ok "4: the writer writes and B follows" \
    wait_until 60 "[[ \$(row_count $A customer) -ge $((a0 + 1000)) && \$(row_count $B customer) -ge $((a0 + 500)) ]]" 0.1
topo_mark "$A"
st=$(sql "$A" "SELECT count(*) || '|' || (SELECT count(*) FROM evrep.outbox) FROM customer")
ok "4: crash A (stop -m immediate)" pg_stop "$A" immediate
note "4: A had $st (rows|outbox) just before the crash; B had $(row_count "$B" customer) rows"
sleep 1
ok "4: start A (crash recovery)" pg_start "$A"
ok "4: A's workers are ready again" topo_wait_ready 60 "$A"
a1=$(row_count "$A" customer)
ok "4: the writer goes on after A's restart" wait_until 60 "[[ \$(row_count $A customer) -ge $((a1 + 500)) ]]" 0.1
stop_writer t48-w
ok "4: writer finished" wait_until 60 "writer_done t48-w"
last=$(writer_last t48-w)
note "4: the writer committed ids 300001..$last with $(writer_retries t48-w) retried sessions"
is "$(sql "$A" 'SELECT count(*), min(id), max(id) FROM customer WHERE id BETWEEN 300001 AND 399999')" \
   "$((last - 300000))|300001|$last" "4: A holds exactly the committed ids 300001..$last"
verify 4

# ==== 5. broker crash during B's catch-up ===========================================
start_backlog 5 400001 $((400000 + N))
ok "5: B's catch-up passes 10% ($LO rows)" wait_until 60 "[[ \$(row_count $B customer) -ge $LO ]]" 0.05
IFS='|' read -r before lsn unwritten unflushed <<<"$(b_state)"
ok "5: SIGKILL the broker" rmq_kill "$MQ"
note "5: B had $before rows ($((before - BASE)) of $((TOTAL - BASE)) in the catch-up), $unflushed bytes of WAL not yet flushed, when the broker was killed"
cmp_ok "$before" -le "$HI" "5: the broker died during B's catch-up, before 90% ($before rows, $HI at 90%)"
ok "5: B's consumer notices" wait_value 30 f worker_connected "$B" consumer
ok "5: start the broker" rmq_start "$MQ"
ok "5: A's publisher reconnects" wait_value 60 t worker_connected "$A" publisher
ok "5: B's consumer reconnects" wait_value 60 t worker_connected "$B" consumer
ok "5: B catches up" wait_value 120 "$TOTAL" row_count "$B" customer
verify 5

is "$(dead_letters "$A")" 0 "no dead letters on A"
note "whole test: $((SECONDS - T_START)) s after the topology was up"
done_testing
