/*
 * svc_twopc.c - two-phase commit between the service database and a peer
 * database (--mode 2pc)
 *
 * This is the baseline that evrep is measured against (bench/twopc_vs_evrep.sh):
 * instead of writing its own database and letting evrep replicate the row,
 * the service writes the row into both databases in one distributed
 * transaction, with PostgreSQL's PREPARE TRANSACTION as the participants'
 * vote and this process as the coordinator.
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
 * Recovery (at start and every --recovery-interval-ms): every prepared
 * transaction of ours (gid prefix "evrep2pc:<ServiceName>:") in either
 * database that no request thread is working on is committed when the
 * decision log says committed, and rolled back otherwise.  "Otherwise" is
 * made durable first: recovery inserts (gid, committed = false); the
 * primary key makes that insert and a late commit decision exclusive, so a
 * transaction can never be rolled back on one side and committed on the
 * other (presumed abort with an explicit abort record).  Decision rows are
 * deleted once their gid is prepared in neither database: only rows decided
 * before a timestamp taken on the local server before the peer's list was
 * read, so a row whose peer side has not been seen yet is never dropped.
 *
 * Only one process per service may run in 2PC mode against the same pair of
 * databases: recovery treats every gid of its service that is not in
 * flight in this process as abandoned.
 *
 * Test hooks: EVREP_2PC_CRASH_BEFORE_DECISION=1 makes the process _exit(1)
 * right after both PREPAREs, EVREP_2PC_CRASH_AFTER_DECISION=1 right after
 * the decision is committed.
 *
 * gids are made here from the service name, the process' start time, its
 * pid and a counter (letters, digits, ':' and '.'), and are the only text
 * pasted into SQL (PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED take no
 * parameters); request values always travel as parameters.
 */
#include "svc_db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GID_MAX 128

enum
{
  CRASH_NONE = 0,
  CRASH_BEFORE_DECISION,
  CRASH_AFTER_DECISION
};

static gboolean tp_enabled = FALSE;
static char *tp_prefix = NULL;     /* "evrep2pc:CustomerService:"           */
static char *tp_instance = NULL;   /* tp_prefix + "<start>.<pid>:"          */
static guint64 tp_counter = 0;     /* under tp_mu                           */
static int tp_crash = CRASH_NONE;

/* gids that a request thread or recovery is working on */
static GMutex tp_mu;
static GHashTable *tp_busy = NULL;

/* recovery */
static SvcDb tp_rec_db, tp_rec_peer;
static int tp_interval_ms = 5000;
static gboolean tp_table_ok = FALSE;
static GThread *tp_thread = NULL;
static GMutex tp_stop_mu;
static GCond tp_stop_cv;
static gboolean tp_stop = FALSE;

gboolean
svc_twopc_enabled (void)
{
  return tp_enabled;
}

/* ---- gids in flight ----------------------------------------------------- */

static void
gid_new (char *gid)
{
  g_mutex_lock (&tp_mu);
  g_snprintf (gid, GID_MAX, "%s%" G_GUINT64_FORMAT, tp_instance,
              ++tp_counter);
  g_hash_table_add (tp_busy, g_strdup (gid));
  g_mutex_unlock (&tp_mu);
}

/* Claim a gid for recovery; FALSE if someone is working on it. */
static gboolean
gid_claim (const char *gid)
{
  gboolean ok;

  g_mutex_lock (&tp_mu);
  ok = !g_hash_table_contains (tp_busy, gid);
  if (ok)
    g_hash_table_add (tp_busy, g_strdup (gid));
  g_mutex_unlock (&tp_mu);
  return ok;
}

static void
gid_release (const char *gid)
{
  g_mutex_lock (&tp_mu);
  g_hash_table_remove (tp_busy, gid);
  g_mutex_unlock (&tp_mu);
}

