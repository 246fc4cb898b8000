/*
 * apply.c
 *		Apply side: turn wire messages into local row changes, exactly once
 *		in effect, parking what cannot be applied.
 *
 * A message's events not applied before (progress.c) are applied in one
 * subtransaction, as the subscription's owner (apply_target.c).  Only if
 * that fails are they redone one event per subtransaction, to isolate and
 * park (deadletter.c) the bad ones; the progress claims stand either way,
 * in the transaction that applied or parked the events.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "apply.h"
#include "apply_target.h"
#include "copy_receive.h"
#include "copy_send.h"
#include "deadletter.h"
#include "evrep.h"
#include "incarnation.h"
#include "parts_receive.h"
#include "progress.h"
#include "spi_plan.h"
#include "spi_util.h"
#include "wire.h"

/* One message being applied. */
typedef struct ApplyRun
{
	const ApplyDelivery *delivery;
	const char *body;
	int len;
	WireMessage *msg; /* NULL until parsed */
	bool subscribed;
	Oid relid; /* of the subscribed table */
	Oid owner; /* the apply runs as this role */
	StreamProgress progress;
	int *todo; /* indexes of the events to apply */
	int ntodo;
	int from; /* todo[from, to) for apply_todo */
	int to;
	int64 seq;			/* event being applied, for the error context */
	int64 copy_request; /* this node's copy request for the table; -1: not read */
	HistoryVerdict verdict;
} ApplyRun;

static SPIPlanPtr subscription_plan = NULL;
static SPIPlanPtr sender_plan = NULL;

/* Every error and log line of an apply names what was being applied. */
static void
apply_error_callback(void *arg)
{
	ApplyRun *run = arg;

	if (run->msg == NULL)
		errcontext("evrep apply of a message of %d bytes", run->len);
	else if (run->seq > 0)
		errcontext("evrep apply of origin \"%s\", table \"%s\".\"%s\", seq " INT64_FORMAT,
				   run->msg->origin, run->msg->schema, run->msg->table, run->seq);
	else
		errcontext("evrep apply of origin \"%s\", table \"%s\".\"%s\"", run->msg->origin,
				   run->msg->schema, run->msg->table);
}

/*
 * What an error says about the message that raised it.  An ERROR class is
 * not a verdict: "stack depth limit exceeded" or "out of memory" look
 * transient but repeat for ever for the same message, so they are retried
 * a bounded number of times and then parked with the message.
 */
typedef enum ApplyErrorKind
{
	APPLY_ERROR_EVENT,	  /* the event itself: park it now */
	APPLY_ERROR_RESOURCE, /* maybe the event: retry, park on the last attempt */
	APPLY_ERROR_TRANSIENT /* not the event: retry without counting */
} ApplyErrorKind;

bool
apply_error_is_transient(int sqlerrcode)
{
	switch (sqlerrcode)
	{
		case ERRCODE_T_R_SERIALIZATION_FAILURE:
		case ERRCODE_T_R_DEADLOCK_DETECTED:
		case ERRCODE_LOCK_NOT_AVAILABLE:
		case ERRCODE_DISK_FULL:
		case ERRCODE_IO_ERROR:
		case ERRCODE_ADMIN_SHUTDOWN:
		case ERRCODE_CRASH_SHUTDOWN:
		case ERRCODE_CANNOT_CONNECT_NOW:
		case ERRCODE_DATABASE_DROPPED:
			return true;
		default:
			return false;
	}
}

static ApplyErrorKind
classify_error(int sqlerrcode)
{
	int category = ERRCODE_TO_CATEGORY(sqlerrcode);

	if (apply_error_is_transient(sqlerrcode))
		return APPLY_ERROR_TRANSIENT;
	if (category == ERRCODE_INSUFFICIENT_RESOURCES || category == ERRCODE_PROGRAM_LIMIT_EXCEEDED ||
		category == ERRCODE_OPERATOR_INTERVENTION || category == ERRCODE_SYSTEM_ERROR ||
		category == ERRCODE_INTERNAL_ERROR || category == ERRCODE_TRANSACTION_ROLLBACK)
		return APPLY_ERROR_RESOURCE;
	return APPLY_ERROR_EVENT;
}

/* Must the caller's transaction end and the message be tried again? */
static bool
must_retry(ApplyRun *run, int sqlerrcode)
{
	switch (classify_error(sqlerrcode))
	{
		case APPLY_ERROR_TRANSIENT:
			return true;
		case APPLY_ERROR_RESOURCE:
			return !run->delivery->last_attempt;
		default:
			return false;
	}
}

