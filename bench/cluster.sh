#!/usr/bin/env bash
# evrep on one RabbitMQ node with classic queues against evrep on a
# three-node RabbitMQ cluster with quorum queues, in the same run (issue 11,
# "Measure"), then broker failover on the cluster.
#
#   bench/cluster.sh [N]          N single-row transactions (default 100000)
#
# Two set-ups side by side, each with a publishing PostgreSQL node A and a
# subscribing node B (the settings bench/replication.sh gives its nodes):
#   single   one RabbitMQ node (AMQP 5986), evrep.queue_type = classic;
#            A 5991, B 5992
#   cluster  three RabbitMQ nodes (AMQP 5981-5983), evrep.queue_type = quorum
#            (the default), every node's evrep.broker_url lists all three;
#            A 5993, B 5994
# Phases, as bench/replication.sh measures evrep, each run EVREP_BENCH_REPEAT
# (3) rounds, one set-up at a time, alternating (round 1 single first, round 2
# cluster first, ...); the report gives the medians and each round:
#   throughput  N single-row INSERT transactions, pgbench 8 clients; rows/s
#               from the start of pgbench until B has committed the last row
#   lag         pgbench --rate=1000 for EVREP_BENCH_LAG_SECS (20) s; per row
#               B's applied_at (clock_timestamp() at apply) minus the origin
#               commit timestamp on A, p50/p99/max in ms
# and on the cluster only:
#   failover    a writer inserts at EVREP_BENCH_FAILOVER_RATE (1000) rows/s;
#               EVREP_BENCH_KILLS (5) times: SIGKILL the RabbitMQ node that
#               leads B's quorum queue, measure the time from the kill to B
#               applying the first row committed on A after the kill; restart
#               the node, wait until 3 nodes run and B's queue has 3 members
#               online; at the end every row is on B.
#   hang        the same writer; for each role (the node A's publisher is
#               connected to, the node B's consumer is connected to, the
#               leader of B's queue) freeze that node's beam.smp with SIGSTOP
#               for EVREP_BENCH_FREEZE_S (15) s, then SIGCONT: resume (from
#               the SIGSTOP to B applying a row committed after it) and the
#               longest pause in B's applies, next to the kills' figures.
#
# Output: a table on stdout; bench/results/cluster.{csv,md}.
# Everything it starts is stopped on exit (also on error or ^C).
#
# Environment: EVREP_TEST_DIR (default /tmp/evrep-test-cluster),
#   EVREP_BENCH_REPEAT, EVREP_BENCH_LAG_SECS, EVREP_BENCH_KILLS,
#   EVREP_BENCH_FAILOVER_RATE, EVREP_BENCH_SETTLE (s of steady writing before
#   each kill, default 5), EVREP_BENCH_RESUME_MAX (s to wait for replication
#   after a kill, default 60), EVREP_BENCH_STALL (s without progress before a
#   wait gives up, default 60), EVREP_BENCH_MAXWAIT (s a phase may wait for B
#   in all, default 900), EVREP_BENCH_FREEZE_S (15), EVREP_BENCH_OUT (the
#   report's name in bench/results, default cluster; EVREP_BENCH_REPEAT=0
#   skips the throughput and lag rounds, e.g. for a report of the
#   failover figures alone).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export EVREP_TEST_DIR=${EVREP_TEST_DIR:-/tmp/evrep-test-cluster}
source test/lib/topology.sh
source bench/lib.sh

CMD="$(env | grep -E '^EVREP_(BENCH_[A-Z_]+|TEST_DIR)=' | sort | tr '\n' ' ')bench/cluster.sh${1:+ $1}"
N_THR=${1:-100000}
[[ "$N_THR" =~ ^[0-9]+$ ]] && (( N_THR >= 8 )) || { echo "usage: $0 [N]  (N >= 8 single-row transactions)" >&2; exit 2; }
CLIENTS=8
LAG_RATE=1000
LAG_SECS=${EVREP_BENCH_LAG_SECS:-20}
REPEAT=${EVREP_BENCH_REPEAT:-3}
KILLS=${EVREP_BENCH_KILLS:-5}
FO_RATE=${EVREP_BENCH_FAILOVER_RATE:-1000}
SETTLE=${EVREP_BENCH_SETTLE:-5}
RESUME_MAX=${EVREP_BENCH_RESUME_MAX:-60}
STALL=${EVREP_BENCH_STALL:-60}
MAXWAIT=${EVREP_BENCH_MAXWAIT:-900}

