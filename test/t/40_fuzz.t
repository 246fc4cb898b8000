#!/usr/bin/env bash
# 40_fuzz: 100,000 generated and mutated evrep.v1 messages -- 60,000 through
# the broker, published by test/tools/evrep_fuzz.c as the stranger broker user
# "fuzzer" (allowed to speak for origin "fzbig" too), and 40,000 through
# evrep_apply() on B -- while A's writer inserts rows into its published
# table. The tool decides what must become of every message from a model of
# the subscriber and writes it down; this test reconciles that with B:
# every malformed message parked whole (by its marker, with its SQLSTATE and
# attempts), every bad event parked alone, every stream's progress and every
# row of fz_t as modelled, every bit flip accounted for; A's rows all on B
# once; nothing written outside the subscriptions; no server restarted; the
# consumer connected and its queue empty. Last, a message for a table name
# too long for an index entry, and a valid one behind it.
#
# EVREP_FUZZ_SEED (default 4040), EVREP_FUZZ_BROKER (60000), EVREP_FUZZ_SQL
# (40000) change the run; the seed reproduces it.
# Ports: AMQP 5721 (epmd 15721, distribution 25721), PostgreSQL 5903 (A) and
# 5904 (B).
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/replication_lib.sh"

# The tool knows these names: A is the real origin it forges, "fuzzer" its user.
MQ=fz_mq A=fz_a B=fz_b
SEED=${EVREP_FUZZ_SEED:-4040}
N_BROKER=${EVREP_FUZZ_BROKER:-60000}
N_SQL=${EVREP_FUZZ_SQL:-40000}
T0=$SECONDS

# fz_t: the modelled table; fz_r0..3: where the bit flips go; fz_unsub exists
# but is not subscribed.
FZ_DDL="CREATE TABLE fz_t (id int PRIMARY KEY, name text NOT NULL, credit int);\
 CREATE TABLE fz_unsub (id int PRIMARY KEY, name text NOT NULL, credit int);\
 CREATE TABLE fz_r0 (id int PRIMARY KEY, name text, credit int);\
 CREATE TABLE fz_r1 (LIKE fz_r0 INCLUDING ALL); CREATE TABLE fz_r2 (LIKE fz_r0 INCLUDING ALL);\
 CREATE TABLE fz_r3 (LIKE fz_r0 INCLUDING ALL);\
 SELECT evrep_allow_sender('fzbig', 'fuzzer')"

topo_up_tap <<EOF
broker $MQ port=5721 users=fuzzer
node $A port=5903 publish=customer schema="$CUSTOMER_DDL"
node $B port=5904 subscribe=customer,fz_t,fz_r0,fz_r1,fz_r2,fz_r3 schema="$CUSTOMER_DDL" schema="$FZ_DDL"
EOF
QB=$(topo_queue "$B")
URL=$(topo_broker_url "$MQ" fuzzer)
DIR=$EVREP_TEST_DIR/fuzz.$$
rm -rf "$DIR" && mkdir -p "$DIR" && chmod 755 "$DIR"
# the messages can be made again from the seed; the manifests are kept if a test failed
on_exit 'rm -f "$DIR/sql.tsv"; if (( _TAP_FAILED )); then diag "manifests kept in $DIR"; else rm -rf "$DIR"; fi'

# fuzz_tool ARGS... -- test/tools/evrep_fuzz.c, built on first use
FUZZ_SRC=$(cd "$(dirname "$0")/../tools" && pwd)/evrep_fuzz.c
fuzz_tool() {
    local bin=$EVREP_TEST_DIR/bin/evrep_fuzz
    if [[ ! -x "$bin" || "$FUZZ_SRC" -nt "$bin" ]]; then
        mkdir -p "${bin%/*}" || return 1
        # shellcheck disable=SC2046
        cc -O2 -Wall -Wextra -o "$bin.$$" "$FUZZ_SRC" $(pkg-config --cflags --libs librabbitmq) \
            && mv -f "$bin.$$" "$bin" || { evrep_err "cannot build $FUZZ_SRC"; return 1; }
    fi
    "$bin" "$@"
}
ok "evrep_fuzz builds" fuzz_tool sql 1 10 "$DIR"

