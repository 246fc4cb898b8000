/*
 * outbox_window.c
 *		Numbering an outbox whose rows are written once (catalog 1.1).
 *
 * Capture inserts each row with its writer's top-level transaction id, and
 * nothing updates or deletes it afterwards.  The publisher numbers rows in
 * batches, as PgQ does: a window is the rows of the transactions that
 * committed between two snapshots (visible in hi, not in lo), so a
 * transaction that took its ids early and committed late falls into the
 * window of its commit, after everything that committed before it.  Inside
 * a window rows go in id order: two changes of one key are ordered by the
 * row lock the second waited for before it took its id.  A window too
 * large for one batch is cut into id ranges.
 *
 * Each batch is one row of evrep.outbox_batch, committed before the first
 * send: the window's snapshots, the id range and each publication's first
 * number.  Every number is derived from it again, identically, after a
 * crash or a reconnect; a confirmed batch is marked so and the rows before
 * it are deleted.  Captured rows go with their partition's TRUNCATE
 * (outbox.c), once every row in it is in a confirmed batch.
 */
#include "postgres.h"

#include "access/commit_ts.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/pg_lsn.h"
#include "utils/xid8.h"

#include "capture.h"
#include "evrep.h"
#include "outbox_int.h"
#include "spi_plan.h"
#include "spi_util.h"

/* The newest batch, and the window it belongs to. */
typedef struct Window
{
	int64 batch_id; /* 0: no batch yet */
	Datum lo;		/* pg_snapshot; 0: the first window */
	Datum hi;
	int64 upto_id;	  /* the rows up to here are numbered */
	int64 window_low; /* no row of the window has an id at or below it */
	int64 next_low;	  /* no row of a later window has an id at or below it */
	bool done;		  /* every row of the window is numbered */
	bool opened;	  /* opened by this claim */
} Window;

static const char *const newest_query =
	"SELECT id, lo, hi, upto_id, window_low, next_low, last_in_window"
	" FROM evrep.outbox_batch ORDER BY id DESC LIMIT 1";

static const char *const snapshot_query =
	"SELECT s, pg_catalog.pg_snapshot_xmin(s) FROM pg_catalog.pg_current_snapshot() s";

/*
 * The rows of a window after an id, in id order from the primary key, up
 * to $1 events and (the first row always goes) $4 bytes of text (the
 * length a compressed value will have, read without decompressing it); column 6, the id
 * after a row's in the scan, tells a cut batch.  A row of a transaction
 * that rolled back is not visible to the scan; one that is still running
 * is not visible in hi.  A row with a seq carries its number (a 1.0
 * publisher may have numbered a row captured just after the update, in a
 * claim that waited for the update's locks): never numbered again.
 */
static const char *const scan_query =
	"SELECT id, pub_id, op, row_data::text,"
	" pg_catalog.to_json(CASE WHEN $2 THEN pg_catalog.pg_xact_commit_timestamp(x) END)::text, next"
	" FROM (SELECT l.*,"
	" pg_catalog.sum(pg_catalog.octet_length(row_data::pg_catalog.text)) OVER w"
	" - pg_catalog.octet_length(row_data::pg_catalog.text) AS before,"
	" pg_catalog.sum(coalesce(events, 1)) OVER w - coalesce(events, 1) AS events_before,"
	" pg_catalog.lead(id) OVER w AS next"
	" FROM (SELECT id, pub_id, op, row_data, events, xmin AS x FROM evrep.outbox"
	" WHERE id > $3 AND id <= $5 AND seq IS NULL AND pg_catalog.pg_visible_in_snapshot(xid, $6)"
	" AND NOT coalesce(pg_catalog.pg_visible_in_snapshot(xid, $7), false)"
	" ORDER BY id LIMIT $1) l WINDOW w AS (ORDER BY id)) s"
	" WHERE before < $4 AND events_before < $1 ORDER BY id";

/* In id order from the primary keys, stopping at the limit (see outbox.c). */
static const char *const scan_avoid[] = {"sort", "bitmapscan", "seqscan", NULL};

static const char *const insert_query =
	"INSERT INTO evrep.outbox_batch (id, lo, hi, after_id, upto_id, window_low, next_low,"
	" last_in_window, pub_ids, first_seqs, counts, lsn)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