RES=$ROOT/bench/results
mkdir -p "$RES"
OUT=${EVREP_BENCH_OUT:-cluster}
[[ "$OUT" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "EVREP_BENCH_OUT: letters, digits, - and _" >&2; exit 2; }
OUT_CSV=$RES/$OUT.csv
OUT_MD=$RES/$OUT.md
FREEZE_S=${EVREP_BENCH_FREEZE_S:-15}

tmp=$(mktemp -d)
BENCH_TMP=$tmp
WRITER_PID=
MEMBERS=()
# on exit (bench_traps): thaw a node the hang phase left frozen, or it could
# not be stopped
bench_on_exit() {
	local p
	if ((${#MEMBERS[@]})); then for p in $(beams); do kill -CONT "$p" 2>/dev/null; done; fi
}
bench_traps

# ---------------------------------------------------------------- the machine
LOAD0=$(loadavg)
OTHERS0=$(others)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
so=$("$PG_CONFIG" --pkglibdir)/evrep.so
SO="$(md5sum <"$so" | cut -c1-12), built $(date -u -r "$so" +%FT%TZ)"
log "load average $LOAD0; also running: $OTHERS0"
# what else runs, noted in the details whenever it changes (note_others)
LAST_OTHERS=$OTHERS0

# ---------------------------------------------------------------- set-ups
# The tables of bench/replication.sh (ev only); B's ev gets applied_at.
A_SCHEMA="CREATE SEQUENCE ev_id_seq; CREATE TABLE ev (id bigint PRIMARY KEY, payload text, created timestamptz DEFAULT clock_timestamp());"
B_SCHEMA="CREATE TABLE ev (id bigint PRIMARY KEY, payload text, created timestamptz, applied_at timestamptz DEFAULT clock_timestamp()); CREATE UNLOGGED TABLE bench_origin (id bigint PRIMARY KEY, commit_ts timestamptz NOT NULL);"
CONF="conf=\"shared_buffers = '256MB'\" conf=\"max_wal_size = '4GB'\""
printf "INSERT INTO ev (id, payload) VALUES (nextval('ev_id_seq'), md5(random()::text));\n" >"$tmp/ev.sql"

# both set-ups at once (so that their rounds can alternate); an idle set-up
# costs little (see "machine busy before the phases")
setup_up() {
	topo_up <<EOF
broker clsmq port=5986
broker clcmq port=5981 nodes=3
node clsa port=5991 broker=clsmq publish=ev schema="$A_SCHEMA" $CONF conf="evrep.queue_type = classic"
node clsb port=5992 broker=clsmq subscribe=ev schema="$B_SCHEMA" $CONF conf="evrep.queue_type = classic"
node clca port=5993 broker=clcmq publish=ev schema="$A_SCHEMA" $CONF
node clcb port=5994 broker=clcmq subscribe=ev schema="$B_SCHEMA" $CONF
EOF
}
use() { # single|cluster -- the set-up the functions below work on: MQ A B MEMBERS
	if [[ $1 == single ]]; then MQ=clsmq A=clsa B=clsb; else MQ=clcmq A=clca B=clcb; fi
	mapfile -t MEMBERS < <(topo_broker_members "$MQ")
}

seq_last() { q "$A" "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ev_id_seq"; }
pgbench_run() { # OUTFILE ARGS...
	local out=$1; shift
	"$PG_BINDIR/pgbench" -n -h 127.0.0.1 -p "$(pg_port "$A")" -U postgres "$@" "$(pg_dbname "$A")" >"$out" 2>&1
}
pgbench_tps() { awk '/^tps/ {printf "%.0f\n", $3; exit}' "$1"; }
checkpoint() { q "$A" CHECKPOINT; q "$B" CHECKPOINT; }

diagnose() {
	{
		echo "--- $A status"; q "$A" "SELECT * FROM evrep.worker_state()" 2>&1
		q "$A" "SELECT role, table_name, outbox_depth, last_seq, last_error FROM evrep.status" 2>&1
		echo "--- $B status"; q "$B" "SELECT * FROM evrep.worker_state()" 2>&1
		q "$B" "SELECT role, origin, table_name, last_seq, applied, skipped, dead_letters, lag, last_error FROM evrep.status" 2>&1
		local m
		for m in "${MEMBERS[@]}"; do
			rmq_is_running "$m" || continue
			echo "--- queues (asked $m)"; rmq_ctl "$m" -q list_queues name type messages consumers 2>&1; break
		done
		echo "--- evrep lines of the logs"; grep -hi evrep "$(pg_logfile "$A")" "$(pg_logfile "$B")" | tail -n 20
	} | sed 's/^/#   /' >&2
}

# wait_rows LO HI -- until B has every id in (LO, HI] that A has; gives up
# when B's count does not move for $STALL s or after $MAXWAIT s (WAIT_GOT:
# the count reached)
wait_rows() {
	local lo=$1 hi=$2 want got last=-1 since=$SECONDS start=$SECONDS
	want=$(q "$A" "SELECT count(*) FROM ev WHERE id > $lo AND id <= $hi")
	WAIT_WANT=$want
	while :; do
		got=$(q "$B" "SELECT count(*) FROM ev WHERE id > $lo AND id <= $hi")
		WAIT_GOT=$got
		((got >= want)) && return 0
		if ((got != last)); then last=$got since=$SECONDS; fi
		if ((SECONDS - since >= STALL || SECONDS - start >= MAXWAIT)); then
			log "GAVE UP: B has $got of $want rows of ($lo, $hi] after $((SECONDS - start)) s"
			diagnose
			return 1
		fi
		sleep 0.2
	done
}

# ---- CPU over a phase: the workers, the broker's beams, the machine ----
beams() { local m p; for m in "${MEMBERS[@]}"; do p=$(cat "$(rmq_dir "$m")/beam.pid" 2>/dev/null) && echo "$p"; done; return 0; }
declare -A CPU0
cpu_begin() {
	CPU_P=$(bench_wpid "$A" 'evrep publisher') CPU_C=$(bench_wpid "$B" 'evrep consumer') CPU_B=$(beams | tr '\n' ' ')
	# shellcheck disable=SC2086
	CPU0=([p]=$(ticks $CPU_P) [c]=$(ticks $CPU_C) [b]=$(ticks $CPU_B) [m]=$(machine_ticks) [w]=$(now))
}
cpu_end() { # PHASE -> "publisher x%, consumer y%, broker z%, machine w%"
	local w m1
	w=$(fsub "$(now)" "${CPU0[w]}") m1=$(machine_ticks)
	# shellcheck disable=SC2086
	awk -v hz="$CLK_TCK" -v w="$w" -v n="$(nproc)" -v p0="${CPU0[p]}" -v p1="$(ticks $CPU_P)" \
		-v c0="${CPU0[c]}" -v c1="$(ticks $CPU_C)" -v b0="${CPU0[b]}" -v b1="$(ticks $CPU_B)" \
		-v m0="${CPU0[m]}" -v m1="$m1" 'BEGIN {
		split(m0, a, " "); split(m1, b, " ")
		printf "CPU over %.1f s: publisher %.0f%%, consumer %.0f%%, RabbitMQ %.0f%% (all its nodes), machine busy %.0f%% of %d CPUs\n",
			w, (p1 - p0) / hz / w * 100, (c1 - c0) / hz / w * 100, (b1 - b0) / hz / w * 100, (b[1] - a[1]) / (b[2] - a[2]) * 100, n}'
}

declare -A R   # results, key METRIC_CFG

# ---------------------------------------------------------------- throughput
throughput() { # CFG ROUND -- results in R[*_CFG_ROUND]
	local cfg=$1_$2 lo hi t0 wend end secs
	checkpoint
	lo=$(seq_last)
	cpu_begin
	t0=$(now)
	if ! pgbench_run "$tmp/thr-$cfg.out" -c $CLIENTS -j 2 -t $((N_THR / CLIENTS)) -f "$tmp/ev.sql"; then
		cat "$tmp/thr-$cfg.out" >&2
		R[thr_$cfg]="FAIL: pgbench $(grep -m1 -o 'ERROR: .*' "$tmp/thr-$cfg.out" | tr -d ',')"
		return 1
	fi
	wend=$(now)
	hi=$(seq_last)
	wait_rows "$lo" "$hi" || { R[thr_$cfg]="FAIL: $WAIT_GOT of $WAIT_WANT rows"; return 1; }
	local cpu; cpu=$(cpu_end)
	detail "throughput $cfg: $cpu"
	R[cpub_$cfg]=$(sed -n 's/.*RabbitMQ \([0-9]*\)%.*/\1/p' <<<"$cpu")
	R[cpum_$cfg]=$(sed -n 's/.*machine busy \([0-9]*\)%.*/\1/p' <<<"$cpu")
	# B had the last row when it committed it (evrep applies in batches)
	end=$(q "$B" "SELECT extract(epoch FROM greatest(max(pg_xact_commit_timestamp(xmin)), max(applied_at))) FROM ev WHERE id > $lo AND id <= $hi")
	secs=$(fsub "$end" "$t0")
	R[thr_$cfg]=$(awk -v n="$WAIT_GOT" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')
	R[thrw_$cfg]=$(pgbench_tps "$tmp/thr-$cfg.out")
	R[thrt_$cfg]=$(fsub "$end" "$wend")
	detail "throughput $cfg: $WAIT_GOT rows in ${secs} s = ${R[thr_$cfg]} rows/s end to end; writer alone $(fsub "$wend" "$t0") s (${R[thrw_$cfg]} tps); B finished ${R[thrt_$cfg]} s after the writer"
}

# ---------------------------------------------------------------- lag
lag() { # CFG ROUND -- results in R[*_CFG_ROUND]
	local cfg=$1_$2 lo hi n p50 p99 mx
	checkpoint
	lo=$(seq_last)
	cpu_begin
	if ! pgbench_run "$tmp/lag-$cfg.out" -c $CLIENTS -j 2 -T "$LAG_SECS" --rate=$LAG_RATE -f "$tmp/ev.sql"; then
		cat "$tmp/lag-$cfg.out" >&2
		R[lag50_$cfg]="FAIL: pgbench $(grep -m1 -o 'ERROR: .*' "$tmp/lag-$cfg.out" | tr -d ',')"
		return 1
	fi
	hi=$(seq_last)
	wait_rows "$lo" "$hi" || { R[lag50_$cfg]="FAIL: $WAIT_GOT of $WAIT_WANT rows"; return 1; }
	detail "lag $cfg: $(cpu_end)"
	# A's commit timestamps next to B's rows
	q "$B" "TRUNCATE bench_origin"
	q "$A" "COPY (SELECT id, pg_xact_commit_timestamp(xmin) FROM ev WHERE id > $lo AND id <= $hi) TO STDOUT" |
		pg_psql "$B" -c "COPY bench_origin FROM STDIN"
	read -r n p50 p99 mx <<<"$(pg_psql "$B" -F ' ' -c "SELECT count(*),
		round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag)::numeric, 2),
		round(percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)::numeric, 2),
		round(max(lag)::numeric, 2)
		FROM (SELECT extract(epoch FROM b.applied_at - o.commit_ts) * 1000 AS lag FROM ev b JOIN bench_origin o USING (id)) s")"
	R[lag50_$cfg]=$p50 R[lag99_$cfg]=$p99 R[lagmax_$cfg]=$mx
	detail "lag $cfg: $n rows at $(pgbench_tps "$tmp/lag-$cfg.out") tps; applied_at - origin commit: p50 $p50 ms, p99 $p99 ms, max $mx ms"
}

# ---------------------------------------------------------------- failover
member_of() { sed -n "s/^evrep-$MQ\([0-9]\)@.*/\1/p" <<<"$1"; }   # RabbitMQ node name -> member index
queue_info() { # QUEUE -> "leader online-count type" asked of a running member
	local m out
	for m in "${MEMBERS[@]}"; do
		rmq_is_running "$m" || continue
		out=$(EVREP_RMQ_CTL_TIMEOUT=20 rmq_ctl "$m" -q list_queues --no-table-headers name leader online type 2>/dev/null) || continue
		awk -v q="$1" -F'\t' '$1 == q {n = gsub(/evrep-/, "", $3); print $2, n, $4; exit}' <<<"$out"
		return 0
	done
	return 1
}
connected_to() { # NODE WORKER -> member index its last connection went to
	local port
	port=$(grep -o "evrep $2 connected to broker amqp://[^@]*@127.0.0.1:[0-9]*" "$(pg_logfile "$1")" | tail -n 1 | sed 's/.*://')
	[[ -n "$port" ]] && echo $((port - $(rmq_port "${MEMBERS[0]}") + 1)) || echo '?'
}
wait_queue_online() { # QUEUE N TIMEOUT_S
	local deadline=$((SECONDS + $3)) info
	while :; do
		info=$(queue_info "$1") || info=
		read -r _ info _ <<<"$info"
		[[ "$info" == "$2" ]] && return 0
		((SECONDS >= deadline)) && { log "queue $1: '$info' (leader, members online) after $3 s"; return 1; }
		sleep 1
	done
}

# hang_phase QUEUE -- freeze (SIGSTOP of beam.smp) the node of each role for
# FREEZE_S s while the failover phase's writer runs; one line per freeze in HZ:
# role member pub con leader resume pause
HZ=()
hang_phase() {
	local qb=$1 role m id0 tf got bmax t_res pause lead pubm conm beam
	R[hz_settings]="evrep.broker_timeout $(q "$A" "SHOW evrep.broker_timeout"), evrep.confirm_timeout $(q "$A" "SHOW evrep.confirm_timeout")"
	for role in publisher consumer leader; do
		sleep "$SETTLE"
		read -r lead _ <<<"$(queue_info "$qb")"
		lead=$(member_of "$lead")
		pubm=$(connected_to "$A" publisher) conm=$(connected_to "$B" consumer)
		case $role in publisher) m=$pubm ;; consumer) m=$conm ;; leader) m=$lead ;; esac
		[[ "$m" =~ ^[1-9]$ ]] || { log "hang: no member for the $role"; diagnose; return 1; }
		beam=$(cat "$(rmq_dir "$MQ$m")/beam.pid")
		note_others "hang $role" fo
		id0=$(seq_last)
		tf=$(now)
		kill -STOP "$beam"
		id1=$(seq_last)
		got=
		while (($(fsub "$(now)" "$tf" | cut -d. -f1) < FREEZE_S)); do
			if [[ -z "$got" ]]; then
				bmax=$(q "$B" "SELECT coalesce(max(id), 0) FROM ev")
				((bmax > id1)) && got=1
			fi
			sleep 0.05
		done
		kill -CONT "$beam"
		# until B has a row written after the freeze (at most RESUME_MAX)
		while [[ -z "$got" ]] && (($(fsub "$(now)" "$tf" | cut -d. -f1) < RESUME_MAX)); do
			bmax=$(q "$B" "SELECT coalesce(max(id), 0) FROM ev")
			((bmax > id1)) && got=1
			sleep 0.05
		done
		sleep 2
		t_res=$(q "$B" "SELECT coalesce(round((extract(epoch FROM min(applied_at)) - $tf)::numeric, 3)::text, 'none') FROM ev WHERE id > $id0 AND created > to_timestamp($tf)")
		pause=$(q "$B" "SELECT coalesce(round(max(d)::numeric, 3)::text, 'none') FROM (SELECT extract(epoch FROM applied_at - lag(applied_at) OVER (ORDER BY applied_at)) AS d FROM ev WHERE id > $id0 - $((FO_RATE * 2)) AND applied_at BETWEEN to_timestamp($tf - 1) AND to_timestamp($tf + $RESUME_MAX)) s")
		HZ+=("$role $m $pubm $conm $lead $t_res $pause")
		detail "hang of the $role's node: member $m frozen ${FREEZE_S} s (publisher on member $pubm, consumer on member $conm, $qb led by member $lead); B applied the first row committed after the SIGSTOP ${t_res} s after it; longest pause in B's applies ${pause} s"
		rmq_cluster_wait "$MQ" 3 90 || return 1
		wait_queue_online "$qb" 3 60 || true
	done
}