/*
 * Runs fn in a subtransaction.  Returns NULL on success; on an error that
 * belongs to the message, rolls the subtransaction back and returns the
 * error.  A transient error is raised again for the caller to retry.
 */
static ErrorData *
try_subxact(void (*fn)(ApplyRun *), ApplyRun *run)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(run);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		if (must_retry(run, edata->sqlerrcode))
			ReThrowError(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return edata;
}

/* Reads the subscription of the message's table; with fresh, in a new snapshot. */
static bool
read_subscription(ApplyRun *run, bool fresh)
{
	Oid argtypes[2] = {TEXTOID, TEXTOID};
	Datum values[2];

	values[0] = CStringGetTextDatum(run->msg->schema);
	values[1] = CStringGetTextDatum(run->msg->table);
	return spi_check(SPI_execute_plan(spi_kept_plan(&subscription_plan,
													"SELECT relid, owner FROM evrep.subscription"
													" WHERE schema_name = $1 AND table_name = $2",
													2, argtypes),
									  values, NULL, !fresh, 1),
					 SPI_OK_SELECT, ANY_ROWS, "could not read evrep subscriptions") == 1;
}

/*
 * The lock evrep._subscribe_lock() takes for a published table, shared: the
 * same keys, pg_advisory_xact_lock(1702261360, hashtext(schema || chr(1) ||
 * table)).  It is what a subscription into a table of another name holds.
 */
static void
wait_for_subscribe_lock(const char *schema, const char *table)
{
	char *key = psprintf("%s\x01%s", schema, table);
	LOCKTAG tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 1702261360,
						 DatumGetUInt32(hash_any((unsigned char *) key, strlen(key))), 2);
	(void) LockAcquire(&tag, ShareLock, false, false);
	pfree(key);
}

/*
 * evrep_subscribe(copy_data => false) has the queue bound before its
 * transaction commits, and holds a SHARE lock on the table (and, on a 1.1
 * catalog, an advisory lock on the published name) until then: an event
 * that finds no subscription waits for these locks, and looks again,
 * rather than being parked as not subscribed a moment too early.
 */
static bool
wait_for_subscriber(ApplyRun *run)
{
	Oid relid;

	if (history_catalog())
		wait_for_subscribe_lock(run->msg->schema, run->msg->table);
	relid = RangeVarGetRelid(makeRangeVar(run->msg->schema, run->msg->table, -1), NoLock, true);

	/* a message naming a catalog gets no lock on it */
	if (!OidIsValid(relid) || IsCatalogRelationOid(relid))
		return false;
	LockRelationOid(relid, RowExclusiveLock);
	return read_subscription(run, true);
}

static void
lookup_subscription(ApplyRun *run)
{
	bool isnull;

	run->subscribed = read_subscription(run, false) || wait_for_subscriber(run);
	if (!run->subscribed)
		return;
	run->relid =
		DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	run->owner =
		DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
}

/*
 * A large event, its values put together from their parts (evrep's
 * tables, read as the role the apply started as: user, sec), applied as
 * the owner.
 */
static void
apply_large(ApplyRun *run, ApplyTarget *target, const WireEvent *ev, Oid user, int sec)
{
	Oid owner;
	int owner_sec;
	PartsValue *values;

	GetUserIdAndSecContext(&owner, &owner_sec);
	SetUserIdAndSecContext(user, sec);
	values = parts_collect(run->msg, ev);
	SetUserIdAndSecContext(owner, owner_sec);
	apply_target_large(target, ev, values);
	SetUserIdAndSecContext(user, sec);
	parts_forget(run->msg, ev);
	SetUserIdAndSecContext(owner, owner_sec);
	for (int i = 0; i < ev->large->nvalues; i++)
		pfree(values[i].bytes);
	pfree(values);
}

/*
 * Applies events todo[from, to) as the subscription's owner, with the
 * restrictions of a security-restricted operation.  An error leaves the
 * user switch to the subtransaction's abort, which restores it.
 */
