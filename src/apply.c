/*
 * apply.c
 *		Apply side: turn wire messages into local row changes, exactly once
 *		in effect, parking what cannot be applied.
 *
 * Progress per (origin, schema, table) is the highest number applied plus
 * the gaps below it still expected; it is written in the transaction that
 * applies the rows, so a redelivered message is recognised after any crash.
 * A message is applied in one subtransaction; only if that fails is it
 * redone one event per subtransaction to isolate and park the bad ones.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"

#include "apply.h"
#include "evrep.h"
#include "spi_plan.h"
#include "wire.h"

/* Statements for one subscribed relation, built from the catalog. */
typedef struct ApplyTarget
{
	Oid			relid;			/* hash key */
	bool		valid;
	char	   *qualname;		/* quoted schema.table */
	int			ncols;
	char	  **colnames;		/* insertable columns */
	Bitmapset  *keycols;		/* indexes into colnames */
	SPIPlanPtr	upsert;			/* all columns */
	SPIPlanPtr	delete;
	char	   *subset;			/* columns of subset_upsert: "1" = used */
	SPIPlanPtr	subset_upsert;	/* for events that lack some columns */
} ApplyTarget;

typedef struct Subscription
{
	Oid			relid;
	Oid			owner;
} Subscription;

/* Progress of one stream, as loaded and as it will be saved. */
typedef struct Progress
{
	bool		exists;
	int64		last_seq;
	int			ngaps;			/* pairs in gaps */
	int64	   *gaps;			/* lo, hi, lo, hi ... */
	int64		applied;
	int64		skipped;
	int64		parked;
	TimestampTz last_commit_ts;
} Progress;

static HTAB *targets = NULL;

static SPIPlanPtr subscription_plan = NULL;
static SPIPlanPtr progress_load_plan = NULL;
static SPIPlanPtr progress_save_plan = NULL;
static SPIPlanPtr park_plan = NULL;

/* ---- statements per relation ---- */

static void
invalidate_target(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	ApplyTarget *t;

	hash_seq_init(&status, targets);
	while ((t = hash_seq_search(&status)) != NULL)
	{
		if (relid == InvalidOid || t->relid == relid)
			t->valid = false;
	}
}

static void
free_target(ApplyTarget *t)
{
	if (t->upsert)
		SPI_freeplan(t->upsert);
	if (t->delete)
		SPI_freeplan(t->delete);
	if (t->subset_upsert)
		SPI_freeplan(t->subset_upsert);
	if (t->subset)
		pfree(t->subset);
	t->subset_upsert = NULL;
	t->subset = NULL;
	for (int i = 0; i < t->ncols; i++)
		pfree(t->colnames[i]);
	if (t->colnames)
		pfree(t->colnames);
	if (t->qualname)
		pfree(t->qualname);
	bms_free(t->keycols);
	t->upsert = t->delete = NULL;
	t->colnames = NULL;
	t->qualname = NULL;
	t->keycols = NULL;
	t->ncols = 0;
}

static char *
key_list(ApplyTarget *t)
{
	StringInfoData buf;
	int			i = -1;

	initStringInfo(&buf);
	while ((i = bms_next_member(t->keycols, i)) >= 0)
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "",
						 quote_identifier(t->colnames[i]));
	return buf.data;
}

/*
 * INSERT ... ON CONFLICT (key) DO UPDATE over the given columns, reading the
 * event row with jsonb_populate_record so PostgreSQL's own input functions
 * convert each value to the local column type.
 */
static char *
upsert_sql(ApplyTarget *t, bool *use)
{
	StringInfoData cols,
				sel,
				set;
	bool		any_set = false;

	initStringInfo(&cols);
	initStringInfo(&sel);
	initStringInfo(&set);
	for (int i = 0; i < t->ncols; i++)
	{
		const char *q;

		if (use && !use[i])
			continue;
		q = quote_identifier(t->colnames[i]);
		appendStringInfo(&cols, "%s%s", cols.len ? ", " : "", q);
		appendStringInfo(&sel, "%sr.%s", sel.len ? ", " : "", q);
		if (!bms_is_member(i, t->keycols))
		{
			appendStringInfo(&set, "%s%s = EXCLUDED.%s", any_set ? ", " : "", q, q);
			any_set = true;
		}
	}
	return psprintf("INSERT INTO %s AS t (%s) OVERRIDING SYSTEM VALUE"
					" SELECT %s FROM jsonb_populate_record(NULL::%s, $1) r"
					" ON CONFLICT (%s) DO %s%s",
					t->qualname, cols.data, sel.data, t->qualname,
					key_list(t), any_set ? "UPDATE SET " : "NOTHING",
					any_set ? set.data : "");
}

