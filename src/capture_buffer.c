/*
 * capture_buffer.c
 *		Gathers the events a statement captures into one outbox row.
 *
 * One outbox row (heap tuple, index entry, WAL record) per changed row cost
 * a bulk INSERT as much again as the INSERT itself.  So the capture keeps
 * the events of one publication in memory and writes them as one row (op
 * m: a JSON array of [op, row] pairs, outbox.events of them) at the end of
 * the statement (ExecutorFinish, ProcessUtility), before an event of
 * another publication or one that is written on its own (large, skip,
 * truncate, an update with unchanged values), once MAX_EVENTS or MAX_BYTES
 * are gathered, and before the transaction commits or prepares.  A lone
 * event is written as a row of its own, as before.
 *
 * Order: a row takes its id when it is written, before its transaction
 * commits, so two transactions that change one key are in id order still:
 * the second waited for the first's commit before it captured anything.
 *
 * Subtransactions: an event must die with the subtransaction that
 * captured it, and only with that one.  Each event keeps the nesting level
 * it was captured at: a subtransaction that aborts drops the events of its
 * level and deeper, one that commits hands them to its parent.  Events
 * written inside a subtransaction opened after they were captured (a flush
 * there writes the whole buffer) are kept aside too, until that
 * subtransaction ends: if it aborts, their row is gone, and they are
 * gathered again.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/executor.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "capture.h"

/* A row holds at most this many events, or about this many bytes of them. */
#define MAX_EVENTS 1000
#define MAX_BYTES (256 * 1024)

typedef struct Event
{
	char op;
	int level; /* the nesting level that captured it */
	char *row; /* JSON */
	int len;
} Event;

/* Events written in a row at a deeper level than their own. */
typedef struct Aside
{
	int level; /* the row's */
	int32 pub_id;
	List *events;
} Aside;

static MemoryContext buffer_cxt = NULL;
static int32 buffer_pub = 0;
static List *buffer = NIL; /* of Event *, in capture order */
static Size buffer_bytes = 0;
static List *aside = NIL; /* of Aside *, oldest first */

static ExecutorFinish_hook_type prev_executor_finish = NULL;

static void
free_events(List *events)
{
	ListCell *lc;

	foreach (lc, events)
	{
		Event *e = lfirst(lc);

		pfree(e->row);
		pfree(e);
	}
	list_free(events);
}

/* The buffered events as one outbox row, written now. */
void
capture_buffer_flush(void)
{
	int level = GetCurrentTransactionNestLevel();
	int n = list_length(buffer);
	List *lower = NIL;
	List *written = NIL;
	bool pushed = false;
	MemoryContext old;
	ListCell *lc;

	if (n == 0)
		return;
	/* at commit no statement's snapshot is active any more */
	if (!ActiveSnapshotSet())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		pushed = true;
	}
	if (n == 1)
	{
		Event *e = linitial(buffer);

		capture_outbox_row(buffer_pub, e->op,
						   PointerGetDatum(cstring_to_text_with_len(e->row, e->len)), 1);
	}
	else
	{
		StringInfoData buf;

		initStringInfo(&buf);
		enlargeStringInfo(&buf, buffer_bytes + 6 * n + 2);
		appendStringInfoChar(&buf, '[');
		foreach (lc, buffer)
		{
			Event *e = lfirst(lc);

			if (foreach_current_index(lc) > 0)
				appendStringInfoChar(&buf, ',');
			appendStringInfoString(&buf, "[\"");
			appendStringInfoChar(&buf, e->op);
			appendStringInfoString(&buf, "\",");
			appendBinaryStringInfo(&buf, e->row, e->len);
			appendStringInfoChar(&buf, ']');
		}
		appendStringInfoChar(&buf, ']');
		capture_outbox_row(buffer_pub, EVREP_OP_MANY,
						   PointerGetDatum(cstring_to_text_with_len(buf.data, buf.len)), n);
		pfree(buf.data);
	}
	if (pushed)
		PopActiveSnapshot();

	old = MemoryContextSwitchTo(buffer_cxt);
	foreach (lc, buffer)
	{
		Event *e = lfirst(lc);

		if (e->level < level)
			lower = lappend(lower, e);
		else
			written = lappend(written, e);
	}
	if (lower != NIL)
	{
		Aside *a = palloc(sizeof(Aside));

		a->level = level;
		a->pub_id = buffer_pub;
		a->events = lower;
		aside = lappend(aside, a);
	}
	free_events(written);
	list_free(buffer);
	buffer = NIL;
	buffer_bytes = 0;
	MemoryContextSwitchTo(old);
}