postmaster_pid() { head -n 1 "$(pg_datadir "$1")/postmaster.pid"; }
# what a server was before the fuzz: postmaster, start time, consumer
health() {
    printf '%s|%s\n' "$(postmaster_pid "$1")" \
        "$(sql "$1" "SELECT pg_postmaster_start_time(), (SELECT pid FROM evrep.worker_state() WHERE worker = 'consumer')")"
}
# B's relations outside the system schemas, and what evrep is told to apply
relations() {
    sql "$B" "SELECT string_agg(n.nspname || '.' || c.relname || ':' || c.relkind::text, ',' ORDER BY n.nspname, c.relname)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
                AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'"
}
config() {
    sql "$B" "SELECT md5(row(array(SELECT s FROM evrep.subscription s ORDER BY s.schema_name, s.table_name),
                             array(SELECT s FROM evrep.sender s ORDER BY s.origin, s.broker_user),
                             array(SELECT p FROM evrep.publication p ORDER BY p.id))::text),
                     (SELECT count(*) FROM pg_roles)"
}
HEALTH_A=$(health "$A") HEALTH_B=$(health "$B") RELS_B=$(relations) CONFIG_B=$(config)
like "$HEALTH_A/$HEALTH_B" '^[0-9]+\|[^|]+\|[0-9]+/[0-9]+\|[^|]+\|[0-9]+$' "A's and B's postmaster, start time and consumer noted"
like "$RELS_B|$CONFIG_B" '^.*public\.fz_t:r.*\|[0-9a-f]{32}\|[0-9]+$' "B's relations, subscriptions, senders and roles noted"
note "seed $SEED; $N_BROKER messages through the broker, $N_SQL through evrep_apply"

# ---- the fuzz -------------------------------------------------------------------
ok "A: a writer inserts customers while the fuzz runs" start_writer fzwriter "$A" customer 1 1000000 0.005

ok "generate $N_SQL messages for evrep_apply" fuzz_tool sql "$SEED" "$N_SQL" "$DIR"
# One session, in order (the model applies them in order); every call that
# raises instead of applying or parking is recorded.
cat >"$DIR/apply.sql" <<EOF
CREATE TEMP TABLE fz_in (n int, sender text, hex text);
\\copy fz_in FROM '$DIR/sql.tsv'
CREATE TEMP TABLE fz_err (n int, sqlstate text, message text);
DO \$\$
DECLARE
    r record;
    i int := 0;
BEGIN
    FOR r IN SELECT n, sender, hex FROM fz_in ORDER BY n LOOP
        BEGIN
            PERFORM evrep_apply(convert_from(decode(r.hex, 'hex'), 'UTF8'), r.sender);
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO fz_err VALUES (r.n, SQLSTATE, left(SQLERRM, 300));
        END;
        i := i + 1;
        IF i % 200 = 0 THEN
            COMMIT;
        END IF;
    END LOOP;
END
\$\$;
SELECT 'raised: message ' || n || ': ' || sqlstate || ' ' || message FROM fz_err ORDER BY n;
\\echo evrep_apply done
EOF
rm -f "$(bg_logfile fzsql)"
ok "evrep_apply the $N_SQL messages on B (in the background)" \
    bg_start fzsql "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(pg_port "$B")" \
        -U postgres -d "$(pg_dbname "$B")" -f "$DIR/apply.sql"

t_pub=$SECONDS
ok "publish $N_BROKER messages to the exchange, every one confirmed" fuzz_tool broker "$URL" "$SEED" "$N_BROKER" "$DIR"
note "published in $((SECONDS - t_pub)) s"

ok "evrep_apply went through all $N_SQL messages" wait_until 240 '! bg_is_running fzsql' 0.5
SQLLOG=$(bg_logfile fzsql)
like "$(tail -n 1 "$SQLLOG")" '^evrep_apply done$' "the evrep_apply session ended normally"
is "$(grep -c '^raised: ' "$SQLLOG")" 0 "evrep_apply never raised: every message was applied or parked"
grep '^raised: ' "$SQLLOG" | head -n 5 | cut -c 1-400 | while IFS= read -r l; do diag "  $l"; done

ok "stop A's writer" stop_writer fzwriter
ok "the writer committed its last row" wait_until 60 'writer_done fzwriter'
LAST=$(writer_last fzwriter)
note "A wrote customers 1..$LAST during the fuzz"
ok "B's queue drains" wait_until 180 '[[ $(rmq_queue_depth "$MQ" "$QB") == 0 ]]' 1
ok "A's outbox drains" wait_value 60 0 outbox_depth "$A"
ok "B has A's $LAST customers" wait_value 60 "$LAST" row_count "$B" customer
note "the fuzz took $((SECONDS - t_pub)) s"

