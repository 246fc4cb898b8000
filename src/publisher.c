/*
 * publisher.c
 *		Background worker that moves outbox rows to RabbitMQ.
 *
 * One round: number and encode a batch and COMMIT (so that a re-send after
 * a failure reuses the numbers), publish every message of the batch, and
 * go on to the next batch; the rows of a batch are deleted once the broker
 * confirmed all of its messages.  Any broker failure drops the connection
 * and forgets what was in flight; on the new connection outbox_claim_batch
 * returns every numbered row again, with the same numbers.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "broker.h"
#include "copy_send.h"
#include "outbox.h"
#include "parts_send.h"
#include "worker.h"

/* Longest sleep for confirms without looking at interrupts. */
#define CONFIRM_POLL_MS 100

/* The outbox depth is looked at this often, connected or not. */
#define DEPTH_CHECK_MS 10000

static BrokerConn *conn = NULL;
static BrokerBackoff backoff;

static void
close_at_exit(int code, Datum arg)
{
	broker_close(conn);
	conn = NULL;
}

static void forget_in_flight(void);

static void
drop_connection(void)
{
	evrep_worker_report(EVREP_PUBLISHER, false, 0, broker_last_error());
	broker_close(conn);
	conn = NULL;
	forget_in_flight();
	pgstat_report_activity(STATE_IDLE, NULL);
	broker_backoff_sleep(&backoff);
}

/*
 * Subscribers apply an event only when its broker user may speak for its
 * origin: the user named like the origin, unless they allow others.  The
 * obvious first setup (one broker user for every node) gets all its events
 * parked; say so here, once, rather than only in the subscribers' logs.
 */
static void
warn_sender_once(void)
{
	static bool warned = false;
	const char *user = broker_user(conn);

	if (warned || strcmp(user, evrep_node_name) == 0)
		return;
	warned = true;
	ereport(WARNING,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("evrep publisher connects as broker user \"%s\", not as \"%s\" "
					"(evrep.node_name)",
					user, evrep_node_name),
			 errdetail("Subscribers park every event of origin \"%s\" sent by another broker "
					   "user than \"%s\", unless they allow it.",
					   evrep_node_name, evrep_node_name),
			 errhint("Give this node a broker user named \"%s\", or run SELECT "
					 "evrep_allow_sender('%s', '%s') on every subscriber.",
					 evrep_node_name, evrep_node_name, user)));
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
		forget_in_flight();
	}
	if (conn != NULL)
		return true;
	conn = worker_connect(EVREP_PUBLISHER, BROKER_PUBLISHER, &backoff);
	if (conn == NULL)
		return false;
	warn_sender_once();
	return true;
}

/*
 * Numbers the next batch and commits, so the numbers are kept.  While a
 * copy is due the transaction runs at REPEATABLE READ: the chunk must see
 * exactly the changes numbered before it.
 */
static OutboxBatch *
claim_batch(MemoryContext round_cxt, bool *ready)
{
	OutboxBatch *batch = NULL;
	bool copy;
	bool copy_more = false;

	*ready = worker_require_history();
	if (!*ready)
		return NULL;
	/* cleared before the snapshot: a job committed after it sets it again */
	copy = pg_atomic_exchange_u32(&evrep_shared->copy_due, 0) != 0;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (copy)
		XactIsoLevel = XACT_REPEATABLE_READ;
	*ready = worker_extension_ready();
	if (*ready)
	{
		worker_durable_commit();
		PushActiveSnapshot(GetTransactionSnapshot());
		batch = outbox_claim_batch(evrep_batch_size, evrep_message_events,
								   copy ? copy_next_chunk : NULL, &copy_more, round_cxt);
		/* idle: still empty what was drained (not under an old snapshot) */
		if (batch == NULL && !copy)
			outbox_rotate();
		PopActiveSnapshot();
	}
	worker_commit();
	if (batch != NULL)
		evrep_crash_point("claimed");
	if (copy_more || (copy && !*ready))
		pg_atomic_write_u32(&evrep_shared->copy_due, 1);
	pgstat_report_stat(false);
	return batch;
}

