#!/usr/bin/env bash
# 42_retry: no message stops a stream.  An error that looks transient by
# its class but repeats for the same message (out of memory, stack depth)
# is retried evrep.apply_max_attempts times, then the event is parked with
# its attempt count and its neighbours are applied; a truly transient
# error (serialization failure) is retried for as long as it lasts and
# parks nothing; order per key holds throughout.
# Ports: AMQP 5786, PostgreSQL 5921 (A) and 5922 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t42mq A=t42a B=t42b

# On B a trigger that fires for applied rows too (ENABLE ALWAYS) plays the
# faults: name 'oom' always fails with out_of_memory, 'flaky' fails with a
# serialization failure its first 4 times (a sequence counts across the
# rolled-back attempts).
FAULTS="
CREATE SEQUENCE public.flaky_tries;
CREATE FUNCTION public.faults() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    IF NEW.name = 'oom' THEN
        RAISE EXCEPTION 'simulated out of memory for id %', NEW.id USING ERRCODE = 'out_of_memory';
    END IF;
    IF NEW.name = 'flaky' AND pg_catalog.nextval('public.flaky_tries') <= 4 THEN
        RAISE EXCEPTION 'simulated serialization failure' USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN NEW;
END \$\$;
CREATE TRIGGER faults BEFORE INSERT OR UPDATE ON public.customer
    FOR EACH ROW EXECUTE FUNCTION public.faults();
ALTER TABLE public.customer ENABLE ALWAYS TRIGGER faults;"

faults=$(evrep_base_dir)/t42_faults.$$.sql
printf '%s\n' "$FAULTS" >"$faults"
on_exit "rm -f '$faults'"

topo_up_tap <<EOF
broker $MQ port=5786
node $A port=5921 publish=customer schema="$CUSTOMER_DDL"
node $B port=5922 subscribe=customer schema="$CUSTOMER_DDL" schema="$faults" \
    conf='evrep.apply_max_attempts = 3'
EOF

dead() { sql "$B" "SELECT $1 FROM evrep.dead_letter WHERE $2"; }

# --- a deterministic "resource" error: bounded retries, then parked ------------
ok "A: rows 1..100" sql_script "$A" "$(single_inserts customer 1 100)"
ok "A: row 101 that B cannot apply (out of memory, every time)" \
    sql "$A" "INSERT INTO customer VALUES (101, 'oom', 1)"
ok "A: rows 102..200 behind it" sql_script "$A" "$(single_inserts customer 102 200)"
ok "B gets every row but 101" wait_value 120 199 row_count "$B" customer
is "$(sql "$B" 'SELECT count(*) FROM customer WHERE id = 101')" 0 "row 101 is not on B"
ok "row 101's event is parked" wait_value 30 1 sql "$B" "SELECT count(*) FROM evrep.dead_letter WHERE sqlstate = '53200'"
oom_seq=$(dead seq "sqlstate = '53200'")
is "$(dead "origin, table_name, attempts" "sqlstate = '53200'")" "$A|customer|3" \
   "parked after 3 attempts with its origin and table"
like "$(dead error "seq = $oom_seq")" 'simulated out of memory for id 101' "with its error"
like "$(dead body "seq = $oom_seq")" '"id": ?101[,}]' "and its body, to replay"
is "$(sql "$A" "SELECT count(*) FROM customer WHERE id < 101")" 100 "(A wrote 100 rows before it)"
cmp_ok "$oom_seq" -ge 101 "its seq is after A's first 100 events"
log=$(cat "$(pg_logfile "$B")")
like "$log" "failed attempt 1 of 3" "the log counts attempt 1"
like "$log" "failed attempt 2 of 3" "the log counts attempt 2"
unlike "$log" "failed attempt 3 of 3" "the third attempt parks instead of failing the batch"
like "$log" "evrep apply of origin \"$A\", table \"public\".\"customer\", seq $oom_seq" \
     "the log names origin, table and seq"
is "$(sql "$B" "SELECT last_error LIKE '%simulated out of memory%' FROM evrep.status WHERE role = 'apply' AND origin = '$A'")" \
   t "evrep.status shows the error as the stream's last_error"
is "$(same_ids "$A" "$B" "customer WHERE id <> 101")" "199|0|0" "every neighbour arrived, none twice"

# --- order per key across a parked update ----------------------------------------
ok "A: row 300 inserted, updated to a poison, updated again" sql_script "$A" "
    INSERT INTO customer VALUES (300, 'first', 1);
    UPDATE customer SET name = 'oom', credit = 2 WHERE id = 300;
    UPDATE customer SET name = 'final', credit = 3 WHERE id = 300;"
ok "B ends with the last update" \
    wait_value 120 "final|3" sql "$B" 'SELECT name, credit FROM customer WHERE id = 300'
is "$(dead "count(*)" "sqlstate = '53200'")" 2 "the poison update is parked, the one after it applied"

# --- a transient error retries without limit and parks nothing ---------------------
ok "A: row 400 that fails 4 times with a serialization failure, rows 401..420" \
    sql_script "$A" "INSERT INTO customer VALUES (400, 'flaky', 4); $(single_inserts customer 401 420)"
ok "B applies row 400 once the failure goes away" \
    wait_value 120 "flaky|4" sql "$B" 'SELECT name, credit FROM customer WHERE id = 400'
ok "and the rows behind it" wait_value 60 21 sql "$B" 'SELECT count(*) FROM customer WHERE id BETWEEN 400 AND 420'
is "$(sql "$B" "SELECT pg_catalog.nextval('public.flaky_tries') > 4")" t "it did fail more than apply_max_attempts times"
is "$(dead "count(*)" "sqlstate = '40001'")" 0 "no serialization failure was parked"

# --- a body nested too deep to parse: stack depth, retried, parked raw ------------
deep() { head -c 300000 /dev/zero | tr '\0' '[' | rmq_tool publish "$(topo_broker_url "$MQ" "$A")" evrep public.customer - =; }
ok "publish a 300,000-deep JSON array as A's broker user" deep
ok "A: rows 500..520 behind it" sql_script "$A" "$(single_inserts customer 500 520)"
ok "B gets them" wait_value 120 21 sql "$B" 'SELECT count(*) FROM customer WHERE id BETWEEN 500 AND 520'
ok "the deep body is parked" wait_value 30 1 sql "$B" "SELECT count(*) FROM evrep.dead_letter WHERE sqlstate = '54001'"
is "$(dead "origin IS NULL, attempts, length(body)" "sqlstate = '54001'")" "t|3|300000" \
   "raw, after 3 attempts, with its whole body"

# --- the stream is whole -------------------------------------------------------------
is "$(worker_connected "$B" consumer)" t "B's consumer is connected"
ok "A's outbox drains" wait_value 60 0 outbox_depth "$A"
last=$(sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = 'customer'")
is "$(sql "$B" "SELECT applied + parked, last_seq, gaps FROM evrep.progress WHERE origin = '$A'")" \
   "$last|$last|{}" "every event A numbered was applied or parked, once, no gap"
is "$(same_ids "$A" "$B" "customer WHERE id <> 101")" "$(( $(row_count "$A" customer) - 1 ))|0|0" \
   "B has all of A's rows but the parked one"
done_testing
