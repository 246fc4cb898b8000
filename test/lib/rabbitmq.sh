# test/lib/rabbitmq.sh -- private RabbitMQ nodes and clusters for tests (source this file).
#
# Single nodes:
#   rmq_start NAME [PORT] [tls=TLS_PORT] [users=U1,U2...]
#                           start node NAME, AMQP on 127.0.0.1:PORT (PORT may be
#                           omitted when restarting a node this script created:
#                           its port and options are remembered). tls=TLS_PORT
#                           adds a TLS listener on 127.0.0.1:TLS_PORT with
#                           certificates made by tls_make (test/lib/tls.sh) in
#                           $(rmq_dir NAME)/tls; it asks for a client
#                           certificate (verify_peer, fail_if_no_peer_cert).
#                           users= creates broker users at boot (a definitions
#                           file), each with password $(rmq_password USER), all
#                           permissions on vhost / and no tags; guest stays.
#   rmq_password USER       the test password of a users= user
#   rmq_user_url NAME USER [amqps]  URL of node NAME for that user
#   rmq_stop NAME           graceful shutdown (SIGTERM to the node's beam, else
#                           rabbitmqctl shutdown); kills only what rmq_start started
#   rmq_kill NAME           SIGKILL the node (simulated broker crash); data kept
#   rmq_restart NAME        rmq_stop + rmq_start (data kept)
#   rmq_ctl NAME ARGS...    rabbitmqctl against that node (e.g. -q list_queues)
#   rmq_url NAME            echo amqp://guest:guest@127.0.0.1:PORT
#   rmq_amqps_url NAME      echo amqps://guest:guest@127.0.0.1:TLS_PORT
#   rmq_tls_file NAME ca|cert|key|server_cert|server_key
#                           path of the CA / client / server certificate or key
#   rmq_tls_dir NAME        where node NAME's certificates are (or will be) made
#   rmq_port NAME / rmq_dir NAME / rmq_logfile NAME / rmq_is_running NAME
#   rmq_queue_depth NAME QUEUE   echo the queue's message count (ready +
#                           unacked); prints nothing and returns 1 if no queue
#   rmq_tool ARGS...        test/tools/amqp_tool.c (built on first use):
#                           declare-quorum URL QUEUE, publish URL EXCHANGE KEY
#                           BODY (persistent, mandatory, waits for the confirm)
#
# Clusters (NAME1..NAMEn are ordinary nodes for the functions above):
#   rmq_cluster_start NAME PORT [N=3] [tls=TLS_PORT] [users=U1,U2...]
#                           N nodes NAME1..NAMEN (AMQP PORT..PORT+N-1, TLS
#                           TLS_PORT..TLS_PORT+N-1 sharing one CA) formed into
#                           one cluster by classic_config peer discovery; returns
#                           once all N are running members
#   rmq_cluster_stop NAME   stop every member (in parallel), then the cluster's epmd
#   rmq_cluster_nodes NAME  the member names, one per line
#   rmq_cluster_node NAME I the I-th member's name (NAMEI)
#   rmq_cluster_urls NAME [amqps]  the members' URLs, comma-separated
#   rmq_cluster_running NAME       number of running members (cluster_status,
#                           asked of the first member that answers)
#   rmq_cluster_wait NAME N [TIMEOUT_S]  until N members run
#   rmq_cluster_kill NAME I / rmq_cluster_restart NAME I
#                           SIGKILL the I-th member / start it again (it rejoins)
#   rmq_cluster_leader NAME QUEUE  I, the member that leads QUEUE (a quorum
#                           queue), asked of the first member that answers
#   rmq_cluster_logs NAME   the members' log files
#   rmq_cluster_tls_dir NAME   where the cluster's certificates are (or will be) made
#
# Layout: $EVREP_TEST_DIR/rmq-NAME/{home,mnesia,log,rabbitmq.conf,...};
#         a cluster's shared state (epmd, cookie, CA) in $EVREP_TEST_DIR/rmqc-NAME.
# Ports: AMQP = PORT, Erlang distribution = PORT+20000, rabbitmqctl's own
#        distribution ports = PORT+30000..PORT+30009; epmd = PORT+10000 for a
#        single node (its own epmd), cluster PORT+10000 for every member of a
#        cluster (one epmd per cluster: Erlang nodes find each other through
#        it). Each epmd is started and stopped by pid, so nodes of other
#        scripts are never touched. Everything listens on 127.0.0.1.
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
# shellcheck source=tls.sh
source "$(dirname "${BASH_SOURCE[0]}")/tls.sh"

