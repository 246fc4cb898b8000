# test/lib/common.sh -- shared helpers for the evrep test libraries.
# Sourced by pg.sh, rabbitmq.sh and tap.sh; safe to source more than once.
#
# Environment:
#   EVREP_TEST_DIR   base directory for node data, logs, sockets' state
#                    (default /tmp/evrep-test; must be traversable by user postgres)
#
# Every node started through these libraries is recorded in a registry file
# owned by the top-level script ($$), so that tap.sh's EXIT trap can stop
# exactly the nodes this script started -- and nothing else.

[[ -n "${_EVREP_COMMON_SH:-}" ]] && return 0
_EVREP_COMMON_SH=1

: "${EVREP_TEST_DIR:=/tmp/evrep-test}"
export EVREP_TEST_DIR

# Print a message to stderr prefixed with the script name.
evrep_log() { printf '# [%s] %s\n' "${0##*/}" "$*" >&2; }

# Print an error to stderr and return 1 (callers do `|| return 1`).
evrep_err() { printf '# [%s] ERROR: %s\n' "${0##*/}" "$*" >&2; return 1; }

# Create the base dir (world-traversable so the postgres user can reach its
# data directories below it).
evrep_base_dir() {
    if [[ ! -d "$EVREP_TEST_DIR" ]]; then
        mkdir -p "$EVREP_TEST_DIR" || { evrep_err "cannot create $EVREP_TEST_DIR"; return 1; }
        chmod 755 "$EVREP_TEST_DIR"
    fi
    printf '%s\n' "$EVREP_TEST_DIR"
}

# Registry of nodes started by this script (file keyed by the top-level $$,
# which subshells share, so registering from $(...) works too).
evrep_registry_file() { printf '%s/.started.%s\n' "$EVREP_TEST_DIR" "$$"; }

# evrep_register KIND NAME  -- KIND is rmq (a RabbitMQ node), rmqc (a RabbitMQ
# cluster: its members and its epmd), pg or bg
evrep_register() {
    local f; f=$(evrep_registry_file)
    evrep_base_dir >/dev/null || return 1
    grep -qxF "$1 $2" "$f" 2>/dev/null || printf '%s %s\n' "$1" "$2" >>"$f"
}

# Is a process with this pid alive?
evrep_pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

# Is something accepting TCP connections on 127.0.0.1:PORT?
evrep_port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# evrep_wait_pid_exit PID TIMEOUT_S -- returns 0 once PID is gone, 1 on timeout.
evrep_wait_pid_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while evrep_pid_alive "$pid"; do
        (( SECONDS >= deadline )) && return 1
        sleep 0.1
    done
    return 0
}

# evrep_tail FILE [N] -- show the last lines of a log on stderr (for diagnostics).
evrep_tail() {
    local f=$1 n=${2:-40}
    [[ -f "$f" ]] || { echo "#   (no file $f)" >&2; return 0; }
    echo "# ---- last $n lines of $f ----" >&2
    tail -n "$n" "$f" | sed 's/^/#   /' >&2
    echo "# ----" >&2
}

# ---- background processes started by tests (services, clients, ...) ----
#   bg_start NAME CMD [ARGS...]  run CMD detached (own session), stdout+stderr
#                                to $(bg_logfile NAME); registered for cleanup
#   bg_stop NAME [TIMEOUT_S]     SIGTERM its process group, SIGKILL after
#                                TIMEOUT_S (default 10); no-op if not running
#   bg_pid NAME / bg_logfile NAME / bg_is_running NAME

_bg_check_name() {
    [[ "${1:-}" =~ ^[A-Za-z0-9_.-]+$ ]] || { evrep_err "bg: bad name '${1:-}'"; return 1; }
}
bg_logfile() { _bg_check_name "${1:-}" && printf '%s/bg-%s.log\n' "$EVREP_TEST_DIR" "$1"; }
bg_pid() {
    _bg_check_name "${1:-}" || return 1
    local f="$EVREP_TEST_DIR/bg-$1.pid"
    [[ -s "$f" ]] && cat "$f"
}
bg_is_running() { local p; p=$(bg_pid "$1") && evrep_pid_alive "$p"; }

bg_start() {
    local name=${1:?usage: bg_start NAME CMD [ARGS...]}; shift
    (( $# )) || { evrep_err "usage: bg_start NAME CMD [ARGS...]"; return 1; }
    _bg_check_name "$name" || return 1
    evrep_base_dir >/dev/null || return 1
    if bg_is_running "$name"; then
        evrep_err "bg '$name' already running (pid $(bg_pid "$name"))"; return 1
    fi
    evrep_register bg "$name"
    local log; log=$(bg_logfile "$name")
    setsid "$@" </dev/null >>"$log" 2>&1 &
    local pid=$!
    disown "$pid" 2>/dev/null || true
    echo "$pid" >"$EVREP_TEST_DIR/bg-$name.pid"
    evrep_log "bg '$name' started (pid $pid, log $log): $*"
}

bg_stop() {
    local name=${1:?usage: bg_stop NAME [TIMEOUT_S]} t=${2:-10} pid
    pid=$(bg_pid "$name") || return 0
    if kill -0 -- "-$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null
        local deadline=$((SECONDS + t))
        while kill -0 -- "-$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
        if kill -0 -- "-$pid" 2>/dev/null; then
            evrep_log "bg '$name' (group $pid) ignored SIGTERM for ${t}s; SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null
            evrep_wait_pid_exit "$pid" 5
        fi
    elif evrep_pid_alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$EVREP_TEST_DIR/bg-$name.pid"
}

# Stop everything this script ($$) registered, newest first, and print the
# names of their log files. Used by tap.sh's EXIT trap; callable directly.
evrep_stop_registered() {
    local f kind name
    f=$(evrep_registry_file)
    [[ -s "$f" ]] || { rm -f "$f"; return 0; }
    while read -r kind name; do
        case "$kind" in
            bg)  bg_stop "$name" ;;
            pg)  declare -F pg_stop >/dev/null && { pg_stop "$name" fast || pg_stop "$name" immediate || pg_kill "$name"; } ;;
            rmq) declare -F rmq_stop >/dev/null && rmq_stop "$name" ;;
            rmqc) declare -F rmq_cluster_stop >/dev/null && rmq_cluster_stop "$name" ;;
        esac
    done < <(tac "$f")
    rm -f "$f"
}

# Log files of everything this script registered (one per line).
evrep_registered_logs() {
    local f kind name
    f=$(evrep_registry_file)
    [[ -s "$f" ]] || return 0
    while read -r kind name; do
        case "$kind" in
            bg)  bg_logfile "$name" ;;
            pg)  declare -F pg_logfile >/dev/null && pg_logfile "$name" ;;
            rmq) declare -F rmq_logfile >/dev/null && rmq_logfile "$name" ;;
            rmqc) declare -F rmq_cluster_logs >/dev/null && rmq_cluster_logs "$name" ;;
        esac
    done <"$f"
}