/* Only letters, digits and ":._-" (they are pasted into SQL). */
static gboolean
gid_safe (const char *gid)
{
  const char *p;

  if (*gid == '\0' || strlen (gid) >= GID_MAX)
    return FALSE;
  for (p = gid; *p; p++)
    if (!g_ascii_isalnum (*p) && strchr (":._-", *p) == NULL)
      return FALSE;
  return TRUE;
}

/* ---- statements on both databases at once -------------------------------- */

typedef struct
{
  SvcDb *db;
  const char *sql;             /* NULL: nothing to do on this side */
  int nparams;
  const char *const *values;
  PGresult *res;               /* TUPLES_OK / COMMAND_OK result     */
  gboolean ok;
  SvcDbError err;
} Step;

static void
step_set (Step *s, SvcDb *db, const char *sql, int nparams,
          const char *const *values)
{
  s->db = db;
  s->sql = sql;
  s->nparams = nparams;
  s->values = values;
}

static void
steps_clear (Step *s, int n)
{
  int i;

  for (i = 0; i < n; i++)
    {
      if (s[i].res)
        PQclear (s[i].res);
      s[i].res = NULL;
      svc_db_error_clear (&s[i].err);
      s[i].ok = FALSE;
    }
}

/* Send every step's statement first, then collect the results: the
 * databases work at the same time.  No reconnect here: a connection that
 * breaks inside a distributed transaction fails the step. */
static void
steps_run (Step *s, int n)
{
  gboolean sent[2];
  int i;

  g_assert (n <= 2);
  for (i = 0; i < n; i++)
    {
      s[i].res = NULL;
      s[i].ok = FALSE;
      memset (&s[i].err, 0, sizeof s[i].err);
      sent[i] = FALSE;
      if (s[i].sql == NULL)
        {
          s[i].ok = TRUE;
          continue;
        }
      if (s[i].db->pg != NULL && PQstatus (s[i].db->pg) == CONNECTION_OK)
        sent[i] = PQsendQueryParams (s[i].db->pg, s[i].sql, s[i].nparams,
                                     NULL, s[i].values, NULL, NULL, 0);
      if (!sent[i])
        svc_db_result_error (s[i].db, NULL, &s[i].err);
    }
  for (i = 0; i < n; i++)
    {
      PGresult *r, *first = NULL;
      ExecStatusType st;

      if (!sent[i])
        continue;
      while ((r = PQgetResult (s[i].db->pg)) != NULL)
        {
          if (first == NULL)
            first = r;
          else
            PQclear (r);
        }
      st = first ? PQresultStatus (first) : PGRES_FATAL_ERROR;
      if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        {
          s[i].res = first;
          s[i].ok = TRUE;
        }
      else
        {
          svc_db_result_error (s[i].db, first, &s[i].err);
          PQclear (first);
        }
    }
}

/* Copy the first failed step's error to *err (side 1 is the peer). */
static gboolean
steps_ok (Step *s, SvcDbError *err)
{
  int i;

  for (i = 0; i < 2; i++)
    if (!s[i].ok)
      {
        memcpy (err, &s[i].err, sizeof *err);
        s[i].err.message = NULL;       /* moved */
        err->peer = i == 1;
        return FALSE;
      }
  return TRUE;
}

/* End any open (not prepared) transaction on either side. */
static void
abort_open (SvcDb **dbs)
{
  Step s[2];
  int i;

  memset (s, 0, sizeof s);
  for (i = 0; i < 2; i++)
    {
      PGconn *pg = dbs[i]->pg;
      PGTransactionStatusType ts = pg ? PQtransactionStatus (pg)
                                      : PQTRANS_UNKNOWN;
      step_set (&s[i], dbs[i],
                ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR
                ? "ROLLBACK" : NULL, 0, NULL);
    }
  steps_run (s, 2);
  steps_clear (s, 2);
}

static gboolean
env_flag (const char *name)
{
  const char *v = getenv (name);
  return v != NULL && strcmp (v, "1") == 0;
}

