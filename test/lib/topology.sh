# test/lib/topology.sh -- RabbitMQ + PostgreSQL nodes with evrep, from one
# description (source this file). The tests, scripts/demo.sh and bench/*.sh
# bring their servers up through it; a setting every node gets is added here.
#
# ---- the description ---------------------------------------------------------
# One line per broker or node; '#' starts a comment line; a line ending in '\'
# continues on the next. Values are words, or quoted: 'single quotes' are
# taken literally, "double quotes" too except for \" and \\. Keys that may be
# repeated are marked [...]. A here-doc is the usual form (unquoted, so that
# shell variables expand in it):
#
#   topo_up <<EOF
#   broker mq port=5711
#   node a port=5821 publish=customer schema="$CUSTOMER_DDL"
#   node b port=5822 subscribe=customer schema="$CUSTOMER_DDL" conf=work_mem=64MB
#   EOF
#
# broker NAME port=PORT [nodes=N] [tls=TLS_PORT] [users=U[,U...]]
#     a RabbitMQ node (test/lib/rabbitmq.sh) with AMQP on 127.0.0.1:PORT;
#     nodes=N (N > 1): a cluster of N nodes NAME1..NAMEN on PORT..PORT+N-1
#     (rmq_cluster_*); tls=TLS_PORT: also a TLS listener (TLS_PORT..+N-1 for a
#     cluster) with a CA, server and client certificate made by openssl now.
#     Every node on the broker gets a broker user of its own name (what evrep
#     expects of an origin: its messages carry that user_id) with password
#     $(rmq_password NODE); users= adds more (e.g. a stranger for a test).
# node NAME port=PORT [db=DB] [broker=BROKER] [publish=T[,T...]]
#      [subscribe=T[,T...]] [schema=FILE|SQL]... [conf=SETTING]... [tls=on]
#      [workers=off] [evrep=off] [copy=on] [extra_db=DB[:FILE|SQL]]...
#      [pg_config=PATH] [ext_version=V]
#     a PostgreSQL server (test/lib/pg.sh) named NAME (also its evrep.node_name)
#     on 127.0.0.1:PORT serving database DB (default NAME). In DB: CREATE
#     EXTENSION evrep, then each schema= in order (a file if one exists at that
#     path, else SQL text), then evrep_publish of each publish= table and
#     evrep_subscribe of each subscribe= table (T or SCHEMA.T), with
#     copy_data => false unless copy=on (the tables are new and empty at
#     setup; a copy would add one numbered event per stream). broker= is
#     needed only when there are several brokers; a node of a cluster gets
#     all of its URLs in evrep.broker_url, comma-separated (the form a
#     multi-host evrep.broker_url is to take; until evrep parses it, such a
#     node's workers cannot connect). conf= adds a postgresql.conf line after
#     the defaults (so it overrides them). tls=on: connect through the
#     broker's TLS listener (amqps:// and evrep.ssl_ca_file, ssl_cert_file,
#     ssl_key_file with the test certificates). workers=off: evrep.database =
#     '' (no workers; for a node without a broker). evrep=off: a plain
#     PostgreSQL server, evrep neither preloaded (pg.sh's EVREP_PRELOAD=0)
#     nor created in DB, so evrep need not be installed; implies workers=off,
#     gets no broker, and takes no publish=, subscribe=, broker= or tls=on
#     (e.g. the services tests: `node svc port=5891 evrep=off db=customer_db
#     schema=services/schema/customer_db.sql`). extra_db=DB[:FILE|SQL]:
#     another database DB in the same server, created after DB's setup,
#     with FILE (or SQL text) loaded into it; no evrep extension in it.
#     pg_config=PATH: run the node from the PostgreSQL install of that
#     pg_config (its initdb, postgres, pg_ctl, and the evrep it holds), e.g.
#     an older evrep release from test/lib/evrep10.sh's
#     evrep_old_pg_config; default: $PG_CONFIG. ext_version=V: CREATE
#     EXTENSION evrep VERSION 'V' (an older catalog, to test ALTER EXTENSION
#     evrep UPDATE).
#
# Every node gets pg.sh's settings (listen on 127.0.0.1, evrep preloaded
# unless evrep=off, max_prepared_transactions = 20, track_commit_timestamp,
# ...), then TOPO_NODE_CONF below, then its conf=.
#
# ---- functions -----------------------------------------------------------------
#   topo_up [FILE]          parse the description (FILE or stdin), start the
#                           brokers and nodes in parallel, load the schemas,
#                           publish and subscribe, then wait until ready
#                           (topo_wait_ready). 0 on success; on failure the
#                           reason and log tails on stderr, 1
#   topo_up_tap [FILE]      the same in a TAP test (after test/lib/tap.sh): one
#                           test line; BAIL_OUT if it failed
#   topo_parse [FILE]       only parse (then topo_start; or topo_down to stop
#                           a topology another process started)
#   topo_start              start what topo_parse read (topo_up = both)
#   topo_late_node LINE     start one more node (a description line) in a
#                           running topology: a server that joins late
#   topo_down               stop the nodes, then the brokers (only those the
#                           description names, and only what this library
#                           started: see pg.sh / rabbitmq.sh)
#   topo_ready [NODE...]    true when every (given) node's publisher and
#                           consumer are connected and its consumer has bound
#                           its queue to each subscribed table's routing key
#                           (the consumer logs 'queue bound to routing key
#                           "KEY"'; asking the broker takes seconds a call)
#   topo_wait_ready [TIMEOUT_S] [NODE...]   until topo_ready (default 90 s);
#                           on timeout says what is missing
#   topo_bound NODE KEY     true once NODE's consumer logged binding KEY
#                           (e.g. public.orders after a live evrep_subscribe)
#   topo_mark NODE          readiness looks only at NODE's log lines written
#                           after this (call before restarting NODE)
#   topo_nodes / topo_brokers       names, one per line
#   topo_broker_url [BROKER [USER]] amqp:// URL(s), comma-separated for a
#                           cluster, for USER (default guest)
#   topo_broker_amqps_url [BROKER [USER]]  amqps:// URL(s)
#   topo_broker_members [BROKER]    rmq_* names of its RabbitMQ node(s)
#   topo_connected_member NODE WORKER [BROKER]
#                           I, the member of the (cluster) broker that NODE's
#                           WORKER (publisher, consumer) connected to last,
#                           as NODE's server log says
#   topo_tls_file [BROKER] ca|cert|key|server_cert|server_key
#   topo_routing_key TABLE          e.g. customer -> public.customer
#   topo_queue NODE                 NODE's queue: evrep.NODE.quorum (evrep.queue_type
#                           quorum, the default) or evrep.NODE (classic)
#
# Environment: EVREP_TEST_DIR (all state below it), TOPO_READY_TIMEOUT (s,
# default 90).

