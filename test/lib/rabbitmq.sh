# test/lib/rabbitmq.sh -- private RabbitMQ nodes for tests (source this file).
#
#   rmq_start NAME [PORT]   start node NAME, AMQP on 127.0.0.1:PORT (PORT may be
#                           omitted when restarting a node this script created)
#   rmq_stop NAME           graceful shutdown; kills only what rmq_start started
#   rmq_kill NAME           SIGKILL the node (simulated broker crash); data kept
#   rmq_restart NAME        rmq_stop + rmq_start (data kept)
#   rmq_ctl NAME ARGS...    rabbitmqctl against that node (e.g. -q list_queues)
#   rmq_url NAME            echo amqp://guest:guest@127.0.0.1:PORT
#   rmq_port NAME / rmq_dir NAME / rmq_logfile NAME / rmq_is_running NAME
#   rmq_queue_depth NAME QUEUE   echo the queue's message count (ready +
#                           unacked); prints nothing and returns 1 if no queue
#
# Layout: $EVREP_TEST_DIR/rmq-NAME/{home,mnesia,log,rabbitmq.conf,...}
# Ports: AMQP = PORT, epmd = PORT+10000, Erlang distribution = PORT+20000,
#        rabbitmqctl's own distribution ports = PORT+30000..PORT+30009.
# Every node gets its own epmd (ERL_EPMD_PORT) started and stopped by pid, so
# nodes of other scripts are never touched. Everything listens on 127.0.0.1.
#
# Data: the node's mnesia directory survives rmq_stop/rmq_start within the
# same script (durable queues and persistent messages survive). A node
# directory left over from another process is wiped by rmq_start.
#
# Environment: EVREP_TEST_DIR (base dir, default /tmp/evrep-test),
#   RABBITMQ_BIN_DIR (default /usr/lib/rabbitmq/bin),
#   EVREP_RMQ_START_TIMEOUT (s, default 90), EVREP_RMQ_STOP_TIMEOUT (s, default 60),
#   EVREP_RMQ_CTL_TIMEOUT (s, default 60, per rabbitmqctl call).

[[ -n "${_EVREP_RABBITMQ_SH:-}" ]] && return 0
_EVREP_RABBITMQ_SH=1

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${RABBITMQ_BIN_DIR:=/usr/lib/rabbitmq/bin}"

_rmq_check_name() {
    [[ "${1:-}" =~ ^[A-Za-z0-9_-]+$ ]] || { evrep_err "rabbitmq: bad node name '${1:-}' (use [A-Za-z0-9_-])"; return 1; }
}

rmq_dir() { _rmq_check_name "${1:-}" && printf '%s/rmq-%s\n' "$EVREP_TEST_DIR" "$1"; }

rmq_port() {
    local d; d=$(rmq_dir "$1") || return 1
    [[ -s "$d/port" ]] || { evrep_err "rabbitmq node '$1' unknown (no $d/port)"; return 1; }
    cat "$d/port"
}

rmq_url() { local p; p=$(rmq_port "$1") || return 1; printf 'amqp://guest:guest@127.0.0.1:%s\n' "$p"; }

_rmq_nodename() { printf 'evrep-%s@localhost\n' "$1"; }

rmq_logfile() { local d; d=$(rmq_dir "$1") || return 1; printf '%s/log/%s.log\n' "$d" "$(_rmq_nodename "$1")"; }

# _rmq_env NAME -- fill the global array _RMQ_ENV with the node's environment.
_rmq_env() {
    local name=$1 d port
    d=$(rmq_dir "$name") && port=$(rmq_port "$name") || return 1
    local erl_args='-kernel inet_dist_use_interface {127,0,0,1}'
    _RMQ_ENV=(
        HOME="$d/home"
        LANG=C.UTF-8
        LC_ALL=C.UTF-8
        RABBITMQ_NODENAME="$(_rmq_nodename "$name")"
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
        RABBITMQ_NODE_PORT="$port"
        RABBITMQ_DIST_PORT="$((port + 20000))"
        RABBITMQ_CTL_DIST_PORT_MIN="$((port + 30000))"
        RABBITMQ_CTL_DIST_PORT_MAX="$((port + 30009))"
        ERL_EPMD_PORT="$((port + 10000))"
        ERL_EPMD_ADDRESS=127.0.0.1
        RABBITMQ_MNESIA_BASE="$d/mnesia"
        RABBITMQ_LOG_BASE="$d/log"
        RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf"
        RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config"
        RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins"
        RABBITMQ_CONF_ENV_FILE=/dev/null
        RABBITMQ_PID_FILE="$d/beam.pid"
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$erl_args"
        RABBITMQ_CTL_ERL_ARGS="$erl_args"
    )
}

