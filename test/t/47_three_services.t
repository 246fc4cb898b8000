#!/usr/bin/env bash
# 47_three_services: a third service joins late and catches up (issue 9,
# snapshot on subscribe) while both origins keep writing.
#
#   customer_db (t47_customer): owns customer, subscribes orders
#   order_db    (t47_order):    owns orders,   subscribes customer
#   report_db   (t47_report):   a reporting service that only reads; its
#                               server is created after both tables hold
#                               5000 rows, then it subscribes to both tables
#                               (evrep_subscribe, copy_data => true by default)
#
# Both service schemas (services/schema/) define both tables identically;
# report_db loads customer_db.sql. The origins copy in chunks of 50 rows
# (evrep.copy_chunk_rows), so that live changes fall between many chunks.
# One writer per origin runs from before report_db exists until after both
# copies are done: single-row inserts and updates, an insert and an update
# of the same row in one transaction, multi-row updates spread over the key
# range, and now and then a delete.
# Then the writers stop, and: every outbox drains, both copies are 'done' in
# evrep.sync_status on report_db (role receive, node = the origin) and on the
# origins (role send, node = t47_report, the same request_id and counts),
# the copy covered every row that existed at subscribe time and still exists,
# and customer and orders are identical in all three databases (md5 of all
# rows in key order, row counts); no dead letters anywhere.
# Ports: AMQP 5981 (epmd 15981, distribution 25981), PostgreSQL 5982
# (customer_db), 5983 (order_db), 5984 (report_db).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SCHEMA=$ROOT/services/schema
MQ=t47mq C=t47_customer O=t47_order R=t47_report
AMQP_PORT=5981 C_PORT=5982 O_PORT=5983 R_PORT=5984
SEED=5000          # rows per table before report_db exists
CHUNK=evrep.copy_chunk_rows=50
STOP=$EVREP_TEST_DIR/t47-writers.$$.stop
rm -f "$STOP"
on_exit "rm -f $STOP"

# report_db's broker user (users=) exists from the start; its server does not.
topo_up_tap <<EOF
broker $MQ port=$AMQP_PORT users=$R
node $C port=$C_PORT db=customer_db publish=customer subscribe=orders schema="$SCHEMA/customer_db.sql" conf=$CHUNK
node $O port=$O_PORT db=order_db publish=orders subscribe=customer schema="$SCHEMA/order_db.sql" conf=$CHUNK
EOF

# --- the writers -------------------------------------------------------------------
# t47_writer TABLE PORT DB FIRST_ID STOPFILE PSQL: one psql session fed
# with statements (autocommit, one transaction each unless BEGIN ... COMMIT)
# until STOPFILE exists; prints "writer stopped, next id N" at the end.
t47_writer() {
    local table=$1 port=$2 db=$3 next=$4 stop=$5 psql=$6 round=0 k upd multi pick
    pick="(SELECT 1 + floor(random() * (SELECT max(id) FROM $table))::int)"
    case "$table" in
        customer)
            upd="UPDATE customer SET credit_limit = credit_limit + 1"
            multi="UPDATE customer SET customer_name = customer_name || '*', credit_limit = credit_limit + 7" ;;
        orders)
            upd="UPDATE orders SET order_amount = order_amount + 1, status = CASE status WHEN 'NEW' THEN 'PAID' WHEN 'PAID' THEN 'SHIPPED' ELSE 'NEW' END"
            multi="UPDATE orders SET status = status || '*', order_amount = order_amount + 7" ;;
    esac
    ins() {
        case "$table" in
            customer) printf "INSERT INTO customer VALUES (%d, 'customer %d', %d);\n" "$1" "$1" $(($1 % 1000)) ;;
            orders)   printf "INSERT INTO orders VALUES (%d, %d, 'NEW', %d);\n" "$1" $(($1 % 1000)) $((1 + $1 % 5000)) ;;
        esac
    }
    {
        while [[ ! -e "$stop" ]]; do
            round=$((round + 1))
            for ((k = 0; k < 4; k++)); do
                ins "$next"; next=$((next + 1))
                printf '%s WHERE id = %s;\n' "$upd" "$pick"
            done
            # insert and update of the same row in one transaction
            printf 'BEGIN;\n'
            ins "$next"
            printf '%s WHERE id = %d;\nCOMMIT;\n' "$upd" "$next"; next=$((next + 1))
            # rows spread over the whole key range (about 1 in 500)
            (( round % 10 == 0 )) && printf '%s WHERE id %% 500 = %d;\n' "$multi" $(( (round / 10) % 500 ))
            (( round % 15 == 0 )) && printf 'DELETE FROM %s WHERE id = %s;\n' "$table" "$pick"
            printf 'SELECT pg_sleep(0.03);\n'
        done
        printf "SELECT 'writer stopped, next id %d';\n" "$next"
    } | "$psql" -X -q -At -h 127.0.0.1 -p "$port" -U postgres -d "$db" | grep -v '^$'
}
start_t47_writer() {   # NAME NODE TABLE
    local log; log=$(bg_logfile "$1") && rm -f "$log" || return 1
    bg_start "$1" bash -c "$(declare -f t47_writer); t47_writer \"\$@\"" _ \
        "$3" "$(pg_port "$2")" "$(pg_dbname "$2")" $((SEED + 1)) "$STOP" "$PG_BINDIR/psql"
}
writer_stopped() { grep -q '^writer stopped' "$(bg_logfile "$1")" 2>/dev/null && ! bg_is_running "$1"; }

