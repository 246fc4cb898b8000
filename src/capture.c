/*
 * capture.c
 *		The capture trigger: one outbox row per changed row, and one per
 *		truncated table, written in the writer's own transaction, and a
 *		wake-up for the publisher at commit.  A table with a contract
 *		(contract.c) sends only its listed columns and the rows its filter
 *		passes.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/xid8.h"
#include "utils/relcache.h"

#include "capture.h"
#include "contract.h"
#include "evrep.h"
#include "oversize.h"
#include "relcache.h"
#include "row_json.h"
#include "truncate.h"
#include "wire.h"

/* id, slot, pub_id, op, row_data, seq, commit_ts, and since 1.1 lsn, xid, events */
#define OUTBOX_NATTS_1_0 7
#define OUTBOX_NATTS 10

/* Per backend: where the outbox partitions are. */
typedef struct OutboxPartition
{
	Oid relid;
	Oid pkeyid;
	IndexInfo *pkey_info;
} OutboxPartition;

static OutboxPartition outbox[2];
static bool outbox_valid = false; /* cleared by invalidations */
static bool outbox_1_0 = false;	  /* a 1.0 catalog: one row per event */
static Oid outbox_seqid = InvalidOid;

static bool wake_at_commit = false;
static bool xact_callback_registered = false;

static void capture_xact_callback(XactEvent event, void *arg);
static void wake_publisher_at_commit(void);
static bool key_changed(TriggerData *trigdata);
static void capture_row(TriggerData *trigdata, int32 pub_id);
static void capture_update(Relation rel, int32 pub_id, HeapTuple oldtup, HeapTuple newtup,
						   const bool *mask);
static void capture_filtered_row(TriggerData *trigdata, Contract *contract, int32 pub_id);
static int64 write_outbox_row(int32 pub_id, char op, Datum row_data);
static void gather_event(int32 pub_id, char op, Datum row_data);
static Datum truncate_options(Relation rel);
static void lookup_outbox(void);
static void forget_outbox(Oid relid);

PG_FUNCTION_INFO_V1(evrep_capture);

Datum
evrep_capture(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	int32 pub_id;
	bool truncate;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
						errmsg("evrep.capture() must be called as a trigger")));

	/*
	 * evrep_publish makes two triggers: AFTER INSERT OR UPDATE OR DELETE
	 * FOR EACH ROW with the publication's id and the key's attribute
	 * numbers, and AFTER TRUNCATE FOR EACH STATEMENT (the only level
	 * TRUNCATE fires at) with the id alone.
	 */
	truncate = TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event);
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		(truncate
			 ? !TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) || trigdata->tg_trigger->tgnargs < 1
			 : !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) || trigdata->tg_trigger->tgnargs < 2))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("evrep.capture() must be an AFTER ROW or AFTER TRUNCATE trigger made by "
						"evrep_publish()")));

	/*
	 * The apply path runs with session_replication_role = replica, which
	 * already keeps this (ordinary) trigger from firing; checking again
	 * keeps an ENABLE ALWAYS trigger from echoing applied rows back.
	 */
	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
		return PointerGetDatum(NULL);

	pub_id = pg_strtoint32(trigdata->tg_trigger->tgargs[0]);

	if (truncate)
	{
		write_outbox_row(pub_id, 't', truncate_options(trigdata->tg_relation));
		wake_publisher_at_commit();
	}
	else
	{
		Contract *contract = contract_get(trigdata->tg_relation, pub_id);

		if (contract == NULL)
			capture_row(trigdata, pub_id);
		else
			capture_filtered_row(trigdata, contract, pub_id);
	}

	return PointerGetDatum(NULL);
}