# ---- reconciliation ----------------------------------------------------------------
# One line per check: name|what|expected|got|detail
read -r -d '' RECON <<'EOF'
CREATE TEMP TABLE m_raw (marker text, kind text, sqlstate text, attempts int);
CREATE TEMP TABLE m_evpark (kind text, origin text, schema_hex text, table_hex text, seq bigint, sqlstate text);
CREATE TEMP TABLE m_rows (id int, name_hex text, credit int);
CREATE TEMP TABLE m_streams (origin text, schema_hex text, table_hex text, applied bigint,
                             skipped bigint, parked bigint, last_seq bigint);
CREATE TEMP TABLE m_flips (marker text);
CREATE TEMP TABLE m_unmarked (kind text, body_hex text);
\copy m_raw FROM '@DIR@/broker.raw.tsv'
\copy m_raw FROM '@DIR@/sql.raw.tsv'
\copy m_evpark FROM '@DIR@/broker.evpark.tsv'
\copy m_evpark FROM '@DIR@/sql.evpark.tsv'
\copy m_rows FROM '@DIR@/broker.rows.tsv'
\copy m_rows FROM '@DIR@/sql.rows.tsv'
\copy m_streams FROM '@DIR@/broker.streams.tsv'
\copy m_streams FROM '@DIR@/sql.streams.tsv'
\copy m_flips FROM '@DIR@/broker.flips.tsv'
\copy m_flips FROM '@DIR@/sql.flips.tsv'
\copy m_unmarked FROM '@DIR@/broker.unmarked.tsv'
\copy m_unmarked FROM '@DIR@/sql.unmarked.tsv'
-- dead letters, with the marker of a message parked whole (its first bytes)
CREATE TEMP TABLE dlm AS
SELECT id, seq, sqlstate, attempts, origin, schema_name, table_name,
       substring(CASE WHEN substr(body, 1, 2) = '\x' THEN encode(decode(substr(body, 3, 64), 'hex'), 'escape')
                      ELSE substr(body, 1, 32) END
                 FROM '^\{"fz":"([A-Z][0-9]+)"') AS marker,
       CASE WHEN octet_length(body) <= 64 THEN body END AS short_body
FROM evrep.dead_letter;
CREATE INDEX ON dlm (marker);
CREATE INDEX ON dlm (seq, md5(table_name));   -- a table name may be kilobytes long
CREATE TEMP TABLE streams_x AS
SELECT origin, convert_from(decode(schema_hex, 'hex'), 'UTF8') AS schema_name,
       convert_from(decode(table_hex, 'hex'), 'UTF8') AS table_name, applied, skipped, parked, last_seq
FROM m_streams;
CREATE TEMP TABLE evpark_x AS
SELECT kind, origin, convert_from(decode(schema_hex, 'hex'), 'UTF8') AS schema_name,
       convert_from(decode(table_hex, 'hex'), 'UTF8') AS table_name, seq, sqlstate
FROM m_evpark;
CREATE INDEX ON evpark_x (seq, table_name);
CREATE INDEX ON m_raw (marker);
CREATE INDEX ON m_flips (marker);
ANALYZE dlm; ANALYZE m_raw; ANALYZE m_flips; ANALYZE m_rows; ANALYZE evpark_x; ANALYZE streams_x;

-- 1. messages that must be parked whole: once, with their SQLSTATE and attempts. A long
-- table name may be parked as an event instead (the event carries the marker too).
SELECT 'raw', r.kind, count(*), count(*) FILTER (WHERE d.ok),
       coalesce(string_agg(r.marker || ' wants ' || r.sqlstate || '/' || r.attempts || ' got ' || coalesce(d.got, 'nothing'), '; ')
                FILTER (WHERE NOT d.ok), '')
FROM m_raw r
CROSS JOIN LATERAL (
    SELECT (count(*) = 1 AND bool_and(x.sqlstate LIKE r.sqlstate AND (r.attempts = 0 OR x.attempts = r.attempts)))
           OR (r.kind = 'long_table_name' AND count(*) = 0
               AND (SELECT count(*) FROM evrep.dead_letter l WHERE l.seq IS NOT NULL AND length(l.table_name) > 1000
                      AND strpos(l.body, '"fz": "' || r.marker || '"') > 0) = 1) AS ok,
           string_agg(x.sqlstate || '/' || x.attempts, ',') AS got
    FROM dlm x WHERE x.marker = r.marker AND x.seq IS NULL) d
