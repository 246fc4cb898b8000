/*
 * capture.c
 *		The capture trigger: one outbox row per changed row, written in the
 *		writer's own transaction, and a wake-up for the publisher at commit.
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
#include "utils/fmgrprotos.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"

#include "evrep.h"

/* id, pub_id, op, row_data, seq, commit_ts */
#define OUTBOX_NATTS 6

/* Per backend: where the outbox is. */
static Oid	outbox_relid = InvalidOid;
static Oid	outbox_pkeyid = InvalidOid;
static Oid	outbox_seqid = InvalidOid;
static IndexInfo *outbox_pkey_info = NULL;
static bool callback_registered = false;

static bool wake_at_commit = false;
static bool xact_callback_registered = false;

static void capture_xact_callback(XactEvent event, void *arg);
static bool key_changed(TriggerData *trigdata);
static void write_event(int32 pub_id, char op, HeapTuple tuple, TupleDesc tupdesc);
static void lookup_outbox(void);
static void forget_outbox(Datum arg, Oid relid);

PG_FUNCTION_INFO_V1(evrep_capture);

Datum
evrep_capture(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	tupdesc;
	int32		pub_id;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("evrep.capture() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs < 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("evrep.capture() must be an AFTER ROW trigger made by evrep_publish()")));

	/*
	 * The apply path runs with session_replication_role = replica, which
	 * already keeps this (ordinary) trigger from firing; checking again
	 * keeps an ENABLE ALWAYS trigger from echoing applied rows back.
	 */
	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
		return PointerGetDatum(NULL);

	pub_id = pg_strtoint32(trigdata->tg_trigger->tgargs[0]);
	tupdesc = RelationGetDescr(trigdata->tg_relation);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		write_event(pub_id, 'i', trigdata->tg_trigtuple, tupdesc);
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		write_event(pub_id, 'd', trigdata->tg_trigtuple, tupdesc);
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		/* A new key is a different row for subscribers: delete, insert. */
		if (key_changed(trigdata))
		{
			write_event(pub_id, 'd', trigdata->tg_trigtuple, tupdesc);
			write_event(pub_id, 'i', trigdata->tg_newtuple, tupdesc);
		}
		else
			write_event(pub_id, 'u', trigdata->tg_newtuple, tupdesc);
	}

	if (!xact_callback_registered)
	{
		RegisterXactCallback(capture_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;

	return PointerGetDatum(NULL);
}

/* Trigger arguments 2.. are the primary key's attribute numbers. */
static bool
key_changed(TriggerData *trigdata)
{
	Trigger    *trigger = trigdata->tg_trigger;
	TupleDesc	tupdesc = RelationGetDescr(trigdata->tg_relation);

	for (int i = 1; i < trigger->tgnargs; i++)
	{
		AttrNumber	attnum = pg_strtoint16(trigger->tgargs[i]);
		Form_pg_attribute att = TupleDescAttr(tupdesc, attnum - 1);
		bool		oldnull,
					newnull;
		Datum		oldval = heap_getattr(trigdata->tg_trigtuple, attnum, tupdesc, &oldnull);
		Datum		newval = heap_getattr(trigdata->tg_newtuple, attnum, tupdesc, &newnull);

		if (oldnull != newnull)
			return true;
		if (!oldnull && !datum_image_eq(oldval, newval, att->attbyval, att->attlen))
			return true;
	}
	return false;
}

/*
 * The outbox row is written straight to the heap and its one index: the
 * executor machinery of an SPI INSERT cost several times the insert itself
 * on this hot path.  The table has no triggers, constraints beyond NOT
 * NULL (always met here) or other indexes; evrep--1.0.sql defines it so.
 */
static void
write_event(int32 pub_id, char op, HeapTuple tuple, TupleDesc tupdesc)
{
	Relation	outbox;
	Relation	pkey;
	HeapTuple	row;
	Datum		values[OUTBOX_NATTS];
	bool		nulls[OUTBOX_NATTS] = {0};
	Datum		id;
	bool		id_null = false;

	if (!OidIsValid(outbox_relid))
		lookup_outbox();

	id = Int64GetDatum(nextval_internal(outbox_seqid, false));
	values[0] = id;
	values[1] = Int32GetDatum(pub_id);
	values[2] = CharGetDatum(op);
	/* PostgreSQL's own conversion, so apply can read it back exactly */
	values[3] = DirectFunctionCall1(row_to_json,
									heap_copy_tuple_as_datum(tuple, tupdesc));
	nulls[4] = nulls[5] = true;	/* seq, commit_ts: set by the publisher */

	outbox = table_open(outbox_relid, RowExclusiveLock);
	pkey = index_open(outbox_pkeyid, RowExclusiveLock);
	row = heap_form_tuple(RelationGetDescr(outbox), values, nulls);
	simple_heap_insert(outbox, row);
	(void) index_insert(pkey, &id, &id_null, &row->t_self, outbox,
						UNIQUE_CHECK_YES, false, outbox_pkey_info);
	index_close(pkey, NoLock);
	table_close(outbox, NoLock);
	heap_freetuple(row);
}

/* Finds the outbox, its primary key and its sequence; fails clearly. */
static void
lookup_outbox(void)
{
	Oid			nspid = get_namespace_oid("evrep", true);
	Oid			relid = OidIsValid(nspid) ? get_relname_relid("outbox", nspid) : InvalidOid;
	Relation	rel;
	Relation	pkey;
	MemoryContext old;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("evrep outbox table is missing"),
				 errhint("Is the evrep extension installed in this database?")));
	rel = table_open(relid, AccessShareLock);
	if (RelationGetDescr(rel)->natts != OUTBOX_NATTS)
		elog(ERROR, "evrep.outbox does not have the expected %d columns", OUTBOX_NATTS);
	outbox_pkeyid = RelationGetPrimaryKeyIndex(rel);
	table_close(rel, AccessShareLock);
	outbox_seqid = get_relname_relid("outbox_id_seq", nspid);
	if (!OidIsValid(outbox_pkeyid) || !OidIsValid(outbox_seqid))
		elog(ERROR, "evrep.outbox lacks its primary key or id sequence");

	pkey = index_open(outbox_pkeyid, AccessShareLock);
	old = MemoryContextSwitchTo(CacheMemoryContext);
	if (outbox_pkey_info)
		pfree(outbox_pkey_info);
	outbox_pkey_info = BuildIndexInfo(pkey);
	MemoryContextSwitchTo(old);
	index_close(pkey, AccessShareLock);

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_outbox, (Datum) 0);
		callback_registered = true;
	}
	outbox_relid = relid;
}

/* DROP EXTENSION, or any change to the outbox: look it up again. */
static void
forget_outbox(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == outbox_relid || relid == outbox_pkeyid)
		outbox_relid = InvalidOid;
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
