#!/usr/bin/env bash
# Where evrep's replication lag goes, hop by hop, at a steady low rate.
#
#   bench/lag_split.sh
#
# Starts one RabbitMQ node (AMQP 5741) and two PostgreSQL 15 nodes, A (5871,
# publishes ev) and B (5872, subscribes ev), writes single-row transactions
# on A at EVREP_BENCH_RATE rows/s (default 1000) for EVREP_BENCH_SECS
# seconds (default 10), and captures the AMQP traffic on the loopback with
# tcpdump. Each row carries a unique md5 payload, which is found in the frame
# the publisher sends (publish) and in the one the broker sends B's consumer
# (deliver), so each row's lag splits into:
#
#   commit -> publish     A's commit timestamp to the publish frame: A's
#                         commit flush, the publisher's wake-up, its numbering
#                         transaction and that one's flush, the encoding
#   publish -> deliver    RabbitMQ: routing, the queue's persistence, delivery
#   deliver -> B commit   B's consumer: parse, apply, commit
#
# The flush of one 8 kB write on this disk (pg_test_fsync, fdatasync, on
# A's data directory) is measured too: commit -> publish holds two of them
# (the writer's commit, the publisher's numbering), which no implementation
# of evrep's promises can skip (a number must be durable before it leaves).
#
# Output: a table on stdout and bench/results/lag-split[-TAG].md.
#
# Environment: EVREP_TEST_DIR (default /tmp/evrep-bench-split),
#   EVREP_BENCH_RATE, EVREP_BENCH_SECS, EVREP_BENCH_QUEUE_TYPE (quorum or
#   classic, evrep.queue_type; default quorum), EVREP_BENCH_CONF (extra
#   postgresql.conf lines for both nodes, separated by ';'), EVREP_BENCH_TAG
#   (appended to the output file name), EVREP_BENCH_OUTDIR (default
#   bench/results).
# Needs tcpdump and python3 (installed with apt-get if missing) and root for
# the capture.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export EVREP_TEST_DIR=${EVREP_TEST_DIR:-/tmp/evrep-bench-split}
source test/lib/topology.sh
source bench/lib.sh   # log, q, bench_traps, bench_extra_conf, bench_up_ev

RATE=${EVREP_BENCH_RATE:-1000}
SECS=${EVREP_BENCH_SECS:-10}
QT=${EVREP_BENCH_QUEUE_TYPE:-quorum}
[[ $RATE =~ ^[1-9][0-9]*$ ]] || { echo "EVREP_BENCH_RATE: '$RATE' is not a rate in rows/s" >&2; exit 2; }
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "EVREP_BENCH_SECS: '$SECS' is not a count of seconds" >&2; exit 2; }
[[ $QT == quorum || $QT == classic ]] || { echo "EVREP_BENCH_QUEUE_TYPE: '$QT' is neither quorum nor classic" >&2; exit 2; }
MQ=splitmq; MQ_PORT=5741
A=splita; A_PORT=5871
B=splitb; B_PORT=5872
RES=${EVREP_BENCH_OUTDIR:-$ROOT/bench/results}
OUT_MD=$RES/lag-split${EVREP_BENCH_TAG:+-$EVREP_BENCH_TAG}.md


for c in tcpdump python3; do
	if ! command -v $c >/dev/null; then
		log "installing $c"
		# a fresh machine has no package lists yet: update once, then retry
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $c ||
			{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $c; }; } >/dev/null ||
			{ echo "lag_split: $c is missing and could not be installed" >&2; exit 1; }
	fi
done
PG_TEST_FSYNC=$("$PG_CONFIG" --bindir)/pg_test_fsync
[[ -x $PG_TEST_FSYNC ]] || { echo "lag_split: $PG_TEST_FSYNC is missing" >&2; exit 1; }

tmp=$(mktemp -d)
BENCH_TMP=$tmp
bench_traps

CONF="conf=\"evrep.queue_type = $QT\" conf=\"shared_buffers = '256MB'\"$(bench_extra_conf)"
log "starting RabbitMQ and PostgreSQL nodes ($QT queue, dir $EVREP_TEST_DIR)"
bench_up_ev "CREATE SEQUENCE ev_id_seq; CREATE TABLE ev (id bigint PRIMARY KEY, payload text NOT NULL, created timestamptz DEFAULT clock_timestamp());" \
	"CREATE TABLE ev (id bigint PRIMARY KEY, payload text NOT NULL, created timestamptz, applied_at timestamptz DEFAULT clock_timestamp());" "$CONF"

