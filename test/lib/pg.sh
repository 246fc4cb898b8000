# test/lib/pg.sh -- private PostgreSQL 15 clusters for tests (source this file).
#
#   pg_init NAME PORT [--db DB] [CONF_LINE...]
#                           initdb a fresh cluster for node NAME and create
#                           database DB (default NAME) in it (server left
#                           stopped). Extra args are appended to
#                           postgresql.conf verbatim, after the defaults, so
#                           they override them.
#   pg_start NAME [OPTS]    pg_ctl start -w; OPTS (one string) are passed to the
#                           postmaster (pg_ctl -o), e.g. "-c evrep.database=''"
#   pg_stop NAME [MODE]     pg_ctl stop -m MODE (smart|fast|immediate; default fast);
#                           no-op if not running
#   pg_restart NAME [MODE]  pg_stop + pg_start
#   pg_kill NAME            SIGKILL the postmaster (crash), wait for its children
#                           to exit; the next pg_start runs crash recovery
#   pg_reload NAME          pg_ctl reload
#   pg_psql NAME ARGS...    psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p PORT
#                           -U postgres -d DB ARGS...  (a later -d DB overrides)
#   pg_port NAME / pg_dbname NAME / pg_datadir NAME / pg_logfile NAME / pg_is_running NAME
#   pg_connstr NAME [DB]    echo "host=127.0.0.1 port=PORT user=postgres dbname=DB"
#
# Layout: $EVREP_TEST_DIR/pg-NAME/data (owned by postgres), log in
# data/server.log, unix socket in /tmp/evrep-pg.PORT. Auth: trust for
# superuser postgres over 127.0.0.1 and the local socket. Server processes run
# as user postgres (via runuser when the caller is root).
#
# postgresql.conf gets: listen_addresses='127.0.0.1', port, unix socket dir,
# shared_preload_libraries='evrep' (unless EVREP_PRELOAD=0),
# max_prepared_transactions=20, track_commit_timestamp=on, wal_level=logical,
# max_wal_senders=10, max_replication_slots=10, logging_collector=off,
# evrep.node_name='NAME', evrep.database='DB' and, if EVREP_BROKER_URL is
# set, evrep.broker_url.
#
# Environment: EVREP_TEST_DIR (base, default /tmp/evrep-test), EVREP_PRELOAD
#   (0 = do not preload evrep), EVREP_BROKER_URL, PG_CONFIG (pg_config to ask
#   for bindir/pkglibdir; default /usr/lib/postgresql/15/bin/pg_config),
#   EVREP_PG_TIMEOUT (s, default 60, for start/stop waits).
#
# Per-node build: pg_init records the bindir of the PG_CONFIG in effect when
# it runs (in pg-NAME/bindir), and the node's server programs (initdb,
# postgres, pg_ctl) come from there (psql stays PG_BINDIR's), so one script can run nodes of
# different installs side by side, e.g. an old evrep release built into a
# copy of PostgreSQL (test/lib/evrep10.sh):  PG_CONFIG=/copy/bin/pg_config
# pg_init old 6351  (topology.sh: node ... pg_config=PATH). Without that
# file (a node made before this) PG_BINDIR is used. pg_set_bindir NAME
# PG_CONFIG points a stopped node at another install (a binary upgrade).

[[ -n "${_EVREP_PG_SH:-}" ]] && return 0
_EVREP_PG_SH=1

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${PG_CONFIG:=/usr/lib/postgresql/15/bin/pg_config}"
if [[ -x "$PG_CONFIG" ]] || command -v "$PG_CONFIG" >/dev/null 2>&1; then
    PG_BINDIR=$("$PG_CONFIG" --bindir)
else
    PG_BINDIR=/usr/lib/postgresql/15/bin
fi

_pg_check_name() {
    [[ "${1:-}" =~ ^[A-Za-z0-9_-]+$ ]] || { evrep_err "pg: bad node name '${1:-}' (use [A-Za-z0-9_-])"; return 1; }
}

# Run a command as the postgres OS user when we are root.
_pg_as_pg() {
    if (( EUID == 0 )); then runuser -u postgres -- "$@"; else "$@"; fi
}

_pg_node_dir() { _pg_check_name "${1:-}" && printf '%s/pg-%s\n' "$EVREP_TEST_DIR" "$1"; }
pg_datadir() { local d; d=$(_pg_node_dir "${1:-}") && printf '%s/data\n' "$d"; }
pg_logfile() { local d; d=$(pg_datadir "${1:-}") && printf '%s/server.log\n' "$d"; }

pg_port() {
    local d; d=$(_pg_node_dir "${1:-}") || return 1
    [[ -s "$d/port" ]] || { evrep_err "pg node '$1' unknown (no $d/port; run pg_init)"; return 1; }
    cat "$d/port"
}

