/*
 * twopc_recovery.c
 *		Settling in-doubt transactions, at start and periodically.
 *
 * Every prepared transaction of ours (gid prefix "evrep2pc:<ServiceName>:")
 * in either database that no request thread is working on is committed
 * when the decision log says committed, and rolled back otherwise.
 * "Otherwise" is made durable first: recovery inserts (gid, committed =
 * false); the primary key makes that insert and a late commit decision
 * exclusive, so a transaction can never be rolled back on one side and
 * committed on the other (presumed abort with an explicit abort record).
 * Decision rows are deleted once their gid is prepared in neither
 * database: only rows decided before a timestamp taken on the local server
 * before the peer's list was read, so a row whose peer side has not been
 * seen yet is never dropped.
 *
 * Only one process per service may run the baseline against the same pair
 * of databases: recovery treats every gid of its service that is not in
 * flight in this process as abandoned.
 */
#include "twopc_recovery.h"

#include <string.h>

#include "svc_db.h"
#include "svc_log.h"
#include "twopc_gid.h"

static SvcDb rec_db, rec_peer;
static int rec_interval_ms = 5000;
static gboolean rec_table_ok = FALSE;
static GThread *rec_thread = NULL;
static GMutex rec_stop_mu;
static GCond rec_stop_cv;
static gboolean rec_stop = FALSE;

/*
 * Errors of recovery are logged once, not at every pass: the last one is
 * remembered until a pass reaches both databases again.
 */
static char *rec_last_error = NULL;

static PGresult *
rec_exec(SvcDb *db, const char *sql, int n, const char *const *v, const char *what,
		 gboolean quiet_missing)
{
	SvcDbError err;
	PGresult *res = svc_db_exec(db, sql, n, v, FALSE, &err);
	char *msg;

	if (res == NULL)
	{
		/* 42704: the prepared transaction is gone already */
		if (!(quiet_missing && strcmp(err.sqlstate, "42704") == 0))
		{
			msg = g_strdup_printf("%s: %s%s", what, err.unavailable ? "database unavailable: " : "",
								  err.message ? err.message : "?");
			if (g_strcmp0(msg, rec_last_error) != 0)
				svc_log("2pc recovery: %s%s", msg, err.unavailable ? " (retrying quietly)" : "");
			g_free(rec_last_error);
			rec_last_error = msg;
		}
		svc_db_error_clear(&err);
	}
	return res;
}

/* gids of ours prepared in db's database, or NULL if unreachable */
static GPtrArray *
prepared_gids(SvcDb *db, const char *side)
{
	const char *v[1] = {twopc_gid_prefix()};
	char what[64];
	PGresult *res;
	GPtrArray *a;
	int i;

	g_snprintf(what, sizeof what, "listing %s prepared transactions", side);
	res = rec_exec(db,
				   "SELECT gid FROM pg_prepared_xacts"
				   " WHERE database = current_database()"
				   "   AND starts_with(gid, $1) ORDER BY prepared",
				   1, v, what, FALSE);
	if (res == NULL)
		return NULL;
	a = g_ptr_array_new_with_free_func(g_free);
	for (i = 0; i < PQntuples(res); i++)
		g_ptr_array_add(a, g_strdup(PQgetvalue(res, i, 0)));
	PQclear(res);
	return a;
}

/*
 * The outcome of gid: 1 commit, 0 rollback, -1 unknown (local database
 * unreachable).  Without a decision, a rollback decision is logged first.
 */
static int
decide(const char *gid)
{
	const char *v[1] = {gid};
	PGresult *res;
	int outcome = -1;

	res = rec_exec(&rec_db,
				   "INSERT INTO twopc_decision (gid, committed)"
				   " VALUES ($1, false) ON CONFLICT (gid) DO NOTHING",
				   1, v, "logging a rollback decision", FALSE);
	if (res == NULL)
		return -1;
	PQclear(res);
	res = rec_exec(&rec_db, "SELECT committed FROM twopc_decision WHERE gid = $1", 1, v,
				   "reading the decision", FALSE);
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 1)
		outcome = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return outcome;
}

static void
resolve_side(SvcDb *db, const char *side, GPtrArray *gids)
{
	guint i;

	for (i = 0; gids != NULL && i < gids->len; i++)
	{
		const char *gid = g_ptr_array_index(gids, i);
		char *sql;
		int outcome;
		PGresult *res;

		if (!twopc_gid_safe(gid) || !twopc_gid_claim(gid))
			continue;
		outcome = decide(gid);
		if (outcome >= 0)
		{
			sql = g_strdup_printf("%s PREPARED '%s'", outcome ? "COMMIT" : "ROLLBACK", gid);
			res = rec_exec(db, sql, 0, NULL, sql, TRUE);
			if (res != NULL)
			{
				svc_log("2pc recovery: %s in-doubt transaction %s in the %s "
						"database",
						outcome ? "committed" : "rolled back", gid, side);
				PQclear(res);
			}
			g_free(sql);
		}
		twopc_gid_release(gid);
	}
}