: "${RABBITMQ_BIN_DIR:=/usr/lib/rabbitmq/bin}"
_RMQ_LIBDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

_rmq_check_name() {
    [[ "${1:-}" =~ ^[A-Za-z0-9_-]+$ ]] || { evrep_err "rabbitmq: bad node name '${1:-}' (use [A-Za-z0-9_-])"; return 1; }
}

rmq_dir() { _rmq_check_name "${1:-}" && printf '%s/rmq-%s\n' "$EVREP_TEST_DIR" "$1"; }
_rmq_cdir() { _rmq_check_name "${1:-}" && printf '%s/rmqc-%s\n' "$EVREP_TEST_DIR" "$1"; }
rmq_tls_dir() { local d; d=$(rmq_dir "${1:-}") && printf '%s/tls\n' "$d"; }
rmq_cluster_tls_dir() { local d; d=$(_rmq_cdir "${1:-}") && printf '%s/tls\n' "$d"; }

# _rmq_get NAME FILE -- a remembered setting of node NAME (fails if unset)
_rmq_get() {
    local d; d=$(rmq_dir "$1") || return 1
    [[ -s "$d/$2" ]] && cat "$d/$2"
}

rmq_port() {
    local d; d=$(rmq_dir "$1") || return 1
    [[ -s "$d/port" ]] || { evrep_err "rabbitmq node '$1' unknown (no $d/port)"; return 1; }
    cat "$d/port"
}

rmq_url() { local p; p=$(rmq_port "$1") || return 1; printf 'amqp://guest:guest@127.0.0.1:%s\n' "$p"; }

rmq_password() { printf 'pw-%s\n' "${1:?usage: rmq_password USER}"; }

rmq_user_url() {
    local name=${1:?usage: rmq_user_url NAME USER [amqps]} user=${2:?usage: rmq_user_url NAME USER [amqps]} p
    if [[ "${3:-}" == amqps ]]; then
        p=$(_rmq_get "$name" tls_port) || { evrep_err "rabbitmq node '$name' has no TLS listener"; return 1; }
        printf 'amqps://%s:%s@127.0.0.1:%s\n' "$user" "$(rmq_password "$user")" "$p"
    else
        p=$(rmq_port "$name") || return 1
        printf 'amqp://%s:%s@127.0.0.1:%s\n' "$user" "$(rmq_password "$user")" "$p"
    fi
}

# _rmq_password_hash PASSWORD -- RabbitMQ's rabbit_password_hashing_sha256:
# base64(salt . sha256(salt . password)) with a 4-byte salt.
_rmq_password_hash() {
    local salt
    salt=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
    { printf '%b' "$(sed 's/../\\x&/g' <<<"$salt")"
      { printf '%b' "$(sed 's/../\\x&/g' <<<"$salt")"; printf '%s' "$1"; } | openssl dgst -sha256 -binary
    } | base64 -w0
}

