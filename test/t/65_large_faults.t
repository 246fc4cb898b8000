#!/usr/bin/env bash
# 65_large_faults: large events travel in parts, and parts survive what a
# whole message survives. A sends at most 1 MB a message
# (evrep.max_message_bytes), so a 150 MB bytea is some 150 part messages
# before its event. While B is keeping parts (some of them in
# evrep.inbox_part, not all), each of these happens once:
#   1. B's consumer is SIGKILLed (B's server restarts its processes);
#   2. A's publisher is SIGKILLed: A sends the event again, parts and all;
#   3. the broker restarts;
#   4. B crashes (pg_ctl stop -m immediate) and starts again;
#   5. A crashes and starts again.
# After each, a small row written after the large one arrives, B's rows
# equal A's (md5 of every value), every number is applied once, and
# neither A's evrep.outbox_value nor B's evrep.inbox_part keeps anything.
# Then a 1,000 MB bytea and a 1,000 MB text in 16 MB parts: the peak
# RssAnon of B's consumer while it puts the value together and applies it
# stays under 3x the value (the value, the executor's copy of it and the
# tuple formed from it) plus 256 MB. Then a row with three large values,
# updated twice.
# Ports: AMQP 6780, PostgreSQL 6781 (A) and 6782 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t65mq A=t65a B=t65b
DDL='CREATE TABLE big (id int PRIMARY KEY, note text, b bytea, t text)'
MB=$((1024 * 1024))

topo_up_tap <<EOF
broker $MQ port=6780
node $A port=6781 publish=big schema="$DDL" conf="evrep.max_message_bytes = '1MB'"
node $B port=6782 subscribe=big schema="$DDL"
EOF

big_md5() { sql "$1" "SELECT md5(coalesce(string_agg(id || ':' || md5(coalesce(note, '')) || ':' || md5(coalesce(b, '')) || ':' || md5(coalesce(t, '')), ',' ORDER BY id), '')) FROM big"; }
parts_kept() { sql "$B" "SELECT count(*) FROM evrep.inbox_part"; }
on_exit 'if (( _TAP_FAILED )); then note "$(sql $B "SELECT origin, last_seq, gaps, applied, skipped, parked FROM evrep.progress" 2>/dev/null)"; note "$(sql $B "SELECT id, seq, sqlstate, error FROM evrep.dead_letter ORDER BY id LIMIT 20" 2>/dev/null)"; fi'

# large ID MB -- a row of MB megabytes of bytea, its bytes made from ID
large() { printf "INSERT INTO big VALUES (%d, 'large', convert_to(repeat(md5('%d'), %d * %d / 32), 'UTF8'), NULL)" "$1" "$1" "$2" "$MB"; }

converged() {
    local label=$1 seq
    ok "$label: A's outbox drains" wait_value 120 0 outbox_depth "$A"
    seq=$(last_seq "$A" big)
    ok "$label: B's progress reaches A's last_seq $seq with no gaps" wait_value 120 "$seq|{}" \
        sql "$B" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$A' AND table_name = 'big'"
    is "$(big_md5 "$B")" "$(big_md5 "$A")" "$label: B's rows equal A's (md5 of every value)"
    is "$(applied "$B" "$A" big)" "$seq" "$label: every event applied once on B (applied = last_seq)"
    is "$(sql "$A" "SELECT count(*) FROM evrep.outbox_value")" 0 "$label: A keeps no value of a sent event"
    is "$(parts_kept)" 0 "$label: B keeps no part"
    is "$(dead_letters "$B")" 0 "$label: no dead letters on B"
    note "$label: B skipped $(skipped "$B" "$A" big) redelivered events"
    # what the values took on disk goes back (the test writes gigabytes)
    sql "$A" "VACUUM evrep.outbox_value" >/dev/null; sql "$B" "VACUUM evrep.inbox_part" >/dev/null
}

# fault_while_parts LABEL ID -- writes row ID (150 MB) and a small row
# after it, and waits until B keeps some of its parts (not all: the event
# has not been applied).  The caller then injects the fault.
fault_while_parts() {
    local label=$1 id=$2
    ok "$label: A writes a 150 MB bytea, then a small row" \
        sql_script "$A" "$(large "$id" 150); INSERT INTO big VALUES ($((id + 100)), 'small after $id', NULL);"
    ok "$label: B keeps parts of it, not yet all" wait_until 120 \
        "(( \$(parts_kept 2>/dev/null || echo 0) >= 20 )) && [[ \$(sql $B 'SELECT count(*) FROM big WHERE id = $id') == 0 ]]" 0.1
    note "$label: B kept $(parts_kept) parts when the fault came"
}