[[ -n "${_EVREP_TOPOLOGY_SH:-}" ]] && return 0
_EVREP_TOPOLOGY_SH=1

_topo_libdir=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=common.sh
source "$_topo_libdir/common.sh"
# shellcheck source=pg.sh
source "$_topo_libdir/pg.sh"
# shellcheck source=rabbitmq.sh
source "$_topo_libdir/rabbitmq.sh"

# Settings every node gets, after pg.sh's and before the node's conf=.
TOPO_NODE_CONF=(
    "evrep.poll_interval = 200"     # the publisher's fallback poll (default 1 s)
    "evrep.reconnect_max = 2000"    # reconnect soon after a broker comes back
    "log_min_messages = info"
)

TOPO_BROKERS=() TOPO_NODES=()
declare -A TOPO_B_PORT=() TOPO_B_SIZE=() TOPO_B_TLS=() TOPO_B_USERS=()
declare -A TOPO_N_PORT=() TOPO_N_DB=() TOPO_N_BROKER=() TOPO_N_PUB=() TOPO_N_SUB=()
declare -A TOPO_N_SCHEMA=() TOPO_N_CONF=() TOPO_N_TLS=() TOPO_N_WORKERS=() TOPO_LOGPOS=() TOPO_N_COPY=()
declare -A TOPO_N_EVREP=() TOPO_N_EXTRA_DB=() TOPO_N_PGCONFIG=() TOPO_N_EXTVER=()
_TOPO_SEP=$'\x1e'   # between the schema= entries of one node

