/*
 * publisher.c
 *		Background worker that moves outbox rows to RabbitMQ.
 *
 * One round: number and encode a batch and COMMIT (so that a re-send after
 * a failure reuses the numbers), publish every message of the batch
 * pipelined, wait until the broker confirmed all of them, then delete the
 * rows.  Any broker failure drops the connection; the next round, on a new
 * connection, gets the same numbered rows back from outbox_claim_batch.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "broker.h"
#include "outbox.h"
#include "worker.h"

/*
 * A broker that stops confirming while its heartbeats still arrive is
 * blocked (resource alarm) or overloaded; after this long a new connection
 * and a re-send are worth their duplicates.
 */
#define CONFIRM_TIMEOUT_MS 60000

/* How often to look for CREATE EXTENSION while it has not run. */
#define NO_EXTENSION_WAIT_MS 5000

static BrokerConn *conn = NULL;
static BrokerBackoff backoff;

static void
close_at_exit(int code, Datum arg)
{
	broker_close(conn);
	conn = NULL;
}

static void
drop_connection(void)
{
	evrep_worker_report(EVREP_PUBLISHER, false, 0, broker_last_error());
	broker_close(conn);
	conn = NULL;
	pgstat_report_activity(STATE_IDLE, NULL);
	broker_backoff_sleep(&backoff);
}

/* Connects, unless CREATE EXTENSION has not run yet. */
static bool
ensure_connected(void)
{
	if (conn != NULL && broker_settings_changed(conn))
	{
		ereport(LOG, (errmsg("evrep publisher reconnects: broker settings changed")));
		broker_close(conn);
		conn = NULL;
	}
	if (conn != NULL)
		return true;
	if (!worker_extension_ready_txn())
	{
		worker_sleep(NO_EXTENSION_WAIT_MS);
		return false;
	}
	pgstat_report_activity(STATE_RUNNING, "connecting to broker");
	conn = broker_connect(BROKER_PUBLISHER);
	if (conn == NULL)
	{
		evrep_worker_report(EVREP_PUBLISHER, false, 0, broker_last_error());
		pgstat_report_activity(STATE_IDLE, NULL);
		broker_backoff_sleep(&backoff);
		return false;
	}
	evrep_worker_report(EVREP_PUBLISHER, true, 0, NULL);
	return true;
}

/* Numbers the next batch and commits, so the numbers are kept. */
static OutboxBatch *
claim_batch(MemoryContext round_cxt, bool *ready)
{
	OutboxBatch *batch = NULL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	*ready = worker_extension_ready();
	if (*ready)
	{
		worker_durable_commit();
		PushActiveSnapshot(GetTransactionSnapshot());
		batch = outbox_claim_batch(evrep_batch_size, evrep_message_events, round_cxt);
		if (batch == NULL)
			outbox_rotate();	/* idle: still empty what was drained */
		PopActiveSnapshot();
	}
	CommitTransactionCommand();
	pgstat_report_stat(false);
	return batch;
}

static void
remove_batch(OutboxBatch *batch)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	worker_async_commit();
	PushActiveSnapshot(GetTransactionSnapshot());
	outbox_remove_batch(batch);
	outbox_rotate();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
}

static BrokerStatus
wait_confirms(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), CONFIRM_TIMEOUT_MS);
	BrokerStatus st;

	for (;;)
	{
		long left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);

		st = broker_wait_confirms(conn, left);
		if (st == BROKER_TIMEOUT && broker_blocked(conn))
		{
			/* a resource alarm: a new connection would be blocked too */
			deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), CONFIRM_TIMEOUT_MS);
			continue;
		}
		if (st != BROKER_LATCH)
			break;
		/* committing writers set the latch too: it only means "look again" */
		worker_check_interrupts();
	}

	if (st == BROKER_TIMEOUT)
		ereport(WARNING, (errcode(ERRCODE_CONNECTION_FAILURE),
						  errmsg("evrep publisher: %d messages not confirmed within %d s; sending "
								 "them again on a new connection",
								 broker_unconfirmed(conn), CONFIRM_TIMEOUT_MS / 1000)));
	return st;
}

/* Publishes the whole batch, then waits for the confirms of all of it. */
static bool
send_batch(OutboxBatch *batch)
{
	ListCell *lc;

	pgstat_report_activity(STATE_RUNNING, psprintf("publishing %d events in %d messages",
												   batch->nevents, list_length(batch->messages)));
	foreach (lc, batch->messages)
	{
		OutboxMessage *m = lfirst(lc);

		if (broker_publish(conn, m->routing_key, m->body, m->body_len, m->message_id) != BROKER_OK)
			return false;
	}
	return wait_confirms() == BROKER_OK;
}

/* Waits for writers' wake-ups, keeping the connection alive meanwhile. */
static void
idle(long timeout_ms)
{
	pgstat_report_activity(STATE_IDLE, NULL);
	pgstat_report_stat(true);
	if (broker_wait(conn, timeout_ms) == BROKER_ERROR)
		drop_connection();
}

void
evrep_publisher_main(Datum main_arg)
{
	MemoryContext round_cxt;

	worker_init(EVREP_PUBLISHER, "evrep publisher");
	before_shmem_exit(close_at_exit, (Datum) 0);
	round_cxt =
		AllocSetContextCreate(TopMemoryContext, "evrep publisher round", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		OutboxBatch *batch;
		bool ready;

		MemoryContextSwitchTo(TopMemoryContext);
		worker_check_interrupts();
		if (!ensure_connected())
			continue;
		if (broker_blocked(conn))
		{
			idle(evrep_poll_interval);
			continue;
		}

		MemoryContextReset(round_cxt);
		batch = claim_batch(round_cxt, &ready);
		MemoryContextSwitchTo(round_cxt); /* the commit left us in Top */
		if (!ready)
		{
			idle(NO_EXTENSION_WAIT_MS);
			continue;
		}
		if (batch == NULL)
		{
			idle(evrep_poll_interval);
			continue;
		}

		/*
		 * No heartbeats are sent during the claim; a slow one can cost the
		 * connection.  Find out now and send on a new connection, rather
		 * than fail halfway through the batch.
		 */
		if (broker_poll(conn) != BROKER_OK)
		{
			broker_close(conn);
			conn = NULL;
			if (!ensure_connected())
				continue;
		}
		if (!send_batch(batch))
		{
			drop_connection();
			continue;
		}
		remove_batch(batch);
		broker_backoff_reset(&backoff);
		evrep_worker_report(EVREP_PUBLISHER, true, batch->nevents, NULL);

		/*
		 * Loop without sleeping even after a small batch: waiting for the
		 * confirms reset the latch, which may have swallowed a writer's
		 * wake-up.  The next claim either finds those rows or finds
		 * nothing and sleeps.
		 */
	}
}
