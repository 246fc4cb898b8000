# test/t/replication_lib.sh -- helpers shared by the replication tests
# (test/t/1x_*.t, 30_*.t). Source it after test/lib/tap.sh; it brings in
# test/lib/topology.sh, through which the tests start their servers:
#
#   source "$(dirname "$0")/../lib/tap.sh"
#   source "$(dirname "$0")/replication_lib.sh"
#   topo_up_tap <<EOF
#   broker $MQ port=5711
#   node $A port=5821 publish=customer schema="$CUSTOMER_DDL"
#   node $B port=5822 subscribe=customer schema="$CUSTOMER_DDL"
#   EOF
#
#   sql NODE 'SQL'                 pg_psql NODE -c SQL (prints rows, '|'-separated;
#                                  several statements run as ONE transaction)
#   sql_script NODE 'SQL'          SQL via stdin: one transaction per statement
#   row_count NODE TABLE           SELECT count(*)
#   table_md5 NODE TABLE           md5 of all rows in id order
#   outbox_depth NODE              events in the outbox not yet confirmed
#   applied NODE ORIGIN TABLE      evrep.progress.applied (0 if no row yet)
#   skipped NODE ORIGIN TABLE      evrep.progress.skipped (0 if no row yet)
#   last_seq NODE TABLE            evrep.publication.last_seq of TABLE on NODE
#   dead_letters NODE              rows in evrep.dead_letter
#   worker_connected NODE WORKER   't' / 'f' from evrep.worker_state()
#   worker_pid NODE BACKEND_TYPE   pid from pg_stat_activity ('evrep publisher' ...)
#   wait_value TIMEOUT EXPECTED CMD...
#                                  wait until CMD prints EXPECTED (no assertion;
#                                  assert afterwards with is "$(CMD)" EXPECTED)
#   CUSTOMER_DDL / ORDERS_DDL      the tables the tests replicate
#   create_orders NODE             $ORDERS_DDL on NODE
#   single_inserts TABLE FIRST LAST   SQL: one INSERT per id (feed to pg_psql)
#   single_updates TABLE FIRST LAST SET   SQL: one UPDATE TABLE SET SET per id
#   repl_writer NODE TABLE FIRST LAST [DELAY_S] [STOPFILE]
#                                  insert ids FIRST..LAST into TABLE, one
#                                  transaction each, retrying every id whose
#                                  transaction did not certainly commit (the
#                                  server may crash under it); idempotent via
#                                  ON CONFLICT DO NOTHING. Stops early (after a
#                                  chunk of 100) once STOPFILE exists. Prints
#                                  "writer done FIRST..LAST retries=N" at the end:
#                                  every id FIRST..LAST is committed then.
#   start_writer NAME NODE TABLE FIRST LAST [DELAY_S]  repl_writer in the background;
#   writer_done NAME / stop_writer NAME / writer_last NAME / writer_retries NAME
#   same_ids NODE1 NODE2 TABLE     prints "n|missing|extra": ids on NODE1, ids
#                                  of NODE1 missing on NODE2, ids on NODE2 not on NODE1
#   assert_stream_converged LABEL ORIGIN SUB TABLE
#                                  the end state of ORIGIN's stream of TABLE on
#                                  SUB: ORIGIN's outbox drains, SUB's progress
#                                  reaches ORIGIN's last_seq with no gaps, same
#                                  ids, equal md5, every event applied once
#                                  (applied = last_seq); notes how many SUB
#                                  skipped. (No dead-letter check: a test may
#                                  expect some. history_lib.sh's assert_converged
#                                  is the variant for a history gone back.)

[[ -n "${_EVREP_REPL_LIB_SH:-}" ]] && return 0
_EVREP_REPL_LIB_SH=1

# shellcheck source=../lib/topology.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/topology.sh"

sql() { local n=$1; shift; pg_psql "$n" -c "$*"; }