static void
crash_hook (int where)
{
  if (tp_crash != where)
    return;
  svc_log ("%s set: exiting now (test hook)",
           where == CRASH_BEFORE_DECISION ? "EVREP_2PC_CRASH_BEFORE_DECISION"
                                          : "EVREP_2PC_CRASH_AFTER_DECISION");
  _exit (1);
}

/* ---- the distributed write ---------------------------------------------- */

gboolean
svc_twopc_write (SvcDb *db, SvcDb *peer, const char *local_sql,
                 const char *peer_sql, int nparams,
                 const char *const *values, gboolean *applied,
                 SvcDbError *err)
{
  SvcDb *dbs[2] = { db, peer };
  static const char *side_name[2] = { "local", "peer" };
  Step s[2];
  char gid[GID_MAX], *sql;
  const char *gp[1] = { gid };
  gboolean fresh, prepared[2], ok, nothing = FALSE;
  PGresult *res;
  int i;

  memset (err, 0, sizeof *err);
  memset (s, 0, sizeof s);
  *applied = FALSE;
  for (i = 0; i < 2; i++)
    if (!svc_db_ready (dbs[i], &fresh, err))
      {
        err->peer = i == 1;
        return FALSE;
      }

  /* 1: the work, in an open transaction on each side */
  step_set (&s[0], db, "BEGIN", 0, NULL);
  step_set (&s[1], peer, "BEGIN", 0, NULL);
  steps_run (s, 2);
  ok = steps_ok (s, err);
  steps_clear (s, 2);
  if (ok)
    {
      step_set (&s[0], db, local_sql, nparams, values);
      step_set (&s[1], peer, peer_sql, nparams, values);
      steps_run (s, 2);
      ok = steps_ok (s, err);
      nothing = ok && strcmp (PQcmdTuples (s[0].res), "0") == 0;
      steps_clear (s, 2);
    }
  if (!ok || nothing)
    {
      /* nothing (createOrder: customer not found) is not an error */
      abort_open (dbs);
      return ok;
    }

  /* 2: the vote */
  gid_new (gid);
  sql = g_strdup_printf ("PREPARE TRANSACTION '%s'", gid);
  step_set (&s[0], db, sql, 0, NULL);
  step_set (&s[1], peer, sql, 0, NULL);
  steps_run (s, 2);
  g_free (sql);
  for (i = 0; i < 2; i++)
    prepared[i] = s[i].ok;
  if (!steps_ok (s, err))
    {
      /* A side whose PREPARE failed with its connection alive has rolled
       * back; a side whose connection broke may or may not be prepared,
       * which recovery settles (no decision: rollback). */
      steps_clear (s, 2);
      sql = g_strdup_printf ("ROLLBACK PREPARED '%s'", gid);
      for (i = 0; i < 2; i++)
        step_set (&s[i], dbs[i], prepared[i] ? sql : NULL, 0, NULL);
      steps_run (s, 2);
      for (i = 0; i < 2; i++)
        if (!s[i].ok)
          svc_log ("2pc %s: ROLLBACK PREPARED failed on the %s database "
                   "(%s); recovery will roll it back", gid, side_name[i],
                   s[i].err.message ? s[i].err.message : "?");
      g_free (sql);
      steps_clear (s, 2);
      abort_open (dbs);
      gid_release (gid);
      return FALSE;
    }
  steps_clear (s, 2);
  crash_hook (CRASH_BEFORE_DECISION);

  /* 3: the decision, durable in the local database */
  res = PQexecParams (db->pg,
                      "INSERT INTO twopc_decision (gid, committed)"
                      " VALUES ($1, true)", 1, NULL, gp, NULL, NULL, 0);
  if (res == NULL || PQresultStatus (res) != PGRES_COMMAND_OK)
    {
      svc_db_result_error (db, res, err);
      PQclear (res);
      if (PQstatus (db->pg) != CONNECTION_OK)
        {
          /* the commit of the decision may or may not have happened */
          err->in_doubt = TRUE;
          svc_log ("2pc %s: lost the local database while logging the "
                   "decision; recovery will settle it", gid);
          gid_release (gid);
          return FALSE;
        }
      /* not logged (23505: recovery already decided to roll back) */
      sql = g_strdup_printf ("ROLLBACK PREPARED '%s'", gid);
      step_set (&s[0], db, sql, 0, NULL);
      step_set (&s[1], peer, sql, 0, NULL);
      steps_run (s, 2);
      g_free (sql);
      steps_clear (s, 2);
      gid_release (gid);
      return FALSE;
    }
  PQclear (res);
  crash_hook (CRASH_AFTER_DECISION);

  /* 4: commit; a side that fails now is committed by recovery */
  sql = g_strdup_printf ("COMMIT PREPARED '%s'", gid);
  step_set (&s[0], db, sql, 0, NULL);
  step_set (&s[1], peer, sql, 0, NULL);
  steps_run (s, 2);
  g_free (sql);
  for (i = 0; i < 2; i++)
    if (!s[i].ok)
      svc_log ("2pc %s: COMMIT PREPARED failed on the %s database (%s); "
               "committed by decision, recovery will finish it", gid,
               side_name[i], s[i].err.message ? s[i].err.message : "?");
  steps_clear (s, 2);
  gid_release (gid);
  *applied = TRUE;
  return TRUE;
}