# _topo_words LINE -- split LINE into the array _TOPO_W (quotes as documented)
_topo_words() {
    local s=$1 w= c q= have=0 i
    _TOPO_W=()
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        if [[ $q == "'" ]]; then
            if [[ $c == "'" ]]; then q=; else w+=$c; fi
        elif [[ $q == '"' ]]; then
            if [[ $c == '\' && ( ${s:i+1:1} == '"' || ${s:i+1:1} == '\' ) ]]; then w+=${s:i+1:1}; i=$((i + 1))
            elif [[ $c == '"' ]]; then q=
            else w+=$c; fi
        elif [[ $c == "'" || $c == '"' ]]; then q=$c have=1
        elif [[ $c == ' ' || $c == $'\t' ]]; then
            (( have )) && _TOPO_W+=("$w"); w= have=0
        else w+=$c have=1; fi
    done
    [[ -z $q ]] || { evrep_err "topology: unterminated quote in: $s"; return 1; }
    (( have )) && _TOPO_W+=("$w")
    return 0
}

_topo_port_ok() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 >= 1024 && $1 <= 65535 )); }

topo_parse() {
    TOPO_BROKERS=() TOPO_NODES=()
    TOPO_B_PORT=() TOPO_B_SIZE=() TOPO_B_TLS=() TOPO_B_USERS=()
    TOPO_N_PORT=() TOPO_N_DB=() TOPO_N_BROKER=() TOPO_N_PUB=() TOPO_N_SUB=()
    TOPO_N_SCHEMA=() TOPO_N_CONF=() TOPO_N_TLS=() TOPO_N_WORKERS=() TOPO_LOGPOS=() TOPO_N_COPY=()
    TOPO_N_EVREP=() TOPO_N_EXTRA_DB=() TOPO_N_PGCONFIG=() TOPO_N_EXTVER=()
    _topo_read "$@"
}

