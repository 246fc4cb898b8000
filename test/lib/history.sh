# test/lib/history.sh -- a database's history going back: base backups,
# restores, streaming standbys and promotion, point-in-time recovery, and
# dump / reload into a new cluster, for nodes made by pg.sh (source this
# file; it sources pg.sh). Every command runs the PostgreSQL tools as user
# postgres (runuser when the caller is root).
#
#   pg_basebackup_node NAME LABEL [ARGS...]
#                           pg_basebackup -X stream -c fast of the running
#                           node NAME into $EVREP_TEST_DIR/backups/NAME-LABEL
#                           (made anew); ARGS are added (e.g. -R). Prints
#                           the backup's directory.
#   pg_replace_data NAME DIR
#                           NAME must be stopped: its data directory is moved
#                           aside (data.replaced.N, kept for diagnosis) and a
#                           copy of DIR (a backup, or another node's data
#                           directory) takes its place, with NAME's port,
#                           socket directory and log: the old server.log is
#                           carried over with a marker line, so the log only
#                           grows (topo_mark positions stay valid). DIR is
#                           left as it is.
#   pg_restore_backup NAME DIR [MODE]
#                           pg_stop NAME MODE (default fast), pg_replace_data,
#                           pg_start: the server starts from the backup
#                           ("completed backup recovery": same system
#                           identifier, same timeline, backup_label.old)
#   pg_standby_create PRIMARY NAME PORT [CONF...]
#                           a streaming standby of PRIMARY as pg node NAME on
#                           PORT (pg_basebackup -R; not started). Its
#                           postgresql.conf is PRIMARY's (same evrep.node_name,
#                           broker URL and database: once promoted it speaks
#                           for PRIMARY's origin) with port, socket directory
#                           and the CONF lines (e.g. "recovery_min_apply_delay
#                           = '1h'") appended. evrep's workers start only
#                           when recovery has finished.
#   pg_standby_pause NAME / pg_standby_resume NAME
#                           pg_wal_replay_pause() / _resume(), and wait until
#                           pg_get_wal_replay_pause_state() says so
#   pg_standby_detach NAME  primary_conninfo = '' (ALTER SYSTEM, reload), and
#                           SIGTERM to the WAL receiver if it still runs after
#                           1 s (replay paused or delayed): the standby stops
#                           receiving WAL; what the primary writes later never
#                           reaches it (an asynchronous failover loses it).
#                           Waits until no WAL receiver runs.
#   pg_promote NAME         pg_ctl promote -w, then wait until
#                           pg_is_in_recovery() is false (new timeline)
#   pg_timeline NAME        the timeline of the WAL being written (pg_walfile_name
#                           of the insert position; on a standby the last
#                           checkpoint's)
#   pg_system_id NAME       pg_control_system().system_identifier
#   pg_replay_lsn NAME      pg_last_wal_replay_lsn() (standby)
#   pg_archive_conf DIR     print postgresql.conf lines for WAL archiving into
#                           DIR (archive_mode = on, archive_command cp), for
#                           pg_init / a topology conf=; DIR is created, owned
#                           by postgres
#   pg_archive_switch NAME  pg_switch_wal() and wait until the segment it
#                           closed is archived (pg_stat_archiver)
#   pg_pitr NAME BACKUP ARCHIVE TARGET [MODE]
#                           point-in-time recovery of NAME: pg_stop MODE
#                           (default fast), data replaced by BACKUP, WAL
#                           restored from ARCHIVE (restore_command cp),
#                           recovery.signal, TARGET is lsn:X/Y or
#                           time:TIMESTAMP (recovery_target_lsn / _time,
#                           inclusive), recovery_target_action = promote;
#                           start, and wait until recovery has ended (a new
#                           timeline). The recovery settings are removed from
#                           postgresql.conf again once it is out of recovery.
#   pg_dump_node NAME FILE  pg_dump -Fc of NAME's database into FILE
#   pg_reload_dump NAME FILE
#                           NAME must be stopped: its data directory is moved
#                           aside (as pg_replace_data), a new cluster is made
#                           by initdb (a new system identifier) with NAME's
#                           old postgresql.conf and postgresql.auto.conf,
#                           NAME's database is created, and the server is
#                           started with evrep's workers held off
#                           (evrep.database = '') while pg_restore loads FILE
#                           into it; then stopped. pg_restore's errors fail it.
#                           The caller starts it (pg_start NAME).
#
# The PostgreSQL programs are those of the node's install (pg.sh's
# _pg_bindir); a standby gets its primary's.
# Environment: as pg.sh (EVREP_TEST_DIR, PG_CONFIG, EVREP_PG_TIMEOUT).

