/*
 * progress.c
 *		Apply progress of one (origin, schema, table) stream.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "incarnation.h"
#include "progress.h"
#include "spi_plan.h"
#include "spi_util.h"

/* [0] for a 1.0 catalog, [1] for 1.1 (histories); see incarnation.h */
static SPIPlanPtr load_plan[2];
static SPIPlanPtr save_plan[2];

/* FOR UPDATE: two sessions applying one stream must not both claim a seq. */
static const char *const load_query[2] = {
	"SELECT last_seq, gaps, NULL::int8, NULL::pg_catalog.pg_lsn, NULL::int8, NULL::int8,"
	" NULL::text, NULL::text, NULL::int8, NULL::int8, NULL::timestamptz FROM evrep.progress"
	" WHERE origin = $1 AND schema_name = $2 AND table_name = $3 FOR UPDATE",
	"SELECT last_seq, gaps, incarnation, last_lsn, prev_incarnation, prev_last_seq,"
	" history_reason, repair, repair_request, base_seq, gaps_since FROM evrep.progress"
	" WHERE origin = $1 AND schema_name = $2 AND table_name = $3 FOR UPDATE"};

#define SAVE_COMMON                                                                                \
	" ON CONFLICT (origin, schema_name, table_name) DO UPDATE"                                     \
	" SET last_seq = EXCLUDED.last_seq, gaps = EXCLUDED.gaps,"                                     \
	" applied = g.applied + EXCLUDED.applied,"                                                     \
	" skipped = g.skipped + EXCLUDED.skipped,"                                                     \
	" parked = g.parked + EXCLUDED.parked,"                                                        \
	" unknown_column_events = g.unknown_column_events + EXCLUDED.unknown_column_events,"           \
	" last_commit_ts = coalesce(EXCLUDED.last_commit_ts, g.last_commit_ts),"                       \
	" last_applied_at = EXCLUDED.last_applied_at"

static const char *const save_query[2] = {
	"INSERT INTO evrep.progress AS g (origin, schema_name, table_name, last_seq, gaps,"
	" applied, skipped, parked, unknown_column_events, last_commit_ts, last_applied_at)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, $9, pg_catalog.clock_timestamp())" SAVE_COMMON,
	"INSERT INTO evrep.progress AS g (origin, schema_name, table_name, last_seq, gaps,"
	" applied, skipped, parked, unknown_column_events, last_commit_ts, last_applied_at,"
	" incarnation, last_lsn, prev_incarnation, prev_last_seq, history_reason, repair,"
	" repair_request, history_changed_at, base_seq, gaps_since)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, $9, pg_catalog.clock_timestamp(),"
	" $11, $12, $13, $14, $15, $16, $17,"
	" CASE WHEN $18 THEN pg_catalog.clock_timestamp() END, $19, $20)" SAVE_COMMON
	", incarnation = EXCLUDED.incarnation, last_lsn = EXCLUDED.last_lsn,"
	" prev_incarnation = EXCLUDED.prev_incarnation, prev_last_seq = EXCLUDED.prev_last_seq,"
	" history_reason = EXCLUDED.history_reason, repair = EXCLUDED.repair,"
	" repair_request = EXCLUDED.repair_request, base_seq = EXCLUDED.base_seq,"
	" gaps_since = EXCLUDED.gaps_since,"
	" history_changed_at = coalesce(EXCLUDED.history_changed_at, g.history_changed_at)"};

