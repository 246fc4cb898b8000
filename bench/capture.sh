#!/usr/bin/env bash
# Capture cost: single-row INSERT transactions with pgbench, 8 clients, into
# the same table shape with and without the evrep capture trigger, rounds
# interleaved in one run so machine noise hits both alike.  Prints each
# round's tps and the ratio of the medians (goal >= 0.95); a third table,
# published with a column list and a row filter (that every row passes),
# measures a contract's cost against plain capture.  Then, in as many
# rounds, one INSERT ... SELECT of BULK rows (default 100000) into each of
# plain and captured: the median times and their ratio (plain / captured,
# goal >= 0.8).
#
#   bench/capture.sh [ROUNDS=5] [SECONDS=15] [CLIENTS=8] [BULK=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
export EVREP_TEST_DIR=${EVREP_TEST_DIR:-/tmp/evrep-bench}
source test/lib/topology.sh
source bench/lib.sh

rounds=${1:-5}
secs=${2:-15}
clients=${3:-8}
bulk=${4:-100000}
node=benchcap
port=${EVREP_BENCH_PORT:-5901}

BENCH_TMP=$(mktemp -d)
tmp=$BENCH_TMP
bench_traps

# no broker and no workers: the outbox only grows, which is the writer's side
# of the cost
topo_up <<EOF
node $node port=$port workers=off publish=captured conf="shared_buffers = '256MB'" conf="max_wal_size = '4GB'" \
    schema="CREATE TABLE plain (id bigserial PRIMARY KEY, name text NOT NULL, credit integer NOT NULL)" \
    schema="CREATE TABLE captured (LIKE plain INCLUDING ALL)" \
    schema="CREATE TABLE contracted (LIKE plain INCLUDING ALL)"
EOF
pg_psql $node -c "SELECT evrep_publish('contracted', columns => '{id,name}', row_filter => 'credit > 50')" >/dev/null

for t in plain captured contracted; do
	printf "INSERT INTO %s (id, name, credit) VALUES (nextval('plain_id_seq'), 'customer ' || :client_id, 100);\n" "$t" >"$tmp/$t.sql"
done

run() {
	"$PG_BINDIR/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -c "$clients" -j 2 \
		-T "$secs" -f "$tmp/$1.sql" $node 2>/dev/null |
		awk '/^tps/ {printf "%.0f\n", $3}'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

: >"$tmp/plain.tps"; : >"$tmp/captured.tps"; : >"$tmp/contracted.tps"
for r in $(seq "$rounds"); do
	for t in plain captured contracted; do
		tps=$(run $t)
		echo "$tps" >>"$tmp/$t.tps"
		printf 'round %d %-9s %s tps\n' "$r" "$t" "$tps"
	done
done
p=$(median <"$tmp/plain.tps")
c=$(median <"$tmp/captured.tps")
k=$(median <"$tmp/contracted.tps")
# one statement's rows, timed on the server (the INSERT alone, no round trip)
bulk_run() {
	pg_psql $node -c "DO \$\$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN
		INSERT INTO $1 (id, name, credit) SELECT nextval('plain_id_seq'), 'customer ' || g, 100 FROM generate_series(1, $bulk) g;
		RAISE NOTICE 'bulk %', extract(epoch FROM clock_timestamp() - t0); END \$\$" 2>&1 |
		awk '/bulk/ {print $NF}'
}
: >"$tmp/plain.bulk"; : >"$tmp/captured.bulk"
for r in $(seq "$rounds"); do
	for t in plain captured; do
		pg_psql $node -c "CHECKPOINT" >/dev/null
		s=$(bulk_run $t)
		echo "$s" >>"$tmp/$t.bulk"
		printf 'round %d %-9s one INSERT of %d rows: %s s\n' "$r" "$t" "$bulk" "$s"
	done
done
bp=$(median <"$tmp/plain.bulk")
bc_=$(median <"$tmp/captured.bulk")
outbox=$(pg_psql $node -c "SELECT coalesce(sum(outbox_depth), 0) FROM evrep.status WHERE role = 'publish'")
printf 'median tps: plain %s, with evrep capture %s, ratio %.3f (clients %s, %s x %ss)\n' \
	"$p" "$c" "$(echo "$c / $p" | bc -l)" "$clients" "$rounds" "$secs"
printf 'with a column list and a row filter %s tps, ratio to plain capture %.3f\n' "$k" "$(echo "$k / $c" | bc -l)"
printf 'one INSERT of %d rows, median s: plain %s, with evrep capture %s, ratio %.3f\n' "$bulk" "$bp" "$bc_" "$(echo "$bp / $bc_" | bc -l)"
captured=$(pg_psql $node -c "SELECT (SELECT count(*) FROM captured) + (SELECT count(*) FROM contracted)")
printf 'check: %s rows in the two published tables (every row passes the filter), %s outbox events\n' "$captured" "$outbox"