FO=()   # one line per kill: i member pub con resume pause newleader restart
failover() {
	local qb lo hi i lead newl pubm conm id0 id1 tk0 tk1 got t_res pause restart t0 bmax pgid
	local -a ends=()
	qb=$(topo_queue "$B")
	lo=$(seq_last)
	local fo_t0; fo_t0=$(now)
	# pgbench itself in the background (its pid, for SIGTERM: an asynchronous
	# command of this shell ignores SIGINT)
	"$PG_BINDIR/pgbench" -n -h 127.0.0.1 -p "$(pg_port "$A")" -U postgres -c 2 -j 1 \
		-T $(((SETTLE + RESUME_MAX + 150) * KILLS + 60)) --rate="$FO_RATE" -f "$tmp/ev.sql" "$(pg_dbname "$A")" >"$tmp/fo.out" 2>&1 &
	WRITER_PID=$!
	BENCH_BG=("$WRITER_PID")   # stopped on exit
	for ((i = 1; i <= KILLS; i++)); do
		sleep "$SETTLE"
		kill -0 "$WRITER_PID" 2>/dev/null || { log "the writer stopped"; cat "$tmp/fo.out" >&2; return 1; }
		read -r lead _ <<<"$(queue_info "$qb")"
		lead=$(member_of "$lead")
		[[ "$lead" =~ ^[1-9]$ ]] || { log "no leader for $qb"; diagnose; return 1; }
		pubm=$(connected_to "$A" publisher) conm=$(connected_to "$B" consumer)
		note_others "kill $i" fo
		id0=$(seq_last)
		# SIGKILL the member's process group (as rmq_kill does) at a known
		# moment, then let rmq_cluster_kill do its bookkeeping (it waits until
		# the processes are reaped, which took ~2 s, and forgets the pid)
		pgid=$(cat "$(rmq_dir "$MQ$lead")/server.pid")
		tk0=$(now)
		kill -KILL -- "-$pgid"
		rmq_cluster_kill "$MQ" "$lead" 2>/dev/null
		tk1=$(now)
		id1=$(seq_last)   # every id above it was taken after the kill
		# until B has a row written after the kill
		got=
		while :; do
			bmax=$(q "$B" "SELECT coalesce(max(id), 0) FROM ev")
			((bmax > id1)) && { got=1; break; }
			(($(fsub "$(now)" "$tk0" | cut -d. -f1) >= RESUME_MAX)) && break
			sleep 0.05
		done
		[[ -n "$got" ]] || { log "kill $i: nothing written after the kill arrived on B within $RESUME_MAX s"; diagnose; }
		read -r newl _ <<<"$(queue_info "$qb")"
		newl=$(member_of "$newl")
		t0=$(now)
		rmq_cluster_restart "$MQ" "$lead" 2>/dev/null || { log "member $lead did not restart"; return 1; }
		rmq_cluster_wait "$MQ" 3 90 || return 1
		restart=$(fsub "$(now)" "$t0")
		wait_queue_online "$qb" 3 60 || true
		# resume: from the SIGKILL to B applying the first row that A
		# committed after it; pause: the longest time B applied nothing
		# around the kill (at $FO_RATE rows/s it applies every few ms)
		t_res=$(q "$B" "SELECT coalesce(round((extract(epoch FROM min(applied_at)) - $tk0)::numeric, 3)::text, 'none') FROM ev WHERE id > $id0 AND created > to_timestamp($tk0)")
		pause=$(q "$B" "SELECT coalesce(round(max(d)::numeric, 3)::text, 'none') FROM (SELECT extract(epoch FROM applied_at - lag(applied_at) OVER (ORDER BY applied_at)) AS d FROM ev WHERE id > $id0 - $((FO_RATE * 2)) AND applied_at BETWEEN to_timestamp($tk0 - 1) AND to_timestamp($tk0 + $RESUME_MAX)) s")
		ends+=("$id0")
		FO+=("$i $lead $pubm $conm $t_res $pause ${newl:-?} $restart")
		detail "kill $i: member $lead led $qb (publisher on member $pubm, consumer on member $conm); rmq_cluster_kill returned $(fsub "$tk1" "$tk0") s after the SIGKILL; B applied the first row committed after the SIGKILL ${t_res} s after it; longest pause in B's applies ${pause} s; new leader member ${newl:-?}; member $lead back, 3 running, after ${restart} s"
	done
	hang_phase "$qb" || return 1
	sleep "$SETTLE"
	local fo_t1; fo_t1=$(now)
	kill -TERM "$WRITER_PID" 2>/dev/null || true
	wait "$WRITER_PID" 2>/dev/null || true
	WRITER_PID= BENCH_BG=()
	hi=$(seq_last)
	if ! wait_rows "$lo" "$hi"; then R[fo_lost]="FAIL: B has $WAIT_GOT of $WAIT_WANT rows"; return 1; fi
	R[fo_rows]=$WAIT_WANT
	R[fo_dead]=$(q "$B" "SELECT count(*) FROM evrep.dead_letter")
	R[fo_skipped]=$(q "$B" "SELECT coalesce(sum(skipped), 0) FROM evrep.progress")
	# worst lag (B applied_at - A's created) from each kill to the next
	ends+=("$hi")
	R[fo_maxlag]=
	for ((i = 0; i < KILLS; i++)); do
		R[fo_maxlag]+="$(q "$B" "SELECT round(max(extract(epoch FROM applied_at - created))::numeric, 2) FROM ev WHERE id > ${ends[i]} AND id <= ${ends[i + 1]}") "
	done
	detail "failover: writer $(awk -v n="$WAIT_WANT" -v s="$(fsub "$fo_t1" "$fo_t0")" 'BEGIN {printf "%.0f", n / s}') rows/s over the phase, $WAIT_WANT rows, all on B; B skipped ${R[fo_skipped]} duplicates, ${R[fo_dead]} dead letters; worst lag per kill (s): ${R[fo_maxlag]}"
}

