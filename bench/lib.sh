# bench/lib.sh -- what the benchmarks share: every bench/*.sh but
# bench/capture.sh and bench/twopc_report.sh sources it (cluster, copy,
# idle_probe, lag_split, replication, soak, twopc_vs_evrep, versions,
# worker_rss: nine scripts).  Source it after test/lib/topology.sh; the
# worker-memory helpers (bench_numbered .. bench_rss_summary) want these set:
#   A, B     the publishing and the subscribing node (topology names)
#   TBL      the table A publishes and B subscribes (its events are counted)
#   STALL    seconds without progress after which a wait gives up
#   MAXWAIT  seconds since the writer started after which a wait gives up
#
#   bench_log MSG... / log MSG...   timestamped line on stderr
#   detail MSG...               log it and keep it in DETAIL (a report's
#                               details section)
#   now / fsub A B / fdiv A B [DECIMALS=2] / loadavg
#                               EPOCHREALTIME, A - B, A / B ("n/a" unless both
#                               are numbers and B is not 0), /proc/loadavg
#   bench_traps                 EXIT/INT/TERM/HUP handling: stops the pids in
#                               BENCH_BG (background loops, writers), runs
#                               bench_on_exit if the script defines it, shows
#                               the last 30 log lines of A and B (if set) when
#                               failing, stops every server this script
#                               started (evrep_stop_registered), removes the
#                               directory BENCH_TMP if set
#   bench_extra_conf            topology conf="..." words for the ';'-separated
#                               postgresql.conf lines of EVREP_BENCH_CONF
#   ticks PID...                CPU ticks (utime + stime) of the pids (0 for
#                               a pid that is gone or empty)
#   machine_ticks               "BUSY TOTAL" ticks of the machine (/proc/stat)
#   machine_busy SECONDS        % of the machine busy over the next SECONDS
#   others                      what else runs on the machine (test suites,
#                               other bench scripts), "nothing else" if none
#   note_others PHASE [KEY]     a detail line when `others` changed since the
#                               last call (LAST_OTHERS; sets OTHERS_CHANGED);
#                               with KEY, R[oth_KEY] collects what ran
#   g KEY / bench_median V... / verdict VALUE OP LIMIT
#                               for reports: R[KEY] or "n/a"; the median of
#                               the numeric arguments ("n/a" if none); "met",
#                               "NOT met" or "n/a" for VALUE >= or <= LIMIT
#   bench_details_md            a markdown report's "Details" section: DETAIL
#   bench_written CSV MD        the CSV as a table on stdout, then both names
#   q NODE SQL                  pg_psql NODE -c SQL
#   bench_up_ev A_SCHEMA B_SCHEMA WORDS
#                               topo_up of RabbitMQ $MQ on $MQ_PORT, node $A on
#                               $A_PORT publishing table ev and node $B on
#                               $B_PORT subscribing it, each with its schema and
#                               the topology WORDS (conf="..." ...); exits if
#                               they do not come up
#   bench_numbered / bench_applied / bench_depth
#                               events A has numbered (publication.last_seq),
#                               events B has applied (progress.applied), rows in
#                               A's outbox
#   bench_wpid NODE BACKEND_TYPE    pid from pg_stat_activity (empty if none)
#   bench_status_kb PID FIELD   a field of /proc/PID/status in kB (empty if gone)
#   BENCH_CSV_HEADER            the CSV columns bench_sample writes
#   bench_sample T0             one CSV row: seconds since T0 (EPOCHREALTIME),
#                               numbered, applied, then pid, VmRSS, RssAnon,
#                               RssShmem of A's 'evrep publisher' and of B's
#                               'evrep consumer'; a function bench_sample_extra,
#                               if defined, appends its columns (",x,y")
#   bench_write STMTS BATCH     runs bench_stmt I (a function printing the SQL
#                               of statement I, BATCH events) on A for I in
#                               0..STMTS-1; before each, waits until A's
#                               outbox holds at most 4 x BATCH rows (events
#                               flow through the workers all along instead of
#                               piling up) and, if RATE (events/s) > 0, until
#                               the schedule allows it; logs progress
#   bench_wait_applied TOTAL    until B applied TOTAL events
#   bench_rss_summary CSV WARMUP text|md|growth
#                               per worker: first sample, first after WARMUP
#                               events, last, and last / after-warm-up (md:
#                               also the maximum after warm-up, as a markdown
#                               table; growth: one line per worker "NAME
#                               RSSANON_AFTER_WARMUP RSSANON_LAST RSSANON_MAX"
#                               in kB); exit status 3 if a worker's pid changed

