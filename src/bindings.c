/*
 * bindings.c
 *		The bindings of the node's queue to evrep.exchange: which routing
 *		keys the subscriptions want, the consumer's sync of them, and the
 *		handshake through which evrep_subscribe(copy_data => false) has a
 *		key bound before it returns.
 *
 * Backends (evrep_subscribe and the like, through the SQL helpers) tell
 * the consumer that the subscriptions changed, or post one key to bind
 * now, in shared memory (EvrepShared); the consumer serves both between
 * its batches, on its own broker connection.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "bindings.h"
#include "broker.h"
#include "evrep.h"
#include "spi_util.h"
#include "wire.h"
#include "worker.h"

/* ---- telling the consumer that the subscriptions changed ---- */

/*
 * The consumer re-reads the subscriptions when told; telling it before the
 * subscribing transaction commits would let it read the old set.
 */
static bool subscriptions_changed_pending = false;
static bool subscriptions_callback_registered = false;

static void
subscriptions_xact_callback(XactEvent event, void *arg)
{
	Latch *latch;

	if (!subscriptions_changed_pending)
		return;
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		subscriptions_changed_pending = false;
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT)
		return;
	subscriptions_changed_pending = false;
	if (evrep_shared == NULL)
		return;
	pg_atomic_fetch_add_u64(&evrep_shared->subscription_generation, 1);
	latch = evrep_shared->workers[EVREP_CONSUMER].latch;
	if (latch != NULL)
		SetLatch(latch);
}

/* Tells the consumer, once this transaction commits, that subscriptions changed. */
static void
subscriptions_changed(void)
{
	if (!subscriptions_callback_registered)
	{
		RegisterXactCallback(subscriptions_xact_callback, NULL);
		subscriptions_callback_registered = true;
	}
	subscriptions_changed_pending = true;
}

PG_FUNCTION_INFO_V1(evrep_subscriptions_changed_sql);
Datum
evrep_subscriptions_changed_sql(PG_FUNCTION_ARGS)
{
	subscriptions_changed();
	PG_RETURN_VOID();
}

/* ---- the consumer's bindings ---- */

/*
 * Routing keys this process bound and has not unbound.  Bindings are
 * durable and AMQP cannot list them, so a key unsubscribed while no
 * consumer ran stays bound; apply_message parks what still arrives for
 * it as not subscribed, where an operator sees it.
 */
static MemoryContext bound_cxt;
static List *bound_keys = NIL;

/*
 * Routing keys the consumer's queue must be bound to: one per
 * subscription, and one per publication for the copy requests of its
 * subscribers, as palloc'd strings.  Inside a transaction.
 */
static List *
subscription_keys(void)
{
	List *keys = NIL;
	MemoryContext caller = CurrentMemoryContext;

	spi_connect();
	/* an origin hears the copy requests for what it publishes */
	spi_check(SPI_execute("SELECT schema_name, table_name, false FROM evrep.subscription"
						  " UNION ALL SELECT schema_name, table_name, true FROM evrep.publication"
						  " WHERE active ORDER BY 3, 1, 2",
						  true, 0),
			  SPI_OK_SELECT, ANY_ROWS, "could not read evrep subscriptions");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char *schema = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char *table = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		bool isnull;
		bool published =
			DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull));
		MemoryContext old = MemoryContextSwitchTo(caller);

		keys = lappend(keys, published ? wire_copy_request_key(schema, table)
									   : wire_routing_key(schema, table));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return keys;
}

static bool
key_in(const char *key, List *keys)
{
	ListCell *lc;

	foreach (lc, keys)
	{
		if (strcmp(key, lfirst(lc)) == 0)
			return true;
	}
	return false;
}

/* The keys the subscriptions want, copied out of the transaction. */
static List *
wanted_keys(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List *keys = NIL;
	ListCell *lc;

	StartTransactionCommand();
	if (worker_extension_ready())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		foreach (lc, subscription_keys())
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			keys = lappend(keys, pstrdup(lfirst(lc)));
			MemoryContextSwitchTo(old);
		}
		PopActiveSnapshot();
	}
	worker_commit();
	return keys;
}

static bool
bind_key(BrokerConn *conn, const char *key)
{
	bool known = key_in(key, bound_keys);
	MemoryContext old;

	/* a key bound before may be bound again without waiting: see broker_rebind */
	if ((known ? broker_rebind(conn, key) : broker_bind(conn, key)) != BROKER_OK)
		return false;
	if (known)
		return true;
	ereport(LOG, (errmsg("evrep consumer: queue bound to routing key \"%s\"", key)));
	old = MemoryContextSwitchTo(bound_cxt);
	bound_keys = lappend(bound_keys, pstrdup(key));
	MemoryContextSwitchTo(old);
	return true;
}

static bool
unbind_key(BrokerConn *conn, const char *key)
{
	if (broker_unbind(conn, key) != BROKER_OK)
		return false;
	ereport(LOG, (errmsg("evrep consumer: queue unbound from routing key \"%s\"", key)));
	return true;
}

/*
 * Binds every wanted key and unbinds what this process bound that is no
 * longer wanted.  Binding is idempotent, so every sync binds everything
 * again: that also repairs bindings lost behind our back (exchange deleted
 * and re-declared by a publisher, queue deleted), within the consumer's
 * RESYNC_MS.
 */
