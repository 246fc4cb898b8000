#!/usr/bin/env bash
# 14_worker_kill: SIGKILL the publisher on A, later the consumer on B, while
# a stream of writes flows. A SIGKILLed backend makes the postmaster restart
# every backend (crash recovery), so the writer loses its session too; it
# retries each transaction whose outcome it did not see (idempotently), so
# afterwards A holds exactly the committed ids 1..N and B must hold exactly
# those, each applied once (re-sent messages are skipped by seq).
# Ports: AMQP 5715, PostgreSQL 5829 (A) and 5830 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t14mq A=t14a B=t14b

topo_up_tap <<EOF
broker $MQ port=5715
node $A port=5829 publish=customer schema="$CUSTOMER_DDL"
node $B port=5830 subscribe=customer schema="$CUSTOMER_DDL"
EOF

# kill_worker LABEL NODE WORKER PID -- SIGKILL NODE's evrep WORKER (publisher,
# consumer) running as PID: NODE's postmaster starts a new one, which connects
kill_worker() {
    local label=$1 node=$2 w=$3 pid=$4
    ok "SIGKILL $label's $w" kill -KILL "$pid"
    ok "$label restarts a new $w" \
        wait_until 90 "p=\$(worker_pid $node 'evrep $w'); [[ -n \$p && \$p != $pid ]]"
    ok "$label's new $w connects" wait_value 60 t worker_connected "$node" "$w"
}

ok "writer on A started" start_writer t14-w "$A" customer 1 1000000 0.005
ok "rows flow to B" wait_until 60 "[[ \$(row_count $B customer) -ge 300 ]]"

# --- kill A's publisher --------------------------------------------------------
pub=$(worker_pid "$A" 'evrep publisher')
like "$pub" '^[0-9]+$' "A's publisher runs (pid $pub)"
is "$(sql "$A" "SELECT pid FROM evrep.worker_state() WHERE worker = 'publisher'")" "$pub" \
   "worker_state reports the same pid"
kill_worker A "$A" publisher "$pub"
a_now=$(row_count "$A" customer)
ok "the writer goes on after A's crash recovery" wait_until 90 "[[ \$(row_count $A customer) -gt $((a_now + 200)) ]]"
ok "B keeps receiving" wait_until 90 "[[ \$(row_count $B customer) -gt $a_now ]]"

# --- kill B's consumer, mid-stream ----------------------------------------------
con=$(worker_pid "$B" 'evrep consumer')
like "$con" '^[0-9]+$' "B's consumer runs (pid $con)"
kill_worker B "$B" consumer "$con"
a_now=$(row_count "$A" customer)
ok "the writer goes on" wait_until 60 "[[ \$(row_count $A customer) -gt $((a_now + 200)) ]]"

stop_writer t14-w
ok "writer finished" wait_until 90 "writer_done t14-w"
last=$(writer_last t14-w)
note "writer committed ids 1..$last with $(writer_retries t14-w) retried sessions"
is "$(sql "$A" 'SELECT count(*), min(id), max(id) FROM customer')" "$last|1|$last" \
   "A holds exactly the committed ids 1..$last"

# --- verdict -----------------------------------------------------------------
ok "A's outbox drains to 0" wait_value 120 0 outbox_depth "$A"
ok "B catches up to $last rows" wait_value 120 "$last" row_count "$B" customer
is "$(same_ids "$A" "$B" customer)" "$last|0|0" "B has exactly A's committed ids: none missing, none extra"
is "$(table_md5 "$B" customer)" "$(table_md5 "$A" customer)" "B's rows equal A's"
last_seq=$(sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = 'customer'")
is "$last_seq" "$last" "A numbered each committed row once, across the crash"
ok "B's progress reaches last_seq with no gaps" wait_value 30 "$last_seq|{}" \
    sql "$B" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$A'"
is "$(applied "$B" "$A" customer)" "$last_seq" "each event applied once (applied = last_seq)"
note "skipped duplicates on B (re-sent or redelivered after the kills): $(skipped "$B" "$A" customer)"
is "$(sql "$B" 'SELECT count(*) FROM evrep.dead_letter')" 0 "no dead letters"
ok "A's log shows the publisher's SIGKILL" \
    grep -q "background worker \"evrep publisher\" (PID $pub) was terminated by signal 9" "$(pg_logfile "$A")"
ok "B's log shows the consumer's SIGKILL" \
    grep -q "background worker \"evrep consumer\" (PID $con) was terminated by signal 9" "$(pg_logfile "$B")"
done_testing