rmq_is_running() {
    local d; d=$(rmq_dir "$1") || return 1
    [[ -s "$d/server.pid" ]] && evrep_pid_alive "$(cat "$d/server.pid")"
}

rmq_ctl() {
    local name=${1:?usage: rmq_ctl NAME args...}; shift
    _rmq_env "$name" || return 1
    timeout "${EVREP_RMQ_CTL_TIMEOUT:-60}" env "${_RMQ_ENV[@]}" \
        "$RABBITMQ_BIN_DIR/rabbitmqctl" -n "$(_rmq_nodename "$name")" "$@"
}

rmq_queue_depth() {
    local name=${1:?usage: rmq_queue_depth NAME QUEUE} q=${2:?usage: rmq_queue_depth NAME QUEUE} out
    out=$(rmq_ctl "$name" -q list_queues --no-table-headers name messages) || return 1
    awk -v q="$q" -F'\t' '$1 == q { print $2; found = 1 } END { exit !found }' <<<"$out"
}

_rmq_start_epmd() {
    local name=$1 d port ep
    d=$(rmq_dir "$name") && port=$(rmq_port "$name") || return 1
    ep=$((port + 10000))
    if [[ -s "$d/epmd.pid" ]] && evrep_pid_alive "$(cat "$d/epmd.pid")"; then
        return 0   # ours, still running
    fi
    if evrep_port_in_use "$ep"; then
        evrep_err "rabbitmq '$name': epmd port $ep already in use by someone else"; return 1
    fi
    ERL_EPMD_ADDRESS=127.0.0.1 setsid epmd -address 127.0.0.1 -port "$ep" \
        </dev/null >>"$d/epmd.log" 2>&1 &
    echo $! >"$d/epmd.pid"; disown $! 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    until ERL_EPMD_PORT=$ep epmd -port "$ep" -names >/dev/null 2>&1; do
        if ! evrep_pid_alive "$(cat "$d/epmd.pid")" || (( SECONDS >= deadline )); then
            evrep_err "rabbitmq '$name': epmd on port $ep did not come up"
            evrep_tail "$d/epmd.log"; return 1
        fi
        sleep 0.1
    done
}

_rmq_stop_epmd() {
    local d pid; d=$(rmq_dir "$1") || return 1
    [[ -s "$d/epmd.pid" ]] || return 0
    pid=$(cat "$d/epmd.pid")
    if evrep_pid_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        evrep_wait_pid_exit "$pid" 10 || kill -KILL "$pid" 2>/dev/null
        evrep_wait_pid_exit "$pid" 5
    fi
    rm -f "$d/epmd.pid"
}