static void
apply_todo(ApplyRun *run)
{
	ApplyTarget *target;
	WireEvent **evs;
	Oid save_userid;
	int save_sec;

	if (!run->subscribed)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
						errmsg("table \"%s\".\"%s\" is not subscribed on this node",
							   run->msg->schema, run->msg->table),
						errhint("Subscribe with evrep_subscribe(), then replay the dead letter.")));
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(run->owner,
						   save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	target = apply_target_get(run->relid);
	(void) apply_target_take_unknown(target); /* left by a failed try */
	evs = palloc(sizeof(WireEvent *) * Max(run->to - run->from, 1));
	for (int i = run->from; i < run->to; i++)
		evs[i - run->from] = &run->msg->events[run->todo[i]];
	for (int i = 0; i < run->to - run->from;)
	{
		/* a run of upserts is one statement; a failure is isolated one by one */
		int done = apply_target_run(target, evs + i, run->to - run->from - i);

		if (done > 0)
		{
			i += done;
			continue;
		}
		run->seq = evs[i]->seq;
		if (evs[i]->op == EVREP_OP_LARGE)
			apply_large(run, target, evs[i], save_userid, save_sec);
		else
			apply_target_event(target, evs[i]);
		run->seq = 0;
		i++;
	}
	pfree(evs);
	run->progress.unknown_columns += apply_target_take_unknown(target);
	SetUserIdAndSecContext(save_userid, save_sec);
	run->seq = 0;
}

static void
parse_message(ApplyRun *run)
{
	run->msg = wire_parse(run->body, run->len);
}

/* Every event of the message, without looking at progress (a replay). */
static void
take_all_events(ApplyRun *run)
{
	run->ntodo = run->msg->nevents;
	run->todo = palloc(sizeof(int) * Max(run->ntodo, 1));
	for (int i = 0; i < run->ntodo; i++)
		run->todo[i] = i;
}

/*
 * A chunk of a copy is applied only by the node that asked for it, and
 * only for its current request; for everyone else it just takes its
 * number in the stream.
 */
static bool
copy_is_ours(ApplyRun *run, const WireCopy *copy)
{
	if (strcmp(copy->target, evrep_node_name) != 0)
		return false;
	if (run->copy_request < 0)
		run->copy_request = copy_current_request(run->msg->schema, run->msg->table);
	return copy->request_id == run->copy_request;
}

/*
 * The origin's history went back: the rows this node applied from its lost
 * part may be gone or different there, and only a copy from the origin,
 * ordered in the stream like any chunk, can say which.  evrep.repair =
 * warn leaves that to an operator.
 */
static void
repair_stream(ApplyRun *run, const char *why)
{
	StreamProgress *p = &run->progress;
	WireMessage *msg = run->msg;
	Datum values[2];

	p->repair_request = 0;
	if (!run->subscribed)
	{
		p->repair = psprintf("%s; not subscribed here", why);
		return;
	}
	if (evrep_repair == EVREP_REPAIR_WARN)
	{
		p->repair = psprintf("%s; not repaired (evrep.repair = warn)", why);
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evrep: table \"%s\".\"%s\" may hold rows origin \"%s\" no longer has",
						msg->schema, msg->table, msg->origin),
				 errdetail("%s.", why),
				 errhint("Run evrep_resync() on the table, or set evrep.repair = resync.")));
		return;
	}
	values[0] = CStringGetTextDatum(msg->schema);
	values[1] = CStringGetTextDatum(msg->table);
	spi_check(SPI_execute_with_args("SELECT evrep._start_sync($1, $2, 'requested')", 2,
									(Oid[]){TEXTOID, TEXTOID}, values, NULL, false, 0),
			  SPI_OK_SELECT, ANY_ROWS, "could not request an evrep resync");
	/* not read-only: it must see the request just made */
	spi_check(SPI_execute_with_args(
				  "SELECT request_id FROM evrep.sync WHERE schema_name = $1 AND table_name = $2", 2,
				  (Oid[]){TEXTOID, TEXTOID}, values, NULL, false, 1),
			  SPI_OK_SELECT, 1, "could not read the evrep resync request");
	run->copy_request =
		DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &(bool){0}));
	p->repair_request = run->copy_request;
	p->repair = psprintf("%s; copying the table again", why);
	ereport(WARNING, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					  errmsg("evrep: copying table \"%s\".\"%s\" again from origin \"%s\"",
							 msg->schema, msg->table, msg->origin),
					  errdetail("%s.", why)));
}

/*
 * For WARNINGs said once per worker and key, not once per message: false
 * when key is in *seen, else adds it.  Keys join names with \x01, which no
 * name the catalog or the broker lets through contains.
 */
