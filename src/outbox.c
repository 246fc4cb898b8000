/*
 * outbox.c
 *		Publisher side of the outbox: claim a batch, encode it as wire
 *		messages, retire it once the broker confirmed, and empty drained
 *		partitions.  A 1.1 catalog's rows are written once and numbered by
 *		windows (outbox_window.c); a 1.0 catalog's are numbered here, in
 *		place, and deleted once confirmed, as are the rows that carry their
 *		number (the chunks of a copy).
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
#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xlog.h"
#include "access/xact.h"
#include "catalog/pg_sequence.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "catalog/namespace.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "evrep.h"
#include "incarnation.h"
#include "spi_plan.h"
#include "spi_util.h"
#include "outbox.h"
#include "outbox_int.h"
#include "oversize.h"
#include "wire.h"

/*
 * Statements come in two forms, [0] for a 1.0 catalog and [1] for 1.1 or
 * later (incarnation.h): the library serves both until ALTER EXTENSION
 * UPDATE has run.  1.1 keeps the WAL position of the numbering (lsn).
 * On 1.1 the captured rows are numbered by outbox_window.c; what is here
 * numbers a 1.0 catalog's rows in place, and the rows that carry their
 * number (chunks of a copy) in both.
 */

/*
 * Each step is a plain statement over the outbox's primary key.  One
 * statement joining a batch CTE back to the outbox was planned as a hash
 * join over the whole table once the outbox held a backlog.  The rows to
 * number are read whole, in EVENT_COLUMNS' shape (seq still NULL), so that
 * the batch is built from them without reading them again; column 8 is
 * the commit time to store.  A round also stops before its rows pass $4
 * bytes (the first row always goes): a backlog of rows of some MB each
 * would otherwise be read whole, thousands at a time.  The rows' stored
 * sizes decide before their text is made; column 9, the id after a row's
 * in the scan, tells a cut round.
 */
static const char *const unnumbered_query =
	"SELECT id, pub_id, seq, op, row_data::text,"
	" pg_catalog.to_json(CASE WHEN $2 THEN pg_catalog.pg_xact_commit_timestamp(x) END)::text,"
	" NULL::pg_catalog.pg_lsn, CASE WHEN $2 THEN pg_catalog.pg_xact_commit_timestamp(x) END, next"
	" FROM (SELECT l.*,"
	" pg_catalog.sum(pg_catalog.pg_column_size(row_data)) OVER w"
	" - pg_catalog.pg_column_size(row_data) AS before, pg_catalog.lead(id) OVER w AS next"
	" FROM (SELECT id, pub_id, seq, op, row_data, xmin AS x FROM evrep.outbox"
	" WHERE seq IS NULL AND id > $3 ORDER BY id LIMIT $1) l WINDOW w AS (ORDER BY id)) s"
	" WHERE before < $4 ORDER BY id";

/*
 * Read in id order from the primary keys, stopping at the limit.  The
 * planner, unsure how many rows lie above $3, read them all (a bitmap scan
 * and a top-N sort): a backlog of n rows cost n^2 / batch row visits.
 */
static const char *const unnumbered_avoid[] = {"sort", "bitmapscan", "seqscan", NULL};

static const char *const reserve_query =
	"UPDATE evrep.publication SET last_seq = last_seq + $2 WHERE id = $1"
	" RETURNING last_seq - $2";

/*
 * unnest() of several arrays is ROWS FROM syntax, not a function: it cannot
 * be qualified.  Planned as a nested loop over the primary key (see
 * number_rows), also into a partition that was empty when the (generic,
 * kept) plan was made: a sequential scan of it would then be repeated for
 * every row of every batch while writers fill it.
 */
static const char *const number_avoid[] = {"hashjoin", "mergejoin", "seqscan", NULL};

static const char *const number_query[2] = {
	"UPDATE evrep.outbox o SET seq = u.seq, commit_ts = u.cts"
	" FROM unnest($1::int8[], $2::int8[], $3::timestamptz[]) AS u(id, seq, cts)"
	" WHERE o.id = u.id",
	"UPDATE evrep.outbox o SET seq = u.seq, commit_ts = u.cts, lsn = $4"
	" FROM unnest($1::int8[], $2::int8[], $3::timestamptz[]) AS u(id, seq, cts)"
	" WHERE o.id = u.id"};

/*
 * In number order, not id order: a copy chunk is numbered ahead of changes
 * whose rows have smaller ids (their writers had not committed when the
 * chunk was read), and must reach subscribers before them.  Only rows in
 * flight are numbered, so this is a bounded set.
 */
