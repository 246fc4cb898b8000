#!/usr/bin/env bash
# End-to-end replication benchmark: evrep (capture -> outbox -> publisher ->
# RabbitMQ -> consumer -> apply) against PostgreSQL's native logical
# replication between the same two servers, in the same run.
#
#   bench/replication.sh [quick]
#
# Starts one RabbitMQ node (AMQP 5731) and two PostgreSQL 15 nodes, A
# (publisher, 5861) and B (subscriber, 5862); A publishes table ev through
# evrep and table lr through CREATE PUBLICATION; B subscribes to both.
# Everything it starts is stopped on exit (also on error or ^C).
#
# Phases (full run; quick: 10k rows for throughput and bulk, 10k + 100k
# events for bloat, 5 s of lag per rate):
#   bloat       evrep.outbox size on A after 10k events through the pipeline
#               and after 1M (10-row transactions at EVREP_BENCH_BLOAT_RATE
#               rows/s, default 5000), before and after a manual VACUUM
#   throughput  100k single-row INSERT transactions, pgbench 8 clients;
#               rows/s from the start of pgbench until B has committed all
#   lag         pgbench --rate=R for 20 s, for each R in EVREP_BENCH_LAG_RATES
#               (default 1000 5000 10000 rows/s); per row B.applied_at minus
#               the origin commit timestamp on A, p50/p99/max in ms, with the
#               tps pgbench achieved (a rate the machine cannot sustain is
#               marked "saturated: achieved N tps of R", not an error) and how
#               long after the writer B had the last row
#   bulk        one INSERT ... SELECT generate_series of 100k rows
#
# While evrep is measured the native subscription is disabled, and before a
# native phase it is re-enabled and allowed to catch up (so that neither path
# pays for the other's decoding / workers). CPU of the workers and RabbitMQ
# over each phase and the wait events of the workers (sampled every 250 ms)
# are written next to the results.
#
# Output: a table on stdout; bench/results/replication{,-quick}.{md,csv}
# and bench/results/replication{,-quick}-detail.txt (EVREP_BENCH_OUTDIR
# instead of bench/results).
#
# Environment: EVREP_TEST_DIR (default /tmp/evrep-bench-repl),
#   EVREP_BENCH_BLOAT_RATE (rows/s, default 5000), EVREP_BENCH_STALL (s
#   without progress before a phase is declared stuck, default 60),
#   EVREP_BENCH_MAXWAIT (s a phase may wait for B in all, default 900),
#   EVREP_BENCH_CONF (extra postgresql.conf lines for both nodes, separated
#   by ';', e.g. "autovacuum_naptime = 1"; recorded in the results),
#   EVREP_BENCH_TAG (appended to the output file names, for such variants),
#   EVREP_BENCH_PERF=1 (perf profiles of publisher and consumer per evrep phase),
#   EVREP_BENCH_EV_APPLIED_AT=0 (B's ev without the extra applied_at column:
#   evrep lag from B's commit timestamps), EVREP_BENCH_SKIP_BLOAT=1,
#   EVREP_BENCH_LAG_RATES (rows/s of the lag phase, space-separated, default
#   "1000 5000 10000"; 1000 keeps the historical result names),
#   EVREP_BENCH_OUTDIR (where the results go, default bench/results),
#   EVREP_BENCH_ROUNDS (default 1): the throughput, lag and bulk phases run
#   this many times, evrep and native alternating on the same servers; each
#   round's evrep/native ratio (lag: p50) is reported and the median is the
#   result (this machine's noise moved one round's ratio by 0.1-0.3 and the
#   lag p50 at 1k rows/s between 2.1 and 3.4 ms).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export EVREP_TEST_DIR=${EVREP_TEST_DIR:-/tmp/evrep-bench-repl}
source test/lib/topology.sh
source bench/lib.sh

mode=${1:-full}
case "$mode" in
	full) N_THR=100000; N_BULK=100000; N_BLOAT1=10000; N_BLOAT2=1000000; LAG_SECS=20; suffix= ;;
	quick) N_THR=10000; N_BULK=10000; N_BLOAT1=10000; N_BLOAT2=100000; LAG_SECS=5; suffix=-quick ;;
	*) echo "usage: $0 [quick]" >&2; exit 2 ;;
esac
quickarg=; [[ $mode == quick ]] && quickarg=" quick"
# EVREP_BENCH_TAG names a variant run's output files (e.g. with EVREP_BENCH_CONF)
[[ -n "${EVREP_BENCH_TAG:-}" ]] && suffix+=-$EVREP_BENCH_TAG
CLIENTS=8
LAG_RATES=${EVREP_BENCH_LAG_RATES:-1000 5000 10000}
ROUNDS=${EVREP_BENCH_ROUNDS:-1}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "EVREP_BENCH_ROUNDS: '$ROUNDS' is not a positive count" >&2; exit 2; }
for r in $LAG_RATES; do
	[[ $r =~ ^[1-9][0-9]*$ ]] || { echo "EVREP_BENCH_LAG_RATES: '$r' is not a rate in rows/s" >&2; exit 2; }
done
[[ -n "${LAG_RATES// /}" ]] || { echo "EVREP_BENCH_LAG_RATES is empty" >&2; exit 2; }
# pgbench clients for the lag phase at RATE rows/s. A pgbench client is a
# closed loop: it starts its next scheduled transaction only when the last one
# has returned, so N clients deliver at most N / latency. With both servers,
# RabbitMQ and pgbench on 2 vCPUs a single-row INSERT + commit near
# saturation takes a few ms (0.7-2 ms on an idle server alone), so 8 clients
# would cap a 10k rows/s schedule at pgbench, not at the server. Budget 3 ms
# a transaction: max(8, RATE * 3 ms) clients (1000: 8, as the historical
# results; 5000: 15; 10000: 30). Clients waiting for their schedule cost
# nothing, and on the server more concurrent commits share WAL flushes
# (an idle 2-vCPU server alone did 10.9k tps with 8 clients, 12.4k with 32).
# -j stays 2: more pgbench threads than CPUs only take CPU from the servers.
lag_clients() { awk -v r="$1" -v c=$CLIENTS 'BEGIN {n = int((r * 3 + 999) / 1000); print (n > c ? n : c)}'; }
BLOAT_RATE=${EVREP_BENCH_BLOAT_RATE:-5000}
STALL=${EVREP_BENCH_STALL:-60}
MAXWAIT=${EVREP_BENCH_MAXWAIT:-900}

MQ=replmq; MQ_PORT=5731
A=repla; A_PORT=5861
B=replb; B_PORT=5862
RES=${EVREP_BENCH_OUTDIR:-$ROOT/bench/results}
mkdir -p "$RES"
OUT_MD=$RES/replication$suffix.md
OUT_CSV=$RES/replication$suffix.csv
OUT_DETAIL=$RES/replication$suffix-detail.txt