/*
 * Batches sent and not yet confirmed, oldest first, in TopMemoryContext
 * (each batch in a context of its own).  Publishing is
 * pipelined: waiting for each batch's confirms before numbering the next
 * would add RabbitMQ's fsync interval to every event's latency.
 */
typedef struct InFlight
{
	MemoryContext cxt; /* holds the batch */
	OutboxBatch *batch;
	uint64 last_tag; /* delivery tag of its last message */
	TimestampTz sent_at;
} InFlight;

static List *in_flight = NIL;
static int in_flight_events = 0;
/* when the oldest batch not yet deleted was seen confirmed; 0: none */
static TimestampTz settled_since = 0;
/* the last batch was full: more rows are waiting (see may_claim) */
static bool backlog = false;

/* After a connection loss: every numbered row is sent again. */
static void
forget_in_flight(void)
{
	ListCell *lc;

	foreach (lc, in_flight)
		MemoryContextDelete(((InFlight *) lfirst(lc))->cxt);
	list_free_deep(in_flight);
	in_flight = NIL;
	in_flight_events = 0;
	settled_since = 0;
	outbox_resend_unconfirmed();
}

/*
 * Confirmed batches wait this long to be deleted together, unless they
 * weigh a batch: at a low rate each event is a batch of its own, and one
 * transaction per delete was as much work as the numbering.  A delete lost
 * to a crash or reconnect only sends the rows again, with their numbers.
 */
#define RETIRE_AFTER_MS 100

/* How long until the confirmed batches are due for deletion; 0: now. */
static long
retire_wait_ms(void)
{
	uint64 settled = broker_settled_upto(conn);
	int weight = 0;
	ListCell *lc;
	long left;

	foreach (lc, in_flight)
	{
		InFlight *f = lfirst(lc);

		if (f->last_tag > settled)
			break;
		weight += f->batch->weight;
	}
	if (weight == 0)
	{
		settled_since = 0;
		return -1;
	}
	if (settled_since == 0)
		settled_since = GetCurrentTimestamp();
	if (weight >= evrep_batch_size)
		return 0;
	left = TimestampDifferenceMilliseconds(
		GetCurrentTimestamp(), TimestampTzPlusMilliseconds(settled_since, RETIRE_AFTER_MS));
	return Max(left, 0);
}

/* When the oldest message still awaiting its confirm was sent; 0: none awaits one. */
static TimestampTz
oldest_unconfirmed_at(void)
{
	uint64 settled = broker_settled_upto(conn);
	ListCell *lc;

	foreach (lc, in_flight)
	{
		InFlight *f = lfirst(lc);

		if (f->last_tag > settled)
			return f->sent_at;
	}
	return 0;
}

/*
 * How long the oldest unconfirmed message may still wait; -1: none waits.
 * A hung node is found by broker_poll's liveness probe (evrep.broker_timeout):
 * a node that answers it but confirms nothing for evrep.confirm_timeout
 * waits for its cluster (a quorum queue electing a leader, or without a
 * quorum); the publisher then leaves it too, and sends everything
 * unconfirmed again through the next node.  Both ways the resend is
 * harmless: the messages keep their numbers (outbox_claim_batch returns
 * them again), and a subscriber skips any number it applied already, in
 * the transaction that applies it; the copies the hung node may still
 * route once it wakes up arrive later still and are skipped the same
 * way.  A blocked broker (resource alarm) is not hung: it withholds
 * confirms on purpose, everywhere in the cluster, so the clock stops
 * while it blocks and starts again when it unblocks.
 */
static long
confirm_wait_left_ms(void)
{
	TimestampTz since = oldest_unconfirmed_at();

	if (since == 0 || broker_blocked(conn))
		return -1;
	since = Max(since, broker_unblocked_at(conn));
	return TimestampDifferenceMilliseconds(
		GetCurrentTimestamp(), TimestampTzPlusMilliseconds(since, evrep_confirm_timeout));
}

/* True (and the connection given up) when a confirm is overdue. */
static bool
confirms_overdue(void)
{
	if (confirm_wait_left_ms() != 0)
		return false;
	broker_give_up(conn, psprintf("%d messages not confirmed within %d ms (evrep.confirm_timeout); "
								  "sending them again through the next node",
								  broker_unconfirmed(conn), evrep_confirm_timeout));
	return true;
}