static const char *const resend_query[2] = {
	"SELECT " EVENT_COLUMNS(
		"NULL::pg_catalog.pg_lsn") " FROM evrep.outbox"
								   " WHERE seq IS NOT NULL ORDER BY pub_id, seq",
	"SELECT " EVENT_COLUMNS("lsn") " FROM evrep.outbox WHERE seq IS NOT NULL ORDER BY pub_id, seq"};

static const char *const fetch_query[2] = {
	"SELECT " EVENT_COLUMNS("NULL::pg_catalog.pg_lsn") " FROM evrep.outbox"
													   " WHERE id = ANY ($1) ORDER BY id",
	"SELECT " EVENT_COLUMNS("lsn") " FROM evrep.outbox WHERE id = ANY ($1) ORDER BY id"};

/* By the primary key, whatever the partitions held when it was planned. */
static const char *const fetch_avoid[] = {"seqscan", "bitmapscan", NULL};

/* With the current history, and where each stream's part of it began. */
static const char *const publications_query[2] = {
	"SELECT id, schema_name, table_name, pg_catalog.to_json(key_columns)::text,"
	" 0::int8, 0::int8, NULL::text FROM evrep.publication",
	"SELECT p.id, p.schema_name, p.table_name, pg_catalog.to_json(p.key_columns)::text,"
	" p.since, i.id, i.reason FROM evrep.publication p"
	" LEFT JOIN (SELECT id, reason FROM evrep.incarnation ORDER BY id DESC LIMIT 1) i ON true"};

static const char *const add_query[2] = {
	"INSERT INTO evrep.outbox (slot, pub_id, op, row_data, seq, commit_ts)"
	" VALUES ($1, $2, $3, $4, $5, pg_catalog.clock_timestamp()) RETURNING id",
	"INSERT INTO evrep.outbox (slot, pub_id, op, row_data, seq, commit_ts, lsn)"
	" VALUES ($1, $2, $3, $4, $5, pg_catalog.clock_timestamp(), $6) RETURNING id"};

/* Which form of the statements this transaction uses; see EVENT_COLUMNS. */
static int hist = 0;

/*
 * The WAL position a round numbers its rows at.  It grows with the numbers
 * of one history, also across a crash: a numbering is flushed before its
 * rows are sent, and recovery goes on past it.
 */
XLogRecPtr outbox_round_lsn = InvalidXLogRecPtr;

/*
 * Numbered rows not known to be in flight are sent again first; a healthy
 * publisher then only reads the rows it has just numbered.
 */
static bool resend_pending = true;

/*
 * Every outbox row with an id at or below numbered_upto is numbered (or
 * deleted), so the scan for rows to number starts above it instead of
 * walking, every round, past the rows still in flight.  Why a value can be
 * trusted: a writer takes a row's id (nextval) after its transaction has
 * an xid, since its own row was written first.  So the ids up to the
 * sequence's value S belong to transactions with xids below the next xid
 * X read after S (not below a snapshot's xmax: a running transaction may
 * have a larger xid).  Once a snapshot's xmin has passed X, each of those
 * rows is visible to it or rolled back, and a scan that took every visible
 * unnumbered row numbered them all.  The value moves only once that
 * numbering committed.
 */
static int64 numbered_upto = 0;
static int64 mark_seqval = 0;						  /* a candidate value ... */
static TransactionId mark_xid = InvalidTransactionId; /* ... once xmin passes this */
static int64 numbered_upto_at_commit = -1;			  /* set by this transaction */
static bool xact_callback_registered = false;

/* The last round stopped with rows left: at max_events, or at its bytes */
static bool round_full = false;

static SPIPlanPtr unnumbered_plan = NULL;
static SPIPlanPtr reserve_plan = NULL;
static SPIPlanPtr number_plan[2];
static SPIPlanPtr resend_plan[2];
static SPIPlanPtr fetch_plan[2];
static SPIPlanPtr publications_plan[2];
static SPIPlanPtr remove_plan = NULL;
static SPIPlanPtr add_plan[2];

/* Per publication in one numbering round. */
typedef struct PubCount
{
	int32 id;
	int64 count;
	int64 next_seq;
} PubCount;

static void
finish_message(OutboxBatch *batch, OutboxMessage *m, StringInfo buf)
{
	wire_end_message(buf);
	m->body = buf->data;
	m->body_len = buf->len;
	batch->messages = lappend(batch->messages, m);
}

