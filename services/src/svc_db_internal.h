/* svc_db_internal.h - the SvcDb struct, private to the service runtime */
#ifndef EVREP_SVC_DB_INTERNAL_H
#define EVREP_SVC_DB_INTERNAL_H

#include "svc_common.h"

struct SvcDb
{
  PGconn *pg;                  /* NULL until the first request            */
  const char *conninfo;        /* --db, shared, read-only                 */
  char options[64];            /* "-c statement_timeout=..."             */
  const char *app_name;
};

void svc_db_init (SvcDb *db, const char *conninfo, int statement_timeout_ms,
                  const char *app_name);
void svc_db_finish (SvcDb *db);

/* Connect, or reconnect a connection that is bad or was closed by the
 * server while idle.  *fresh: a new session was made.  FALSE with *err
 * filled (unavailable) when there is no working connection. */
gboolean svc_db_ready (SvcDb *db, gboolean *fresh, SvcDbError *err);

/* Fill *err from a failed result (res may be NULL) of db's connection;
 * marks connection loss, 57P0x and 08xxx as unavailable. */
void svc_db_result_error (SvcDb *db, const PGresult *res, SvcDbError *err);

/* --mode 2pc: state and threads of svc_twopc.c, called by svc_main.
 * svc_twopc_setup checks the options (FALSE: usage error, message
 * printed), creates the decision log and runs the first recovery pass;
 * svc_twopc_start_recovery starts the periodic recovery thread;
 * svc_twopc_stop stops it. */
gboolean svc_twopc_setup (const char *prog, const char *service_name,
                          const char *local_conninfo,
                          const char *peer_conninfo, int statement_timeout_ms,
                          int recovery_interval_ms);
void svc_twopc_start_recovery (void);
void svc_twopc_stop (void);

#endif