# --- 1. B's consumer SIGKILLed ----------------------------------------------------------------
fault_while_parts "1 consumer killed" 1
pid=$(worker_pid "$B" 'evrep consumer')
ok "1: SIGKILL B's consumer ($pid)" kill -KILL "$pid"
ok "1: B's workers are back" wait_until 60 "[[ \$(worker_connected $B consumer) == t ]]"
converged "1 consumer killed"

# --- 2. A's publisher SIGKILLed -------------------------------------------------------------
fault_while_parts "2 publisher killed" 2
pid=$(worker_pid "$A" 'evrep publisher')
ok "2: SIGKILL A's publisher ($pid)" kill -KILL "$pid"
ok "2: A's workers are back" wait_until 60 "[[ \$(worker_connected $A publisher) == t ]]"
converged "2 publisher killed"

# --- 3. the broker restarts -----------------------------------------------------------------
fault_while_parts "3 broker restart" 3
ok "3: restart the broker" rmq_restart "$MQ"
converged "3 broker restart"

# --- 4. B crashes ---------------------------------------------------------------------------
fault_while_parts "4 B crash" 4
ok "4: crash B (stop -m immediate)" pg_stop "$B" immediate
ok "4: start B" pg_start "$B"
converged "4 B crash"

# --- 5. A crashes ---------------------------------------------------------------------------
fault_while_parts "5 A crash" 5
ok "5: crash A (stop -m immediate)" pg_stop "$A" immediate
ok "5: start A" pg_start "$A"
converged "5 A crash"

# --- 6. 1,000 MB values: the consumer's memory -------------------------------------------------
ok "6: A sends parts of 16 MB" sql_script "$A" "ALTER SYSTEM SET evrep.max_message_bytes = '16MB'; SELECT pg_reload_conf();"

# peak_rss LABEL ID SQL -- runs SQL on A and waits until B has row ID,
# sampling the RssAnon of B's consumer; asserts it peaked under 3x 1,000 MB
# + 256 MB (the value put together, the executor's copy of it and the tuple
# formed from it) and saw the value (over 1,000 MB)
peak_rss() {
    local label=$1 id=$2 stmt=$3 pid rss_log sampler peak_kb
    pid=$(worker_pid "$B" 'evrep consumer')
    rss_log=$EVREP_TEST_DIR/t65-rss-$id.log
    : > "$rss_log"
    ( while kill -0 "$pid" 2>/dev/null; do awk '/^RssAnon/ {print $2}' "/proc/$pid/status" 2>/dev/null >> "$rss_log"; sleep 0.05; done ) &
    sampler=$!
    ok "$label: A writes it" sql "$A" "$stmt"
    ok "$label: B applies it" wait_value 600 1 sql "$B" "SELECT count(*) FROM big WHERE id = $id"
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    peak_kb=$(sort -n "$rss_log" | tail -1)
    note "$label: B's consumer ($pid): peak RssAnon $((peak_kb / 1024)) MB over $(wc -l < "$rss_log") samples"
    cmp_ok "$peak_kb" -lt $(( (3 * 1000 + 256) * 1024 )) "$label: B's consumer's peak RssAnon is under 3 x 1,000 MB + 256 MB"
    cmp_ok "$peak_kb" -gt $((1000 * 1024)) "$label: the samples saw the value in memory (over 1,000 MB)"
}
peak_rss "6 bytea" 6 "$(large 6 1000)"
converged "6 1,000 MB bytea"
peak_rss "7 text" 7 "INSERT INTO big VALUES (7, 'text', NULL, repeat(md5('7'), 1000 * $MB / 32))"
converged "7 1,000 MB text"

# --- 8. several large values in one row ----------------------------------------------------
ok "8: A writes a row of a 100 MB note, a 300 MB bytea and a 200 MB text" sql "$A" \
    "INSERT INTO big VALUES (8, repeat('n', 100 * $MB), convert_to(repeat(md5('8b'), 300 * $MB / 32), 'UTF8'), repeat(md5('8t'), 200 * $MB / 32))"
ok "8: and updates its bytea, then its note" sql_script "$A" "
UPDATE big SET b = convert_to(repeat(md5('8c'), 250 * $MB / 32), 'UTF8') WHERE id = 8;
UPDATE big SET note = 'small again' WHERE id = 8;"
converged "8 several values"
is "$(sql "$B" "SELECT note, octet_length(b), octet_length(t) FROM big WHERE id = 8")" "small again|$((250 * MB))|$((200 * MB))" \
   "8: B's row has the last note, the updated bytea and the text"

# gigabytes of data: gone once the test passed
if (( ! _TAP_FAILED )); then topo_down && rm -rf "$(dirname "$(pg_datadir "$A")")" "$(dirname "$(pg_datadir "$B")")"; fi
done_testing
