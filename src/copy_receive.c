/*
 * copy_receive.c
 *		Subscriber side of a copy of existing rows: the requests, and the
 *		bookkeeping of the chunks applied (evrep.sync).
 *
 * The consumer sends a request only once its queue is bound to the table,
 * so every change the origin numbers after the first chunk reaches us.  A
 * request is repeated until the first chunk arrives: it may have found no
 * origin bound yet, or a broker that lost it.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "copy_receive.h"
#include "evrep.h"
#include "incarnation.h"
#include "spi_plan.h"
#include "spi_util.h"

/* Seconds between sendings of a request no chunk has answered yet. */
#define REQUEST_RETRY_S "10"

static SPIPlanPtr due_plan[2];
static SPIPlanPtr sent_plan = NULL;
static SPIPlanPtr request_plan = NULL;
static SPIPlanPtr chunk_plan = NULL;

/*
 * [1], on a 1.1 catalog, with the history this node follows of each origin
 * of the table, so that only an origin in that history answers.
 */
static const char *const due_query[2] = {
	"SELECT schema_name, table_name, request_id, NULL::text FROM evrep.sync"
	" WHERE phase = 'requested' AND (request_sent_at IS NULL OR request_sent_at <"
	" pg_catalog.now() - interval '" REQUEST_RETRY_S " s') ORDER BY requested_at",
	"SELECT s.schema_name, s.table_name, s.request_id,"
	" (SELECT pg_catalog.json_object_agg(g.origin, g.incarnation) FROM evrep.progress g"
	"  WHERE g.schema_name = s.schema_name AND g.table_name = s.table_name"
	"  AND g.incarnation IS NOT NULL)::text"
	" FROM evrep.sync s"
	" WHERE s.phase = 'requested' AND (s.request_sent_at IS NULL OR s.request_sent_at <"
	" pg_catalog.now() - interval '" REQUEST_RETRY_S " s') ORDER BY s.requested_at"};

static const char *const sent_query =
	"UPDATE evrep.sync SET request_sent_at = pg_catalog.now()"
	" WHERE schema_name = $1 AND table_name = $2 AND request_id = $3";

static const char *const request_query =
	"SELECT request_id FROM evrep.sync WHERE schema_name = $1 AND table_name = $2"
	" AND phase IN ('requested', 'copying')";

static const char *const chunk_query =
	"UPDATE evrep.sync SET phase = CASE WHEN $4 THEN 'done' ELSE 'copying' END, origin = $5,"
	" rows_copied = rows_copied + $6, chunks = chunks + 1, rows_estimated = nullif($7, 0),"
	" started_at = coalesce(started_at, pg_catalog.clock_timestamp()),"
	" finished_at = CASE WHEN $4 THEN pg_catalog.clock_timestamp() END,"
	" last_chunk_at = pg_catalog.clock_timestamp()"
	" WHERE schema_name = $1 AND table_name = $2 AND request_id = $3";

List *
copy_requests_due(void)
{
	MemoryContext caller = CurrentMemoryContext;
	List *due = NIL;
	int hist = history_catalog() ? 1 : 0;

	spi_connect();
	spi_check(SPI_execute_plan(spi_kept_plan(&due_plan[hist], due_query[hist], 0, NULL), NULL, NULL,
							   true, 0),
			  SPI_OK_SELECT, ANY_ROWS, "could not read evrep copy requests");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple tup = SPI_tuptable->vals[i];
		TupleDesc desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(caller);
		CopyRequest *req = palloc(sizeof(CopyRequest));
		bool isnull;

		req->schema = SPI_getvalue(tup, desc, 1);
		req->table = SPI_getvalue(tup, desc, 2);
		req->request_id = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		req->routing_key = wire_copy_request_key(req->schema, req->table);
		req->body = wire_copy_request(evrep_node_name, req->schema, req->table, req->request_id,
									  SPI_getvalue(tup, desc, 4));
		due = lappend(due, req);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return due;
}

void
copy_request_sent(const CopyRequest *req)
{
	Datum values[3];

	values[0] = CStringGetTextDatum(req->schema);
	values[1] = CStringGetTextDatum(req->table);
	values[2] = Int64GetDatum(req->request_id);
	spi_connect();
	spi_check(SPI_execute_plan(
				  spi_kept_plan(&sent_plan, sent_query, 3, (Oid[]){TEXTOID, TEXTOID, INT8OID}),
				  values, NULL, false, 0),
			  SPI_OK_UPDATE, ANY_ROWS, "could not note an evrep copy request as sent");
	SPI_finish();
	ereport(
		LOG,
		(errmsg("evrep: asked the origin of \"%s\".\"%s\" for a copy (request " INT64_FORMAT ")",
				req->schema, req->table, req->request_id)));
}

int64
copy_current_request(const char *schema, const char *table)
{
	Datum values[2];
	bool isnull;

	values[0] = CStringGetTextDatum(schema);
	values[1] = CStringGetTextDatum(table);
	if (spi_check(SPI_execute_plan(
					  spi_kept_plan(&request_plan, request_query, 2, (Oid[]){TEXTOID, TEXTOID}),
					  values, NULL, true, 1),
				  SPI_OK_SELECT, ANY_ROWS, "could not read evrep copy state") == 0)
		return 0;
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

void
copy_chunk_applied(const WireMessage *msg, const WireEvent *ev)
{
	const WireCopy *copy = ev->copy;
	Datum values[7];

	values[0] = CStringGetTextDatum(msg->schema);
	values[1] = CStringGetTextDatum(msg->table);
	values[2] = Int64GetDatum(copy->request_id);
	values[3] = BoolGetDatum(copy->upto == NULL);
	values[4] = CStringGetTextDatum(msg->origin);
	values[5] = Int64GetDatum(copy->nrows);
	values[6] = Int64GetDatum(copy->estimate);
	spi_check(SPI_execute_plan(spi_kept_plan(&chunk_plan, chunk_query, 7,
											 (Oid[]){TEXTOID, TEXTOID, INT8OID, BOOLOID, TEXTOID,
													 INT8OID, INT8OID}),
							   values, NULL, false, 0),
			  SPI_OK_UPDATE, ANY_ROWS, "could not record an evrep copy chunk");
	if (copy->upto == NULL)
		ereport(LOG, (errmsg("evrep: copy of \"%s\".\"%s\" from \"%s\" done", msg->schema,
							 msg->table, msg->origin)));
}