/* ---- recovery ----------------------------------------------------------- */

/* Errors of recovery are logged once, not at every pass: the last one is
 * remembered until a pass reaches both databases again. */
static char *tp_last_error = NULL;

static PGresult *
rec_exec (SvcDb *db, const char *sql, int n, const char *const *v,
          const char *what, gboolean quiet_missing)
{
  SvcDbError err;
  PGresult *res = svc_db_exec (db, sql, n, v, FALSE, &err);
  char *msg;

  if (res == NULL)
    {
      /* 42704: the prepared transaction is gone already */
      if (!(quiet_missing && strcmp (err.sqlstate, "42704") == 0))
        {
          msg = g_strdup_printf ("%s: %s%s", what,
                                 err.unavailable ? "database unavailable: "
                                                 : "",
                                 err.message ? err.message : "?");
          if (g_strcmp0 (msg, tp_last_error) != 0)
            svc_log ("2pc recovery: %s%s", msg,
                     err.unavailable ? " (retrying quietly)" : "");
          g_free (tp_last_error);
          tp_last_error = msg;
        }
      svc_db_error_clear (&err);
    }
  return res;
}

/* gids of ours prepared in db's database, or NULL if unreachable */
static GPtrArray *
prepared_gids (SvcDb *db, const char *side)
{
  const char *v[1] = { tp_prefix };
  char what[64];
  PGresult *res;
  GPtrArray *a;
  int i;

  g_snprintf (what, sizeof what, "listing %s prepared transactions", side);
  res = rec_exec (db,
                  "SELECT gid FROM pg_prepared_xacts"
                  " WHERE database = current_database()"
                  "   AND starts_with(gid, $1) ORDER BY prepared",
                  1, v, what, FALSE);
  if (res == NULL)
    return NULL;
  a = g_ptr_array_new_with_free_func (g_free);
  for (i = 0; i < PQntuples (res); i++)
    g_ptr_array_add (a, g_strdup (PQgetvalue (res, i, 0)));
  PQclear (res);
  return a;
}

/* The outcome of gid: 1 commit, 0 rollback, -1 unknown (local database
 * unreachable).  Without a decision, a rollback decision is logged first. */