static bool
first_time(List **seen, const char *key)
{
	ListCell *lc;
	MemoryContext old;

	foreach (lc, *seen)
	{
		if (strcmp(lfirst(lc), key) == 0)
			return false;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	*seen = lappend(*seen, pstrdup(key));
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * Each message of an older history that still speaks is parked: say it in
 * the log as a WARNING once per origin and history, where an operator looks.
 */
static void
warn_two_histories_once(const char *origin, int64 old)
{
	static List *warned = NIL;

	if (!first_time(&warned, psprintf("%s\x01" INT64_FORMAT, origin, old)))
		return;
	ereport(
		WARNING,
		(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		 errmsg(
			 "evrep origin \"%s\" speaks from two histories: its messages of history " INT64_FORMAT
			 " are parked",
			 origin, old),
		 errhint("Two servers run with evrep.node_name = '%s' (a copy started beside "
				 "the original?): stop the one that should not publish.",
				 origin)));
}

/* A newer history of the stream: from its fork on, numbers name other events. */
static void
follow_history(ApplyRun *run, HistoryVerdict verdict)
{
	const WireIncarnation *inc = &run->msg->incarnation;
	StreamProgress *p = &run->progress;

	if (verdict == HISTORY_OLD_ALIVE)
	{
		warn_two_histories_once(run->msg->origin, inc->id);
		ereport(
			ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("evrep origin \"%s\" speaks from two histories", run->msg->origin),
			 errdetail("A message of its history " INT64_FORMAT
					   " arrived after its history " INT64_FORMAT
					   " began; the history before that one went up to number " INT64_FORMAT ".",
					   inc->id, p->incarnation, p->prev_last_seq),
			 errhint(
				 "Two servers run with evrep.node_name = '%s' (a copy started beside the original?): "
				 "stop the one that should not publish. Its messages are parked, never merged.",
				 run->msg->origin)));
	}
	if (verdict == HISTORY_DIVERGED)
		repair_stream(run, psprintf("origin started a new history (%s) at number " INT64_FORMAT
									", after this node had applied numbers up to " INT64_FORMAT,
									inc->reason ? inc->reason : "reason not given", inc->since,
									p->prev_last_seq));
}

/*
 * Numbers missing long after later ones arrived were not lost in transit
 * (a resend would have brought them): this node acknowledged them and then
 * lost them, restored from a file-system snapshot, say.  Only the origin
 * can fill such a hole, with a copy.
 */
static void
repair_hole(ApplyRun *run)
{
	int64 lo, hi;

	if (evrep_gap_repair_after <= 0 || !run->subscribed ||
		!progress_hole(&run->progress, evrep_gap_repair_after * 1000, &lo, &hi))
		return;
	if (run->copy_request < 0)
		run->copy_request = copy_current_request(run->msg->schema, run->msg->table);
	if (run->copy_request != 0)
		return; /* a copy is on its way: its first chunk closes the hole */
	repair_stream(run, psprintf("numbers " INT64_FORMAT " to " INT64_FORMAT
								" have not arrived for %d s while later ones did",
								lo, hi, evrep_gap_repair_after));
}

/*
 * An event applied before.  The parts of a large one came again with it
 * (a resend): they go as they did the first time.
 */
static void
skip_duplicate(ApplyRun *run, const WireEvent *ev)
{
	run->progress.skipped++;
	if (ev->op == EVREP_OP_LARGE)
		parts_forget(run->msg, ev);
}

/* The events not applied before, claimed in the stream's progress. */
static void
claim_new_events(ApplyRun *run)
{
	WireMessage *msg = run->msg;
	int64 old_last_seq = run->progress.last_seq;
	XLogRecPtr old_lsn = run->progress.last_lsn;
	bool duplicates = false;

	run->todo = palloc(sizeof(int) * Max(msg->nevents, 1));
	run->ntodo = 0;
	for (int i = 0; i < msg->nevents; i++)
	{
		WireEvent *ev = &msg->events[i];
		bool fresh = progress_claim(&run->progress, ev->seq);

		/* copies count in evrep.sync, not in the stream's counts */
		if (ev->op == 'c')
		{
			if (fresh && copy_is_ours(run, ev->copy))
				run->todo[run->ntodo++] = i;
		}
		else if (fresh)
			run->todo[run->ntodo++] = i;
		else
			skip_duplicate(run, ev);
		duplicates |= !fresh;
	}
	if (progress_went_back(&run->progress, msg, old_last_seq, duplicates))
	{
		run->progress.history_changed = true;
		run->progress.history_reason =
			"went back without a trace (a file-system snapshot restored?)";
		repair_stream(run, psprintf("the origin's WAL position went back: %X/%X after %X/%X",
									LSN_FORMAT_ARGS(msg->lsn), LSN_FORMAT_ARGS(old_lsn)));
	}
	for (int i = msg->nevents - 1; i >= 0; i--)
	{
		if (msg->events[i].commit_ts != 0)
		{
			run->progress.last_commit_ts = msg->events[i].commit_ts;
			break;
		}
	}
}

/*
 * The rows a chunk of a copy left out, too large to send: this node kept
 * what it had for their keys.  Each gets a dead letter naming its key, as
 * a skip event (which replays as it failed: the row is not here).
 */
static void
park_copy_skips(ApplyRun *run, const WireEvent *ev)
{
	ErrorData edata = {0};

	edata.sqlerrcode = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
	edata.message = "the origin left this row out of a copy: it was too large to send";
	edata.hint = "Raise evrep.max_message_bytes on the origin (up to the broker's "
				 "max_message_size) and update the row there again, or resync the table.";
	for (int i = 0; i < ev->copy->nskipped; i++)
	{
		JsonbValue *key = getIthJsonbValueFromContainer(&ev->copy->skipped->root, i);
		WireEvent skip = {0};
		char *text;

		if (key->type != jbvBinary)
			continue;
		text = psprintf("{\"seq\":" INT64_FORMAT ",\"op\":\"skip\",\"skip\":{\"op\":\"copy\","
						"\"key\":%s,\"reason\":\"too large to send\"}}",
						ev->seq, JsonbToCString(NULL, key->val.binary.data, -1));
		skip.event = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
		deadletter_park(run->msg, ev->seq, &edata, wire_single_event(run->msg, &skip), 1);
	}
}

/* Counts an applied event; a chunk of a copy moves its copy on. */
static void
note_applied(ApplyRun *run, const WireEvent *ev)
{
	if (ev->op != 'c')
	{
		run->progress.applied++;
		return;
	}
	/* the copy holds every key's state from here on: older numbers are moot */
	if (ev->copy->after == NULL)
		progress_forget_below(&run->progress, ev->seq);
	if (ev->copy->nskipped > 0)
		park_copy_skips(run, ev);
	copy_chunk_applied(run->msg, ev);
}

/* Slow path: one subtransaction per event; failures are parked. */
static void
apply_one_by_one(ApplyRun *run)
{
	int ntodo = run->ntodo;

	for (int i = 0; i < ntodo; i++)
	{
		WireEvent *ev = &run->msg->events[run->todo[i]];
		ErrorData *edata;

		run->from = i;
		run->to = i + 1;
		edata = try_subxact(apply_todo, run);
		if (edata == NULL)
		{
			note_applied(run, ev);
			continue;
		}
		run->seq = ev->seq;
		deadletter_park(run->msg, ev->seq, edata, wire_single_event(run->msg, ev),
						run->delivery->attempt);
		run->seq = 0;
		run->progress.parked++;
		FreeErrorData(edata);
	}
}

/* Applies the claimed events: all at once, else one by one. */
static void
apply_claimed(ApplyRun *run)
{
	ErrorData *edata = NULL;

	if (run->ntodo == 0)
		return;
	run->from = 0;
	run->to = run->ntodo;
	if (run->subscribed)
		edata = try_subxact(apply_todo, run);
	if (run->subscribed && edata == NULL)
	{
		for (int i = 0; i < run->ntodo; i++)
			note_applied(run, &run->msg->events[run->todo[i]]);
	}
	else
	{
		if (edata)
			FreeErrorData(edata);
		apply_one_by_one(run);
	}
}

/*
 * Rows the apply writes must not be captured again (no echo between
 * nodes), and foreign keys of a replica are not checked, as logical
 * replication does.  The consumer sets this once for its session.
 */
static int
enter_replica_role(void)
{
	int nestlevel = NewGUCNestLevel();

	if (SessionReplicationRole != SESSION_REPLICATION_ROLE_REPLICA)
		(void) set_config_option("session_replication_role", "replica", PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/* Sets up what every apply needs; undone by end_apply. */
static int
begin_apply(void)
{
	int nestlevel = enter_replica_role();

	spi_connect();
	return nestlevel;
}

static void
end_apply(int nestlevel)
{
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
}

static void
push_apply_context(ErrorContextCallback *errcb, ApplyRun *run)
{
	errcb->callback = apply_error_callback;
	errcb->arg = run;
	errcb->previous = error_context_stack;
	error_context_stack = errcb;
}

static void
pop_apply_context(ErrorContextCallback *errcb)
{
	error_context_stack = errcb->previous;
}

/* What would let sender speak for origin; listed: origin has named senders. */
static char *
refusal_hint(const char *origin, const char *sender, bool listed)
{
	char *allow = psprintf("SELECT evrep_allow_sender(%s, %s)", quote_literal_cstr(origin),
						   quote_literal_cstr(sender));

	if (listed)
		return psprintf("Origin \"%s\" is spoken for only by the broker users evrep_allow_sender() "
						"named for it; add this one on this node with %s.",
						origin, allow);
	return psprintf("Run %s on this node, or let origin \"%s\" connect to the broker as user "
					"\"%s\".",
					allow, origin, origin);
}

/*
 * A refused sender is most often a first setup with one broker user for
 * every node: say so once per origin and user as a WARNING, not once per
 * message (each is still parked, and logged there).
 */
static void
warn_refused_once(const char *origin, const char *sender, const char *hint)
{
	static List *warned = NIL;

	if (!first_time(&warned, psprintf("%s\x01%s", origin, sender)))
		return;
	ereport(WARNING,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("evrep parks the events of origin \"%s\" sent by broker user \"%s\"", origin,
					sender),
			 errdetail("evrep.dead_letter keeps every one of them, for evrep_replay() once the "
					   "sender is allowed."),
			 errhint("%s", hint)));
}

/*
 * Only an origin speaks for itself.  RabbitMQ vouches for a message's
 * user_id (it refuses one that differs from the publishing connection's
 * user); evrep.sender lists the broker users that may speak for an origin,
 * and an origin without rows there is spoken for by the broker user of
 * its own name.
 */
static void
check_sender(const ApplyDelivery *delivery, const char *origin)
{
	const char *sender = delivery->sender;
	Oid argtypes[2] = {TEXTOID, TEXTOID};
	Datum values[2];
	bool isnull;
	int64 allowed;
	int64 listed;

	if (delivery->vouched)
		return;
	if (sender == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("evrep message for origin \"%s\" carries no AMQP user_id", origin),
				 errdetail("Only a message whose sender the broker vouches for is applied.")));
	values[0] = CStringGetTextDatum(origin);
	values[1] = CStringGetTextDatum(sender);
	spi_check(
		SPI_execute_plan(spi_kept_plan(&sender_plan,
									   "SELECT count(*) FILTER (WHERE broker_user = $2), count(*)"
									   " FROM evrep.sender WHERE origin = $1",
									   2, argtypes),
						 values, NULL, true, 1),
		SPI_OK_SELECT, 1, "could not read evrep senders");
	allowed =
		DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	listed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (listed > 0 ? allowed == 0 : strcmp(sender, origin) != 0)
	{
		char *hint = refusal_hint(origin, sender, listed > 0);

		warn_refused_once(origin, sender, hint);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("broker user \"%s\" may not speak for evrep origin \"%s\"", sender, origin),
				 errhint("%s", hint)));
	}
}

