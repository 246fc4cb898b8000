#!/usr/bin/env bash
# 18_rotation: the outbox partitions rotate (every ~5 s the publisher moves
# writers to the emptied partition and TRUNCATEs the drained one) while
# writers insert without pause.  No writer may see an error -- the writer
# here does not retry, unlike the fault tests' writers -- every row arrives
# once, and the outbox ends small.  Catches capture keeping a stale outbox
# oid across the invalidation each TRUNCATE sends.
# Ports: AMQP 5719, PostgreSQL 5837 (A) and 5838 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t18mq A=t18a B=t18b

topo_up_tap <<EOF
broker $MQ port=5719
node $A port=5837 publish=customer schema="$CUSTOMER_DDL; CREATE SEQUENCE ids"
node $B port=5838 subscribe=customer schema="$CUSTOMER_DDL"
EOF

script=$(mktemp)
on_exit "rm -f $script"
echo "INSERT INTO customer (id, name, credit) VALUES (nextval('ids'), 'c' || :client_id, 1);" >"$script"
slots_before=$(sql "$A" "SELECT count(*) FROM pg_stat_user_tables WHERE relname IN ('outbox_0', 'outbox_1') AND n_tup_ins > 0")
out=$("$PG_BINDIR/pgbench" -n -h 127.0.0.1 -p 5837 -U postgres -c 8 -j 2 -T 20 -f "$script" "$A" 2>&1)
rc=$?
is "$rc" 0 "pgbench (8 clients, 20 s across rotations) exits 0"
unlike "$out" 'ERROR' "no writer saw an error"
written=$(sql "$A" "SELECT count(*) FROM customer")
cmp_ok "$written" -gt 1000 "A committed $written rows"
ok "A's outbox drains" wait_until 90 "[[ \$(outbox_depth $A) -eq 0 ]]"
ok "B has every row" wait_until 90 "[[ \$(row_count $B customer) -eq $written ]]"
is "$(same_ids "$A" "$B" customer)" "$written|0|0" "no id missing or extra on B"
is "$(applied "$B" "$A" customer)" "$written" "B applied each event once"
used=$(sql "$A" "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = 'evrep' AND relname IN ('outbox_0', 'outbox_1') AND n_tup_ins > 0")
is "$used" 2 "writers used both outbox partitions (rotation happened; $slots_before before)"
is "$(sql $A "SELECT sum(n_tup_upd + n_tup_del) FROM pg_stat_user_tables WHERE schemaname = 'evrep' AND relname IN ('outbox_0', 'outbox_1')")" 0 \
   "outbox rows are written once: none was updated or deleted"
ok "the drained partitions are truncated" wait_until 30 \
    "[[ \$(sql $A \"SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('evrep.outbox')\") -le 16384 ]]"
done_testing