/* A row of a table without a contract: every change, every column. */
static void
capture_row(TriggerData *trigdata, int32 pub_id)
{
	Relation rel = trigdata->tg_relation;

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		capture_write(rel, pub_id, 'i', trigdata->tg_trigtuple, NULL);
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		capture_write(rel, pub_id, 'd', trigdata->tg_trigtuple, NULL);
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		/* A new key is a different row for subscribers: delete, insert. */
		if (key_changed(trigdata))
		{
			capture_write(rel, pub_id, 'd', trigdata->tg_trigtuple, NULL);
			capture_write(rel, pub_id, 'i', trigdata->tg_newtuple, NULL);
		}
		else
			capture_update(rel, pub_id, trigdata->tg_trigtuple, trigdata->tg_newtuple, NULL);
	}
}

/*
 * A row of a table with a contract.  As PostgreSQL's publications' row
 * filters: an UPDATE whose old row passed and new row does not is a delete
 * for subscribers, the reverse an insert; one of which neither passed is
 * nothing.  An UPDATE that changed only columns not in the list is
 * nothing either.
 */
static void
capture_filtered_row(TriggerData *trigdata, Contract *contract, int32 pub_id)
{
	Relation rel = trigdata->tg_relation;
	TupleDesc tupdesc = RelationGetDescr(rel);
	HeapTuple oldtup = trigdata->tg_trigtuple;
	HeapTuple newtup = trigdata->tg_newtuple;
	const bool *mask = contract_mask(contract);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		if (contract_row_matches(contract, oldtup))
			capture_write(rel, pub_id, 'i', oldtup, mask);
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		if (contract_row_matches(contract, oldtup))
			capture_write(rel, pub_id, 'd', oldtup, mask);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		bool was = contract_row_matches(contract, oldtup);
		bool is = contract_row_matches(contract, newtup);

		if (was && is && !key_changed(trigdata))
		{
			if (contract_published_changed(contract, tupdesc, oldtup, newtup))
				capture_update(rel, pub_id, oldtup, newtup, mask);
		}
		else
		{
			if (was)
				capture_write(rel, pub_id, 'd', oldtup, mask);
			if (is)
				capture_write(rel, pub_id, 'i', newtup, mask);
		}
	}
}

/*
 * A row whose JSON would not fit in one message is not built, nor one with
 * a value that travels better apart (oversize.c says what is written
 * instead, for a delete its key): the writer's statement never fails for
 * a value's size.
 */
static void
write_event(Relation rel, int32 pub_id, char op, HeapTuple tuple, const bool *mask,
			const char *unchanged)
{
	Datum row = (Datum) 0;
	OversizeValues *apart = NULL;
	int64 id;

	if (!oversize_goes_apart(rel, tuple, mask))
		row = row_json_bounded(tuple, RelationGetDescr(rel), mask, evrep_row_limit());
	if (row == (Datum) 0)
		row = oversize_capture(rel, &op, tuple, mask, unchanged, &apart);
	else if (unchanged != NULL)
	{
		row = CStringGetTextDatum(
			psprintf("{\"row\":%s,\"unchanged\":%s}", TextDatumGetCString(row), unchanged));
		op = EVREP_OP_UPDATE_UNCHANGED;
	}
	if (op == 'i' || op == 'u' || op == 'd')
		gather_event(pub_id, op, row);
	else
	{
		id = write_outbox_row(pub_id, op, row);
		if (apart != NULL)
			oversize_store(id, apart);
	}
	wake_publisher_at_commit();
}

void
capture_write(Relation rel, int32 pub_id, char op, HeapTuple tuple, const bool *mask)
{
	write_event(rel, pub_id, op, tuple, mask, NULL);
}

/*
 * An update.  Values of a MB or more it left as they were are not sent
 * again (as native logical replication leaves unchanged TOAST values out):
 * the event names them, and a subscriber keeps what it has, or parks the
 * event if it lacks the row.
 */
static void
capture_update(Relation rel, int32 pub_id, HeapTuple oldtup, HeapTuple newtup, const bool *mask)
{
	bool *sent = NULL;
	char *unchanged = oversize_unchanged(rel, oldtup, newtup, mask, &sent);

	write_event(rel, pub_id, 'u', newtup, unchanged ? sent : mask, unchanged);
}

