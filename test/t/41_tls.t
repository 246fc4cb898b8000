#!/usr/bin/env bash
# 41_tls: evrep over amqps:// for real, against a RabbitMQ TLS listener whose
# CA, server and client certificates openssl makes now (test/lib/tls.sh).
# Each node logs in as the broker user named like it, with its password in
# evrep.broker_password_file and none in evrep.broker_url (docs/operations.md's recipe).
#   - A publishes item, B publishes note, each subscribes the other's: both
#     connect over TLS with the client certificate and replicate both ways;
#   - B's evrep.ssl_ca_file pointed at another CA (reload): B refuses the
#     broker's certificate, worker_state shows connected = f and a
#     certificate verification error, B's log says so, nothing is applied
#     while A keeps publishing; back to the right CA, B catches up;
#   - the broker's certificate replaced by one whose only name is
#     wrong.example (same CA): refused for a host name mismatch with
#     evrep.ssl_verify_hostname on (the default); accepted with it off, and
#     rows flow, while verify_peer still refuses another CA;
#   - a wrong password (another evrep.broker_password_file) is refused at
#     login; a reload that changes evrep.broker_url is logged by PostgreSQL
#     and followed;
#   - after all of that the broker passwords appear in neither server log,
#     nor in postgresql.conf, the broker's log, or what a pg_monitor or an
#     evrep_admin member reads in worker_state() / evrep.status (which do
#     show the error and the broker's address). An evrep_admin member may not
#     SHOW evrep.broker_url; a pg_monitor member may (PostgreSQL lets
#     pg_read_all_settings read GUC_SUPERUSER_ONLY settings), and it holds
#     no password.
# Ports: AMQP 5781, TLS 5782 (epmd 15781, distribution 25781); PostgreSQL
# 5911 (A) and 5912 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

MQ=t41mq A=t41a B=t41b
TLS_PORT=5782
# how the server log and worker_state name B's broker (a regex)
B_WHERE="amqps://$B@127\\.0\\.0\\.1:$TLS_PORT vhost \"/\""
ITEM_DDL='CREATE TABLE item (id int PRIMARY KEY, v text NOT NULL)'
NOTE_DDL='CREATE TABLE note (id int PRIMARY KEY, v text NOT NULL)'

# The passwords, each in a file only user postgres reads.
SECRETS=$(evrep_base_dir)/t41-secrets.$$
on_exit "rm -rf '$SECRETS'"
mkdir -p "$SECRETS" && chmod 711 "$SECRETS" || BAIL_OUT "cannot create $SECRETS"
pwfile() {   # NAME PASSWORD -> path of a file holding it
    local f=$SECRETS/$1.pw
    printf '%s\n' "$2" >"$f" && chmod 600 "$f" && { (( EUID != 0 )) || chown postgres: "$f"; } && echo "$f"
}
PW_A=$(rmq_password "$A") PW_B=$(rmq_password "$B")
PWF_A=$(pwfile "$A" "$PW_A") && PWF_B=$(pwfile "$B" "$PW_B") || BAIL_OUT "cannot write the password files"

topo_up_tap <<EOF
broker $MQ port=5781 tls=$TLS_PORT
node $A port=5911 tls=on publish=item subscribe=note schema="$ITEM_DDL" schema="$NOTE_DDL" \
    conf="evrep.broker_url = 'amqps://$A@127.0.0.1:$TLS_PORT'" conf="evrep.broker_password_file = '$PWF_A'"
node $B port=5912 tls=on publish=note subscribe=item schema="$ITEM_DDL" schema="$NOTE_DDL" \
    conf="evrep.broker_url = 'amqps://$B@127.0.0.1:$TLS_PORT'" conf="evrep.broker_password_file = '$PWF_B'"
EOF

# topology.sh also wrote its own URL, password included, before the conf=
# lines: drop it, so that postgresql.conf holds no password (the next reload
# reads the file again).
for n in $A $B; do
    sed -i "/^evrep\.broker_url = 'amqps:\/\/$n:/d" "$(pg_datadir $n)/postgresql.conf"
done