# ---------------------------------------------------------------- run
log "starting both set-ups (dir $EVREP_TEST_DIR)"
setup_up || { log "the set-ups did not come up"; exit 1; }
for cfg in single cluster; do
	use "$cfg"
	q "$A" "INSERT INTO ev (id, payload) VALUES (nextval('ev_id_seq'), 'warm-up')"
	wait_rows 0 1 || exit 1
	detail "$cfg: B's queue $(topo_queue "$B"): type, leader, members online: $(queue_info "$(topo_queue "$B")")"
done
R[busy]=$(machine_busy 3)
detail "machine busy before the phases (other load; both set-ups idle): ${R[busy]}% of $(nproc) CPUs"
# rounds alternate single / cluster, and which of the two comes first
order() { if (($1 % 2)); then echo single cluster; else echo cluster single; fi; }
# rounds PHASE KEY WHAT -- REPEAT rounds of PHASE (throughput or lag, the
# function) on both set-ups; the other load is noted under R[oth_KEY_ROUND]
rounds() {
	local phase=$1 key=$2 what=$3 r cfg
	for ((r = 1; r <= REPEAT; r++)); do
		for cfg in $(order "$r"); do
			use "$cfg"
			note_others "$phase ${cfg}_$r" "${key}_$r"
			log "round $r, $cfg: $phase, $what"
			"$phase" "$cfg" "$r" || true
			note_others "end of $phase ${cfg}_$r" "${key}_$r"
		done
	done
}
rounds throughput thr "$N_THR single-row transactions, $CLIENTS clients"
rounds lag lag "--rate=$LAG_RATE for ${LAG_SECS}s"
use cluster
log "cluster: failover, $KILLS kills of the leader of B's queue, writer at $FO_RATE rows/s"
failover || R[fo_err]=1
topo_down
LOAD1=$(loadavg)
OTHERS1=$(others)