# The node's database (pg_init --db; default the node's name).
pg_dbname() {
    local d; d=$(_pg_node_dir "${1:-}") || return 1
    if [[ -s "$d/dbname" ]]; then cat "$d/dbname"; else printf '%s\n' "$1"; fi
}

pg_connstr() {
    local p db; p=$(pg_port "$1") && db=${2:-$(pg_dbname "$1")} || return 1
    printf 'host=127.0.0.1 port=%s user=postgres dbname=%s\n' "$p" "$db"
}

# Postmaster pid if running, else fail.
_pg_postmaster_pid() {
    local data pid; data=$(pg_datadir "$1") || return 1
    [[ -s "$data/postmaster.pid" ]] || return 1
    pid=$(head -n 1 "$data/postmaster.pid")
    evrep_pid_alive "$pid" && printf '%s\n' "$pid"
}

pg_is_running() { _pg_postmaster_pid "$1" >/dev/null; }

# _pg_bindir NAME -- the bindir of the install NAME was initialised with
_pg_bindir() {
    local d; d=$(_pg_node_dir "$1") || return 1
    if [[ -s "$d/bindir" ]]; then cat "$d/bindir"; else printf '%s\n' "$PG_BINDIR"; fi
}

# pg_set_bindir NAME PG_CONFIG -- run the (stopped) node NAME from that install
pg_set_bindir() {
    local d b; d=$(_pg_node_dir "${1:?usage: pg_set_bindir NAME PG_CONFIG}") || return 1
    pg_is_running "$1" && { evrep_err "pg '$1' is running; stop it first"; return 1; }
    b=$("${2:?usage: pg_set_bindir NAME PG_CONFIG}" --bindir) || return 1
    [[ -x "$b/postgres" ]] || { evrep_err "pg '$1': no postgres in $b"; return 1; }
    printf '%s\n' "$b" >"$d/bindir"
}

_pg_sql_literal() { printf "'%s'" "${1//\'/\'\'}"; }

pg_init() {
    local name=${1:?usage: pg_init NAME PORT [conf lines...]} port=${2:?usage: pg_init NAME PORT [conf lines...]}
    shift 2
    local d data sock db=$name bindir
    if [[ "${1:-}" == --db ]]; then db=${2:?pg_init: --db needs a name}; shift 2; fi
    [[ "$db" =~ ^[A-Za-z0-9_-]+$ ]] || { evrep_err "pg '$name': bad database name '$db'"; return 1; }
    d=$(_pg_node_dir "$name") || return 1
    data="$d/data"
    [[ "$port" =~ ^[0-9]+$ ]] && (( port >= 1024 && port <= 65535 )) \
        || { evrep_err "pg '$name': bad port '$port'"; return 1; }
    evrep_base_dir >/dev/null || return 1
    if pg_is_running "$name"; then
        evrep_err "pg '$name' is running (pid $(_pg_postmaster_pid "$name"), $data); stop it before pg_init"; return 1
    fi
    if (( EUID == 0 )) && ! runuser -u postgres -- test -x "$EVREP_TEST_DIR"; then
        evrep_err "user postgres cannot enter $EVREP_TEST_DIR (and its parents); choose another EVREP_TEST_DIR"; return 1
    fi
    bindir=$("$PG_CONFIG" --bindir 2>/dev/null) && [[ -x "$bindir/postgres" ]] || bindir=$PG_BINDIR
    local preload=1
    [[ "${EVREP_PRELOAD:-1}" == 0 ]] && preload=0
    if (( preload )) && [[ ! -e "$("$PG_CONFIG" --pkglibdir 2>/dev/null)/evrep.so" ]]; then
        evrep_err "pg '$name': evrep.so is not installed in $("$PG_CONFIG" --pkglibdir 2>/dev/null) (run make install, or set EVREP_PRELOAD=0)"; return 1
    fi

    rm -rf "$d"
    mkdir -p "$d" && chmod 755 "$d" || return 1
    mkdir -m 700 "$data" || return 1
    (( EUID == 0 )) && chown postgres: "$data"
    echo "$port" >"$d/port"
    echo "$db" >"$d/dbname"
    echo "$$" >"$d/owner"
    echo "$bindir" >"$d/bindir"

    sock=/tmp/evrep-pg.$port
    mkdir -p "$sock" && chmod 755 "$sock" || return 1
    (( EUID == 0 )) && chown postgres: "$sock"

    local out
    if ! out=$(_pg_as_pg "$bindir/initdb" -D "$data" -U postgres --auth=trust \
                 --encoding=UTF8 --locale=C --no-sync --no-instructions 2>&1); then
        evrep_err "pg '$name': initdb failed:"; printf '%s\n' "$out" | sed 's/^/#   /' >&2; return 1
    fi

    {
        echo
        echo "# ---- evrep test settings (test/lib/pg.sh) ----"
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$sock'"
        if (( preload )); then echo "shared_preload_libraries = 'evrep'"
        else echo "# shared_preload_libraries = 'evrep'   (EVREP_PRELOAD=0)"; fi
        echo "max_prepared_transactions = 20"
        echo "track_commit_timestamp = on"
        echo "wal_level = logical"
        echo "max_wal_senders = 10"
        echo "max_replication_slots = 10"
        echo "logging_collector = off"
        echo "log_line_prefix = '%m [%p] %b %q%a '"
        echo "lc_messages = 'C'"
        echo "evrep.node_name = $(_pg_sql_literal "$name")"
        echo "evrep.database = $(_pg_sql_literal "$db")"
        [[ -n "${EVREP_BROKER_URL:-}" ]] && echo "evrep.broker_url = $(_pg_sql_literal "$EVREP_BROKER_URL")"
        local line
        for line in "$@"; do printf '%s\n' "$line"; done
    } >>"$data/postgresql.conf"

    # Create the database in single-user mode (no workers, nothing preloaded,
    # so the evrep workers never see a missing database).
    if ! out=$(printf 'CREATE DATABASE "%s";\n' "$db" | _pg_as_pg "$bindir/postgres" --single \
                 -D "$data" -c shared_preload_libraries= -c log_min_messages=warning postgres 2>&1); then
        evrep_err "pg '$name': CREATE DATABASE failed:"; printf '%s\n' "$out" | sed 's/^/#   /' >&2; return 1
    fi
    evrep_log "pg '$name' initialised in $data (port $port, preload=$preload, bindir $bindir)"
}

