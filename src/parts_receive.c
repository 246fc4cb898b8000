/*
 * parts_receive.c
 *		The subscriber's side of large events: parts kept until their event.
 *
 * The parts of a large event's values arrive before the event, each in a
 * message of its own (parts_send.c).  Each is kept in evrep.inbox_part in
 * the transaction that acks it, so the consumer holds no more than a
 * message at a time; a part delivered again is kept once, by where its
 * bytes go, and a resend of the event starts over.  When the event comes, its values are
 * put together from the parts, the one value at a time in memory, and
 * the parts go in the transaction that applies it; a parked event keeps
 * them for its replay.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "parts_receive.h"
#include "spi_plan.h"
#include "spi_util.h"

static SPIPlanPtr keep_plan = NULL;
static SPIPlanPtr list_plan = NULL;
static SPIPlanPtr read_plan = NULL;
static SPIPlanPtr forget_plan = NULL;

/* origin, schema_name, table_name, incarnation, seq: the event's parts */
#define EVENT_ARGS 5
#define EVENT_WHERE                                                                                \
	"origin = $1 AND schema_name = $2 AND table_name = $3 AND incarnation = $4 AND seq = $5"

static void
event_args(Datum *values, Oid *types, const char *origin, const char *schema, const char *table,
		   int64 incarnation, int64 seq)
{
	values[0] = CStringGetTextDatum(origin);
	values[1] = CStringGetTextDatum(schema);
	values[2] = CStringGetTextDatum(table);
	values[3] = Int64GetDatum(incarnation);
	values[4] = Int64GetDatum(seq);
	types[0] = types[1] = types[2] = TEXTOID;
	types[3] = types[4] = INT8OID;
}

/* A 1.0 catalog, under a 1.1 library until ALTER EXTENSION evrep UPDATE, has no inbox_part. */
static bool
have_inbox(void)
{
	Oid nspid = get_namespace_oid("evrep", true);

	return OidIsValid(nspid) && OidIsValid(get_relname_relid("inbox_part", nspid));
}

static void
require_inbox(void)
{
	if (!have_inbox())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("this node's evrep catalog cannot keep parts of large values"),
				 errhint("Run ALTER EXTENSION evrep UPDATE, then resync the tables whose large "
						 "events were parked.")));
}

static void
forget_event(const char *origin, const char *schema, const char *table, int64 incarnation,
			 int64 seq)
{
	Datum args[EVENT_ARGS];
	Oid types[EVENT_ARGS];

	event_args(args, types, origin, schema, table, incarnation, seq);
	spi_check(SPI_execute_plan(spi_kept_plan(&forget_plan,
											 "DELETE FROM evrep.inbox_part WHERE " EVENT_WHERE,
											 EVENT_ARGS, types),
							   args, NULL, false, 0),
			  SPI_OK_DELETE, ANY_ROWS, "could not forget the parts of an evrep event");
}

void
parts_keep(const WirePart *part)
{
	Datum values[EVENT_ARGS + 3];
	Oid types[EVENT_ARGS + 3];
	bytea *data;

	require_inbox();

	/*
	 * A sender sends every part of an event, in order, each time it sends
	 * the event: its first part drops what an earlier send left.  Kept,
	 * parts of the same number from a history that went back without a
	 * trace (a file-system snapshot restored between a value's parts and
	 * its event) would be put together with the new ones.
	 */
	if (part->value == 0 && part->offset == 0)
		forget_event(part->origin, part->schema, part->table, part->incarnation, part->seq);
	data = palloc(part->len + VARHDRSZ);

	SET_VARSIZE(data, part->len + VARHDRSZ);
	memcpy(VARDATA(data), part->data, part->len);
	event_args(values, types, part->origin, part->schema, part->table, part->incarnation,
			   part->seq);
	values[5] = Int32GetDatum(part->value);
	values[6] = Int64GetDatum(part->offset);
	values[7] = PointerGetDatum(data);
	types[5] = INT4OID;
	types[6] = INT8OID;
	types[7] = BYTEAOID;
	spi_check(SPI_execute_plan(spi_kept_plan(&keep_plan,
											 "INSERT INTO evrep.inbox_part (origin, schema_name,"
											 " table_name, incarnation, seq, ord, off, data)"
											 " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
											 " ON CONFLICT DO NOTHING",
											 EVENT_ARGS + 3, types),
							   values, NULL, false, 0),
			  SPI_OK_INSERT, ANY_ROWS, "could not keep a part of an evrep event");
	pfree(data);
}

/*
 * The offsets of the parts that make value ord whole, in order: one part
 * per offset, the next starting where the one before ended.  NULL, with *have the bytes found from
 * the start, if a part is missing.
 */
