/*
 * parts_send.c
 *		The publisher's side of large events: their values, in parts.
 *
 * A row too large for one message is captured with its largest values in
 * evrep.outbox_value (oversize.c).  Before the event's own message, each
 * value goes out in parts of at most evrep.max_message_bytes, read with
 * substring from an uncompressed value, so that neither the publisher nor
 * the broker ever holds more than a part of it.  The parts of a resent
 * event are sent again with it; a subscriber stores a part once by where
 * it goes (parts_receive.c).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "evrep.h"
#include "parts_send.h"
#include "spi_plan.h"
#include "spi_util.h"
#include "wire.h"
#include "worker.h"

static SPIPlanPtr sizes_plan = NULL;
static SPIPlanPtr slice_plan = NULL;

/* The sizes of the event's values, in the order of its "values". */
static int64 *
value_sizes(int64 outbox_id, int *n)
{
	Oid argtypes[1] = {INT8OID};
	Datum values[1] = {Int64GetDatum(outbox_id)};
	int64 *sizes;

	*n = (int) spi_check(
		SPI_execute_plan(spi_kept_plan(&sizes_plan,
									   "SELECT pg_catalog.length(value) FROM evrep.outbox_value"
									   " WHERE outbox_id = $1 ORDER BY ord",
									   1, argtypes),
						 values, NULL, true, 0),
		SPI_OK_SELECT, ANY_ROWS, "could not read the values of evrep outbox row " INT64_FORMAT,
		outbox_id);
	sizes = palloc(sizeof(int64) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		bool isnull;

		sizes[i] =
			DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	return sizes;
}

/*
 * A part's message: its header line, then len bytes of value ord from
 * offset.  False if the value is not there to that length (removed by
 * hand): the event then goes without its parts, and subscribers park it.
 */
static bool
part_message(StringInfo buf, const OutboxMessage *m, int ord, int64 offset, int len)
{
	Oid argtypes[4] = {INT8OID, INT4OID, INT4OID, INT4OID};
	Datum values[4];
	bytea *slice;
	bool isnull;

	values[0] = Int64GetDatum(m->large_id);
	values[1] = Int32GetDatum(ord);
	values[2] = Int32GetDatum((int32) (offset + 1));
	values[3] = Int32GetDatum(len);
	if (spi_check(
			SPI_execute_plan(spi_kept_plan(&slice_plan,
										   "SELECT pg_catalog.substr(value, $3, $4) FROM "
										   "evrep.outbox_value WHERE outbox_id = $1 AND ord = $2",
										   4, argtypes),
							 values, NULL, true, 1),
			SPI_OK_SELECT, ANY_ROWS, "could not read a part of evrep outbox row " INT64_FORMAT,
			m->large_id) != 1)
		return false;
	slice =
		DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (VARSIZE_ANY_EXHDR(slice) != len)
		return false;
	wire_part_header(buf, evrep_node_name, m->schema, m->table, m->incarnation, m->large_seq, ord,
					 offset, len);
	appendBinaryStringInfo(buf, VARDATA_ANY(slice), len);
	return true;
}

/* One transaction, around what f does with SPI connected. */
static void
in_transaction(void (*f)(void *), void *arg)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	spi_connect();
	f(arg);
	SPI_finish();
	PopActiveSnapshot();
	worker_commit();
}

typedef struct PartsRead
{
	const OutboxMessage *m;
	MemoryContext cxt; /* the caller's, where the results go */
	int nvalues;
	int64 *sizes;
	/* the part to read: */
	int ord;
	int64 offset;
	int len;
	StringInfo buf; /* allocated in cxt */
	bool found;		/* the part was there */
} PartsRead;

static void
read_sizes(void *arg)
{
	PartsRead *r = arg;
	int64 *sizes = value_sizes(r->m->large_id, &r->nvalues);

	r->sizes = MemoryContextAlloc(r->cxt, sizeof(int64) * Max(r->nvalues, 1));
	memcpy(r->sizes, sizes, sizeof(int64) * r->nvalues);
}

static void
read_part(void *arg)
{
	PartsRead *r = arg;

	/* buf grows where it was made, past SPI_finish */
	r->found = part_message(r->buf, r->m, r->ord, r->offset, r->len);
}

bool
parts_send(BrokerConn *conn, const OutboxMessage *m)
{
	PartsRead r = {0};
	int part_bytes = evrep_max_message_bytes - EVREP_ENVELOPE_BYTES;
	MemoryContext cxt =
		AllocSetContextCreate(CurrentMemoryContext, "evrep parts", ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	StringInfoData buf;
	bool ok = true;

	r.m = m;
	r.cxt = cxt;
	in_transaction(read_sizes, &r);
	initStringInfo(&buf);
	r.buf = &buf;
	for (r.ord = 0; r.ord < r.nvalues && ok; r.ord++)
	{
		for (r.offset = 0; r.offset < r.sizes[r.ord] && ok; r.offset += r.len)
		{
			char *id;

			r.len = (int) Min((int64) part_bytes, r.sizes[r.ord] - r.offset);
			resetStringInfo(&buf);
			in_transaction(read_part, &r);
			if (!r.found)
			{
				ereport(WARNING,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("evrep outbox row " INT64_FORMAT " has no value %d of " INT64_FORMAT
								" bytes in evrep.outbox_value",
								m->large_id, r.ord, r.sizes[r.ord]),
						 errdetail("Its event is sent without it; subscribers park it.")));
				break;
			}
			id = psprintf("%s/%s.%s/" INT64_FORMAT "/%d/" INT64_FORMAT, evrep_node_name, m->schema,
						  m->table, m->large_seq, r.ord, r.offset);
			pgstat_report_activity(STATE_RUNNING, id);
			ok = broker_publish(conn, m->routing_key, buf.data, buf.len, id) == BROKER_OK &&
				 broker_poll(conn) == BROKER_OK;
			pfree(id);
		}
	}
	pfree(r.sizes);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return ok;
}
