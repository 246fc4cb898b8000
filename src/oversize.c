/*
 * oversize.c
 *		Rows too large for one message.
 *
 * The broker refuses a message over its max_message_size (RabbitMQ closes
 * the channel with 406), and a publisher that sends it again after every
 * reconnect stops its origin's stream for good; a bytea over 512 MB has no
 * JSON form PostgreSQL can hold at all, and building one failed the
 * writer's INSERT.  So a row whose JSON would pass evrep.max_message_bytes
 * is never built: a delete goes out with its key alone, which is all a
 * subscriber needs; an insert or an update becomes a skip event, which
 * keeps its number in the stream (subscribers park it, naming the key:
 * never a silent hole), and the origin keeps a record in evrep.skipped.
 * The writer's transaction goes on, with a WARNING.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/sysattr.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "evrep.h"
#include "oversize.h"
#include "row_json.h"
#include "spi_util.h"
#include "wire.h"

/* skipped_at, schema_name, table_name, op, key, reason */
#define SKIPPED_NATTS 6

/* The local transaction that was last warned of a row not sent */
static LocalTransactionId warned_lxid = InvalidLocalTransactionId;

/* The primary key's columns, as a mask over the relation's attributes. */
static bool *
key_mask(Relation rel)
{
	TupleDesc desc = RelationGetDescr(rel);
	Bitmapset *keys = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	bool *mask = palloc0(sizeof(bool) * desc->natts);
	int x = -1;

	while ((x = bms_next_member(keys, x)) >= 0)
	{
		AttrNumber attno = x + FirstLowInvalidHeapAttributeNumber;

		if (attno > 0)
			mask[attno - 1] = true;
	}
	return mask;
}

static char *
limit_reason(void)
{
	return psprintf("its JSON form is over evrep.max_message_bytes (%d bytes, less %d for the "
					"message's envelope)",
					evrep_max_message_bytes, EVREP_ENVELOPE_BYTES);
}

/* {"op": ..., "key": {...}, "reason": ...}: the "skip" member of the event */
static char *
skip_json(char op, const char *key_json, const char *reason)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"op\":\"%s\",\"key\":%s,\"reason\":", wire_op_name(op), key_json);
	escape_json(&buf, reason);
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * A row in evrep.skipped, in the caller's transaction, past any privilege
 * check as the outbox row is: the writer need not be able to write it.  A
 * 1.0 catalog has no such table; the WARNING is all there is then.
 */
static void
record_skipped(const char *schema, const char *table, char op, const char *key_json,
			   const char *reason)
{
	Oid nspid = get_namespace_oid("evrep", true);
	Oid relid = OidIsValid(nspid) ? get_relname_relid("skipped", nspid) : InvalidOid;
	Datum values[SKIPPED_NATTS];
	bool nulls[SKIPPED_NATTS] = {0};
	Relation rel;
	HeapTuple tuple;

	if (!OidIsValid(relid))
		return;
	values[0] = TimestampTzGetDatum(GetCurrentTimestamp());
	values[1] = CStringGetTextDatum(schema);
	values[2] = CStringGetTextDatum(table);
	values[3] = CStringGetTextDatum(wire_op_name(op));
	values[4] = CStringGetTextDatum(key_json); /* json is text inside */
	values[5] = CStringGetTextDatum(reason);
	rel = table_open(relid, RowExclusiveLock);
	if (RelationGetDescr(rel)->natts != SKIPPED_NATTS)
		elog(ERROR, "evrep.skipped does not have the expected %d columns", SKIPPED_NATTS);
	tuple = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	simple_heap_insert(rel, tuple);
	table_close(rel, NoLock);
}

Datum
oversize_capture(Relation rel, char *op, HeapTuple tuple)
{
	Datum key = row_json_columns(tuple, RelationGetDescr(rel), key_mask(rel));
	char *key_json;
	char *schema;
	char *reason;

	if (*op == 'd')
		return key;
	key_json = TextDatumGetCString(key);
	schema = get_namespace_name(RelationGetNamespace(rel));
	reason = limit_reason();
	record_skipped(schema, RelationGetRelationName(rel), *op, key_json, reason);
	/* once per transaction: an UPDATE of many large rows would flood the writer */
	if (MyProc->lxid != warned_lxid)
		ereport(WARNING,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("evrep does not send this %s of %s.%s: %s", wire_op_name(*op), schema,
						RelationGetRelationName(rel), reason),
				 errdetail("Key: %s. Subscribers park a skip event in its place; evrep.skipped "
						   "keeps the record of it and of any other row of this transaction "
						   "that is not sent.",
						   key_json),
				 errhint("Raise evrep.max_message_bytes (up to the broker's max_message_size), "
						 "then update the row again.")));
	warned_lxid = MyProc->lxid;
	key = CStringGetTextDatum(skip_json(*op, key_json, reason));
	*op = EVREP_OP_SKIP;
	return key;
}

/*
 * The key's values in an outbox row's JSON, read by the json operator,
 * which walks the text without building jsonb (whose strings stop at
 * 256 MB).
 */
static const char *const key_query =
	"SELECT k, $1 OPERATOR(pg_catalog.->) k FROM pg_catalog.json_array_elements_text($2) AS k";

/* The key object, written as the capture writes it */
static char *
key_of(const char *row_json, const char *key_columns)
{
	Oid argtypes[2] = {JSONOID, JSONOID};
	Datum values[2];
	StringInfoData buf;

	values[0] = CStringGetTextDatum(row_json);
	values[1] = CStringGetTextDatum(key_columns);
	spi_check(SPI_execute_with_args(key_query, 2, argtypes, values, NULL, true, 0), SPI_OK_SELECT,
			  ANY_ROWS, "could not read the key of an evrep event too large to send");
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char *value = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		if (i > 0)
			appendStringInfoChar(&buf, ',');
		escape_json(&buf, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		appendStringInfo(&buf, ":%s", value ? value : "null");
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

char *
oversize_skip_at_send(const char *schema, const char *table, const char *key_columns, char op,
					  const char *row_json, bool record)
{
	char *key_json = key_of(row_json, key_columns);
	char *reason = limit_reason();

	if (op == 'd')
		return key_json;
	if (record)
	{
		record_skipped(schema, table, op, key_json, reason);
		ereport(WARNING,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("evrep publisher does not send an %s of %s.%s: %s", wire_op_name(op),
						schema, table, reason),
				 errdetail("Key: %s. Subscribers park a skip event in its place; evrep.skipped "
						   "keeps the record.",
						   key_json)));
	}
	return skip_json(op, key_json, reason);
}
