#!/usr/bin/env bash
# 12_overlap: long and short writer transactions overlap on A. Long
# transactions insert first (they get the lower outbox ids and sequence
# values) and commit last, while many short transactions commit and get
# replicated in between. Commit order is not id order: a publisher that
# reads "id > last_sent" or a consumer that drops "seq <= highest seen"
# loses the long transactions' rows. Nothing may be lost, nothing doubled.
# Ports: AMQP 5713, PostgreSQL 5825 (A) and 5826 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t12mq A=t12a B=t12b

topo_up_tap <<EOF
broker $MQ port=5713
node $A port=5825 publish=customer schema="$CUSTOMER_DDL"
node $B port=5826 subscribe=customer schema="$CUSTOMER_DDL"
EOF

# --- long transactions: a psql session per transaction reading from a fifo ---
declare -A LONG_FD=() LONG_PID=()
trap '' PIPE    # a session that died must fail the test, not kill the script
long_open() {   # NAME: start a psql session named NAME on A, kept open
    local f="$EVREP_TEST_DIR/t12-$1.$$.fifo" fd
    rm -f "$f" && mkfifo "$f" || return 1
    # the session must not inherit the other sessions' fifo write ends, or
    # closing one of them would not end its psql
    (
        for fd in "${LONG_FD[@]}"; do exec {fd}>&-; done
        PGAPPNAME=$1 exec "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 \
            -p "$(pg_port "$A")" -U postgres -d "$A" <"$f" >"$f.out" 2>&1
    ) &
    LONG_PID[$1]=$!
    exec {fd}>"$f"
    LONG_FD[$1]=$fd
    on_exit "kill ${LONG_PID[$1]} 2>/dev/null; rm -f $f $f.out"
}
long_send() { printf '%s\n' "$2" >&"${LONG_FD[$1]}"; }
# true once session NAME ran the statement tagged /*TAG*/ and now sits idle
# in its open transaction
long_at() {
    [[ $(sql "$A" "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1'
                   AND state = 'idle in transaction' AND query LIKE '%/*$2*/%'") == 1 ]]
}
long_close() {  # NAME: end of input; psql exits
    local fd=${LONG_FD[$1]}
    exec {fd}>&-
    wait "${LONG_PID[$1]}"
}
short_txns() { sql_script "$A" "$(single_inserts customer "$1" "$2")"; }
b_has() { [[ $(sql "$B" "SELECT count(*) FROM customer WHERE id BETWEEN $1 AND $2") == "$3" ]]; }

ok "long1: BEGIN; insert ids 1..100 (open)" long_open long1
long_send long1 "BEGIN; INSERT INTO customer SELECT g, 'long1 ' || g, 1 FROM generate_series(1, 100) g /*l1a*/;"
ok "long1 holds its open transaction" wait_until 30 "long_at long1 l1a"

ok "short: 300 transactions, ids 1001..1300" short_txns 1001 1300
ok "B gets the 300 short rows while long1 is open" wait_until 90 "b_has 1001 1300 300"
is "$(sql "$B" 'SELECT count(*) FROM customer WHERE id <= 100')" 0 "long1's uncommitted rows are not on B"

ok "long2: BEGIN; insert ids 201..300 (open)" long_open long2
long_send long2 "BEGIN; INSERT INTO customer SELECT g, 'long2 ' || g, 2 FROM generate_series(201, 300) g /*l2a*/;"
ok "long2 holds its open transaction" wait_until 30 "long_at long2 l2a"
ok "long3: BEGIN; insert ids 401..450 (open, will roll back)" long_open long3
long_send long3 "BEGIN; INSERT INTO customer SELECT g, 'long3 ' || g, 3 FROM generate_series(401, 450) g /*l3a*/;"
ok "long3 holds its open transaction" wait_until 30 "long_at long3 l3a"

ok "short: ids 1301..1600" short_txns 1301 1600
long_send long1 "INSERT INTO customer SELECT g, 'long1 late ' || g, 1 FROM generate_series(101, 150) g /*l1b*/;"
ok "long1 inserted more rows after the short ones" wait_until 30 "long_at long1 l1b"
ok "short: ids 1601..1700" short_txns 1601 1700
ok "B gets the short rows 1301..1700" wait_until 90 "b_has 1301 1700 400"

long_send long1 "COMMIT;"
ok "long1 commits" long_close long1
ok "short: ids 1701..1900 after long1's commit" short_txns 1701 1900
long_send long3 "ROLLBACK;"
ok "long3 rolls back" long_close long3
# long2 updates a row a short transaction inserted and committed long ago:
# the update must land after that insert on B.
long_send long2 "UPDATE customer SET name = 'updated by long2' WHERE id = 1001;"
long_send long2 "COMMIT;"
ok "long2 updates row 1001 and commits last" long_close long2
ok "short: ids 1901..2000 after everything" short_txns 1901 2000

# --- verdict -----------------------------------------------------------------
expected=$((150 + 100 + 1000))
is "$(row_count "$A" customer)" "$expected" "A has $expected rows (long3 rolled back)"
ok "B catches up" wait_value 120 "$expected" row_count "$B" customer
ok "A's outbox drains to 0" wait_value 60 0 outbox_depth "$A"
is "$(same_ids "$A" "$B" customer)" "$expected|0|0" "B has every id of A, none missing, none extra"
is "$(sql "$B" 'SELECT count(*) FROM customer WHERE id <= 150')" 150 "all of long1's rows (both statements) arrived"
is "$(sql "$B" 'SELECT count(*) FROM customer WHERE id BETWEEN 201 AND 300')" 100 "all of long2's rows arrived"
is "$(sql "$B" 'SELECT count(*) FROM customer WHERE id BETWEEN 401 AND 450')" 0 "nothing of the rolled-back long3"
is "$(sql "$B" 'SELECT name FROM customer WHERE id = 1001')" "updated by long2" "long2's update of an older row applied after its insert"
is "$(table_md5 "$B" customer)" "$(table_md5 "$A" customer)" "B's rows equal A's"
last_seq=$(sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = 'customer'")
is "$last_seq" $((expected + 1)) "A numbered each committed change once ($expected inserts + 1 update)"
ok "B's progress reaches A's last_seq" wait_value 30 "$last_seq|{}" \
    sql "$B" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$A' AND table_name = 'customer'"
is "$(applied "$B" "$A" customer)" "$last_seq" "every event applied exactly once (applied = last_seq)"
is "$(sql "$B" 'SELECT count(*) FROM evrep.dead_letter')" 0 "no dead letters"
done_testing