rmq_start() {
    local name=${1:?usage: rmq_start NAME [PORT]} port=${2:-} d
    d=$(rmq_dir "$name") || return 1
    evrep_base_dir >/dev/null || return 1

    if rmq_is_running "$name"; then
        evrep_err "rabbitmq '$name' is already running (pid $(cat "$d/server.pid"), dir $d)"; return 1
    fi
    if [[ -d "$d" && "$(cat "$d/owner" 2>/dev/null)" != "$$" ]]; then
        # Left over from another run: start fresh, unless its epmd is still alive.
        if [[ -s "$d/epmd.pid" ]] && evrep_pid_alive "$(cat "$d/epmd.pid")"; then
            evrep_err "rabbitmq '$name': $d belongs to another process whose epmd (pid $(cat "$d/epmd.pid")) is alive"; return 1
        fi
        rm -rf "$d"
    fi
    if [[ -z "$port" ]]; then
        port=$(rmq_port "$name" 2>/dev/null) || { evrep_err "usage: rmq_start NAME PORT (no port known for '$name')"; return 1; }
    fi
    [[ "$port" =~ ^[0-9]+$ ]] && (( port >= 1024 && port <= 35000 )) \
        || { evrep_err "rabbitmq '$name': port '$port' must be 1024..35000 (PORT+30009 is used too)"; return 1; }
    local p
    for p in "$port" $((port + 20000)); do
        evrep_port_in_use "$p" && { evrep_err "rabbitmq '$name': port $p already in use"; return 1; }
    done

    mkdir -p "$d/home" "$d/mnesia" "$d/log" || return 1
    echo "$$" >"$d/owner"
    echo "$port" >"$d/port"
    if [[ ! -s "$d/home/.erlang.cookie" ]]; then
        ( umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$d/home/.erlang.cookie" )
        chmod 400 "$d/home/.erlang.cookie"
    fi
    cat >"$d/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$port
loopback_users.guest = true
disk_free_limit.absolute = 50MB
log.console = false
log.file.level = info
CONF
    echo '[].' >"$d/advanced.config"
    echo '[].' >"$d/enabled_plugins"

    _rmq_start_epmd "$name" || return 1
    _rmq_env "$name" || return 1
    evrep_register rmq "$name"

    evrep_log "starting rabbitmq '$name' on 127.0.0.1:$port (dir $d)"
    setsid env "${_RMQ_ENV[@]}" "$RABBITMQ_BIN_DIR/rabbitmq-server" \
        </dev/null >>"$d/server.out" 2>&1 &
    local pid=$!; disown "$pid" 2>/dev/null || true
    echo "$pid" >"$d/server.pid"

    local timeout=${EVREP_RMQ_START_TIMEOUT:-90} start=$SECONDS
    local deadline=$((SECONDS + timeout))
    while :; do
        if ! evrep_pid_alive "$pid"; then
            evrep_err "rabbitmq '$name' exited during startup"
            evrep_tail "$d/server.out"; evrep_tail "$(rmq_logfile "$name")"
            _rmq_stop_epmd "$name"; return 1
        fi
        if EVREP_RMQ_CTL_TIMEOUT=20 rmq_ctl "$name" -q await_startup --timeout 15 >/dev/null 2>&1; then
            break
        fi
        if (( SECONDS >= deadline )); then
            evrep_err "rabbitmq '$name' not up after ${timeout}s"
            evrep_tail "$d/server.out"; evrep_tail "$(rmq_logfile "$name")"
            rmq_stop "$name"; return 1
        fi
        sleep 0.5
    done
    evrep_log "rabbitmq '$name' is up after $((SECONDS - start))s (pid $pid)"
}

rmq_stop() {
    local name=${1:?usage: rmq_stop NAME} d pid
    d=$(rmq_dir "$name") || return 1
    [[ -d "$d" ]] || return 0
    if [[ -s "$d/server.pid" ]]; then
        pid=$(cat "$d/server.pid")
        if evrep_pid_alive "$pid"; then
            evrep_log "stopping rabbitmq '$name' (pid $pid)"
            rmq_ctl "$name" -q shutdown >/dev/null 2>&1 \
                || evrep_log "rabbitmqctl shutdown failed for '$name'; signalling pid $pid"
            if ! evrep_wait_pid_exit "$pid" "${EVREP_RMQ_STOP_TIMEOUT:-60}"; then
                kill -TERM "$pid" 2>/dev/null
                evrep_wait_pid_exit "$pid" 15
            fi
        fi
        # Whatever is left in the process group we created (beam, helpers).
        if kill -0 -- "-$pid" 2>/dev/null; then
            kill -KILL -- "-$pid" 2>/dev/null
            local deadline=$((SECONDS + 10))
            while kill -0 -- "-$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
        fi
        rm -f "$d/server.pid"
    fi
    _rmq_stop_epmd "$name"
}

rmq_kill() {
    local name=${1:?usage: rmq_kill NAME} d pid
    d=$(rmq_dir "$name") || return 1
    [[ -s "$d/server.pid" ]] || { evrep_err "rabbitmq '$name' was not started"; return 1; }
    pid=$(cat "$d/server.pid")
    evrep_log "killing rabbitmq '$name' (process group $pid) with SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null
    local deadline=$((SECONDS + 10))
    while kill -0 -- "-$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
    rm -f "$d/server.pid"
    _rmq_stop_epmd "$name"
}

rmq_restart() { rmq_stop "${1:?usage: rmq_restart NAME}" && rmq_start "$1"; }