static char *
delete_sql(ApplyTarget *t)
{
	StringInfoData cond;
	int			i = -1;

	initStringInfo(&cond);
	while ((i = bms_next_member(t->keycols, i)) >= 0)
	{
		const char *q = quote_identifier(t->colnames[i]);

		appendStringInfo(&cond, "%st.%s = r.%s", cond.len ? " AND " : "", q, q);
	}
	return psprintf("DELETE FROM %s AS t USING jsonb_populate_record(NULL::%s, $1) r"
					" WHERE %s", t->qualname, t->qualname, cond.data);
}

/* Reads columns and primary key of the relation from the catalog. */
static void
build_target(ApplyTarget *t)
{
	Relation	rel = table_open(t->relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	Bitmapset  *pk = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	Oid			argtypes[1] = {JSONBOID};

	t->qualname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											 RelationGetRelationName(rel));
	t->colnames = palloc(sizeof(char *) * desc->natts);
	t->ncols = 0;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->attgenerated)
			continue;
		if (bms_is_member(att->attnum - FirstLowInvalidHeapAttributeNumber, pk))
			t->keycols = bms_add_member(t->keycols, t->ncols);
		t->colnames[t->ncols++] = pstrdup(NameStr(att->attname));
	}
	MemoryContextSwitchTo(old);
	table_close(rel, AccessShareLock);

	if (bms_is_empty(t->keycols))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("subscribed table %s has no primary key", t->qualname)));

	t->upsert = SPI_prepare(upsert_sql(t, NULL), 1, argtypes);
	t->delete = SPI_prepare(delete_sql(t), 1, argtypes);
	if (t->upsert == NULL || t->delete == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(t->upsert);
	SPI_keepplan(t->delete);
	t->valid = true;
}

static ApplyTarget *
get_target(Oid relid)
{
	ApplyTarget *t;
	bool		found;

	if (targets == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(ApplyTarget);
		targets = hash_create("evrep apply targets", 32, &ctl, HASH_ELEM | HASH_BLOBS);
		CacheRegisterRelcacheCallback(invalidate_target, (Datum) 0);
	}
	t = hash_search(targets, &relid, HASH_ENTER, &found);
	if (!found)
	{
		memset(t, 0, sizeof(ApplyTarget));
		t->relid = relid;
	}
	if (!t->valid)
	{
		free_target(t);
		build_target(t);
	}
	return t;
}

/* ---- applying one event ---- */

static void
run_plan(SPIPlanPtr plan, Jsonb *row, int expect)
{
	Datum		values[1] = {JsonbPGetDatum(row)};
	int			ret = SPI_execute_plan(plan, values, NULL, false, 0);

	if (ret != expect)
		elog(ERROR, "evrep apply statement failed: %s", SPI_result_code_string(ret));
}

/*
 * The upsert for events that carry only some of the local columns (a
 * subscriber with columns of its own): the plan for the last such column
 * set is kept, since a stream's events all carry the same columns.
 */
