/*
 * capture.c
 *		The capture trigger: one outbox row per changed row, written in the
 *		writer's own transaction, and a wake-up for the publisher at commit.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "evrep.h"
#include "spi_plan.h"

/* Per backend: the saved INSERT and the role that owns the outbox. */
static SPIPlanPtr outbox_insert_plan = NULL;
static Oid	outbox_owner = InvalidOid;
static bool wake_at_commit = false;
static bool xact_callback_registered = false;

static void capture_xact_callback(XactEvent event, void *arg);
static void prepare_outbox_insert(void);
static bool key_changed(TriggerData *trigdata);
static void write_event(int32 pub_id, char op, HeapTuple tuple, TupleDesc tupdesc);

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

static void
write_event(int32 pub_id, char op, HeapTuple tuple, TupleDesc tupdesc)
{
	Datum		row_json;
	Datum		values[3];
	Oid			save_userid;
	int			save_sec_context;
	int			ret;

	/* PostgreSQL's own conversion, so apply can read it back exactly */
	row_json = DirectFunctionCall1(row_to_json,
								   heap_copy_tuple_as_datum(tuple, tupdesc));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (outbox_insert_plan == NULL)
		prepare_outbox_insert();

	values[0] = Int32GetDatum(pub_id);
	values[1] = CharGetDatum(op);
	values[2] = row_json;

	/* Writers need no privilege on evrep's schema: insert as its owner. */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(outbox_owner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	ret = SPI_execute_plan(outbox_insert_plan, values, NULL, false, 0);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not write evrep outbox row: %s", SPI_result_code_string(ret));
	SPI_finish();
}

static Oid
relation_owner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

static void
prepare_outbox_insert(void)
{
	Oid			argtypes[3] = {INT4OID, CHAROID, JSONOID};
	Oid			nspid = get_namespace_oid("evrep", false);
	Oid			relid = get_relname_relid("outbox", nspid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("evrep outbox table is missing"),
				 errhint("Is the evrep extension installed in this database?")));
	outbox_owner = relation_owner(relid);
	(void) spi_kept_plan(&outbox_insert_plan,
						 "INSERT INTO evrep.outbox (pub_id, op, row_data) VALUES ($1, $2, $3)",
						 3, argtypes);
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