# ---- helpers -------------------------------------------------------------------------
# set_conf NODE 'name = value' / reset_conf NODE name: ALTER SYSTEM and reload
set_conf() { sql "$1" "ALTER SYSTEM SET ${2%% = *} = ${2#* = }" >/dev/null && sql "$1" 'SELECT pg_reload_conf()' >/dev/null; }
reset_conf() { sql "$1" "ALTER SYSTEM RESET $2" >/dev/null && sql "$1" 'SELECT pg_reload_conf()' >/dev/null; }
now() { sql "$1" 'SELECT now()'; }
# refused NODE SINCE REGEX: both workers disconnected, each with a last_error
# newer than SINCE that matches REGEX (case-insensitive)
refused() {
    [[ $(sql "$1" "SELECT count(*) FROM evrep.worker_state()
                   WHERE NOT connected AND last_error_at > '$2' AND last_error ~* \$re\$$3\$re\$") == 2 ]]
}
connected() { [[ $(sql "$1" 'SELECT count(*) FROM evrep.worker_state() WHERE connected') == 2 ]]; }
errors() { sql "$1" "SELECT string_agg(worker || ': ' || coalesce(last_error, '-'), E'\n' ORDER BY worker) FROM evrep.worker_state()"; }
logpos() { stat -c %s "$(pg_logfile "$1")"; }
log_since() { tail -c +$(( $2 + 1 )) "$(pg_logfile "$1")"; }
# in_sync: item and note equal on A and B, row for row
in_sync() {
    [[ $(table_md5 $A item) == $(table_md5 $B item) && $(table_md5 $A note) == $(table_md5 $B note) ]]
}
write_rows() {   # NODE TABLE FIRST LAST
    sql "$1" "INSERT INTO $2 SELECT g, md5(g::text) FROM generate_series($3, $4) g" >/dev/null
}
swap_server_cert() {   # NAME: the broker serves $TLS_DIR/NAME.{pem,key} after a restart
    cp "$TLS_DIR/$1.pem" "$TLS_DIR/server.pem" && cp "$TLS_DIR/$1.key" "$TLS_DIR/server.key" && rmq_restart "$MQ"
}

# ---- over TLS, both ways ----------------------------------------------------------------
is "$(sql $A 'SHOW evrep.broker_url')|$(sql $B 'SHOW evrep.broker_url')" \
   "amqps://$A@127.0.0.1:$TLS_PORT|amqps://$B@127.0.0.1:$TLS_PORT" \
   "evrep.broker_url is amqps:// with no password; the passwords are in evrep.broker_password_file"
ok "A and B: publisher and consumer connected" wait_until 30 'connected $A && connected $B'
is "$(rmq_ctl "$MQ" -q list_connections --no-table-headers ssl user | sort | uniq -c | awk '{print $1, $2, $3}' | tr '\n' ' ')" \
   "2 true $A 2 true $B " "the broker sees two TLS connections per node, each as the node's own user"
write_rows $A item 1 1000
write_rows $B note 1 1000
ok "1000 items A -> B and 1000 notes B -> A arrive over TLS" \
    wait_until 60 '[[ $(row_count $B item) == 1000 && $(row_count $A note) == 1000 ]]'
ok "both tables equal on A and B (md5)" in_sync

# ---- a broker certificate of another CA -------------------------------------------------
TLS_DIR=$(dirname "$(topo_tls_file "$MQ" ca)")
OTHER=$EVREP_TEST_DIR/t41-other-ca.$$
on_exit "rm -rf '$OTHER'"
ok "another CA, made by openssl now" tls_make "$OTHER"
other_ca=$(tls_file "$OTHER" ca)
ok "the broker's certificate does not verify against it" \
    bash -c '! openssl verify -CAfile "$1" "$2" >/dev/null 2>&1' _ "$other_ca" "$(topo_tls_file "$MQ" server_cert)"

pos=$(logpos $B) t0=$(now $B)
items_b=$(row_count $B item) applied_b=$(applied $B $A item)
ok "B: evrep.ssl_ca_file = the other CA, reloaded" set_conf $B "evrep.ssl_ca_file = '$other_ca'"
ok "B refuses the broker: both workers connected = f, last_error a certificate verification failure" \
    wait_until 30 'refused $B "$t0" "verif.*(cert|peer)|(cert|peer).*verif"'
like "$(errors $B)" "^consumer: $B_WHERE: [^"$'\n'"]*verif[^"$'\n'"]*"$'\n'"publisher: $B_WHERE: [^"$'\n'"]*verif" \
     "worker_state's last_error names the broker (no password) and the failure"
note "B's worker_state: $(errors $B)"
like "$(log_since $B "$pos")" "WARNING: +evrep (publisher|consumer): broker connection to $B_WHERE failed: "'[^'$'\n'']*(verif[^'$'\n'']*(cert|peer)|(cert|peer)[^'$'\n'']*verif)' \
     "B's log: a WARNING names the broker and the certificate verification failure"
write_rows $A item 1001 1500
ok "A keeps publishing: its outbox drains to 0" wait_value 30 0 outbox_depth $A
ok "A's 500 new events wait in B's queue" \
    wait_until 30 '[[ $(rmq_queue_depth "$MQ" "$(topo_queue $B)") -ge 1 ]]'
sleep 1
is "$(row_count $B item)|$(applied $B $A item)" "$items_b|$applied_b" \
   "nothing applied on B meanwhile (rows and evrep.progress unchanged)"
ok "B still refuses (connected = f)" refused $B "$t0" 'verif'

ok "B: evrep.ssl_ca_file reset to the test CA, reloaded" reset_conf $B evrep.ssl_ca_file
ok "B reconnects" wait_until 30 'connected $B'
ok "B catches up: 1500 items, tables equal" wait_until 60 '[[ $(row_count $B item) == 1500 ]] && in_sync'
is "$(applied $B $A item)" 1500 "each of A's 1500 events applied once"

# ---- host name: a certificate for wrong.example ----------------------------------------
ok "a server certificate of the test CA whose only name is wrong.example" \
    tls_server_cert "$TLS_DIR" wrong "DNS:wrong.example"
cp "$TLS_DIR/server.pem" "$TLS_DIR/right.pem" && cp "$TLS_DIR/server.key" "$TLS_DIR/right.key"
ok "it verifies against the test CA (only the name is wrong)" \
    openssl verify -CAfile "$(topo_tls_file "$MQ" ca)" "$TLS_DIR/wrong.pem"
pos_a=$(logpos $A) pos=$(logpos $B) t0=$(now $B) t0a=$(now $A)
ok "the broker restarted with it" swap_server_cert wrong
ok "A and B refuse it with evrep.ssl_verify_hostname on (the default): last_error a host name verification failure" \
    wait_until 60 'refused $A "$t0a" "host ?name" && refused $B "$t0" "host ?name"'
note "B's worker_state: $(errors $B)"
like "$(log_since $B "$pos")" "WARNING: +evrep (publisher|consumer): broker connection to $B_WHERE failed: "'[^'$'\n'']*host ?name' \
     "B's log: a WARNING says the host name did not verify"
write_rows $A item 1501 1600
write_rows $B note 1001 1100
sleep 2
is "$(row_count $B item)|$(row_count $A note)" "1500|1000" "nothing flows while the host name is refused"
is "$(outbox_depth $A)|$(outbox_depth $B)" "100|100" "the new events wait in A's and B's outboxes"

hostname_check() {   # on|off on both nodes
    if [[ $1 == off ]]; then set_conf $A "evrep.ssl_verify_hostname = off" && set_conf $B "evrep.ssl_verify_hostname = off"
    else reset_conf $A evrep.ssl_verify_hostname && reset_conf $B evrep.ssl_verify_hostname; fi
}
ok "A and B: evrep.ssl_verify_hostname = off (verify_peer stays on), reloaded" hostname_check off
ok "both connect to the wrong.example certificate" wait_until 30 'connected $A && connected $B'
ok "rows flow both ways again: 1600 items, 1100 notes, tables equal" \
    wait_until 60 '[[ $(row_count $B item) == 1600 && $(row_count $A note) == 1100 ]] && in_sync'
t0=$(now $B)
ok "with verify_hostname off, B pointed at the other CA" set_conf $B "evrep.ssl_ca_file = '$other_ca'"
ok "is still refused: verify_peer is not switched off with it" wait_until 30 'refused $B "$t0" "verif.*(cert|peer)|(cert|peer).*verif"'
ok "B back to the test CA" reset_conf $B evrep.ssl_ca_file
ok "B reconnects" wait_until 30 'connected $B'

ok "the broker restarted with its right certificate" swap_server_cert right
ok "A and B: evrep.ssl_verify_hostname back on (default)" hostname_check on
ok "both connect, the host name 127.0.0.1 verifies" wait_until 60 'connected $A && connected $B'
is "$(sql $B 'SHOW evrep.ssl_verify_hostname')" on "B: evrep.ssl_verify_hostname is on"

# ---- a wrong password, a reload that changes evrep.broker_url ---------------------------
PW_WRONG="pw-wrong-$$-$RANDOM"
PWF_WRONG=$(pwfile wrong "$PW_WRONG")
# password_leaks -- which broker password (A's, B's, the wrong one) stands how
# often in which server log; nothing if none does
password_leaks() {
    local n pw c out=
    for n in $A $B; do
        for pw in "$PW_A" "$PW_B" "$PW_WRONG"; do
            c=$(grep -cF -- "$pw" "$(pg_logfile $n)")
            (( c > 0 )) && out+="$n's log has '$pw' $c times; "
        done
    done
    printf '%s' "$out"
}
t0=$(now $A)
ok "A: evrep.broker_password_file = a file with a wrong password" set_conf $A "evrep.broker_password_file = '$PWF_WRONG'"
ok "A is refused at login" wait_until 30 'refused $A "$t0" "login|access.refused|403"'
note "A's worker_state: $(errors $A)"
ok "A: back to its password file" reset_conf $A evrep.broker_password_file
# reset_conf drops the ALTER SYSTEM value; postgresql.conf's conf= line holds $PWF_A
ok "A reconnects" wait_until 30 'connected $A'

pos_url=$(logpos $A)
new_url="amqps://$A@localhost:$TLS_PORT/%2f"
ok "A: evrep.broker_url changed to $new_url, reloaded" set_conf $A "evrep.broker_url = '$new_url'"
ok "A's workers reconnect to it" \
    wait_until 30 '[[ $(log_since $A $pos_url | grep -c "connected to broker amqps://$A@localhost:$TLS_PORT ") -ge 2 ]] && connected $A'
like "$(log_since $A "$pos_url")" "parameter \"evrep.broker_url\" changed to \"amqps://$A@localhost:$TLS_PORT/%2f\"" \
     "PostgreSQL logged the reloaded URL (which is why the password is not in it)"
write_rows $A item 1601 2000
write_rows $B note 1101 1500
ok "rows flow both ways: 2000 items, 1500 notes, tables equal" \
    wait_until 60 '[[ $(row_count $B item) == 2000 && $(row_count $A note) == 1500 ]] && in_sync'
is "$(applied $B $A item)|$(applied $A $B note)" "2000|1500" "each event applied once"
is "$(sql $A 'SELECT count(*) FROM evrep.dead_letter')|$(sql $B 'SELECT count(*) FROM evrep.dead_letter')" "0|0" "no dead letters"

# ---- the password is nowhere to be read ---------------------------------------------------
is "$(runuser -u postgres -- cat "$PWF_A")" "$PW_A" "(the password file holds A's password: the greps below look for it)"
is "$(password_leaks)" "" "no broker password (A's, B's, the wrong one) in either server log"
c=$(cat "$(pg_datadir $A)"/postgresql*.conf "$(pg_datadir $B)"/postgresql*.conf | grep -cF -e "$PW_A" -e "$PW_B")
is "$c" 0 "nor in postgresql.conf / postgresql.auto.conf"

ok "B: roles t41mon (pg_monitor) and t41adm (evrep_admin)" \
    sql $B "CREATE ROLE t41mon LOGIN IN ROLE pg_monitor; CREATE ROLE t41adm LOGIN IN ROLE evrep_admin"
# B refused once more, so that worker_state and evrep.status carry an error
t0=$(now $B)
set_conf $B "evrep.ssl_ca_file = '$other_ca'"
ok "B refused again (for the look below)" wait_until 30 'refused $B "$t0" "verif"'
for role in t41mon t41adm; do
    seen=$(sql $B "SET ROLE $role; SELECT current_user || ' ' || (SELECT string_agg(w::text, ' ') FROM evrep.worker_state() w)
                   || ' ' || (SELECT string_agg(s::text, ' ') FROM evrep.status s)")
    like "$seen" "^$role .*amqps://$B@127\\.0\\.0\\.1:$TLS_PORT.*verif" \
         "$role reads worker_state() and evrep.status: the error and where B connects"
    unlike "$seen" "pw-" "no password in what $role reads there"
done
like "$(sql $B "SET ROLE t41adm; SHOW evrep.broker_url" 2>&1)" "permission denied|must be superuser" \
     "t41adm (evrep_admin) may not SHOW evrep.broker_url"
is "$(sql $B "SET ROLE t41adm; SELECT count(*) FROM pg_settings WHERE name IN ('evrep.broker_url', 'evrep.broker_password_file')")" 0 \
   "nor see evrep.broker_url / broker_password_file in pg_settings"
# pg_monitor includes pg_read_all_settings, which PostgreSQL lets read every
# setting, GUC_SUPERUSER_ONLY ones too: the URL it reads has no password
is "$(sql $B "SET ROLE t41mon; SHOW evrep.broker_url" 2>&1)" "amqps://$B@127.0.0.1:$TLS_PORT" \
   "t41mon (pg_monitor, hence pg_read_all_settings) reads evrep.broker_url: no password in it"
reset_conf $B evrep.ssl_ca_file
ok "B reconnects" wait_until 30 'connected $B'
is "$(password_leaks)" "" "at the end, still no broker password in either server log"
is "$(grep -cF -e "$PW_A" -e "$PW_B" -e "$PW_WRONG" "$(rmq_logfile "$MQ")")" 0 "nor in the broker's log"
done_testing