# _rmq_write_definitions DIR USERS -- users (comma-separated) and guest, vhost
# /, full permissions: imported at every boot (load_definitions).
_rmq_write_definitions() {
    local d=$1 users=$2 u first=1
    {
        printf '{"vhosts": [{"name": "/"}],\n "users": [\n'
        printf '  {"name": "guest", "password_hash": "%s", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"]}' \
            "$(_rmq_password_hash guest)"
        for u in ${users//,/ }; do
            printf ',\n  {"name": "%s", "password_hash": "%s", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}' \
                "$u" "$(_rmq_password_hash "$(rmq_password "$u")")"
        done
        printf '],\n "permissions": [\n'
        for u in guest ${users//,/ }; do
            (( first )) || printf ',\n'
            first=0
            printf '  {"user": "%s", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}' "$u"
        done
        printf ']}\n'
    } >"$d/definitions.json"
}

rmq_amqps_url() {
    local p; p=$(_rmq_get "$1" tls_port) || { evrep_err "rabbitmq node '$1' has no TLS listener"; return 1; }
    printf 'amqps://guest:guest@127.0.0.1:%s\n' "$p"
}

rmq_tls_file() {
    local t; t=$(_rmq_get "$1" tls_dir) || { evrep_err "rabbitmq node '$1' has no TLS listener"; return 1; }
    tls_file "$t" "${2:-}"
}

_rmq_nodename() { printf 'evrep-%s@localhost\n' "$1"; }

rmq_logfile() { local d; d=$(rmq_dir "$1") || return 1; printf '%s/log/%s.log\n' "$d" "$(_rmq_nodename "$1")"; }

# _rmq_env NAME -- fill the global array _RMQ_ENV with the node's environment.
_rmq_env() {
    local name=$1 d port epmd
    d=$(rmq_dir "$name") && port=$(rmq_port "$name") || return 1
    epmd=$(_rmq_get "$name" epmd_port) || epmd=$((port + 10000))
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
        ERL_EPMD_PORT="$epmd"
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

# _rmq_start_epmd DIR PORT -- an epmd on 127.0.0.1:PORT whose pid is kept in
# DIR/epmd.pid (a no-op if that one is still running).
_rmq_start_epmd() {
    local d=$1 ep=$2
    if [[ -s "$d/epmd.pid" ]] && evrep_pid_alive "$(cat "$d/epmd.pid")"; then
        return 0   # ours, still running
    fi
    if evrep_port_in_use "$ep"; then
        evrep_err "rabbitmq ($d): epmd port $ep already in use by someone else"; return 1
    fi
    ERL_EPMD_ADDRESS=127.0.0.1 setsid epmd -address 127.0.0.1 -port "$ep" \
        </dev/null >>"$d/epmd.log" 2>&1 &
    echo $! >"$d/epmd.pid"; disown $! 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    until ERL_EPMD_PORT=$ep epmd -port "$ep" -names >/dev/null 2>&1; do
        if ! evrep_pid_alive "$(cat "$d/epmd.pid")" || (( SECONDS >= deadline )); then
            evrep_err "rabbitmq ($d): epmd on port $ep did not come up"
            evrep_tail "$d/epmd.log"; return 1
        fi
        sleep 0.1
    done
}

# _rmq_stop_epmd DIR -- stop the epmd recorded in DIR/epmd.pid, if any.
_rmq_stop_epmd() {
    local d=$1 pid
    [[ -s "$d/epmd.pid" ]] || return 0
    pid=$(cat "$d/epmd.pid")
    if evrep_pid_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        evrep_wait_pid_exit "$pid" 10 || kill -KILL "$pid" 2>/dev/null
        evrep_wait_pid_exit "$pid" 5
    fi
    rm -f "$d/epmd.pid"
}

# _rmq_write_config NAME -- rabbitmq.conf and friends from the remembered settings.
_rmq_write_config() {
    local name=$1 d port tls cluster users
    d=$(rmq_dir "$name") && port=$(rmq_port "$name") || return 1
    tls=$(_rmq_get "$name" tls_port) || tls=
    cluster=$(_rmq_get "$name" cluster) || cluster=
    users=$(_rmq_get "$name" users) || users=
    [[ -n "$users" ]] && { _rmq_write_definitions "$d" "$users" || return 1; }
    {
        echo "listeners.tcp.1 = 127.0.0.1:$port"
        [[ -n "$users" ]] && echo "load_definitions = $d/definitions.json"
        echo "loopback_users.guest = true"
        echo "disk_free_limit.absolute = 50MB"
        echo "log.console = false"
        echo "log.file.level = info"
        if [[ -n "$tls" ]]; then
            local t; t=$(cat "$d/tls_dir")
            echo "listeners.ssl.1 = 127.0.0.1:$tls"
            echo "ssl_options.cacertfile = $(tls_file "$t" ca)"
            echo "ssl_options.certfile = $(tls_file "$t" server_cert)"
            echo "ssl_options.keyfile = $(tls_file "$t" server_key)"
            echo "ssl_options.verify = verify_peer"
            echo "ssl_options.fail_if_no_peer_cert = true"
        fi
        if [[ -n "$cluster" ]]; then
            local i=0 m
            echo "cluster_formation.peer_discovery_backend = classic_config"
            while read -r m; do
                i=$((i + 1)); echo "cluster_formation.classic_config.nodes.$i = $(_rmq_nodename "$m")"
            done < <(rmq_cluster_nodes "$cluster")
            # a first node retries peers that cannot have tables yet; ~5 s less
            echo "cluster_formation.discovery_retry_limit = 3"
            echo "cluster_formation.discovery_retry_interval = 500"
        fi
    } >"$d/rabbitmq.conf"
    echo '[].' >"$d/advanced.config"
    echo '[].' >"$d/enabled_plugins"
}

rmq_start() {
    local name=${1:?usage: rmq_start NAME [PORT] [tls=PORT]} port= d opt tls= cluster= users= reconf=0
    shift
    if (( $# )) && [[ "$1" != *=* ]]; then port=$1; shift; fi
    for opt in "$@"; do
        case "$opt" in
            tls=*) tls=${opt#tls=}; reconf=1 ;;
            cluster=*) cluster=${opt#cluster=}; reconf=1 ;;   # set by rmq_cluster_start
            users=*) users=${opt#users=}; reconf=1 ;;
            *) evrep_err "rmq_start: unknown option '$opt'"; return 1 ;;
        esac
    done
    [[ -n "$port" ]] && reconf=1
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
    if (( reconf )); then
        # a (re)configuration: options not given now are off
        [[ -z "$cluster" ]] || _rmq_cdir "$cluster" >/dev/null || return 1
        local p
        for p in "$port" $tls; do
            [[ "$p" =~ ^[0-9]+$ ]] && (( p >= 1024 && p <= 35000 )) \
                || { evrep_err "rabbitmq '$name': port '$p' must be 1024..35000 (PORT+30009 is used too)"; return 1; }
        done
    else
        tls=$(_rmq_get "$name" tls_port) || tls=
        cluster=$(_rmq_get "$name" cluster) || cluster=
        users=$(_rmq_get "$name" users) || users=
    fi
    local p
    for p in "$port" $((port + 20000)) $tls; do
        evrep_port_in_use "$p" && { evrep_err "rabbitmq '$name': port $p already in use"; return 1; }
    done

    mkdir -p "$d/home" "$d/mnesia" "$d/log" || return 1
    echo "$$" >"$d/owner"
    echo "$port" >"$d/port"
    if (( reconf )); then
        rm -f "$d/tls_port" "$d/tls_dir" "$d/cluster" "$d/epmd_port" "$d/users"
        [[ -n "$tls" ]] && echo "$tls" >"$d/tls_port"
        [[ -n "$users" ]] && echo "$users" >"$d/users"
        if [[ -n "$cluster" ]]; then
            local cd; cd=$(_rmq_cdir "$cluster")
            echo "$cluster" >"$d/cluster"
            cat "$cd/epmd_port" >"$d/epmd_port"
            [[ -n "$tls" ]] && rmq_cluster_tls_dir "$cluster" >"$d/tls_dir"
            rm -f "$d/home/.erlang.cookie"
            install -m 400 "$cd/cookie" "$d/home/.erlang.cookie" || return 1
        else
            echo "$((port + 10000))" >"$d/epmd_port"
            [[ -n "$tls" ]] && rmq_tls_dir "$name" >"$d/tls_dir"
        fi
    fi
    if [[ ! -s "$d/home/.erlang.cookie" ]]; then
        ( umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$d/home/.erlang.cookie" )
        chmod 400 "$d/home/.erlang.cookie"
    fi
    if [[ -n "$tls" ]]; then tls_make "$(cat "$d/tls_dir")" || return 1; fi
    _rmq_write_config "$name" || return 1

    if [[ -z "$cluster" ]]; then
        # a single node owns its epmd; a cluster member uses the cluster's
        _rmq_start_epmd "$d" "$(_rmq_get "$name" epmd_port || echo $((port + 10000)))" || return 1
        evrep_register rmq "$name"
    fi
    _rmq_env "$name" || return 1

    evrep_log "starting rabbitmq '$name' on 127.0.0.1:$port${tls:+ (TLS $tls)}${cluster:+ (cluster $cluster)} (dir $d)"
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
            _rmq_stop_epmd "$d"; return 1
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
    local name=${1:?usage: rmq_stop NAME} d pid beam
    d=$(rmq_dir "$name") || return 1
    [[ -d "$d" ]] || return 0
    if [[ -s "$d/server.pid" ]]; then
        pid=$(cat "$d/server.pid")
        if evrep_pid_alive "$pid"; then
            evrep_log "stopping rabbitmq '$name' (pid $pid)"
            # SIGTERM makes the Erlang VM stop RabbitMQ in order (message
            # stores closed, as rabbitmqctl shutdown does) in ~1 s instead of
            # ~2.7 s, most of which is rabbitmqctl's own VM starting. Only a
            # beam of the process group rmq_start created is signalled.
            beam=$(cat "$d/beam.pid" 2>/dev/null)
            if [[ -n "$beam" ]] && evrep_pid_alive "$beam" \
                    && [[ "$(ps -o pgid= -p "$beam" 2>/dev/null | tr -d ' ')" == "$pid" ]]; then
                kill -TERM "$beam"
            else
                rmq_ctl "$name" -q shutdown >/dev/null 2>&1 \
                    || evrep_log "rabbitmqctl shutdown failed for '$name'; signalling pid $pid"
            fi
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
    _rmq_stop_epmd "$d"   # a no-op for a cluster member (the cluster owns its epmd)
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
    _rmq_stop_epmd "$d"
}

rmq_restart() { rmq_stop "${1:?usage: rmq_restart NAME}" && rmq_start "$1"; }

# ---- clusters -------------------------------------------------------------------

rmq_cluster_node() {
    local cd n; cd=$(_rmq_cdir "${1:-}") || return 1
    n=$(cat "$cd/size" 2>/dev/null) || { evrep_err "rabbitmq cluster '$1' unknown"; return 1; }
    [[ "${2:-}" =~ ^[0-9]+$ ]] && (( $2 >= 1 && $2 <= n )) || { evrep_err "rabbitmq cluster '$1': no member '${2:-}' (1..$n)"; return 1; }
    printf '%s%s\n' "$1" "$2"
}

rmq_cluster_nodes() {
    local cd n i; cd=$(_rmq_cdir "${1:-}") || return 1
    n=$(cat "$cd/size" 2>/dev/null) || { evrep_err "rabbitmq cluster '$1' unknown"; return 1; }
    for ((i = 1; i <= n; i++)); do printf '%s%s\n' "$1" "$i"; done
}

rmq_cluster_urls() {
    local m u out=
    while read -r m; do
        if [[ "${2:-}" == amqps ]]; then u=$(rmq_amqps_url "$m") || return 1
        else u=$(rmq_url "$m") || return 1; fi
        out+=${out:+,}$u
    done < <(rmq_cluster_nodes "$1")
    [[ -n "$out" ]] && printf '%s\n' "$out"
}

rmq_cluster_logs() {
    local m
    while read -r m; do rmq_logfile "$m"; done < <(rmq_cluster_nodes "$1")
}

rmq_cluster_running() {
    local m out
    while read -r m; do
        rmq_is_running "$m" || continue
        out=$(EVREP_RMQ_CTL_TIMEOUT=20 rmq_ctl "$m" -q cluster_status --formatter json 2>/dev/null) || continue
        out=$(grep -o '"running_nodes":\[[^]]*\]' <<<"$out") || continue
        grep -o '@' <<<"$out" | wc -l
        return 0
    done < <(rmq_cluster_nodes "$1")
    echo 0
    return 1
}

rmq_cluster_leader() {
    local name=${1:?usage: rmq_cluster_leader NAME QUEUE} q=${2:?usage: rmq_cluster_leader NAME QUEUE} m out
    while read -r m; do
        # a short timeout: a hung member must not hold the question up long
        out=$(EVREP_RMQ_CTL_TIMEOUT=20 rmq_ctl "$m" -q list_queues --no-table-headers name leader </dev/null 2>/dev/null) || continue
        # the leader's Erlang node name, evrep-NAMEI@localhost, gives I
        awk -v q="$q" -F'\t' '$1 == q { print $2 }' <<<"$out" | sed -n "s/^evrep-$name\([0-9]\)@.*/\1/p"
        return 0
    done < <(rmq_cluster_nodes "$name")
    return 1
}

rmq_cluster_wait() {
    local name=${1:?usage: rmq_cluster_wait NAME N [TIMEOUT_S]} want=${2:?usage: rmq_cluster_wait NAME N [TIMEOUT_S]}
    local deadline=$((SECONDS + ${3:-60})) got
    while :; do
        got=$(rmq_cluster_running "$name")
        [[ "$got" == "$want" ]] && return 0
        (( SECONDS >= deadline )) && { evrep_err "rabbitmq cluster '$name': $got running nodes, not $want"; return 1; }
        sleep 0.5
    done
}

rmq_cluster_start() {
    local name=${1:?usage: rmq_cluster_start NAME PORT [N] [tls=PORT]} port=${2:?usage: rmq_cluster_start NAME PORT [N] [tls=PORT]}
    shift 2
    local n=3 tls= users= opt
    if (( $# )) && [[ "$1" != *=* ]]; then n=$1; shift; fi
    for opt in "$@"; do
        case "$opt" in
            tls=*) tls=${opt#tls=} ;;
            users=*) users=${opt#users=} ;;
            *) evrep_err "rmq_cluster_start: unknown option '$opt'"; return 1 ;;
        esac
    done
    [[ "$n" =~ ^[0-9]+$ ]] && (( n >= 1 && n <= 9 )) || { evrep_err "rmq_cluster_start: size '$n' must be 1..9"; return 1; }
    [[ "$port" =~ ^[0-9]+$ ]] || { evrep_err "rmq_cluster_start: bad port '$port'"; return 1; }
    local cd i m
    cd=$(_rmq_cdir "$name") || return 1
    evrep_base_dir >/dev/null || return 1
    if [[ -d "$cd" ]]; then
        if [[ "$(cat "$cd/owner" 2>/dev/null)" == "$$" ]]; then
            evrep_err "rabbitmq cluster '$name' was already started by this script"; return 1
        fi
        if [[ -s "$cd/epmd.pid" ]] && evrep_pid_alive "$(cat "$cd/epmd.pid")"; then
            evrep_err "rabbitmq cluster '$name': $cd belongs to another process whose epmd (pid $(cat "$cd/epmd.pid")) is alive"; return 1
        fi
        rm -rf "$cd"
    fi
    mkdir -p "$cd" || return 1
    echo "$$" >"$cd/owner"
    echo "$port" >"$cd/port"
    echo "$n" >"$cd/size"
    echo "$((port + 10000))" >"$cd/epmd_port"
    ( umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$cd/cookie" )
    if [[ -n "$tls" ]]; then tls_make "$(rmq_cluster_tls_dir "$name")" || return 1; fi
    _rmq_start_epmd "$cd" $((port + 10000)) || return 1
    evrep_register rmqc "$name"

    # All members boot at once; classic_config peer discovery makes the
    # first one up form the cluster and the others join it.
    local -a pids=()
    for ((i = 1; i <= n; i++)); do
        rmq_start "$name$i" $((port + i - 1)) cluster="$name" ${tls:+tls=$((tls + i - 1))} ${users:+users=$users} \
            >"$cd/start.$i.out" 2>&1 &
        pids+=($!)
    done
    local bad=0
    for ((i = 1; i <= n; i++)); do
        if ! wait "${pids[i - 1]}"; then
            evrep_err "rabbitmq cluster '$name': member $name$i did not start"
            sed 's/^/#   /' "$cd/start.$i.out" >&2; bad=1
        fi
    done
    (( bad )) && return 1
    if ! rmq_cluster_wait "$name" "$n" 30; then
        # two members that booted at the same moment may each have formed a
        # cluster of their own: make the strays join the first member
        local first out; first=$(_rmq_nodename "${name}1")
        for ((i = 2; i <= n; i++)); do
            m=$name$i
            out=$(rmq_ctl "$m" -q cluster_status --formatter json 2>/dev/null)
            grep -q "\"$first\"" <<<"$(grep -o '"running_nodes":\[[^]]*\]' <<<"$out")" && continue
            evrep_log "rabbitmq cluster '$name': $m is not in ${name}1's cluster; joining it"
            rmq_ctl "$m" -q stop_app && rmq_ctl "$m" -q reset && rmq_ctl "$m" -q join_cluster "$first" \
                && rmq_ctl "$m" -q start_app || { evrep_err "rabbitmq cluster '$name': $m could not join"; return 1; }
        done
        rmq_cluster_wait "$name" "$n" 30 || return 1
    fi
    evrep_log "rabbitmq cluster '$name': $n nodes running (AMQP $port..$((port + n - 1))${tls:+, TLS $tls..$((tls + n - 1))})"
}

rmq_cluster_kill() { local m; m=$(rmq_cluster_node "$1" "$2") && rmq_kill "$m"; }
rmq_cluster_restart() { local m; m=$(rmq_cluster_node "$1" "$2") && rmq_start "$m"; }

rmq_cluster_stop() {
    local name=${1:?usage: rmq_cluster_stop NAME} cd m
    cd=$(_rmq_cdir "$name") || return 1
    [[ -d "$cd" ]] || return 0
    local -a pids=()
    while read -r m; do
        rmq_stop "$m" &
        pids+=($!)
    done < <(rmq_cluster_nodes "$name" 2>/dev/null)
    local p
    for p in "${pids[@]}"; do wait "$p"; done
    _rmq_stop_epmd "$cd"
}

# ---- a small AMQP client for what amqp-tools cannot do ------------------------
rmq_tool() {
    local src bin
    src=$(cd "$_RMQ_LIBDIR/../tools" && pwd)/amqp_tool.c
    bin=$EVREP_TEST_DIR/bin/amqp_tool
    if [[ ! -x "$bin" || "$src" -nt "$bin" ]]; then
        mkdir -p "${bin%/*}" || return 1
        # shellcheck disable=SC2046
        cc -O -Wall -o "$bin.$$" "$src" $(pkg-config --cflags --libs librabbitmq) \
            && mv -f "$bin.$$" "$bin" || { evrep_err "cannot build $src"; return 1; }
    fi
    "$bin" "$@"
}
