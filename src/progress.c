/*
 * progress.c
 *		Apply progress of one (origin, schema, table) stream.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "progress.h"
#include "spi_plan.h"

static SPIPlanPtr load_plan = NULL;
static SPIPlanPtr save_plan = NULL;

/* FOR UPDATE: two sessions applying one stream must not both claim a seq. */
static const char *const load_query =
	"SELECT last_seq, gaps FROM evrep.progress"
	" WHERE origin = $1 AND schema_name = $2 AND table_name = $3 FOR UPDATE";

static const char *const save_query =
	"INSERT INTO evrep.progress AS g (origin, schema_name, table_name, last_seq, gaps,"
	" applied, skipped, parked, unknown_column_events, last_commit_ts, last_applied_at)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, $9, pg_catalog.clock_timestamp())"
	" ON CONFLICT (origin, schema_name, table_name) DO UPDATE"
	" SET last_seq = EXCLUDED.last_seq, gaps = EXCLUDED.gaps,"
	" applied = g.applied + EXCLUDED.applied,"
	" skipped = g.skipped + EXCLUDED.skipped,"
	" parked = g.parked + EXCLUDED.parked,"
	" unknown_column_events = g.unknown_column_events + EXCLUDED.unknown_column_events,"
	" last_commit_ts = coalesce(EXCLUDED.last_commit_ts, g.last_commit_ts),"
	" last_applied_at = EXCLUDED.last_applied_at";

void
progress_load(const WireMessage *msg, StreamProgress *p)
{
	Oid argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum values[3];
	int ret;

	memset(p, 0, sizeof(StreamProgress));
	values[0] = CStringGetTextDatum(msg->origin);
	values[1] = CStringGetTextDatum(msg->schema);
	values[2] = CStringGetTextDatum(msg->table);
	ret = SPI_execute_plan(spi_kept_plan(&load_plan, load_query, 3, argtypes), values, NULL, false,
						   1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read evrep progress: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		HeapTuple tup = SPI_tuptable->vals[0];
		TupleDesc desc = SPI_tuptable->tupdesc;
		bool isnull;
		Datum *elems;
		int n;

		p->exists = true;
		p->last_seq = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 2, &isnull)), INT8OID,
						  sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, NULL, &n);
		p->ngaps = n / 2;
		p->gaps = palloc(sizeof(int64) * (n + 2));
		for (int i = 0; i < n; i++)
			p->gaps[i] = DatumGetInt64(elems[i]);
	}
	else
		p->gaps = palloc(sizeof(int64) * 2);
}

void
progress_save(const WireMessage *msg, StreamProgress *p)
{
	Oid argtypes[10] = {TEXTOID, TEXTOID, TEXTOID, INT8OID,		   INT8ARRAYOID,
						INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID, INT8OID};
	Datum values[10];
	char nulls[10] = "          ";
	Datum *elems = palloc(sizeof(Datum) * (p->ngaps * 2 + 1));
	int ret;

	for (int i = 0; i < p->ngaps * 2; i++)
		elems[i] = Int64GetDatum(p->gaps[i]);
	values[0] = CStringGetTextDatum(msg->origin);
	values[1] = CStringGetTextDatum(msg->schema);
	values[2] = CStringGetTextDatum(msg->table);
	values[3] = Int64GetDatum(p->last_seq);
	values[4] = PointerGetDatum(construct_array(elems, p->ngaps * 2, INT8OID, sizeof(int64),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[5] = Int64GetDatum(p->applied);
	values[6] = Int64GetDatum(p->skipped);
	values[7] = Int64GetDatum(p->parked);
	values[8] = TimestampTzGetDatum(p->last_commit_ts);
	values[9] = Int64GetDatum(p->unknown_columns);
	if (p->last_commit_ts == 0)
		nulls[8] = 'n';

	ret = SPI_execute_plan(spi_kept_plan(&save_plan, save_query, 10, argtypes), values, nulls,
						   false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not save evrep progress: %s", SPI_result_code_string(ret));
}

/* Makes room for one more gap. */
static void
add_gap(StreamProgress *p, int64 lo, int64 hi)
{
	p->gaps = repalloc(p->gaps, sizeof(int64) * (p->ngaps * 2 + 2));
	p->gaps[p->ngaps * 2] = lo;
	p->gaps[p->ngaps * 2 + 1] = hi;
	p->ngaps++;
}

bool
progress_claim(StreamProgress *p, int64 seq)
{
	if (seq > p->last_seq)
	{
		if (seq > p->last_seq + 1)
			add_gap(p, p->last_seq + 1, seq - 1);
		p->last_seq = seq;
		return true;
	}
	for (int i = 0; i < p->ngaps; i++)
	{
		int64 lo = p->gaps[2 * i], hi = p->gaps[2 * i + 1];

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
			p->gaps[2 * i + 1] = seq - 1;
			add_gap(p, seq + 1, hi);
		}
		return true;
	}
	return false;
}

void
progress_forget_below(StreamProgress *p, int64 seq)
{
	int kept = 0;

	for (int i = 0; i < p->ngaps; i++)
	{
		int64 lo = p->gaps[2 * i], hi = p->gaps[2 * i + 1];

		if (lo >= seq)
		{
			p->gaps[2 * kept] = lo;
			p->gaps[2 * kept + 1] = hi;
			kept++;
		}
		else if (hi >= seq)
		{
			p->gaps[2 * kept] = seq;
			p->gaps[2 * kept + 1] = hi;
			kept++;
		}
	}
	p->ngaps = kept;
}