# sql_script NODE SCRIPT -- run SCRIPT through psql's stdin: in autocommit
# mode every statement is its own transaction (unlike sql's -c).
sql_script() { printf '%s\n' "$2" | pg_psql "$1"; }

row_count() { sql "$1" "SELECT count(*) FROM $2"; }

table_md5() { sql "$1" "SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM $2 t"; }

# events not yet confirmed by the broker (1.1 keeps confirmed rows until
# their partition is emptied; 1.0 deletes them), as evrep.status counts them
outbox_depth() { sql "$1" "SELECT coalesce(sum(outbox_depth), 0) FROM evrep.status WHERE role = 'publish'"; }

# _progress_sum COLUMN NODE ORIGIN TABLE -- a counter of NODE's evrep.progress
# row for ORIGIN's TABLE (0 if no row yet)
_progress_sum() {
    sql "$2" "SELECT coalesce(sum($1), 0) FROM evrep.progress WHERE origin = '$3' AND table_name = '$4'"
}
applied() { _progress_sum applied "$@"; }
skipped() { _progress_sum skipped "$@"; }

last_seq() { sql "$1" "SELECT last_seq FROM evrep.publication WHERE table_name = '$2'"; }

dead_letters() { sql "$1" 'SELECT count(*) FROM evrep.dead_letter'; }

worker_connected() {
    sql "$1" "SELECT CASE bool_and(connected) WHEN true THEN 't' WHEN false THEN 'f' ELSE 'none' END FROM evrep.worker_state() WHERE worker = '$2'"
}

worker_pid() {
    sql "$1" "SELECT coalesce(min(pid)::text, '') FROM pg_stat_activity WHERE backend_type = '$2'"
}

wait_value() {
    local timeout=$1 exp=$2; shift 2
    local _cmd; printf -v _cmd '%q ' "$@"
    wait_until "$timeout" "[[ \$($_cmd 2>/dev/null) == $(printf '%q' "$exp") ]]" 0.3
}

CUSTOMER_DDL='CREATE TABLE customer (id int PRIMARY KEY, name text NOT NULL, credit int)'
ORDERS_DDL='CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, amount int)'

create_orders() {
    sql "$1" "$ORDERS_DDL"
}

# _repl_values TABLE ID -- set REPL_V to the VALUES tuple of row ID of
# TABLE (customer or orders); no subshell, it runs thousands of times.
_repl_values() {
    case "$1" in
        orders) printf -v REPL_V "(%d, %d, %d)" "$2" $(( $2 % 97 )) $(( $2 * 3 )) ;;
        *)      printf -v REPL_V "(%d, 'name %d', %d)" "$2" "$2" $(( $2 % 1000 )) ;;
    esac
}

# single_inserts TABLE FIRST LAST -- one INSERT statement per id (run through
# psql in autocommit mode: one transaction each).
single_inserts() {
    local i
    for ((i = $2; i <= $3; i++)); do
        _repl_values "$1" "$i"
        printf 'INSERT INTO %s VALUES %s;\n' "$1" "$REPL_V"
    done
}

# single_updates TABLE FIRST LAST SET -- one UPDATE statement per id, e.g.
# single_updates customer 1 10 "name = 'x'" (for sql_script: one transaction each)
single_updates() {
    local i
    for ((i = $2; i <= $3; i++)); do printf 'UPDATE %s SET %s WHERE id = %d;\n' "$1" "$4" "$i"; done
}