static const char *const unconfirmed_query =
	"SELECT id, lo, hi, after_id, upto_id, pub_ids, first_seqs, counts, lsn"
	" FROM evrep.outbox_batch WHERE NOT confirmed ORDER BY id";

static const char *const numbered_query =
	"SELECT " EVENT_COLUMNS("lsn") " FROM evrep.outbox WHERE seq IS NOT NULL ORDER BY pub_id, seq";

/*
 * The rows before it go from the last one confirmed on: a range from the
 * start of the index walked every dead entry left since the last vacuum,
 * at every confirm (the lag at 1k rows/s grew from round to round).
 */
static const char *const confirm_query =
	"WITH d AS (DELETE FROM evrep.outbox_batch WHERE id >= $2 AND id < $1)"
	" UPDATE evrep.outbox_batch SET confirmed = true WHERE id = $1 RETURNING window_low";

static SPIPlanPtr newest_plan = NULL;
static SPIPlanPtr snapshot_plan = NULL;
static SPIPlanPtr scan_plan = NULL;
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr confirm_plan = NULL;

/* evrep.outbox_batch the state below is about: a new one starts afresh */
static Oid state_relid = InvalidOid;

/*
 * Every row with an id at or below low_known is in a window opened so far.
 * Why a value can be trusted: a writer takes its xid before its row's id
 * (capture.c), so the ids up to the sequence's value S belong to
 * transactions with xids below the next xid X read after S.  Once a
 * window's hi has an xmin past X, each of them is visible in hi or rolled
 * back.
 */
static int64 low_known = 0;
static int64 mark_seqval = 0; /* a candidate value ... */
static uint64 mark_next = 0;  /* ... once a window's xmin passes this; 0: none */

/* Every row with an id at or below it is in a confirmed batch; -1: not known. */
static int64 confirmed_below = -1;

/* The newest batch confirmed; -1: not known (none yet in this process). */
static int64 confirmed_batch = -1;

static void
forget_state_if_new(void)
{
	Oid relid = get_relname_relid("outbox_batch", get_namespace_oid("evrep", false));

	if (relid == state_relid)
		return;
	state_relid = relid;
	low_known = 0;
	mark_next = 0;
	confirmed_below = -1;
	confirmed_batch = -1;
}

static Datum
snapshot_copy(Datum d)
{
	return PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
}

static void
load_newest(Window *w)
{
	TupleDesc desc;
	HeapTuple tup;
	bool isnull;
	Datum lo;

	memset(w, 0, sizeof(Window));
	forget_state_if_new();
	if (spi_check(SPI_execute_plan(spi_kept_plan(&newest_plan, newest_query, 0, NULL), NULL, NULL,
								   false, 1),
				  SPI_OK_SELECT, ANY_ROWS, "could not read evrep.outbox_batch") == 0)
		return;
	desc = SPI_tuptable->tupdesc;
	tup = SPI_tuptable->vals[0];
	w->batch_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	lo = SPI_getbinval(tup, desc, 2, &isnull);
	w->lo = isnull ? (Datum) 0 : snapshot_copy(lo);
	w->hi = snapshot_copy(SPI_getbinval(tup, desc, 3, &isnull));
	w->upto_id = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	w->window_low = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
	w->next_low = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
	w->done = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
}

/* Moves low_known on once hi_xmin passed the mark, and sets the next mark. */
static void
advance_low(uint64 hi_xmin)
{
	int64 seqval = outbox_seq_value();
	uint64 next = U64FromFullTransactionId(ReadNextFullTransactionId());

	if (seqval < 0)
		return;
	/* the sequence was restarted: ids start low again */
	if (seqval < low_known)
	{
		low_known = 0;
		mark_next = 0;
		confirmed_below = -1;
	}
	if (mark_next != 0 && mark_next <= hi_xmin)
	{
		low_known = Max(low_known, mark_seqval);
		mark_next = 0;
	}
	if (mark_next == 0)
	{
		mark_seqval = seqval;
		mark_next = next;
	}
}

/*
 * The next window: from the last one's hi to a snapshot taken now (in a
 * REPEATABLE READ claim, the transaction's, which a copy chunk reads).
 */
