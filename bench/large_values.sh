#!/usr/bin/env bash
# One large value end to end: a row with a bytea of SIZE MB, inserted on A,
# until B has committed it, through evrep and through PostgreSQL's native
# logical replication with binary = true, between the same two servers,
# alternating, in one run.  The values are random (incompressible), staged
# on A before the clock starts.  evrep sends a row in one message: bytea
# travels as hex JSON, so a value's message is twice its size;
# evrep.max_message_bytes is raised to its maximum, 256MB, and the broker's
# max_message_size to 512MB for this (a value over ~128 MB does not fit
# and is skipped: see docs/operations.md, "Rows too large to send").
#
#   bench/large_values.sh ["SIZES_MB"] [ROUNDS]    (default "1 10 50 100" 3)
#
# Prints a table (median seconds of each path and their ratio per size) and
# writes bench/results/large_values.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export EVREP_TEST_DIR=${EVREP_TEST_DIR:-/tmp/evrep-bench-large}
source test/lib/topology.sh
source bench/lib.sh

sizes=${1:-"1 10 50 100"}
rounds=${2:-3}
MQ=benchlv A=benchlva B=benchlvb
OUT=${EVREP_BENCH_OUTDIR:-bench/results}/large_values.md
BENCH_TMP=$(mktemp -d)
bench_traps

TABLES="CREATE TABLE ev (id int PRIMARY KEY, v bytea); CREATE TABLE lr (id int PRIMARY KEY, v bytea)"
CONF="conf=\"shared_buffers = '512MB'\" conf=\"max_wal_size = '8GB'\""
log "starting RabbitMQ and PostgreSQL nodes (dir $EVREP_TEST_DIR)"
topo_up <<EOF || { log "the nodes did not come up"; exit 1; }
broker $MQ port=5735
node $A port=5865 publish=ev schema="$TABLES; CREATE PUBLICATION p FOR TABLE lr; CREATE TABLE src (mb int PRIMARY KEY, v bytea)" conf="evrep.max_message_bytes = '256MB'" $CONF
node $B port=5866 subscribe=ev schema="$TABLES" $CONF
EOF
q() { pg_psql "$1" -c "$2"; }
# until_ok TIMEOUT_S 'condition' [INTERVAL_S]
until_ok() {
	local end=$((SECONDS + $1))
	until eval "$2" >/dev/null 2>&1; do
		((SECONDS < end)) || return 1
		sleep "${3:-0.2}"
	done
}

# the broker reads its limit when a channel opens: A's publisher opens anew
rmq_ctl "$MQ" eval 'application:set_env(rabbit, max_message_size, 536870912).' >/dev/null
n0=$(grep -c "evrep publisher connected" "$(pg_logfile "$A")")
q "$A" "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'evrep publisher'" >/dev/null
until_ok 30 "[[ \$(grep -c 'evrep publisher connected' '$(pg_logfile "$A")') -gt $n0 ]]" ||
	{ log "A's publisher did not reconnect"; exit 1; }
q "$B" "CREATE SUBSCRIPTION s CONNECTION '$(pg_connstr "$A")' PUBLICATION p WITH (binary = true)" >/dev/null
until_ok 60 "[[ \$(q $B \"SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'\") == 0 ]]" ||
	{ log "the native subscription did not get ready"; exit 1; }

for mb in $sizes; do
	log "staging $mb MB of random bytes on A"
	q "$A" "INSERT INTO src SELECT $mb, decode(string_agg(md5(random()::text), ''), 'hex')
		FROM generate_series(1, $mb * 1024 * 1024 / 16)" >/dev/null
done

# one TABLE: insert src's value as row ID on A, wait until B has it; seconds
transfer() {
	local t=$1 id=$2 mb=$3 t0 t1
	t0=$(now)
	q "$A" "INSERT INTO $t SELECT $id, v FROM src WHERE mb = $mb" >/dev/null
	until_ok 600 "[[ \$(q $B 'SELECT count(*) FROM $t WHERE id = $id') == 1 ]]" 0.02 ||
		{ log "$t: row $id did not arrive"; exit 1; }
	t1=$(now)
	[[ "$(q "$B" "SELECT md5(v) FROM $t WHERE id = $id")" == "$(q "$A" "SELECT md5(v) FROM src WHERE mb = $mb")" ]] ||
		{ log "$t: row $id arrived different"; exit 1; }
	fsub "$t1" "$t0"
}

declare -A EV LR
id=0
for mb in $sizes; do
	for r in $(seq "$rounds"); do
		id=$((id + 1))
		e=$(transfer ev "$id" "$mb")
		l=$(transfer lr "$id" "$mb")
		EV[$mb]+="$e " LR[$mb]+="$l "
		log "$mb MB round $r: evrep $e s, native $l s"
	done
done

{
	echo "# One large value end to end: evrep against native logical replication (binary = true)"
	echo
	echo "$(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null), $(nproc) CPUs,"
	echo "\`bench/large_values.sh \"$sizes\" $rounds\`: medians of $rounds rounds, alternating."
	echo
	echo "| value | evrep s | native s | evrep / native |"
	echo "|---|---|---|---|"
	for mb in $sizes; do
		e=$(bench_median ${EV[$mb]}) l=$(bench_median ${LR[$mb]})
		echo "| $mb MB | $e | $l | $(fdiv "$e" "$l" 1) |"
	done
} | tee "$OUT"
echo "written: $OUT"