[[ -n "${_EVREP_BENCH_LIB_SH:-}" ]] && return 0
_EVREP_BENCH_LIB_SH=1

bench_log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

# For reports: log and keep a line for the details section; times and ratios.
log() { bench_log "$@"; }
DETAIL=()
detail() { DETAIL+=("$*"); log "$*"; }
now() { printf '%s\n' "$EPOCHREALTIME"; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a - b}'; }
fdiv() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN {num = "^-?[0-9.]+$"; if (a !~ num || b !~ num || b == 0) print "n/a"; else printf "%.*f", d, a / b}'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---- exit handling: everything a bench started goes, also on error or ^C ----
BENCH_BG=()
_bench_cleanup() {
    local rc=$? p
    # a failing command here must not skip stopping the servers
    set +e
    trap - EXIT INT TERM HUP
    for p in "${BENCH_BG[@]}"; do
        [[ -n "$p" ]] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    declare -F bench_on_exit >/dev/null && bench_on_exit
    if (( rc != 0 )) && [[ -n "${A:-}" ]]; then
        echo "# exited with status $rc; log tails:" >&2
        evrep_tail "$(pg_logfile "$A")" 30; evrep_tail "$(pg_logfile "$B")" 30
    fi
    evrep_stop_registered
    [[ -n "${BENCH_TMP:-}" ]] && rm -rf "$BENCH_TMP"
    exit "$rc"
}
bench_traps() {
    trap _bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

bench_extra_conf() {
    local c
    while IFS= read -r c; do
        if [[ -n "${c// /}" ]]; then printf ' conf="%s"' "$c"; fi
    done < <(tr ';' '\n' <<<"${EVREP_BENCH_CONF:-}")
}

# ---- CPU: of processes and of the machine ----
CLK_TCK=$(getconf CLK_TCK)
ticks() { local p t=0; for p in "$@"; do [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
machine_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9; exit}' /proc/stat; }
machine_busy() {
    local m0 m1; m0=$(machine_ticks); sleep "$1"; m1=$(machine_ticks)
    awk -v m0="$m0" -v m1="$m1" 'BEGIN {split(m0, a, " "); split(m1, b, " "); printf "%.0f", (b[1] - a[1]) / (b[2] - a[2]) * 100}'
}

# ---- the other load on a shared machine, for the reports ----
others() {
    local s="" o self
    self=bench/$(basename "$0")
    pgrep -f 'prove ' >/dev/null && s+="a test suite (prove); "
    pgrep -f 'pg_regress' >/dev/null && s+="pg_regress; "
    o=$(pgrep -af 'bench/[a-z_0-9]+\.sh' | grep -v -e "$self" | awk '{print $3}' | sort -u | tr '\n' ' ')
    [[ -n "$o" ]] && s+="$o; "
    s=${s%; }
    printf '%s\n' "${s:-nothing else}"
}
LAST_OTHERS=
OTHERS_CHANGED=
note_others() {
    local o; o=$(others)
    [[ "$o" == "$LAST_OTHERS" ]] || { detail "$1: the other load changed; also running now: $o"; LAST_OTHERS=$o; OTHERS_CHANGED=1; }
    if [[ -n "${2:-}" && "$o" != "nothing else" && "${R[oth_$2]:-}" != *"$o"* ]]; then R[oth_$2]+="${R[oth_$2]:+, }$o"; fi
    return 0
}

# ---- reports ----
g() { printf '%s' "${R[$1]:-n/a}"; }
bench_median() { printf '%s\n' "$@" | { grep -E '^-?[0-9.]+$' || true; } | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
verdict() {
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {if (v !~ /^[0-9.]+$/) print "n/a"; else if ((op == ">=" && v >= l) || (op == "<=" && v <= l)) print "met"; else print "NOT met"}'
}
bench_details_md() { printf '\n## Details\n\n```\n'; printf '%s\n' "${DETAIL[@]}"; printf '```\n'; }
bench_written() { echo; column -t -s, "$1"; echo; echo "written: $2 $1"; }

q() { local n=$1; shift; pg_psql "$n" -c "$*"; }
bench_up_ev() {
    topo_up <<EOF || { log "the nodes did not come up"; exit 1; }
broker $MQ port=$MQ_PORT
node $A port=$A_PORT publish=ev schema="$1" $3
node $B port=$B_PORT subscribe=ev schema="$2" $3
EOF
}
bench_numbered() { q "$A" "SELECT coalesce(max(last_seq), 0) FROM evrep.publication WHERE table_name = '$TBL'"; }
bench_applied() { q "$B" "SELECT coalesce(sum(applied), 0) FROM evrep.progress WHERE table_name = '$TBL'"; }
# events not yet confirmed (1.1 keeps confirmed outbox rows until their partition is emptied)
bench_depth() { q "$A" "SELECT coalesce(sum(outbox_depth), 0) FROM evrep.status WHERE role = 'publish'"; }
bench_wpid() { q "$1" "SELECT coalesce(min(pid)::text, '') FROM pg_stat_activity WHERE backend_type = '$2'"; }
bench_status_kb() { [[ -n "$1" ]] && awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null; }

BENCH_CSV_HEADER="t_s,events_numbered_on_A,events_applied_on_B,publisher_pid,publisher_vmrss_kb,publisher_rssanon_kb,publisher_rssshmem_kb,consumer_pid,consumer_vmrss_kb,consumer_rssanon_kb,consumer_rssshmem_kb"

bench_sample() {
    local p c extra=
    p=$(bench_wpid "$A" 'evrep publisher') c=$(bench_wpid "$B" 'evrep consumer')
    declare -F bench_sample_extra >/dev/null && extra=$(bench_sample_extra)
    printf '%.1f,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s%s\n' \
        "$(awk -v a="$EPOCHREALTIME" -v b="$1" 'BEGIN {print a - b}')" \
        "$(bench_numbered)" "$(bench_applied)" \
        "$p" "$(bench_status_kb "$p" VmRSS)" "$(bench_status_kb "$p" RssAnon)" "$(bench_status_kb "$p" RssShmem)" \
        "$c" "$(bench_status_kb "$c" VmRSS)" "$(bench_status_kb "$c" RssAnon)" "$(bench_status_kb "$c" RssShmem)" \
        "$extra"
}

_bench_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$t"; }

bench_write() {
    local stmts=$1 batch=$2 rate=${RATE:-0} i d last since sql start=$SECONDS t0us due now every
    t0us=$(_bench_us)
    every=$(( stmts / 20 > 0 ? stmts / 20 : 1 ))
    for ((i = 0; i < stmts; i++)); do
        sql=$(bench_stmt "$i")
        last=-1 since=$SECONDS
        while d=$(bench_depth) && (( d > 4 * batch )); do
            (( d != last )) && { last=$d since=$SECONDS; }
            (( SECONDS - since >= STALL )) && { bench_log "STUCK: A's outbox holds $d rows for ${STALL}s"; return 1; }
            (( SECONDS - start >= MAXWAIT )) && { bench_log "TOO SLOW: ${MAXWAIT}s"; return 1; }
            sleep 0.2
        done
        [[ -n "${d:-}" ]] || { bench_log "cannot read A's outbox"; return 1; }
        if (( rate > 0 )); then
            due=$(( t0us + i * batch * 1000000 / rate )) now=$(_bench_us)
            (( due > now )) && sleep "$(printf '%d.%06d' $(( (due - now) / 1000000 )) $(( (due - now) % 1000000 )))"
        fi
        q "$A" "$sql" >/dev/null || { bench_log "statement $i failed: $sql"; return 1; }
        (( (i + 1) % every == 0 )) && bench_log "  $(( (i + 1) * batch )) events written ($((SECONDS - start)) s)"
    done
    return 0
}

bench_wait_applied() {
    local total=$1 got last=-1 since=$SECONDS start=$SECONDS
    while got=$(bench_applied) && (( got < total )); do
        (( got != last )) && { last=$got since=$SECONDS; }
        (( SECONDS - since >= STALL )) && { bench_log "STUCK: B applied $got of $total for ${STALL}s"; return 1; }
        (( SECONDS - start >= MAXWAIT )) && { bench_log "TOO SLOW: B applied $got of $total after ${MAXWAIT}s"; return 1; }
        sleep 0.5
    done
    [[ -n "${got:-}" ]]
}

bench_rss_summary() {
    local csv=$1 warm=$2 fmt=${3:-text}
    awk -F, -v warm="$warm" -v fmt="$fmt" -v sample_s="${SAMPLE_S:-?}" '
    function mb(kb) { return kb == "" ? "?" : sprintf("%.1f", kb / 1024) }
    function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "?" : sprintf("%.2f", a / b) }
    function pct(a, b) { return (a == "" || b == "" || b == 0) ? "?" : sprintf("%+.1f %%", 100 * (a - b) / b) }
    NR == 1 { next }
    {
        # publisher: columns 2 (numbered), 4-7; consumer: 3 (applied), 8-11
        for (w = 0; w < 2; w++) {
            prog = $(2 + w); pid = $(4 + 4 * w); rss = $(5 + 4 * w); anon = $(6 + 4 * w); shm = $(7 + 4 * w)
            if (pid == "") continue
            if (!(w in f)) { f[w] = 1; fr[w] = rss; fa[w] = anon; fs[w] = shm; fp[w] = pid; ft[w] = $1 }
            if (!(w in wr) && prog >= warm) { wr[w] = rss; wa[w] = anon; ws[w] = shm; wt[w] = $1; we[w] = prog }
            if ((w in wr) && (!(w in ma) || anon + 0 > ma[w])) { ma[w] = anon + 0; mt[w] = $1 }
            lr[w] = rss; la[w] = anon; ls[w] = shm; lt[w] = $1
            if (pid != fp[w]) restarted[w] = 1
            n[w]++
        }
    }
    END {
        name[0] = "publisher (A)"; name[1] = "consumer (B)"
        if (fmt == "growth") {
            for (w = 0; w < 2; w++)
                printf "%s %s %s %s\n", w ? "consumer(B)" : "publisher(A)", wa[w], la[w], ma[w]
        } else if (fmt == "md") {
            print "| worker | pid | first | after warm-up | last | RssAnon max after warm-up | RssAnon last vs after warm-up | VmRSS last vs after warm-up |"
            print "|---|---|---|---|---|---|---|---|"
            for (w = 0; w < 2; w++)
                printf "| %s | %s%s | %s / %s / %s (%s s) | %s / %s / %s (%s s, %d events) | %s / %s / %s (%s s) | %s (%s s, %s) | **%s** | %s |\n",
                    name[w], fp[w], restarted[w] ? " RESTARTED (pid changed)" : ", unchanged",
                    mb(fr[w]), mb(fa[w]), mb(fs[w]), ft[w],
                    mb(wr[w]), mb(wa[w]), mb(ws[w]), wt[w], we[w],
                    mb(lr[w]), mb(la[w]), mb(ls[w]), lt[w],
                    mb(ma[w]), mt[w], pct(ma[w], wa[w]), pct(la[w], wa[w]), pct(lr[w], wr[w])
            printf "\nMB of VmRSS / RssAnon / RssShmem; %d samples every %s s.\n", n[0], sample_s
        } else {
            print "MB of VmRSS / RssAnon / RssShmem (seconds into the run)"
            printf "%-14s %-26s %-38s %-26s %s\n", "worker", "first", "after warm-up", "last", "last / after warm-up"
            for (w = 0; w < 2; w++)
                printf "%-14s %-26s %-38s %-26s VmRSS %s, RssAnon %s%s\n", name[w],
                    sprintf("%s / %s / %s (%ss)", mb(fr[w]), mb(fa[w]), mb(fs[w]), ft[w]),
                    sprintf("%s / %s / %s (%ss, %d events)", mb(wr[w]), mb(wa[w]), mb(ws[w]), wt[w], we[w]),
                    sprintf("%s / %s / %s (%ss)", mb(lr[w]), mb(la[w]), mb(ls[w]), lt[w]),
                    ratio(lr[w], wr[w]), ratio(la[w], wa[w]),
                    restarted[w] ? "  RESTARTED during the run (pid changed)" : ""
            printf "%d samples every %s s", n[0], sample_s
        }
        if (restarted[0] || restarted[1]) exit 3
    }' "$csv"
}
