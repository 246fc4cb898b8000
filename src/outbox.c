/*
 * outbox.c
 *		Publisher side of the outbox: number the rows in commit order, encode
 *		them as wire messages, and delete them once the broker confirmed.
 *
 * Numbers are given by the publisher, not at INSERT time: a transaction
 * that took its outbox id early but committed late is simply numbered in a
 * later round, so subscribers never see a number go backwards and never
 * mistake a late event for a duplicate.  The numbering is committed before
 * the first send; a batch that was numbered but never confirmed is sent
 * again, with the same numbers, before anything new is numbered.
 */
#include "postgres.h"

#include "access/commit_ts.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "evrep.h"
#include "spi_plan.h"
#include "outbox.h"
#include "wire.h"

/* Columns both queries return, in this order. */
#define OUTBOX_COLUMNS \
	"o.id, o.pub_id, o.seq, o.op, o.row_data::text, to_json(o.commit_ts)::text, " \
	"p.schema_name, p.table_name, to_json(p.key_columns)::text"

static const char *const resend_query =
"SELECT " OUTBOX_COLUMNS
" FROM evrep.outbox o JOIN evrep.publication p ON p.id = o.pub_id"
" WHERE o.seq IS NOT NULL ORDER BY o.id LIMIT $1";

/*
 * Numbers the oldest unnumbered rows per publication, continuing each
 * publication's last_seq, and returns them in id order.
 */
static const char *const claim_query =
"WITH todo AS ("
"  SELECT id, pub_id,"
"         row_number() OVER (PARTITION BY pub_id ORDER BY id) AS rn,"
"         CASE WHEN $2 THEN pg_xact_commit_timestamp(xmin) END AS cts"
"  FROM (SELECT id, pub_id, xmin FROM evrep.outbox WHERE seq IS NULL"
"        ORDER BY id LIMIT $1) s),"
" bump AS ("
"  UPDATE evrep.publication p SET last_seq = p.last_seq + c.n"
"  FROM (SELECT pub_id, count(*) AS n FROM todo GROUP BY pub_id) c"
"  WHERE p.id = c.pub_id"
"  RETURNING p.id, p.last_seq - c.n AS base),"
" o AS ("
"  UPDATE evrep.outbox o SET seq = bump.base + todo.rn, commit_ts = todo.cts"
"  FROM todo JOIN bump ON bump.id = todo.pub_id"
"  WHERE o.id = todo.id"
"  RETURNING o.*)"
"SELECT " OUTBOX_COLUMNS
" FROM o JOIN evrep.publication p ON p.id = o.pub_id ORDER BY o.id";

/*
 * True until a round found no numbered-but-unconfirmed rows; spares the
 * resend scan on every round of a healthy publisher.
 */
static bool maybe_unconfirmed = true;

static SPIPlanPtr resend_plan = NULL;
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr remove_plan = NULL;

static char *
column_text(HeapTuple tuple, TupleDesc desc, int col)
{
	return SPI_getvalue(tuple, desc, col);
}

static void
finish_message(OutboxBatch *batch, OutboxMessage *m, StringInfo buf)
{
	wire_end_message(buf);
	m->body = buf->data;
	m->body_len = buf->len;
	batch->messages = lappend(batch->messages, m);
}

/*
 * Turns the SPI result (rows in send order) into messages of consecutive
 * events of one publication, in mcxt.
 */
