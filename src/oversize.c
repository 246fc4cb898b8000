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

#include "access/detoast.h"
#include "access/heapam.h"
#include "access/heaptoast.h"
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
#include "utils/memutils.h"
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

/* An evrep table by name; InvalidOid on a catalog that has none. */
static Oid
evrep_table(const char *name)
{
	Oid nspid = get_namespace_oid("evrep", true);

	return OidIsValid(nspid) ? get_relname_relid(name, nspid) : InvalidOid;
}

static Oid
outbox_value_relid(void)
{
	return evrep_table("outbox_value");
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
	Oid relid = evrep_table("skipped");
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

/*
 * A value that travels apart, in parts (docs/protocol.md): a bytea's
 * bytes, or the text form of any other type.
 */
typedef struct Apart
{
	int attno;			   /* 1-based */
	Size raw;			   /* its size, uncompressed */
	bool bytea;			   /* form "bytea", else "text" */
	bool always;		   /* goes apart even in a row that fits */
	struct varlena *bytes; /* what is stored and sent, made by take_apart */
} Apart;

/*
 * Smaller values stay in the row: a row of 1,600 columns of a few kB each
 * sends its largest apart until the rest fits.
 */
#define APART_MIN_BYTES 1024

struct OversizeValues
{
	int n;
	Apart *values;
};

/*
 * Types whose stored bytes are their text form: they go apart as they
 * are, with no copy made of them.
 */
static bool
stored_as_text(Oid base)
{
	return base == TEXTOID || base == VARCHAROID || base == BPCHAROID || base == JSONOID;
}

/*
 * A bytea or a text of a MB or more goes apart even in a row that fits:
 * as raw bytes in parts it costs a subscriber a third of what its JSON
 * does (a bytea is hex there, and parsed into jsonb): bench/results,
 * large_values.md.
 */
#define APART_ALWAYS_BYTES (1024 * 1024)

static bool
apart_always(Oid typid, Size raw)
{
	Oid base = getBaseType(typid);

	return raw >= APART_ALWAYS_BYTES && (base == BYTEAOID || stored_as_text(base));
}

/*
 * Can this value go apart?  Any type's text form can, if it cannot pass
 * PostgreSQL's 1 GB limit for one value (a text form is a few times the
 * value at most, numbers in an array say); a bytea's and a text's own
 * bytes always can.
 */
static bool
can_go_apart(Form_pg_attribute att, Size raw)
{
	Oid base = getBaseType(att->atttypid);

	return base == BYTEAOID || stored_as_text(base) || raw < MaxAllocSize / 8;
}

static int
apart_by_size_desc(const void *a, const void *b)
{
	Size x = ((const Apart *) a)->raw;
	Size y = ((const Apart *) b)->raw;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* The columns that may go apart, largest first; *n of them. */
static Apart *
apart_candidates(TupleDesc desc, const Datum *values, const bool *nulls, const bool *mask,
				 const bool *keys, int *n)
{
	Apart *c = palloc(sizeof(Apart) * desc->natts);

	*n = 0;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Size raw;

		if (att->attisdropped || nulls[i] || keys[i] || att->attlen != -1 ||
			(mask != NULL && !mask[i]))
			continue;
		raw = toast_raw_datum_size(values[i]) - VARHDRSZ;
		if (raw < APART_MIN_BYTES || !can_go_apart(att, raw))
			continue;
		c[*n].attno = i + 1;
		c[*n].raw = raw;
		c[*n].bytea = getBaseType(att->atttypid) == BYTEAOID;
		c[*n].always = apart_always(att->atttypid, raw);
		c[*n].bytes = NULL;
		(*n)++;
	}
	qsort(c, *n, sizeof(Apart), apart_by_size_desc);
	return c;
}

/*
 * The bytes of a value that goes apart.  A value stored out of line and
 * uncompressed stays a pointer: the outbox_value row made of it copies it
 * a chunk at a time.  A compressed one is expanded, so that a part is read
 * later without reading what comes before it.
 */
static struct varlena *
take_apart(Form_pg_attribute att, Datum value)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(value);
	char *text;
	Oid base = getBaseType(att->atttypid);

	if (base == BYTEAOID || stored_as_text(base))
	{
		if (VARATT_IS_EXTERNAL_ONDISK(v))
		{
			struct varatt_external ptr;

			VARATT_EXTERNAL_GET_POINTER(ptr, v);
			if (!VARATT_EXTERNAL_IS_COMPRESSED(ptr))
				return v;
		}
		return detoast_attr(v);
	}
	text = row_json_text_form(att->atttypid, value);
	return (struct varlena *) cstring_to_text(text);
}

