/*
 * twopc_service.c
 *		The two-phase commit baseline on top of the shared service runtime.
 *
 * This is the baseline that evrep is measured against
 * (bench/twopc_vs_evrep.sh): instead of writing its own database and
 * letting evrep replicate the row, the service writes the row into both
 * databases in one distributed transaction (twopc_write.c) and settles
 * what a crash left in doubt (twopc_recovery.c).  It lives in binaries of
 * its own so that the product services carry none of it.
 */
#include "twopc_service.h"

#include <stdio.h>

#include "svc_error.h"
#include "svc_log.h"
#include "twopc_gid.h"
#include "twopc_recovery.h"

const char twopc_summary[] = "Two-phase commit baseline: every write goes to the own and the peer\n"
							 "database in one distributed transaction (no evrep on these tables).";

static char *opt_peer_db = NULL;
static int opt_recovery_interval_ms = 5000;

const GOptionEntry twopc_options[] = {
	{"peer-db", 0, 0, G_OPTION_ARG_STRING, &opt_peer_db,
	 "libpq connection string of the other service's database (required)", "CONNINFO"},
	{"recovery-interval-ms", 0, 0, G_OPTION_ARG_INT, &opt_recovery_interval_ms,
	 "how often in-doubt transactions are looked for and settled (default 5000; "
	 "also once at start)",
	 "MS"},
	{NULL, 0, 0, 0, NULL, NULL, NULL}};

/* for the connection threads' peer handles */
static const char *peer_app_name;
static int peer_statement_timeout_ms;

gboolean
twopc_setup(const SvcSettings *settings)
{
	const char *note;

	if (opt_peer_db == NULL || *opt_peer_db == '\0')
	{
		fprintf(stderr, "%s: --peer-db is required (try --help)\n", settings->prog);
		return FALSE;
	}
	if (opt_recovery_interval_ms < 1)
	{
		fprintf(stderr, "%s: --recovery-interval-ms must be positive\n", settings->prog);
		return FALSE;
	}
	peer_app_name = settings->prog;
	peer_statement_timeout_ms = settings->statement_timeout_ms;
	twopc_gid_init(settings->service_name);
	note = twopc_write_init();

	/* the application_name shows which sessions are recovery's */
	twopc_recovery_init(g_strdup_printf("%s recovery", settings->prog), settings->db, opt_peer_db,
						settings->statement_timeout_ms, opt_recovery_interval_ms);
	svc_log("two-phase commit mode: gids %s*, recovery every %d ms%s", twopc_gid_instance(),
			opt_recovery_interval_ms, note);

	/*
	 * before listening: a transaction that an earlier run left prepared
	 * holds its row locks, which new requests would wait for
	 */
	twopc_recovery_pass();
	return TRUE;
}

void
twopc_start(void)
{
	twopc_recovery_start();
}

void
twopc_stop(void)
{
	twopc_recovery_stop();
}

void
twopc_peer_init(SvcDb *peer)
{
	svc_db_init(peer, opt_peer_db, peer_statement_timeout_ms, peer_app_name);
}

/* Map a failed twopc_write to an exception; what is e.g. "createCustomer". */
static gboolean
twopc_fail(EvrepOperationFailedException **ex, const char *what, const TwopcError *err)
{
	if (err->in_doubt)
		return svc_fail(ex,
						"%s failed: outcome unknown, the decision could not be confirmed "
						"(%s); recovery will commit or roll back both databases",
						what, err->db.message ? err->db.message : "unknown error");
	if (err->peer)
		return svc_fail_db_in(ex, what, "peer database", &err->db);
	return svc_fail_db(ex, what, &err->db);
}

gboolean
twopc_insert(const TwopcInsert *ins, SvcDb *db, SvcDb *peer, const char *const *params,
			 gboolean *applied, EvrepOperationFailedException **ex)
{
	TwopcError err;
	gboolean ok;

	if (twopc_write(db, peer, ins->local_sql, ins->peer_sql, ins->nparams, params, applied, &err))
		return TRUE;
	if (svc_db_duplicate(&err.db))
		ok = svc_fail(ex, "%s %s already exists", ins->entity, params[0]);
	else
		ok = twopc_fail(ex, ins->call, &err);
	twopc_error_clear(&err);
	return ok;
}
