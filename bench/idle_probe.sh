#!/usr/bin/env bash
# What the liveness probe of a silent connection costs when nothing happens
# (issue 24): one RabbitMQ node, one idle PostgreSQL node (its publisher and
# consumer connected, no writes), sampled for EVREP_BENCH_IDLE_SECS (60) s
# with evrep.broker_timeout = 5 s (the default: a probe after 2.5 s of
# silence) and with 1 h (no probe in the window: the cost before issue 24),
# alternating, EVREP_BENCH_REPEAT (2) rounds each.  Per setting: the
# broker's CPU (utime + stime of beam.smp) and the TCP segments both ways on
# the node's two AMQP connections (ss -ti segs_in + segs_out, both ends).
#
#   bench/idle_probe.sh
#
# Ports: AMQP 6610 (distribution 26610, epmd 16610), PostgreSQL 6660.
# Output: a table on stdout and bench/results/idle_probe.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export EVREP_TEST_DIR=${EVREP_TEST_DIR:-/tmp/evrep-test-idle}
source test/lib/topology.sh
source bench/lib.sh
SECS=${EVREP_BENCH_IDLE_SECS:-60}
REPEAT=${EVREP_BENCH_REPEAT:-2}
bench_traps

topo_up <<EOF
broker idmq port=6610
node idn port=6660 publish=customer subscribe=customer schema="CREATE TABLE customer (id int PRIMARY KEY)"
EOF
beam=$(cat "$(rmq_dir idmq)/beam.pid")
ticks() { awk '{print $14 + $15}' "/proc/$beam/stat"; }
segs() { # segments in + out on every connection to the AMQP port, both ends
	ss -tinH state established "( sport = :6610 or dport = :6610 )" |
		grep -o 'segs_\(in\|out\):[0-9]*' | awk -F: '{s += $2} END {print s + 0}'
}
set_timeout() {
	q idn "ALTER SYSTEM SET evrep.broker_timeout = '$1'" >/dev/null
	q idn "SELECT pg_reload_conf()" >/dev/null
	# the workers reconnect on a changed setting: let that settle
	sleep 5
	topo_wait_ready 60 idn
}
declare -A CPU SEG
for ((r = 1; r <= REPEAT; r++)); do
	for t in 5s 1h; do
		set_timeout "$t"
		c0=$(ticks) s0=$(segs)
		sleep "$SECS"
		c1=$(ticks) s1=$(segs)
		CPU[$t]+="$(awk -v a="$c0" -v b="$c1" -v hz="$(getconf CLK_TCK)" -v s="$SECS" 'BEGIN {printf "%.2f", (b - a) / hz / s * 100}') "
		SEG[$t]+="$(awk -v a="$s0" -v b="$s1" -v s="$SECS" 'BEGIN {printf "%.2f", (b - a) / s}') "
		log "round $r, broker_timeout $t: broker CPU ${CPU[$t]##* }%, segments/s ${SEG[$t]##* }"
	done
done
{
	echo "# Idle cost of the liveness probe (bench/idle_probe.sh)"
	echo
	echo "$(date -u +%F), commit $(git rev-parse --short HEAD), $(nproc) vCPUs, load average $(loadavg); one RabbitMQ"
	echo "node, one idle PostgreSQL node (publisher and consumer connected, nothing written), ${SECS} s per sample,"
	echo "$REPEAT rounds alternating. evrep.heartbeat 30 s (default) in both."
	echo
	echo "| evrep.broker_timeout | broker CPU, % of one CPU (per round) | TCP segments/s on the two connections, both ends (per round) |"
	echo "|---|---|---|"
	echo "| 5 s (probe after 2.5 s of silence) | ${CPU[5s]} | ${SEG[5s]} |"
	echo "| 1 h (no probe: as before) | ${CPU[1h]} | ${SEG[1h]} |"
} | tee bench/results/idle_probe.md