static SPIPlanPtr
subset_plan(ApplyTarget *t, bool *use)
{
	char	   *sig = palloc(t->ncols + 1);
	Oid			argtypes[1] = {JSONBOID};
	SPIPlanPtr	plan;

	for (int i = 0; i < t->ncols; i++)
		sig[i] = use[i] ? '1' : '0';
	sig[t->ncols] = '\0';
	if (t->subset != NULL && strcmp(sig, t->subset) == 0)
		return t->subset_upsert;

	plan = SPI_prepare(upsert_sql(t, use), 1, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	if (t->subset_upsert)
		SPI_freeplan(t->subset_upsert);
	if (t->subset)
		pfree(t->subset);
	t->subset_upsert = plan;
	t->subset = MemoryContextStrdup(TopMemoryContext, sig);
	return plan;
}

/*
 * Upsert or delete by key.  Columns are matched by name; a local column the
 * event does not carry keeps its value (or default) instead of becoming NULL.
 */
static void
apply_event(ApplyTarget *t, WireEvent *ev)
{
	bool	   *use = palloc(sizeof(bool) * t->ncols);
	bool		all = true;

	for (int i = 0; i < t->ncols; i++)
	{
		use[i] = getKeyJsonValueFromContainer(&ev->row->root, t->colnames[i],
											  strlen(t->colnames[i]), NULL) != NULL;
		if (!use[i] && bms_is_member(i, t->keycols))
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("event for %s lacks key column \"%s\"",
							t->qualname, t->colnames[i])));
		all &= use[i];
	}

	if (ev->op == 'd')
		run_plan(t->delete, ev->row, SPI_OK_DELETE);
	else if (all)
		run_plan(t->upsert, ev->row, SPI_OK_INSERT);
	else
		run_plan(subset_plan(t, use), ev->row, SPI_OK_INSERT);
	pfree(use);
}

/* ---- progress ---- */

static void
progress_load(WireMessage *msg, Progress *p)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	int			ret;

	memset(p, 0, sizeof(Progress));
	values[0] = CStringGetTextDatum(msg->origin);
	values[1] = CStringGetTextDatum(msg->schema);
	values[2] = CStringGetTextDatum(msg->table);
	ret = SPI_execute_plan(spi_kept_plan(&progress_load_plan,
									 "SELECT last_seq, gaps FROM evrep.progress"
									 " WHERE origin = $1 AND schema_name = $2"
									 " AND table_name = $3 FOR UPDATE",
									 3, argtypes),
						   values, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read evrep progress: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum	   *elems;
		int			n;

		p->exists = true;
		p->last_seq = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 2, &isnull)),
						  INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
						  &elems, NULL, &n);
		p->ngaps = n / 2;
		p->gaps = palloc(sizeof(int64) * (n + 2));
		for (int i = 0; i < n; i++)
			p->gaps[i] = DatumGetInt64(elems[i]);
	}
	else
		p->gaps = palloc(sizeof(int64) * 2);
}

