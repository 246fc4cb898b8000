# pg_private.sh - helpers shared by test_services.sh and bench_services.sh
# (sourced, not executed).  A private PostgreSQL cluster under $PGD with a
# unix socket only, run as user postgres when we are root, plus the two
# service databases and a "fake replicator" that copies rows between them.
#
# Expects: PGBIN, PGD (directory, created here), PGPORT_T, WORK.

PGDATA_T=$PGD/data
SOCK=$PGD                         # unix socket directory
CUSTOMER_DB="host=$SOCK port=$PGPORT_T user=postgres dbname=customer_db"
ORDER_DB="host=$SOCK port=$PGPORT_T user=postgres dbname=order_db"
PG_STARTED=0

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

psql_db() {   # psql_db DB ARGS...
    local db=$1; shift
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PGPORT_T" \
        -U postgres -d "$db" "$@"
}

pg_start() { as_pg "$PGBIN/pg_ctl" -D "$PGDATA_T" -l "$PGD/postgres.log" -w -t 30 start >/dev/null; }
pg_stop()  { as_pg "$PGBIN/pg_ctl" -D "$PGDATA_T" -m fast -w -t 30 stop >/dev/null; }

# pg_setup [EXTRA_CONF_LINE...]: initdb, start, create both databases with
# their schema.  Returns non-zero on failure (logs in $WORK/initdb.log and
# $PGD/postgres.log).
pg_setup() {
    local line
    mkdir -p "$PGD" || return 1
    [ "$(id -u)" = 0 ] && chown postgres: "$PGD"
    as_pg "$PGBIN/initdb" -D "$PGDATA_T" -U postgres --auth=trust -E UTF8 \
        --locale=C >"$WORK/initdb.log" 2>&1 || return 1
    {
        echo "port = $PGPORT_T"
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$SOCK'"
        echo "max_connections = 100"
        for line in "$@"; do echo "$line"; done
    } >>"$PGDATA_T/postgresql.conf"
    pg_start || return 1
    PG_STARTED=1
    psql_db postgres -c "CREATE DATABASE customer_db" -c "CREATE DATABASE order_db" &&
    psql_db customer_db -f "$HERE/schema/customer_db.sql" &&
    psql_db order_db -f "$HERE/schema/order_db.sql"
}

pg_teardown() {
    if [ "$PG_STARTED" = 1 ] && [ -f "$PGDATA_T/postmaster.pid" ]; then
        pg_stop || as_pg "$PGBIN/pg_ctl" -D "$PGDATA_T" -m immediate -w stop >/dev/null 2>&1
    fi
}

# fake replication (what evrep does for real): copy the owner's rows into
# the other database's replica table
copy_customers() {
    psql_db customer_db -Atc "COPY customer TO STDOUT" |
        psql_db order_db -c "CREATE TEMP TABLE t (LIKE customer)" \
            -c "COPY t FROM STDIN" \
            -c "INSERT INTO customer SELECT * FROM t ON CONFLICT (id) DO NOTHING"
}
copy_orders() {
    psql_db order_db -Atc "COPY orders TO STDOUT" |
        psql_db customer_db -c "CREATE TEMP TABLE t (LIKE orders)" \
            -c "COPY t FROM STDIN" \
            -c "INSERT INTO orders SELECT * FROM t ON CONFLICT (id) DO NOTHING"
}

wait_port() {   # wait_port PORT PID: until something accepts on 127.0.0.1:PORT
    local i
    for i in $(seq 1 100); do
        kill -0 "$2" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# is_running_child PID: PID is a background job of this shell, still running
# (never a reaped pid that the kernel may have given to someone else)
is_running_child() {
    [ -n "$1" ] && jobs -pr | grep -qx -- "$1"
}

# stop_pid PID: SIGTERM, wait up to 10 s, then SIGKILL; only for a running
# background job of this shell
stop_pid() {
    local pid=$1 i
    is_running_child "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 100); do
        is_running_child "$pid" || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}
