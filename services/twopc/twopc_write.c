/*
 * twopc_write.c
 *		The coordinator's side of a distributed write.
 *
 * This process is the coordinator, PostgreSQL's PREPARE TRANSACTION is the
 * participants' vote:
 *
 *   1. BEGIN on both; the INSERT on both          (both sides in parallel)
 *   2. PREPARE TRANSACTION 'gid' on both          (the vote; each is durable)
 *   3. INSERT INTO twopc_decision (gid, committed = true) in the service's
 *      own database, committed on its own (synchronous_commit as
 *      configured, on by default): the durable decision
 *   4. COMMIT PREPARED 'gid' on both
 *
 * Any failure before 3 rolls back both sides (ROLLBACK, or ROLLBACK
 * PREPARED after a successful PREPARE).  After 3 the transaction counts as
 * committed and the caller gets success, even if a side could not be
 * committed at once (its database went away): recovery commits it later.
 *
 * The crash hooks exist for the tests of recovery: they end the process at
 * the two points where a real coordinator crash leaves work in doubt.
 */
#include "twopc_write.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "svc_log.h"
#include "twopc_gid.h"

enum
{
	CRASH_NONE = 0,
	CRASH_BEFORE_DECISION,
	CRASH_AFTER_DECISION
};

static int crash_at = CRASH_NONE;

/* ---- statements on both databases at once -------------------------------- */

typedef struct
{
	SvcDb *db;
	const char *sql; /* NULL: nothing to do on this side */
	int nparams;
	const char *const *values;
	PGresult *res; /* TUPLES_OK / COMMAND_OK result */
	gboolean ok;
	SvcDbError err;
} Step;

static void
step_set(Step *s, SvcDb *db, const char *sql, int nparams, const char *const *values)
{
	s->db = db;
	s->sql = sql;
	s->nparams = nparams;
	s->values = values;
}

static void
steps_clear(Step *s, int n)
{
	int i;

	for (i = 0; i < n; i++)
	{
		if (s[i].res)
			PQclear(s[i].res);
		s[i].res = NULL;
		svc_db_error_clear(&s[i].err);
		s[i].ok = FALSE;
	}
}

/*
 * Send every step's statement first, then collect the results: the
 * databases work at the same time.  No reconnect here: a connection that
 * breaks inside a distributed transaction fails the step.
 */
static void
steps_run(Step *s, int n)
{
	gboolean sent[2];
	int i;

	g_assert(n <= 2);
	for (i = 0; i < n; i++)
	{
		s[i].res = NULL;
		s[i].ok = FALSE;
		memset(&s[i].err, 0, sizeof s[i].err);
		sent[i] = FALSE;
		if (s[i].sql == NULL)
		{
			s[i].ok = TRUE;
			continue;
		}
		if (s[i].db->pg != NULL && PQstatus(s[i].db->pg) == CONNECTION_OK)
			sent[i] = PQsendQueryParams(s[i].db->pg, s[i].sql, s[i].nparams, NULL, s[i].values,
										NULL, NULL, 0);
		if (!sent[i])
			svc_db_result_error(s[i].db, NULL, &s[i].err);
	}
	for (i = 0; i < n; i++)
	{
		PGresult *r, *first = NULL;
		ExecStatusType st;

		if (!sent[i])
			continue;
		while ((r = PQgetResult(s[i].db->pg)) != NULL)
		{
			if (first == NULL)
				first = r;
			else
				PQclear(r);
		}
		st = first ? PQresultStatus(first) : PGRES_FATAL_ERROR;
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		{
			s[i].res = first;
			s[i].ok = TRUE;
		}
		else
		{
			svc_db_result_error(s[i].db, first, &s[i].err);
			PQclear(first);
		}
	}
}

/* Move the first failed step's error to *err (side 1 is the peer). */
static gboolean
steps_ok(Step *s, TwopcError *err)
{
	int i;

	for (i = 0; i < 2; i++)
		if (!s[i].ok)
		{
			memcpy(&err->db, &s[i].err, sizeof err->db);
			s[i].err.message = NULL;
			err->peer = i == 1;
			return FALSE;
		}
	return TRUE;
}

/* End any open (not prepared) transaction on either side. */
static void
abort_open(SvcDb **dbs)
{
	Step s[2];
	int i;

	memset(s, 0, sizeof s);
	for (i = 0; i < 2; i++)
	{
		PGconn *pg = dbs[i]->pg;
		PGTransactionStatusType ts = pg ? PQtransactionStatus(pg) : PQTRANS_UNKNOWN;

		step_set(&s[i], dbs[i], ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR ? "ROLLBACK" : NULL,
				 0, NULL);
	}
	steps_run(s, 2);
	steps_clear(s, 2);
}

/* The same statement, without parameters, on both databases at once. */
static void
steps_run_both(Step *s, SvcDb *db, SvcDb *peer, const char *sql)
{
	step_set(&s[0], db, sql, 0, NULL);
	step_set(&s[1], peer, sql, 0, NULL);
	steps_run(s, 2);
}

/* "VERB 'gid'" (PREPARE TRANSACTION, COMMIT PREPARED ...) on both at once. */
static void
steps_run_gid(Step *s, SvcDb *db, SvcDb *peer, const char *verb, const char *gid)
{
	char *sql = g_strdup_printf("%s '%s'", verb, gid);

	steps_run_both(s, db, peer, sql);
	g_free(sql);
}

/* ---- crash hooks ---------------------------------------------------------- */