static void
progress_save(WireMessage *msg, Progress *p)
{
	Oid			argtypes[9] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8ARRAYOID,
	INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID};
	Datum		values[9];
	char		nulls[9] = "         ";
	Datum	   *elems = palloc(sizeof(Datum) * (p->ngaps * 2 + 1));
	int			ret;

	for (int i = 0; i < p->ngaps * 2; i++)
		elems[i] = Int64GetDatum(p->gaps[i]);
	values[0] = CStringGetTextDatum(msg->origin);
	values[1] = CStringGetTextDatum(msg->schema);
	values[2] = CStringGetTextDatum(msg->table);
	values[3] = Int64GetDatum(p->last_seq);
	values[4] = PointerGetDatum(construct_array(elems, p->ngaps * 2, INT8OID,
												sizeof(int64), FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	values[5] = Int64GetDatum(p->applied);
	values[6] = Int64GetDatum(p->skipped);
	values[7] = Int64GetDatum(p->parked);
	values[8] = TimestampTzGetDatum(p->last_commit_ts);
	if (p->last_commit_ts == 0)
		nulls[8] = 'n';

	ret = SPI_execute_plan(spi_kept_plan(&progress_save_plan,
									 "INSERT INTO evrep.progress AS g (origin, schema_name,"
									 " table_name, last_seq, gaps, applied, skipped, parked,"
									 " last_commit_ts, last_applied_at)"
									 " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, clock_timestamp())"
									 " ON CONFLICT (origin, schema_name, table_name) DO UPDATE"
									 " SET last_seq = EXCLUDED.last_seq, gaps = EXCLUDED.gaps,"
									 " applied = g.applied + EXCLUDED.applied,"
									 " skipped = g.skipped + EXCLUDED.skipped,"
									 " parked = g.parked + EXCLUDED.parked,"
									 " last_commit_ts = coalesce(EXCLUDED.last_commit_ts, g.last_commit_ts),"
									 " last_applied_at = EXCLUDED.last_applied_at",
									 9, argtypes),
						   values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not save evrep progress: %s", SPI_result_code_string(ret));
}

/*
 * Claims seq for applying.  Returns false for an event already applied (or
 * parked).  A number beyond last_seq + 1 leaves a gap that a late message
 * may still fill; a number inside a gap shrinks it.
 */
static bool
progress_claim(Progress *p, int64 seq)
{
	if (seq > p->last_seq)
	{
		if (seq > p->last_seq + 1)
		{
			p->gaps = repalloc(p->gaps, sizeof(int64) * (p->ngaps * 2 + 2));
			p->gaps[p->ngaps * 2] = p->last_seq + 1;
			p->gaps[p->ngaps * 2 + 1] = seq - 1;
			p->ngaps++;
		}
		p->last_seq = seq;
		return true;
	}
	for (int i = 0; i < p->ngaps; i++)
	{
		int64		lo = p->gaps[2 * i],
					hi = p->gaps[2 * i + 1];

		if (seq < lo || seq > hi)
			continue;
		if (lo == hi)
		{
			/* gap closed: move the last pair into its place */
			p->ngaps--;
			p->gaps[2 * i] = p->gaps[2 * p->ngaps];
			p->gaps[2 * i + 1] = p->gaps[2 * p->ngaps + 1];
		}
		else if (seq == lo)
			p->gaps[2 * i] = lo + 1;
		else if (seq == hi)
			p->gaps[2 * i + 1] = hi - 1;
		else
		{
			p->gaps = repalloc(p->gaps, sizeof(int64) * (p->ngaps * 2 + 2));
			p->gaps[2 * i + 1] = seq - 1;
			p->gaps[p->ngaps * 2] = seq + 1;
			p->gaps[p->ngaps * 2 + 1] = hi;
			p->ngaps++;
		}
		return true;
	}
	return false;
}

static Progress
progress_copy(Progress *p)
{
	Progress	c = *p;

	c.gaps = palloc(sizeof(int64) * (p->ngaps * 2 + 2));
	memcpy(c.gaps, p->gaps, sizeof(int64) * p->ngaps * 2);
	return c;
}

/* ---- dead letters ---- */

static void
park(const char *origin, const char *schema, const char *table, int64 seq,
	 ErrorData *edata, const char *body)
{
	Oid			argtypes[7] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[7];
	char		nulls[7] = "       ";
	int			ret;

	values[0] = origin ? CStringGetTextDatum(origin) : (Datum) 0;
	values[1] = schema ? CStringGetTextDatum(schema) : (Datum) 0;
	values[2] = table ? CStringGetTextDatum(table) : (Datum) 0;
	values[3] = Int64GetDatum(seq);
	values[4] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
	values[5] = CStringGetTextDatum(edata->message ? edata->message : "unknown error");
	values[6] = CStringGetTextDatum(body);
	nulls[0] = origin ? ' ' : 'n';
	nulls[1] = schema ? ' ' : 'n';
	nulls[2] = table ? ' ' : 'n';
	nulls[3] = seq > 0 ? ' ' : 'n';

	ret = SPI_execute_plan(spi_kept_plan(&park_plan,
									 "INSERT INTO evrep.dead_letter (origin, schema_name,"
									 " table_name, seq, sqlstate, error, body)"
									 " VALUES ($1, $2, $3, $4, $5, $6, $7)",
									 7, argtypes),
						   values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not park evrep event: %s", SPI_result_code_string(ret));
	ereport(LOG,
			(errcode(edata->sqlerrcode),
			 errmsg("evrep parked an event it could not apply: %s", edata->message),
			 errdetail("origin %s, table %s.%s, seq " INT64_FORMAT,
					   origin ? origin : "?", schema ? schema : "?",
					   table ? table : "?", seq)));
}

/* ---- error isolation ---- */

/*
 * Errors that say nothing about the event (shutdown, cancel, out of
 * resources, serialization, internal) must abort the caller's transaction
 * so the delivery is retried, never parked.
 */
static bool
error_is_transient(int sqlerrcode)
{
	int			category = ERRCODE_TO_CATEGORY(sqlerrcode);

	return category == ERRCODE_OPERATOR_INTERVENTION ||
		category == ERRCODE_INSUFFICIENT_RESOURCES ||
		category == ERRCODE_PROGRAM_LIMIT_EXCEEDED ||
		category == ERRCODE_SYSTEM_ERROR ||
		category == ERRCODE_INTERNAL_ERROR ||
		category == ERRCODE_TRANSACTION_ROLLBACK ||
		sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
}

/*
 * Runs fn in a subtransaction.  Returns NULL on success; on an event error
 * rolls the subtransaction back and returns the error.
 */
static ErrorData *
try_subxact(void (*fn) (void *), void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		if (error_is_transient(edata->sqlerrcode))
			ReThrowError(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return edata;
}

/* ---- applying a message ---- */

typedef struct ApplyRun
{
	const char *body;
	int			len;
	WireMessage *msg;
	Subscription sub;
	bool		subscribed;
	Progress	progress;
	int			event;			/* index for apply_one */
	bool		dedup;			/* false when replaying a dead letter */
} ApplyRun;

static bool
lookup_subscription(WireMessage *msg, Subscription *sub)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	int			ret;
	bool		isnull;

	values[0] = CStringGetTextDatum(msg->schema);
	values[1] = CStringGetTextDatum(msg->table);
	ret = SPI_execute_plan(spi_kept_plan(&subscription_plan,
									 "SELECT relid, owner FROM evrep.subscription"
									 " WHERE schema_name = $1 AND table_name = $2",
									 2, argtypes),
						   values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read evrep subscriptions: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return false;
	sub->relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &isnull));
	sub->owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 2, &isnull));
	return true;
}