void
capture_buffer_add(int32 pub_id, char op, Datum row)
{
	text *t = DatumGetTextPP(row);
	int len = VARSIZE_ANY_EXHDR(t);
	MemoryContext old;
	Event *e;

	if (buffer != NIL && (pub_id != buffer_pub || list_length(buffer) >= MAX_EVENTS ||
						  buffer_bytes + len > MAX_BYTES))
		capture_buffer_flush();
	if (buffer_cxt == NULL)
		buffer_cxt =
			AllocSetContextCreate(TopMemoryContext, "evrep capture buffer", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(buffer_cxt);
	e = palloc(sizeof(Event));
	e->op = op;
	e->level = GetCurrentTransactionNestLevel();
	e->row = pnstrdup(VARDATA_ANY(t), len);
	e->len = len;
	buffer = lappend(buffer, e);
	MemoryContextSwitchTo(old);
	buffer_pub = pub_id;
	buffer_bytes += len;
}

static void
forget_all(void)
{
	buffer = NIL;
	aside = NIL;
	buffer_bytes = 0;
	if (buffer_cxt != NULL)
		MemoryContextReset(buffer_cxt);
}

/*
 * A subtransaction of level `level` aborts: its events go, and those its
 * flushes wrote for lower levels are gathered again (nothing lower can
 * have been captured after such a flush, so they come first).
 */
static void
subxact_aborted(int level)
{
	List *again = NIL;
	List *kept = NIL;
	List *gone = NIL;
	int32 pub = buffer_pub;
	ListCell *lc;

	foreach (lc, aside)
	{
		Aside *a = lfirst(lc);
		ListCell *ec;

		if (a->level < level)
		{
			kept = lappend(kept, a);
			continue;
		}
		foreach (ec, a->events)
		{
			Event *e = lfirst(ec);

			if (e->level < level)
				again = lappend(again, e);
			else
				gone = lappend(gone, e);
		}
		list_free(a->events);
		pub = a->pub_id;
		pfree(a);
	}
	list_free(aside);
	aside = kept;
	foreach (lc, buffer)
	{
		Event *e = lfirst(lc);

		if (e->level >= level)
			gone = lappend(gone, e);
		else
			again = lappend(again, e);
	}
	free_events(gone);
	list_free(buffer);
	buffer = again;
	buffer_pub = pub;
	buffer_bytes = 0;
	foreach (lc, buffer)
		buffer_bytes += ((Event *) lfirst(lc))->len;
}

/* A subtransaction commits: what it captured or wrote is its parent's now. */
static void
subxact_committed(int level)
{
	ListCell *lc;

	foreach (lc, buffer)
	{
		Event *e = lfirst(lc);

		if (e->level >= level)
			e->level = level - 1;
	}
	foreach (lc, aside)
	{
		Aside *a = lfirst(lc);
		ListCell *ec;

		if (a->level < level)
			continue;
		a->level = level - 1;
		/* written at their own level now: they live and die with it */
		foreach (ec, a->events)
		{
			Event *e = lfirst(ec);

			if (e->level >= a->level)
			{
				a->events = foreach_delete_current(a->events, ec);
				pfree(e->row);
				pfree(e);
			}
		}
		if (a->events == NIL)
			aside = foreach_delete_current(aside, lc);
	}
}

static void
capture_buffer_xact(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			capture_buffer_flush();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			forget_all();
			break;
		default:
			break;
	}
}

static void
capture_buffer_subxact(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid,
					   void *arg)
{
	MemoryContext old;

	if (buffer == NIL && aside == NIL)
		return;
	old = MemoryContextSwitchTo(buffer_cxt);
	if (event == SUBXACT_EVENT_ABORT_SUB)
		subxact_aborted(GetCurrentTransactionNestLevel());
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		subxact_committed(GetCurrentTransactionNestLevel());
	MemoryContextSwitchTo(old);
}

/* A statement's row triggers fire inside ExecutorFinish: write what they gathered. */
static void
capture_executor_finish(QueryDesc *queryDesc)
{
	if (prev_executor_finish)
		prev_executor_finish(queryDesc);
	else
		standard_ExecutorFinish(queryDesc);
	capture_buffer_flush();
}

void
capture_buffer_init(void)
{
	prev_executor_finish = ExecutorFinish_hook;
	ExecutorFinish_hook = capture_executor_finish;
	RegisterXactCallback(capture_buffer_xact, NULL);
	RegisterSubXactCallback(capture_buffer_subxact, NULL);
}