PubInfo *
outbox_load_publications(int *npubs)
{
	PubInfo *pubs;

	*npubs = spi_check(
		SPI_execute_plan(spi_kept_plan(&publications_plan[hist], publications_query[hist], 0, NULL),
						 NULL, NULL, true, 0),
		SPI_OK_SELECT, ANY_ROWS, "could not read evrep publications");
	pubs = palloc(sizeof(PubInfo) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple tup = SPI_tuptable->vals[i];
		TupleDesc desc = SPI_tuptable->tupdesc;
		bool isnull;

		pubs[i].id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		pubs[i].schema = SPI_getvalue(tup, desc, 2);
		pubs[i].table = SPI_getvalue(tup, desc, 3);
		pubs[i].key_json = SPI_getvalue(tup, desc, 4);
		pubs[i].incarnation.since = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		pubs[i].incarnation.id = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
		if (isnull)
			pubs[i].incarnation.id = 0; /* no worker has started in this history yet */
		pubs[i].incarnation.reason = SPI_getvalue(tup, desc, 7);
	}
	return pubs;
}

static PubInfo *
find_publication(PubInfo *pubs, int npubs, int32 id)
{
	for (int i = 0; i < npubs; i++)
	{
		if (pubs[i].id == id)
			return &pubs[i];
	}
	elog(ERROR, "evrep outbox row refers to unknown publication %d", id);
	return NULL; /* keep compiler quiet */
}

/*
 * The row of an event as it is sent: an outbox row whose JSON is over
 * evrep.max_message_bytes (captured by evrep 1.0, or before the limit was
 * lowered) would be refused by the broker again after every reconnect, so
 * it goes out as oversize.c says (a delete's key, or a skip event).
 */
static char *
row_to_send(PubInfo *p, char *op, char *row, bool first_time)
{
	if (*op == 'c' || *op == 't' || *op == EVREP_OP_SKIP || *op == EVREP_OP_LARGE ||
		*op == EVREP_OP_UPDATE_UNCHANGED || strlen(row) <= evrep_row_limit())
		return row;
	row = oversize_skip_at_send(p->schema, p->table, p->key_json, *op, row, first_time);
	if (*op != 'd')
		*op = EVREP_OP_SKIP;
	return row;
}

EventRow *
outbox_event_rows(SPITupleTable *tuptable, uint64 n)
{
	EventRow *rows = palloc(sizeof(EventRow) * Max(n, 1));
	TupleDesc desc = tuptable->tupdesc;

	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple tup = tuptable->vals[i];
		bool isnull;
		Datum lsn;

		rows[i].id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		rows[i].pub_id = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		rows[i].seq = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		rows[i].op = DatumGetChar(SPI_getbinval(tup, desc, 4, &isnull));
		rows[i].row = SPI_getvalue(tup, desc, 5);
		rows[i].commit_ts = SPI_getvalue(tup, desc, 6);
		lsn = SPI_getbinval(tup, desc, 7, &isnull);
		rows[i].lsn = isnull ? InvalidXLogRecPtr : DatumGetLSN(lsn);
		rows[i].numbered = true;
	}
	return rows;
}

/*
 * Packs the events into messages of consecutive events of one publication
 * and numbering round, allocated in mcxt.  A message stays within
 * evrep.max_message_bytes, and a skip or large event travels alone: a
 * reader of revision 1 parks a message with an op it does not know whole.
 */
