#!/usr/bin/env bash
# 01_topology: the brokers test/lib/topology.sh can start besides a single
# node, brought up together, used, and torn down:
#   - a three-node RabbitMQ cluster: 3 running nodes in cluster_status; a
#     quorum queue declared through node 1, a confirmed message published
#     through node 2 and read through node 3; node 1 SIGKILLed (2 running,
#     the queue still works) and restarted (it rejoins and serves);
#   - a broker with a TLS listener and certificates made now by openssl: an
#     AMQP round trip over TLS with the client certificate, refused without
#     one or against another CA; an evrep node whose workers connect over it.
# Ports: cluster AMQP 5761-5763 (epmd 15761, distribution 25761-25763); TLS
# broker AMQP 5771, TLS 5772 (epmd 15771, distribution 25771); PostgreSQL 5841.
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/topology.sh"

C=t01c T=t01t N=t01n
tag="$$-$RANDOM"

topo_up_tap <<EOF
broker $C port=5761 nodes=3
broker $T port=5771 tls=5772
node $N port=5841 broker=$T tls=on
EOF

# --- the cluster -------------------------------------------------------------------
is "$(topo_broker_members "$C" | tr '\n' ' ')" "${C}1 ${C}2 ${C}3 " "three members"
is "$(topo_broker_url "$C")" \
   "amqp://guest:guest@127.0.0.1:5761,amqp://guest:guest@127.0.0.1:5762,amqp://guest:guest@127.0.0.1:5763" \
   "the cluster's AMQP URLs, comma-separated"
running_names() {   # MEMBER: running_nodes in MEMBER's cluster_status, sorted
    rmq_ctl "$1" -q cluster_status --formatter json | grep -o '"running_nodes":\[[^]]*\]' \
        | grep -o 'evrep-[A-Za-z0-9_-]*@localhost' | sort | tr '\n' ' '
}
all="evrep-${C}1@localhost evrep-${C}2@localhost evrep-${C}3@localhost "
is "$(rmq_cluster_running "$C")" 3 "cluster_status: 3 running nodes"
is "$(running_names "${C}3")" "$all" "node 3 sees the same three running nodes"
u1=$(rmq_url "${C}1") u2=$(rmq_url "${C}2") u3=$(rmq_url "${C}3")

ok "declare quorum queue t01.q through node 1" rmq_tool declare-quorum "$u1" t01.q
is "$(rmq_ctl "${C}2" -q list_queues --no-table-headers name type | grep '^t01\.q')" \
   $'t01.q\tquorum' "node 2 lists t01.q as a quorum queue"
ok "publish to it through node 2 (persistent, confirmed)" rmq_tool publish "$u2" "" t01.q "one-$tag"
is "$(amqp-get --url "$u3" -q t01.q 2>&1)" "one-$tag" "read the message through node 3"

beam1=$(cat "$(rmq_dir "${C}1")/beam.pid")
ok "SIGKILL node 1" rmq_cluster_kill "$C" 1
ok "node 1's beam (pid $beam1) is gone" bash -c "! kill -0 $beam1 2>/dev/null"
ok "cluster_status: 2 running nodes" wait_until 30 '[[ $(rmq_cluster_running "$C") == 2 ]]'
ok "publish through node 2 while node 1 is down" rmq_tool publish "$u2" "" t01.q "two-$tag"
is "$(amqp-get --url "$u3" -q t01.q 2>&1)" "two-$tag" "read it through node 3"
ok "restart node 1" rmq_cluster_restart "$C" 1
ok "it rejoins: 3 running nodes" wait_until 30 '[[ $(rmq_cluster_running "$C") == 3 ]]'
is "$(running_names "${C}1")" "$all" "node 1 sees all three again"
ok "publish through node 3" rmq_tool publish "$u3" "" t01.q "three-$tag"
is "$(amqp-get --url "$u1" -q t01.q 2>&1)" "three-$tag" "read it through the restarted node 1"

# --- TLS ---------------------------------------------------------------------------
amqps=$(topo_broker_amqps_url "$T")
is "$amqps" "amqps://guest:guest@127.0.0.1:5772" "the TLS listener's URL"
ca=$(topo_tls_file "$T" ca) cert=$(topo_tls_file "$T" cert) key=$(topo_tls_file "$T" key)
ok "server and client certificates verify against the test CA" \
    openssl verify -CAfile "$ca" "$(topo_tls_file "$T" server_cert)" "$cert"
tls=(--ssl --cacert "$ca" --cert "$cert" --key "$key")
ok "declare a queue over TLS" amqp-declare-queue --url "$amqps" "${tls[@]}" -q t01.tls
ok "publish over TLS" amqp-publish --url "$amqps" "${tls[@]}" -r t01.tls -b "tls-$tag"
is "$(amqp-get --url "$amqps" "${tls[@]}" -q t01.tls 2>&1)" "tls-$tag" "read it back over TLS"
ok "a client without a certificate is refused" \
    bash -c '! amqp-get --url "$1" --ssl --cacert "$2" -q t01.tls' _ "$amqps" "$ca"
other=$EVREP_TEST_DIR/t01-other-ca.$$
on_exit "rm -rf '$other'"
ok "another CA for the negative checks" tls_make "$other"
ok "a server certificate of another CA is refused by the client" \
    bash -c '! amqp-get --url "$1" --ssl --cacert "$2" --cert "$3" --key "$4" -q t01.tls' \
    _ "$amqps" "$(tls_file "$other" ca)" "$cert" "$key"
ok "plain AMQP to the TLS port fails" bash -c '! amqp-get --url "$1" -q t01.tls' _ "${amqps/amqps/amqp}"
is "$(pg_psql "$N" -c 'SHOW evrep.broker_url')" "$(topo_broker_amqps_url "$T" "$N")" \
   "node $N's evrep.broker_url is the amqps URL with its own broker user"
is "$(pg_psql "$N" -c "SELECT string_agg(worker || '=' || connected, ',' ORDER BY worker) FROM evrep.worker_state()")" \
   "consumer=true,publisher=true" "node $N's publisher and consumer are connected"
is "$(rmq_ctl "$T" -q list_connections --no-table-headers ssl user | sort -u)" "true	$N" \
   "the broker's connections are all TLS, as the node's broker user"

# --- teardown: ports closed, processes gone ----------------------------------------
pids=()
for m in "${C}1" "${C}2" "${C}3" "$T"; do
    pids+=("$(cat "$(rmq_dir "$m")/server.pid")" "$(cat "$(rmq_dir "$m")/beam.pid")")
done
pids+=("$(cat "$EVREP_TEST_DIR/rmqc-$C/epmd.pid")" "$(cat "$(rmq_dir "$T")/epmd.pid")")
pids+=("$(head -n 1 "$(pg_datadir "$N")/postmaster.pid")")
ok "topo_down" topo_down
closed=()
for p in 5761 5762 5763 15761 25761 25762 25763 5771 5772 15771 25771 5841; do
    evrep_port_in_use "$p" || closed+=("$p")
done
is "${closed[*]}" "5761 5762 5763 15761 25761 25762 25763 5771 5772 15771 25771 5841" \
   "AMQP, TLS, epmd, distribution and PostgreSQL ports closed"
alive=()
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
is "${alive[*]}" "" "the ${#pids[@]} processes started (rabbitmq-server, beam, epmd, postmaster) are gone"
done_testing