static int
decide (const char *gid)
{
  const char *v[1] = { gid };
  PGresult *res;
  int outcome = -1;

  res = rec_exec (&tp_rec_db,
                  "INSERT INTO twopc_decision (gid, committed)"
                  " VALUES ($1, false) ON CONFLICT (gid) DO NOTHING",
                  1, v, "logging a rollback decision", FALSE);
  if (res == NULL)
    return -1;
  PQclear (res);
  res = rec_exec (&tp_rec_db,
                  "SELECT committed FROM twopc_decision WHERE gid = $1",
                  1, v, "reading the decision", FALSE);
  if (res == NULL)
    return -1;
  if (PQntuples (res) == 1)
    outcome = strcmp (PQgetvalue (res, 0, 0), "t") == 0;
  PQclear (res);
  return outcome;
}

static void
resolve_side (SvcDb *db, const char *side, GPtrArray *gids)
{
  guint i;

  for (i = 0; gids != NULL && i < gids->len; i++)
    {
      const char *gid = g_ptr_array_index (gids, i);
      char *sql;
      int outcome;
      PGresult *res;

      if (!gid_safe (gid) || !gid_claim (gid))
        continue;
      outcome = decide (gid);
      if (outcome >= 0)
        {
          sql = g_strdup_printf ("%s PREPARED '%s'",
                                 outcome ? "COMMIT" : "ROLLBACK", gid);
          res = rec_exec (db, sql, 0, NULL, sql, TRUE);
          if (res != NULL)
            {
              svc_log ("2pc recovery: %s in-doubt transaction %s in the %s "
                       "database", outcome ? "committed" : "rolled back", gid,
                       side);
              PQclear (res);
            }
          g_free (sql);
        }
      gid_release (gid);
    }
}

static void
recovery_pass (void)
{
  const char *v[3];
  GPtrArray *lg, *pg;
  PGresult *res;
  GString *arr;
  char *t1;
  guint i;

  if (!tp_table_ok)
    {
      res = rec_exec (&tp_rec_db,
                      "CREATE TABLE IF NOT EXISTS twopc_decision ("
                      " gid text PRIMARY KEY,"
                      " committed boolean NOT NULL,"
                      " decided_at timestamptz NOT NULL DEFAULT now())",
                      0, NULL, "creating table twopc_decision", FALSE);
      if (res == NULL)
        return;
      PQclear (res);
      tp_table_ok = TRUE;
    }

  /* taken before the peer's list is read: see the header comment */
  res = rec_exec (&tp_rec_db, "SELECT clock_timestamp()", 0, NULL,
                  "reading the clock", FALSE);
  if (res == NULL)
    return;
  t1 = g_strdup (PQgetvalue (res, 0, 0));
  PQclear (res);

  lg = prepared_gids (&tp_rec_db, "local");
  pg = prepared_gids (&tp_rec_peer, "peer");
  resolve_side (&tp_rec_db, "local", lg);
  resolve_side (&tp_rec_peer, "peer", pg);
  if (pg != NULL)
    {
      g_ptr_array_unref (pg);
      pg = prepared_gids (&tp_rec_peer, "peer");
    }

  /* forget decisions whose gid is prepared in neither database */
  if (lg != NULL && pg != NULL)
    {
      arr = g_string_new ("{");
      for (i = 0; i < pg->len; i++)
        if (gid_safe (g_ptr_array_index (pg, i)))
          g_string_append_printf (arr, "%s\"%s\"", arr->len > 1 ? "," : "",
                                  (char *) g_ptr_array_index (pg, i));
      g_string_append_c (arr, '}');
      v[0] = tp_prefix;
      v[1] = t1;
      v[2] = arr->str;
      res = rec_exec (&tp_rec_db,
                      "DELETE FROM twopc_decision d"
                      " WHERE starts_with(d.gid, $1)"
                      "   AND d.decided_at < $2::timestamptz"
                      "   AND d.gid <> ALL ($3::text[])"
                      "   AND NOT EXISTS (SELECT 1 FROM pg_prepared_xacts p"
                      "                    WHERE p.gid = d.gid)",
                      3, v, "deleting settled decisions", FALSE);
      PQclear (res);
      g_string_free (arr, TRUE);
    }
  if (lg != NULL && pg != NULL && tp_last_error != NULL)
    {
      svc_log ("2pc recovery: both databases reachable again");
      g_free (tp_last_error);
      tp_last_error = NULL;
    }
  if (lg != NULL)
    g_ptr_array_unref (lg);
  if (pg != NULL)
    g_ptr_array_unref (pg);
  g_free (t1);
}

