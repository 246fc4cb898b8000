/*
 * svc_db.c
 *		libpq access for the services.
 *
 * Every statement is sent with PQexecParams and text parameters; no value
 * is ever pasted into SQL text.
 */
#include "svc_db.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "svc_log.h"

/* Notices (e.g. of CREATE TABLE IF NOT EXISTS) would only clutter the log. */
static void
quiet_notice_processor(void *arg, const char *message)
{
	(void) arg;
	(void) message;
}

void
svc_db_init(SvcDb *db, const char *conninfo, int statement_timeout_ms, const char *app_name)
{
	memset(db, 0, sizeof *db);
	db->conninfo = conninfo;
	db->app_name = app_name;
	g_snprintf(db->options, sizeof db->options, "-c statement_timeout=%d", statement_timeout_ms);
}

void
svc_db_finish(SvcDb *db)
{
	if (db->pg != NULL)
		PQfinish(db->pg);
	db->pg = NULL;
}

/* First non-empty line of a libpq message, trimmed, newly allocated. */
static char *
first_line(const char *msg)
{
	const char *p = msg ? msg : "";
	const char *end;

	while (*p == '\n' || *p == ' ' || *p == '\t')
		p++;
	end = strchr(p, '\n');
	if (end == NULL)
		end = p + strlen(p);
	if (end == p)
		return g_strdup("unknown error");
	return g_strstrip(g_strndup(p, end - p));
}

/*
 * Is an idle, apparently good connection still usable?  When the server
 * ends a session (restart, pg_terminate_backend) it sends an ErrorResponse
 * and closes the socket; both show up as readable data on an idle socket.
 * PQconsumeInput reads it without parsing and notices the EOF, which turns
 * the status to CONNECTION_BAD.  One poll() with zero timeout per request.
 */
static gboolean
db_alive(PGconn *pg)
{
	int i;

	for (i = 0; i < 4 && PQstatus(pg) == CONNECTION_OK; i++)
	{
		struct pollfd p = {PQsocket(pg), POLLIN, 0};

		if (poll(&p, 1, 0) <= 0)
			break; /* nothing pending: fine */
		if (!PQconsumeInput(pg))
			return FALSE;
	}
	return PQstatus(pg) == CONNECTION_OK;
}

gboolean
svc_db_ready(SvcDb *db, gboolean *fresh, SvcDbError *err)
{
	*fresh = FALSE;
	if (db->pg == NULL)
	{
		/* conninfo is expanded last, so whatever it sets wins over these */
		const char *keys[] = {"connect_timeout", "application_name", "options", "dbname", NULL};
		const char *vals[] = {"5", db->app_name, db->options, db->conninfo, NULL};

		db->pg = PQconnectdbParams(keys, vals, 1);
		if (db->pg == NULL)
		{
			err->unavailable = TRUE;
			err->message = g_strdup("out of memory allocating a connection");
			return FALSE;
		}
		PQsetNoticeProcessor(db->pg, quiet_notice_processor, NULL);
		*fresh = TRUE;
	}
	else
	{
		gboolean reset = PQstatus(db->pg) != CONNECTION_OK;

		if (!reset && !db_alive(db->pg))
		{
			svc_log("the server closed the idle database connection; reconnecting");
			reset = TRUE;
		}
		if (reset)
		{
			PQreset(db->pg);
			*fresh = TRUE;
			if (PQstatus(db->pg) == CONNECTION_OK)
				svc_log("database connection re-established");
		}
	}
	if (PQstatus(db->pg) != CONNECTION_OK)
	{
		err->unavailable = TRUE;
		err->message = first_line(PQerrorMessage(db->pg));
		return FALSE;
	}
	return TRUE;
}

void
svc_db_error_clear(SvcDbError *err)
{
	g_free(err->message);
	memset(err, 0, sizeof *err);
}

PGresult *
svc_db_exec(SvcDb *db, const char *sql, int nparams, const char *const *values, gboolean idempotent,
			SvcDbError *err)
{
	int attempt;

	memset(err, 0, sizeof *err);
	for (attempt = 0;; attempt++)
	{
		gboolean fresh;
		PGresult *res;
		ExecStatusType st;

		if (!svc_db_ready(db, &fresh, err))
			return NULL;
		res = PQexecParams(db->pg, sql, nparams, NULL, values, NULL, NULL, 0);
		st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
			return res;

		if (PQstatus(db->pg) != CONNECTION_OK)
		{
			char *msg = first_line(PQerrorMessage(db->pg));

			PQclear(res);

			/*
			 * A write is never retried: it may have been applied before
			 * the connection broke.  A connection made for this very
			 * statement is not retried either: the server is really gone.
			 */
			if (idempotent && !fresh && attempt == 0)
			{
				svc_log("lost the database connection (%s); retrying once", msg);
				g_free(msg);
				continue;
			}
			err->unavailable = TRUE;
			err->message = msg;
			return NULL;
		}

		svc_db_result_error(db, res, err);
		PQclear(res);
		return NULL;
	}
}

void
svc_db_result_error(SvcDb *db, const PGresult *res, SvcDbError *err)
{
	const char *state, *primary;

	g_free(err->message);
	err->message = NULL;
	err->sqlstate[0] = '\0';
	if (db->pg == NULL || PQstatus(db->pg) != CONNECTION_OK)
	{
		err->unavailable = TRUE;
		err->message = first_line(db->pg ? PQerrorMessage(db->pg) : NULL);
		return;
	}
	state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	g_strlcpy(err->sqlstate, state ? state : "", sizeof err->sqlstate);
	err->message = primary ? g_strdup(primary) : first_line(PQerrorMessage(db->pg));
	/* 57P0x: admin shutdown / crash shutdown / cannot connect now */
	if (g_str_has_prefix(err->sqlstate, "57P") || g_str_has_prefix(err->sqlstate, "08"))
		err->unavailable = TRUE;
}

gboolean
svc_db_duplicate(const SvcDbError *err)
{
	return strcmp(err->sqlstate, "23505") == 0;
}

gint32
svc_db_int_value(const PGresult *res, int row, int col)
{
	return (gint32) strtol(PQgetvalue(res, row, col), NULL, 10);
}