GROUP BY r.kind ORDER BY r.kind;
-- 2. events that must be parked alone: once, with their SQLSTATE
SELECT 'evpark', e.kind, count(*), count(*) FILTER (WHERE d.n = 1 AND d.state_ok),
       coalesce(string_agg(e.origin || '/' || e.table_name || '/' || e.seq || ' wants ' || e.sqlstate || ' got ' || coalesce(d.got, 'nothing'), '; ')
                FILTER (WHERE NOT (d.n = 1 AND d.state_ok)), '')
FROM evpark_x e
CROSS JOIN LATERAL (
    SELECT count(*) AS n, bool_and(x.sqlstate = e.sqlstate) AS state_ok, string_agg(x.sqlstate, ',') AS got
    FROM dlm x WHERE x.seq = e.seq AND md5(x.table_name) = md5(e.table_name)
      AND (x.origin, x.schema_name, x.table_name) = (e.origin, e.schema_name, e.table_name)) d
GROUP BY e.kind ORDER BY e.kind;
-- 3. dead letters nobody predicted: parked whole without a known marker or body, or
-- events of the modelled streams that are not in the list
SELECT 'unexpected', 'parked whole', 0, count(*),
       coalesce(string_agg(x.id || ':' || coalesce(x.marker, 'no marker') || ':' || x.sqlstate, ', ') FILTER (WHERE x.rn <= 10), '')
FROM (SELECT x.*, row_number() OVER (ORDER BY x.id) AS rn FROM dlm x
      WHERE x.seq IS NULL
        AND NOT EXISTS (SELECT FROM m_raw r WHERE r.marker = x.marker)
        AND NOT EXISTS (SELECT FROM m_flips f WHERE f.marker = x.marker)
        AND NOT (x.marker IS NULL AND x.short_body IN (SELECT convert_from(decode(body_hex, 'hex'), 'UTF8') FROM m_unmarked))) x;
SELECT 'unexpected', 'parked events of the modelled streams', 0, count(*),
       coalesce(string_agg(x.origin || '/' || x.table_name || '/' || x.seq || ':' || x.sqlstate, ', ') FILTER (WHERE x.rn <= 10), '')
FROM (SELECT x.*, row_number() OVER (ORDER BY x.id) AS rn FROM dlm x
      JOIN streams_x s USING (origin, schema_name, table_name)
      WHERE x.seq IS NOT NULL
        AND NOT EXISTS (SELECT FROM evpark_x e WHERE (e.origin, e.schema_name, e.table_name, e.seq) = (x.origin, x.schema_name, x.table_name, x.seq))) x;
-- 4. bodies too small for a marker: as many parked as sent
SELECT 'unmarked', 'bodies without a marker, parked as many times as sent', sum(u.n), sum(u.n) - sum(abs(u.n - coalesce(g.n, 0))),
       coalesce(string_agg(u.body_hex || ' sent ' || u.n || ' parked ' || coalesce(g.n, 0), '; ') FILTER (WHERE u.n <> coalesce(g.n, 0)), '')
FROM (SELECT body_hex, count(*) AS n FROM m_unmarked GROUP BY body_hex) u
LEFT JOIN (SELECT short_body, count(*) AS n FROM dlm WHERE seq IS NULL AND marker IS NULL GROUP BY short_body) g
       ON g.short_body = convert_from(decode(u.body_hex, 'hex'), 'UTF8');
-- 5. progress (applied, skipped, parked, last seq) of every modelled stream
SELECT 'streams', 'progress as modelled', count(*),
       count(*) FILTER (WHERE (s.applied, s.skipped, s.parked, s.last_seq) IS NOT DISTINCT FROM (g.applied, g.skipped, g.parked, g.last_seq)),
       coalesce(string_agg(format('%s/%s.%s wants %s/%s/%s/%s got %s/%s/%s/%s', s.origin, s.schema_name, left(s.table_name, 30),
                                  s.applied, s.skipped, s.parked, s.last_seq, g.applied, g.skipped, g.parked, g.last_seq), '; ')
                FILTER (WHERE (s.applied, s.skipped, s.parked, s.last_seq) IS DISTINCT FROM (g.applied, g.skipped, g.parked, g.last_seq)), '')