OutboxBatch *
outbox_encode(int max_per_message, EventRow *rows, int nrows, bool first_time, MemoryContext mcxt)
{
	OutboxBatch *batch;
	OutboxMessage *m = NULL;
	XLogRecPtr m_lsn = InvalidXLogRecPtr;
	bool m_alone = false;
	StringInfoData buf;
	MemoryContext old;
	int npubs;
	PubInfo *pubs = outbox_load_publications(&npubs);
	int nnumbered = 0;

	old = MemoryContextSwitchTo(mcxt);
	batch = palloc0(sizeof(OutboxBatch));
	batch->nevents = nrows;
	batch->ids = palloc(sizeof(int64) * nrows);
	batch->numbered_ids = palloc(sizeof(int64) * nrows);

	for (int i = 0; i < nrows; i++)
	{
		EventRow *e = &rows[i];
		PubInfo *p = find_publication(pubs, npubs, e->pub_id);
		char op = e->op;
		char *row = row_to_send(p, &op, e->row, first_time);
		bool alone = op == EVREP_OP_SKIP || op == EVREP_OP_LARGE;

		batch->ids[i] = e->id;
		if (e->numbered)
			batch->numbered_ids[nnumbered++] = e->id;
		/* a message names one WAL position: resent rows may span rounds */
		if (m == NULL || e->pub_id != m->pub_id || m->nevents >= max_per_message ||
			e->lsn != m_lsn || m_alone || alone ||
			buf.len + strlen(row) + EVREP_ENVELOPE_BYTES > (Size) evrep_max_message_bytes)
		{
			if (m != NULL)
				finish_message(batch, m, &buf);
			m = palloc0(sizeof(OutboxMessage));
			m->pub_id = e->pub_id;
			m->routing_key = wire_routing_key(p->schema, p->table);
			m->message_id =
				psprintf("%s/%s.%s/" INT64_FORMAT, evrep_node_name, p->schema, p->table, e->seq);
			initStringInfo(&buf);
			wire_begin_message(&buf, evrep_node_name, p->schema, p->table, p->key_json,
							   &p->incarnation, e->lsn);
			m_lsn = e->lsn;
		}
		m_alone = alone;
		if (op == EVREP_OP_LARGE)
		{
			m->large_id = e->id;
			m->large_seq = e->seq;
			m->incarnation = p->incarnation.id;
			m->schema = pstrdup(p->schema);
			m->table = pstrdup(p->table);
			batch->large = true;
		}
		wire_add_event(&buf, m->nevents == 0, e->seq, op, e->commit_ts, row);
		m->nevents++;
		/* a chunk of a copy weighs what it carries */
		batch->weight += op == 'c' ? evrep_copy_chunk_rows : 1;
	}
	finish_message(batch, m, &buf);
	batch->nnumbered = nnumbered;
	MemoryContextSwitchTo(old);
	return batch;
}

/*
 * The batch of rows, nrows SPI result rows of EVENT_COLUMNS in id order
 * (which within a publication is number order); seqs, if not NULL, are
 * their numbers, given just now at outbox_round_lsn.
 */
static OutboxBatch *
build_batch(int max_per_message, SPITupleTable *tuptable, uint64 nrows, const int64 *seqs,
			MemoryContext mcxt)
{
	EventRow *rows = outbox_event_rows(tuptable, nrows);

	for (uint64 i = 0; seqs != NULL && i < nrows; i++)
	{
		rows[i].seq = seqs[i];
		rows[i].lsn = outbox_round_lsn;
	}
	return outbox_encode(max_per_message, rows, nrows, seqs != NULL, mcxt);
}

/* Every numbered row: sent before, maybe never confirmed. */
static OutboxBatch *
read_unconfirmed(int max_per_message, MemoryContext mcxt)
{
	if (spi_check(SPI_execute_plan(spi_kept_plan(&resend_plan[hist], resend_query[hist], 0, NULL),
								   NULL, NULL, true, 0),
				  SPI_OK_SELECT, ANY_ROWS, "could not read numbered outbox rows") == 0)
		return NULL;
	return build_batch(max_per_message, SPI_tuptable, SPI_processed, NULL, mcxt);
}

/* Reads the rows just numbered, by id. */
static void
fetch_numbered(Datum ids)
{
	Oid argtypes[1] = {INT8ARRAYOID};
	int level = planner_avoid(fetch_avoid);

	/* not read-only: it must see the numbers given just before */
	spi_check(SPI_execute_plan(spi_kept_plan(&fetch_plan[hist], fetch_query[hist], 1, argtypes),
							   &ids, NULL, false, 0),
			  SPI_OK_SELECT, SOME_ROWS, "could not read numbered outbox rows");
	planner_restore(level);
}

static OutboxBatch *
read_numbered(Datum ids, int max_per_message, MemoryContext mcxt)
{
	fetch_numbered(ids);
	return build_batch(max_per_message, SPI_tuptable, SPI_processed, NULL, mcxt);
}

void
outbox_fetch_numbered(Datum ids, EventRow **rows, int *n)
{
	fetch_numbered(ids);
	*rows = outbox_event_rows(SPI_tuptable, SPI_processed);
	*n = SPI_processed;
}

int64
outbox_reserve_numbers(int32 pub_id, int64 count)
{
	Oid argtypes[2] = {INT4OID, INT8OID};
	Datum values[2] = {Int32GetDatum(pub_id), Int64GetDatum(count)};
	bool isnull;

	spi_check(SPI_execute_plan(spi_kept_plan(&reserve_plan, reserve_query, 2, argtypes), values,
							   NULL, false, 0),
			  SPI_OK_UPDATE_RETURNING, 1, "could not reserve evrep numbers for publication %d",
			  pub_id);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

static PubCount *
find_count(PubCount *counts, int *ncounts, int32 pub_id)
{
	for (int i = 0; i < *ncounts; i++)
	{
		if (counts[i].id == pub_id)
			return &counts[i];
	}
	counts[*ncounts].id = pub_id;
	counts[*ncounts].count = 0;
	return &counts[(*ncounts)++];
}

static void
outbox_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && numbered_upto_at_commit >= 0)
		numbered_upto = numbered_upto_at_commit;
	else if (event == XACT_EVENT_ABORT)
		mark_xid = InvalidTransactionId;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
		numbered_upto_at_commit = -1;
}

