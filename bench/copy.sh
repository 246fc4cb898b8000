#!/usr/bin/env bash
# Initial copy of a table to a new subscriber (issue 9, "snapshot on
# subscribe"): evrep's copy (evrep_subscribe with copy_data, the origin sends
# the table in primary-key chunks through RabbitMQ) against the initial copy of
# PostgreSQL's native logical replication (CREATE SUBSCRIPTION ... WITH
# (copy_data = true)), between the same two servers in the same run, while
# writers run on the origin.
#
#   bench/copy.sh [N [ROUNDS]]    N rows in the table (default 1000000),
#                                 ROUNDS alternating rounds (default 3)
#
# Servers (test/lib/topology.sh): one RabbitMQ node (AMQP 5991), PostgreSQL A
# (the origin, 5992) and B (the subscriber, 5993). A's database holds
# customer (id int PRIMARY KEY, name text, email text, credit int, created
# timestamptz; about 100 bytes a row), loaded with N rows before
# evrep_publish('customer') and CREATE PUBLICATION copy_pub FOR TABLE
# customer. B's server has two databases with an empty customer table each:
# cpb (evrep: SELECT evrep_subscribe('customer'), which copies) and cpb_native
# (native: CREATE SUBSCRIPTION copy_sub ... PUBLICATION copy_pub WITH
# (copy_data = true)). Nothing is subscribed outside a copy.
#
# Each round runs, in order (odd rounds evrep first, even rounds native
# first): baseline, copy by one path, baseline, copy by the other path. (A
# baseline before every copy: a copy right after another one ran slower.)
#   writers   pgbench on A at EVREP_BENCH_WRITER_RATE (1000) transactions/s,
#             4 clients, half one-row INSERTs of new ids, half one-row
#             UPDATEs of a random existing id; started 2 s before the copy,
#             stopped after it; per-transaction latency log (-l)
#   copy      t0 just before the subscribing statement; evrep: until
#             evrep.sync_status (role 'receive') says phase 'done' and B has
#             every row that A had at t0; native: until pg_subscription_rel
#             says srsubstate 'r' (ready) and B has every such row; rows/s =
#             rows on A at t0 / seconds; polled every 0.1 s
#   baseline  the same writers for EVREP_BENCH_BASELINE_SECS (20) s with no
#             copy and nothing subscribed
#   writer latency p50/p99 of the transactions that ended inside the copy
#             (or the baseline) window, each from its start to its commit
#             (pgbench's per-transaction time less its schedule lag), in ms;
#             also the achieved rate and the p99 from the scheduled start
#   check     after each copy the writers stop and B must reach A's rows
#             exactly (count and a hash of every row) within
#             EVREP_BENCH_CATCHUP (120) s; dead letters on B are counted;
#             then evrep_unsubscribe + TRUNCATE, or DROP SUBSCRIPTION +
#             TRUNCATE, so that the next round copies to an empty table
# Before each copy: VACUUM (ANALYZE) of A's table and a CHECKPOINT on both.
# Machine load: load average and other benches/test suites at the start and
# end, machine busy (3 s, everything idle) before the rounds, machine busy and
# the evrep workers' / RabbitMQ's CPU over each copy.
#
# Output: a table on stdout; bench/results/copy.{md,csv}.
# Everything it starts is stopped on exit (also on error or ^C).
#
# Environment: EVREP_TEST_DIR (default /tmp/evrep-bench-copy),
#   EVREP_BENCH_WRITER_RATE (transactions/s, 0 = no writers),
#   EVREP_BENCH_BASELINE_SECS, EVREP_BENCH_CATCHUP,
#   EVREP_BENCH_STALL (s without progress before a copy is declared stuck,
#   default 60), EVREP_BENCH_MAXWAIT (s a copy may take in all, default 900),
#   EVREP_BENCH_CHUNK (evrep.copy_chunk_rows on both nodes; default: evrep's),
#   EVREP_BENCH_COPY_RATE (evrep.copy_rate_limit, rows/s; default: none),
#   EVREP_BENCH_PATHS ("evrep native" by default; "native" alone runs with
#   an evrep that has no copy yet), EVREP_BENCH_OUT (output name, default copy).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export EVREP_TEST_DIR=${EVREP_TEST_DIR:-/tmp/evrep-bench-copy}
source test/lib/topology.sh
source bench/lib.sh