static int64 *
part_chain(Datum *args, Oid *types, int ord, int64 bytes, int *nparts, int64 *have)
{
	int64 *offs;
	uint64 n;

	args[EVENT_ARGS] = Int32GetDatum(ord);
	types[EVENT_ARGS] = INT4OID;
	n = spi_check(SPI_execute_plan(spi_kept_plan(&list_plan,
												 "SELECT off, pg_catalog.length(data) FROM"
												 " evrep.inbox_part WHERE " EVENT_WHERE
												 " AND ord = $6 ORDER BY off, 2 DESC",
												 EVENT_ARGS + 1, types),
								   args, NULL, true, 0),
				  SPI_OK_SELECT, ANY_ROWS, "could not read the parts of an evrep event");
	offs = palloc(sizeof(int64) * (n + 1));
	*nparts = 0;
	*have = 0;
	for (uint64 i = 0; i < n && *have < bytes; i++)
	{
		bool isnull;
		int64 off =
			DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		int32 len =
			DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));

		if (off != *have || len == 0)
			continue;
		offs[(*nparts)++] = off;
		*have += len;
	}
	return *have == bytes ? offs : NULL;
}

/* Copies the parts at offs into buf, each read alone. */
static void
read_parts(Datum *args, Oid *types, const int64 *offs, int nparts, char *buf, int64 bytes)
{
	types[EVENT_ARGS + 1] = INT8OID;
	for (int i = 0; i < nparts; i++)
	{
		bool isnull;
		Datum raw;
		bytea *data;
		int64 len;

		args[EVENT_ARGS + 1] = Int64GetDatum(offs[i]);
		spi_check(
			SPI_execute_plan(spi_kept_plan(&read_plan,
										   "SELECT data FROM evrep.inbox_part WHERE " EVENT_WHERE
										   " AND ord = $6 AND off = $7",
										   EVENT_ARGS + 2, types),
							 args, NULL, true, 1),
			SPI_OK_SELECT, 1, "could not read a part of an evrep event");
		raw = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		data = DatumGetByteaPP(raw);
		len = VARSIZE_ANY_EXHDR(data);
		if (offs[i] + len > bytes)
			elog(ERROR, "evrep part at " INT64_FORMAT " passes the value's end", offs[i]);
		memcpy(buf + offs[i], VARDATA_ANY(data), len);
		if ((Pointer) data != DatumGetPointer(raw))
			pfree(data);
		SPI_freetuptable(SPI_tuptable);
	}
}

static char *
collect_value(const WireMessage *msg, const WireEvent *ev, int ord, MemoryContext cxt)
{
	const WireLargeValue *v = &ev->large->values[ord];
	Datum args[EVENT_ARGS + 2];
	Oid types[EVENT_ARGS + 2];
	int64 *offs;
	int nparts;
	int64 have;
	char *value;
	char *data;

	event_args(args, types, msg->origin, msg->schema, msg->table, msg->incarnation.id, ev->seq);
	offs = part_chain(args, types, ord, v->bytes, &nparts, &have);
	if (offs == NULL)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("evrep has " INT64_FORMAT " of the " INT64_FORMAT
							   " bytes of column \"%s\" of event " INT64_FORMAT,
							   have, v->bytes, v->column, ev->seq),
						errdetail("The origin sends a large value in parts before its event; some "
								  "are missing from evrep.inbox_part."),
						errhint("Replay the dead letter once the origin sent the event again, or "
								"resync the table.")));
	/*
	 * The one value being built, a varlena (a bytea, or a text) whose text
	 * form is also a C string: a text column takes it as it is.
	 */
	value = MemoryContextAllocHuge(cxt, v->bytes + VARHDRSZ + 1);
	SET_VARSIZE(value, v->bytes + VARHDRSZ);
	data = VARDATA(value);
	read_parts(args, types, offs, nparts, data, v->bytes);
	data[v->bytes] = '\0';
	if (v->bytea)
		return value;
	if (memchr(data, '\0', v->bytes) != NULL)
		ereport(ERROR, (errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						errmsg("the text form of column \"%s\" of event " INT64_FORMAT
							   " contains a zero byte",
							   v->column, ev->seq)));
	pg_verify_mbstr(GetDatabaseEncoding(), data, v->bytes, false);
	return value;
}

PartsValue *
parts_collect(const WireMessage *msg, const WireEvent *ev)
{
	/* past SPI_finish of the caller's statements: the caller's context */
	MemoryContext cxt = CurrentMemoryContext;
	PartsValue *values = palloc(sizeof(PartsValue) * ev->large->nvalues);

	require_inbox();

	for (int i = 0; i < ev->large->nvalues; i++)
	{
		values[i].value = &ev->large->values[i];
		values[i].bytes = collect_value(msg, ev, i, cxt);
	}
	return values;
}

void
parts_forget(const WireMessage *msg, const WireEvent *ev)
{
	if (have_inbox())
		forget_event(msg->origin, msg->schema, msg->table, msg->incarnation.id, ev->seq);
}