[[ -n "${_EVREP_HISTORY_SH:-}" ]] && return 0
_EVREP_HISTORY_SH=1

# shellcheck source=pg.sh
source "$(dirname "${BASH_SOURCE[0]}")/pg.sh"

_hist_q() { pg_psql "$1" -c "$2"; }

pg_basebackup_node() {
    local name=${1:?usage: pg_basebackup_node NAME LABEL [ARGS...]} label=${2:?usage: pg_basebackup_node NAME LABEL}
    shift 2
    [[ "$label" =~ ^[A-Za-z0-9_-]+$ ]] || { evrep_err "basebackup: bad label '$label'"; return 1; }
    local port dir out
    port=$(pg_port "$name") || return 1
    dir=$(evrep_base_dir)/backups || return 1
    mkdir -p "$dir" && chmod 755 "$dir" || return 1
    (( EUID == 0 )) && chown postgres: "$dir"
    dir+=/$name-$label
    rm -rf "$dir"
    if ! out=$(_pg_as_pg "$(_pg_bindir "$name")/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres \
                 -D "$dir" -X stream -c fast "$@" 2>&1); then
        evrep_err "pg_basebackup of '$name' failed:"; printf '%s\n' "$out" | sed 's/^/#   /' >&2; return 1
    fi
    evrep_log "pg '$name': base backup in $dir"
    printf '%s\n' "$dir"
}

# _hist_move_aside NAME -- move NAME's data directory to data.replaced.N; print that path
_hist_move_aside() {
    local data i=1
    data=$(pg_datadir "$1") || return 1
    while [[ -e "$data.replaced.$i" ]]; do i=$((i + 1)); done
    mv "$data" "$data.replaced.$i" || return 1
    printf '%s\n' "$data.replaced.$i"
}

# _hist_settings NAME DATA -- append NAME's port and socket directory to DATA's postgresql.conf
_hist_settings() {
    local port sock
    port=$(pg_port "$1") || return 1
    sock=/tmp/evrep-pg.$port
    mkdir -p "$sock" && chmod 755 "$sock" || return 1
    (( EUID == 0 )) && chown postgres: "$sock"
    printf '\n# ---- test/lib/history.sh: node %s ----\nport = %s\nunix_socket_directories = '\''%s'\''\n' \
        "$1" "$port" "$sock" >>"$2/postgresql.conf"
}

pg_replace_data() {
    local name=${1:?usage: pg_replace_data NAME DIR} src=${2:?usage: pg_replace_data NAME DIR} data old
    data=$(pg_datadir "$name") || return 1
    [[ -f "$src/PG_VERSION" ]] || { evrep_err "replace '$name': $src is no data directory"; return 1; }
    pg_is_running "$name" && { evrep_err "replace '$name': stop it first"; return 1; }
    old=$(_hist_move_aside "$name") || return 1
    cp -a "$src" "$data" || return 1
    rm -f "$data/postmaster.pid" "$data/postmaster.opts"
    {
        [[ -f "$old/server.log" ]] && cat "$old/server.log"
        printf '%s ---- test/lib/history.sh: data directory replaced by a copy of %s ----\n' "$(date '+%F %T')" "$src"
    } >"$data/server.log.new" && mv "$data/server.log.new" "$data/server.log"
    _hist_settings "$name" "$data" || return 1
    if (( EUID == 0 )); then chown -R postgres: "$data"; fi
    chmod 700 "$data"
    evrep_log "pg '$name': data directory replaced by a copy of $src (old one in $old)"
}

pg_restore_backup() {
    local name=${1:?usage: pg_restore_backup NAME DIR [MODE]} dir=${2:?usage: pg_restore_backup NAME DIR [MODE]}
    pg_stop "$name" "${3:-fast}" && pg_replace_data "$name" "$dir" && pg_start "$name"
}

pg_standby_create() {
    local primary=${1:?usage: pg_standby_create PRIMARY NAME PORT [CONF...]} name=${2:?usage: pg_standby_create PRIMARY NAME PORT}
    local port=${3:?usage: pg_standby_create PRIMARY NAME PORT} d data bk line
    shift 3
    d=$(_pg_node_dir "$name") || return 1
    pg_is_running "$name" && { evrep_err "standby '$name' is running"; return 1; }
    bk=$(pg_basebackup_node "$primary" "standby-$name" -R) || return 1
    rm -rf "$d"
    mkdir -p "$d" && chmod 755 "$d" || return 1
    echo "$port" >"$d/port"
    pg_dbname "$primary" >"$d/dbname"
    _pg_bindir "$primary" >"$d/bindir"
    echo "$$" >"$d/owner"
    mv "$bk" "$d/data" || return 1
    : >"$d/data/server.log"
    _hist_settings "$name" "$d/data" || return 1
    for line in "$@"; do printf '%s\n' "$line"; done >>"$d/data/postgresql.conf"
    if (( EUID == 0 )); then chown -R postgres: "$d/data"; fi
    chmod 700 "$d/data"
    evrep_log "pg '$name': standby of '$primary' on port $port in $d/data"
}

pg_standby_pause() {
    _hist_q "${1:?usage: pg_standby_pause NAME}" "SELECT pg_wal_replay_pause()" >/dev/null || return 1
    local i
    for ((i = 0; i < 300; i++)); do
        [[ $(_hist_q "$1" "SELECT pg_get_wal_replay_pause_state()") == paused ]] && return 0
        sleep 0.1
    done
    evrep_err "standby '$1': replay not paused after 30 s"
}

pg_standby_resume() {
    _hist_q "${1:?usage: pg_standby_resume NAME}" "SELECT pg_wal_replay_resume()" >/dev/null || return 1
    local i
    for ((i = 0; i < 300; i++)); do
        [[ $(_hist_q "$1" "SELECT pg_get_wal_replay_pause_state()") == 'not paused' ]] && return 0
        sleep 0.1
    done
    evrep_err "standby '$1': replay still paused after 30 s"
}

pg_standby_detach() {
    local name=${1:?usage: pg_standby_detach NAME} i pid
    _hist_q "$name" "ALTER SYSTEM SET primary_conninfo = ''" >/dev/null \
        && _hist_q "$name" "SELECT pg_reload_conf()" >/dev/null || return 1
    # The startup process stops its WAL receiver for a new primary_conninfo
    # only while it waits for WAL, not while replay is paused or delayed
    # (recovery_min_apply_delay): SIGTERM it then (pg_terminate_backend
    # does not reach auxiliary processes); with an empty primary_conninfo
    # none is started again.
    for ((i = 0; i < 300; i++)); do
        pid=$(_hist_q "$name" "SELECT coalesce(max(pid), 0) FROM pg_stat_wal_receiver") || return 1
        [[ "$pid" == 0 ]] && return 0
        (( i == 10 )) && kill -TERM "$pid" 2>/dev/null
        sleep 0.1
    done
    evrep_err "standby '$name': the WAL receiver still runs after 30 s"
}

pg_promote() {
    local name=${1:?usage: pg_promote NAME} data out i
    data=$(pg_datadir "$name") || return 1
    if ! out=$(_pg_as_pg "$(_pg_bindir "$name")/pg_ctl" -D "$data" -w -t "${EVREP_PG_TIMEOUT:-60}" promote 2>&1); then
        evrep_err "pg '$name': promote failed:"; printf '%s\n' "$out" | sed 's/^/#   /' >&2
        evrep_tail "$data/server.log" 20; return 1
    fi
    for ((i = 0; i < 600; i++)); do
        [[ $(_hist_q "$name" "SELECT pg_is_in_recovery()" 2>/dev/null) == f ]] && {
            evrep_log "pg '$name' promoted (timeline $(pg_timeline "$name"))"; return 0; }
        sleep 0.1
    done
    evrep_err "pg '$name': still in recovery 60 s after promote"
}

# The timeline of the WAL being written (or replayed, on a standby).
pg_timeline() {
    local f
    f=$(_hist_q "${1:?usage: pg_timeline NAME}" \
        "SELECT CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())::text
                ELSE pg_walfile_name(pg_current_wal_lsn()) END") || return 1
    if [[ "$f" =~ ^[0-9A-F]{24}$ ]]; then echo $((16#${f:0:8})); else echo "$f"; fi
}

pg_system_id() { _hist_q "${1:?usage: pg_system_id NAME}" "SELECT system_identifier FROM pg_control_system()"; }
pg_replay_lsn() { _hist_q "${1:?usage: pg_replay_lsn NAME}" "SELECT pg_last_wal_replay_lsn()"; }

pg_archive_conf() {
    local dir=${1:?usage: pg_archive_conf DIR}
    mkdir -p "$dir" && chmod 755 "$dir" || return 1
    (( EUID == 0 )) && chown postgres: "$dir"
    printf '%s\n' "archive_mode = on" "archive_command = 'cp %p $dir/%f'" "archive_timeout = 0"
}

pg_archive_switch() {
    local name=${1:?usage: pg_archive_switch NAME} seg i
    seg=$(_hist_q "$name" "SELECT pg_walfile_name(pg_switch_wal())") || return 1
    for ((i = 0; i < 600; i++)); do
        [[ $(_hist_q "$name" "SELECT coalesce(last_archived_wal >= '$seg', false) FROM pg_stat_archiver") == t ]] && return 0
        sleep 0.1
    done
    evrep_err "pg '$name': segment $seg not archived after 60 s"
}

pg_pitr() {
    local name=${1:?usage: pg_pitr NAME BACKUP ARCHIVE TARGET [MODE]} bk=${2:?usage: pg_pitr NAME BACKUP ARCHIVE TARGET}
    local arch=${3:?usage: pg_pitr NAME BACKUP ARCHIVE TARGET} target=${4:?usage: pg_pitr NAME BACKUP ARCHIVE TARGET} mode=${5:-fast}
    local data kind val i
    case "$target" in
        lsn:*)  kind=recovery_target_lsn val=${target#lsn:} ;;
        time:*) kind=recovery_target_time val=${target#time:} ;;
        *) evrep_err "pg_pitr: TARGET is lsn:X/Y or time:TIMESTAMP, not '$target'"; return 1 ;;
    esac
    data=$(pg_datadir "$name") || return 1
    pg_stop "$name" "$mode" && pg_replace_data "$name" "$bk" || return 1
    {
        echo "# ---- test/lib/history.sh: point-in-time recovery (removed once done) ----"
        echo "restore_command = 'cp $arch/%f %p'"
        echo "$kind = $(_pg_sql_literal "$val")"
        echo "recovery_target_inclusive = on"
        echo "recovery_target_action = 'promote'"
        echo "# ---- end of point-in-time recovery ----"
    } >>"$data/postgresql.conf"
    _pg_as_pg touch "$data/recovery.signal" || return 1
    pg_start "$name" || return 1
    for ((i = 0; i < 1200; i++)); do
        [[ $(_hist_q "$name" "SELECT pg_is_in_recovery()" 2>/dev/null) == f ]] && break
        sleep 0.1
    done
    (( i < 1200 )) || { evrep_err "pg '$name': still in recovery after 120 s"; evrep_tail "$data/server.log" 20; return 1; }
    sed -i '/^# ---- test\/lib\/history.sh: point-in-time recovery/,/^# ---- end of point-in-time recovery/d' "$data/postgresql.conf"
    evrep_log "pg '$name': recovered to $target from $bk and $arch (timeline $(pg_timeline "$name"))"
}

pg_dump_node() {
    local name=${1:?usage: pg_dump_node NAME FILE} file=${2:?usage: pg_dump_node NAME FILE} port db out
    port=$(pg_port "$name") && db=$(pg_dbname "$name") || return 1
    if ! out=$("$(_pg_bindir "$name")/pg_dump" -h 127.0.0.1 -p "$port" -U postgres -Fc -f "$file" "$db" 2>&1); then
        evrep_err "pg_dump of '$name' failed:"; printf '%s\n' "$out" | sed 's/^/#   /' >&2; return 1
    fi
    chmod 644 "$file"
    evrep_log "pg '$name': database $db dumped to $file"
}

pg_reload_dump() {
    local name=${1:?usage: pg_reload_dump NAME FILE} file=${2:?usage: pg_reload_dump NAME FILE}
    local data old db port out
    data=$(pg_datadir "$name") && db=$(pg_dbname "$name") && port=$(pg_port "$name") || return 1
    [[ -s "$file" ]] || { evrep_err "reload '$name': no dump $file"; return 1; }
    pg_is_running "$name" && { evrep_err "reload '$name': stop it first"; return 1; }
    old=$(_hist_move_aside "$name") || return 1
    mkdir -m 700 "$data" || return 1
    (( EUID == 0 )) && chown postgres: "$data"
    if ! out=$(_pg_as_pg "$(_pg_bindir "$name")/initdb" -D "$data" -U postgres --auth=trust \
                 --encoding=UTF8 --locale=C --no-sync --no-instructions 2>&1); then
        evrep_err "reload '$name': initdb failed:"; printf '%s\n' "$out" | sed 's/^/#   /' >&2; return 1
    fi
    cp "$old/postgresql.conf" "$data/postgresql.conf" || return 1
    [[ -f "$old/postgresql.auto.conf" ]] && cp "$old/postgresql.auto.conf" "$data/postgresql.auto.conf"
    {
        [[ -f "$old/server.log" ]] && cat "$old/server.log"
        printf '%s ---- test/lib/history.sh: new cluster (initdb) for a reload of %s ----\n' "$(date '+%F %T')" "$file"
    } >"$data/server.log"
    (( EUID == 0 )) && chown -R postgres: "$data"
    if ! out=$(printf 'CREATE DATABASE "%s";\n' "$db" | _pg_as_pg "$(_pg_bindir "$name")/postgres" --single \
                 -D "$data" -c shared_preload_libraries= -c log_min_messages=warning postgres 2>&1); then
        evrep_err "reload '$name': CREATE DATABASE failed:"; printf '%s\n' "$out" | sed 's/^/#   /' >&2; return 1
    fi
    pg_start "$name" "-c evrep.database=''" || return 1
    if ! out=$("$(_pg_bindir "$name")/pg_restore" -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$file" 2>&1); then
        evrep_err "reload '$name': pg_restore failed:"; printf '%s\n' "$out" | sed 's/^/#   /' >&2
        pg_stop "$name"; return 1
    fi
    [[ -n "$out" ]] && printf '%s\n' "$out" | sed 's/^/# pg_restore: /' >&2
    pg_stop "$name" || return 1
    evrep_log "pg '$name': new cluster in $data (old one in $old) with $file restored; stopped"
}
