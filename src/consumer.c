/*
 * consumer.c
 *		Background worker that applies deliveries from the node's queue.
 *
 * Deliveries are applied in batches, one transaction per batch, and acked
 * (multiple=true, up to the batch's last tag) only once that transaction's
 * commit is on disk.  The commit itself does not wait for the WAL flush,
 * as PostgreSQL's own apply worker does not: the rows are visible at once,
 * and the ack waits instead (see ack_durable).  If the transaction fails,
 * nothing is acked and the connection is rebuilt, so the broker delivers
 * the same messages again, in order; apply_message recognises what was
 * already applied.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/syncrep.h"
#include "storage/ipc.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "apply.h"
#include "attempts.h"
#include "bindings.h"
#include "broker.h"
#include "copy_receive.h"
#include "worker.h"

/* Idle wake-up; deliveries, heartbeats and the latch end it earlier. */
#define IDLE_WAIT_MS 10000
/* While the queue of the former type is drained, look at it this often. */
#define DRAIN_WAIT_MS 1000

/*
 * Bindings are re-checked this often even without a generation change:
 * a binding can vanish with an exchange deleted and declared again.
 */
#define RESYNC_MS 10000

/* A transaction stops taking deliveries once they hold this much. */
#define APPLY_BATCH_BYTES (16 * 1024 * 1024)

/* Copy requests due are looked for this often. */
#define COPY_REQUEST_CHECK_MS 1000

static BrokerConn *conn = NULL;
static BrokerBackoff backoff;

/*
 * Batches committed and not yet acked, oldest first: an ack waits until
 * the WAL flush passed the batch's commit record, so that it still means
 * "durable".  A crash before the flush loses the transaction, and the
 * broker, never acked, delivers its messages again.  Tags and LSNs only
 * grow.
 */
#define MAX_UNACKED_BATCHES 64

typedef struct UnackedBatch
{
	uint64 tag;		/* the batch's last delivery */
	XLogRecPtr lsn; /* end of its commit record */
	int deliveries;
	TimestampTz committed_at;
} UnackedBatch;

/*
 * How long a committed batch waits for the WAL writer's flush before the
 * consumer flushes itself.  Flushing whenever the deliveries ran out made
 * one fsync and one ack per message at a few hundred messages a second: on
 * a disk shared with the origin they slowed its writers' commits, and
 * RabbitMQ spent a quarter of its CPU on the acks.  The rows are visible
 * at commit either way; only the ack waits.
 */
#define ACK_FLUSH_DELAY_MS 50

static UnackedBatch unacked[MAX_UNACKED_BATCHES];
static int nunacked = 0;
static int unacked_deliveries = 0;

static void
close_at_exit(int code, Datum arg)
{
	broker_close(conn);
	conn = NULL;
}

/* Their tags belonged to a closed channel; the broker delivers them again. */
static void
forget_unacked(void)
{
	nunacked = 0;
	unacked_deliveries = 0;
}

static bool ack_durable(bool wait);

/*
 * Batches committed before the close are acked if the connection still
 * takes it: brought back, a parked message would be parked again.  Their
 * tags die with the connection: acked on the next one, they would close
 * its channel (PRECONDITION_FAILED, unknown delivery tag).
 */
static void
close_connection(void)
{
	(void) ack_durable(true);
	broker_close(conn);
	conn = NULL;
	forget_unacked();
}

static void
drop_connection(void)
{
	evrep_worker_report(EVREP_CONSUMER, false, 0, broker_last_error());
	close_connection();
	pgstat_report_activity(STATE_IDLE, NULL);
	broker_backoff_sleep(&backoff);
}

/* Sets *fresh when a new connection was made. */
static bool
ensure_connected(bool *fresh)
{
	if (conn != NULL && broker_settings_changed(conn))
	{
		ereport(LOG, (errmsg("evrep consumer reconnects: broker settings changed")));
		close_connection();
	}
	if (conn != NULL)
		return true;
	conn = worker_connect(EVREP_CONSUMER, BROKER_CONSUMER, &backoff);
	if (conn == NULL)
		return false;
	*fresh = true;
	return true;
}

/* ---- copy requests ---- */

/*
 * Sends the copy requests that are due, for tables whose routing key is
 * bound: every change the origin numbers after its first chunk must find
 * our queue.
 */