static OutboxBatch *
build_batch(int max_per_message, MemoryContext mcxt)
{
	TupleDesc	desc = SPI_tuptable->tupdesc;
	MemoryContext old = MemoryContextSwitchTo(mcxt);
	OutboxBatch *batch = palloc0(sizeof(OutboxBatch));
	OutboxMessage *m = NULL;
	StringInfoData buf;
	int32		cur_pub = -1;

	batch->nevents = SPI_processed;
	batch->ids = palloc(sizeof(int64) * SPI_processed);

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		int32		pub = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		int64		seq = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		char		op = DatumGetChar(SPI_getbinval(tup, desc, 4, &isnull));

		batch->ids[i] = id;
		if (m == NULL || pub != cur_pub || m->nevents >= max_per_message)
		{
			char	   *schema = column_text(tup, desc, 7);
			char	   *table = column_text(tup, desc, 8);

			if (m != NULL)
				finish_message(batch, m, &buf);
			m = palloc0(sizeof(OutboxMessage));
			m->routing_key = wire_routing_key(schema, table);
			m->message_id = psprintf("%s/%s.%s/" INT64_FORMAT,
									 evrep_node_name, schema, table, seq);
			initStringInfo(&buf);
			wire_begin_message(&buf, evrep_node_name, schema, table,
							   column_text(tup, desc, 9));
			cur_pub = pub;
		}
		wire_add_event(&buf, m->nevents == 0, seq, op,
					   column_text(tup, desc, 6), column_text(tup, desc, 5));
		m->nevents++;
	}
	if (m != NULL)
		finish_message(batch, m, &buf);

	MemoryContextSwitchTo(old);
	return batch;
}

static void
require_node_name(void)
{
	if (evrep_node_name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evrep.node_name is not set"),
				 errhint("Set evrep.node_name in postgresql.conf to name this node.")));
}

OutboxBatch *
outbox_claim_batch(int max_events, int max_per_message, MemoryContext mcxt)
{
	Oid			argtypes[2] = {INT4OID, BOOLOID};
	Datum		values[2];
	OutboxBatch *batch = NULL;
	int			ret;

	require_node_name();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	values[0] = Int32GetDatum(max_events);
	values[1] = BoolGetDatum(track_commit_timestamp);
	if (maybe_unconfirmed)
	{
		ret = SPI_execute_plan(spi_kept_plan(&resend_plan, resend_query, 1, argtypes),
							   values, NULL, true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read unconfirmed outbox rows: %s",
				 SPI_result_code_string(ret));
		if (SPI_processed > 0)
			batch = build_batch(max_per_message, mcxt);
	}
	if (batch == NULL)
	{
		ret = SPI_execute_plan(spi_kept_plan(&claim_plan, claim_query, 2, argtypes),
							   values, NULL, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not number outbox rows: %s", SPI_result_code_string(ret));
		if (SPI_processed > 0)
			batch = build_batch(max_per_message, mcxt);
	}
	maybe_unconfirmed = (batch != NULL);
	SPI_finish();
	return batch;
}

void
outbox_remove_batch(OutboxBatch *batch)
{
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		values[1];
	Datum	   *ids = palloc(sizeof(Datum) * batch->nevents);
	int			ret;

	for (int i = 0; i < batch->nevents; i++)
		ids[i] = Int64GetDatum(batch->ids[i]);
	values[0] = PointerGetDatum(construct_array(ids, batch->nevents, INT8OID,
												sizeof(int64), FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_plan(spi_kept_plan(&remove_plan,
									 "DELETE FROM evrep.outbox WHERE id = ANY ($1)",
									 1, argtypes),
						   values, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not delete confirmed outbox rows: %s",
			 SPI_result_code_string(ret));
	SPI_finish();
	pfree(ids);
}

/*
 * evrep_claim(max_events): number the next batch and return it as wire
 * messages without sending anything; lets tests and operators see exactly
 * what the publisher would send.
 */
PG_FUNCTION_INFO_V1(evrep_claim);
Datum
evrep_claim(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int32		max_events = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT32(0);
	int32		per_message = PG_ARGISNULL(1) ? evrep_message_events : PG_GETARG_INT32(1);
	OutboxBatch *batch;
	ListCell   *lc;

	if (max_events <= 0 || per_message <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events and events_per_message must be positive")));
	InitMaterializedSRF(fcinfo, 0);
	batch = outbox_claim_batch(max_events, per_message, CurrentMemoryContext);
	if (batch == NULL)
		return (Datum) 0;
	foreach(lc, batch->messages)
	{
		OutboxMessage *m = lfirst(lc);
		Datum		values[3];
		bool		nulls[3] = {0};

		values[0] = CStringGetTextDatum(m->routing_key);
		values[1] = Int32GetDatum(m->nevents);
		values[2] = CStringGetTextDatum(m->body);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