bool
bindings_sync(BrokerConn *conn)
{
	MemoryContext old;
	List *want;
	List *keep = NIL;
	ListCell *lc;
	bool ok = true;

	if (bound_cxt == NULL)
		bound_cxt = AllocSetContextCreate(TopMemoryContext, "evrep consumer bindings",
										  ALLOCSET_SMALL_SIZES);
	pgstat_report_activity(STATE_RUNNING, "syncing queue bindings");
	want = wanted_keys();
	foreach (lc, want)
	{
		if (!(ok = bind_key(conn, lfirst(lc))))
			break;
	}

	old = MemoryContextSwitchTo(bound_cxt);
	foreach (lc, bound_keys)
	{
		char *key = lfirst(lc);

		if (ok && !key_in(key, want) && (ok = unbind_key(conn, key)))
			pfree(key);
		else
			keep = lappend(keep, key);
	}
	list_free(bound_keys);
	bound_keys = keep;
	MemoryContextSwitchTo(old);
	return ok;
}

bool
bindings_bound(const char *key)
{
	return key_in(key, bound_keys);
}

/* ---- binding a key now, for evrep_subscribe ---- */

/*
 * For evrep_subscribe(copy_data => false), which waits for it.  Not
 * remembered in bound_keys: its transaction has not committed, and the next
 * sync must not unbind what it does not see subscribed yet.  If it rolls
 * back, the binding stays and what arrives is parked as not subscribed.
 */
static bool
bind_for_subscriber(BrokerConn *conn, const char *key)
{
	if (broker_bind(conn, key) != BROKER_OK)
		return false;
	ereport(LOG,
			(errmsg("evrep consumer: queue bound to routing key \"%s\" for evrep_subscribe", key)));
	return true;
}

void
bindings_serve_request(BrokerConn *conn)
{
	char key[sizeof(evrep_shared->bind_key)];
	uint64 requested;
	bool ok;

	SpinLockAcquire(&evrep_shared->mutex);
	requested = evrep_shared->bind_requested;
	strlcpy(key, evrep_shared->bind_key, sizeof(key));
	SpinLockRelease(&evrep_shared->mutex);
	if (requested == evrep_shared->bind_done)
		return;
	ok = bind_for_subscriber(conn, key);
	SpinLockAcquire(&evrep_shared->mutex);
	evrep_shared->bind_ok = ok;
	evrep_shared->bind_done = requested;
	SpinLockRelease(&evrep_shared->mutex);
	ConditionVariableBroadcast(&evrep_shared->bind_cv);
}

static bool
consumer_connected(void)
{
	bool connected;

	SpinLockAcquire(&evrep_shared->mutex);
	connected = evrep_shared->workers[EVREP_CONSUMER].latch != NULL &&
				evrep_shared->workers[EVREP_CONSUMER].connected;
	SpinLockRelease(&evrep_shared->mutex);
	return connected;
}

/*
 * Posts key for the consumer once no other request is pending, then waits
 * until the consumer tried it; false on timeout.
 */
static bool
wait_for_binding(const char *key, bool *bound)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), evrep_bind_timeout);
	uint64 mine = 0;

	ConditionVariablePrepareToSleep(&evrep_shared->bind_cv);
	for (;;)
	{
		long left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		Latch *latch;

		SpinLockAcquire(&evrep_shared->mutex);
		if (mine == 0 && evrep_shared->bind_requested == evrep_shared->bind_done)
		{
			mine = ++evrep_shared->bind_requested;
			strlcpy(evrep_shared->bind_key, key, sizeof(evrep_shared->bind_key));
		}
		if (mine != 0 && evrep_shared->bind_done >= mine)
		{
			*bound = evrep_shared->bind_ok;
			SpinLockRelease(&evrep_shared->mutex);
			break;
		}
		latch = evrep_shared->workers[EVREP_CONSUMER].latch;
		SpinLockRelease(&evrep_shared->mutex);
		if (latch != NULL)
			SetLatch(latch);
		if (left <= 0)
		{
			ConditionVariableCancelSleep();
			return false;
		}
		(void) ConditionVariableTimedSleep(&evrep_shared->bind_cv, Min(left, 1000),
										   PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	return true;
}

/*
 * evrep._bind_now(schema, table): the consumer binds the table's routing
 * key before evrep_subscribe(copy_data => false) returns, so that no
 * change published after it is dropped for want of a binding.  Without a
 * connected consumer that cannot be promised: a WARNING says so.
 */
PG_FUNCTION_INFO_V1(evrep_bind_now);
Datum
evrep_bind_now(PG_FUNCTION_ARGS)
{
	char *key = wire_routing_key(text_to_cstring(PG_GETARG_TEXT_PP(0)),
								 text_to_cstring(PG_GETARG_TEXT_PP(1)));
	bool bound = false;

	if (evrep_shared == NULL || evrep_database[0] == '\0' || evrep_broker_url[0] == '\0')
		PG_RETURN_VOID();
	if (strlen(key) >= sizeof(evrep_shared->bind_key))
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG), errmsg("routing key \"%s\" is too long", key)));
	if (!consumer_connected() || !wait_for_binding(key, &bound) || !bound)
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the evrep consumer has not bound its queue to routing key \"%s\"", key),
				 errdetail("Changes published before the binding exists are not received."),
				 errhint("evrep.status shows the consumer's last error; evrep_resync() copies the "
						 "rows once it is connected.")));
	PG_RETURN_VOID();
}