repl_writer() {
    local node=$1 table=$2 first=$3 last=$4 delay=${5:-0} stopfile=${6:-}
    local next=$first out got i end tries=0 chunk=100 retrying=0
    while (( next <= last )); do
        # never stop while the outcome of id $next is unknown
        if (( !retrying )) && [[ -n "$stopfile" && -e "$stopfile" ]]; then
            last=$((next - 1)); break
        fi
        end=$(( next + chunk - 1 < last ? next + chunk - 1 : last ))
        # One session per chunk, one autocommit transaction per INSERT;
        # RETURNING prints the id once it committed. A statement whose
        # outcome is unknown (session lost) is sent again: ON CONFLICT DO
        # NOTHING makes that harmless.
        out=$(
            for ((i = next; i <= end; i++)); do
                _repl_values "$table" "$i"
                printf 'INSERT INTO %s VALUES %s ON CONFLICT (id) DO NOTHING RETURNING id;\n' \
                    "$table" "$REPL_V"
                if [[ "$delay" != 0 ]]; then printf 'SELECT pg_sleep(%s);\n' "$delay"; fi
            done | pg_psql "$node" 2>&1
        ) && { next=$((end + 1)); retrying=0; continue; }
        retrying=1 tries=$((tries + 1))
        if (( tries > 1000 )); then
            echo "writer gives up at id $next" >&2; return 1
        fi
        got=$(grep -E '^[0-9]+$' <<<"$out" | tail -n 1)
        [[ -n "$got" ]] && next=$((got + 1))
        echo "writer: session failed, retrying from id $next: $(grep -vE '^[0-9]*$' <<<"$out" | tail -n 1)" >&2
        sleep 0.3
    done
    echo "writer done $first..$last retries=$tries"
}

same_ids() {
    local n1=$1 n2=$2 table=$3 ids1 ids2
    ids1=$(sql "$n1" "SELECT id FROM $table ORDER BY id") || return 1
    ids2=$(sql "$n2" "SELECT id FROM $table ORDER BY id") || return 1
    printf '%s|%s|%s\n' \
        "$(grep -c . <<<"$ids1")" \
        "$(comm -23 <(sort <<<"$ids1") <(sort <<<"$ids2") | grep -c .)" \
        "$(comm -13 <(sort <<<"$ids1") <(sort <<<"$ids2") | grep -c .)"
}

# start_writer NAME NODE TABLE FIRST LAST [DELAY_S]
#   repl_writer in the background (bg_start: own process group, log in
#   $(bg_logfile NAME), stopped at exit).
# writer_done NAME      true once it committed every id it wrote
# stop_writer NAME      ask it to stop after the current chunk
# writer_last NAME      the last id it committed (after writer_done)
REPL_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
start_writer() {
    local name=$1 log; shift
    log=$(bg_logfile "$name") || return 1
    rm -f "$log" "$log.stop"
    bg_start "$name" bash -c 'source "$1/../lib/pg.sh" && source "$1/replication_lib.sh" && shift && repl_writer "$@"' \
        _ "$REPL_LIB_DIR" "$1" "$2" "$3" "$4" "${5:-0}" "$log.stop"
}
writer_done() { grep -q '^writer done' "$(bg_logfile "$1")" 2>/dev/null; }
stop_writer() { touch "$(bg_logfile "$1").stop"; }
writer_last() { sed -n 's/^writer done [0-9]*\.\.\([0-9]*\).*/\1/p' "$(bg_logfile "$1")"; }
writer_retries() { sed -n 's/^writer done .* retries=\([0-9]*\)/\1/p' "$(bg_logfile "$1")"; }

assert_stream_converged() {
    local label=$1 o=$2 s=$3 t=$4 seq
    ok "$label: $o's outbox drains" wait_value 60 0 outbox_depth "$o"
    seq=$(last_seq "$o" "$t")
    ok "$label: $s's progress reaches $o's last_seq $seq with no gaps" wait_value 60 "$seq|{}" \
        sql "$s" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$o' AND table_name = '$t'"
    is "$(same_ids "$o" "$s" "$t")" "$(row_count "$o" "$t")|0|0" "$label: $s has every id of $o, none missing, none extra"
    is "$(table_md5 "$s" "$t")" "$(table_md5 "$o" "$t")" "$label: $s's rows equal $o's (md5)"
    is "$(applied "$s" "$o" "$t")" "$seq" "$label: every event applied once on $s (applied = last_seq)"
    note "$label: $s skipped $(skipped "$s" "$o" "$t") redelivered events"
}