# --- both tables hold data, the writers run ------------------------------------------
ok "customer_db: $SEED customers" \
    sql "$C" "INSERT INTO customer SELECT g, 'customer ' || g, g % 1000 FROM generate_series(1, $SEED) g"
ok "order_db: $SEED orders" \
    sql "$O" "INSERT INTO orders SELECT g, g % 1000, 'NEW', 1 + g % $SEED FROM generate_series(1, $SEED) g"
t_writers=$SECONDS
ok "customer writer on customer_db started" start_t47_writer t47-wc "$C" customer
ok "orders writer on order_db started" start_t47_writer t47-wo "$O" orders
ok "both writers are inserting" \
    wait_until 30 "[[ \$(sql $C 'SELECT max(id) FROM customer') -gt $((SEED + 200)) && \$(sql $O 'SELECT max(id) FROM orders') -gt $((SEED + 200)) ]]"
ok "the existing replicas follow (order_db's customer, customer_db's orders)" \
    wait_until 60 "[[ \$(sql $O 'SELECT max(id) FROM customer') -gt $((SEED + 100)) && \$(sql $C 'SELECT max(id) FROM orders') -gt $((SEED + 100)) ]]"

# --- report_db: a new server, tables, then evrep_subscribe with copy -----------------------
t_report=$SECONDS
ok "report_db's server started (after both tables hold data), with CREATE EXTENSION evrep and the tables (services/schema/customer_db.sql)" \
    topo_late_node "node $R port=$R_PORT db=report_db schema=\"$SCHEMA/customer_db.sql\"" \
    || BAIL_OUT "cannot start report_db's server"
ok "report_db's workers connect" wait_until 60 "topo_ready $R"
# Rows that exist now and still exist at the end must all have been copied
# (ids are never reused, so a row that exists at both times existed throughout).
c_mark=$(sql "$C" "SELECT max(id) FROM customer")
o_mark=$(sql "$O" "SELECT max(id) FROM orders")
t_sub=$(_tap_now_ms)
ok "report_db: evrep_subscribe('customer') and evrep_subscribe('orders') while the writers run" \
    sql_script "$R" "SELECT evrep_subscribe('customer'); SELECT evrep_subscribe('orders');"
note "subscribed at customer id $c_mark, orders id $o_mark, $((SECONDS - t_writers)) s after the writers started"
ok "report_db's queue is bound to public.customer and public.orders" \
    wait_until 30 "topo_bound $R public.customer && topo_bound $R public.orders" 0.1

# --- the copies, watched through evrep.sync_status ----------------------------------------
recv_sql="SELECT table_name || ':' || phase || ':' || rows_copied || '/' || coalesce(rows_estimated::text, '?') || ':' || chunks
          FROM evrep.sync_status WHERE role = 'receive' ORDER BY table_name"
seen=$EVREP_TEST_DIR/t47-sync.$$.log
: >"$seen"
on_exit "rm -f $seen"
copies_done() {
    local s; s=$(sql "$R" "$recv_sql" 2>&1 | tr '\n' ' ')
    printf '%s\n' "$s" >>"$seen"
    [[ "$s" =~ ^customer:done:.*\ orders:done: ]]
}
ok "both copies reach phase 'done' on report_db" wait_until 90 copies_done 0.2
note "copies done $(( $(_tap_now_ms) - t_sub )) ms after evrep_subscribe; sync_status as sampled:"
note "$(uniq "$seen" | sed 's/^/  /' | tail -n 15)"
phases=$(grep -o '[a-z]*:[a-z]*:' "$seen" | sort -u | tr '\n' ' ')
note "phases seen: $phases"