static void
open_window(Window *w)
{
	bool isnull;
	Datum hi;
	uint64 hi_xmin;

	spi_check(SPI_execute_plan(spi_kept_plan(&snapshot_plan, snapshot_query, 0, NULL), NULL, NULL,
							   false, 1),
			  SPI_OK_SELECT, 1, "could not take a snapshot for the evrep outbox");
	hi = snapshot_copy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	hi_xmin = U64FromFullTransactionId(DatumGetFullTransactionId(
		SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)));
	advance_low(hi_xmin);

	w->lo = w->batch_id > 0 ? w->hi : (Datum) 0;
	w->window_low = w->batch_id > 0 ? w->next_low : 0;
	w->next_low = Max(w->window_low, low_known);
	w->hi = hi;
	w->upto_id = w->window_low;
	w->done = false;
	w->opened = true;
}

/*
 * The events of an op m row as capture_buffer.c writes them,
 * [["i",{...}],["u",{...}]], appended to *rows.
 */
static void
add_events(EventRow **rows, int *n, int *cap, const EventRow *outbox_row, const char *text)
{
	const char *p = text;

	if (*p++ != '[')
		goto bad;
	while (*p != ']')
	{
		const char *start;
		int depth = 0;
		bool in_string = false;
		EventRow *e;

		if (p[0] != '[' || p[1] != '"' || p[2] == '\0' || p[3] != '"' || p[4] != ',' || p[5] != '{')
			goto bad;
		if (*n == *cap)
			*rows = repalloc(*rows, sizeof(EventRow) * (*cap *= 2));
		e = &(*rows)[(*n)++];
		*e = *outbox_row;
		e->op = p[2];
		start = p += 5;
		/* to the end of the row object */
		for (;; p++)
		{
			if (*p == '\0')
				goto bad;
			if (in_string)
			{
				if (*p == '\\' && p[1] != '\0')
					p++;
				else if (*p == '"')
					in_string = false;
			}
			else if (*p == '"')
				in_string = true;
			else if (*p == '{' || *p == '[')
				depth++;
			else if ((*p == '}' || *p == ']') && --depth == 0)
				break;
		}
		e->row = pnstrdup(start, ++p - start);
		if (*p++ != ']' || (*p != ',' && *p != ']'))
			goto bad;
		if (*p == ',')
			p++;
	}
	return;
bad:
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("evrep outbox row " INT64_FORMAT " holds malformed events", outbox_row->id)));
}

/*
 * Reads the window's events with ids in (after, upto], at most max_events
 * of them and about max_bytes; *cut when rows were left.
 */
static int
scan_window(Window *w, int64 after, int64 upto, int64 max_rows, int64 max_bytes, EventRow **rows,
			bool *cut)
{
	Oid argtypes[7] = {INT8OID, BOOLOID, INT8OID, INT8OID, INT8OID, PG_SNAPSHOTOID, PG_SNAPSHOTOID};
	Datum values[7];
	char nulls[7] = "       ";
	int level;
	int n;
	TupleDesc desc;
	bool isnull = true;
	int nevents = 0;
	int cap;

	values[0] = Int64GetDatum(max_rows);
	values[1] = BoolGetDatum(track_commit_timestamp);
	values[2] = Int64GetDatum(after);
	values[3] = Int64GetDatum(max_bytes);
	values[4] = Int64GetDatum(upto);
	values[5] = w->hi;
	values[6] = w->lo;
	if (w->lo == (Datum) 0)
		nulls[6] = 'n';
	level = planner_avoid(scan_avoid);
	n = spi_check(SPI_execute_plan(spi_kept_plan(&scan_plan, scan_query, 7, argtypes), values,
								   nulls, false, 0),
				  SPI_OK_SELECT, ANY_ROWS, "could not read the evrep outbox");
	planner_restore(level);

	desc = SPI_tuptable->tupdesc;
	*rows = palloc0(sizeof(EventRow) * Max(n, 1));
	cap = Max(n, 1);
	for (int i = 0; i < n; i++)
	{
		HeapTuple tup = SPI_tuptable->vals[i];
		EventRow e = {0};

		e.id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		e.pub_id = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		e.op = DatumGetChar(SPI_getbinval(tup, desc, 3, &isnull));
		e.commit_ts = SPI_getvalue(tup, desc, 5);
		if (e.op == EVREP_OP_MANY)
		{
			add_events(rows, &nevents, &cap, &e, SPI_getvalue(tup, desc, 4));
			continue;
		}
		e.row = SPI_getvalue(tup, desc, 4);
		if (nevents == cap)
			*rows = repalloc(*rows, sizeof(EventRow) * (cap *= 2));
		(*rows)[nevents++] = e;
	}
	if (n > 0)
		(void) SPI_getbinval(SPI_tuptable->vals[n - 1], desc, 6, &isnull);
	*cut = n == max_rows || (n > 0 && !isnull);
	return nevents;
}