static gpointer
recovery_thread (gpointer data)
{
  (void) data;
  g_mutex_lock (&tp_stop_mu);
  while (!tp_stop)
    {
      gint64 until = g_get_monotonic_time ()
                     + (gint64) tp_interval_ms * G_TIME_SPAN_MILLISECOND;

      while (!tp_stop && g_cond_wait_until (&tp_stop_cv, &tp_stop_mu, until))
        ;
      if (tp_stop)
        break;
      g_mutex_unlock (&tp_stop_mu);
      recovery_pass ();
      g_mutex_lock (&tp_stop_mu);
    }
  g_mutex_unlock (&tp_stop_mu);
  return NULL;
}

gboolean
svc_twopc_setup (const char *prog, const char *service_name,
                 const char *local_conninfo, const char *peer_conninfo,
                 int statement_timeout_ms, int recovery_interval_ms)
{
  char *app;

  if (peer_conninfo == NULL || *peer_conninfo == '\0')
    {
      fprintf (stderr, "%s: --mode 2pc needs --peer-db (try --help)\n",
               prog);
      return FALSE;
    }
  if (recovery_interval_ms < 1)
    {
      fprintf (stderr, "%s: --recovery-interval-ms must be positive\n", prog);
      return FALSE;
    }
  tp_enabled = TRUE;
  tp_interval_ms = recovery_interval_ms;
  tp_prefix = g_strdup_printf ("evrep2pc:%s:", service_name);
  tp_instance = g_strdup_printf ("%s%" G_GINT64_MODIFIER "x.%d:", tp_prefix,
                                 g_get_real_time (), (int) getpid ());
  g_assert (gid_safe (tp_instance));
  tp_busy = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  if (env_flag ("EVREP_2PC_CRASH_BEFORE_DECISION"))
    tp_crash = CRASH_BEFORE_DECISION;
  else if (env_flag ("EVREP_2PC_CRASH_AFTER_DECISION"))
    tp_crash = CRASH_AFTER_DECISION;

  /* the application_name shows which sessions are recovery's */
  app = g_strdup_printf ("%s 2pc recovery", prog);
  svc_db_init (&tp_rec_db, local_conninfo, statement_timeout_ms, app);
  svc_db_init (&tp_rec_peer, peer_conninfo, statement_timeout_ms, app);
  /* app is referenced by both SvcDbs for the life of the process */

  svc_log ("two-phase commit mode: gids %s*, recovery every %d ms%s",
           tp_instance, tp_interval_ms,
           tp_crash == CRASH_BEFORE_DECISION
           ? ", will crash before the decision (test hook)"
           : tp_crash == CRASH_AFTER_DECISION
           ? ", will crash after the decision (test hook)" : "");
  recovery_pass ();
  return TRUE;
}

void
svc_twopc_start_recovery (void)
{
  if (tp_enabled && tp_thread == NULL)
    tp_thread = g_thread_new ("2pc-recovery", recovery_thread, NULL);
}

void
svc_twopc_stop (void)
{
  if (tp_thread == NULL)
    return;
  g_mutex_lock (&tp_stop_mu);
  tp_stop = TRUE;
  g_cond_signal (&tp_stop_cv);
  g_mutex_unlock (&tp_stop_mu);
  g_thread_join (tp_thread);
  tp_thread = NULL;
  svc_db_finish (&tp_rec_db);
  svc_db_finish (&tp_rec_peer);
}