FROM streams_x s LEFT JOIN evrep.progress g USING (origin, schema_name, table_name);
-- 6. every row of fz_t as modelled, and no other
SELECT 'rows', 'fz_t as modelled', (SELECT count(*) FROM m_rows), (SELECT count(*) FROM m_rows) - count(*),
       coalesce(string_agg(format('id %s: wants %s got %s', id, w, g), '; ') FILTER (WHERE rn <= 5), '')
FROM (SELECT coalesce(w.id, g.id) AS id, w.t AS w, g.t AS g, row_number() OVER (ORDER BY coalesce(w.id, g.id)) AS rn
      FROM (SELECT id, convert_from(decode(name_hex, 'hex'), 'UTF8') || '|' || coalesce(credit::text, 'NULL') AS t FROM m_rows) w
      FULL JOIN (SELECT id, name || '|' || coalesce(credit::text, 'NULL') AS t FROM fz_t) g USING (id)
      WHERE w.t IS DISTINCT FROM g.t) d;
-- 7. bit flips: each one parked whole, or its one event applied, skipped or parked in a
-- stream nobody modelled (not A's; fzodd is the fractional seqs', which must not parse;
-- long names are check 1's)
CREATE TEMP TABLE other AS
SELECT g.* FROM evrep.progress g
WHERE NOT EXISTS (SELECT FROM streams_x s WHERE (s.origin, s.schema_name, s.table_name) = (g.origin, g.schema_name, g.table_name))
  AND (g.origin, g.schema_name, g.table_name) <> ('fz_a', 'public', 'customer')
  AND g.origin <> 'fzodd' AND length(g.table_name) <= 1000;
SELECT 'flips', 'bit flips parked whole or their event counted', f.n, f.raw + o.events,
       format('%s parked whole (%s more than once), %s events in %s other streams', f.raw, f.twice, o.events, o.streams)
FROM (SELECT count(*) AS n, count(*) FILTER (WHERE d.n > 0) AS raw, count(*) FILTER (WHERE d.n > 1) AS twice
      FROM m_flips f CROSS JOIN LATERAL (SELECT count(*) AS n FROM dlm x WHERE x.marker = f.marker AND x.seq IS NULL) d) f,
     (SELECT coalesce(sum(applied + skipped + parked), 0) AS events, count(*) AS streams FROM other) o;
SELECT 'flips', 'parked events of the other streams', (SELECT coalesce(sum(parked), 0) FROM other),
       (SELECT count(*) FROM dlm x JOIN other g USING (origin, schema_name, table_name) WHERE x.seq IS NOT NULL), '';
EOF
RESULTS=$(printf '%s\n' "${RECON//@DIR@/$DIR}" | pg_psql "$B" 2>&1)
if grep -q '^flips|parked' <<<"$RESULTS"; then pass "the reconciliation ran"; else fail "the reconciliation ran" "$RESULTS"; fi
while IFS='|' read -r check what want got detail; do
    [[ -n "$check" ]] || continue
    case "$check" in
        raw) desc="$what: all $want messages parked whole, once, with the expected SQLSTATE and attempts" ;;
        evpark) desc="$what: all $want bad events parked alone, once, with the expected SQLSTATE" ;;
        unexpected) desc="no dead letter unaccounted for ($what)" ;;
        *) desc="$what ($want)" ;;
    esac
    is "$got" "$want" "$desc" || diag "  $(cut -c 1-1500 <<<"$detail")"
    [[ "$check" == flips && -n "$detail" ]] && note "  $detail"
done < <(grep -E '^(raw|evpark|unexpected|unmarked|streams|rows|flips)\|' <<<"$RESULTS")

# ---- A's real events, and nothing outside the subscriptions ------------------------
is "$(same_ids "$A" "$B" customer)" "$LAST|0|0" "A's $LAST customers all on B: none missing, none extra (no forged row)"
is "$(table_md5 "$B" customer)" "$(table_md5 "$A" customer)" "B's customer table is A's, byte for byte"
A_SEQ=$(sql "$A" "SELECT last_seq FROM evrep.publication WHERE table_name = 'customer'")
is "$(sql "$B" "SELECT applied, parked, last_seq, gaps FROM evrep.progress WHERE origin = 'fz_a' AND table_name = 'customer'")" \
   "$A_SEQ|0|$A_SEQ|{}" "A's stream on B: all $A_SEQ events applied once, none parked, no gap"