tmp=$(mktemp -d)
BENCH_TMP=$tmp
bench_traps   # BENCH_BG: the wait-event samplers and perf

# the details go to their own file (bench/lib.sh's detail logs them)
detail() { printf '%s\n' "$*" >>"$OUT_DETAIL"; }

: >"$OUT_DETAIL"
# once: the tree may get new commits while the bench runs
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || true)
detail "evrep replication bench, mode $mode, $(date -u +%FT%TZ), $(nproc) CPUs, commit $COMMIT${EVREP_BENCH_CONF:+, extra conf: $EVREP_BENCH_CONF}${EVREP_BENCH_EV_APPLIED_AT:+, EVREP_BENCH_EV_APPLIED_AT=$EVREP_BENCH_EV_APPLIED_AT}${EVREP_BENCH_SKIP_BLOAT:+, EVREP_BENCH_SKIP_BLOAT=$EVREP_BENCH_SKIP_BLOAT}, lag rates $LAG_RATES rows/s, $ROUNDS round(s) of throughput, lag and bulk"
so=$("$PG_CONFIG" --pkglibdir)/evrep.so
detail "installed evrep.so: $(md5sum <"$so" | cut -c1-12) built $(date -u -r "$so" +%FT%TZ)"

# ---------------------------------------------------------------- set-up
# EVREP_BENCH_EV_APPLIED_AT=0: B's ev has exactly the publisher's columns (no
# applied_at), so evrep lag is taken from B's commit timestamps only
EV_APPLIED_COL=", applied_at timestamptz DEFAULT clock_timestamp()"
[[ "${EVREP_BENCH_EV_APPLIED_AT:-1}" == 0 ]] && EV_APPLIED_COL=
EV_APPLIED_EXPR=b.applied_at
[[ -z "$EV_APPLIED_COL" ]] && EV_APPLIED_EXPR="pg_xact_commit_timestamp(b.xmin)"
A_SCHEMA="CREATE SEQUENCE ev_id_seq;
CREATE TABLE ev (id bigint PRIMARY KEY, payload text, created timestamptz DEFAULT clock_timestamp());
CREATE SEQUENCE lr_id_seq;
CREATE TABLE lr (id bigint PRIMARY KEY, payload text, created timestamptz DEFAULT clock_timestamp());
CREATE PUBLICATION p FOR TABLE lr;"
B_SCHEMA="CREATE TABLE ev (id bigint PRIMARY KEY, payload text, created timestamptz$EV_APPLIED_COL);
CREATE TABLE lr (id bigint PRIMARY KEY, payload text, created timestamptz, applied_at timestamptz DEFAULT clock_timestamp());
CREATE UNLOGGED TABLE bench_origin (id bigint PRIMARY KEY, commit_ts timestamptz NOT NULL);"
A_SCHEMA=${A_SCHEMA//$'\n'/ } B_SCHEMA=${B_SCHEMA//$'\n'/ }   # one line each in the description
# both nodes' settings: the bench's, then EVREP_BENCH_CONF's (';'-separated)
CONF="conf=\"shared_buffers = '256MB'\" conf=\"max_wal_size = '4GB'\"$(bench_extra_conf)"

log "starting RabbitMQ and PostgreSQL nodes (dir $EVREP_TEST_DIR)"
bench_up_ev "$A_SCHEMA" "$B_SCHEMA" "$CONF"
pg_psql $B -c "CREATE SUBSCRIPTION s CONNECTION '$(pg_connstr $A)' PUBLICATION p"

# pgbench scripts
for t in ev lr; do
	printf "INSERT INTO %s (id, payload) VALUES (nextval('%s_id_seq'), md5(random()::text));\n" $t $t >"$tmp/$t.sql"
done
printf "INSERT INTO ev (id, payload) SELECT nextval('ev_id_seq'), md5(random()::text) FROM generate_series(1, 10);\n" >"$tmp/ev10.sql"

pgbench_run() { # OUTFILE ARGS... ; prints nothing, pgbench output in OUTFILE
	# (PGB_CLIENTS: clients instead of $CLIENTS)
	local out=$1; shift
	"$PG_BINDIR/pgbench" -n -h 127.0.0.1 -p $A_PORT -U postgres -c "${PGB_CLIENTS:-$CLIENTS}" -j 2 "$@" $A >"$out" 2>&1
}
pgbench_tps() { awk '/^tps/ {printf "%.0f\n", $3; exit}' "$1"; }

seq_last() { # TABLE -> highest id handed out so far on A
	pg_psql $A -c "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ${1}_id_seq"
}
b_count() { pg_psql $B -c "SELECT count(*) FROM $1 WHERE id > $2 AND id <= $3"; }
# b_end PATH TABLE LO HI -> epoch when B had the last of ids (LO, HI]: its
# commit (evrep applies in batches; native LR stamps its commits with the
# origin's time, so applied_at)
b_end() {
	if [[ $1 == evrep ]]; then
		pg_psql $B -c "SELECT extract(epoch FROM greatest(max(pg_xact_commit_timestamp(b.xmin)), max($EV_APPLIED_EXPR))) FROM ev b WHERE id > $3 AND id <= $4"
	else
		pg_psql $B -c "SELECT extract(epoch FROM max(applied_at)) FROM $2 WHERE id > $3 AND id <= $4"
	fi
}

diagnose() {
	log "diagnostics:"
	{
		echo "--- A evrep.worker_state / status"
		pg_psql $A -c "SELECT * FROM evrep.worker_state()" -c "SELECT role, table_name, outbox_depth, last_seq, last_error FROM evrep.status"
		echo "--- B evrep.worker_state / status"
		pg_psql $B -c "SELECT * FROM evrep.worker_state()" -c "SELECT role, origin, table_name, last_seq, applied, skipped, dead_letters, lag, last_error FROM evrep.status"
		echo "--- B dead letters"
		pg_psql $B -c "SELECT id, sqlstate, error FROM evrep.dead_letter ORDER BY id DESC LIMIT 5"
		echo "--- RabbitMQ queues"
		rmq_ctl $MQ -q list_queues name messages messages_unacknowledged consumers 2>&1
		echo "--- A log (evrep lines, last 20)"
		grep -i evrep "$(pg_logfile $A)" | tail -n 20
		echo "--- B log (evrep lines, last 20)"
		grep -i evrep "$(pg_logfile $B)" | tail -n 20
	} 2>&1 | tee -a "$OUT_DETAIL" | sed 's/^/#   /' >&2
}

# wait_rows TABLE LO HI -- until B has every id in (LO, HI]; fails when the
# count does not move for $STALL seconds, or after $MAXWAIT seconds in all
# (WAIT_GOT holds the count reached).
wait_rows() {
	local t=$1 lo=$2 hi=$3 want got last=-1 since=$SECONDS start=$SECONDS
	# what A has: ids of failed transactions were taken but never stored
	want=$(pg_psql $A -c "SELECT count(*) FROM $t WHERE id > $lo AND id <= $hi")
	while :; do
		got=$(b_count "$t" "$lo" "$hi")
		WAIT_GOT=$got
		((got >= want)) && return 0
		if ((got != last)); then last=$got; since=$SECONDS; fi
		if ((SECONDS - since >= STALL)); then
			log "STUCK: B has $got of $want $t rows for ${STALL}s"
			diagnose
			return 1
		fi
		if ((SECONDS - start >= MAXWAIT)); then
			log "TOO SLOW: B has $got of $want $t rows after ${MAXWAIT}s"
			diagnose
			return 1
		fi
		sleep 0.2
	done
}

# wait_drained -- until A's outbox holds nothing unconfirmed
wait_drained() {
	local got last=-1 since=$SECONDS start=$SECONDS
	while :; do
		got=$(pg_psql $A -c "SELECT coalesce(sum(outbox_depth), 0) FROM evrep.status WHERE role = 'publish'")
		((got == 0)) && return 0
		if ((got != last)); then last=$got; since=$SECONDS; fi
		if ((SECONDS - since >= STALL)); then
			log "STUCK: outbox on A holds $got rows for ${STALL}s"
			diagnose
			return 1
		fi
		if ((SECONDS - start >= MAXWAIT)); then
			log "TOO SLOW: outbox on A still holds $got rows after ${MAXWAIT}s"
			diagnose
			return 1
		fi
		sleep 0.2
	done
}

lr_enable() {
	pg_psql $B -c "ALTER SUBSCRIPTION s ENABLE"
	local target; target=$(pg_psql $A -c "SELECT pg_current_wal_insert_lsn()")
	local t0=$SECONDS
	until [[ $(pg_psql $A -c "SELECT coalesce(confirmed_flush_lsn >= '$target', false) FROM pg_replication_slots WHERE slot_name = 's'") == t ]]; do
		if ((SECONDS - t0 > 600)); then log "native subscription did not catch up in 600s"; return 1; fi
		sleep 0.5
	done
	log "native subscription enabled, caught up in $((SECONDS - t0))s"
}
lr_disable() {
	pg_psql $B -c "ALTER SUBSCRIPTION s DISABLE"
	local t0=$SECONDS
	# the apply worker exits, then the walsender
	until [[ $(pg_psql $A -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 's'") == 0 ]]; do
		((SECONDS - t0 > 60)) && { log "walsender still running 60s after DISABLE"; return 1; }
		sleep 0.2
	done
}

checkpoint() { pg_psql $A -c CHECKPOINT; pg_psql $B -c CHECKPOINT; }

# ---- CPU accounting over a phase ----

declare -A CPU_PID CPU_T0
CPU_WALL0=; CPU_M0=
cpu_begin() { # LABEL=PID ...
	CPU_PID=(); CPU_T0=()
	local kv
	for kv in "$@"; do
		CPU_PID[${kv%%=*}]=${kv#*=}
		CPU_T0[${kv%%=*}]=$(ticks "${kv#*=}")
	done
	CPU_WALL0=$(now); CPU_M0=$(machine_ticks)
}
cpu_end() { # PHASE -> detail lines
	local wall m1 k t1 line
	wall=$(fsub "$(now)" "$CPU_WALL0"); m1=$(machine_ticks)
	line="cpu over $1 (${wall}s wall):"
	for k in "${!CPU_PID[@]}"; do
		t1=$(ticks "${CPU_PID[$k]}")
		line+=$(awk -v k="$k" -v a="${CPU_T0[$k]}" -v b="$t1" -v w="$wall" -v hz="$CLK_TCK" \
			'BEGIN {printf " %s %.0f%%;", k, (b - a) / hz / w * 100}')
	done
	line+=$(awk -v m0="$CPU_M0" -v m1="$m1" -v n="$(nproc)" 'BEGIN {
		split(m0, a, " "); split(m1, b, " ");
		printf " machine busy %.0f%% of %d CPUs", (b[1] - a[1]) / (b[2] - a[2]) * 100, n}')
	detail "$line"
	log "$line"
}

# ---- wait-event sampling (one psql per node with \watch) ----
sampler_start() { # PHASE
	local n port f types
	for n in $A $B; do
		port=$(pg_port $n)
		f=$tmp/waits.$1.$n
		if [[ $n == "$A" ]]; then types="'evrep publisher', 'walsender'"
		else types="'evrep consumer', 'logical replication worker'"; fi
		# workers by backend type, pgbench's sessions as one group; numbers
		# in the workers' activity text are folded into N
		printf "SELECT '%s', CASE WHEN application_name = 'pgbench' THEN 'pgbench sessions' ELSE backend_type END, coalesce(wait_event_type || ':' || wait_event, 'CPU (no wait event)') || CASE WHEN state = 'active' AND application_name <> 'pgbench' THEN ' [' || regexp_replace(left(query, 40), '[0-9]+', 'N', 'g') || ']' ELSE '' END FROM pg_stat_activity WHERE backend_type IN (%s) OR application_name = 'pgbench' \\watch 0.25\n" "$n" "$types" >"$tmp/watch.$n.sql"
		"$PG_BINDIR/psql" -X -q -At -F '|' -h 127.0.0.1 -p "$port" -U postgres -d $n -f "$tmp/watch.$n.sql" >"$f" 2>/dev/null &
		BENCH_BG+=($!)
	done
}
sampler_stop() { # PHASE
	local p
	for p in "${BENCH_BG[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	BENCH_BG=()
	detail "wait events during $1 (share of 250 ms samples per node/worker):"
	cat "$tmp"/waits."$1".* 2>/dev/null | awk -F'|' 'NF == 3 {c[$1 " " $2 "|" $3]++; t[$1 " " $2]++}
		END {for (k in c) {split(k, p, "|"); printf "  %-34s %5.1f%%  %s\n", p[1], 100 * c[k] / t[p[1]], p[2]}}' |
		sort -k1,3 -k4,4nr | tee -a "$OUT_DETAIL" >&2 || true
}

# ---- optional CPU profile of the evrep workers (EVREP_BENCH_PERF=1) ----
PERF_PIDS=()
perf_start() { # PHASE
	[[ "${EVREP_BENCH_PERF:-0}" == 1 ]] && command -v perf >/dev/null || return 0
	local w pid
	for w in publisher:$PUB_PID consumer:$CON_PID; do
		pid=${w#*:}
		[[ -n "$pid" ]] || continue
		perf record -q -F 499 -o "$tmp/perf.$1.${w%%:*}" -p "$pid" >/dev/null 2>&1 &
		PERF_PIDS+=($!)
		BENCH_BG+=($!)
	done
}
perf_stop() { # PHASE
	((${#PERF_PIDS[@]})) || return 0
	local p w
	for p in "${PERF_PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	local keep=() q
	for q in "${BENCH_BG[@]}"; do [[ " ${PERF_PIDS[*]} " == *" $q "* ]] || keep+=("$q"); done
	BENCH_BG=("${keep[@]}")
	PERF_PIDS=()
	for w in publisher consumer; do
		[[ -s "$tmp/perf.$1.$w" ]] || continue
		detail "perf profile of the evrep $w during $1 (top symbols, share of its samples):"
		perf report -q --stdio -i "$tmp/perf.$1.$w" --no-children --sort dso,symbol 2>/dev/null |
			grep -v '^$' | head -n 25 | sed 's/^/  /' >>"$OUT_DETAIL"
	done
}

top_snapshot() { # PHASE  (second frame of top: CPU over the last 0.5 s)
	{
		echo "top during $1:"
		top -b -n 2 -d 0.5 -w 160 | awk '/^top -/ {f++} f == 2' | head -n 20
	} >>"$OUT_DETAIL" 2>&1
}

RMQ_PID=$(cat "$(rmq_dir $MQ)/beam.pid" 2>/dev/null || true)

# Other processes on the machine (the benchmark's nodes are idle now).
bg=$(machine_busy 3)
detail "machine busy before the phases (other load; the bench's nodes idle): $bg% of $(nproc) CPUs"
log "machine busy before the phases: $bg% of $(nproc) CPUs"

# ---------------------------------------------------------------- warm-up
# (topo_up returned once the evrep workers were connected and B's queue bound)
log "waiting for the native subscription"
t0=$SECONDS
until [[ $(pg_psql $B -c "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'") == 0 ]]; do
	if ((SECONDS - t0 > 120)); then log "native subscription not ready after 120s"; exit 1; fi
	sleep 0.5
done
pg_psql $A -c "INSERT INTO ev (id, payload) VALUES (nextval('ev_id_seq'), 'warm-up')" \
	-c "INSERT INTO lr (id, payload) VALUES (nextval('lr_id_seq'), 'warm-up')"
wait_rows ev 0 1
wait_rows lr 0 1
log "warm-up rows arrived through both paths"
lr_disable

PUB_PID=$(bench_wpid $A 'evrep publisher')
CON_PID=$(bench_wpid $B 'evrep consumer')
detail "evrep publisher pid $PUB_PID (A), consumer pid $CON_PID (B), rabbitmq pid ${RMQ_PID:-?}"

declare -A R   # results

# outbox access counters on A, to see what the publisher's queries cost
ob_snap() {
	pg_psql $A -F ' ' -c "SELECT sum(seq_scan), sum(seq_tup_read), sum(coalesce(idx_scan, 0)), sum(coalesce(idx_tup_fetch, 0)), sum(pg_relation_size(relid)), sum(pg_indexes_size(relid)) FROM pg_stat_user_tables WHERE relid IN (SELECT relid FROM pg_partition_tree('evrep.outbox'))"
}
OB0=
ob_begin() { OB0=$(ob_snap); }
ob_end() { # PHASE
	sleep 1.1 # let the workers' table statistics reach the stats system
	local b; b=$(ob_snap)
	detail "$(awk -v a="$OB0" -v b="$b" -v ph="$1" 'BEGIN {split(a, x, " "); split(b, y, " ");
		printf "outbox during %s: %d seq scans reading %d tuples, %d index scans fetching %d; heap %.1f -> %.1f MB, indexes %.1f -> %.1f MB",
			ph, y[1] - x[1], y[2] - x[2], y[3] - x[3], y[4] - x[4], x[5] / 1048576, y[5] / 1048576, x[6] / 1048576, y[6] / 1048576}')"
}

# outbox size on A, summed over its partitions if it has any
OUTBOX_SIZE="(SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('evrep.outbox'))"
outbox_sizes() { # -> "total heap indexes"
	pg_psql $A -F ' ' -c "SELECT sum(pg_total_relation_size(relid)), sum(pg_relation_size(relid)), sum(pg_indexes_size(relid)) FROM pg_partition_tree('evrep.outbox')"
}
mb() { awk -v b="$1" 'BEGIN {if (b ~ /^[0-9]+$/) printf "%.2f", b / 1048576; else printf "%s", b}'; }

# ---------------------------------------------------------------- phases
# phase_begin PATH PHASE -- start watching a measured phase of PATH (evrep
# or native): the outbox (evrep), the CPU of the path's processes, wait
# events, the evrep workers' profile (EVREP_BENCH_PERF=1)
phase_begin() {
	if [[ $1 == evrep ]]; then
		ob_begin
		cpu_begin "publisher=$PUB_PID" "consumer=$CON_PID" "rabbitmq=$RMQ_PID"
	else
		cpu_begin "walsender=$(bench_wpid $A walsender)" "lr_apply=$(bench_wpid $B 'logical replication worker')"
	fi
	sampler_start "$2"
	if [[ $1 == evrep ]]; then perf_start "$2"; fi
}
# phase_end PATH PHASE LABEL -- stop it; the details name the phase LABEL
phase_end() {
	perf_stop "$2"
	sampler_stop "$2"
	cpu_end "$3"
	if [[ $1 == evrep ]]; then ob_end "$3"; fi
}

# ---------------------------------------------------------------- bloat
bloat() {
	local lo hi s1 s1t s1i s2 s2t s2i s3 s3t s3i av bpid maxdepth=0 maxsize=0 d sz t0
	log "bloat: $N_BLOAT1 single-row events through evrep"
	lo=$(seq_last ev)
	if ! pgbench_run "$tmp/bloat1.out" -t $((N_BLOAT1 / CLIENTS)) -f "$tmp/ev.sql"; then
		cat "$tmp/bloat1.out" >&2
		R[bloat_err]="first $N_BLOAT1: pgbench: $(grep -cE 'client [0-9]+ script [0-9]+ aborted' "$tmp/bloat1.out") clients aborted, first error: $(grep -m1 -o 'ERROR: .*' "$tmp/bloat1.out" | tr -d ',')"
		detail "bloat writer failed: ${R[bloat_err]}"
		log "bloat writer failed: ${R[bloat_err]}"
	fi
	hi=$(seq_last ev)
	wait_drained && wait_rows ev "$lo" "$hi" || { R[bloat_10k]=FAIL; return 1; }
	read -r s1 s1t s1i <<<"$(outbox_sizes)"
	R[bloat_10k]=$s1
	detail "outbox after $N_BLOAT1 events (drained): total $s1 B (heap $s1t, indexes $s1i)"
	log "outbox after $N_BLOAT1 events: $(mb "$s1") MB"

	log "bloat: $N_BLOAT2 events in 10-row transactions at $BLOAT_RATE rows/s"
	checkpoint
	lo=$(seq_last ev)
	phase_begin evrep bloat
	t0=$(now)
	pgbench_run "$tmp/bloat2.out" -t $((N_BLOAT2 / 10 / CLIENTS)) --rate=$((BLOAT_RATE / 10)) -f "$tmp/ev10.sql" &
	bpid=$!
	while kill -0 $bpid 2>/dev/null; do
		read -r d sz <<<"$(pg_psql $A -F ' ' -c "SELECT (SELECT coalesce(sum(outbox_depth), 0) FROM evrep.status WHERE role = 'publish'), $OUTBOX_SIZE")"
		((d > maxdepth)) && maxdepth=$d
		((sz > maxsize)) && maxsize=$sz
		sleep 2
	done
	if ! wait $bpid; then
		# a writer error aborts pgbench clients; keep measuring with the
		# events that did go through, and say so
		cat "$tmp/bloat2.out" >&2
		R[bloat_err]="${R[bloat_err]:+${R[bloat_err]}; }next $N_BLOAT2: pgbench: $(grep -cE 'client [0-9]+ script [0-9]+ aborted' "$tmp/bloat2.out") clients aborted, first error: $(grep -m1 -o 'ERROR: .*' "$tmp/bloat2.out" | tr -d ',')"
		detail "bloat writer failed: ${R[bloat_err]}"
		log "bloat writer failed: ${R[bloat_err]}"
	fi
	hi=$(seq_last ev)
	R[bloat_maxdepth]=$maxdepth
	detail "bloat writer: $(grep -E '^(tps|number of transactions actually)' "$tmp/bloat2.out" | tr '\n' ' ')"
	detail "outbox during $N_BLOAT2 events: max depth sampled $maxdepth rows, max size sampled $maxsize B; writer done after $(fsub "$(now)" "$t0")s"
	if ! wait_drained; then
		sampler_stop bloat
		R[bloat_1m]="FAIL: not drained"
		return 1
	fi
	detail "outbox drained $(fsub "$(now)" "$t0")s after the start of the writer"
	phase_end evrep bloat bloat
	read -r s2 s2t s2i <<<"$(outbox_sizes)"
	av=$(pg_psql $A -F ' ' -c "SELECT sum(autovacuum_count), sum(autoanalyze_count), sum(n_dead_tup), sum(n_live_tup) FROM pg_stat_user_tables WHERE relid IN (SELECT relid FROM pg_partition_tree('evrep.outbox'))")
	pg_psql $A -c "VACUUM evrep.outbox"
	read -r s3 s3t s3i <<<"$(outbox_sizes)"
	R[bloat_1m]=$s2; R[bloat_1m_vac]=$s3; R[bloat_events]=$((hi - lo))
	detail "outbox after $N_BLOAT2 more events (drained): total $s2 B (heap $s2t, indexes $s2i); autovacuum_count, autoanalyze_count, n_dead_tup, n_live_tup: $av"
	detail "outbox after manual VACUUM: total $s3 B (heap $s3t, indexes $s3i)"
	log "outbox after $N_BLOAT2 events: $(mb "$s2") MB, after VACUUM $(mb "$s3") MB (max depth $maxdepth)"
	wait_rows ev "$lo" "$hi"
}
if [[ "${EVREP_BENCH_SKIP_BLOAT:-0}" == 1 ]]; then
	detail "bloat phase skipped (EVREP_BENCH_SKIP_BLOAT=1)"
else
	bloat || true
fi

# ---------------------------------------------------------------- throughput
throughput() { # PATH(evrep|native) TABLE
	local path=$1 t=$2 lo hi t0 end secs wal0
	checkpoint
	lo=$(seq_last "$t")
	wal0=$(pg_psql $A -c "SELECT pg_current_wal_insert_lsn()")
	phase_begin "$path" "thr-$path"
	t0=$(now)
	(sleep 5; top_snapshot "throughput $path") &
	local tpid=$!
	if ! pgbench_run "$tmp/thr-$path.out" -t $((N_THR / CLIENTS)) -f "$tmp/$t.sql"; then
		cat "$tmp/thr-$path.out" >&2
		sampler_stop "thr-$path"
		R[thr_$path]="FAIL: pgbench $(grep -m1 -o 'ERROR: .*' "$tmp/thr-$path.out" | tr -d ',')"
		detail "throughput $path: ${R[thr_$path]}; $(grep -E '^number of transactions actually' "$tmp/thr-$path.out")"
		return 1
	fi
	local wend; wend=$(now)
	hi=$(seq_last "$t")
	if ! wait_rows "$t" "$lo" "$hi"; then
		sampler_stop "thr-$path"
		R[thr_$path]="FAIL: $WAIT_GOT of $((hi - lo)) rows after $(fsub "$(now)" "$t0")s"
		return 1
	fi
	wait $tpid 2>/dev/null || true
	phase_end "$path" "thr-$path" "throughput $path"
	# WAL on A per event: capture, numbering and confirm (evrep) or the rows
	# alone (native), until nothing is left to send
	[[ $path == evrep ]] && wait_drained
	R[thr_wal_$path]=$(pg_psql $A -c "SELECT round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$wal0') / $WAIT_GOT)")
	end=$(b_end "$path" "$t" "$lo" "$hi")
	secs=$(fsub "$end" "$t0")
	R[thr_$path]=$(awk -v n="$WAIT_GOT" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')
	R[thr_writer_$path]=$(pgbench_tps "$tmp/thr-$path.out")
	R[thr_drain_$path]=$(fsub "$end" "$wend")
	detail "throughput $path: $WAIT_GOT rows, ${R[thr_wal_$path]} bytes of WAL on A per row, end-to-end ${secs}s = ${R[thr_$path]} rows/s; writer alone $(fsub "$wend" "$t0")s (pgbench ${R[thr_writer_$path]} tps); B finished ${R[thr_drain_$path]}s after the writer"
	log "throughput $path: ${R[thr_$path]} rows/s end to end (writer ${R[thr_writer_$path]} tps, tail ${R[thr_drain_$path]}s)"
}

# ---------------------------------------------------------------- lag
# lag_stats PATH TABLE LO HI -- copy A's commit timestamps into B, then
# percentiles of applied_at - commit_ts (and, for evrep, of B's commit time,
# i.e. when the row became visible on B).
lag_stats() {
	local path=$1 t=$2 lo=$3 hi=$4
	pg_psql $B -c "TRUNCATE bench_origin"
	pg_psql $A -c "COPY (SELECT id, pg_xact_commit_timestamp(xmin) FROM $t WHERE id > $lo AND id <= $hi) TO STDOUT" |
		pg_psql $B -c "COPY bench_origin FROM STDIN"
	local vis="NULL::float8" applied=b.applied_at
	[[ $path == evrep ]] && applied=$EV_APPLIED_EXPR
	[[ $path == evrep ]] && vis="extract(epoch FROM pg_xact_commit_timestamp(b.xmin) - o.commit_ts) * 1000"
	pg_psql $B -F ' ' <<SQL
SELECT count(*),
	round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag)::numeric, 2),
	round(percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)::numeric, 2),
	round(max(lag)::numeric, 2),
	coalesce(round(percentile_cont(0.5) WITHIN GROUP (ORDER BY vis)::numeric, 2)::text, '-'),
	coalesce(round(percentile_cont(0.99) WITHIN GROUP (ORDER BY vis)::numeric, 2)::text, '-')
FROM (SELECT extract(epoch FROM $applied - o.commit_ts) * 1000 AS lag, $vis AS vis
	  FROM $t b JOIN bench_origin o USING (id)) s;
SQL
}

# lag PATH TABLE RATE -- results under R[lag50_PATH_RATE] etc.
lag() {
	local path=$1 t=$2 rate=$3 lo hi n p50 p99 mx v50 v99 wend tps clients ph k
	k=${path}_$rate ph=lag-$path-$rate
	unset "R[lagsat_$k]" # from an earlier round
	clients=$(lag_clients "$rate")
	checkpoint
	lo=$(seq_last "$t")
	phase_begin "$path" "$ph"
	if ! PGB_CLIENTS=$clients pgbench_run "$tmp/$ph.out" -T $LAG_SECS --rate=$rate -f "$tmp/$t.sql"; then
		cat "$tmp/$ph.out" >&2
		perf_stop "$ph"
		sampler_stop "$ph"
		R[lag50_$k]="FAIL: pgbench $(grep -m1 -o 'ERROR: .*' "$tmp/$ph.out" | tr -d ',')"
		detail "lag $path at $rate rows/s: ${R[lag50_$k]}"
		return 1
	fi
	wend=$(now)
	hi=$(seq_last "$t")
	# the tps pgbench achieved; below 95% of the schedule (a Poisson schedule
	# of 5 s at 1000/s varies by ~1.4%) A could not take the rate
	tps=$(pgbench_tps "$tmp/$ph.out")
	R[lagtps_$k]=${tps:-n/a}
	if [[ -n "$tps" ]] && ((tps * 100 < rate * 95)); then
		R[lagsat_$k]="saturated: achieved $tps tps of $rate"
	fi
	if ! wait_rows "$t" "$lo" "$hi"; then
		perf_stop "$ph"
		sampler_stop "$ph"
		R[lag50_$k]="FAIL: $WAIT_GOT of $((hi - lo)) rows arrived $(fsub "$(now)" "$wend")s after the writer"
		detail "lag $path at $rate rows/s: ${R[lag50_$k]} (writer: pgbench $clients clients, ${tps:-?} tps${R[lagsat_$k]:+, ${R[lagsat_$k]}})"
		return 1
	fi
	phase_end "$path" "$ph" "lag $path at $rate rows/s"
	R[lagtail_$k]=$(fsub "$(b_end "$path" "$t" "$lo" "$hi")" "$wend")
	read -r n p50 p99 mx v50 v99 <<<"$(lag_stats "$path" "$t" "$lo" "$hi")"
	R[lag50_$k]=$p50; R[lag99_$k]=$p99; R[lagmax_$k]=$mx
	R[vis50_$k]=$v50; R[vis99_$k]=$v99
	detail "lag $path at $rate rows/s: $n rows, pgbench $clients clients at ${tps:-?} tps${R[lagsat_$k]:+ (${R[lagsat_$k]})}; applied_at - origin commit: p50 $p50 ms, p99 $p99 ms, max $mx ms; B commit - origin commit: p50 $v50 ms, p99 $v99 ms; B had the last row ${R[lagtail_$k]}s after the writer"
	detail "  pgbench: $(grep -E '^(latency average|rate limit schedule lag)' "$tmp/$ph.out" | tr '\n' ' ')"
	log "lag $path at $rate rows/s: p50 $p50 ms, p99 $p99 ms, max $mx ms (visible on B: p50 $v50, p99 $v99); writer ${tps:-?} tps${R[lagsat_$k]:+ (${R[lagsat_$k]})}, tail ${R[lagtail_$k]}s"
}

# lag_rates PATH TABLE -- lag at each of $LAG_RATES, in order; after a rate
# that failed (rows still in flight) the higher ones are skipped, not measured
# on top of its backlog
lag_rates() {
	local path=$1 t=$2 r failed=
	for r in $LAG_RATES; do
		if [[ -n "$failed" ]]; then
			R[lag50_${path}_$r]="skipped: failed at $failed rows/s"
			detail "lag $path at $r rows/s: ${R[lag50_${path}_$r]}"
			continue
		fi
		lag "$path" "$t" "$r" || failed=$r
	done
}

# ---------------------------------------------------------------- bulk
bulk() { # PATH TABLE
	local path=$1 t=$2 lo hi t0 end secs acommit
	checkpoint
	lo=$(seq_last "$t")
	phase_begin "$path" "bulk-$path"
	t0=$(now)
	if ! pg_psql $A -c "INSERT INTO $t (id, payload) SELECT nextval('${t}_id_seq'), md5(g::text) FROM generate_series(1, $N_BULK) g"; then
		sampler_stop "bulk-$path"
		R[bulk_$path]="FAIL: INSERT on A failed"
		return 1
	fi
	hi=$(seq_last "$t")
	if ! wait_rows "$t" "$lo" "$hi"; then
		sampler_stop "bulk-$path"
		secs=$(fsub "$(now)" "$t0")
		R[bulk_$path]="FAIL: $WAIT_GOT of $((hi - lo)) rows after ${secs}s"
		detail "bulk $path: ${R[bulk_$path]} (at most $(awk -v n="$WAIT_GOT" -v s="$secs" 'BEGIN {printf "%.0f", n / s}') rows/s)"
		return 1
	fi
	phase_end "$path" "bulk-$path" "bulk $path"
	end=$(b_end "$path" "$t" "$lo" "$hi")
	acommit=$(pg_psql $A -c "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM $t WHERE id = $hi")
	secs=$(fsub "$end" "$t0")
	R[bulk_$path]=$(awk -v n="$WAIT_GOT" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')
	R[bulk_acommit_$path]=$(fsub "$acommit" "$t0")
	detail "bulk $path: $WAIT_GOT rows in one transaction; INSERT committed on A after $(fsub "$acommit" "$t0")s, B had all after ${secs}s = ${R[bulk_$path]} rows/s"
	log "bulk $path: ${R[bulk_$path]} rows/s end to end (A commit after $(fsub "$acommit" "$t0")s)"
}

# rounds_note KEY -- after a phase's round: its evrep/native ratio is added
# to R[KEY_rounds]
rounds_note() {
	R[$1_rounds]+="${R[$1_rounds]:+ }$(fdiv "$(g "$1_evrep")" "$(g "$1_native")" 3)"
}
# median LIST -- of the numbers in the space-separated LIST (a failed
# round's text is left out; of two middle values, their mean; n/a if none)
median() {
	tr ' ' '\n' <<<"$1" | { grep -E '^[0-9.]+$' || true; } | sort -g |
		awk '{v[NR] = $1} END {m = int((NR + 1) / 2); if (NR == 0) print "n/a"; else if (NR % 2) print v[m]; else printf "%.3f\n", (v[m] + v[m + 1]) / 2}'
}
# rounds_result KEY -- the median of the rounds' ratios in R[KEY_ratio]
rounds_result() { R[$1_ratio]=$(median "${R[$1_rounds]}"); }
# lag_rounds_note -- after a lag round: each rate's figures are added to
# R[lag50_PATH_RATE_rounds] etc.
LAG_KEYS="lag50 lag99 lagmax vis50 vis99"
lag_rounds_note() {
	local r p m v
	for r in $LAG_RATES; do
		for p in evrep native; do
			for m in $LAG_KEYS; do
				v=$(g "${m}_${p}_$r")
				R[${m}_${p}_${r}_rounds]+="${R[${m}_${p}_${r}_rounds]:+ }${v// /_}"
			done
		done
	done
}
# lag_rounds_result -- each rate's figures become the medians of the rounds
lag_rounds_result() {
	local r p m
	((ROUNDS > 1)) || return 0
	for r in $LAG_RATES; do
		for p in evrep native; do
			for m in $LAG_KEYS; do
				R[${m}_${p}_$r]=$(median "${R[${m}_${p}_${r}_rounds]}")
			done
		done
	done
}

log "throughput: $N_THR single-row transactions, $CLIENTS clients, $ROUNDS round(s)"
for ((round = 1; round <= ROUNDS; round++)); do
	throughput evrep ev || true
	lr_enable
	throughput native lr || true
	lr_disable
	rounds_note thr
	R[thr_wal_rounds]+="${R[thr_wal_rounds]:+ }$(fdiv "$(g thr_wal_evrep)" "$(g thr_wal_native)" 3)"
done
rounds_result thr
R[thr_wal_ratio]=$(median "${R[thr_wal_rounds]}")

log "lag: --rate=$LAG_RATES (rows/s) for ${LAG_SECS}s each, $ROUNDS round(s)"
for ((round = 1; round <= ROUNDS; round++)); do
	lag_rates evrep ev
	lr_enable
	lag_rates native lr
	lr_disable
	lag_rounds_note
done
lag_rounds_result

log "bulk: one INSERT of $N_BULK rows, $ROUNDS round(s)"
for ((round = 1; round <= ROUNDS; round++)); do
	((round > 1)) && lr_disable
	bulk evrep ev || true
	lr_enable
	bulk native lr || true
	rounds_note bulk
	# the capture's cost: A's commit time without the trigger / with it
	R[bulk_acommit_rounds]+="${R[bulk_acommit_rounds]:+ }$(fdiv "$(g bulk_acommit_native)" "$(g bulk_acommit_evrep)" 3)"
done
rounds_result bulk
R[bulk_acommit_ratio]=$(median "${R[bulk_acommit_rounds]}")

# ---------------------------------------------------------------- report
bratio=$(fdiv "$(g bloat_1m)" "$(g bloat_10k)" 3)
bratio_v=$(fdiv "$(g bloat_1m_vac)" "$(g bloat_10k)" 3)
# the writer's tps in the lag phase at RATE, or the saturation mark
lag_writer() { # PATH RATE
	printf '%s' "${R[lagsat_$1_$2]:-$(g "lagtps_$1_$2")}"
}
# the goals (issue 12) are stated at 1000 rows/s; 1000 keeps the names the
# results had when it was the only rate (visible_lag_* without a rate)
lag_csv() { # RATE
	local r=$1 g50='' g99='' vis=_at_${1}_per_s
	if [[ $r == 1000 ]]; then g50="evrep<=3" g99="evrep<=15" vis=; fi
	echo "lag_p50_ms_at_${r}_per_s,$(g "lag50_evrep_$r"),$(g "lag50_native_$r"),$(fdiv "$(g "lag50_evrep_$r")" "$(g "lag50_native_$r")" 3),$g50"
	echo "lag_p99_ms_at_${r}_per_s,$(g "lag99_evrep_$r"),$(g "lag99_native_$r"),$(fdiv "$(g "lag99_evrep_$r")" "$(g "lag99_native_$r")" 3),$g99"
	echo "lag_max_ms_at_${r}_per_s,$(g "lagmax_evrep_$r"),$(g "lagmax_native_$r"),,"
	echo "visible_lag_p50_ms_B_commit$vis,$(g "vis50_evrep_$r"),,,"
	echo "visible_lag_p99_ms_B_commit$vis,$(g "vis99_evrep_$r"),,,"
	echo "lag_writer_tps_at_${r}_per_s,$(lag_writer evrep "$r"),$(lag_writer native "$r"),,"
	echo "lag_tail_after_writer_s_at_${r}_per_s,$(g "lagtail_evrep_$r"),$(g "lagtail_native_$r"),,"
}
lag_md() { # RATE
	local r=$1 g50='' g99=''
	if [[ $r == 1000 ]]; then g50="≤ 3" g99="≤ 15"; fi
	echo "| lag p50 at $r rows/s (ms, applied_at − origin commit) | $(g "lag50_evrep_$r") | $(g "lag50_native_$r") | | $g50 |"
	((ROUNDS > 1)) && echo "| … p50 in each round | ${R[lag50_evrep_${r}_rounds]:-} | ${R[lag50_native_${r}_rounds]:-} | | |"
	echo "| lag p99 at $r rows/s (ms) | $(g "lag99_evrep_$r") | $(g "lag99_native_$r") | | $g99 |"
	echo "| lag max at $r rows/s (ms) | $(g "lagmax_evrep_$r") | $(g "lagmax_native_$r") | | |"
	echo "| visible on B p50 / p99 at $r rows/s (ms, B commit − origin commit) | $(g "vis50_evrep_$r") / $(g "vis99_evrep_$r") | (LR stamps origin time) | | |"
	echo "| writer tps on A at $r rows/s (pgbench $(lag_clients "$r") clients) | $(lag_writer evrep "$r") | $(lag_writer native "$r") | | |"
	echo "| B had the last row this long after the writer (s) | $(g "lagtail_evrep_$r") | $(g "lagtail_native_$r") | | |"
}
{
	echo "metric,evrep,native,evrep/native,goal"
	echo "throughput_rows_per_s_${N_THR}_1row_txns,$(g thr_evrep),$(g thr_native),$(g thr_ratio),ratio>=1.0"
	echo "throughput_ratio_per_round,${R[thr_rounds]// /;},,,"
	echo "wal_bytes_per_event_on_A,$(g thr_wal_evrep),$(g thr_wal_native),$(g thr_wal_ratio),ratio<=1.5"
	echo "throughput_writer_tps,$(g thr_writer_evrep),$(g thr_writer_native),$(fdiv "$(g thr_writer_evrep)" "$(g thr_writer_native)" 3),"
	echo "throughput_tail_after_writer_s,$(g thr_drain_evrep),$(g thr_drain_native),,"
	for r in $LAG_RATES; do lag_csv "$r"; done
	echo "bulk_rows_per_s_${N_BULK}_rows_1_txn,$(g bulk_evrep),$(g bulk_native),$(g bulk_ratio),"
	echo "bulk_ratio_per_round,${R[bulk_rounds]// /;},,,"
	echo "bulk_a_commit_s,$(g bulk_acommit_evrep),$(g bulk_acommit_native),$(g bulk_acommit_ratio) (without/with capture),ratio>=0.8"
	echo "outbox_bytes_after_${N_BLOAT1}_events,$(g bloat_10k),,,"
	echo "outbox_bytes_after_${N_BLOAT2}_more_events,$(g bloat_1m),,$bratio (vs ${N_BLOAT1}),ratio<=2"
	echo "bloat_events_actually_written,$(g bloat_events),,,"
	[[ -n "${R[bloat_err]:-}" ]] && echo "bloat_writer_error,${R[bloat_err]},,,"
	echo "outbox_bytes_after_manual_vacuum,$(g bloat_1m_vac),,$bratio_v (vs ${N_BLOAT1}),"
	echo "outbox_max_depth_during_bloat_run,$(g bloat_maxdepth),,,"
} >"$OUT_CSV"

{
	echo "# evrep vs native logical replication ($mode run)"
	echo
	echo "\`${EVREP_BENCH_ROUNDS:+EVREP_BENCH_ROUNDS=$EVREP_BENCH_ROUNDS }${EVREP_BENCH_PERF:+EVREP_BENCH_PERF=$EVREP_BENCH_PERF }${EVREP_BENCH_CONF:+EVREP_BENCH_CONF=\"$EVREP_BENCH_CONF\" }${EVREP_BENCH_LAG_RATES:+EVREP_BENCH_LAG_RATES=\"$EVREP_BENCH_LAG_RATES\" }bench/replication.sh${quickarg}\` on $(date -u +%F), $(nproc) vCPUs, commit $COMMIT;"
	if ((ROUNDS > 1)); then
		echo "one RabbitMQ node and two PostgreSQL 15 nodes on one machine; throughput, lag and bulk in $ROUNDS rounds,"
		echo "evrep and native alternating: rows/s of the last round, ratio = median of the rounds' ratios, lag figures = medians of the rounds'."
	else
		echo "one RabbitMQ node and two PostgreSQL 15 nodes on one machine; ratios from this one run."
	fi
	echo
	echo "| metric | evrep | native LR | evrep/native | goal |"
	echo "|---|---|---|---|---|"
	echo "| end-to-end rows/s, $N_THR single-row txns, $CLIENTS clients | $(g thr_evrep) | $(g thr_native) | $(g thr_ratio) | ≥ 1.0 |"
	((ROUNDS > 1)) && echo "| … evrep/native in each round | | | ${R[thr_rounds]} | |"
	echo "| WAL on A per event, bytes (until nothing is left to send) | $(g thr_wal_evrep) | $(g thr_wal_native) | $(g thr_wal_ratio) | ≤ 1.5 |"
	((ROUNDS > 1)) && echo "| … evrep/native in each round | | | ${R[thr_wal_rounds]} | |"
	echo "| writer tps on A during that run | $(g thr_writer_evrep) | $(g thr_writer_native) | | |"
	echo "| B finished this long after the writer (s) | $(g thr_drain_evrep) | $(g thr_drain_native) | | |"
	for r in $LAG_RATES; do lag_md "$r"; done
	echo "| bulk: one INSERT of $N_BULK rows, rows/s end to end | $(g bulk_evrep) | $(g bulk_native) | $(g bulk_ratio) | |"
	((ROUNDS > 1)) && echo "| … evrep/native in each round | | | ${R[bulk_rounds]} | |"
	echo "| bulk: A's commit of that INSERT, s (without capture / with it) | $(g bulk_acommit_evrep) | $(g bulk_acommit_native) | $(g bulk_acommit_ratio) | ≥ 0.8 |"
	((ROUNDS > 1)) && echo "| … in each round | | | ${R[bulk_acommit_rounds]} | |"
	echo "| outbox size after $N_BLOAT1 events (MB) | $(mb "$(g bloat_10k)") | | | |"
	echo "| outbox size after $N_BLOAT2 more events (MB) | $(mb "$(g bloat_1m)") | | $bratio× | ≤ 2× |"
	echo "| … after a manual VACUUM (MB) | $(mb "$(g bloat_1m_vac)") | | $bratio_v× | |"
	echo "| outbox max depth during that run (rows) | $(g bloat_maxdepth) | | | |"
	echo "| events written in that run | $(g bloat_events) | | | |"
	[[ -n "${R[bloat_err]:-}" ]] && echo "| writer errors in that run | ${R[bloat_err]} | | | |"
	echo
	echo "Details (CPU per worker over each phase, wait events, top):"
	echo
	echo '```'
	cat "$OUT_DETAIL"
	echo '```'
} >"$OUT_MD"

echo
column -t -s, "$OUT_CSV"
echo
echo "written: $OUT_MD $OUT_CSV $OUT_DETAIL"