# warm both paths (plans, queue, connections) before anything is timed
q $A "INSERT INTO ev (id, payload) SELECT nextval('ev_id_seq'), md5(g::text) FROM generate_series(1, 100) g"
until (($(q $B "SELECT count(*) FROM ev") >= 100)); do sleep 0.2; done

log "fdatasync of one 8 kB write (pg_test_fsync, A's data directory)"
"$PG_TEST_FSYNC" -s 2 -f "$(pg_datadir $A)/lag_split.fsync" >"$tmp/fsync.out" 2>&1 ||
	{ cat "$tmp/fsync.out" >&2; exit 1; }
rm -f "$(pg_datadir $A)/lag_split.fsync"
# the first fdatasync line is in "one 8kB write"
FSYNC_US=$(awk '$1 == "fdatasync" {print $(NF - 1); exit}' "$tmp/fsync.out")
[[ $FSYNC_US =~ ^[0-9.]+$ ]] || { cat "$tmp/fsync.out" >&2; echo "lag_split: no fdatasync figure from pg_test_fsync" >&2; exit 1; }

printf "INSERT INTO ev (id, payload) VALUES (nextval('ev_id_seq'), md5(random()::text || clock_timestamp()));\n" >"$tmp/ev.sql"
lo=$(q $A "SELECT last_value FROM ev_id_seq")
tcpdump -i lo -n -s 0 -w - "tcp port $MQ_PORT" 2>"$tmp/tcpdump.err" >"$tmp/amqp.pcap" &
TD_PID=$!
BENCH_BG+=("$TD_PID")
sleep 1
kill -0 $TD_PID 2>/dev/null || { cat "$tmp/tcpdump.err" >&2; echo "lag_split: tcpdump did not start" >&2; exit 1; }
log "writing at $RATE rows/s for $SECS s"
"$PG_BINDIR/pgbench" -n -h 127.0.0.1 -p $A_PORT -U postgres -c 8 -j 2 -R "$RATE" -T "$SECS" \
	-f "$tmp/ev.sql" "$(pg_dbname $A)" >"$tmp/pgbench.out" 2>&1 || { cat "$tmp/pgbench.out" >&2; exit 1; }
hi=$(q $A "SELECT last_value FROM ev_id_seq")
deadline=$((SECONDS + 60))
until (($(q $B "SELECT count(*) FROM ev WHERE id > $lo AND id <= $hi") >= hi - lo)); do
	((SECONDS < deadline)) || { echo "lag_split: B lacks rows 60 s after the writer" >&2; exit 1; }
	sleep 0.2
done
sleep 0.5
kill $TD_PID; wait $TD_PID 2>/dev/null || true

q $A "COPY (SELECT payload, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM ev WHERE id > $lo AND id <= $hi) TO STDOUT WITH CSV" >"$tmp/a.csv"
q $B "COPY (SELECT payload, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM ev WHERE id > $lo AND id <= $hi) TO STDOUT WITH CSV" >"$tmp/b.csv"

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || true)
mkdir -p "$RES"
python3 - "$tmp" "$MQ_PORT" "$FSYNC_US" "$RATE" "$SECS" "$QT" "$COMMIT" "$(nproc)" "${EVREP_BENCH_CONF:-}" >"$OUT_MD" <<'PY'
import bisect, csv, re, struct, sys, time
tmp, port, fsync_us, rate, secs, qt, commit, cpus, conf = sys.argv[1:]
port = int(port)
commit_a = {r[0]: float(r[1]) for r in csv.reader(open(tmp + '/a.csv'))}
commit_b = {r[0]: float(r[1]) for r in csv.reader(open(tmp + '/b.csv'))}
md5 = re.compile(rb'[0-9a-f]{32}')