# ---------------------------------------------------------------- report
# medians over the rounds: R[M_CFG] from R[M_CFG_1] .. R[M_CFG_$REPEAT]
for m in thr thrw thrt cpub cpum lag50 lag99 lagmax; do
	for cfg in single cluster; do
		vals=()
		for ((r = 1; r <= REPEAT; r++)); do vals+=("${R[${m}_${cfg}_$r]:-n/a}"); done
		R[${m}_$cfg]=$(bench_median "${vals[@]}")
	done
done
# cluster/single throughput per round (the two runs of a round are adjacent)
thr_pairs=$(for ((r = 1; r <= REPEAT; r++)); do echo "$(fdiv "$(g thr_cluster_$r)" "$(g thr_single_$r)")"; done | paste -sd' ')
# failover figures: the resume times (numbers only), p50 (the median) and max
resumes=$(for f in "${FO[@]}"; do set -- $f; echo "$5"; done)
fo_p50=$(bench_median $resumes)
fo_max=$({ grep -E '^[0-9.]+$' <<<"$resumes" || true; } | sort -g | tail -n 1)   # none with KILLS=0
fo_n=$(grep -cE '^[0-9.]+$' <<<"$resumes" || true)
thr_ratio=$(fdiv "$(g thr_cluster)" "$(g thr_single)")
ratio() { fdiv "$(g "${1}_cluster")" "$(g "${1}_single")"; }
{
	echo "metric,single_node_classic,cluster_3_quorum,cluster/single,goal"
	echo "throughput_rows_per_s_${N_THR}_1row_txns_${CLIENTS}_clients_median_of_$REPEAT,$(g thr_single),$(g thr_cluster),$thr_ratio,ratio>=0.8"
	for ((r = 1; r <= REPEAT; r++)); do
		echo "throughput_rows_per_s_round_$r,$(g thr_single_$r),$(g thr_cluster_$r),$(fdiv "$(g thr_cluster_$r)" "$(g thr_single_$r)"),"
	done
	echo "throughput_writer_tps_median,$(g thrw_single),$(g thrw_cluster),$(ratio thrw),"
	echo "throughput_tail_after_writer_s_median,$(g thrt_single),$(g thrt_cluster),,"
	echo "throughput_rabbitmq_cpu_pct_median,$(g cpub_single),$(g cpub_cluster),$(ratio cpub),"
	echo "lag_p50_ms_at_${LAG_RATE}_per_s_median_of_$REPEAT,$(g lag50_single),$(g lag50_cluster),$(ratio lag50),"
	echo "lag_p99_ms_at_${LAG_RATE}_per_s_median_of_$REPEAT,$(g lag99_single),$(g lag99_cluster),$(ratio lag99),"
	echo "lag_max_ms_at_${LAG_RATE}_per_s_median_of_$REPEAT,$(g lagmax_single),$(g lagmax_cluster),$(ratio lagmax),"
	for ((r = 1; r <= REPEAT; r++)); do
		echo "lag_p50_ms_round_$r,$(g lag50_single_$r),$(g lag50_cluster_$r),$(fdiv "$(g lag50_cluster_$r)" "$(g lag50_single_$r)"),"
		echo "lag_p99_ms_round_$r,$(g lag99_single_$r),$(g lag99_cluster_$r),$(fdiv "$(g lag99_cluster_$r)" "$(g lag99_single_$r)"),"
	done
	for f in "${FO[@]}"; do
		set -- $f
		echo "failover_kill_${1}_resume_s,,$5,,<=5"
	done
	echo "failover_resume_p50_s_over_${fo_n}_kills,,$fo_p50,,<=5"
	echo "failover_resume_max_s,,${fo_max:-n/a},,"
	echo "failover_rows_written_all_arrived,,$(g fo_rows),,"
	for f in "${HZ[@]}"; do
		set -- $f
		echo "hang_${FREEZE_S}s_${1}_node_resume_s,,$6,,"
		echo "hang_${FREEZE_S}s_${1}_node_longest_pause_s,,$7,,"
	done
} >"$OUT_CSV"