static bool
send_copy_requests(void)
{
	List *due;
	ListCell *lc;
	bool ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (!worker_extension_ready())
	{
		worker_commit();
		return true;
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	due = copy_requests_due();
	foreach (lc, due)
	{
		CopyRequest *req = lfirst(lc);

		if (!bindings_bound(wire_routing_key(req->schema, req->table)))
			continue;
		if (!(ok = broker_send_request(conn, req->routing_key, req->body, strlen(req->body)) ==
				   BROKER_OK))
			break;
		copy_request_sent(req);
	}
	PopActiveSnapshot();
	worker_commit();
	return ok;
}

/* ---- applying ---- */

/* Applies one delivery; returns the events applied. */
static int
apply_delivery(BrokerDelivery *d)
{
	ApplyDelivery a = {0};

	a.body = d->body;
	a.len = d->len;
	a.sender = d->user_id;
	a.copy_request =
		strncmp(d->routing_key, EVREP_COPY_KEY_PREFIX, strlen(EVREP_COPY_KEY_PREFIX)) == 0;
	a.attempt = attempts_failed(d->body, d->len) + 1;
	a.last_attempt = a.attempt >= evrep_apply_max_attempts;
	return apply_message(&a);
}

/*
 * How the apply transaction in progress commits: without waiting for its
 * WAL flush (ack_durable holds the ack back instead), unless synchronous
 * standbys must have it before the broker hears of it, or the
 * administrator turned evrep.apply_async_commit off.
 */
static void
set_apply_commit(void)
{
	if (evrep_apply_async_commit &&
		!(SyncRepStandbyNames != NULL && SyncRepStandbyNames[0] != '\0' &&
		  synchronous_commit > SYNCHRONOUS_COMMIT_LOCAL_FLUSH))
		worker_async_commit();
	else
		worker_durable_commit();
}

/*
 * Acks the batches whose commit is on disk.  With wait, or when the
 * unacked deliveries fill half the prefetch window (the broker would stop
 * delivering), first flushes the WAL up to the last commit, as one flush
 * for all of them: the consumer does so when it has run out of deliveries
 * and the oldest batch has waited ACK_FLUSH_DELAY_MS, and the WAL writer
 * otherwise.  False if the ack could not be sent.
 */
static bool
ack_durable(bool wait)
{
	XLogRecPtr flushed;
	int n;

	if (nunacked == 0)
		return true;
	if (wait || nunacked == MAX_UNACKED_BATCHES || unacked_deliveries >= Max(evrep_prefetch / 2, 1))
		XLogFlush(unacked[nunacked - 1].lsn);
	flushed = GetFlushRecPtr(NULL);
	for (n = 0; n < nunacked && unacked[n].lsn <= flushed; n++)
		unacked_deliveries -= unacked[n].deliveries;
	if (n == 0)
		return true;
	if (broker_ack(conn, unacked[n - 1].tag) != BROKER_OK)
		return false;
	nunacked -= n;
	memmove(unacked, unacked + n, sizeof(UnackedBatch) * nunacked);
	return true;
}

/* How long until the oldest unacked batch is due for a flush of our own. */
static long
flush_wait_ms(void)
{
	if (nunacked == 0)
		return 0;
	return TimestampDifferenceMilliseconds(
		GetCurrentTimestamp(),
		TimestampTzPlusMilliseconds(unacked[0].committed_at, ACK_FLUSH_DELAY_MS));
}

static bool
flush_due(void)
{
	return nunacked > 0 && flush_wait_ms() <= 0;
}

/* A batch just committed: its ack waits for the flush of its commit. */
static void
note_unacked(uint64 tag, int deliveries)
{
	/* XactLastCommitEnd is the last commit's; a batch that wrote nothing needs no flush */
	unacked[nunacked].tag = tag;
	unacked[nunacked].lsn = XactLastCommitEnd;
	unacked[nunacked].deliveries = deliveries;
	unacked[nunacked].committed_at = GetCurrentTimestamp();
	nunacked++;
	unacked_deliveries += deliveries;
}

/*
 * The one place an ERROR is survived: a failed batch is rolled back and
 * reported, and the caller makes the broker deliver it again, in order.
 * The message that raised the error has one more failed attempt, unless
 * the error was transient; on its last attempt apply_message parks it
 * rather than raise, and its neighbours go through.
 */
static bool
apply_batch_txn(BrokerDelivery **ds, int n, int64 *applied)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;
	volatile int current = -1;
	volatile int64 total = 0;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		set_apply_commit();
		for (int i = 0; i < n; i++)
		{
			current = i;
			PushActiveSnapshot(GetTransactionSnapshot());
			total += apply_delivery(ds[i]);
			PopActiveSnapshot();
			/* later messages must see what earlier ones wrote */
			CommandCounterIncrement();
			/* a long batch must not miss heartbeats; errors show at ack */
			(void) broker_poll(conn);
		}
		current = -1;
		worker_commit();
	}
	PG_CATCH();
	{
		ErrorData *edata;
		int attempt = 0;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		worker_abort();
		if (current >= 0 && !apply_error_is_transient(edata->sqlerrcode))
		{
			attempts_note_failure(ds[current]->body, ds[current]->len);
			attempt = attempts_failed(ds[current]->body, ds[current]->len);
		}
		ereport(
			WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg_plural("evrep consumer could not apply %d message: %s",
						   "evrep consumer could not apply %d messages: %s", n, n, edata->message),
			 attempt > 0
				 ? errdetail(
					   "Nothing was acknowledged; the broker delivers the messages again. Message %d of the batch failed attempt %d of %d; the last attempt parks it.",
					   current + 1, attempt, evrep_apply_max_attempts)
				 : errdetail("Nothing was acknowledged; the broker delivers the messages again."),
			 edata->context ? errcontext("%s", edata->context) : 0));
		evrep_worker_report(EVREP_CONSUMER, true, 0, edata->message);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	pgstat_report_stat(false);
	*applied = ok ? total : 0;
	return ok;
}