static int64
get_int8_or_zero(HeapTuple tup, TupleDesc desc, int col)
{
	bool isnull;
	Datum d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

static void
load_history(StreamProgress *p, HeapTuple tup, TupleDesc desc)
{
	bool isnull;
	Datum lsn = SPI_getbinval(tup, desc, 4, &isnull);
	Datum gaps_since;

	p->incarnation = get_int8_or_zero(tup, desc, 3);
	p->last_lsn = isnull ? InvalidXLogRecPtr : DatumGetLSN(lsn);
	p->prev_incarnation = get_int8_or_zero(tup, desc, 5);
	p->prev_last_seq = get_int8_or_zero(tup, desc, 6);
	p->history_reason = SPI_getvalue(tup, desc, 7);
	p->repair = SPI_getvalue(tup, desc, 8);
	p->repair_request = get_int8_or_zero(tup, desc, 9);
	p->base_seq = get_int8_or_zero(tup, desc, 10);
	gaps_since = SPI_getbinval(tup, desc, 11, &isnull);
	p->gaps_since = isnull ? 0 : DatumGetTimestampTz(gaps_since);
}

void
progress_load(const WireMessage *msg, StreamProgress *p)
{
	Oid argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum values[3];
	int hist = history_catalog() ? 1 : 0;

	memset(p, 0, sizeof(StreamProgress));
	p->history = hist == 1;
	values[0] = CStringGetTextDatum(msg->origin);
	values[1] = CStringGetTextDatum(msg->schema);
	values[2] = CStringGetTextDatum(msg->table);
	if (spi_check(SPI_execute_plan(spi_kept_plan(&load_plan[hist], load_query[hist], 3, argtypes),
								   values, NULL, false, 1),
				  SPI_OK_SELECT, ANY_ROWS, "could not read evrep progress") == 1)
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
		load_history(p, tup, desc);
	}
	else
		p->gaps = palloc(sizeof(int64) * 2);
}

/* Parameters $11.. of the 1.1 save query; 0 and NULL are stored as NULL. */
static void
save_history(StreamProgress *p, Datum *values, char *nulls)
{
	values[10] = Int64GetDatum(p->incarnation);
	values[11] = LSNGetDatum(p->last_lsn);
	values[12] = Int64GetDatum(p->prev_incarnation);
	values[13] = Int64GetDatum(p->prev_last_seq);
	values[14] = p->history_reason ? CStringGetTextDatum(p->history_reason) : (Datum) 0;
	values[15] = p->repair ? CStringGetTextDatum(p->repair) : (Datum) 0;
	values[16] = Int64GetDatum(p->repair_request);
	values[17] = BoolGetDatum(p->history_changed);
	nulls[10] = p->incarnation ? ' ' : 'n';
	nulls[11] = p->last_lsn != InvalidXLogRecPtr ? ' ' : 'n';
	nulls[12] = p->prev_incarnation ? ' ' : 'n';
	nulls[13] = p->prev_incarnation ? ' ' : 'n';
	nulls[14] = p->history_reason ? ' ' : 'n';
	nulls[15] = p->repair ? ' ' : 'n';
	nulls[16] = p->repair_request ? ' ' : 'n';
	/* gaps keep the time the first of them opened until none is left */
	if (p->ngaps == 0)
		p->gaps_since = 0;
	else if (p->gaps_since == 0)
		p->gaps_since = GetCurrentTimestamp();
	values[18] = Int64GetDatum(p->base_seq);
	values[19] = TimestampTzGetDatum(p->gaps_since);
	nulls[18] = p->base_seq ? ' ' : 'n';
	nulls[19] = p->gaps_since ? ' ' : 'n';
}