static void
not_subscribed(WireMessage *msg)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_TABLE),
			 errmsg("table \"%s\".\"%s\" is not subscribed on this node",
					msg->schema, msg->table),
			 errhint("Subscribe with evrep_subscribe(), then replay the dead letter.")));
}

/* Applies events [from, to) as the subscription owner. */
static void
apply_range(ApplyRun *run, int from, int to)
{
	ApplyTarget *t;
	Oid			save_userid;
	int			save_sec;

	if (!run->subscribed)
		not_subscribed(run->msg);
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(run->sub.owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	t = get_target(run->sub.relid);
	for (int i = from; i < to; i++)
		apply_event(t, &run->msg->events[i]);
	SetUserIdAndSecContext(save_userid, save_sec);
}

static void
parse_cb(void *arg)
{
	ApplyRun   *run = arg;

	run->msg = wire_parse(run->body, run->len);
}

/* Fast path: every new event of the message in one subtransaction. */
static void
apply_all_cb(void *arg)
{
	ApplyRun   *run = arg;
	WireMessage *msg = run->msg;
	ApplyTarget *t;
	Oid			save_userid;
	int			save_sec;

	if (!run->subscribed)
		not_subscribed(msg);
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(run->sub.owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	t = get_target(run->sub.relid);
	for (int i = 0; i < msg->nevents; i++)
	{
		if (run->dedup && !progress_claim(&run->progress, msg->events[i].seq))
		{
			run->progress.skipped++;
			continue;
		}
		apply_event(t, &msg->events[i]);
		run->progress.applied++;
	}
	SetUserIdAndSecContext(save_userid, save_sec);
}

static void
apply_one_cb(void *arg)
{
	ApplyRun   *run = arg;

	apply_range(run, run->event, run->event + 1);
}

/* Slow path: one subtransaction per event; failures are parked. */
static void
apply_one_by_one(ApplyRun *run)
{
	WireMessage *msg = run->msg;

	for (run->event = 0; run->event < msg->nevents; run->event++)
	{
		WireEvent  *ev = &msg->events[run->event];
		ErrorData  *edata;

		if (run->dedup && !progress_claim(&run->progress, ev->seq))
		{
			run->progress.skipped++;
			continue;
		}
		edata = try_subxact(apply_one_cb, run);
		if (edata == NULL)
			run->progress.applied++;
		else
		{
			park(msg->origin, msg->schema, msg->table, ev->seq, edata,
				 wire_single_event(msg, ev));
			run->progress.parked++;
			FreeErrorData(edata);
		}
	}
}

/* A body we cannot even parse is kept verbatim, or hex when not text. */
static char *
printable_body(const char *body, int len)
{
	if (memchr(body, '\0', len) == NULL &&
		pg_verifymbstr(body, len, true))
		return pnstrdup(body, len);
	else
	{
		char	   *hex = palloc(len * 2 + 3);

		hex[0] = '\\';
		hex[1] = 'x';
		hex_encode(body, len, hex + 2);
		hex[len * 2 + 2] = '\0';
		return hex;
	}
}

static int
set_replica_role(void)
{
	int			nestlevel = NewGUCNestLevel();

	/* the consumer worker sets it once; avoid resetting the plan cache */
	if (SessionReplicationRole != SESSION_REPLICATION_ROLE_REPLICA)
		(void) set_config_option("session_replication_role", "replica",
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
	return nestlevel;
}

int
apply_message(const char *body, int len)
{
	ApplyRun	run = {0};
	ErrorData  *edata;
	int			nestlevel = set_replica_role();
	int			applied = 0;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	run.body = body;
	run.len = len;
	run.dedup = true;

	edata = try_subxact(parse_cb, &run);
	if (edata != NULL)
	{
		park(NULL, NULL, NULL, 0, edata, printable_body(body, len));
		FreeErrorData(edata);
	}
	else
	{
		WireMessage *msg = run.msg;
		Progress	before;

		run.subscribed = lookup_subscription(msg, &run.sub);
		progress_load(msg, &run.progress);
		before = progress_copy(&run.progress);

		edata = run.subscribed ? try_subxact(apply_all_cb, &run) : NULL;
		if (!run.subscribed || edata != NULL)
		{
			if (edata)
				FreeErrorData(edata);
			run.progress = before;
			apply_one_by_one(&run);
		}
		for (int i = msg->nevents - 1; i >= 0; i--)
		{
			if (msg->events[i].commit_ts != 0)
			{
				run.progress.last_commit_ts = msg->events[i].commit_ts;
				break;
			}
		}
		progress_save(msg, &run.progress);
		applied = run.progress.applied;
	}

	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
	return applied;
}

List *
apply_subscription_keys(void)
{
	List	   *keys = NIL;
	MemoryContext caller = CurrentMemoryContext;
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute("SELECT schema_name, table_name FROM evrep.subscription"
					  " ORDER BY 1, 2", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read evrep subscriptions: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *schema = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *table = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		MemoryContext old = MemoryContextSwitchTo(caller);

		keys = lappend(keys, wire_routing_key(schema, table));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return keys;
}

PG_FUNCTION_INFO_V1(evrep_apply);
Datum
evrep_apply(PG_FUNCTION_ARGS)
{
	text	   *message = PG_GETARG_TEXT_PP(0);

	PG_RETURN_INT32(apply_message(VARDATA_ANY(message), VARSIZE_ANY_EXHDR(message)));
}

/* ---- replay ---- */

static void
replay_cb(void *arg)
{
	ApplyRun   *run = arg;

	run->msg = wire_parse(run->body, run->len);
	run->subscribed = lookup_subscription(run->msg, &run->sub);
	apply_range(run, 0, run->msg->nevents);
}

static void
record_replay(int64 id, ErrorData *edata)
{
	Oid			argtypes[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";
	int			ret;

	values[0] = Int64GetDatum(id);
	if (edata)
	{
		values[1] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
		values[2] = CStringGetTextDatum(edata->message ? edata->message : "unknown error");
	}
	else
		nulls[1] = nulls[2] = 'n';
	ret = SPI_execute_with_args("UPDATE evrep.dead_letter SET replay_count = replay_count + 1,"
								" replayed_at = CASE WHEN $2 IS NULL THEN now() END,"
								" sqlstate = coalesce($2, sqlstate), error = coalesce($3, error)"
								" WHERE id = $1",
								3, argtypes, values, nulls, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not record replay: %s", SPI_result_code_string(ret));
}

PG_FUNCTION_INFO_V1(evrep_replay);
Datum
evrep_replay(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	ApplyRun	run = {0};
	ErrorData  *edata;
	int			nestlevel = set_replica_role();
	bool		isnull;
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args("SELECT body, replayed_at IS NOT NULL FROM evrep.dead_letter"
								" WHERE id = $1 FOR UPDATE",
								1, argtypes, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read dead letter: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("evrep dead letter " INT64_FORMAT " does not exist", id)));
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evrep dead letter " INT64_FORMAT " was already replayed", id)));
	run.body = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	run.len = strlen(run.body);

	edata = try_subxact(replay_cb, &run);
	record_replay(id, edata);
	if (edata)
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("evrep dead letter " INT64_FORMAT " still cannot be applied: %s",
						id, edata->message)));
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
	PG_RETURN_BOOL(edata == NULL);
}