static void
wake_publisher_at_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(capture_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
}

/* Trigger arguments 2.. are the primary key's attribute numbers. */
static bool
key_changed(TriggerData *trigdata)
{
	Trigger *trigger = trigdata->tg_trigger;
	TupleDesc tupdesc = RelationGetDescr(trigdata->tg_relation);

	for (int i = 1; i < trigger->tgnargs; i++)
	{
		AttrNumber attnum = pg_strtoint16(trigger->tgargs[i]);
		Form_pg_attribute att = TupleDescAttr(tupdesc, attnum - 1);
		bool oldnull, newnull;
		Datum oldval = heap_getattr(trigdata->tg_trigtuple, attnum, tupdesc, &oldnull);
		Datum newval = heap_getattr(trigdata->tg_newtuple, attnum, tupdesc, &newnull);

		if (oldnull != newnull)
			return true;
		if (!oldnull && !datum_image_eq(oldval, newval, att->attbyval, att->attlen))
			return true;
	}
	return false;
}

/*
 * The row_data of a truncate event: its options, {"restart_identity": b}.
 * The statement's options are not in TriggerData; truncate.c's hook noted
 * them.  A truncate that did not pass through ProcessUtility (an
 * extension calling ExecuteTruncate) escaped the hook: the TRUNCATE itself
 * must not fail for that, so the event says false and a WARNING says so.
 */
static Datum
truncate_options(Relation rel)
{
	bool known;
	bool restart = evrep_truncate_restart_identity(&known);

	if (!known)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evrep cannot tell whether the TRUNCATE of \"%s\" restarts identities",
						RelationGetRelationName(rel)),
				 errdetail("The statement did not pass through ProcessUtility; its event says "
						   "it does not.")));
	return DirectFunctionCall1(json_in, CStringGetDatum(restart ? "{\"restart_identity\":true}"
																: "{\"restart_identity\":false}"));
}

/* An event of a row, written with the others of its statement (capture_buffer.c). */
static void
gather_event(int32 pub_id, char op, Datum row_data)
{
	if (!outbox_valid)
		lookup_outbox();
	if (outbox_1_0)
		(void) capture_outbox_row(pub_id, op, row_data, 1);
	else
		capture_buffer_add(pub_id, op, row_data);
}

/* An event that goes in a row of its own, after those gathered before it. */
static int64
write_outbox_row(int32 pub_id, char op, Datum row_data)
{
	capture_buffer_flush();
	return capture_outbox_row(pub_id, op, row_data, 1);
}

/*
 * The outbox row is written straight to the heap and the one index of the
 * current partition: the executor machinery of an SPI INSERT cost several
 * times the insert itself on this hot path.  The partitions have no
 * triggers, constraints beyond NOT NULL (always met here) or other indexes
 * these rows belong in (1.1's outbox_numbered holds only rows with a seq,
 * which capture never writes); evrep--1.0.sql and the 1.1 update define
 * them so.
 */