/* {"of": ..., "row": ..., "values": [...]}: the "large" member of the event */
static char *
large_json(char op, const char *row, TupleDesc desc, const OversizeValues *apart,
		   const char *unchanged)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"of\":\"%s\",\"row\":%s,", wire_op_name(op), row);
	if (unchanged != NULL)
		appendStringInfo(&buf, "\"unchanged\":%s,", unchanged);
	appendStringInfoString(&buf, "\"values\":[");
	for (int i = 0; i < apart->n; i++)
	{
		const Apart *a = &apart->values[i];

		appendStringInfoString(&buf, i ? ",{\"column\":" : "{\"column\":");
		escape_json(&buf, NameStr(TupleDescAttr(desc, a->attno - 1)->attname));
		appendStringInfo(&buf, ",\"form\":\"%s\",\"bytes\":" INT64_FORMAT "}",
						 a->bytea ? "bytea" : "text",
						 (int64) toast_raw_datum_size(PointerGetDatum(a->bytes)) - VARHDRSZ);
	}
	appendStringInfoString(&buf, "]}");
	return buf.data;
}

/*
 * Puts the candidates that always go apart first, each group still
 * largest first; returns how many they are.
 */
static int
move_first_always(Apart *c, int n)
{
	Apart *sorted = palloc(sizeof(Apart) * Max(n, 1));
	int nalways = 0;
	int k = 0;

	for (int i = 0; i < n; i++)
		if (c[i].always)
			sorted[k++] = c[i];
	nalways = k;
	for (int i = 0; i < n; i++)
		if (!c[i].always)
			sorted[k++] = c[i];
	memcpy(c, sorted, sizeof(Apart) * n);
	pfree(sorted);
	return nalways;
}

bool
oversize_goes_apart(Relation rel, HeapTuple tuple, const bool *mask)
{
	TupleDesc desc = RelationGetDescr(rel);

	/* a value of a MB is stored out of line: most rows stop here */
	if (!HeapTupleHasExternal(tuple) || !OidIsValid(outbox_value_relid()))
		return false;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool isnull;
		Datum value;

		if (att->attisdropped || att->attlen != -1 || (mask != NULL && !mask[i]))
			continue;
		value = heap_getattr(tuple, i + 1, desc, &isnull);
		if (!isnull && apart_always(att->atttypid, toast_raw_datum_size(value) - VARHDRSZ))
			return true;
	}
	return false;
}

/*
 * The row without its largest values, largest first, until its JSON fits
 * in a message; NULL if it never does (or this catalog has no
 * evrep.outbox_value).
 */
static char *
row_without_large_values(Relation rel, HeapTuple tuple, const bool *mask, OversizeValues **apart)
{
	TupleDesc desc = RelationGetDescr(rel);
	Datum *values = palloc(sizeof(Datum) * desc->natts);
	bool *nulls = palloc(sizeof(bool) * desc->natts);
	bool *rest = palloc(sizeof(bool) * desc->natts);
	Size room = evrep_row_limit();
	Size left = 0;
	Apart *c;
	int n;
	int moved;
	Datum row = (Datum) 0;
	OversizeValues *out;

	if (!OidIsValid(outbox_value_relid()))
		return NULL;
	heap_deform_tuple(tuple, desc, values, nulls);
	c = apart_candidates(desc, values, nulls, mask, key_mask(rel), &n);
	for (int i = 0; i < desc->natts; i++)
	{
		rest[i] = mask == NULL || mask[i];
		if (rest[i] && !nulls[i] && TupleDescAttr(desc, i)->attlen == -1)
			left += toast_raw_datum_size(values[i]);
	}
	moved = move_first_always(c, n);
	for (int k = 0; k < moved; k++)
	{
		rest[c[k].attno - 1] = false;
		left -= c[k].raw + VARHDRSZ;
	}
	for (;;)
	{
		/* a try costs the JSON of the rest: first when it may fit */
		if (moved > 0 && (left + 512 * moved < room / 2 || moved == n))
			row = row_json_bounded(tuple, desc, rest, room - 512 * moved);
		if (row != (Datum) 0 || moved == n)
			break;
		rest[c[moved].attno - 1] = false;
		left -= c[moved].raw + VARHDRSZ;
		moved++;
	}
	n = moved;
	if (row == (Datum) 0)
		return NULL;
	out = palloc(sizeof(OversizeValues));
	out->n = n;
	out->values = c;
	for (int k = 0; k < n; k++)
		c[k].bytes = take_apart(TupleDescAttr(desc, c[k].attno - 1), values[c[k].attno - 1]);
	*apart = out;
	return TextDatumGetCString(row);
}