/* Deletes the rows of the batches the broker has confirmed, in one go, once due. */
static void
retire_confirmed(void)
{
	uint64 settled = broker_settled_upto(conn);
	int events = 0;

	if (in_flight == NIL || retire_wait_ms() != 0)
		return;
	settled_since = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	worker_async_commit();
	PushActiveSnapshot(GetTransactionSnapshot());
	while (in_flight != NIL && ((InFlight *) linitial(in_flight))->last_tag <= settled)
	{
		InFlight *f = linitial(in_flight);

		outbox_remove_batch(f->batch);
		events += f->batch->nevents;
		in_flight_events -= f->batch->weight;
		MemoryContextDelete(f->cxt);
		in_flight = list_delete_first(in_flight);
		pfree(f);
	}
	outbox_rotate();
	PopActiveSnapshot();
	evrep_crash_point("confirming");
	worker_commit();
	pgstat_report_stat(false);
	broker_backoff_reset(&backoff);
	evrep_worker_report(EVREP_PUBLISHER, true, events, NULL);
}

/* Publishes every message of the batch, without waiting for confirms. */
static bool
send_batch(OutboxBatch *batch, MemoryContext cxt)
{
	ListCell *lc;
	InFlight *f;
	MemoryContext old;

	pgstat_report_activity(STATE_RUNNING, psprintf("publishing %d events in %d messages",
												   batch->nevents, list_length(batch->messages)));
	foreach (lc, batch->messages)
	{
		OutboxMessage *m = lfirst(lc);

		if (m->large_id != 0 && !parts_send(conn, m))
			return false;
		if (broker_publish(conn, m->routing_key, m->body, m->body_len, m->message_id) != BROKER_OK)
			return false;
	}
	evrep_crash_point("sent");
	old = MemoryContextSwitchTo(TopMemoryContext);
	f = palloc(sizeof(InFlight));
	f->cxt = cxt;
	f->batch = batch;
	f->last_tag = broker_last_tag(conn);
	f->sent_at = GetCurrentTimestamp();
	in_flight = lappend(in_flight, f);
	MemoryContextSwitchTo(old);
	in_flight_events += batch->weight;
	return true;
}

/*
 * Whether to number the next batch now.  Earlier batches may still await
 * their confirms, up to a bound on what a reconnect would send again.
 *
 * Without a backlog, a batch is claimed only while fewer than
 * evrep.publish_window messages await their confirms; by default, once
 * everything sent has been confirmed (Nagle's rule): the events committed
 * meanwhile wait one confirm and then go together.  Claiming at every
 * writer's commit instead made one transaction, one WAL flush and one
 * message per few events: under 8 writers the publisher's flushes queued
 * with theirs on the WAL write lock, and RabbitMQ spent 1.7 times the CPU
 * per event.  With a backlog (a full batch, or a copy's chunks) batches
 * are big anyway and are pipelined.
 */
static bool
may_claim(bool more_waiting)
{
	if (broker_blocked(conn) || in_flight_events >= 4 * evrep_batch_size)
		return false;
	return more_waiting || evrep_publish_window == 0 ||
		   broker_unconfirmed(conn) < evrep_publish_window;
}

/*
 * Waits for confirms, or a writer's wake-up if may_claim would let its
 * rows go.  Otherwise the latch is left set for after the confirms: a
 * writer's SetLatch on a set latch costs nothing, where each wake-up cost
 * the publisher a turn; interrupts, which set the latch too, are then seen
 * at the next confirm or within CONFIRM_POLL_MS.  False when the
 * connection must go: it failed, the broker nacked, or the oldest batch
 * has waited too long for a broker that is not blocking us.
 */
static bool
await_confirms(void)
{
	long left;
	BrokerStatus st;

	if (confirms_overdue())
		return false;
	/* wake up when the oldest confirm is due, to give up on the node then */
	left = confirm_wait_left_ms();
	pgstat_report_activity(STATE_IDLE, NULL);
	if (may_claim(false))
		st = broker_wait_settle(conn, left >= 0 ? Min(1000, left) : 1000, true);
	else
		st = broker_wait_settle(conn, left >= 0 ? Min(CONFIRM_POLL_MS, left) : CONFIRM_POLL_MS,
								false);
	return st == BROKER_OK || st == BROKER_LATCH || st == BROKER_TIMEOUT;
}