static gboolean
env_flag(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && strcmp(v, "1") == 0;
}

const char *
twopc_write_init(void)
{
	if (env_flag("EVREP_2PC_CRASH_BEFORE_DECISION"))
		crash_at = CRASH_BEFORE_DECISION;
	else if (env_flag("EVREP_2PC_CRASH_AFTER_DECISION"))
		crash_at = CRASH_AFTER_DECISION;
	return crash_at == CRASH_BEFORE_DECISION  ? ", will crash before the decision (test hook)"
		   : crash_at == CRASH_AFTER_DECISION ? ", will crash after the decision (test hook)"
											  : "";
}

static void
crash_hook(int where)
{
	if (crash_at != where)
		return;
	svc_log("%s set: exiting now (test hook)", where == CRASH_BEFORE_DECISION
												   ? "EVREP_2PC_CRASH_BEFORE_DECISION"
												   : "EVREP_2PC_CRASH_AFTER_DECISION");
	_exit(1);
}

/* ---- the distributed write ---------------------------------------------- */

void
twopc_error_clear(TwopcError *err)
{
	svc_db_error_clear(&err->db);
	memset(err, 0, sizeof *err);
}

gboolean
twopc_write(SvcDb *db, SvcDb *peer, const char *local_sql, const char *peer_sql, int nparams,
			const char *const *values, gboolean *applied, TwopcError *err)
{
	SvcDb *dbs[2] = {db, peer};
	static const char *side_name[2] = {"local", "peer"};
	Step s[2];
	char gid[TWOPC_GID_MAX], *sql;
	const char *gp[1] = {gid};
	gboolean fresh, prepared[2], ok, nothing = FALSE;
	PGresult *res;
	int i;

	memset(err, 0, sizeof *err);
	memset(s, 0, sizeof s);
	*applied = FALSE;
	for (i = 0; i < 2; i++)
		if (!svc_db_ready(dbs[i], &fresh, &err->db))
		{
			err->peer = i == 1;
			return FALSE;
		}

	/* 1: the work, in an open transaction on each side */
	steps_run_both(s, db, peer, "BEGIN");
	ok = steps_ok(s, err);
	steps_clear(s, 2);
	if (ok)
	{
		step_set(&s[0], db, local_sql, nparams, values);
		step_set(&s[1], peer, peer_sql, nparams, values);
		steps_run(s, 2);
		ok = steps_ok(s, err);
		nothing = ok && strcmp(PQcmdTuples(s[0].res), "0") == 0;
		steps_clear(s, 2);
	}
	if (!ok || nothing)
	{
		/* nothing (createOrder: customer not found) is not an error */
		abort_open(dbs);
		return ok;
	}

	/* 2: the vote */
	twopc_gid_new(gid);
	steps_run_gid(s, db, peer, "PREPARE TRANSACTION", gid);
	for (i = 0; i < 2; i++)
		prepared[i] = s[i].ok;
	if (!steps_ok(s, err))
	{
		/*
		 * A side whose PREPARE failed with its connection alive has rolled
		 * back; a side whose connection broke may or may not be prepared,
		 * which recovery settles (no decision: rollback).
		 */
		steps_clear(s, 2);
		sql = g_strdup_printf("ROLLBACK PREPARED '%s'", gid);
		for (i = 0; i < 2; i++)
			step_set(&s[i], dbs[i], prepared[i] ? sql : NULL, 0, NULL);
		steps_run(s, 2);
		for (i = 0; i < 2; i++)
			if (!s[i].ok)
				svc_log("2pc %s: ROLLBACK PREPARED failed on the %s database "
						"(%s); recovery will roll it back",
						gid, side_name[i], s[i].err.message ? s[i].err.message : "?");
		g_free(sql);
		steps_clear(s, 2);
		abort_open(dbs);
		twopc_gid_release(gid);
		return FALSE;
	}
	steps_clear(s, 2);
	crash_hook(CRASH_BEFORE_DECISION);

	/* 3: the decision, durable in the local database */
	res = PQexecParams(db->pg,
					   "INSERT INTO twopc_decision (gid, committed)"
					   " VALUES ($1, true)",
					   1, NULL, gp, NULL, NULL, 0);
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		svc_db_result_error(db, res, &err->db);
		PQclear(res);
		if (PQstatus(db->pg) != CONNECTION_OK)
		{
			/* the commit of the decision may or may not have happened */
			err->in_doubt = TRUE;
			svc_log("2pc %s: lost the local database while logging the "
					"decision; recovery will settle it",
					gid);
			twopc_gid_release(gid);
			return FALSE;
		}
		/* not logged (23505: recovery already decided to roll back) */
		steps_run_gid(s, db, peer, "ROLLBACK PREPARED", gid);
		steps_clear(s, 2);
		twopc_gid_release(gid);
		return FALSE;
	}
	PQclear(res);
	crash_hook(CRASH_AFTER_DECISION);

	/* 4: commit; a side that fails now is committed by recovery */
	steps_run_gid(s, db, peer, "COMMIT PREPARED", gid);
	for (i = 0; i < 2; i++)
		if (!s[i].ok)
			svc_log("2pc %s: COMMIT PREPARED failed on the %s database (%s); "
					"committed by decision, recovery will finish it",
					gid, side_name[i], s[i].err.message ? s[i].err.message : "?");
	steps_clear(s, 2);
	twopc_gid_release(gid);
	*applied = TRUE;
	return TRUE;
}