# the writers go on a little while after the copies, then stop
sleep 3
touch "$STOP"
ok "customer writer stopped" wait_until 30 "writer_stopped t47-wc"
ok "orders writer stopped" wait_until 30 "writer_stopped t47-wo"
note "writers ran $((SECONDS - t_writers)) s: $(tail -n 1 "$(bg_logfile t47-wc)"), $(tail -n 1 "$(bg_logfile t47-wo)")"
is "$(grep -h 'ERROR' "$(bg_logfile t47-wc)" "$(bg_logfile t47-wo)" | head -n 3)" "" "no writer statement failed"
is "$(sql "$R" "SELECT count(*) FROM evrep.sync_status WHERE role = 'receive' AND phase <> 'done'")" 0 \
   "report_db's copies are still 'done' (no request was left behind)"

# --- convergence ---------------------------------------------------------------------
for n in "$C" "$O" "$R"; do
    ok "$n's outbox drains to 0" wait_value 90 0 outbox_depth "$n"
done
for t in customer orders; do
    ok "$t: identical in customer_db, order_db and report_db (md5 of all rows in key order)" \
        wait_until 90 "[[ \$(table_md5 $C $t) == \$(table_md5 $O $t) && \$(table_md5 $O $t) == \$(table_md5 $R $t) ]]"
    is "$(row_count "$C" $t)|$(row_count "$O" $t)|$(row_count "$R" $t)" \
       "$(row_count "$C" $t)|$(row_count "$C" $t)|$(row_count "$C" $t)" "$t: the same row count in all three"
done
note "customer: $(row_count "$C" customer) rows, orders: $(row_count "$O" orders) rows; converged $((SECONDS - t_report)) s after report_db's server was created"
for n in "$C" "$O" "$R"; do
    is "$(sql "$n" 'SELECT count(*) FROM evrep.dead_letter')" 0 "$n: no dead letters"
done

# --- sync_status: both sides of each copy --------------------------------------------
is "$(sql "$R" "SELECT table_name, node, phase FROM evrep.sync_status WHERE role = 'receive' ORDER BY table_name")" \
   "customer|$C|done"$'\n'"orders|$O|done" \
   "report_db's sync_status: customer from $C and orders from $O, both 'done'"
is "$(sql "$R" "SELECT count(*) FROM evrep.sync_status WHERE role = 'receive' AND (finished_at IS NULL OR started_at IS NULL OR requested_at IS NULL OR chunks < 1 OR rows_copied < 1)")" 0 \
   "both copies have their times, at least one chunk and copied rows"
is "$(sql "$R" "SELECT count(*) FROM evrep.sync_status WHERE role = 'send'")" 0 "report_db sent no copy"
for pair in "$C customer $c_mark" "$O orders $o_mark"; do
    read -r origin t mark <<<"$pair"
    recv=$(sql "$R" "SELECT request_id, rows_copied, chunks FROM evrep.sync_status WHERE role = 'receive' AND table_name = '$t'")
    is "$(sql "$origin" "SELECT request_id, rows_copied, chunks FROM evrep.sync_status WHERE role = 'send' AND node = '$R' AND table_name = '$t' AND phase = 'done'")" \
       "$recv" "$t: $origin's sync_status (role send, node $R, 'done') has the same request_id, rows_copied and chunks"
    copied=$(cut -d'|' -f2 <<<"$recv")
    still=$(row_count "$origin" "$t WHERE id <= $mark")
    cmp_ok "$copied" -ge "$still" "$t: rows_copied ($copied) covers the $still rows that existed at subscribe time and still exist"
done
note "$(sql "$R" "SELECT table_name, node, request_id, phase, rows_copied, rows_estimated, chunks, round(rows_per_second::numeric) AS rows_per_s, finished_at - started_at AS took FROM evrep.sync_status ORDER BY table_name")"

# --- nothing echoes --------------------------------------------------------------------
is "$(sql "$R" 'SELECT count(*) FROM evrep.publication')|$(outbox_depth "$R")" "0|0" \
   "report_db publishes nothing and captured none of the rows it applied"
is "$(sql "$C" "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM evrep.publication")|$(sql "$O" "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM evrep.publication")" \
   "customer|orders" "one origin per table: customer_db publishes customer, order_db orders"
note "total $SECONDS s"
done_testing