/*
 * Applies up to evrep.apply_batch deliveries already received, and no more
 * than about APPLY_BATCH_BYTES of them (chunks of a copy are large), then
 * acks what is durable.
 */
static bool
apply_pending(void)
{
	int max = Min(broker_pending(conn), evrep_apply_batch);
	int n = 0;
	int64 bytes = 0;
	BrokerDelivery **ds;
	int64 applied = 0;
	bool ok;

	ds = palloc(sizeof(BrokerDelivery *) * max);
	while (n < max && bytes < APPLY_BATCH_BYTES)
	{
		ds[n] = broker_take(conn);
		bytes += ds[n++]->len;
	}

	pgstat_report_activity(STATE_RUNNING, psprintf("applying %d messages", n));
	ok = apply_batch_txn(ds, n, &applied);
	if (ok)
	{
		/* committed is applied, whether or not the ack gets through */
		evrep_worker_report(EVREP_CONSUMER, true, applied, NULL);
		for (int i = 0; i < n; i++)
			attempts_forget(ds[i]->body, ds[i]->len);
		note_unacked(ds[n - 1]->tag, n);
		ok = ack_durable(false);
	}
	if (ok)
		broker_backoff_reset(&backoff);

	for (int i = 0; i < n; i++)
		broker_free_delivery(ds[i]);
	return ok;
}

/*
 * One step of the switch to a queue of another type (broker.h).  False
 * when the connection was closed: the next turn reconnects.
 */
static bool
drain_step(void)
{
	bool drained;

	if (broker_drain_step(conn, &drained) == BROKER_ERROR)
	{
		drop_connection();
		return false;
	}
	if (!drained)
		return true;
	/* a new connection consumes the node's queue; nothing to back off from */
	broker_close(conn);
	conn = NULL;
	forget_unacked();
	return false;
}

/* Rows the apply writes are not captured again: no echo between nodes. */
static void
set_replica_role(void)
{
	SetConfigOption("session_replication_role", "replica", PGC_SUSET, PGC_S_SESSION);
}

void
evrep_consumer_main(Datum main_arg)
{
	uint64 synced_generation = 0;
	TimestampTz synced_at = 0;
	TimestampTz requested_at = 0;
	bool fresh = true;

	worker_init(EVREP_CONSUMER, "evrep consumer");
	before_shmem_exit(close_at_exit, (Datum) 0);
	set_replica_role();

	for (;;)
	{
		uint64 generation;

		worker_begin_turn();
		worker_check_interrupts();
		worker_check_history();
		if (!ensure_connected(&fresh))
			continue;

		/* read before syncing: a change during the sync syncs again */
		generation = pg_atomic_read_u64(&evrep_shared->subscription_generation);
		if (fresh || generation != synced_generation ||
			TimestampDifferenceExceeds(synced_at, GetCurrentTimestamp(), RESYNC_MS))
		{
			if (!bindings_sync(conn))
			{
				drop_connection();
				continue;
			}
			fresh = false;
			synced_generation = generation;
			synced_at = GetCurrentTimestamp();
			requested_at = 0; /* a new subscription may want a copy */
		}
		bindings_serve_request(conn);
		if (TimestampDifferenceExceeds(requested_at, GetCurrentTimestamp(), COPY_REQUEST_CHECK_MS))
		{
			if (!send_copy_requests())
			{
				drop_connection();
				continue;
			}
			requested_at = GetCurrentTimestamp();
		}

		/*
		 * Nothing more to apply now: what was applied is acked once durable
		 * (a queue being drained is deleted only after every ack).
		 */
		if (broker_pending(conn) == 0 && !ack_durable(flush_due() || broker_draining(conn)))
		{
			drop_connection();
			continue;
		}
		if (broker_pending(conn) == 0 && broker_draining(conn))
		{
			if (!drain_step())
				continue;
		}
		if (broker_pending(conn) == 0)
		{
			long wait = broker_draining(conn) ? DRAIN_WAIT_MS : IDLE_WAIT_MS;

			pgstat_report_activity(STATE_IDLE, NULL);
			pgstat_report_stat(true);
			if (nunacked > 0)
				wait = Min(wait, Max(flush_wait_ms(), 1));
			if (broker_wait(conn, wait) == BROKER_ERROR)
				drop_connection();
			continue;
		}
		if (!apply_pending())
			drop_connection();
	}
}
