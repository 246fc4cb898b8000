#!/usr/bin/env bash
# Smoke test of the test harness itself (test/lib/*.sh): a private RabbitMQ
# node and a private PostgreSQL cluster, without needing the evrep extension.
# Ports: AMQP ${HARNESS_AMQP_PORT:-5701}, PostgreSQL ${HARNESS_PG_PORT:-5801}.
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"

AMQP_PORT=${HARNESS_AMQP_PORT:-5701}
PG_PORT=${HARNESS_PG_PORT:-5801}
B=harness          # broker node name
N=harness          # postgres node name (and database name)
tag="$$-$RANDOM"

# --- TAP helpers and the EXIT-trap cleanup, in a child script ---------------
child=$(mktemp "${TMPDIR:-/tmp}/evrep-harness-child.XXXXXX")
cat >"$child" <<CHILD
source "$(cd "$(dirname "$0")/../lib" && pwd)/tap.sh"
bg_start harness-sleeper sleep 300
echo "SLEEPER=\$(bg_pid harness-sleeper)"
ok "true passes" true
is "a" "b" "deliberate failure"
like "hello world" '^hello' "like passes"
ok "wait_until times out" wait_until 1 'false'
CHILD
out=$(bash "$child" 2>&1); rc=$?
rm -f "$child"
cmp_ok "$rc" -ne 0 "a script with a failing test exits non-zero"
like "$out" "not ok 2 - deliberate failure" "failing is() prints 'not ok'"
like "$out" "# got: 'a' expected: 'b'" "failing is() prints got/expected"
like "$out" "ok 3 - like passes" "later tests still run without set -e"
like "$out" "not ok 4 - wait_until times out" "wait_until returns false on timeout"
like "$out" $'\n''1\.\.4' "a plan is printed at exit when none was given"
sleeper=$(sed -n 's/^SLEEPER=//p' <<<"$out")
ok "EXIT trap stopped the child's background process" wait_until 5 "! kill -0 $sleeper"

# --- RabbitMQ ----------------------------------------------------------------
ok "rmq_start $B $AMQP_PORT" rmq_start "$B" "$AMQP_PORT" || BAIL_OUT "cannot start RabbitMQ"
URL=$(rmq_url "$B")
is "$URL" "amqp://guest:guest@127.0.0.1:$AMQP_PORT" "rmq_url"

ok "declare a transient queue" amqp-declare-queue --url "$URL" -q harness.transient
ok "publish to it" amqp-publish --url "$URL" -r harness.transient -b "ping-$tag"
is "$(amqp-get --url "$URL" -q harness.transient 2>&1)" "ping-$tag" "AMQP round trip returns the body"
is "$(rmq_queue_depth "$B" harness.transient)" 0 "queue empty after amqp-get"

ok "declare a durable queue" amqp-declare-queue --url "$URL" -d -q harness.durable
ok "publish a persistent message" amqp-publish --url "$URL" -p -r harness.durable -b "persist-$tag"
ok "message is in the queue" wait_until 10 '[[ $(rmq_queue_depth "$B" harness.durable) == 1 ]]'

# --- PostgreSQL ---------------------------------------------------------------
EVREP_PRELOAD=0 EVREP_BROKER_URL="$URL" \
    ok "pg_init $N $PG_PORT (EVREP_PRELOAD=0)" pg_init "$N" "$PG_PORT" "work_mem = '7MB'" \
    || BAIL_OUT "pg_init failed"
ok "pg_start $N" pg_start "$N" || BAIL_OUT "cannot start PostgreSQL"
is "$(pg_psql "$N" -c 'SELECT current_database(), 1 + 1')" "$N|2" "psql returns the expected row"
is "$(pg_psql "$N" -c "SELECT current_setting('evrep.node_name'), current_setting('evrep.database')")" \
   "$N|$N" "evrep.node_name / evrep.database written"
is "$(pg_psql "$N" -c "SELECT current_setting('evrep.broker_url')")" "$URL" "evrep.broker_url from EVREP_BROKER_URL"
is "$(pg_psql "$N" -c "SELECT current_setting('wal_level'), current_setting('track_commit_timestamp'), current_setting('max_prepared_transactions'), current_setting('work_mem')")" \
   "logical|on|20|7MB" "server settings (incl. extra conf line)"
ok "pg_connstr works with psql" "$PG_BINDIR/psql" -X -At -c 'SELECT 1' "$(pg_connstr "$N")"
ok "create a table" pg_psql "$N" -c 'CREATE TABLE h(a int); INSERT INTO h VALUES (42)'
ok "pg_kill $N (crash)" pg_kill "$N"
ok "pg_start after crash" pg_start "$N"
is "$(pg_psql "$N" -c 'SELECT a FROM h')" 42 "committed row survives the crash"
ok "pg_restart $N" pg_restart "$N"
like "$(cat "$(pg_logfile "$N")")" "database system is ready to accept connections" "pg_logfile has the server log"

# --- broker restart keeps durable data ------------------------------------------
ok "rmq_stop $B" rmq_stop "$B"
ok "broker is down" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$AMQP_PORT) 2>/dev/null"
ok "rmq_start $B again (port remembered)" rmq_start "$B" || BAIL_OUT "cannot restart RabbitMQ"
is "$(rmq_queue_depth "$B" harness.durable)" 1 "durable queue still holds the persistent message"
ok "transient queue is gone after the restart" bash -c '! rmq_queue_depth "$@"' _ "$B" harness.transient
is "$(amqp-get --url "$URL" -q harness.durable 2>&1)" "persist-$tag" "persistent message body intact"
like "$(rmq_ctl "$B" -q list_connections --no-table-headers user 2>&1)" '^$|guest' "rmq_ctl runs rabbitmqctl against the node"

# --- explicit cleanup: everything we started goes away ----------------------------
ok "bg_start a helper process" bg_start harness-bg sleep 300
bgpid=$(bg_pid harness-bg)
rmqpid=$(cat "$(rmq_dir "$B")/server.pid")
epmdpid=$(cat "$(rmq_dir "$B")/epmd.pid")
ok "evrep_stop_registered" evrep_stop_registered
ok "AMQP port closed" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$AMQP_PORT) 2>/dev/null"
ok "epmd port closed" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$((AMQP_PORT + 10000))) 2>/dev/null"
ok "PostgreSQL port closed" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$PG_PORT) 2>/dev/null"
for p in "$rmqpid" "-$rmqpid" "$epmdpid" "$bgpid"; do
    ok "process (group) $p is gone" bash -c "! kill -0 -- $p 2>/dev/null"
done
ok "pg not running" bash -c '! pg_is_running "$1"' _ "$N"

done_testing