char *
oversize_large(Relation rel, char op, HeapTuple tuple, const bool *mask, const char *unchanged,
			   OversizeValues **apart)
{
	char *row = row_without_large_values(rel, tuple, mask, apart);

	return row ? large_json(op, row, RelationGetDescr(rel), *apart, unchanged) : NULL;
}

Datum
oversize_capture(Relation rel, char *op, HeapTuple tuple, const bool *mask, const char *unchanged,
				 OversizeValues **apart)
{
	Datum key = row_json_columns(tuple, RelationGetDescr(rel), key_mask(rel));
	char *key_json;
	char *schema;
	char *reason;
	char *row;

	*apart = NULL;
	if (*op == 'd')
		return key;
	row = oversize_large(rel, *op, tuple, mask, unchanged, apart);
	if (row != NULL)
	{
		*op = EVREP_OP_LARGE;
		return CStringGetTextDatum(row);
	}
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

/* Are two values the same one stored out of line (an UPDATE left it alone)? */
static bool
same_stored_value(Datum a, Datum b)
{
	struct varatt_external pa, pb;

	if (!VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(a)) ||
		!VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(b)))
		return false;
	VARATT_EXTERNAL_GET_POINTER(pa, DatumGetPointer(a));
	VARATT_EXTERNAL_GET_POINTER(pb, DatumGetPointer(b));
	return pa.va_valueid == pb.va_valueid && pa.va_toastrelid == pb.va_toastrelid;
}

char *
oversize_unchanged(Relation rel, HeapTuple oldtup, HeapTuple newtup, const bool *mask, bool **sent)
{
	TupleDesc desc = RelationGetDescr(rel);
	bool *keys;
	StringInfoData names;

	if (!HeapTupleHasExternal(newtup) || !OidIsValid(outbox_value_relid()))
		return NULL;
	keys = key_mask(rel);
	*sent = NULL;
	initStringInfo(&names);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool newnull, oldnull;
		Datum newval, oldval;

		if (att->attisdropped || att->attlen != -1 || keys[i] || (mask != NULL && !mask[i]))
			continue;
		newval = heap_getattr(newtup, i + 1, desc, &newnull);
		oldval = heap_getattr(oldtup, i + 1, desc, &oldnull);
		if (newnull || oldnull || !same_stored_value(newval, oldval) ||
			toast_raw_datum_size(newval) - VARHDRSZ < APART_ALWAYS_BYTES)
			continue;
		if (*sent == NULL)
		{
			*sent = palloc(sizeof(bool) * desc->natts);
			for (int k = 0; k < desc->natts; k++)
				(*sent)[k] = mask == NULL || mask[k];
		}
		(*sent)[i] = false;
		appendStringInfoChar(&names, names.len ? ',' : '[');
		escape_json(&names, NameStr(att->attname));
	}
	if (*sent == NULL)
		return NULL;
	appendStringInfoChar(&names, ']');
	return names.data;
}

/* outbox_id, ord, value */
#define OUTBOX_VALUE_NATTS 3

void
oversize_store(int64 outbox_id, const OversizeValues *apart)
{
	Relation rel = table_open(outbox_value_relid(), RowExclusiveLock);

	if (RelationGetDescr(rel)->natts != OUTBOX_VALUE_NATTS)
		elog(ERROR, "evrep.outbox_value does not have the expected %d columns", OUTBOX_VALUE_NATTS);
	for (int i = 0; i < apart->n; i++)
	{
		Datum values[OUTBOX_VALUE_NATTS];
		bool nulls[OUTBOX_VALUE_NATTS] = {0};
		HeapTuple tuple;

		values[0] = Int64GetDatum(outbox_id);
		values[1] = Int32GetDatum(i);
		values[2] = PointerGetDatum(apart->values[i].bytes);
		tuple = heap_form_tuple(RelationGetDescr(rel), values, nulls);
		simple_heap_insert(rel, tuple);
		heap_freetuple(tuple);
	}
	table_close(rel, NoLock);
}