int64
outbox_seq_value(void)
{
	Oid seqid = get_relname_relid("outbox_id_seq", get_namespace_oid("evrep", false));
	HeapTuple tup;
	int64 cache;
	Datum last;
	LOCAL_FCINFO(fcinfo, 1);

	if (!OidIsValid(seqid))
		return -1;
	tup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seqid));
	if (!HeapTupleIsValid(tup))
		return -1;
	cache = ((Form_pg_sequence) GETSTRUCT(tup))->seqcache;
	ReleaseSysCache(tup);
	if (cache != 1)
		return -1;
	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(seqid);
	fcinfo->args[0].isnull = false;
	last = pg_sequence_last_value(fcinfo);
	return fcinfo->isnull ? -1 : DatumGetInt64(last);
}

/*
 * Reads up to max_events unnumbered rows above numbered_upto, and moves
 * numbered_upto's candidate on (see there).
 */
/* Did the last unnumbered scan leave rows it read (column 9 of its last row)? */
static bool
round_cut(void)
{
	bool isnull;

	(void) SPI_getbinval(SPI_tuptable->vals[SPI_processed - 1], SPI_tuptable->tupdesc, 9, &isnull);
	return !isnull;
}

static int
read_unnumbered(int max_events)
{
	Oid argtypes[4] = {INT4OID, BOOLOID, INT8OID, INT8OID};
	Datum values[4];
	int64 seqval = outbox_seq_value();
	bool stopped;
	TransactionId next_xid = XidFromFullTransactionId(ReadNextFullTransactionId());
	Snapshot snap;
	TransactionId xmin;
	int level;

	if (!xact_callback_registered)
	{
		RegisterXactCallback(outbox_xact_callback, NULL);
		xact_callback_registered = true;
	}
	/* the sequence was restarted: ids start low again */
	if (seqval < numbered_upto)
	{
		numbered_upto = 0;
		mark_xid = InvalidTransactionId;
	}
	snap = GetTransactionSnapshot();
	xmin = snap->xmin;
	values[0] = Int32GetDatum(max_events);
	values[1] = BoolGetDatum(track_commit_timestamp);
	values[2] = Int64GetDatum(numbered_upto);
	values[3] = Int64GetDatum((int64) evrep_max_message_bytes * ROUND_MESSAGES);
	level = planner_avoid(unnumbered_avoid);
	spi_check(SPI_execute_snapshot(spi_kept_plan(&unnumbered_plan, unnumbered_query, 4, argtypes),
								   values, NULL, snap, InvalidSnapshot, false, false, 0),
			  SPI_OK_SELECT, ANY_ROWS, "could not read unnumbered outbox rows");
	planner_restore(level);
	stopped = SPI_processed == (uint64) max_events || (SPI_processed > 0 && round_cut());
	round_full = stopped;

	/*
	 * A scan that stopped at max_events (or at the round's bytes) took
	 * every row up to the last one it returned: in a backlog the next scan starts there, not at the
	 * first row still in flight (each round walked all earlier batches).
	 */
	if (seqval >= 0)
	{
		if (TransactionIdIsValid(mark_xid) && TransactionIdPrecedesOrEquals(mark_xid, xmin))
		{
			int64 upto = mark_seqval;

			if (stopped)
			{
				bool isnull;
				int64 last = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[SPI_processed - 1],
														 SPI_tuptable->tupdesc, 1, &isnull));

				upto = Min(upto, last);
			}
			if (upto > numbered_upto)
				numbered_upto_at_commit = upto;
			if (upto == mark_seqval)
				mark_xid = InvalidTransactionId;
		}
		if (!TransactionIdIsValid(mark_xid))
		{
			mark_seqval = seqval;
			mark_xid = next_xid;
		}
	}
	return SPI_processed;
}

/*
 * Numbers up to max_events unnumbered rows in id order, continuing each
 * publication's last_seq.  Returns how many were numbered, their ids as an
 * int8[] in *id_array, the rows as read in *rows and their numbers in
 * *row_seqs.
 */
