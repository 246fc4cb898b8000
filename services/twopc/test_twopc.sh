#!/usr/bin/env bash
# test_twopc.sh - the two-phase commit baseline (customer_service_2pc,
# order_service_2pc), TAP output (run with `prove`).
#
# Two private PostgreSQL servers (customer_db and order_db, both tables in
# each, no evrep: topology.sh nodes with evrep=off; pg.sh gives them
# max_prepared_transactions = 20) and both 2PC services, each with the
# other's database as --peer-db.  Checks: the product services take no 2PC
# options and carry no crash hooks; rows are in both databases
# when the call returns; a stopped peer fails the call and leaves nothing
# behind; crashes before and after the decision (test hooks
# EVREP_2PC_CRASH_BEFORE_DECISION / _AFTER_DECISION) leave in-doubt
# transactions that recovery rolls back / commits at the next start, also
# when the peer is down at that start (then the periodic pass finishes);
# other services' prepared transactions are left alone; a concurrent load
# with a very frequent recovery pass loses nothing and rolls back nothing.
#
# Uses the project's harness (test/lib/tap.sh, topology.sh, bg_start), which
# stops exactly what this script started, also on failure.
# Environment: EVREP_TEST_DIR (the work directory is made below it; default
# /tmp), EVREP_TEST_CUSTOMER_PGPORT (5895), EVREP_TEST_ORDER_PGPORT (5896),
# EVREP_TEST_CUSTOMER_PORT (9491), EVREP_TEST_ORDER_PORT (9490),
# KEEP_TEST_DIR=1 keeps the work directory (kept anyway when a test failed).

set -uo pipefail
# shellcheck source=../test_lib.sh
source "$(dirname "$0")/../test_lib.sh" evrep-twopc-test tap
HERE=$SVC_DIR            # services/: the product binaries, the schemas
TWOPC=$SVC_DIR/twopc     # the baseline's binaries

CPG=${EVREP_TEST_CUSTOMER_PGPORT:-5895}
OPG=${EVREP_TEST_ORDER_PGPORT:-5896}
CS_PORT=${EVREP_TEST_CUSTOMER_PORT:-9491}
OS_PORT=${EVREP_TEST_ORDER_PORT:-9490}
C=customer_db
O=order_db
PREFIX_CS='evrep2pc:CustomerService:'
PREFIX_OS='evrep2pc:OrderService:'

# ---- helpers -----------------------------------------------------------------

client() {   # sets $out and $rc
    out=$("$HERE/common_client" --customer-port "$CS_PORT" --order-port "$OS_PORT" \
              --timeout 20 "$@" 2>&1)
    rc=$?
}
q() { pg_psql "$1" -c "$2"; }
rows() { q "$1" "SELECT count(*) FROM $2 WHERE id = $3"; }
# prepared transactions of our services in node $1's database
prepared() { q "$1" "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE 'evrep2pc:%'"; }
decisions() { q "$1" "SELECT count(*) FROM twopc_decision"; }