/*
 * Everything a parsed, authentic message does to its stream and table, its
 * progress loaded (parse_authentic_message).
 */
static void
apply_stream(ApplyRun *run)
{
	if (run->verdict == HISTORY_OLD_DUPLICATE)
	{
		for (int i = 0; i < run->msg->nevents; i++)
			skip_duplicate(run, &run->msg->events[i]);
	}
	else
	{
		follow_history(run, run->verdict);
		claim_new_events(run);
		repair_hole(run);
		apply_claimed(run);
	}
	progress_save(run->msg, &run->progress);
}

/*
 * run->msg stays NULL when the body does not parse.  What makes a whole
 * message unacceptable whatever the attempt is found here, where it is
 * parked at once: a sender that may not speak for the origin, a history
 * the stream left behind that still speaks.
 */
static void
parse_authentic_message(ApplyRun *run)
{
	parse_message(run);
	check_sender(run->delivery, run->msg->origin);
	lookup_subscription(run);
	progress_load(run->msg, &run->progress);
	run->verdict = progress_follow_history(&run->progress, run->msg);
	if (run->verdict == HISTORY_OLD_ALIVE)
		follow_history(run, run->verdict);
}

/* A node asks for a copy of a table this node publishes; it speaks for itself only. */
static void
accept_copy_request(ApplyRun *run)
{
	WireCopyRequest *req = wire_parse_copy_request(run->body, run->len);

	check_sender(run->delivery, req->node);
	copy_accept_request(req);
}