pg_start() {
    local name=${1:?usage: pg_start NAME [OPTS]} opts=${2:-} data port out
    data=$(pg_datadir "$name") && port=$(pg_port "$name") || return 1
    if pg_is_running "$name"; then
        evrep_err "pg '$name' is already running (pid $(_pg_postmaster_pid "$name"))"; return 1
    fi
    if evrep_port_in_use "$port"; then
        evrep_err "pg '$name': port $port already in use"; return 1
    fi
    evrep_register pg "$name"
    if ! out=$(_pg_as_pg "$(_pg_bindir "$name")/pg_ctl" -D "$data" -l "$data/server.log" -w \
                 -t "${EVREP_PG_TIMEOUT:-60}" ${opts:+-o "$opts"} start 2>&1); then
        evrep_err "pg '$name' failed to start:"; printf '%s\n' "$out" | sed 's/^/#   /' >&2
        evrep_tail "$data/server.log"; return 1
    fi
    evrep_log "pg '$name' started on 127.0.0.1:$port (pid $(_pg_postmaster_pid "$name"))"
}

pg_stop() {
    local name=${1:?usage: pg_stop NAME [mode]} mode=${2:-fast} data out
    data=$(pg_datadir "$name") || return 1
    pg_is_running "$name" || return 0
    if ! out=$(_pg_as_pg "$(_pg_bindir "$name")/pg_ctl" -D "$data" -m "$mode" -w \
                 -t "${EVREP_PG_TIMEOUT:-60}" stop 2>&1); then
        evrep_err "pg '$name': pg_ctl stop -m $mode failed:"; printf '%s\n' "$out" | sed 's/^/#   /' >&2
        evrep_tail "$data/server.log" 20; return 1
    fi
    evrep_log "pg '$name' stopped ($mode)"
}

pg_restart() { pg_stop "${1:?usage: pg_restart NAME [mode]}" "${2:-fast}" && pg_start "$1"; }

pg_reload() {
    local data; data=$(pg_datadir "${1:?usage: pg_reload NAME}") || return 1
    _pg_as_pg "$(_pg_bindir "$1")/pg_ctl" -D "$data" reload >/dev/null
}

pg_kill() {
    local name=${1:?usage: pg_kill NAME} pid kids k
    pid=$(_pg_postmaster_pid "$name") || { evrep_err "pg '$name' is not running"; return 1; }
    kids=$(pgrep -P "$pid" || true)
    evrep_log "pg '$name': SIGKILL postmaster $pid"
    kill -KILL "$pid"
    evrep_wait_pid_exit "$pid" 10 || { evrep_err "postmaster $pid did not die"; return 1; }
    for k in $kids; do
        evrep_wait_pid_exit "$k" "${EVREP_PG_TIMEOUT:-60}" || kill -KILL "$k" 2>/dev/null
    done
    for k in $kids; do evrep_wait_pid_exit "$k" 5; done
}

pg_psql() {
    local name=${1:?usage: pg_psql NAME args...} port db; shift
    port=$(pg_port "$name") && db=$(pg_dbname "$name") || return 1
    PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-10} "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"
}