# start_svc cs|os [ENV=VALUE...] -- [extra service options]
start_svc() {
    local which=$1; shift
    local envs=() prog db peer port
    while (( $# )) && [[ $1 != -- ]]; do envs+=("$1"); shift; done
    [[ ${1:-} == -- ]] && shift
    if [[ $which == cs ]]; then
        prog=customer_service_2pc db=$C peer=$O port=$CS_PORT
    else
        prog=order_service_2pc db=$O peer=$C port=$OS_PORT
    fi
    bg_start "$which" env "${envs[@]}" "$TWOPC/$prog" --port "$port" \
        --db "$(pg_connstr "$db")" --peer-db "$(pg_connstr "$peer")" \
        --recovery-interval-ms 500 "$@" || return 1
    wait_until 20 "evrep_port_in_use $port" 0.05
}
# start_crashing cs|os HOOK [WHAT] -- restart the service with the crash hook
# HOOK (EVREP_2PC_CRASH_BEFORE_DECISION / _AFTER_DECISION) set; WHAT is added
# to the test's name
start_crashing() {
    local prog=customer_service_2pc
    [[ $1 == os ]] && prog=order_service_2pc
    bg_stop "$1"
    ok "$prog with $2=1${3:+ $3}" start_svc "$1" "$2=1"
}
# crashing_call cs|os WHAT CLIENT_ARGS... -- a call that the crash hook ends:
# a transport error (exit 3, test WHAT), and the service process is gone
crashing_call() {
    local svc=$1 what=$2; shift 2
    client "$@"
    is "$rc" 3 "$what"
    ok "... the service process is gone" wait_until 10 "! bg_is_running $svc"
}
log_lines() { local f; f=$(bg_logfile "$1"); grep -c -- "$2" "$f" 2>/dev/null || true; }

# ---- setup --------------------------------------------------------------------

if build_out=$(make -C "$HERE" all 2>&1) && ! grep -q 'warning:' <<<"$build_out"; then
    pass "services build without warnings"
else
    fail "services build without warnings" "$build_out"
    BAIL_OUT "build failed"
fi
topo_up_tap <<EOF
node $C port=$CPG evrep=off schema="$HERE/schema/$C.sql" conf="fsync = off"
node $O port=$OPG evrep=off schema="$HERE/schema/$O.sql" conf="fsync = off"
EOF

# usage errors exit at once; timeout only keeps a regression from hanging
for prog in customer_service_2pc order_service_2pc; do
    timeout 10 "$TWOPC/$prog" --port "$CS_PORT" >/dev/null 2>&1
    is "$?" 2 "$prog without --peer-db is a usage error"
done
timeout 10 "$TWOPC/customer_service_2pc" --port "$CS_PORT" --mode 2pc --peer-db "$(pg_connstr $O)" >/dev/null 2>&1
is "$?" 2 "customer_service_2pc has no --mode: usage error"
for prog in customer_service order_service; do
    timeout 10 "$HERE/$prog" --port "$CS_PORT" --mode 2pc >/dev/null 2>&1
    is "$?" 2 "$prog rejects --mode 2pc (usage error)"
    timeout 10 "$HERE/$prog" --port "$CS_PORT" --peer-db "$(pg_connstr $O)" >/dev/null 2>&1
    is "$?" 2 "$prog rejects --peer-db (usage error)"
    is "$(grep -c EVREP_2PC_CRASH "$HERE/$prog")" 0 "$prog carries no 2PC crash hook"
done

ok "customer_service_2pc is up" start_svc cs
ok "order_service_2pc is up" start_svc os -- --customer-wait-ms 300
is "$(q $C "SELECT count(*) FROM pg_tables WHERE tablename = 'twopc_decision'")|$(q $O "SELECT count(*) FROM pg_tables WHERE tablename = 'twopc_decision'")" \
   "1|1" "each service created its decision log at start"

# ---- happy path -------------------------------------------------------------------

client create-customer --id 1 --name Alice --credit 1000
is "$rc" 0 "createCustomer 1 through the 2PC baseline"
is "$(rows $C customer 1)|$(rows $O customer 1)" "1|1" "customer 1 is in both databases when the call returns"
client create-order --id 10 --amount 250 --status NEW --customer 1
is "$rc" 0 "createOrder 10 through the 2PC baseline"
is "$(rows $O orders 10)|$(rows $C orders 10)" "1|1" "order 10 is in both databases when the call returns"
client list-orders --customer 1
like "$out" "Orders\(id:10, orderAmount:250, status:NEW, customer:Customer\(id:1, customerName:Alice" \
     "getOrdersForCustomer sees the order with its customer"
is "$(prepared $C)|$(prepared $O)" "0|0" "no prepared transaction is left behind"

client create-customer --id 1 --name Again --credit 1
like "$rc:$out" "^1:.*customer 1 already exists" "duplicate customer: OperationFailedException"
client create-order --id 10 --amount 1 --status NEW --customer 1
like "$rc:$out" "^1:.*order 10 already exists" "duplicate order: OperationFailedException"
client create-order --id 11 --amount 1 --status NEW --customer 999
like "$rc:$out" "^1:.*customer 999 not found" "order for an unknown customer: OperationFailedException"
is "$(rows $O orders 11)|$(rows $C orders 11)|$(prepared $C)|$(prepared $O)" "0|0|0|0" \
   "... nothing written and nothing prepared on either side"
is "$(q $C "SELECT count(*) FROM customer WHERE customer_name = 'Again'")|$(q $O "SELECT count(*) FROM customer WHERE customer_name = 'Again'")" \
   "0|0" "the rejected duplicate changed neither database"

# ---- the peer is down ---------------------------------------------------------------

ok "stop order_db (CustomerService's peer)" pg_stop $O
client create-customer --id 2 --name Bob --credit 5
is "$rc" 1 "createCustomer with the peer stopped: exit 1 (OperationFailedException)"
like "$out" "OperationFailedException: createCustomer failed: peer database unavailable" "... the message names the peer"
is "$(rows $C customer 2)|$(prepared $C)" "0|0" "... nothing was left in the local database (no row, nothing prepared)"
client create-order --id 12 --amount 1 --status NEW --customer 1
like "$rc:$out" "^1:.*createOrder failed: database unavailable" "createOrder with its own database stopped fails"
ok "start order_db again" pg_start $O
client create-customer --id 3 --name Carol --credit 5
is "$rc" 0 "after the peer is back createCustomer works again"
is "$(rows $C customer 3)|$(rows $O customer 3)" "1|1" "... customer 3 in both databases"
is "$(rows $C customer 2)|$(rows $O customer 2)" "0|0" "customer 2 (failed) is in neither"

# ---- crash before the decision: rolled back at restart ------------------------------------

start_crashing cs EVREP_2PC_CRASH_BEFORE_DECISION
crashing_call cs "createCustomer 4: the service dies after both PREPAREs (transport error)" \
    create-customer --id 4 --name Crash1 --credit 5
is "$(q $C "SELECT count(*) FROM pg_prepared_xacts WHERE starts_with(gid, '$PREFIX_CS')")|$(q $O "SELECT count(*) FROM pg_prepared_xacts WHERE starts_with(gid, '$PREFIX_CS')")" \
   "1|1" "one in-doubt transaction of CustomerService in each database"
is "$(rows $C customer 4)|$(rows $O customer 4)|$(decisions $C)" "0|0|0" "... not visible anywhere, no decision logged"
before=$(log_lines cs 'rolled back in-doubt')
ok "customer_service_2pc restarted without the hook" start_svc cs
is "$(prepared $C)|$(prepared $O)" "0|0" "recovery at start settled both (no prepared transaction left)"
is "$(rows $C customer 4)|$(rows $O customer 4)" "0|0" "... by rolling back: customer 4 is in neither database"
is "$(( $(log_lines cs 'rolled back in-doubt') - before ))" 2 "... the log says so for both databases"
ok "... and its rollback decision is forgotten afterwards" wait_until 10 '[[ $(decisions $C) == 0 ]]'

# ---- crash after the decision: committed at restart ----------------------------------------

start_crashing cs EVREP_2PC_CRASH_AFTER_DECISION
crashing_call cs "createCustomer 5: the service dies right after committing the decision" \
    create-customer --id 5 --name Crash2 --credit 5
is "$(prepared $C)|$(prepared $O)" "1|1" "one in-doubt transaction in each database"
is "$(q $C "SELECT count(*) FROM twopc_decision WHERE committed")" 1 "... and a commit decision in customer_db's log"
is "$(rows $C customer 5)|$(rows $O customer 5)" "0|0" "... customer 5 not visible yet"
before=$(log_lines cs 'committed in-doubt')
ok "customer_service_2pc restarted without the hook" start_svc cs
is "$(prepared $C)|$(prepared $O)" "0|0" "recovery at start settled both"
is "$(rows $C customer 5)|$(rows $O customer 5)" "1|1" "... by committing: customer 5 is in both databases"
is "$(( $(log_lines cs 'committed in-doubt') - before ))" 2 "... the log says so for both databases"
ok "... and the decision is forgotten afterwards" wait_until 10 '[[ $(decisions $C) == 0 ]]'

# ---- crash after the decision, peer down at restart: periodic recovery -----------------------

start_crashing cs EVREP_2PC_CRASH_AFTER_DECISION
crashing_call cs "createCustomer 6: the service dies after the decision" \
    create-customer --id 6 --name Crash3 --credit 5
ok "stop order_db" pg_stop $O
ok "customer_service_2pc restarted while its peer is down" start_svc cs
is "$(prepared $C)|$(rows $C customer 6)" "0|1" "the local side is committed at start"
ok "start order_db again" pg_start $O
ok "the periodic recovery pass commits the peer's side" \
    wait_until 15 '[[ "$(prepared $O)|$(rows $O customer 6)" == "0|1" ]]'
ok "... and the decision is forgotten afterwards" wait_until 10 '[[ $(decisions $C) == 0 ]]'

# ---- OrderService: crash before and after the decision ---------------------------------------

start_crashing os EVREP_2PC_CRASH_BEFORE_DECISION
crashing_call os "createOrder 20: the service dies after both PREPAREs" \
    create-order --id 20 --amount 7 --status NEW --customer 1
is "$(q $O "SELECT count(*) FROM pg_prepared_xacts WHERE starts_with(gid, '$PREFIX_OS')")|$(q $C "SELECT count(*) FROM pg_prepared_xacts WHERE starts_with(gid, '$PREFIX_OS')")" \
   "1|1" "one in-doubt transaction of OrderService in each database"
start_crashing os EVREP_2PC_CRASH_AFTER_DECISION "(the restart recovers order 20 first)"
is "$(prepared $C)|$(prepared $O)|$(rows $O orders 20)|$(rows $C orders 20)" "0|0|0|0" \
   "order 20 (no decision) was rolled back on both sides"
crashing_call os "createOrder 21: the service dies after the decision" \
    create-order --id 21 --amount 7 --status NEW --customer 1
ok "order_service_2pc restarted" start_svc os -- --customer-wait-ms 300
is "$(prepared $C)|$(prepared $O)|$(rows $O orders 21)|$(rows $C orders 21)" "0|0|1|1" \
   "order 21 (decided) was committed on both sides"

# ---- other transactions are not ours ------------------------------------------------------------

ok "prepare two foreign transactions in customer_db" pg_psql $C <<'SQL'
BEGIN; INSERT INTO customer VALUES (901, 'foreign 1', 1); PREPARE TRANSACTION 'evrep2pc:OtherService:x:1';
BEGIN; INSERT INTO customer VALUES (902, 'foreign 2', 1); PREPARE TRANSACTION 'manual-gid';
SQL
bg_stop cs
ok "customer_service_2pc restarted" start_svc cs
sleep 1.5     # three periodic passes
is "$(q $C "SELECT string_agg(gid, ',' ORDER BY gid) FROM pg_prepared_xacts")" \
   "evrep2pc:OtherService:x:1,manual-gid" "recovery leaves other services' and manual prepared transactions alone"
ok "roll them back" q $C "ROLLBACK PREPARED 'evrep2pc:OtherService:x:1'"
ok "..." q $C "ROLLBACK PREPARED 'manual-gid'"

# ---- load: concurrency 8 while recovery runs every 20 ms ----------------------------------------

bg_stop cs; bg_stop os
ok "both services restarted with --recovery-interval-ms 20" \
    eval 'start_svc cs -- --recovery-interval-ms 20 && start_svc os -- --recovery-interval-ms 20'
rb_before=$(( $(log_lines cs 'in-doubt') + $(log_lines os 'in-doubt') ))
client load --customers 400 --orders 400 --concurrency 8 --id-base 1000 --order-id-base 1000 \
    --order-db "$(pg_connstr $O)" --peer-db "$(pg_connstr $C)"
if [[ $rc == 0 ]] && grep -q "^createCustomer .* 400 *0 " <<<"$out" && grep -q "^createOrder .* 400 *0 " <<<"$out"; then
    pass "load: 400 customers and 400 orders at concurrency 8, no error"
else
    fail "load: 400 customers and 400 orders at concurrency 8, no error" "exit $rc"$'\n'"$out"
fi
diag "$(grep -v '^load: ' <<<"$out")"
is "$(q $C "SELECT count(*) FROM customer WHERE id BETWEEN 1000 AND 1399")|$(q $O "SELECT count(*) FROM customer WHERE id BETWEEN 1000 AND 1399")" \
   "400|400" "all 400 customers in both databases"
is "$(q $O "SELECT count(*) FROM orders WHERE id BETWEEN 1000 AND 1399")|$(q $C "SELECT count(*) FROM orders WHERE id BETWEEN 1000 AND 1399")" \
   "400|400" "all 400 orders in both databases"
is "$(prepared $C)|$(prepared $O)" "0|0" "nothing left prepared"
is "$(( $(log_lines cs 'in-doubt') + $(log_lines os 'in-doubt') - rb_before ))" 0 \
   "recovery never touched a transaction in flight"
ok "decision logs are emptied by the periodic pass" \
    wait_until 10 '[[ "$(decisions $C)|$(decisions $O)" == "0|0" ]]'

# ---- shutdown ------------------------------------------------------------------------------------

for s in cs os; do
    pid=$(bg_pid $s)
    kill -TERM "$pid"
    if evrep_wait_pid_exit "$pid" 10; then pass "$s exits on SIGTERM"; else fail "$s exits on SIGTERM"; fi
done

done_testing
svc_test_end
