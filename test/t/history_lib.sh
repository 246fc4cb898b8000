# test/t/history_lib.sh -- helpers shared by the history tests (54_restore_origin,
# 55_promote_standby, 56_restore_subscriber, 57_dump_reload): promise 11, a
# database's history may go back. Source it after test/lib/tap.sh and
# test/t/replication_lib.sh; it brings in test/lib/history.sh (backups,
# standbys, PITR, dump/reload).
#
#   q NODE SQL                     like sql, but a failed query prints
#                                  "ERROR: ..." (so that an assertion on it
#                                  shows why, e.g. a missing 1.1 catalog)
#   incarnation NODE               NODE's current history: max(id) of evrep.incarnation
#   incarnation_rows NODE          how many histories NODE has recorded
#   incarnation_reason NODE        the current history's reason
#   pub_seq NODE TABLE             evrep.publication.last_seq
#   sync_state NODE TABLE          "request_id|phase" of NODE's evrep.sync row for TABLE
#   progress_history NODE ORIGIN TABLE
#                                  "incarnation|history_changed_at" of NODE's
#                                  evrep.progress row for ORIGIN's TABLE
#   node_now NODE                  now() on NODE (a timestamp to compare with later)
#   new_writes NODE TABLE BASE REUSE_LO UPD_LO DEL_LO
#                                  50 changes, one transaction each: 20 new ids
#                                  BASE+1..BASE+20, 10 inserts of ids
#                                  REUSE_LO..+9 (keys the lost history had:
#                                  values 'history 2 ...'), 10 updates of ids
#                                  UPD_LO..+9, 10 deletes of ids DEL_LO..+9
# ORIGIN below is the pg node of the origin; its evrep.node_name (the origin's
# name in SUB's progress and status) is read from it, so a promoted standby
# speaking for another node's origin is checked under that name.
#   origin_name NODE               SHOW evrep.node_name
#   assert_converged LABEL ORIGIN SUB TABLE [TIMEOUT_S]
#                                  ORIGIN's outbox drains; SUB's rows become
#                                  equal to ORIGIN's (md5 of all rows); same
#                                  ids; SUB's progress reaches ORIGIN's
#                                  last_seq with no gaps; no dead letters on SUB
#   assert_origin_new_history LABEL ORIGIN SUB TABLE INC_BEFORE SUB_T0 [REASON_RE EVENT]
#                                  ORIGIN started a new history after INC_BEFORE
#                                  (whose reason matches REASON_RE: it names
#                                  EVENT, e.g. "new timeline", if given)
#                                  and SUB saw it: evrep.status (apply) on SUB
#                                  shows ORIGIN's current incarnation, a
#                                  history_reason, history_changed_at after
#                                  SUB_T0 and a repair whose copy is done;
#                                  evrep.sync_status on SUB shows a copy
#                                  requested after SUB_T0 and done
#   assert_sub_new_history LABEL SUB TABLE INC_BEFORE SUB_T0 REASON_RE EVENT
#                                  SUB itself went back (restored, reloaded):
#                                  it started a new history after INC_BEFORE
#                                  whose reason matches REASON_RE (EVENT, e.g.
#                                  "restore from a base backup", says what it
#                                  should name), and evrep.sync_status on SUB
#                                  shows a copy requested after SUB_T0 and done
#   history_notes SUB NODE...      diagnostics (notes) for a failed history
#                                  test: SUB's progress, sync rows and dead
#                                  letters, each NODE's incarnations
#   assert_same_history LABEL ORIGIN SUB TABLE INC SYNC PROG
#                                  nothing started a new history: ORIGIN's
#                                  incarnation is still INC (and no row was
#                                  added), SUB's evrep.sync row is still SYNC
#                                  (no new copy request) and its progress
#                                  history still PROG

[[ -n "${_EVREP_HISTORY_LIB_SH:-}" ]] && return 0
_EVREP_HISTORY_LIB_SH=1

# shellcheck source=../lib/history.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/history.sh"

q() {
    local out
    if out=$(pg_psql "$1" -c "$2" 2>&1); then printf '%s\n' "$out"
    else printf 'ERROR: %s\n' "$(grep -m1 -E 'ERROR|FATAL|error' <<<"$out" || echo "$out")"; return 1; fi
}

incarnation() { q "$1" "SELECT max(id) FROM evrep.incarnation"; }
incarnation_rows() { q "$1" "SELECT count(*) FROM evrep.incarnation"; }
incarnation_reason() { q "$1" "SELECT reason FROM evrep.incarnation ORDER BY id DESC LIMIT 1"; }
pub_seq() { q "$1" "SELECT last_seq FROM evrep.publication WHERE table_name = '$2'"; }
sync_state() { q "$1" "SELECT request_id || '|' || phase FROM evrep.sync WHERE table_name = '$2'"; }
progress_history() {
    q "$1" "SELECT incarnation || '|' || coalesce(history_changed_at::text, '-') FROM evrep.progress WHERE origin = '$2' AND table_name = '$3'"
}
node_now() { q "$1" "SELECT now()"; }
origin_name() { q "$1" "SHOW evrep.node_name"; }

new_writes() {
    local node=$1 table=$2 base=$3 reuse=$4 upd=$5 del=$6 i
    sql_script "$node" "$(
        for ((i = base + 1; i <= base + 20; i++)); do echo "INSERT INTO $table VALUES ($i, 'new $i', $i);"; done
        for ((i = reuse; i < reuse + 10; i++)); do echo "INSERT INTO $table VALUES ($i, 'history 2 $i', -$i);"; done
        single_updates "$table" "$upd" $((upd + 9)) "name = 'updated in history 2', credit = credit + 1000"
        for ((i = del; i < del + 10; i++)); do echo "DELETE FROM $table WHERE id = $i;"; done
    )"
}

