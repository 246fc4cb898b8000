/*
 * worker.c
 *		Start-up and housekeeping shared by the publisher and the consumer.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "incarnation.h"
#include "worker.h"

/*
 * Memory of one turn of a worker's loop, reset at the start of the next
 * (as the apply worker's ApplyMessageContext): whatever a turn allocates
 * and forgets cannot accumulate over millions of events.
 */
static MemoryContext turn_cxt = NULL;

static void sleep_on_latch(long timeout_ms);

/*
 * worker_spi idiom: SIGTERM ends the worker at the next
 * CHECK_FOR_INTERRUPTS, SIGHUP rereads the configuration at the next
 * worker_check_interrupts.
 */
void
worker_init(EvrepWorkerKind kind, const char *name)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(evrep_database, NULL, 0);
	turn_cxt = AllocSetContextCreate(TopMemoryContext, "evrep worker turn", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(turn_cxt);

	/* the assign hook also shows it in pg_stat_activity */
	SetConfigOption("application_name", name, PGC_USERSET, PGC_S_SESSION);
	/* nothing a user created may stand in for what the workers call */
	SetConfigOption("search_path", "", PGC_SUSET, PGC_S_OVERRIDE);
	evrep_worker_started(kind);
	pgstat_report_activity(STATE_IDLE, NULL);

	/*
	 * node_name cannot change without a restart; without it there is no
	 * origin and no queue name, so idle instead of failing every 5 s.
	 */
	if (evrep_node_name[0] == '\0')
	{
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s idles: evrep.node_name is not set", name),
				 errhint("Set evrep.node_name in postgresql.conf and restart the server.")));
		evrep_worker_report(kind, false, 0, "evrep.node_name is not set");
		for (;;)
			sleep_on_latch(-1);
	}
}

/* Starts a turn of the loop in a fresh turn context. */
void
worker_begin_turn(void)
{
	MemoryContextSwitchTo(turn_cxt);
	MemoryContextReset(turn_cxt);
}

/* Commits and returns to the turn context (a commit leaves TopMemoryContext current). */
void
worker_commit(void)
{
	CommitTransactionCommand();
	MemoryContextSwitchTo(turn_cxt);
}

/* Rolls back after a caught error and returns to the turn context. */
void
worker_abort(void)
{
	AbortCurrentTransaction();
	MemoryContextSwitchTo(turn_cxt);
}

void
worker_check_interrupts(void)
{
	CHECK_FOR_INTERRUPTS();

	/*
	 * Latch waits exit on postmaster death, but a worker with a backlog
	 * never waits: it must not go on applying or sending for a server that
	 * crashed and is about to be restarted by crash recovery.
	 */
	if (!PostmasterIsAlive())
		proc_exit(1);
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

static bool history_checked = false;

/* Inside a transaction: has CREATE EXTENSION evrep run in this database? */
bool
worker_extension_ready(void)
{
	/*
	 * By the outbox's name, which the syscache answers: get_extension_oid
	 * scans pg_extension, 4% of the publisher's CPU at a turn per event.
	 * CREATE and DROP EXTENSION make and remove both in one transaction.
	 */
	Oid nspid = get_namespace_oid("evrep", true);

	if (OidIsValid(nspid) && OidIsValid(get_relname_relid("outbox", nspid)))
		return true;
	history_checked = false; /* a catalog created again starts without one */
	return false;
}

/*
 * In a transaction of its own: has this database started a new history?
 * False if the extension is not (yet) in this database.
 */
static bool
check_history_now(void)
{
	bool ready;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	ready = worker_extension_ready();
	if (ready && history_catalog())
	{
		worker_durable_commit();
		PushActiveSnapshot(GetTransactionSnapshot());
		incarnation_check();
		PopActiveSnapshot();
		history_checked = true;
	}
	worker_commit();
	return ready;
}

/*
 * Every 10 s: has this database started a new history (incarnation.c)?
 * Not only at start: a dump's rows are restored while the workers run, and
 * a 1.0 catalog may be updated to 1.1 under them.
 */
void
worker_check_history(void)
{
	static TimestampTz looked_at = 0;

	if (!TimestampDifferenceExceeds(looked_at, GetCurrentTimestamp(),
									history_checked ? 10000 : 1000))
		return;
	looked_at = GetCurrentTimestamp();
	(void) check_history_now();
}

/*
 * Before a claim; false if the extension is not here.  Events sent before
 * the first check would carry no history, and subscribers would take this
 * one as new when the next event brings it: CREATE EXTENSION and the first
 * writes can come between two of the checks above.
 */
bool
worker_require_history(void)
{
	return history_checked || check_history_now();
}

static bool
extension_ready_txn(void)
{
	bool ready;

	StartTransactionCommand();
	ready = worker_extension_ready();
	worker_commit();
	return ready;
}

/*
 * For the transaction in progress.  The publisher's numbering and the
 * consumer's apply are followed by a promise to the broker (send, ack), so
 * they must be on disk before it: a numbering lost in a crash would be
 * redone with other numbers and defeat duplicate detection, and an acked
 * apply lost in a crash would be lost for good.  A stronger setting of the
 * administrator's (remote_*) is kept.
 */
void
worker_durable_commit(void)
{
	if (synchronous_commit < SYNCHRONOUS_COMMIT_LOCAL_FLUSH)
		(void) set_config_option("synchronous_commit", "local", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
}

/*
 * For the transaction in progress, when losing it in a crash only causes
 * a harmless repeat (the outbox delete after a confirm: the rows are sent
 * again with the same numbers and skipped by the subscribers).
 */
void
worker_async_commit(void)
{
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

/* Sleeps on the latch only; timeout -1 waits for the latch alone. */
static void
sleep_on_latch(long timeout_ms)
{
	int events = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH;
	int rc;

	if (timeout_ms >= 0)
		events |= WL_TIMEOUT;
	pgstat_report_activity(STATE_IDLE, NULL);
	rc = WaitLatch(MyLatch, events, timeout_ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	worker_check_interrupts();
}

/*
 * Connects the worker to the broker, unless CREATE EXTENSION has not run
 * yet; after a failure, records why and sleeps the backoff.  NULL when
 * there is no connection.
 */
BrokerConn *
worker_connect(EvrepWorkerKind kind, BrokerRole role, BrokerBackoff *backoff)
{
	BrokerConn *conn;

	if (!extension_ready_txn())
	{
		sleep_on_latch(NO_EXTENSION_WAIT_MS);
		return NULL;
	}
	pgstat_report_activity(STATE_RUNNING, "connecting to broker");
	conn = broker_connect(role);
	if (conn == NULL)
	{
		evrep_worker_report(kind, false, 0, broker_last_error());
		pgstat_report_activity(STATE_IDLE, NULL);
		broker_backoff_sleep(backoff);
		return NULL;
	}
	evrep_worker_report(kind, true, 0, NULL);
	return conn;
}