CMD="$(env | grep -E '^EVREP_(BENCH_[A-Z_]+|TEST_DIR)=' | sort | tr '\n' ' ')bench/copy.sh${1:+ $1}${2:+ $2}"
N=${1:-1000000}
ROUNDS=${2:-3}
[[ "$N" =~ ^[0-9]+$ ]] && ((N >= 1000)) && [[ "$ROUNDS" =~ ^[0-9]+$ ]] && ((ROUNDS >= 1)) \
	|| { echo "usage: $0 [N [ROUNDS]]  (N >= 1000 rows, ROUNDS >= 1)" >&2; exit 2; }
RATE=${EVREP_BENCH_WRITER_RATE:-1000}
WCLIENTS=4
BASE_SECS=${EVREP_BENCH_BASELINE_SECS:-20}
CATCHUP=${EVREP_BENCH_CATCHUP:-120}
STALL=${EVREP_BENCH_STALL:-60}
MAXWAIT=${EVREP_BENCH_MAXWAIT:-900}
PATHS=${EVREP_BENCH_PATHS:-evrep native}
OUTNAME=${EVREP_BENCH_OUT:-copy}

MQ=cpmq MQ_PORT=5991
A=cpa A_PORT=5992
B=cpb B_PORT=5993
BN=cpb_native   # the native subscription's database on B's server
TBL=customer

RES=$ROOT/bench/results
mkdir -p "$RES"
OUT_CSV=$RES/$OUTNAME.csv
OUT_MD=$RES/$OUTNAME.md

tmp=$(mktemp -d)
BENCH_TMP=$tmp
WRITER_PID=
bench_traps