static Datum
int4_array(const int32 *v, int n)
{
	Datum *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = Int32GetDatum(v[i]);
	return PointerGetDatum(construct_array(elems, n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
}

static int
pub_index(const int32 *pub_ids, int npubs, int32 pub_id)
{
	for (int k = 0; k < npubs; k++)
	{
		if (pub_ids[k] == pub_id)
			return k;
	}
	return -1;
}

/*
 * Numbers the rows just read (the window's next ids) and records the
 * batch: each publication's rows continue its last_seq, in id order.
 */
static void
number_batch(Window *w, EventRow *rows, int n, bool cut)
{
	int32 *pub_ids = palloc(sizeof(int32) * n);
	int64 *firsts = palloc(sizeof(int64) * n);
	int64 *counts = palloc0(sizeof(int64) * n);
	int64 *given = palloc0(sizeof(int64) * n);
	int npubs = 0;
	Oid argtypes[12] = {INT8OID,	  PG_SNAPSHOTOID, PG_SNAPSHOTOID, INT8OID,
						INT8OID,	  INT8OID,		  INT8OID,		  BOOLOID,
						INT4ARRAYOID, INT8ARRAYOID,	  INT8ARRAYOID,	  PG_LSNOID};
	Datum values[12];
	char nulls[12] = "            ";

	for (int i = 0; i < n; i++)
	{
		int k = pub_index(pub_ids, npubs, rows[i].pub_id);

		if (k < 0)
		{
			k = npubs++;
			pub_ids[k] = rows[i].pub_id;
		}
		counts[k]++;
	}
	for (int k = 0; k < npubs; k++)
		firsts[k] = outbox_reserve_numbers(pub_ids[k], counts[k]) + 1;
	for (int i = 0; i < n; i++)
	{
		int k = pub_index(pub_ids, npubs, rows[i].pub_id);

		rows[i].seq = firsts[k] + given[k]++;
		rows[i].lsn = outbox_round_lsn;
	}

	values[0] = Int64GetDatum(w->batch_id + 1);
	values[1] = w->lo;
	if (w->lo == (Datum) 0)
		nulls[1] = 'n';
	values[2] = w->hi;
	values[3] = Int64GetDatum(w->upto_id);
	values[4] = Int64GetDatum(rows[n - 1].id);
	values[5] = Int64GetDatum(w->window_low);
	values[6] = Int64GetDatum(w->next_low);
	values[7] = BoolGetDatum(!cut);
	values[8] = int4_array(pub_ids, npubs);
	values[9] = outbox_int8_array(firsts, npubs);
	values[10] = outbox_int8_array(counts, npubs);
	values[11] = LSNGetDatum(outbox_round_lsn);
	spi_check(SPI_execute_plan(spi_kept_plan(&insert_plan, insert_query, 12, argtypes), values,
							   nulls, false, 0),
			  SPI_OK_INSERT, 1, "could not record an evrep outbox batch");
	w->batch_id++;
	w->upto_id = rows[n - 1].id;
	w->done = !cut;
}

static EventRow *
append_rows(EventRow *rows, int n, const EventRow *more, int nmore)
{
	if (nmore == 0)
		return rows;
	rows = rows == NULL ? palloc(sizeof(EventRow) * nmore)
						: repalloc(rows, sizeof(EventRow) * (n + nmore));
	memcpy(rows + n, more, sizeof(EventRow) * nmore);
	return rows;
}

/*
 * An idle claim opened a window with nothing in it: every row up to
 * low_known is then in an earlier window, and if no batch awaits its
 * confirm, confirmed.  Lets a drained partition be emptied while no new
 * batch comes to be confirmed.
 */
static void
note_settled(const Window *w)
{
	bool isnull;

	if (low_known <= confirmed_below || w->batch_id != confirmed_batch)
		return;
	/* by the partial index outbox_numbered */
	spi_check(
		SPI_execute("SELECT NOT EXISTS (SELECT FROM evrep.outbox WHERE seq IS NOT NULL)", false, 1),
		SPI_OK_SELECT, 1, "could not read evrep.outbox");
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		confirmed_below = low_known;
}

OutboxBatch *
window_claim(int max_events, int max_per_message, OutboxCopyFn copy_chunk, bool *copy_more,
			 MemoryContext mcxt)
{
	Window w;
	EventRow *rows = NULL;
	int n;
	int nchunk = 0;
	bool cut = false;
	OutboxBatch *batch;

	load_newest(&w);
	for (;;)
	{
		if (w.batch_id == 0 || w.done)
			open_window(&w);
		n = scan_window(&w, w.upto_id, PG_INT64_MAX, max_events,
						(int64) evrep_max_message_bytes * ROUND_MESSAGES, &rows, &cut);
		if (n > 0 || w.opened)
			break;
		w.done = true; /* the rest of the last window held nothing */
	}
	if (n > 0)
		number_batch(&w, rows, n, cut);

	/*
	 * A chunk is numbered right after every change its snapshot saw: in a
	 * claim whose window ends at that snapshot, once it is numbered whole.
	 */
	if (copy_chunk != NULL && (!w.opened || cut))
		*copy_more = true;
	else if (copy_chunk != NULL)
	{
		int64 *chunk_ids = copy_chunk(copy_more, &nchunk);

		if (nchunk > 0)
		{
			EventRow *chunk_rows;
			int nread;

			outbox_fetch_numbered(outbox_int8_array(chunk_ids, nchunk), &chunk_rows, &nread);
			rows = append_rows(n > 0 ? rows : NULL, n, chunk_rows, nread);
			nchunk = nread;
		}
	}
	if (n == 0 && nchunk == 0)
	{
		note_settled(&w);
		return NULL;
	}
	batch = outbox_encode(max_per_message, rows, n + nchunk, true, mcxt);
	batch->last_batch_id = n > 0 ? w.batch_id : 0;
	batch->more = cut;
	return batch;
}

static int
by_stream_order(const void *a, const void *b)
{
	const EventRow *x = a;
	const EventRow *y = b;

	if (x->pub_id != y->pub_id)
		return x->pub_id < y->pub_id ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : 0;
}

/* Numbers a batch's rows again from its record. */
static void
number_again(int64 batch_id, EventRow *rows, int n, Datum pub_array, Datum first_array,
			 Datum count_array, XLogRecPtr lsn)
{
	ArrayType *pubs_a = DatumGetArrayTypeP(pub_array);
	int32 *pub_ids = (int32 *) ARR_DATA_PTR(pubs_a);
	int64 *firsts = (int64 *) ARR_DATA_PTR(DatumGetArrayTypeP(first_array));
	int64 *counts = (int64 *) ARR_DATA_PTR(DatumGetArrayTypeP(count_array));
	int npubs = ArrayGetNItems(ARR_NDIM(pubs_a), ARR_DIMS(pubs_a));
	int64 *given = palloc0(sizeof(int64) * Max(npubs, 1));

	for (int i = 0; i < n; i++)
	{
		int k = pub_index(pub_ids, npubs, rows[i].pub_id);

		if (k < 0)
			elog(ERROR,
				 "evrep outbox row " INT64_FORMAT " is in batch " INT64_FORMAT
				 " but its publication %d is not",
				 rows[i].id, batch_id, rows[i].pub_id);
		rows[i].seq = firsts[k] + given[k]++;
		rows[i].lsn = lsn;
	}
	for (int k = 0; k < npubs; k++)
	{
		if (given[k] != counts[k])
			ereport(WARNING,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("evrep outbox batch " INT64_FORMAT " has " INT64_FORMAT
							" of its " INT64_FORMAT " rows of publication %d",
							batch_id, given[k], counts[k], pub_ids[k]),
					 errdetail("Rows of the outbox were removed by hand; the numbers of the "
							   "rows after them in this batch are sent shifted."),
					 errhint("Run evrep_resync() on the subscribers of that table.")));
	}
}

OutboxBatch *
window_resend(int max_per_message, MemoryContext mcxt)
{
	SPITupleTable *batches;
	uint64 nbatches;
	EventRow *all = NULL;
	int nall = 0;
	int64 last = 0;
	OutboxBatch *batch;

	forget_state_if_new();
	nbatches = spi_check(SPI_execute(unconfirmed_query, false, 0), SPI_OK_SELECT, ANY_ROWS,
						 "could not read evrep.outbox_batch");
	batches = SPI_tuptable;
	for (uint64 b = 0; b < nbatches; b++)
	{
		HeapTuple tup = batches->vals[b];
		TupleDesc desc = batches->tupdesc;
		bool isnull;
		Window w = {0};
		Datum lo;
		EventRow *rows;
		bool cut;
		int n;

		last = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		lo = SPI_getbinval(tup, desc, 2, &isnull);
		w.lo = isnull ? (Datum) 0 : snapshot_copy(lo);
		w.hi = snapshot_copy(SPI_getbinval(tup, desc, 3, &isnull));
		n = scan_window(&w, DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull)),
						DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull)), PG_INT64_MAX,
						PG_INT64_MAX, &rows, &cut);
		number_again(last, rows, n, SPI_getbinval(tup, desc, 6, &isnull),
					 SPI_getbinval(tup, desc, 7, &isnull), SPI_getbinval(tup, desc, 8, &isnull),
					 DatumGetLSN(SPI_getbinval(tup, desc, 9, &isnull)));
		all = append_rows(all, nall, rows, n);
		nall += n;
	}
	/* the chunks of copies, and what evrep 1.0 numbered */
	if (spi_check(SPI_execute(numbered_query, false, 0), SPI_OK_SELECT, ANY_ROWS,
				  "could not read numbered outbox rows") > 0)
	{
		int n = SPI_processed;

		all = append_rows(all, nall, outbox_event_rows(SPI_tuptable, n), n);
		nall += n;
	}
	if (nall == 0)
		return NULL;
	qsort(all, nall, sizeof(EventRow), by_stream_order);
	batch = outbox_encode(max_per_message, all, nall, false, mcxt);
	batch->last_batch_id = last;
	return batch;
}

