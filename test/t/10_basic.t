#!/usr/bin/env bash
# 10_basic: one-way replication A -> B of 10,000 rows, exactly once, plus
# per-key ordering of insert / update / delete.
# Ports: AMQP 5711, PostgreSQL 5821 (A) and 5822 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t10mq A=t10a B=t10b
N=10000

topo_up_tap <<EOF
broker $MQ port=5711
node $A port=5821 publish=customer schema="$CUSTOMER_DDL"
node $B port=5822 subscribe=customer schema="$CUSTOMER_DDL"
EOF
is "$(sql "$A" 'SELECT schema_name, table_name, key_columns, active FROM evrep.publication')" \
   "public|customer|{id}|t" "A publishes customer"
is "$(sql "$B" 'SELECT schema_name, table_name, key_columns FROM evrep.subscription')" \
   "public|customer|{id}" "B subscribes customer"

# Events of a table no queue is bound to are dropped by the broker (the
# documented contract): the topology is ready only once B's consumer has
# bound its queue.
ok "B's queue evrep.$B is bound to public.customer" topo_bound "$B" public.customer

# --- 10,000 rows: 4 multi-row statements, 6000 single-row transactions ------
t0=$SECONDS
ok "A: 4 multi-row INSERTs of 1000 rows each" sql "$A" "
    INSERT INTO customer SELECT g, 'multi ' || g, g % 1000 FROM generate_series(1, 1000) g;
    INSERT INTO customer SELECT g, 'multi ' || g, g % 1000 FROM generate_series(1001, 2000) g;
    INSERT INTO customer SELECT g, 'multi ' || g, g % 1000 FROM generate_series(2001, 3000) g;
    INSERT INTO customer SELECT g, 'multi ''quoted'' \"x\" ' || g, NULL FROM generate_series(3001, 4000) g"
ok "A: 6000 single-row transactions" sql_script "$A" "$(single_inserts customer 4001 "$N")"
is "$(row_count "$A" customer)" "$N" "A has $N rows"
note "A wrote $N rows in $((SECONDS - t0)) s"

ok "B receives $N rows" wait_value 120 "$N" row_count "$B" customer
note "replicated after $((SECONDS - t0)) s"
is "$(row_count "$B" customer)" "$N" "B has exactly $N rows"
is "$(table_md5 "$B" customer)" "$(table_md5 "$A" customer)" "B's rows equal A's (md5 of all rows)"
ok "A's outbox drains to 0" wait_value 60 0 outbox_depth "$A"
is "$(outbox_depth "$A")" 0 "A's outbox is empty"
ok "B's progress reaches applied = $N" wait_value 30 "$N" applied "$B" "$A" customer
is "$(applied "$B" "$A" customer)" "$N" "evrep.progress: applied = $N (each event applied once)"
is "$(sql "$B" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$A' AND table_name = 'customer'")" \
   "$N|{}" "B's progress: last_seq = $N, no gaps"
is "$(sql "$A" "SELECT outbox_depth, last_seq FROM evrep.status WHERE role = 'publish' AND table_name = 'customer'")" \
   "0|$N" "A's evrep.status: publish depth 0, last_seq $N"
is "$(sql "$B" "SELECT applied, dead_letters FROM evrep.status WHERE role = 'apply' AND origin = '$A' AND table_name = 'customer'")" \
   "$N|0" "B's evrep.status: apply applied $N, no dead letters"
is "$(sql "$B" 'SELECT count(*) FROM evrep.dead_letter')" 0 "no dead letters on B"

# --- order per key: insert, update(s), delete in separate transactions -------
ok "A: insert/update/delete of single keys, one transaction each" sql "$A" "$(
    echo "INSERT INTO customer VALUES (20001, 'first', 1);"
    echo "UPDATE customer SET name = 'second', credit = 2 WHERE id = 20001;"
    echo "INSERT INTO customer VALUES (20002, 'doomed', 1);"
    echo "UPDATE customer SET credit = 5 WHERE id = 20002;"
    echo "DELETE FROM customer WHERE id = 20002;"
    echo "INSERT INTO customer VALUES (20003, 'counter', 0);"
    for i in $(seq 1 50); do echo "UPDATE customer SET credit = credit + 1 WHERE id = 20003;"; done
    echo "DELETE FROM customer WHERE id = 7;"
    echo "UPDATE customer SET name = 'renamed' WHERE id BETWEEN 100 AND 199;"
    echo "UPDATE customer SET id = 30005 WHERE id = 5;"
)"
# psql -c ran the statements above as one transaction; now the same pattern
# with one transaction per statement, where order across transactions matters.
ok "A: same pattern as separate transactions" sql_script "$A" "$(
    echo "INSERT INTO customer VALUES (20011, 'first', 1);"
    echo "UPDATE customer SET name = 'second', credit = 2 WHERE id = 20011;"
    echo "INSERT INTO customer VALUES (20012, 'doomed', 1);"
    echo "UPDATE customer SET credit = 5 WHERE id = 20012;"
    echo "DELETE FROM customer WHERE id = 20012;"
    echo "INSERT INTO customer VALUES (20013, 'counter', 0);"
    for i in $(seq 1 50); do echo "UPDATE customer SET credit = credit + 1 WHERE id = 20013;"; done
    echo "DELETE FROM customer WHERE id = 8;"
    echo "UPDATE customer SET id = 30006 WHERE id = 6;"
    echo "INSERT INTO customer VALUES (6, 'reused key', 66);"
)"