/* A part of a large value, kept until its event comes (parts_receive.c). */
static void
keep_part(ApplyRun *run)
{
	WirePart *part = wire_parse_part(run->body, run->len);

	check_sender(run->delivery, part->origin);
	parts_keep(part);
}

/* A message of events; returns the error that parks it whole, if any. */
static ErrorData *
apply_events(ApplyRun *run)
{
	/* one subtransaction for both: this runs for every message */
	ErrorData *edata = try_subxact(parse_authentic_message, run);

	if (edata != NULL)
		return edata;
	if (!run->delivery->last_attempt)
	{
		apply_stream(run);
		return NULL;
	}

	/*
	 * The last attempt must end.  What fails outside the isolation of the
	 * events (the stream's progress row, say) parks it whole.
	 */
	edata = try_subxact(apply_stream, run);
	if (edata != NULL)
		run->progress.applied = 0;
	return edata;
}

int
apply_message(const ApplyDelivery *delivery)
{
	ApplyRun run = {0};
	ErrorContextCallback errcb;
	ErrorData *edata;
	int nestlevel = begin_apply();

	push_apply_context(&errcb, &run);
	run.delivery = delivery;
	run.body = delivery->body;
	run.len = delivery->len;
	run.copy_request = -1;
	if (delivery->copy_request)
		edata = try_subxact(accept_copy_request, &run);
	else if (wire_is_part(run.body, run.len))
		edata = try_subxact(keep_part, &run);
	else
		edata = apply_events(&run);
	if (edata != NULL)
	{
		/* nothing of it may touch a table or the stream's progress */
		deadletter_park(run.msg, 0, edata, deadletter_raw_body(run.body, run.len),
						delivery->attempt);
		FreeErrorData(edata);
	}
	pop_apply_context(&errcb);
	end_apply(nestlevel);
	return run.progress.applied;
}

