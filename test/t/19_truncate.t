#!/usr/bin/env bash
# 19_truncate: TRUNCATE on the origin reaches the subscriber through the
# broker, in stream order with the rows around it; a subscribed table that
# another table references by a foreign key is emptied by DELETE instead.
# Ports: AMQP 6111, PostgreSQL 6211 (A) and 6212 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t19mq A=t19a B=t19b
# B's table has a column of its own, numbered by its own sequence
B_DDL='CREATE TABLE customer (id int PRIMARY KEY, name text NOT NULL, credit int, local_no serial)'

topo_up_tap <<EOF
broker $MQ port=6111
node $A port=6211 publish=customer schema="$CUSTOMER_DDL"
node $B port=6212 subscribe=customer schema="$B_DDL"
EOF
ok "B's queue evrep.$B is bound to public.customer" topo_bound "$B" public.customer
is "$(sql "$A" "SELECT tgname FROM pg_trigger WHERE tgrelid = 'customer'::regclass ORDER BY 1")" \
   $'evrep_capture\nevrep_capture_truncate' "A captures rows and TRUNCATE of customer"

b_rows() { sql "$B" "SELECT coalesce(string_agg(id || ':' || name, ',' ORDER BY id), '') FROM customer"; }

ok "A: 100 rows" sql "$A" "INSERT INTO customer SELECT g, 'r' || g, g FROM generate_series(1, 100) g"
ok "B receives them" wait_value 60 100 row_count "$B" customer
ok "B: a row of its own" sql "$B" "INSERT INTO customer (id, name) VALUES (1000, 'local')"

# truncate and rows before and after it, one transaction, then another truncate
ok "A: rows, TRUNCATE, rows in one transaction" sql "$A" "
    INSERT INTO customer VALUES (101, 'gone', 0);
    TRUNCATE customer;
    INSERT INTO customer VALUES (1, 'after', 1), (2, 'after', 2)"
ok "B converges to A's two rows" wait_value 60 "1:after,2:after" b_rows
is "$(sql "$B" "SELECT count(*) FROM customer WHERE id = 1000")" 0 "B's own row went with the truncate"

ok "A: TRUNCATE RESTART IDENTITY, then a row" sql_script "$A" "TRUNCATE customer RESTART IDENTITY;
INSERT INTO customer VALUES (3, 'fresh', 3);"
ok "B converges to A's one row" wait_value 60 "3:fresh" b_rows
is "$(sql "$B" "SELECT local_no FROM customer WHERE id = 3")" 1 "B's own sequence restarted"

# a table on B references customer: TRUNCATE would be refused there, DELETE is used
ok "B: a table referencing customer" sql "$B" "
    CREATE TABLE note (id int PRIMARY KEY, customer_id int REFERENCES customer);
    INSERT INTO note VALUES (1, 3)"
ok "A: TRUNCATE, then rows" sql_script "$A" "TRUNCATE customer;
INSERT INTO customer VALUES (4, 'four', 4), (5, 'five', 5);"
ok "B converges to A's rows" wait_value 60 "4:four,5:five" b_rows
is "$(row_count "$B" note)" 1 "the referencing row is left to its own stream"

ok "A's outbox drains" wait_value 60 0 outbox_depth "$A"
last_seq=$(sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = 'customer'")
ok "B applied every event A numbered" wait_value 30 "$last_seq" applied "$B" "$A" customer
is "$(sql "$B" 'SELECT count(*) FROM evrep.dead_letter')" 0 "no dead letters on B"
done_testing