void
twopc_recovery_pass(void)
{
	const char *v[3];
	GPtrArray *lg, *pg;
	PGresult *res;
	GString *arr;
	char *t1;
	guint i;

	if (!rec_table_ok)
	{
		res = rec_exec(&rec_db,
					   "CREATE TABLE IF NOT EXISTS twopc_decision ("
					   " gid text PRIMARY KEY,"
					   " committed boolean NOT NULL,"
					   " decided_at timestamptz NOT NULL DEFAULT now())",
					   0, NULL, "creating table twopc_decision", FALSE);
		if (res == NULL)
			return;
		PQclear(res);
		rec_table_ok = TRUE;
	}

	/* taken before the peer's list is read: see the header comment */
	res = rec_exec(&rec_db, "SELECT clock_timestamp()", 0, NULL, "reading the clock", FALSE);
	if (res == NULL)
		return;
	t1 = g_strdup(PQgetvalue(res, 0, 0));
	PQclear(res);

	lg = prepared_gids(&rec_db, "local");
	pg = prepared_gids(&rec_peer, "peer");
	resolve_side(&rec_db, "local", lg);
	resolve_side(&rec_peer, "peer", pg);
	if (pg != NULL)
	{
		g_ptr_array_unref(pg);
		pg = prepared_gids(&rec_peer, "peer");
	}

	/* forget decisions whose gid is prepared in neither database */
	if (lg != NULL && pg != NULL)
	{
		arr = g_string_new("{");
		for (i = 0; i < pg->len; i++)
			if (twopc_gid_safe(g_ptr_array_index(pg, i)))
				g_string_append_printf(arr, "%s\"%s\"", arr->len > 1 ? "," : "",
									   (char *) g_ptr_array_index(pg, i));
		g_string_append_c(arr, '}');
		v[0] = twopc_gid_prefix();
		v[1] = t1;
		v[2] = arr->str;
		res = rec_exec(&rec_db,
					   "DELETE FROM twopc_decision d"
					   " WHERE starts_with(d.gid, $1)"
					   "   AND d.decided_at < $2::timestamptz"
					   "   AND d.gid <> ALL ($3::text[])"
					   "   AND NOT EXISTS (SELECT 1 FROM pg_prepared_xacts p"
					   "                    WHERE p.gid = d.gid)",
					   3, v, "deleting settled decisions", FALSE);
		PQclear(res);
		g_string_free(arr, TRUE);
	}
	if (lg != NULL && pg != NULL && rec_last_error != NULL)
	{
		svc_log("2pc recovery: both databases reachable again");
		g_free(rec_last_error);
		rec_last_error = NULL;
	}
	if (lg != NULL)
		g_ptr_array_unref(lg);
	if (pg != NULL)
		g_ptr_array_unref(pg);
	g_free(t1);
}

static gpointer
recovery_thread(gpointer data)
{
	(void) data;
	g_mutex_lock(&rec_stop_mu);
	while (!rec_stop)
	{
		gint64 until = g_get_monotonic_time() + (gint64) rec_interval_ms * G_TIME_SPAN_MILLISECOND;

		while (!rec_stop && g_cond_wait_until(&rec_stop_cv, &rec_stop_mu, until))
			;
		if (rec_stop)
			break;
		g_mutex_unlock(&rec_stop_mu);
		twopc_recovery_pass();
		g_mutex_lock(&rec_stop_mu);
	}
	g_mutex_unlock(&rec_stop_mu);
	return NULL;
}

void
twopc_recovery_init(const char *app_name, const char *local_conninfo, const char *peer_conninfo,
					int statement_timeout_ms, int interval_ms)
{
	rec_interval_ms = interval_ms;
	svc_db_init(&rec_db, local_conninfo, statement_timeout_ms, app_name);
	svc_db_init(&rec_peer, peer_conninfo, statement_timeout_ms, app_name);
}

void
twopc_recovery_start(void)
{
	if (rec_thread == NULL)
		rec_thread = g_thread_new("2pc-recovery", recovery_thread, NULL);
}

void
twopc_recovery_stop(void)
{
	if (rec_thread == NULL)
		return;
	g_mutex_lock(&rec_stop_mu);
	rec_stop = TRUE;
	g_cond_signal(&rec_stop_cv);
	g_mutex_unlock(&rec_stop_mu);
	g_thread_join(rec_thread);
	rec_thread = NULL;
	svc_db_finish(&rec_db);
	svc_db_finish(&rec_peer);
}