PG_FUNCTION_INFO_V1(evrep_apply);
Datum
evrep_apply(PG_FUNCTION_ARGS)
{
	text *message;
	ApplyDelivery delivery = {0};

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("evrep_apply needs a message, not NULL")));
	message = PG_GETARG_TEXT_PP(0);

	delivery.body = VARDATA_ANY(message);
	delivery.len = VARSIZE_ANY_EXHDR(message);
	if (PG_ARGISNULL(1))
		delivery.vouched = true;
	else
		delivery.sender = text_to_cstring(PG_GETARG_TEXT_PP(1));
	delivery.attempt = 1;
	delivery.last_attempt = true;
	PG_RETURN_INT32(apply_message(&delivery));
}

/* A dead letter is applied whole or not at all, without looking at progress. */
static void
replay_message(ApplyRun *run)
{
	parse_message(run);
	lookup_subscription(run);
	take_all_events(run);
	run->from = 0;
	run->to = run->ntodo;
	apply_todo(run);
}

PG_FUNCTION_INFO_V1(evrep_replay);
Datum
evrep_replay(PG_FUNCTION_ARGS)
{
	int64 id = PG_GETARG_INT64(0);
	ApplyRun run = {0};
	ErrorContextCallback errcb;
	ErrorData *edata;
	ApplyDelivery delivery = {0};
	int nestlevel = begin_apply();

	/* the operator who replays vouches for the sender */
	delivery.vouched = true;
	delivery.attempt = 1;
	delivery.last_attempt = true;
	run.delivery = &delivery;
	run.body = deadletter_lock_for_replay(id);
	run.len = strlen(run.body);
	push_apply_context(&errcb, &run);
	edata = try_subxact(replay_message, &run);
	pop_apply_context(&errcb);
	deadletter_record_replay(id, edata);
	end_apply(nestlevel);
	if (edata)
		ereport(WARNING, (errcode(edata->sqlerrcode),
						  errmsg("evrep dead letter " INT64_FORMAT " still cannot be applied: %s",
								 id, edata->message)));
	PG_RETURN_BOOL(edata == NULL);
}