final_md5=$(table_md5 "$A" customer)
ok "B converges to A's final state" wait_until 60 '[[ $(table_md5 "$B" customer) == "$final_md5" ]]'
is "$(table_md5 "$B" customer)" "$final_md5" "B's rows equal A's after updates and deletes"
is "$(sql "$B" 'SELECT name, credit FROM customer WHERE id IN (20001, 20011) ORDER BY id')" \
   $'second|2\nsecond|2' "update after insert on the same key ends with the updated value"
is "$(sql "$B" 'SELECT count(*) FROM customer WHERE id IN (20002, 20012, 7, 8, 5)')" 0 \
   "deleted keys (and the old key of a key update) have no row on B"
is "$(sql "$B" 'SELECT string_agg(credit::text, $$,$$ ORDER BY id) FROM customer WHERE id IN (20003, 20013)')" \
   "50,50" "50 successive updates of one key applied in order"
is "$(sql "$B" 'SELECT name, credit FROM customer WHERE id IN (6, 30005, 30006) ORDER BY id')" \
   $'reused key|66\nmulti 5|5\nmulti 6|6' "primary key updates moved the rows; the freed key reused"
is "$(sql "$B" "SELECT count(*) FROM customer WHERE name = 'renamed'")" 100 "multi-row UPDATE replicated"
is "$(row_count "$B" customer)" "$(row_count "$A" customer)" "row counts equal"
ok "A's outbox drains to 0 again" wait_value 60 0 outbox_depth "$A"
last_seq=$(sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = 'customer'")
cmp_ok "$last_seq" -gt "$N" "A numbered more than $N events"
ok "B's applied count reaches A's last_seq" wait_value 30 "$last_seq" applied "$B" "$A" customer
is "$(applied "$B" "$A" customer)" "$last_seq" "every event numbered by A applied exactly once on B"
is "$(skipped "$B" "$A" customer)" 0 "and without a fault none was sent twice (B skipped no duplicate)"

# --- evrep.publish_window: 0 (a round per commit) and 3 (three messages may
# await their confirms) deliver the same, under 4 concurrent writers -------
for w in 0 3; do
    sql "$A" "ALTER SYSTEM SET evrep.publish_window = $w" >/dev/null
    sql "$A" "SELECT pg_reload_conf()" >/dev/null
    is "$(sql "$A" 'SHOW evrep.publish_window')" "$w" "A: evrep.publish_window = $w"
    base=$((100000 * (w + 1)))
    pids=()
    for c in 0 1 2 3; do
        lo=$((base + c * 1000))
        sql_script "$A" "$(single_inserts customer "$lo" $((lo + 299)))
UPDATE customer SET credit = -1 WHERE id BETWEEN $lo AND $((lo + 99));
DELETE FROM customer WHERE id BETWEEN $((lo + 100)) AND $((lo + 149));" >/dev/null &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    final_md5=$(table_md5 "$A" customer)
    ok "publish_window $w: B converges to A's rows" wait_until 60 '[[ $(table_md5 "$B" customer) == "$final_md5" ]]'
    last_seq=$(sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = 'customer'")
    ok "publish_window $w: B's applied reaches A's last_seq" wait_value 30 "$last_seq" applied "$B" "$A" customer
    is "$(skipped "$B" "$A" customer)" 0 "publish_window $w: no event sent twice"
    is "$(sql "$B" "SELECT count(*) FROM customer WHERE id >= $base AND id < $base + 4000")" 1000 \
        "publish_window $w: B has the 4 x 250 rows that remain"
done
sql "$A" "ALTER SYSTEM RESET evrep.publish_window" >/dev/null
sql "$A" "SELECT pg_reload_conf()" >/dev/null
is "$(sql "$B" 'SELECT count(*) FROM evrep.dead_letter')" 0 "still no dead letters on B"
done_testing