# _topo_read [FILE] -- add the description's brokers and nodes to what was
# read before (topo_parse starts from nothing; topo_late_node adds one node)
_topo_read() {
    local src=${1:--} line full= lineno=0 kind name kv k v
    [[ "$src" == - ]] && src=/dev/stdin
    local -a lines=()
    mapfile -t lines <"$src" || { evrep_err "topology: cannot read $src"; return 1; }
    for line in "${lines[@]}" ""; do
        lineno=$((lineno + 1))
        if [[ "$line" == *\\ ]]; then full+="${line%\\} "; continue; fi
        line="$full$line" full=
        [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
        _topo_words "$line" || return 1
        (( ${#_TOPO_W[@]} >= 2 )) || { evrep_err "topology line $lineno: '$line': need KIND NAME"; return 1; }
        kind=${_TOPO_W[0]} name=${_TOPO_W[1]}
        [[ "$name" =~ ^[A-Za-z0-9_-]+$ ]] || { evrep_err "topology line $lineno: bad name '$name' (use [A-Za-z0-9_-])"; return 1; }
        case "$kind" in
            broker)
                [[ -z "${TOPO_B_PORT[$name]:-}" ]] || { evrep_err "topology: broker '$name' twice"; return 1; }
                TOPO_BROKERS+=("$name"); TOPO_B_SIZE[$name]=1; TOPO_B_PORT[$name]= ; TOPO_B_TLS[$name]= ; TOPO_B_USERS[$name]=
                for kv in "${_TOPO_W[@]:2}"; do
                    k=${kv%%=*} v=${kv#*=}
                    [[ "$kv" == *=* ]] || { evrep_err "topology line $lineno: '$kv' is not KEY=VALUE"; return 1; }
                    case "$k" in
                        port) _topo_port_ok "$v" && TOPO_B_PORT[$name]=$v ;;
                        nodes) [[ "$v" =~ ^[1-9]$ ]] && TOPO_B_SIZE[$name]=$v ;;
                        tls) _topo_port_ok "$v" && TOPO_B_TLS[$name]=$v ;;
                        users) [[ "$v" =~ ^[A-Za-z0-9_-]+(,[A-Za-z0-9_-]+)*$ ]] && TOPO_B_USERS[$name]=$v ;;
                        *) false ;;
                    esac || { evrep_err "topology line $lineno: broker '$name': bad '$kv' (port=PORT nodes=1..9 tls=PORT users=U,..)"; return 1; }
                done
                [[ -n "${TOPO_B_PORT[$name]}" ]] || { evrep_err "topology line $lineno: broker '$name' needs port="; return 1; }
                ;;
            node)
                [[ -z "${TOPO_N_PORT[$name]:-}" ]] || { evrep_err "topology: node '$name' twice"; return 1; }
                TOPO_NODES+=("$name"); TOPO_N_PORT[$name]= ; TOPO_N_DB[$name]=$name; TOPO_N_BROKER[$name]=
                TOPO_N_PUB[$name]= ; TOPO_N_SUB[$name]= ; TOPO_N_SCHEMA[$name]= ; TOPO_N_CONF[$name]=
                TOPO_N_TLS[$name]=off; TOPO_N_WORKERS[$name]=on; TOPO_N_EVREP[$name]=on; TOPO_N_COPY[$name]=off; TOPO_N_EXTRA_DB[$name]=
                TOPO_N_PGCONFIG[$name]=$PG_CONFIG; TOPO_N_EXTVER[$name]=
                for kv in "${_TOPO_W[@]:2}"; do
                    k=${kv%%=*} v=${kv#*=}
                    [[ "$kv" == *=* ]] || { evrep_err "topology line $lineno: '$kv' is not KEY=VALUE"; return 1; }
                    case "$k" in
                        port) _topo_port_ok "$v" && TOPO_N_PORT[$name]=$v ;;
                        db) [[ "$v" =~ ^[A-Za-z0-9_-]+$ ]] && TOPO_N_DB[$name]=$v ;;
                        broker) TOPO_N_BROKER[$name]=$v ;;
                        publish) [[ "$v" =~ ^[A-Za-z0-9_.,]+$ ]] && TOPO_N_PUB[$name]=${v//,/ } ;;
                        subscribe) [[ "$v" =~ ^[A-Za-z0-9_.,]+$ ]] && TOPO_N_SUB[$name]=${v//,/ } ;;
                        schema) [[ -n "$v" ]] && TOPO_N_SCHEMA[$name]+=$v$_TOPO_SEP ;;
                        conf) [[ -n "$v" ]] && TOPO_N_CONF[$name]+=$v$'\n' ;;
                        tls) [[ "$v" == on || "$v" == off ]] && TOPO_N_TLS[$name]=$v ;;
                        workers) [[ "$v" == on || "$v" == off ]] && TOPO_N_WORKERS[$name]=$v ;;
                        evrep) [[ "$v" == on || "$v" == off ]] && TOPO_N_EVREP[$name]=$v ;;
                        copy) [[ "$v" == on || "$v" == off ]] && TOPO_N_COPY[$name]=$v ;;
                        extra_db) [[ "$v" =~ ^[A-Za-z0-9_-]+(:.+)?$ ]] && TOPO_N_EXTRA_DB[$name]+=$v$_TOPO_SEP ;;
                        pg_config) [[ -x "$v" ]] && TOPO_N_PGCONFIG[$name]=$v ;;
                        ext_version) [[ "$v" =~ ^[0-9][0-9.]*$ ]] && TOPO_N_EXTVER[$name]=$v ;;
                        *) false ;;
                    esac || { evrep_err "topology line $lineno: node '$name': bad '$kv'"; return 1; }
                done
                [[ -n "${TOPO_N_PORT[$name]}" ]] || { evrep_err "topology line $lineno: node '$name' needs port="; return 1; }
                if [[ ${TOPO_N_EVREP[$name]} == off ]]; then
                    [[ -z "${TOPO_N_PUB[$name]}${TOPO_N_SUB[$name]}${TOPO_N_BROKER[$name]}" && ${TOPO_N_TLS[$name]} == off ]] \
                        || { evrep_err "topology line $lineno: node '$name' has evrep=off: no publish=, subscribe=, broker= or tls=on"; return 1; }
                    TOPO_N_WORKERS[$name]=off
                fi
                ;;
            *) evrep_err "topology line $lineno: unknown kind '$kind' (broker or node)"; return 1 ;;
        esac
    done
    # the nodes' brokers
    local n b
    for n in "${TOPO_NODES[@]}"; do
        [[ ${TOPO_N_EVREP[$n]} == off ]] && continue
        b=${TOPO_N_BROKER[$n]}
        if [[ -z "$b" ]] && (( ${#TOPO_BROKERS[@]} == 1 )); then b=${TOPO_BROKERS[0]}; fi
        if [[ -z "$b" ]]; then
            (( ${#TOPO_BROKERS[@]} == 0 )) && [[ ${TOPO_N_WORKERS[$n]} == off ]] && continue
            evrep_err "topology: node '$n' needs broker=NAME (or workers=off when there is no broker)"; return 1
        fi
        [[ -n "${TOPO_B_PORT[$b]:-}" ]] || { evrep_err "topology: node '$n': no broker '$b'"; return 1; }
        if [[ ${TOPO_N_TLS[$n]} == on && -z "${TOPO_B_TLS[$b]}" ]]; then
            evrep_err "topology: node '$n' has tls=on but broker '$b' no tls=PORT"; return 1
        fi
        TOPO_N_BROKER[$n]=$b
    done
}

topo_nodes() { (( ${#TOPO_NODES[@]} )) && printf '%s\n' "${TOPO_NODES[@]}"; }
topo_brokers() { (( ${#TOPO_BROKERS[@]} )) && printf '%s\n' "${TOPO_BROKERS[@]}"; }

# _topo_broker NAME|'' -- the named broker, or the only one
_topo_broker() {
    local b=${1:-}
    if [[ -z "$b" ]]; then
        (( ${#TOPO_BROKERS[@]} == 1 )) || { evrep_err "topology: ${#TOPO_BROKERS[@]} brokers; name one"; return 1; }
        b=${TOPO_BROKERS[0]}
    fi
    [[ -n "${TOPO_B_PORT[$b]:-}" ]] || { evrep_err "topology: no broker '$b'"; return 1; }
    printf '%s\n' "$b"
}

topo_broker_members() {
    local b i; b=$(_topo_broker "${1:-}") || return 1
    if (( TOPO_B_SIZE[$b] == 1 )); then printf '%s\n' "$b"; return 0; fi
    for ((i = 1; i <= TOPO_B_SIZE[$b]; i++)); do printf '%s%s\n' "$b" "$i"; done
}

topo_connected_member() {
    local node=${1:?usage: topo_connected_member NODE WORKER [BROKER]} w=${2:?usage: topo_connected_member NODE WORKER [BROKER]} b port
    b=$(_topo_broker "${3:-}") || return 1
    port=$(grep -o "evrep $w connected to broker amqp://[^@]*@127.0.0.1:[0-9]*" "$(pg_logfile "$node")" | tail -n 1 | sed 's/.*://')
    # member I listens on the broker's PORT+I-1 (_topo_urls)
    [[ -n "$port" ]] && echo $((port - TOPO_B_PORT[$b] + 1))
}

# _topo_urls BROKER SCHEME PORT [USER] -- one URL per member (a cluster's
# member I listens on PORT+I-1: rmq_cluster_start), comma-separated, for
# USER (default guest). Known before the broker runs, so the nodes' settings
# are written while it boots.
_topo_urls() {
    local b=$1 scheme=$2 port=$3 user=${4:-guest} i out= pw=guest
    [[ "$user" != guest ]] && pw=$(rmq_password "$user")
    for ((i = 0; i < TOPO_B_SIZE[$b]; i++)); do
        out+=${out:+,}$scheme://$user:$pw@127.0.0.1:$((port + i))
    done
    printf '%s\n' "$out"
}
topo_broker_url() { local b; b=$(_topo_broker "${1:-}") && _topo_urls "$b" amqp "${TOPO_B_PORT[$b]}" "${2:-}"; }
topo_broker_amqps_url() {
    local b; b=$(_topo_broker "${1:-}") || return 1
    [[ -n "${TOPO_B_TLS[$b]}" ]] || { evrep_err "topology: broker '$b' has no tls=PORT"; return 1; }
    _topo_urls "$b" amqps "${TOPO_B_TLS[$b]}" "${2:-}"
}
# _topo_broker_users BROKER -- its users=, and one user per node on it
_topo_broker_users() {
    local b=$1 n out=${TOPO_B_USERS[$1]}
    for n in "${TOPO_NODES[@]}"; do
        [[ "${TOPO_N_BROKER[$n]}" == "$b" ]] && out+=${out:+,}$n
    done
    printf '%s\n' "$out"
}
_topo_tls_dir() {
    local b; b=$(_topo_broker "${1:-}") || return 1
    if (( TOPO_B_SIZE[$b] > 1 )); then rmq_cluster_tls_dir "$b"; else rmq_tls_dir "$b"; fi
}
topo_tls_file() {
    local b=
    (( $# >= 2 )) && { b=$1; shift; }
    local d; d=$(_topo_tls_dir "$b") && tls_file "$d" "${1:-}"
}

# Routing key of a table: SCHEMA.TABLE, '%', '*', '#' percent-escaped (wire format).
_topo_escape() { local s=${1//%/%25}; s=${s//\*/%2A}; printf '%s' "${s//#/%23}"; }
topo_routing_key() {
    local t=$1 s=public
    [[ "$t" == *.* ]] && { s=${t%%.*}; t=${t#*.}; }
    printf '%s.%s\n' "$(_topo_escape "$s")" "$(_topo_escape "$t")"
}

# _topo_node_up NODE -- pg_init, pg_start, extension, schemas, publish,
# subscribe, extra databases
_topo_node_up() {
    local n=$1 b=${TOPO_N_BROKER[$1]} line s db dbs=${TOPO_N_DB[$1]} preload=${EVREP_PRELOAD:-1}
    local -a conf=("${TOPO_NODE_CONF[@]}") psql=()
    [[ ${TOPO_N_EVREP[$n]} == off ]] && preload=0
    if [[ ${TOPO_N_WORKERS[$n]} == off ]]; then
        conf+=("evrep.database = ''")
    fi
    if [[ -n "$b" ]]; then
        if [[ ${TOPO_N_TLS[$n]} == on ]]; then
            conf+=("evrep.broker_url = '$(topo_broker_amqps_url "$b" "$n")'"
                   "evrep.ssl_ca_file = '$(topo_tls_file "$b" ca)'"
                   "evrep.ssl_cert_file = '$(topo_tls_file "$b" cert)'"
                   "evrep.ssl_key_file = '$(topo_tls_file "$b" key)'")
        else
            conf+=("evrep.broker_url = '$(topo_broker_url "$b" "$n")'")
        fi
    fi
    while IFS= read -r line; do [[ -n "$line" ]] && conf+=("$line"); done <<<"${TOPO_N_CONF[$n]}"
    EVREP_BROKER_URL= EVREP_PRELOAD=$preload PG_CONFIG=${TOPO_N_PGCONFIG[$n]} pg_init "$n" "${TOPO_N_PORT[$n]}" --db "${TOPO_N_DB[$n]}" "${conf[@]}" || return 1
    pg_start "$n" || return 1
    [[ ${TOPO_N_EVREP[$n]} == off ]] || psql=(-c "CREATE EXTENSION evrep${TOPO_N_EXTVER[$n]:+ VERSION '${TOPO_N_EXTVER[$n]}'}")
    while IFS= read -r -d "$_TOPO_SEP" s; do
        if [[ -f "$s" ]]; then psql+=(-f "$s"); else psql+=(-c "$s"); fi
    done <<<"${TOPO_N_SCHEMA[$n]}"
    for s in ${TOPO_N_PUB[$n]}; do psql+=(-c "SELECT evrep_publish('$s')"); done
    local copy=false; [[ ${TOPO_N_COPY[$n]} == on ]] && copy=true
    for s in ${TOPO_N_SUB[$n]}; do psql+=(-c "SELECT evrep_subscribe('$s', copy_data => $copy)"); done
    if (( ${#psql[@]} )); then
        pg_psql "$n" "${psql[@]}" >/dev/null || { evrep_err "node '$n': the setup SQL failed"; return 1; }
    fi
    while IFS= read -r -d "$_TOPO_SEP" s; do
        db=${s%%:*}; psql=(-d "$db"); dbs+=" $db"
        if [[ "$s" == *:* ]]; then
            s=${s#*:}
            if [[ -f "$s" ]]; then psql+=(-f "$s"); else psql+=(-c "$s"); fi
        fi
        pg_psql "$n" -c "CREATE DATABASE \"$db\"" >/dev/null \
            && { (( ${#psql[@]} == 1 )) || pg_psql "$n" "${psql[@]}" >/dev/null; } \
            || { evrep_err "node '$n': database $db or its setup SQL failed"; return 1; }
    done <<<"${TOPO_N_EXTRA_DB[$n]}"
    evrep_log "node '$n' up: db $dbs, evrep ${TOPO_N_EVREP[$n]}, publishes [${TOPO_N_PUB[$n]}], subscribes [${TOPO_N_SUB[$n]}]"
}

_topo_broker_up() {
    local b=$1 tls=${TOPO_B_TLS[$1]} users
    users=$(_topo_broker_users "$b")
    if (( TOPO_B_SIZE[$b] > 1 )); then
        rmq_cluster_start "$b" "${TOPO_B_PORT[$b]}" "${TOPO_B_SIZE[$b]}" ${tls:+tls=$tls} ${users:+users=$users}
    else
        rmq_start "$b" "${TOPO_B_PORT[$b]}" ${tls:+tls=$tls} ${users:+users=$users}
    fi
}

# topo_start -- start what topo_parse read; see topo_up
topo_start() {
    local dir x t0=$SECONDS bad=0
    dir=$(evrep_base_dir)/topology.$$ || return 1
    rm -rf "$dir" && mkdir -p "$dir" || return 1
    local -A pids=()
    for x in "${TOPO_BROKERS[@]}"; do _topo_broker_up "$x" >"$dir/broker-$x.out" 2>&1 & pids[broker-$x]=$!; done
    # A quorum queue's members are the cluster nodes running when it is first
    # declared: the nodes of a cluster start once it has formed.
    for x in "${TOPO_BROKERS[@]}"; do
        (( TOPO_B_SIZE[$x] > 1 )) || continue
        wait "${pids[broker-$x]}" || { evrep_err "topology: broker $x failed:"; sed 's/^/#   /' "$dir/broker-$x.out" >&2; bad=1; }
        unset "pids[broker-$x]"
    done
    (( bad == 0 )) || { rm -rf "$dir"; return 1; }
    for x in "${TOPO_NODES[@]}"; do _topo_node_up "$x" >"$dir/node-$x.out" 2>&1 & pids[node-$x]=$!; done
    for x in "${!pids[@]}"; do
        if ! wait "${pids[$x]}"; then
            evrep_err "topology: ${x/-/ } failed:"; sed 's/^/#   /' "$dir/$x.out" >&2; bad=1
        fi
    done
    for x in "${TOPO_NODES[@]}"; do TOPO_LOGPOS[$x]=0; done
    rm -rf "$dir"
    (( bad == 0 )) || return 1
    evrep_log "topology started in $((SECONDS - t0)) s; waiting until ready"
    topo_wait_ready "${TOPO_READY_TIMEOUT:-90}" || return 1
    evrep_log "topology ready after $((SECONDS - t0)) s"
}

topo_up() { topo_parse "$@" && topo_start; }

# topo_late_node LINE -- start one more node, described by LINE ("node NAME
# port=PORT ..."), while the topology runs: a server that joins late gets
# what topo_start gives a node (the settings, its broker URL, the extension,
# schemas, publish, subscribe) and is one of topo_nodes from then on (topo_down
# stops it). Its broker user must exist already (the broker's users=). Returns
# once the setup SQL ran, not once its workers are connected: topo_ready NODE
# / topo_wait_ready TIMEOUT NODE for that.
topo_late_node() {
    local n before=${#TOPO_NODES[@]} nb=${#TOPO_BROKERS[@]}
    _topo_read <<<"${1:?usage: topo_late_node 'node NAME port=PORT ...'}" || return 1
    if (( ${#TOPO_NODES[@]} != before + 1 || ${#TOPO_BROKERS[@]} != nb )); then
        evrep_err "topo_late_node: '$1' is not one node line"; return 1
    fi
    n=${TOPO_NODES[before]}
    _topo_node_up "$n" || { evrep_err "topology: late node $n failed"; return 1; }
    TOPO_LOGPOS[$n]=0
}

topo_up_tap() {
    topo_parse "$@" || BAIL_OUT "bad topology description"
    local what="brokers: ${TOPO_BROKERS[*]:-none}; nodes: ${TOPO_NODES[*]:-none}" t0=$SECONDS
    ok "topology up and ready ($what)" topo_start || BAIL_OUT "the topology did not come up"
    note "topology ready after $((SECONDS - t0)) s"
}

# topo_queue NODE -- the name of NODE's queue (evrep.NODE, .quorum for a quorum queue)
topo_queue() {
    local n=${1:?usage: topo_queue NODE} t
    t=$(pg_psql "$n" -c "SELECT current_setting('evrep.queue_type')") || return 1
    if [[ "$t" == quorum ]]; then printf 'evrep.%s.quorum\n' "$n"; else printf 'evrep.%s\n' "$n"; fi
}

topo_mark() {
    local f; f=$(pg_logfile "${1:?usage: topo_mark NODE}") || return 1
    TOPO_LOGPOS[$1]=$(stat -c %s "$f" 2>/dev/null || echo 0)
}

topo_bound() {
    local f; f=$(pg_logfile "${1:?usage: topo_bound NODE KEY}") || return 1
    # not tail | grep -q: grep quits at the first match, tail dies of SIGPIPE,
    # and under pipefail the pipeline fails
    grep -qF "queue bound to routing key \"${2:?usage: topo_bound NODE KEY}\"" \
        <(tail -c +$(( ${TOPO_LOGPOS[$1]:-0} + 1 )) "$f" 2>/dev/null)
}

# _topo_missing NODE -- print what NODE still lacks (nothing when it is ready)
_topo_missing() {
    local n=$1 c t
    [[ ${TOPO_N_WORKERS[$n]:-on} == off || -z "${TOPO_N_BROKER[$n]:-}" ]] && return 0
    c=$(pg_psql "$n" -c "SELECT string_agg(worker, ',' ORDER BY worker) FROM evrep.worker_state() WHERE connected" 2>&1)
    [[ "$c" == consumer,publisher ]] || echo "node $n: connected workers: '${c:-none}'"
    for t in ${TOPO_N_SUB[$n]}; do
        topo_bound "$n" "$(topo_routing_key "$t")" || echo "node $n: queue not bound to $(topo_routing_key "$t")"
    done
}

topo_ready() {
    local n
    (( $# )) || set -- "${TOPO_NODES[@]}"
    for n in "$@"; do [[ -z "$(_topo_missing "$n")" ]] || return 1; done
}

topo_wait_ready() {
    local timeout=90
    [[ "${1:-}" =~ ^[0-9]+$ ]] && { timeout=$1; shift; }
    (( $# )) || set -- "${TOPO_NODES[@]}"
    local deadline=$((SECONDS + timeout)) n miss
    while :; do
        miss=
        for n in "$@"; do miss+=$(_topo_missing "$n"); [[ -n "$miss" ]] && break; done
        [[ -z "$miss" ]] && return 0
        if (( SECONDS >= deadline )); then
            evrep_err "topology not ready after ${timeout}s:"
            for n in "$@"; do _topo_missing "$n"; done | sed 's/^/#   /' >&2
            for n in "$@"; do evrep_tail "$(pg_logfile "$n")" 15; done
            return 1
        fi
        sleep 0.2
    done
}

topo_down() {
    local i n b
    for ((i = ${#TOPO_NODES[@]} - 1; i >= 0; i--)); do
        n=${TOPO_NODES[i]}
        [[ -d "$(pg_datadir "$n")" ]] || continue
        pg_stop "$n" fast || pg_stop "$n" immediate || pg_kill "$n"
    done
    for ((i = ${#TOPO_BROKERS[@]} - 1; i >= 0; i--)); do
        b=${TOPO_BROKERS[i]}
        if (( TOPO_B_SIZE[$b] > 1 )); then rmq_cluster_stop "$b"
        elif [[ -d "$(rmq_dir "$b")" ]]; then rmq_stop "$b"; fi
    done
    return 0
}
