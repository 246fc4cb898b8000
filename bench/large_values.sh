#!/usr/bin/env bash
# One large value end to end: a row with a bytea of SIZE MB, inserted on A,
# until B has committed it, through evrep and through PostgreSQL's native
# logical replication with binary = true, between the same two servers,
# alternating, in one run.  The values are random (incompressible), staged
# on A before the clock starts.  evrep runs with its defaults: a bytea of
# 1 MB or more travels apart from its row in parts of raw bytes, at most
# evrep.max_message_bytes (64 MB) each (docs/protocol.md, "Large events and
# parts"); a smaller one as hex in the row's JSON.
#
#   bench/large_values.sh ["SIZES_MB"] [ROUNDS]    (default "1 10 100 1000" 3)
#
set -euo pipefail
cd "$(dirname "$0")/.."
export EVREP_TEST_DIR=${EVREP_TEST_DIR:-/tmp/evrep-bench-large}
source test/lib/topology.sh
source bench/lib.sh

sizes=${1:-"1 10 100 1000"}
rounds=${2:-3}
MQ=benchlv A=benchlva B=benchlvb
OUT=${EVREP_BENCH_OUTDIR:-bench/results}/large_values.md
BENCH_TMP=$(mktemp -d)
bench_traps

TABLES="CREATE TABLE ev (id int PRIMARY KEY, v bytea); CREATE TABLE lr (id int PRIMARY KEY, v bytea)"
CONF="conf=\"shared_buffers = '512MB'\" conf=\"max_wal_size = '2GB'\""
log "starting RabbitMQ and PostgreSQL nodes (dir $EVREP_TEST_DIR)"
topo_up <<EOF || { log "the nodes did not come up"; exit 1; }
broker $MQ port=5735
node $A port=5865 publish=ev schema="$TABLES; CREATE PUBLICATION p FOR TABLE lr; CREATE TABLE src (mb int PRIMARY KEY, v bytea)" $CONF
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

q "$B" "CREATE SUBSCRIPTION s CONNECTION '$(pg_connstr "$A")' PUBLICATION p WITH (binary = true)" >/dev/null
until_ok 60 "[[ \$(q $B \"SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'\") == 0 ]]" ||
	{ log "the native subscription did not get ready"; exit 1; }

for mb in $sizes; do
	log "staging $mb MB of random bytes on A"
	# in pieces of at most 64 MB: the hex of the whole would pass 1 GB
	q "$A" "INSERT INTO src SELECT $mb, string_agg(piece, ''::bytea ORDER BY p) FROM
		(SELECT p, (SELECT decode(string_agg(md5(random()::text || g), ''), 'hex')
			FROM generate_series(1, least(64, $mb - (p - 1) * 64) * 1024 * 1024 / 16) g) AS piece
		 FROM generate_series(1, ($mb + 63) / 64) p) s" >/dev/null
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
	# off the clock: a run of 1 GB values would fill the disk
	q "$A" "DELETE FROM $t WHERE id = $id" >/dev/null
	until_ok 600 "[[ \$(q $B 'SELECT count(*) FROM $t') == 0 ]]" 0.1 ||
		{ log "$t: the delete of row $id did not arrive"; exit 1; }
	q "$A" "VACUUM $t" >/dev/null
	q "$A" "VACUUM evrep.outbox_value" >/dev/null
	q "$B" "VACUUM $t" >/dev/null
	q "$B" "VACUUM evrep.inbox_part" >/dev/null
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