assert_converged() {
    local label=$1 origin=$2 sub=$3 table=$4 timeout=${5:-120} md5 n seq on
    on=$(origin_name "$origin")
    ok "$label: $origin's outbox drains" wait_value 60 0 outbox_depth "$origin"
    md5=$(table_md5 "$origin" "$table")
    ok "$label: $sub's rows become equal to $origin's" \
        wait_until "$timeout" "[[ \$(table_md5 $sub $table) == $md5 ]]" 0.5
    n=$(row_count "$origin" "$table")
    is "$(same_ids "$origin" "$sub" "$table")" "$n|0|0" "$label: $sub has every id of $origin ($n), none missing, none extra"
    is "$(table_md5 "$sub" "$table")" "$md5" "$label: md5 of all rows equal on $origin and $sub"
    seq=$(pub_seq "$origin" "$table")
    ok "$label: $sub's progress reaches $origin's last_seq $seq with no gaps" wait_value 30 "$seq|{}" \
        sql "$sub" "SELECT last_seq, gaps FROM evrep.progress WHERE origin = '$on' AND table_name = '$table'"
    is "$(q "$sub" 'SELECT count(*) FROM evrep.dead_letter')" 0 "$label: no dead letters on $sub"
    note "$label: $sub: $(q "$sub" "SELECT 'applied ' || applied || ', skipped ' || skipped || ', parked ' || parked FROM evrep.progress WHERE origin = '$on' AND table_name = '$table'")"
}

assert_origin_new_history() {
    local label=$1 origin=$2 sub=$3 table=$4 before=$5 t0=$6 re=${7:-} event=${8:-} inc st on
    on=$(origin_name "$origin")
    inc=$(incarnation "$origin")
    cmp_ok "$inc" -gt "$before" "$label: $origin started a new incarnation (was $before)"
    if [[ -n "$re" ]]; then like "$(incarnation_reason "$origin")" "$re" "$label: $origin's new history names the $event"
    else note "$label: $origin's history $inc: $(incarnation_reason "$origin")"; fi
    ok "$label: $sub's evrep.status shows $origin's incarnation $inc and a finished repair" \
        wait_until 60 "[[ \$(q $sub \"SELECT incarnation || '|' || (CASE WHEN repair LIKE '%copy done' THEN 'done' ELSE 'not done' END) FROM evrep.status WHERE role = 'apply' AND origin = '$on' AND table_name = '$table'\") == '$inc|done' ]]" 0.5
    st=$(q "$sub" "SELECT incarnation, history_reason <> '', history_changed_at >= '$t0', repair FROM evrep.status WHERE role = 'apply' AND origin = '$on' AND table_name = '$table'")
    like "$st" "^$inc[|]t[|]t[|].*copy done$" "$label: $sub's evrep.status: incarnation, history reason, changed after the event, repair copy done"
    note "$label: $sub's evrep.status: $(q "$sub" "SELECT incarnation || ' / ' || history_reason || ' / ' || history_changed_at || ' / ' || repair FROM evrep.status WHERE role = 'apply' AND origin = '$on' AND table_name = '$table'")"
    is "$(q "$sub" "SELECT phase FROM evrep.sync_status WHERE role = 'receive' AND table_name = '$table' AND requested_at >= '$t0'")" \
       done "$label: $sub's evrep.sync_status: a copy requested after the event, done"
}

assert_sub_new_history() {
    local label=$1 sub=$2 table=$3 before=$4 t0=$5 re=$6 event=$7 inc
    inc=$(incarnation "$sub")
    cmp_ok "$inc" -gt "$before" "$label: $sub started a new incarnation (was $before)"
    like "$(incarnation_reason "$sub")" "$re" "$label: $sub's new history names the $event"
    is "$(q "$sub" "SELECT phase FROM evrep.sync_status WHERE role = 'receive' AND table_name = '$table' AND requested_at >= '$t0'")" \
       done "$label: $sub's evrep.sync_status: a copy requested after the $event, done"
}

history_notes() {
    local sub=$1 n; shift
    note "$sub progress: $(q "$sub" "SELECT * FROM evrep.progress")"
    note "$sub sync: $(q "$sub" "SELECT * FROM evrep.sync")"
    for n in "$@"; do
        note "$n incarnations: $(q "$n" "SELECT id, reason, timeline, system_identifier FROM evrep.incarnation ORDER BY id")"
    done
    note "$sub dead letters: $(q "$sub" "SELECT id, seq, sqlstate, error FROM evrep.dead_letter ORDER BY id LIMIT 10")"
}

assert_same_history() {
    local label=$1 origin=$2 sub=$3 table=$4 inc=$5 sync=$6 prog=$7 rows=${8:-} now
    # an unreadable history (an error, nothing) is no evidence of an unchanged one
    now=$(incarnation "$origin")
    if [[ "$inc" =~ ^[0-9]+$ ]]; then is "$now" "$inc" "$label: $origin's incarnation is unchanged ($inc)"
    else fail "$label: $origin's incarnation is unchanged" "no incarnation to compare: before '$inc', now '$now'"; fi
    if [[ -n "$rows" ]]; then is "$(incarnation_rows "$origin")" "$rows" "$label: $origin recorded no new history"; fi
    is "$(sync_state "$sub" "$table")" "$sync" "$label: $sub's evrep.sync has no new copy request"
    like "$prog" "^$inc[|]" "$label: $sub's progress was in $origin's history $inc"
    is "$(progress_history "$sub" "$origin" "$table")" "$prog" "$label: $sub's progress keeps the same history of $origin"
}