def packets(path):
    """(time, source port, destination port, TCP payload) of each IPv4 packet."""
    f = open(path, 'rb')
    head = f.read(24)
    nano = struct.unpack('<I', head[:4])[0] == 0xa1b23c4d
    link = struct.unpack('<I', head[20:24])[0]
    skip = {0: 4, 1: 14, 113: 16}.get(link)
    if skip is None:
        sys.exit('lag_split: capture has link type %d' % link)
    while True:
        h = f.read(16)
        if len(h) < 16:
            return
        sec, frac, incl, _ = struct.unpack('<IIII', h)
        ip = f.read(incl)[skip:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        tcp = ip[(ip[0] & 15) * 4:]
        sport, dport = struct.unpack('>HH', tcp[:4])
        payload = tcp[(tcp[12] >> 4) * 4:]
        if payload:
            yield sec + frac / (1e9 if nano else 1e6), sport, dport, payload

def frames(path):
    """(time, client port, towards the broker, frame type, frame payload) per AMQP frame."""
    pending = {}
    for ts, sp, dp, data in packets(path):
        key = (sp, dp)
        b = pending.get(key, b'') + data
        if b.startswith(b'AMQP'):
            b = b[8:]
        while len(b) >= 8:
            kind, _, size = struct.unpack('>BHI', b[:7])
            if len(b) < 8 + size:
                break
            if b[7 + size] != 0xCE:
                b = b''  # capture began inside a frame: resume at the next packet
                break
            yield ts, sp if dp == port else dp, dp == port, kind, b[7:7 + size]
            b = b[8 + size:]
        pending[key] = b

METHOD, BODY = 1, 3
PUBLISH, DELIVER, ACK = (60, 40), (60, 60), (60, 80)
published, delivered = {}, {}   # row -> time of the first frame carrying it
publishes = []                  # publisher's messages: [time, confirm time]
confirms = []                   # (time, delivery tag, multiple)
publisher = None
last_method = {}
for ts, client, to_broker, kind, p in frames(tmp + '/amqp.pcap'):
    if kind == METHOD:
        method = struct.unpack('>HH', p[:4])
        last_method[(client, to_broker)] = method
        if to_broker and method == PUBLISH:
            publisher = client
            publishes.append([ts, None])
        elif not to_broker and method == ACK and client == publisher:
            tag, bits = struct.unpack('>QB', p[4:13])
            confirms.append((ts, tag, bits & 1))
    elif kind == BODY:
        method = last_method.get((client, to_broker))
        target = published if to_broker and method == PUBLISH else delivered if method == DELIVER else None
        if target is not None:
            for h in md5.findall(p):
                target.setdefault(h.decode(), ts)
# Nothing is in flight when the capture starts (the warm-up was applied),
# so the first confirm covers the first message, or every message sent
# before it (multiple).
if confirms:
    ts0, tag0, multiple0 = confirms[0]
    base = tag0 - (sum(1 for m in publishes if m[0] < ts0) if multiple0 else 1)
    done = 0
    for ts, tag, multiple in confirms:
        upto = tag - base
        for m in publishes[done if multiple else upto - 1:upto]:
            m[1] = ts
        done = max(done, upto)
sent_at = [m[0] for m in publishes]
def released(c):
    """When the publisher was free to send a row committed at c: the last
    confirm of the messages sent before c (publish_window 1), if later."""
    i = bisect.bisect_left(sent_at, c)
    latest = max((m[1] or c for m in publishes[max(0, i - 4):i]), default=c)
    return max(c, latest)
rows = []
for h, c in commit_a.items():
    if h in published and h in delivered and h in commit_b:
        p, d, b = published[h], delivered[h], commit_b[h]
        r = min(released(c), p)
        rows.append((p - c, r - c, p - r, d - p, b - d, b - c))
if len(rows) < 0.95 * len(commit_a):
    sys.exit('lag_split: only %d of %d rows were found in both frames' % (len(rows), len(commit_a)))
def pct(i, q):
    v = sorted(r[i] * 1e3 for r in rows)
    return v[min(len(v) - 1, int(len(v) * q))]
fs = float(fsync_us) / 1e3
print('# evrep lag, hop by hop\n')
print('`bench/lag_split.sh`, commit %s, %s, %s CPUs: %s single-row transactions on A at %s rows/s for %s s, '
      'evrep.queue_type = %s%s; %d rows found in both the publish and the deliver frame, %d messages, '
      '%d confirms.\n' % (commit, time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), cpus, len(commit_a),
                           rate, secs, qt, conf and ', ' + conf, len(rows), len(publishes), len(confirms)))
print('| hop | p50 ms | p90 ms | p99 ms |')
print('|---|---|---|---|')
names = ['A commit -> publish frame', '... of which waiting for the confirm of a message sent before the commit',
         '... of which after that: wake-up, numbering transaction, its flush, encoding',
         'publish -> deliver frame (RabbitMQ)', 'deliver frame -> B commit', 'total: A commit -> B commit']
for i, n in enumerate(names):
    print('| %s | %.2f | %.2f | %.2f |' % (n, pct(i, .5), pct(i, .9), pct(i, .99)))
print('\nThe parts are percentiles of their own; they do not add up.\n')
print('fdatasync of one 8 kB write on this disk (pg_test_fsync, idle): %.3f ms. A commit -> publish holds two '
      '(the writer\'s commit flush, the publisher\'s numbering flush).\n' % fs)
floor = 2 * fs + pct(3, .5) + pct(4, .5)
print('Floor of the p50 with every other cost at zero: 2 x fdatasync + the broker hop p50 + B\'s part p50 '
      '= %.2f ms.' % floor)
PY
cat "$OUT_MD"
log "written $OUT_MD"