int64
capture_outbox_row(int32 pub_id, char op, Datum row_data, int32 events)
{
	int slot;
	OutboxPartition target;
	Relation part;
	Relation pkey;
	HeapTuple row;
	Datum values[OUTBOX_NATTS];
	bool nulls[OUTBOX_NATTS] = {0};
	bool key_nulls[2] = {false, false};

	/* without preload there is no publisher and no rotation: slot 0 */
	slot = evrep_shared ? (int) pg_atomic_read_u32(&evrep_shared->outbox_slot) : 0;
	values[4] = row_data;
	nulls[5] = nulls[6] = nulls[7] = true; /* seq, commit_ts, lsn: for the publisher's own rows */
	/*
	 * The publisher's batches are cut by snapshots, which name top-level
	 * transactions.  Taken before the id: outbox.c relies on every writer
	 * having its xid before it takes an id.
	 */
	values[8] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	values[9] = Int32GetDatum(events);
	nulls[9] = events == 1;
	values[2] = Int32GetDatum(pub_id);
	values[3] = CharGetDatum(op);
	values[1] = Int16GetDatum(slot);

	/*
	 * Any lock taken (by the calls above, by lookup_outbox itself, by
	 * table_open) may process invalidations, and every rotation's TRUNCATE
	 * sends one: forget_outbox then only marks the cache stale for the next
	 * call, the oids stay usable (TRUNCATE keeps them).
	 */
	if (!outbox_valid)
		lookup_outbox();
	target = outbox[slot];
	values[0] = Int64GetDatum(nextval_internal(outbox_seqid, false));

	part = table_open(target.relid, RowExclusiveLock);
	pkey = index_open(target.pkeyid, RowExclusiveLock);
	row = heap_form_tuple(RelationGetDescr(part), values, nulls);
	simple_heap_insert(part, row);
	(void) index_insert(pkey, values, key_nulls, &row->t_self, part, UNIQUE_CHECK_YES, false,
						target.pkey_info);
	index_close(pkey, NoLock);
	table_close(part, NoLock);
	heap_freetuple(row);
	return DatumGetInt64(values[0]);
}

static void
lookup_partition(Oid nspid, int slot)
{
	OutboxPartition *p = &outbox[slot];
	char name[NAMEDATALEN];
	Relation rel;
	Relation pkey;
	MemoryContext old;

	snprintf(name, sizeof(name), "outbox_%d", slot);
	p->relid = get_relname_relid(name, nspid);
	if (!OidIsValid(p->relid))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
						errmsg("evrep outbox partition \"%s\" is missing", name),
						errhint("Is the evrep extension installed in this database?")));
	rel = table_open(p->relid, AccessShareLock);
	/* a 1.0 catalog until ALTER EXTENSION evrep UPDATE: its rows lack lsn */
	if (RelationGetDescr(rel)->natts != OUTBOX_NATTS &&
		RelationGetDescr(rel)->natts != OUTBOX_NATTS_1_0)
		elog(ERROR, "evrep.%s does not have the expected %d columns", name, OUTBOX_NATTS);
	outbox_1_0 = RelationGetDescr(rel)->natts == OUTBOX_NATTS_1_0;
	p->pkeyid = RelationGetPrimaryKeyIndex(rel);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(p->pkeyid))
		elog(ERROR, "evrep.%s lacks its primary key", name);

	pkey = index_open(p->pkeyid, AccessShareLock);
	old = MemoryContextSwitchTo(CacheMemoryContext);
	if (p->pkey_info)
		pfree(p->pkey_info);
	p->pkey_info = BuildIndexInfo(pkey);
	MemoryContextSwitchTo(old);
	index_close(pkey, AccessShareLock);
}

/* Finds the outbox partitions, their keys and the id sequence. */
static void
lookup_outbox(void)
{
	Oid nspid = get_namespace_oid("evrep", true);

	if (!OidIsValid(nspid))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("evrep outbox table is missing"),
						errhint("Is the evrep extension installed in this database?")));
	outbox_seqid = get_relname_relid("outbox_id_seq", nspid);
	if (!OidIsValid(outbox_seqid))
		elog(ERROR, "evrep.outbox lacks its id sequence");
	relcache_watch(forget_outbox);
	lookup_partition(nspid, 0);
	lookup_partition(nspid, 1);
	outbox_valid = true;
}

/*
 * DROP EXTENSION, TRUNCATE (a new relfilenode, same oids) or any other
 * change to the outbox: look it up again.
 */
static void
forget_outbox(Oid relid)
{
	for (int i = 0; i < 2; i++)
	{
		if (relid == InvalidOid || relid == outbox[i].relid || relid == outbox[i].pkeyid)
			outbox_valid = false;
	}
}

static void
capture_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
				evrep_wake_publisher();
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction is found by the publisher's poll */
			wake_at_commit = false;
			break;
		default:
			break;
	}
}