has_path() { [[ " $PATHS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- the machine
LOAD0=$(loadavg)
OTHERS0=$(others)
LAST_OTHERS=$OTHERS0   # note_others
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
so=$("$PG_CONFIG" --pkglibdir)/evrep.so
SO="$(md5sum <"$so" | cut -c1-12), built $(date -u -r "$so" +%FT%TZ)"
log "load average $LOAD0; also running: $OTHERS0"

# ---------------------------------------------------------------- set-up
COLS="id int PRIMARY KEY, name text, email text, credit int, created timestamptz"
SCHEMA="CREATE TABLE $TBL ($COLS);"
CONF="conf=\"shared_buffers = '256MB'\" conf=\"max_wal_size = '4GB'\" conf=\"max_worker_processes = 16\""
[[ -n "${EVREP_BENCH_CHUNK:-}" ]] && CONF+=" conf=\"evrep.copy_chunk_rows = $EVREP_BENCH_CHUNK\""
[[ -n "${EVREP_BENCH_COPY_RATE:-}" ]] && CONF+=" conf=\"evrep.copy_rate_limit = $EVREP_BENCH_COPY_RATE\""

log "starting RabbitMQ and PostgreSQL nodes (dir $EVREP_TEST_DIR)"
topo_up <<EOF || { log "the nodes did not come up"; exit 1; }
broker $MQ port=$MQ_PORT
node $A port=$A_PORT schema="$SCHEMA" $CONF
node $B port=$B_PORT schema="$SCHEMA" extra_db="$BN:$SCHEMA" $CONF
EOF
qn() { PGOPTIONS="-c client_min_messages=warning" pg_psql "$B" -d "$BN" -c "$*"; }   # B's server, the native database

if has_path evrep && [[ $(q "$B" "SELECT to_regclass('evrep.sync_status') IS NOT NULL") != t ]]; then
	log "the installed evrep has no evrep.sync_status (no snapshot on subscribe yet); EVREP_BENCH_PATHS=native runs the native half"
	exit 2
fi

log "loading $N rows into A's $TBL"
t0=$(now)
q "$A" "INSERT INTO $TBL SELECT g, 'Customer ' || g || ' ' || md5(g::text), 'customer' || g || '@example.com', ((g::bigint * 7919) % 10000)::int, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' FROM generate_series(1, $N) g"
q "$A" "VACUUM (ANALYZE) $TBL"
q "$A" "CREATE SEQUENCE ${TBL}_id_seq START $((N + 1))"
q "$A" "CREATE PUBLICATION copy_pub FOR TABLE $TBL"
q "$A" "SELECT evrep_publish('$TBL')"
ROWB=$(q "$A" "SELECT round(avg(pg_column_size(c.*))) FROM (SELECT * FROM $TBL TABLESAMPLE SYSTEM (1)) c")
TBL_MB=$(q "$A" "SELECT round(pg_total_relation_size('$TBL') / 1048576.0)")
# A's consumer takes copy requests for the table once it has bound its key
if has_path evrep; then
	t=$SECONDS
	until topo_bound "$A" "copy.$(topo_routing_key "$TBL")"; do
		((SECONDS - t >= 60)) && { log "A's consumer did not log binding copy.$(topo_routing_key "$TBL") in 60 s; going on"; break; }
		sleep 0.2
	done
	log "A's consumer bound copy.$(topo_routing_key "$TBL") $((SECONDS - t)) s after evrep_publish"
fi
detail "A's $TBL: $N rows loaded in $(fsub "$(now)" "$t0") s; about $ROWB bytes a row (pg_column_size of the row), $TBL_MB MB with its index"
CHUNK=$(q "$A" "SELECT coalesce(current_setting('evrep.copy_chunk_rows', true), 'n/a')")

# the writers' scripts
printf "INSERT INTO %s (id, name, email, credit, created) VALUES (nextval('%s_id_seq'), 'New ' || md5(random()::text), 'new' || md5(random()::text) || '@example.com', 0, now());\n" $TBL $TBL >"$tmp/ins.sql"
printf '\\set id random(1, %d)\nUPDATE %s SET credit = credit + 1 WHERE id = :id;\n' "$N" $TBL >"$tmp/upd.sql"

diagnose() {
	{
		echo "--- $A evrep"
		pg_psql "$A" -c "SELECT * FROM evrep.worker_state()" -c "SELECT role, table_name, outbox_depth, last_seq, last_error FROM evrep.status" \
			-c "SELECT * FROM evrep.sync_status" -c "SELECT id, sqlstate, left(error, 200) FROM evrep.dead_letter ORDER BY id DESC LIMIT 3" 2>&1
		echo "--- $B evrep"
		pg_psql "$B" -c "SELECT * FROM evrep.worker_state()" \
			-c "SELECT role, origin, table_name, last_seq, applied, skipped, dead_letters, lag, last_error FROM evrep.status" \
			-c "SELECT * FROM evrep.sync_status" -c "SELECT id, sqlstate, left(error, 200) FROM evrep.dead_letter ORDER BY id DESC LIMIT 5" 2>&1
		echo "--- $BN"; pg_psql "$B" -d "$BN" -c "SELECT srsubstate, srsublsn FROM pg_subscription_rel" -c "SELECT * FROM pg_stat_subscription" 2>&1
		echo "--- queues"; rmq_ctl "$MQ" -q list_queues name messages messages_unacknowledged consumers 2>&1
		echo "--- evrep lines of the logs"; grep -hi -e evrep -e 'logical replication' "$(pg_logfile "$A")" "$(pg_logfile "$B")" | tail -n 20
	} | sed 's/^/#   /' >&2
}

checkpoint() { q "$A" CHECKPOINT; q "$B" CHECKPOINT; }

# ---- writers ----
writer_start() { # TAG -- pgbench on A in the background; returns once its clients have run 2 s
	[[ "$RATE" -gt 0 ]] || return 0
	"$PG_BINDIR/pgbench" -n -h 127.0.0.1 -p $A_PORT -U postgres -c $WCLIENTS -j 2 -R "$RATE" -T $((MAXWAIT + CATCHUP + 600)) \
		-l --log-prefix="$tmp/wlog-$1" -f "$tmp/ins.sql@1" -f "$tmp/upd.sql@1" "$(pg_dbname "$A")" >"$tmp/wout-$1" 2>&1 &
	WRITER_PID=$!
	BENCH_BG=("$WRITER_PID")   # stopped on exit
	local t=$SECONDS
	until [[ $(q "$A" "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'") -ge $WCLIENTS ]]; do
		((SECONDS - t > 30)) && { log "writers did not connect"; cat "$tmp/wout-$1" >&2; return 1; }
		kill -0 "$WRITER_PID" 2>/dev/null || { log "writers exited"; cat "$tmp/wout-$1" >&2; return 1; }
		sleep 0.1
	done
	sleep 2
}
# Stop pgbench by terminating its sessions: its clients abort, it then exits
# on its own and closes its logs (a signal would lose their buffered tail).
writer_stop() {
	[[ -n "$WRITER_PID" ]] || return 0
	local t=$SECONDS
	while kill -0 "$WRITER_PID" 2>/dev/null; do
		q "$A" "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pgbench'" >/dev/null || true
		((SECONDS - t > 15)) && { log "writers still running 15 s after their sessions ended; SIGTERM"; kill -TERM "$WRITER_PID" 2>/dev/null; break; }
		sleep 0.2
	done
	wait "$WRITER_PID" 2>/dev/null || true
	WRITER_PID= BENCH_BG=()
}
# wlat TAG T0 T1 -> "n rate p50 p99 max sched_p99": the writers' transactions
# that ended within [T0, T1]; latency = the transaction's own time (from its
# start to its end, pgbench's time minus its schedule lag); sched_p99 = p99
# from the scheduled start (what pgbench -R reports; it grows without bound
# once the clients fall behind the rate, e.g. on a saturated machine); ms
wlat() {
	[[ "$RATE" -gt 0 ]] || { echo "0 n/a n/a n/a n/a n/a"; return 0; }
	local f=$tmp/lat-$1
	cat "$tmp"/wlog-"$1".* 2>/dev/null |
		awk -v t0="$2" -v t1="$3" '{e = $5 + $6 / 1e6; if (e >= t0 && e <= t1) printf "%.3f %.3f\n", ($3 - $7) / 1000, $3 / 1000}' >"$f"
	local n; n=$(wc -l <"$f")
	((n > 0)) || { echo "0 n/a n/a n/a n/a n/a"; return 0; }
	printf '%s %s %s\n' "$n" "$(awk -v n="$n" -v a="$2" -v b="$3" 'BEGIN {printf "%.0f", n / (b - a)}')" \
		"$(pctl "$f" 1 0.5) $(pctl "$f" 1 0.99) $(pctl "$f" 1 1) $(pctl "$f" 2 0.99)"
}
pctl() { # FILE COLUMN P -> the P-quantile of that column (nearest rank)
	sort -g -k"$2,$2" "$1" | awk -v c="$2" -v p="$3" '{v[NR] = $c} END {i = int(p * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; printf "%.2f", v[i]}'
}

# ---- CPU over a copy: the evrep workers, RabbitMQ, the machine ----
RMQ_PID=$(cat "$(rmq_dir "$MQ")/beam.pid" 2>/dev/null || true)
declare -A CPU0
cpu_begin() {
	CPU_P=$(bench_wpid "$A" 'evrep publisher') CPU_C=$(bench_wpid "$B" 'evrep consumer')
	# shellcheck disable=SC2086
	CPU0=([p]=$(ticks $CPU_P) [c]=$(ticks $CPU_C) [b]=$(ticks $RMQ_PID) [m]=$(machine_ticks) [w]=$(now))
}
cpu_end() { # -> "publisher x%, consumer y%, RabbitMQ z%, machine busy w% (v CPU-s)"
	local w m1
	w=$(fsub "$(now)" "${CPU0[w]}") m1=$(machine_ticks)
	# shellcheck disable=SC2086
	awk -v hz="$CLK_TCK" -v w="$w" -v n="$(nproc)" -v p0="${CPU0[p]}" -v p1="$(ticks $CPU_P)" \
		-v c0="${CPU0[c]}" -v c1="$(ticks $CPU_C)" -v b0="${CPU0[b]}" -v b1="$(ticks $RMQ_PID)" \
		-v m0="${CPU0[m]}" -v m1="$m1" 'BEGIN {
		split(m0, a, " "); split(m1, b, " ")
		printf "evrep publisher %.0f%%, consumer %.0f%%, RabbitMQ %.0f%% (of one CPU); machine busy %.0f%% of %d CPUs (%.1f CPU-s)\n",
			(p1 - p0) / hz / w * 100, (c1 - c0) / hz / w * 100, (b1 - b0) / hz / w * 100,
			(b[1] - a[1]) / (b[2] - a[2]) * 100, n, (b[1] - a[1]) / hz}'
}

declare -A R   # results, key METRIC_PATH_ROUND

# ---- the state of a copy, one cheap query per poll ----
# evrep: "PHASE ROWS_COPIED" of the newest 'receive' row for the table
evrep_state() {
	q "$B" "SELECT phase || ' ' || coalesce(rows_copied, 0) FROM evrep.sync_status WHERE role = 'receive' AND table_name = '$TBL' ORDER BY request_id DESC LIMIT 1"
}
# native: "SRSUBSTATE TUPLES_COPIED_SO_FAR"
native_state() {
	qn "SELECT coalesce((SELECT srsubstate::text FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = 'copy_sub'), '-') || ' ' || coalesce((SELECT sum(tuples_processed) FROM pg_stat_progress_copy), 0)"
}
sig_sql="SELECT count(*) || ' ' || coalesce(sum(hashtext(c.id || '|' || c.name || '|' || c.email || '|' || c.credit || '|' || extract(epoch FROM c.created))::bigint), 0) FROM $TBL c"
# consistent PATH [WAIT_S] -> waits until B's table holds exactly A's rows (CHECK says how it went)
consistent() {
	local path=$1 wait=${2:-$CATCHUP} a b t=$SECONDS
	a=$(q "$A" "$sig_sql")
	while :; do
		if [[ $path == evrep ]]; then b=$(q "$B" "$sig_sql"); else b=$(qn "$sig_sql"); fi
		[[ "$a" == "$b" ]] && { CHECK="same rows as A (${a%% *}) $((SECONDS - t)) s after the writers stopped"; return 0; }
		((SECONDS - t >= wait)) && { CHECK="MISMATCH ${wait} s after the writers stopped: A has ${a%% *} rows, B ${b%% *} (count, hash: A $a, B $b)"; return 1; }
		sleep 1
	done
}

# ---------------------------------------------------------------- one copy
copy() { # PATH ROUND -- results in R[*_PATH_ROUND]
	local path=$1 k=$1_$2 id0 n0 t0 t1="" st phase last="" since start cnt dl0 dl1
	q "$A" "VACUUM (ANALYZE) $TBL"
	checkpoint
	[[ $path == evrep ]] && dl0=$(q "$B" "SELECT count(*) FROM evrep.dead_letter")
	writer_start "$k" || { R[rps_$k]="FAIL: writers"; return 1; }
	read -r id0 n0 <<<"$(pg_psql "$A" -F ' ' -c "SELECT max(id), count(*) FROM $TBL")"
	cpu_begin
	t0=$(now)
	if [[ $path == evrep ]]; then
		q "$B" "SELECT evrep_subscribe('$TBL')" >/dev/null || t1=fail
	else
		qn "CREATE SUBSCRIPTION copy_sub CONNECTION '$(pg_connstr "$A")' PUBLICATION copy_pub WITH (copy_data = true)" || t1=fail
	fi
	if [[ $t1 == fail ]]; then
		writer_stop
		R[rps_$k]="FAIL: the subscribing statement failed"
		detail "copy $k: ${R[rps_$k]}"
		return 1
	fi
	local tsub; tsub=$(fsub "$(now)" "$t0")
	since=$SECONDS start=$SECONDS
	local polls=0
	while :; do
		# what else runs, every 2 s or so
		(((polls += 1) % 20 == 0)) && note_others "during copy $k" "r$2"
		if [[ $path == evrep ]]; then st=$(evrep_state); else st=$(native_state); fi
		read -r phase _ <<<"${st:-- 0}"
		if [[ $path == evrep && $phase == "done" ]] || [[ $path == native && $phase == r ]]; then
			if [[ $path == evrep ]]; then cnt=$(q "$B" "SELECT count(*) FROM $TBL WHERE id <= $id0"); else cnt=$(qn "SELECT count(*) FROM $TBL WHERE id <= $id0"); fi
			((cnt >= n0)) && { t1=$(now); break; }
			st="$st count $cnt"
		fi
		[[ "$st" != "$last" ]] && { last=$st since=$SECONDS; }
		if ((SECONDS - since >= STALL || SECONDS - start >= MAXWAIT)); then
			log "GAVE UP: $path copy, round $2: state '$st' for $((SECONDS - since)) s, $((SECONDS - start)) s in all"
			diagnose
			break
		fi
		sleep 0.1
	done
	local cpu; cpu=$(cpu_end)
	writer_stop
	R[n_$k]=$n0
	if [[ -z "$t1" ]]; then
		R[rps_$k]="FAIL: stuck at '$st'"
		detail "copy $k: ${R[rps_$k]} after $(fsub "$(now)" "$t0") s; $cpu"
	else
		R[secs_$k]=$(fsub "$t1" "$t0")
		R[rps_$k]=$(awk -v n="$n0" -v s="${R[secs_$k]}" 'BEGIN {printf "%.0f", n / s}')
		R[busy_$k]=$(sed -n 's/.*machine busy \([0-9]*\)%.*/\1/p' <<<"$cpu")
		detail "copy $k: $n0 rows in ${R[secs_$k]} s = ${R[rps_$k]} rows/s (subscribing statement returned after $tsub s); $cpu"
		read -r n rate p50 p99 mx e99 <<<"$(wlat "$k" "$t0" "$t1")"
		R[p50_$k]=$p50 R[p99_$k]=$p99 R[max_$k]=$mx R[e99_$k]=$e99 R[wrate_$k]=$rate
		detail "copy $k: writers during it: $n transactions ($rate/s), latency p50 $p50 ms, p99 $p99 ms, max $mx ms (p99 from the scheduled start $e99 ms)"
	fi
	if [[ $path == evrep ]]; then
		detail "copy $k: B's sync_status: $(pg_psql "$B" -F ' ' -c "SELECT * FROM evrep.sync_status WHERE role = 'receive' ORDER BY request_id DESC LIMIT 1" 2>&1 | tr '\n' ' ')"
		detail "copy $k: A's sync_status: $(pg_psql "$A" -F ' ' -c "SELECT * FROM evrep.sync_status WHERE role = 'send' ORDER BY request_id DESC LIMIT 1" 2>&1 | tr '\n' ' ')"
	fi
	# B must hold exactly A's rows once the writers stopped
	# (after a failed copy, one look: it is not going to match)
	if consistent "$path" "$([[ -n "$t1" ]] && echo "$CATCHUP" || echo 0)"; then R[ok_$k]=ok; else R[ok_$k]=MISMATCH; [[ -n "$t1" ]] && diagnose; fi
	if [[ $path == evrep ]]; then
		dl1=$(q "$B" "SELECT count(*) FROM evrep.dead_letter")
		R[dl_$k]=$((dl1 - dl0))
		CHECK+="; $((dl1 - dl0)) new dead letters on B"
		((dl1 > dl0)) && detail "copy $k: dead letters: $(q "$B" "SELECT string_agg(DISTINCT sqlstate || ' ' || left(error, 120), '; ') FROM evrep.dead_letter WHERE id > (SELECT coalesce(max(id), 0) FROM evrep.dead_letter) - $((dl1 - dl0))")"
		q "$B" "SELECT evrep_unsubscribe('$TBL')" >/dev/null
		q "$B" "TRUNCATE $TBL"
	else
		qn "DROP SUBSCRIPTION copy_sub"
		qn "TRUNCATE $TBL"
	fi
	detail "copy $k: check: $CHECK; writers: $(grep -E '^(number of transactions actually processed|number of failed)' "$tmp/wout-$k" 2>/dev/null | tr '\n' ' ')"
	[[ -z "$t1" ]] && return 1
	return 0
}

baseline() { # PATH ROUND -- the baseline before that copy
	local k=base_$1_$2 t0 t1
	[[ "$RATE" -gt 0 ]] || return 0
	writer_start "$k" || { R[p99_$k]="FAIL: writers"; return 1; }
	t0=$(now)
	sleep "$BASE_SECS"
	t1=$(now)
	writer_stop
	read -r n rate p50 p99 mx e99 <<<"$(wlat "$k" "$t0" "$t1")"
	R[p50_$k]=$p50 R[p99_$k]=$p99 R[max_$k]=$mx R[e99_$k]=$e99 R[wrate_$k]=$rate
	detail "baseline $k: writers without a copy for ${BASE_SECS} s: $n transactions ($rate/s), latency p50 $p50 ms, p99 $p99 ms, max $mx ms (p99 from the scheduled start $e99 ms)"
}

# ---------------------------------------------------------------- run
R[busy]=$(machine_busy 3)
detail "machine busy before the rounds (other load; the bench's nodes idle): ${R[busy]}% of $(nproc) CPUs"
read -r -a PL <<<"$PATHS"
order() { # ROUND -> the paths in this round's order
	if ((${#PL[@]} == 2 && $1 % 2 == 0)); then echo "${PL[1]} ${PL[0]}"; else echo "${PL[*]}"; fi
}
for ((r = 1; r <= ROUNDS; r++)); do
	for p in $(order "$r"); do
		note_others "round $r, baseline before $p" "r$r"
		log "round $r: baseline before the $p copy, writers at $RATE/s for ${BASE_SECS} s, no copy"
		baseline "$p" "$r" || true
		note_others "round $r, $p" "r$r"
		log "round $r, $p: copy of $TBL with writers at $RATE/s"
		copy "$p" "$r" || true
	done
	note_others "end of round $r" "r$r"
done
LOAD1=$(loadavg)
OTHERS1=$(others)
topo_down

# ---------------------------------------------------------------- report
# per round: writer p99 during a copy over that round's baseline p99
for ((r = 1; r <= ROUNDS; r++)); do
	for p in evrep native; do
		R[p99x_${p}_$r]=$(fdiv "$(g p99_${p}_$r)" "$(g p99_base_${p}_$r)")
	done
	R[ratio_$r]=$(fdiv "$(g rps_evrep_$r)" "$(g rps_native_$r)")
done
for m in rps secs n busy p50 p99 max e99 wrate p99x; do
	for p in evrep native; do
		vals=()
		for ((r = 1; r <= ROUNDS; r++)); do vals+=("${R[${m}_${p}_$r]:-n/a}"); done
		R[${m}_$p]=$(bench_median "${vals[@]}")
	done
done
# the baselines: median over all of them (one before each copy)
for m in p50 p99 max e99 wrate; do
	vals=()
	for ((r = 1; r <= ROUNDS; r++)); do vals+=("${R[${m}_base_evrep_$r]:-n/a}" "${R[${m}_base_native_$r]:-n/a}"); done
	R[${m}_base]=$(bench_median "${vals[@]}")
done
RATIO=$(fdiv "$(g rps_evrep)" "$(g rps_native)")
ratios=$(for ((r = 1; r <= ROUNDS; r++)); do g ratio_$r; echo; done | paste -sd' ')
{
	echo "metric,evrep,native,evrep/native,goal"
	echo "copy_rows_per_s_${N}_rows_median_of_$ROUNDS,$(g rps_evrep),$(g rps_native),$RATIO,ratio>=0.5"
	for ((r = 1; r <= ROUNDS; r++)); do
		echo "copy_rows_per_s_round_$r,$(g rps_evrep_$r),$(g rps_native_$r),$(g ratio_$r),"
	done
	for ((r = 1; r <= ROUNDS; r++)); do
		echo "copy_seconds_round_$r,$(g secs_evrep_$r),$(g secs_native_$r),$(fdiv "$(g secs_evrep_$r)" "$(g secs_native_$r)"),"
		echo "copy_rows_round_$r,$(g n_evrep_$r),$(g n_native_$r),,"
		echo "copy_rows_on_B_match_A_round_$r,$(g ok_evrep_$r),$(g ok_native_$r),,"
	done
	echo "copy_machine_busy_pct_median,$(g busy_evrep),$(g busy_native),,"
	echo "writer_p99_ms_baseline_no_copy_median_of_all,$(g p99_base),$(g p99_base),,"
	echo "writer_p99_ms_during_copy_median,$(g p99_evrep),$(g p99_native),$(fdiv "$(g p99_evrep)" "$(g p99_native)"),"
	echo "writer_p99_during_copy_over_baseline_median,$(g p99x_evrep),$(g p99x_native),,<=2"
	echo "writer_p99_median_during_copy_over_median_baseline,$(fdiv "$(g p99_evrep)" "$(g p99_base)"),$(fdiv "$(g p99_native)" "$(g p99_base)"),,"
	for ((r = 1; r <= ROUNDS; r++)); do
		echo "writer_p99_ms_round_${r}_baseline_before_the_copy,$(g p99_base_evrep_$r),$(g p99_base_native_$r),,"
		echo "writer_p99_ms_round_${r}_during_copy,$(g p99_evrep_$r),$(g p99_native_$r),,"
		echo "writer_p99_over_baseline_round_$r,$(g p99x_evrep_$r),$(g p99x_native_$r),,<=2"
	done
	echo "writer_p50_ms_baseline_median,$(g p50_base),$(g p50_base),,"
	echo "writer_p50_ms_during_copy_median,$(g p50_evrep),$(g p50_native),,"
	echo "writer_rate_per_s_during_copy_median,$(g wrate_evrep),$(g wrate_native),,$RATE"
	echo "writer_rate_per_s_baseline_median,$(g wrate_base),$(g wrate_base),,$RATE"
	echo "writer_p99_ms_from_scheduled_start_during_copy_median,$(g e99_evrep),$(g e99_native),,"
	echo "writer_p99_ms_from_scheduled_start_baseline_median,$(g e99_base),$(g e99_base),,"
	echo "evrep_dead_letters_all_rounds,$(for ((r = 1; r <= ROUNDS; r++)); do g dl_evrep_$r; echo; done | awk '/^[0-9]+$/ {s += $1; n++} END {print n ? s : "n/a"}'),,,"
} >"$OUT_CSV"

rv=$(verdict "$RATIO" '>=' 0.5)
lv_e=$(verdict "$(g p99x_evrep)" '<=' 2)
lv_n=$(verdict "$(g p99x_native)" '<=' 2)
{
	echo "# Initial copy to a new subscriber: evrep_subscribe (copy_data) vs native logical replication"
	echo
	echo "\`$CMD\` on $(date -u +%F), commit $COMMIT (installed evrep.so md5 $SO);"
	echo "$(nproc) vCPUs, load average $LOAD0 before and $LOAD1 after;"
	echo "also running on the machine at the start: $OTHERS0; at the end: $OTHERS1${OTHERS_CHANGED:+ (it changed during the run: see the details)}."
	echo "Machine busy before the rounds (other load; the bench's nodes idle): $(g busy)%."
	echo
	echo "One RabbitMQ node and two PostgreSQL 15 servers on one machine: A holds \`$TBL\` ($COLS),"
	echo "$N rows of about $ROWB bytes ($TBL_MB MB with its index), published both by evrep and by \`CREATE PUBLICATION\`;"
	echo "B copies it into database \`$B\` (evrep: \`SELECT evrep_subscribe('$TBL')\`, evrep.copy_chunk_rows = $CHUNK)"
	echo "or into database \`$BN\` on the same server (native: \`CREATE SUBSCRIPTION ... WITH (copy_data = true)\`)."
	echo "During every copy writers run on A at $RATE transactions/s (pgbench -R, $WCLIENTS clients; half one-row INSERTs,"
	echo "half one-row UPDATEs of random existing rows). $ROUNDS rounds, each: a ${BASE_SECS} s baseline of the same writers with"
	echo "no copy, a copy by one path, another baseline, a copy by the other path (odd rounds evrep first). Figures are"
	echo "medians over the rounds; a copy's writer p99 is compared with the baseline just before it."
	echo
	echo "*rows/s* = rows on A when the copy began / seconds from just before the subscribing statement until"
	echo "(evrep) \`evrep.sync_status\` says phase \`done\` and B has every one of those rows, or (native)"
	echo "\`pg_subscription_rel.srsubstate\` = \`r\` (polled every 0.1 s). *Writer latency*: each transaction's own time, start"
	echo "to commit (pgbench -l, less its schedule lag), of the transactions that ended during the copy or the baseline;"
	echo "if the writers fall behind the rate, the p99 from the scheduled start (in the details) grows and the rate drops."
	echo
	echo "| metric (median of $ROUNDS rounds) | evrep | native LR | evrep / native | goal |"
	echo "|---|---|---|---|---|"
	echo "| copy rows/s | $(g rps_evrep) | $(g rps_native) | **$RATIO** | ≥ 0.5 ($rv) |"
	echo "| copy seconds | $(g secs_evrep) | $(g secs_native) | $(fdiv "$(g secs_evrep)" "$(g secs_native)") | |"
	echo "| machine busy during the copy | $(g busy_evrep)% | $(g busy_native)% | | |"
	echo "| writers' p99 latency during the copy (ms) | $(g p99_evrep) | $(g p99_native) | $(fdiv "$(g p99_evrep)" "$(g p99_native)") | |"
	echo "| writers' p99 without a copy (ms, median of all $((2 * ROUNDS)) baselines) | $(g p99_base) | $(g p99_base) | | |"
	echo "| p99 during the copy / p99 of the baseline before it (median) | **$(g p99x_evrep)** | **$(g p99x_native)** | | ≤ 2 (evrep $lv_e, native $lv_n) |"
	echo "| median p99 during the copy / median baseline p99 | $(fdiv "$(g p99_evrep)" "$(g p99_base)") | $(fdiv "$(g p99_native)" "$(g p99_base)") | | |"
	echo "| writers' p50 during the copy / without (ms) | $(g p50_evrep) / $(g p50_base) | $(g p50_native) / $(g p50_base) | | |"
	echo "| writers' rate achieved during the copy / without (tx/s) | $(g wrate_evrep) / $(g wrate_base) | $(g wrate_native) / $(g wrate_base) | | $RATE |"
	echo "| writers' p99 from the scheduled start, during the copy / without (ms) | $(g e99_evrep) / $(g e99_base) | $(g e99_native) / $(g e99_base) | | |"
	echo
	echo "Per round:"
	echo
	echo "| round | rows copied (evrep / native) | evrep rows/s | native rows/s | evrep / native | writers' p99 ms, baseline → during evrep | baseline → during native | B = A after the copy (evrep / native) | also running |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for ((r = 1; r <= ROUNDS; r++)); do
		echo "| $r | $(g n_evrep_$r) / $(g n_native_$r) | $(g rps_evrep_$r) | $(g rps_native_$r) | $(g ratio_$r) | $(g p99_base_evrep_$r) → $(g p99_evrep_$r) ($(g p99x_evrep_$r)×) | $(g p99_base_native_$r) → $(g p99_native_$r) ($(g p99x_native_$r)×) | $(g ok_evrep_$r) / $(g ok_native_$r) | ${R[oth_r$r]:-nothing else} |"
	done
	echo
	echo "evrep's copy reached $RATIO× native's rate (per round: $ratios; goal ≥ 0.5: $rv). The writers' p99 latency"
	echo "during the copy was $(g p99x_evrep)× (evrep) and $(g p99x_native)× (native) their p99 without a copy (goal ≤ 2: evrep $lv_e, native $lv_n)."
	echo "All from this one run on a shared machine: compare the ratios, not the absolute figures, with other runs."
	bench_details_md
} >"$OUT_MD"
bench_written "$OUT_CSV" "$OUT_MD"