is "$(sql "$B" "SELECT count(*) FROM evrep.progress WHERE origin = 'fz_a' AND table_name <> 'customer'")" 0 \
   "no stream of A's but its real one"
is "$(sql "$B" "SELECT count(*) FILTER (WHERE seq IS NOT NULL OR sqlstate <> '28000') FROM evrep.dead_letter WHERE origin = 'fz_a'")" 0 \
   "every message claiming A's origin was a forgery, parked whole as such (28000)"
is "$(sql "$B" "SELECT count(*) FROM evrep.progress WHERE origin IN ('fz_b', 'guest', 'FUZZER', 'fuzzer ', 'fzbig2', 'fzsql2', 'fuzze', 'fuzzer2')")" 0 \
   "forged origins moved no stream"
is "$(row_count "$B" fz_unsub)" 0 "fz_unsub (not subscribed) is still empty"
is "$(sql "$B" "SELECT count(*) FROM fz_t WHERE id >= 3000000")" 0 "fz_t holds no row of a message that had to be refused"
is "$(relations)" "$RELS_B" "B has the same tables, indexes and sequences as before"
is "$(config)" "$CONFIG_B" "B's subscriptions, senders, publications and roles are unchanged"

# ---- the servers ---------------------------------------------------------------------
is "$(health "$A")" "$HEALTH_A" "A: same postmaster, start time and consumer as before"
is "$(health "$B")" "$HEALTH_B" "B: same postmaster, start time and consumer (never restarted) as before"
CRASH='terminated by signal|was terminated|exited with exit code|server process .* exited|all server processes terminated|database system was interrupted|PANIC|TRAP:|out of memory'
for n in "$A" "$B"; do
    is "$(grep -cE "$CRASH" "$(pg_logfile "$n")")" 0 "$n's log: no crash, no worker restart, no out of memory"
done
is "$(grep 'evrep consumer could not apply' "$(pg_logfile "$B")" | grep -vc 'stack depth limit exceeded')" 0 \
   "B's consumer rolled batches back only for the deep nesting (bounded retries)"
note "batches B's consumer rolled back: $(grep -c 'evrep consumer could not apply' "$(pg_logfile "$B")")"
is "$(worker_connected "$B" consumer)" t "B's consumer is connected"
is "$(rmq_queue_depth "$MQ" "$QB")" 0 "B's queue is empty"

# ---- what was sent -------------------------------------------------------------------
note "messages per kind (through the broker, through evrep_apply):"
LC_ALL=C join -t $'\t' -a 1 -a 2 -e 0 -o 0,1.2,2.2 <(LC_ALL=C sort "$DIR/broker.kinds.tsv") <(LC_ALL=C sort "$DIR/sql.kinds.tsv") \
    | while IFS=$'\t' read -r k nb ns; do note "$(printf '  %-24s %6d %6d' "$k" "$nb" "$ns")"; done
TOTAL=$(cat "$DIR/broker.kinds.tsv" "$DIR/sql.kinds.tsv" | awk -F'\t' '{ s += $2 } END { print s + 0 }')
cmp_ok "$TOTAL" -ge 100000 "at least 100,000 generated messages ($TOTAL)"

# ---- last: a table name too long for an index entry, then a valid message -----------
ok "publish a message for a 3000-letter table name, then a valid one" fuzz_tool tail "$URL" "$SEED" "$DIR"
LONG_MARKER=$(cut -f 1 "$DIR/tail.raw.tsv")
ok "the valid message behind it is applied" \
    wait_until 20 '[[ $(sql "$B" "SELECT name FROM fz_t WHERE id >= 2500000") == sentinel ]]'
is "$(sql "$B" "SELECT count(*) FROM evrep.dead_letter WHERE body LIKE '{\"fz\":\"$LONG_MARKER\"%'
                 OR (seq IS NOT NULL AND length(table_name) > 1000 AND strpos(body, '\"fz\": \"$LONG_MARKER\"') > 0)")" 1 \
   "the message for the long table name is parked"
is "$(worker_connected "$B" consumer)" t "B's consumer is still connected"
ok "B's queue is empty at the end" wait_until 10 '[[ $(rmq_queue_depth "$MQ" "$QB") == 0 ]]' 1
is "$(postmaster_pid "$B")" "${HEALTH_B%%|*}" "B's postmaster is the one it started with"
note "40_fuzz took $((SECONDS - T0)) s"
done_testing
