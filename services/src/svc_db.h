/*
 * svc_db.h
 *		A service's libpq connection: lazy connect, reconnect, error mapping.
 */
#ifndef EVREP_SVC_DB_H
#define EVREP_SVC_DB_H

#include <glib.h>
#include <libpq-fe.h>

/* One libpq connection, used by exactly one thread. */
typedef struct SvcDb
{
	PGconn *pg;			  /* NULL until the first request */
	const char *conninfo; /* shared, read-only */
	char options[64];	  /* "-c statement_timeout=..." */
	const char *app_name;
} SvcDb;

typedef struct SvcDbError
{
	char sqlstate[6];	  /* "" when there is none (connection problems) */
	char *message;		  /* one line, owned; see svc_db_error_clear */
	gboolean unavailable; /* connection could not be made or was lost */
} SvcDbError;

/* conninfo and app_name must outlive db; nothing is connected yet. */
void svc_db_init(SvcDb *db, const char *conninfo, int statement_timeout_ms, const char *app_name);
void svc_db_finish(SvcDb *db);

/*
 * Connect, or reconnect a connection that is bad or was closed by the
 * server while idle.  *fresh: a new session was made.  FALSE with *err
 * filled (unavailable) when there is no working connection.
 */
gboolean svc_db_ready(SvcDb *db, gboolean *fresh, SvcDbError *err);

/*
 * Run one parameterised statement (PQexecParams, text parameters) on a
 * connection made ready by svc_db_ready.  If idempotent is TRUE and an established connection turns
 * out to be broken, the statement is retried once on a fresh connection.
 * Returns the PGresult (TUPLES_OK or COMMAND_OK) or NULL with *err filled.
 */
PGresult *svc_db_exec(SvcDb *db, const char *sql, int nparams, const char *const *values,
					  gboolean idempotent, SvcDbError *err);

/*
 * Fill *err from a failed result (res may be NULL) of db's connection;
 * marks connection loss, 57P0x and 08xxx as unavailable.
 */
void svc_db_result_error(SvcDb *db, const PGresult *res, SvcDbError *err);

void svc_db_error_clear(SvcDbError *err);

/* SQLSTATE 23505: the id exists already. */
gboolean svc_db_duplicate(const SvcDbError *err);

/* An int4 column value as PostgreSQL returns it (text format). */
gint32 svc_db_int_value(const PGresult *res, int row, int col);

#endif /* EVREP_SVC_DB_H */