void
progress_save(const WireMessage *msg, StreamProgress *p)
{
	Oid argtypes[20] = {TEXTOID, TEXTOID,	TEXTOID, INT8OID,		 INT8ARRAYOID,
						INT8OID, INT8OID,	INT8OID, TIMESTAMPTZOID, INT8OID,
						INT8OID, PG_LSNOID, INT8OID, INT8OID,		 TEXTOID,
						TEXTOID, INT8OID,	BOOLOID, INT8OID,		 TIMESTAMPTZOID};
	Datum values[20];
	char nulls[20] = "                    ";
	int hist = history_catalog() ? 1 : 0;
	Datum *elems = palloc(sizeof(Datum) * (p->ngaps * 2 + 1));

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
	save_history(p, values, nulls);

	spi_check(SPI_execute_plan(
				  spi_kept_plan(&save_plan[hist], save_query[hist], hist ? 20 : 10, argtypes),
				  values, nulls, false, 0),
			  SPI_OK_INSERT, ANY_ROWS, "could not save evrep progress");
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
	/* what came before a stream's first number here was never sent to us */
	if (p->base_seq == 0)
		p->base_seq = seq;
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

	p->base_seq = Max(p->base_seq, seq);
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

/* The numbers the message's events carry, lowest and highest. */
static void
seq_range(const WireMessage *msg, int64 *lo, int64 *hi)
{
	*lo = PG_INT64_MAX;
	*hi = 0;
	for (int i = 0; i < msg->nevents; i++)
	{
		*lo = Min(*lo, msg->events[i].seq);
		*hi = Max(*hi, msg->events[i].seq);
	}
}

HistoryVerdict
progress_follow_history(StreamProgress *p, const WireMessage *msg)
{
	const WireIncarnation *inc = &msg->incarnation;
	int64 lo, hi;
	bool diverged;

	if (!p->history || inc->id == 0 || inc->id == p->incarnation)
		return HISTORY_SAME;
	seq_range(msg, &lo, &hi);
	if (p->incarnation != 0 && inc->id < p->incarnation)
	{
		if (inc->id == p->prev_incarnation && hi <= p->prev_last_seq)
			return HISTORY_OLD_DUPLICATE;
		return HISTORY_OLD_ALIVE;
	}

	/*
	 * A newer history, or the first this stream hears of: progress kept on
	 * a 1.0 catalog, or from 1.0 senders, knows no history to compare with
	 * and takes this one as its own.
	 */
	diverged = p->exists && p->incarnation != 0 && p->last_seq >= inc->since;
	p->prev_incarnation = p->incarnation;
	p->prev_last_seq = p->last_seq;
	p->incarnation = inc->id;
	p->last_lsn = InvalidXLogRecPtr; /* positions of another history do not compare */
	if (p->exists)
	{
		p->history_changed = true;
		p->history_reason = inc->reason ? pstrdup(inc->reason) : NULL;
	}
	if (!diverged)
		return HISTORY_FOLLOWED;

	/* the numbers from the fork on name other events now: expect them again */
	p->last_seq = inc->since - 1;
	for (int i = 0; i < p->ngaps; i++)
		p->gaps[2 * i + 1] = Min(p->gaps[2 * i + 1], p->last_seq);
	{
		int kept = 0;

		for (int i = 0; i < p->ngaps; i++)
		{
			if (p->gaps[2 * i] > p->gaps[2 * i + 1])
				continue;
			p->gaps[2 * kept] = p->gaps[2 * i];
			p->gaps[2 * kept + 1] = p->gaps[2 * i + 1];
			kept++;
		}
		p->ngaps = kept;
	}
	return HISTORY_DIVERGED;
}

bool
progress_went_back(StreamProgress *p, const WireMessage *msg, int64 old_last_seq, bool duplicates)
{
	int64 lo, hi;
	bool back = false;

	if (!p->history || msg->lsn == InvalidXLogRecPtr)
		return false;
	seq_range(msg, &lo, &hi);
	if (p->last_lsn != InvalidXLogRecPtr)
	{
		/* new numbers from an older position, or old numbers from a newer one */
		if (hi > old_last_seq && msg->lsn < p->last_lsn)
			back = true;
		else if (duplicates && msg->lsn > p->last_lsn)
			back = true;
	}
	/* the position of last_seq: a message without a new number says nothing of it */
	if (back || hi > old_last_seq)
		p->last_lsn = msg->lsn;
	return back;
}

bool
progress_hole(const StreamProgress *p, int after_ms, int64 *lo, int64 *hi)
{
	bool found = false;

	if (!p->history || p->gaps_since == 0 ||
		!TimestampDifferenceExceeds(p->gaps_since, GetCurrentTimestamp(), after_ms))
		return false;
	for (int i = 0; i < p->ngaps; i++)
	{
		if (p->gaps[2 * i + 1] < p->base_seq || (found && p->gaps[2 * i] > *lo))
			continue;
		*lo = Max(p->gaps[2 * i], p->base_seq);
		*hi = p->gaps[2 * i + 1];
		found = true;
	}
	return found;
}