static int
number_rows(int max_events, Datum *id_array, SPITupleTable **rows, int64 **row_seqs)
{
	Oid argtypes[4];
	Datum values[4];
	char nulls[4] = "    ";
	int n;
	Datum *ids, *seqs, *cts;
	bool *cts_null;
	int32 *pub_ids;
	PubCount *counts;
	int ncounts = 0;
	int dims[1];
	int lbs[1] = {1};
	int level;

	n = read_unnumbered(max_events);
	if (n == 0)
		return 0;
	*rows = SPI_tuptable;
	*row_seqs = palloc(sizeof(int64) * n);

	ids = palloc(sizeof(Datum) * n);
	seqs = palloc(sizeof(Datum) * n);
	cts = palloc(sizeof(Datum) * n);
	cts_null = palloc(sizeof(bool) * n);
	pub_ids = palloc(sizeof(int32) * n);
	counts = palloc(sizeof(PubCount) * n);
	for (int i = 0; i < n; i++)
	{
		HeapTuple tup = SPI_tuptable->vals[i];
		TupleDesc desc = SPI_tuptable->tupdesc;
		bool isnull;

		ids[i] = SPI_getbinval(tup, desc, 1, &isnull);
		pub_ids[i] = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		cts[i] = SPI_getbinval(tup, desc, 8, &cts_null[i]);
		find_count(counts, &ncounts, pub_ids[i])->count++;
	}
	for (int i = 0; i < ncounts; i++)
		counts[i].next_seq = outbox_reserve_numbers(counts[i].id, counts[i].count) + 1;
	for (int i = 0; i < n; i++)
	{
		(*row_seqs)[i] = find_count(counts, &ncounts, pub_ids[i])->next_seq++;
		seqs[i] = Int64GetDatum((*row_seqs)[i]);
	}

	dims[0] = n;
	argtypes[0] = INT8ARRAYOID;
	argtypes[1] = INT8ARRAYOID;
	argtypes[2] = TIMESTAMPTZARRAYOID;
	argtypes[3] = PG_LSNOID;
	values[3] = LSNGetDatum(outbox_round_lsn);
	values[0] = PointerGetDatum(
		construct_array(ids, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(
		construct_array(seqs, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] =
		PointerGetDatum(construct_md_array(cts, cts_null, 1, dims, lbs, TIMESTAMPTZOID,
										   sizeof(TimestampTz), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	/*
	 * Not knowing the arrays' length, the planner preferred a hash join over
	 * a sequential scan of the whole outbox, dead rows included, once per
	 * batch (and with an added id = ANY condition, a nested loop that
	 * searched the index for every element at every row).  A nested loop
	 * over the primary key touches the batch's rows only.
	 */
	level = planner_avoid(number_avoid);
	spi_check(SPI_execute_plan(spi_kept_plan(&number_plan[hist], number_query[hist], 4, argtypes),
							   values, nulls, false, 0),
			  SPI_OK_UPDATE, n, "could not number outbox rows");
	planner_restore(level);
	*id_array = values[0];
	return n;
}

static void
require_node_name(void)
{
	if (evrep_node_name[0] == '\0')
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("evrep.node_name is not set"),
						errhint("Set evrep.node_name in postgresql.conf to name this node.")));
}

/* Appends id to the int8[] ids (NULL: none yet). */
static Datum
append_id(Datum ids, bool have_ids, int64 id)
{
	Datum *elems;
	int n = 0;

	if (have_ids)
		deconstruct_array(DatumGetArrayTypeP(ids), INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
						  TYPALIGN_DOUBLE, &elems, NULL, &n);
	elems = n > 0 ? repalloc(elems, sizeof(Datum) * (n + 1)) : palloc(sizeof(Datum));
	elems[n] = Int64GetDatum(id);
	return PointerGetDatum(
		construct_array(elems, n + 1, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* A 1.0 catalog: rows are numbered in place, in commit order. */
static OutboxBatch *
claim_in_place(int max_events, int max_per_message, OutboxCopyFn copy_chunk, bool *copy_more,
			   MemoryContext mcxt)
{
	OutboxBatch *batch = NULL;
	Datum ids = (Datum) 0;
	int n;
	SPITupleTable *rows = NULL;
	int64 *seqs = NULL;
	bool with_chunk = false;

	n = number_rows(max_events, &ids, &rows, &seqs);

	/*
	 * A chunk is numbered right after every change its snapshot saw: only
	 * once this snapshot's changes are all numbered.
	 */
	if (copy_chunk != NULL && round_full)
		*copy_more = true;
	else if (copy_chunk != NULL)
	{
		int nchunk;
		int64 *chunk_ids = copy_chunk(copy_more, &nchunk);

		for (int k = 0; k < nchunk; k++)
			ids = append_id(ids, n++ > 0, chunk_ids[k]);
		with_chunk = nchunk > 0;
	}
	if (with_chunk)
		batch = read_numbered(ids, max_per_message, mcxt);
	else if (n > 0)
		batch = build_batch(max_per_message, rows, n, seqs, mcxt);
	if (batch != NULL && (n >= max_events || round_full))
		batch->more = true;
	return batch;
}

OutboxBatch *
outbox_claim_batch(int max_events, int max_per_message, OutboxCopyFn copy_chunk, bool *copy_more,
				   MemoryContext mcxt)
{
	OutboxBatch *batch = NULL;

	require_node_name();

	/*
	 * The outbox is locked before the catalog's version is read and before
	 * any snapshot is taken: an ALTER EXTENSION UPDATE (which alters the
	 * outbox) has then either committed, and both show it, or waits for this
	 * claim.  A 1.0 claim that took its snapshot first and then waited for
	 * the update read the rows the update had just numbered as unnumbered,
	 * and numbered them again: their first numbers were never sent.
	 */
	LockRelationOid(get_relname_relid("outbox", get_namespace_oid("evrep", false)),
					AccessShareLock);
	/*
	 * ALTER EXTENSION UPDATE numbered what 1.0 had captured and not yet
	 * numbered: those rows carry their numbers, and go out with the rows
	 * sent before, before any window of 1.1.
	 */
	if (hist != (history_catalog() ? 1 : 0))
		resend_pending = true;
	hist = history_catalog() ? 1 : 0;
	outbox_round_lsn = GetXLogInsertRecPtr();
	spi_connect();

	if (resend_pending)
	{
		/* whatever happens, what is numbered from now on is in flight */
		resend_pending = false;
		batch =
			hist ? window_resend(max_per_message, mcxt) : read_unconfirmed(max_per_message, mcxt);
	}
	if (batch != NULL)
	{
		batch->more = true; /* what was never numbered comes next */
		if (copy_chunk != NULL)
			*copy_more = true; /* the chunk waits for the next round */
	}
	else if (hist)
		batch = window_claim(max_events, max_per_message, copy_chunk, copy_more, mcxt);
	else
		batch = claim_in_place(max_events, max_per_message, copy_chunk, copy_more, mcxt);
	SPI_finish();
	return batch;
}

void
outbox_resend_unconfirmed(void)
{
	resend_pending = true;
}

int64
outbox_add_numbered(int32 pub_id, char op, Datum row_data)
{
	Oid argtypes[6] = {INT2OID, INT4OID, CHAROID, JSONOID, INT8OID, PG_LSNOID};
	Datum values[6];
	int slot = evrep_shared ? (int) pg_atomic_read_u32(&evrep_shared->outbox_slot) : 0;
	bool isnull;

	values[0] = Int16GetDatum(slot);
	values[1] = Int32GetDatum(pub_id);
	values[2] = CharGetDatum(op);
	values[3] = row_data;
	values[4] = Int64GetDatum(outbox_reserve_numbers(pub_id, 1) + 1);
	values[5] = LSNGetDatum(outbox_round_lsn);
	spi_check(SPI_execute_plan(spi_kept_plan(&add_plan[hist], add_query[hist], 6, argtypes), values,
							   NULL, false, 0),
			  SPI_OK_INSERT_RETURNING, 1, "could not add to the evrep outbox");
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * By the primary key: with the ids in hand, the planner chose a sequential
 * scan of the whole outbox, a backlog included, for every batch.
 */
static const char *const remove_avoid[] = {"seqscan", "bitmapscan", NULL};

Datum
outbox_int8_array(const int64 *ids, int n)
{
	Datum *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(ids[i]);
	return PointerGetDatum(
		construct_array(elems, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

void
outbox_remove_batch(OutboxBatch *batch)
{
	Oid argtypes[1] = {INT8ARRAYOID};
	Datum values[1];

	spi_connect();
	if (batch->nnumbered > 0)
	{
		int level = planner_avoid(remove_avoid);

		values[0] = outbox_int8_array(batch->numbered_ids, batch->nnumbered);
		spi_check(SPI_execute_plan(spi_kept_plan(&remove_plan,
												 "DELETE FROM evrep.outbox WHERE id = ANY ($1)", 1,
												 argtypes),
								   values, NULL, false, 0),
				  SPI_OK_DELETE, ANY_ROWS, "could not delete confirmed outbox rows");
		planner_restore(level);
	}
	if (batch->large)
	{
		values[0] = outbox_int8_array(batch->ids, batch->nevents);
		spi_check(SPI_execute_with_args("DELETE FROM evrep.outbox_value WHERE outbox_id = ANY ($1)",
										1, argtypes, values, NULL, false, 0),
				  SPI_OK_DELETE, ANY_ROWS, "could not delete the values of confirmed outbox rows");
	}
	if (batch->last_batch_id > 0)
		window_confirm(batch);
	SPI_finish();
}

/* How long writers stay on one partition before they are moved. */
#define OUTBOX_ROTATE_MS 5000

/* The partition writers do not use has been emptied since they left it. */
static bool idle_partition_empty = false;
static TimestampTz switched_at = 0;

/*
 * TRUNCATE evrep.outbox_<slot> if nobody is writing to it and every row in
 * it is confirmed.  The lock is only tried: a writer that read the old
 * slot just before the switch may still be inserting there, and must not
 * queue behind us.  Once it is held, no writer of the partition is still
 * running, and the statements below see every row it holds.
 */
static bool
try_truncate(int slot)
{
	char *name = psprintf("outbox_%d", slot);
	Oid relid = get_relname_relid(name, get_namespace_oid("evrep", false));
	bool emptied = false;
	int64 below = history_catalog() ? window_truncate_below() : -1;
	uint64 left;

	if (!OidIsValid(relid) || !ConditionalLockRelationOid(relid, AccessExclusiveLock))
		return false;
	spi_connect();
	if (below < 0)
		/* numbered in place: emptied row by row; by the index, past the dead rows */
		left = spi_check(
			SPI_execute(psprintf("SELECT 1 FROM evrep.%s ORDER BY id LIMIT 1", name), false, 1),
			SPI_OK_SELECT, ANY_ROWS, "could not read evrep.%s", name);
	else
		/* rows written once: all of them in confirmed batches, none numbered */
		left = spi_check(
			SPI_execute_with_args(
				psprintf("(SELECT 1 FROM evrep.%s WHERE id > $1 ORDER BY id LIMIT 1) UNION ALL"
						 " (SELECT 1 FROM evrep.%s WHERE seq IS NOT NULL LIMIT 1)",
						 name, name),
				1, (Oid[]){INT8OID}, (Datum[]){Int64GetDatum(below)}, NULL, false, 0),
			SPI_OK_SELECT, ANY_ROWS, "could not read evrep.%s", name);
	if (left == 0)
	{
		spi_check(SPI_execute(psprintf("TRUNCATE evrep.%s", name), false, 0), SPI_OK_UTILITY,
				  ANY_ROWS, "could not truncate evrep.%s", name);
		evrep_crash_point("rotating");
		emptied = true;
	}
	SPI_finish();
	return emptied;
}

void
outbox_rotate(void)
{
	int current;
	TimestampTz now = GetCurrentTimestamp();

	if (evrep_shared == NULL)
		return;
	current = (int) pg_atomic_read_u32(&evrep_shared->outbox_slot);
	if (!idle_partition_empty)
		idle_partition_empty = try_truncate(1 - current);
	else if (TimestampDifferenceExceeds(switched_at, now, OUTBOX_ROTATE_MS))
	{
		pg_atomic_write_u32(&evrep_shared->outbox_slot, 1 - current);
		switched_at = now;
		idle_partition_empty = false;
	}
}

int64
outbox_depth_estimate(void)
{
	bool isnull;
	Datum span;

	if (history_catalog())
		return window_depth_estimate();
	spi_connect();
	spi_check(SPI_execute("SELECT pg_catalog.max(id) - pg_catalog.min(id) + 1 FROM evrep.outbox",
						  true, 1),
			  SPI_OK_SELECT, ANY_ROWS, "could not read the evrep outbox depth");
	span = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_finish();
	return isnull ? 0 : DatumGetInt64(span);
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
	int32 max_events = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT32(0);
	int32 per_message = PG_ARGISNULL(1) ? evrep_message_events : PG_GETARG_INT32(1);
	OutboxBatch *batch;
	ListCell *lc;

	if (max_events <= 0 || per_message <= 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("max_events and events_per_message must be positive")));
	InitMaterializedSRF(fcinfo, 0);
	/* a SQL caller keeps no state: what it was given comes again */
	outbox_resend_unconfirmed();
	batch = outbox_claim_batch(max_events, per_message, NULL, NULL, CurrentMemoryContext);
	if (batch == NULL)
		return (Datum) 0;
	foreach (lc, batch->messages)
	{
		OutboxMessage *m = lfirst(lc);
		Datum values[3];
		bool nulls[3] = {0};

		values[0] = CStringGetTextDatum(m->routing_key);
		values[1] = Int32GetDatum(m->nevents);
		values[2] = CStringGetTextDatum(m->body);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
