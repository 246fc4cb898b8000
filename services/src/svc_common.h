/*
 * svc_common.h - shared runtime of the evrep demo services
 *
 * A service is a Thrift c_glib processor plus a handler that talks to one
 * PostgreSQL database over libpq.  svc_main() owns everything around it:
 * option parsing, a loopback listening socket, one thread per accepted
 * connection (each with its own processor, handler and libpq connection),
 * and a clean shutdown on SIGTERM/SIGINT.
 */
#ifndef EVREP_SVC_COMMON_H
#define EVREP_SVC_COMMON_H

#include <glib-object.h>
#include <libpq-fe.h>
#include <thrift/c_glib/processor/thrift_processor.h>

#include "evrep_evrep_types.h"

/* Longest accepted customerName / status, in characters. */
#define SVC_MAX_TEXT_CHARS 200

/* One libpq connection, used by exactly one connection thread. */
typedef struct SvcDb SvcDb;

typedef struct SvcConfig
{
  const char *prog;          /* "customer_service" (logs, --help)          */
  const char *service_name;  /* "CustomerService"                          */
  int default_port;
  const char *default_db;    /* conninfo used when --db is not given       */
  /* Create a processor whose handler uses db for every request, and
   * peer (NULL unless --mode 2pc) as the other database of a two-phase
   * commit.  Returns a new reference. */
  ThriftProcessor *(*make_processor) (SvcDb *db, SvcDb *peer);
} SvcConfig;

/* Runs the service until SIGTERM/SIGINT; returns the process exit code. */
int svc_main (int argc, char **argv, const SvcConfig *cfg);

/* FALSE once shutdown has been requested. */
gboolean svc_running (void);

/* --customer-wait-ms (OrderService: bounded wait for a replicated customer). */
int svc_customer_wait_ms (void);

/* ---- database ---------------------------------------------------------- */

typedef struct SvcDbError
{
  char sqlstate[6];          /* "" when there is none (connection problems) */
  char *message;             /* one line, owned, g_free'd by svc_db_error_clear */
  gboolean unavailable;      /* connection could not be made or was lost   */
  gboolean peer;             /* 2PC: the error came from the peer database */
  gboolean in_doubt;         /* 2PC: prepared everywhere, but whether the
                              * decision was logged is unknown; recovery
                              * finishes the transaction either way        */
} SvcDbError;

/*
 * Run one parameterised statement (PQexecParams, text parameters).
 * Connects lazily, and reconnects (PQreset) when the connection is bad or
 * the server has closed it since the last request.  If idempotent is TRUE
 * and an established connection turns out to be broken, the statement is
 * retried once on a fresh connection.
 * Returns the PGresult (TUPLES_OK or COMMAND_OK) or NULL with *err filled.
 */
PGresult *svc_db_exec (SvcDb *db, const char *sql, int nparams,
                       const char *const *values, gboolean idempotent,
                       SvcDbError *err);
void svc_db_error_clear (SvcDbError *err);

/* ---- two-phase commit (--mode 2pc) ------------------------------------- */

/* TRUE when the service runs with --mode 2pc. */
gboolean svc_twopc_enabled (void);

/*
 * Write one row to the service's own database (db) and to the peer
 * database in one distributed transaction: BEGIN on both, local_sql on db
 * and peer_sql on peer (same parameters), PREPARE TRANSACTION on both,
 * the decision committed to the local decision log (table twopc_decision),
 * COMMIT PREPARED on both.  Both sides run each step in parallel.
 * Before the decision every failure rolls back both sides; after it the
 * transaction counts as committed (a side that could not be committed yet
 * is committed by recovery).
 *
 * Returns TRUE when committed, or when local_sql affected no row, in which
 * case *applied is FALSE and nothing was written.  Returns FALSE with *err
 * filled otherwise (err->peer: the peer failed; err->in_doubt: see
 * SvcDbError).
 */
gboolean svc_twopc_write (SvcDb *db, SvcDb *peer, const char *local_sql,
                          const char *peer_sql, int nparams,
                          const char *const *values, gboolean *applied,
                          SvcDbError *err);

/* ---- exceptions and validation ---------------------------------------- */

/* Set *ex to a new OperationFailedException with the formatted message,
 * log it, and return FALSE (the handler's return value). */
gboolean svc_fail (EvrepOperationFailedException **ex, const char *fmt, ...)
  G_GNUC_PRINTF (2, 3);

/* Map a database error to an exception; what is e.g. "createCustomer". */
gboolean svc_fail_db (EvrepOperationFailedException **ex, const char *what,
                      const SvcDbError *err);

/* customerName / status: non-empty, not only blanks, valid UTF-8, at most
 * SVC_MAX_TEXT_CHARS characters.  On failure sets *ex and returns FALSE. */
gboolean svc_check_text (EvrepOperationFailedException **ex,
                         const char *field, const char *value);

/* Shared by CustomerService.getCustomers and OrderService.getCustomers. */
gboolean svc_list_customers (SvcDb *db, GPtrArray *out,
                             EvrepOperationFailedException **ex);

EvrepCustomer *svc_customer_new (gint32 id, const char *name, gint32 credit);

/* Parse an int4 column value as returned by PostgreSQL (text format). */
gint32 svc_int_value (const PGresult *res, int row, int col);

void svc_log (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

#endif /* EVREP_SVC_COMMON_H */