/*
 * An outbox that grows while the broker is away must be seen before it
 * fills the disk: one WARNING when the depth passes evrep.outbox_warn_depth,
 * the next only after it fell below half of it.  Writers are never refused.
 */
static void
watch_outbox_depth(void)
{
	static TimestampTz checked_at = 0;
	static bool warned = false;
	TimestampTz now = GetCurrentTimestamp();
	int64 depth = 0;

	if (evrep_outbox_warn_depth <= 0 ||
		!TimestampDifferenceExceeds(checked_at, now, DEPTH_CHECK_MS))
		return;
	checked_at = now;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (worker_extension_ready())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		depth = outbox_depth_estimate();
		PopActiveSnapshot();
	}
	worker_commit();

	if (!warned && depth >= evrep_outbox_warn_depth)
	{
		ereport(
			WARNING,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("evrep outbox holds about " INT64_FORMAT
					" events, more than evrep.outbox_warn_depth (%d)",
					depth, evrep_outbox_warn_depth),
			 errdetail(conn == NULL ? "The publisher is not connected to the broker: %s"
									: "The publisher is connected but does not keep up.%s",
					   conn == NULL ? broker_last_error() : ""),
			 errhint(
				 "Writers are not refused and nothing is dropped; evrep.status shows the depth and age per table.")));
		warned = true;
	}
	else if (warned && depth < evrep_outbox_warn_depth / 2)
	{
		ereport(LOG, (errmsg("evrep outbox is down to about " INT64_FORMAT " events", depth)));
		warned = false;
	}
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
	worker_init(EVREP_PUBLISHER, "evrep publisher");
	before_shmem_exit(close_at_exit, (Datum) 0);

	for (;;)
	{
		OutboxBatch *batch = NULL;
		MemoryContext cxt;
		bool ready = true;
		bool copy_due;

		worker_begin_turn();
		worker_check_interrupts();
		worker_check_history();
		watch_outbox_depth();
		if (!ensure_connected())
			continue;
		if (broker_poll(conn) != BROKER_OK || confirms_overdue())
		{
			drop_connection();
			continue;
		}
		retire_confirmed();

		/* a copy's chunks are a backlog of their own */
		copy_due = pg_atomic_read_u32(&evrep_shared->copy_due) != 0;
		if (may_claim(backlog || copy_due))
		{
			/*
			 * Wake-ups left set while confirms were awaited are for rows
			 * this claim takes; a writer committing after its snapshot
			 * sets the latch again.
			 */
			ResetLatch(MyLatch);
			worker_check_interrupts();
			cxt = AllocSetContextCreate(TopMemoryContext, "evrep publisher batch",
										ALLOCSET_DEFAULT_SIZES);
			batch = claim_batch(cxt, &ready);
			backlog = batch != NULL && batch->more;
			if (batch == NULL)
				MemoryContextDelete(cxt);
			else if (!send_batch(batch, cxt))
			{
				MemoryContextDelete(cxt);
				drop_connection();
				continue;
			}
		}
		copy_due = pg_atomic_read_u32(&evrep_shared->copy_due) != 0;

		/*
		 * A batch that took every visible row leaves nothing to claim: a
		 * writer committing after its snapshot sets the latch, which was
		 * reset before it.
		 */
		if ((batch != NULL && batch->more) ||
			(ready && copy_due && may_claim(true) && copy_wait_ms() == 0))
			continue; /* more may be waiting: claim again at once */
		if (!ready)
			idle(NO_EXTENSION_WAIT_MS);
		else if (broker_unconfirmed(conn) > 0)
		{
			if (!await_confirms())
				drop_connection();
		}
		else
		{
			long wait =
				copy_due ? Max(1, Min(evrep_poll_interval, copy_wait_ms())) : evrep_poll_interval;
			long retire = retire_wait_ms();

			idle(retire >= 0 ? Min(wait, Max(retire, 1)) : wait);
		}
	}
}