void
window_confirm(OutboxBatch *batch)
{
	Oid argtypes[2] = {INT8OID, INT8OID};
	Datum values[2] = {Int64GetDatum(batch->last_batch_id), Int64GetDatum(Max(confirmed_batch, 0))};
	bool isnull;

	forget_state_if_new();
	if (spi_check(SPI_execute_plan(spi_kept_plan(&confirm_plan, confirm_query, 2, argtypes), values,
								   NULL, false, 0),
				  SPI_OK_UPDATE_RETURNING, ANY_ROWS,
				  "could not confirm an evrep outbox batch") == 1)
	{
		confirmed_below = Max(
			confirmed_below,
			DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)));
		confirmed_batch = Max(confirmed_batch, batch->last_batch_id);
	}
}

int64
window_truncate_below(void)
{
	bool isnull;

	forget_state_if_new();
	if (confirmed_below >= 0)
		return confirmed_below;
	spi_connect();
	confirmed_below = 0;
	if (spi_check(SPI_execute("SELECT window_low, id FROM evrep.outbox_batch WHERE confirmed"
							  " ORDER BY id DESC LIMIT 1",
							  false, 1),
				  SPI_OK_SELECT, ANY_ROWS, "could not read evrep.outbox_batch") == 1)
	{
		confirmed_below =
			DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		confirmed_batch = Max(
			confirmed_batch,
			DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)));
	}
	SPI_finish();
	return confirmed_below;
}

int64
window_depth_estimate(void)
{
	bool isnull;
	Datum span;

	spi_connect();
	spi_check(SPI_execute("SELECT pg_catalog.max(id) - coalesce((SELECT upto_id"
						  " FROM evrep.outbox_batch WHERE confirmed ORDER BY id DESC LIMIT 1),"
						  " pg_catalog.min(id) - 1) FROM evrep.outbox",
						  true, 1),
			  SPI_OK_SELECT, ANY_ROWS, "could not read the evrep outbox depth");
	span = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_finish();
	return isnull ? 0 : Max(DatumGetInt64(span), 0);
}