us_per_row() { awk -v c="$1" -v r="$2" 'BEGIN {if (c ~ /^[0-9.]+$/ && r ~ /^[0-9.]+$/ && r > 0) printf "%.0f", c / 100 / r * 1e6; else print "?"}'; }
thr_v=$(verdict "$thr_ratio" '>=' 0.8)
fo_v=$(verdict "$fo_p50" '<=' 5)
fo_all=$(verdict "${fo_max:-x}" '<=' 5)
{
	echo "# evrep on a three-node RabbitMQ cluster (quorum queues) vs one node (classic queues)"
	echo
	echo "\`$CMD\` on $(date -u +%F), commit $COMMIT (installed evrep.so md5 $SO);"
	echo "$(nproc) vCPUs, load average $LOAD0 before and $LOAD1 after;"
	echo "also running on the machine at the start: $OTHERS0; at the end: $OTHERS1${OTHERS_CHANGED:+ (it changed during the run: see the details)}."
	echo "Both set-ups run side by side on this machine, each with two PostgreSQL 15 nodes (A publishes, B"
	echo "subscribes); the cluster's three RabbitMQ nodes share the same $(nproc) CPUs. Each phase runs $REPEAT rounds,"
	echo "one set-up at a time, alternating (round 1 single first, round 2 cluster first, ...); figures are medians over"
	echo "the rounds. Machine busy before the phases (other load, both set-ups idle): $(g busy)%."
	echo
	echo "| metric (median of $REPEAT rounds) | single node, classic | 3-node cluster, quorum | cluster / single | goal |"
	echo "|---|---|---|---|---|"
	echo "| end-to-end rows/s, $N_THR single-row txns, $CLIENTS clients | $(g thr_single) | $(g thr_cluster) | **$thr_ratio** | ≥ 0.8 ($thr_v) |"
	echo "| writer tps on A during that run | $(g thrw_single) | $(g thrw_cluster) | $(ratio thrw) | |"
	echo "| B finished this long after the writer (s) | $(g thrt_single) | $(g thrt_cluster) | | |"
	echo "| RabbitMQ CPU during that run (% of one CPU, all its nodes) | $(g cpub_single) | $(g cpub_cluster) | $(ratio cpub) | |"
	echo "| lag p50 at $LAG_RATE rows/s, ms (B applied_at − A commit) | $(g lag50_single) | $(g lag50_cluster) | **$(ratio lag50)** | |"
	echo "| lag p99 (ms) | $(g lag99_single) | $(g lag99_cluster) | **$(ratio lag99)** | |"
	echo "| lag max (ms) | $(g lagmax_single) | $(g lagmax_cluster) | $(ratio lagmax) | |"
	echo
	echo "Per round (single / cluster):"
	echo
	echo "| round | rows/s | cluster / single | also running (throughput) | lag p50 (ms) | lag p99 (ms) | also running (lag) |"
	echo "|---|---|---|---|---|---|---|"
	for ((r = 1; r <= REPEAT; r++)); do
		echo "| $r | $(g thr_single_$r) / $(g thr_cluster_$r) | $(fdiv "$(g thr_cluster_$r)" "$(g thr_single_$r)") | ${R[oth_thr_$r]:-nothing else} | $(g lag50_single_$r) / $(g lag50_cluster_$r) ($(fdiv "$(g lag50_cluster_$r)" "$(g lag50_single_$r)")×) | $(g lag99_single_$r) / $(g lag99_cluster_$r) ($(fdiv "$(g lag99_cluster_$r)" "$(g lag99_single_$r)")×) | ${R[oth_lag_$r]:-nothing else} |"
	done
	echo
	echo "(*also running*: other processes seen at the start or end of that round's runs: a test suite, another bench.)"
	echo
	echo "Failover on the cluster: a writer inserts single-row transactions at $FO_RATE rows/s on A; $KILLS times"
	echo "the RabbitMQ node leading B's quorum queue is SIGKILLed (after ${SETTLE} s of steady writing), then"
	echo "restarted; the next kill waits until 3 nodes run and the queue has 3 members online."
	echo "*Resume* = from the SIGKILL of the leader's process group to B applying the first row that A committed"
	echo "after the SIGKILL (A's \`created\` = clock_timestamp() of the INSERT, B's applied_at, one clock)."
	echo "*Longest pause*: the longest time around the kill in which B applied nothing (at $FO_RATE rows/s it"
	echo "otherwise applies every few ms)."
	echo
	echo "| kill | leader killed | publisher on it? | consumer on it? | resume (s) | longest pause in B's applies (s) | new leader | restart until 3 running (s) | worst lag until next kill (s) |"
	echo "|---|---|---|---|---|---|---|---|---|"
	k=0
	read -r -a maxlags <<<"${R[fo_maxlag]:-}"
	yn() { [[ "$1" == "$2" ]] && echo yes || echo "no (member $1)"; }
	for f in "${FO[@]}"; do
		set -- $f
		echo "| $1 | member $2 | $(yn "$3" "$2") | $(yn "$4" "$2") | **$5** | $6 | member $7 | $8 | ${maxlags[k]:-?} |"
		k=$((k + 1))
	done
	echo
	echo
	echo "Hung nodes: with the same writer, the node of each role is frozen (SIGSTOP of its beam.smp: its kernel"
	echo "still accepts and acknowledges TCP, nothing answers) for $FREEZE_S s, then thawed (SIGCONT)."
	echo "$(g hz_settings) (A's settings)."
	echo
	echo "| frozen | member | publisher on it? | consumer on it? | leads B's queue? | resume (s) | longest pause in B's applies (s) |"
	echo "|---|---|---|---|---|---|---|"
	for f in "${HZ[@]}"; do
		set -- $f
		echo "| the $1's node | member $2 | $(yn "$3" "$2") | $(yn "$4" "$2") | $(yn "$5" "$2") | **$6** | $7 |"
	done
	echo
	echo "Also running during the kills: ${R[oth_fo]:-nothing else}."
	echo "Resume p50 over $fo_n kills: **$fo_p50 s**, max ${fo_max:-n/a} s (goal ≤ 5 s: p50 $fo_v, every kill $fo_all)."
	echo "After the kills: $(g fo_rows) rows written during the failover phase, all on B${R[fo_lost]:+ — ${R[fo_lost]}};"
	echo "B skipped $(g fo_skipped) redelivered duplicates; $(g fo_dead) dead letters."
	echo
	echo "## What it means"
	echo
	echo "Throughput on the cluster is $thr_ratio× the single node's (median of $REPEAT rounds; per round: $thr_pairs;"
	echo "goal ≥ 0.8×: $thr_v). Commit→applied lag at $LAG_RATE rows/s is $(ratio lag50)× (p50) and $(ratio lag99)× (p99) the"
	echo "single node's: the cluster confirms a message only once a majority of its three nodes has it (Raft)."
	echo "The three RabbitMQ nodes share $(nproc) CPUs with the databases and the writers here (in production each"
	echo "has a machine of its own): they used $(g cpub_cluster)% of a CPU against $(g cpub_single)% for the single node during the"
	echo "throughput runs, $(us_per_row "$(g cpub_cluster)" "$(g thr_cluster)") against $(us_per_row "$(g cpub_single)" "$(g thr_single)") µs of broker CPU per row."
	if awk -v a="$(g thrt_single)" -v b="$(g thrt_cluster)" 'BEGIN {exit !(a ~ /^-?[0-9.]+$/ && b ~ /^-?[0-9.]+$/ && a < 1 && b < 1)}'; then
		echo "In both set-ups B had the last row within a second of the writers' end: the end-to-end rate is the"
		echo "writers' rate on A (machine busy $(g cpum_single)% / $(g cpum_cluster)%), and no backlog built up in evrep's pipeline."
	fi
	echo "Killing the leader of the subscriber's queue held replication for p50 $fo_p50 s"
	echo "(goal ≤ 5 s: $fo_v; max ${fo_max:-n/a} s), $( [[ -n "${R[fo_rows]:-}" && -z "${R[fo_lost]:-}" ]] && echo "and every row written meanwhile arrived" || echo "and NOT every row written meanwhile was seen on B: ${R[fo_lost]:-the phase failed}")."
	echo "All from this one run on a shared machine: compare the ratios, not the absolute figures, with other runs."
	bench_details_md
} >"$OUT_MD"
bench_written "$OUT_CSV" "$OUT_MD"
