#!/usr/bin/env bash
# What a release costs against the one before it: evrep 1.0 (the released
# build, test/lib/evrep10.sh) and the current build, each on a fresh pair of
# servers and one RabbitMQ node, rounds alternating so that machine noise hits
# both alike.  Per round and version: N single-row INSERT transactions with
# pgbench (8 clients) into a published table on A, then
#   rows/s   from pgbench's start until B has applied every row,
#   WAL/event on A: bytes of WAL from before pgbench until A's outbox is empty
#            (capture, numbering, delete), divided by N,
#   msg B    AMQP body bytes per event (evrep_claim of 1000 events of the
#            same shape, before the run).
#
#   bench/versions.sh [ROUNDS=3] [N=20000]
#
# Ports: AMQP 5751, PostgreSQL 5891/5892.  Output: a table on stdout and
# bench/results/versions.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export EVREP_TEST_DIR=${EVREP_TEST_DIR:-/tmp/evrep-bench-versions}
source test/lib/topology.sh
source test/lib/evrep10.sh
source bench/lib.sh

rounds=${1:-3}
n=${2:-20000}
A=bva B=bvb MQ=bvmq TBL=ev
old_pgc=$(evrep_old_pg_config)
cur_pgc=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
BENCH_TMP=$(mktemp -d)
bench_traps

ddl="CREATE TABLE ev (id bigint PRIMARY KEY, name text NOT NULL, credit integer NOT NULL, note text)"
script=$BENCH_TMP/insert.sql
printf "\\\\set id random(1, 1000000000000)\nINSERT INTO ev VALUES (:id, 'customer ' || :client_id, 100, 'a note of some length, as rows have');\n" >"$script"

one_round() { # VERSION PG_CONFIG
	local v=$1 pgc=$2 wal0 wal1 t0 t1 msg
	topo_up >/dev/null <<EOT
broker $MQ port=5751
node $A port=5891 pg_config=$pgc publish=$TBL schema="$ddl" conf="track_commit_timestamp = off"
node $B port=5892 pg_config=$pgc subscribe=$TBL schema="$ddl"
EOT
	msg=$(q "$A" "BEGIN; INSERT INTO ev SELECT -g, 'customer ' || g, 100, 'a note of some length, as rows have' FROM generate_series(1, 1000) g;
		SELECT sum(length(message)) / 1000 FROM evrep_claim(1000); ROLLBACK;" | tail -n 1)
	wal0=$(q "$A" "SELECT pg_current_wal_lsn()")
	t0=$(now)
	"$PG_BINDIR/pgbench" -n -h 127.0.0.1 -p 5891 -U postgres -c 8 -j 2 -t $((n / 8)) -f "$script" "$(pg_dbname "$A")" >/dev/null 2>&1
	# polled finely: a round lasts seconds
	until (( $(bench_applied) >= n / 8 * 8 )); do sleep 0.05; done
	t1=$(now)
	while [[ $(bench_depth) != 0 ]]; do sleep 0.2; done
	wal1=$(q "$A" "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$wal0')")
	printf '%s %s %s %s\n' "$v" "$(awk -v n=$((n / 8 * 8)) -v d="$(fsub "$t1" "$t0")" 'BEGIN {printf "%.0f", n / d}')" \
		"$(awk -v w="$wal1" -v n=$((n / 8 * 8)) 'BEGIN {printf "%.0f", w / n}')" "$msg"
	topo_down >/dev/null 2>&1
}

out=$BENCH_TMP/rounds
for r in $(seq "$rounds"); do
	for v in 1.0 current; do
		[[ $v == 1.0 ]] && pgc=$old_pgc || pgc=$cur_pgc
		line=$(one_round "$v" "$pgc")
		log "round $r: $line"
		echo "$line" >>"$out"
	done
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
{
	echo "| version | rows/s end to end (median of $rounds) | WAL per event on A (B) | message body per event (B) |"
	echo "|---|---|---|---|"
	for v in 1.0 current; do
		echo "| $v | $(awk -v v=$v '$1 == v {print $2}' "$out" | median) | $(awk -v v=$v '$1 == v {print $3}' "$out" | median) | $(awk -v v=$v '$1 == v {print $4}' "$out" | median) |"
	done
	echo
	echo "rounds (version rows/s WAL/event msg/event):"
	sed 's/^/    /' "$out"
	echo "load before: $(loadavg); $n events per round, pgbench 8 clients"
} | tee bench/results/versions.md
