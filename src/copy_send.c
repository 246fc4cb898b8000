/*
 * copy_send.c
 *		Origin side of a copy of existing rows: accept a subscriber's
 *		request, then send the table in chunks by primary key.
 *
 * A chunk is read by the publisher in the transaction that numbers the
 * outbox, at REPEATABLE READ, after every change its snapshot sees has
 * been numbered; the chunk is numbered next, so it lands in the stream
 * after exactly the changes it contains and before every change it does
 * not.  Subscribers apply it in stream order like any event, which is why
 * a copy never overwrites a newer change with an older row.  The job's
 * cursor (the last key sent) commits with the chunk's outbox row, so a
 * crash or restart resumes where it stopped, and a resend after a broker
 * failure sends the same chunk with the same number.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "storage/bufmgr.h"
#include "storage/itemptr.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "optimizer/plancat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "contract.h"
#include "copy_send.h"
#include "evrep.h"
#include "incarnation.h"
#include "outbox.h"
#include "oversize.h"
#include "relcache.h"
#include "row_json.h"
#include "spi_plan.h"
#include "spi_util.h"

static SPIPlanPtr publication_plan = NULL;
static SPIPlanPtr accept_plan = NULL;
static SPIPlanPtr next_job_plan[2];
static SPIPlanPtr advance_plan = NULL;

static const char *const publication_query =
	"SELECT id, relid FROM evrep.publication WHERE schema_name = $1 AND table_name = $2 AND active";

/*
 * A newer request of the same node replaces its job (a resync while a
 * copy runs starts over); a repeated one changes nothing.
 */
static const char *const accept_query =
	"INSERT INTO evrep.copy_job AS j (pub_id, requester, request_id, rows_estimated)"
	" VALUES ($1, $2, $3, $4)"
	" ON CONFLICT (pub_id, requester) DO UPDATE"
	" SET request_id = EXCLUDED.request_id, last_key = NULL, rows_sent = 0, chunks = 0,"
	" rows_estimated = EXCLUDED.rows_estimated, requested_at = pg_catalog.now(),"
	" started_at = NULL, finished_at = NULL"
	" WHERE j.request_id < EXCLUDED.request_id";

/* With the table's contract as this snapshot sees it, where the catalog has one. */
static const char *const next_job_query[2] = {
	"SELECT j.pub_id, j.requester, j.request_id, j.last_key, j.rows_estimated, p.relid,"
	" pg_catalog.count(*) OVER (), NULL::text[], NULL::text FROM evrep.copy_job j"
	" JOIN evrep.publication p ON p.id = j.pub_id AND p.active"
	" WHERE j.finished_at IS NULL ORDER BY j.requested_at LIMIT 1",
	"SELECT j.pub_id, j.requester, j.request_id, j.last_key, j.rows_estimated, p.relid,"
	" pg_catalog.count(*) OVER (), p.column_list, p.row_filter FROM evrep.copy_job j"
	" JOIN evrep.publication p ON p.id = j.pub_id AND p.active"
	" WHERE j.finished_at IS NULL ORDER BY j.requested_at LIMIT 1"};

static const char *const advance_query =
	"UPDATE evrep.copy_job SET last_key = $3, rows_sent = rows_sent + $4, chunks = chunks + 1,"
	" started_at = coalesce(started_at, pg_catalog.clock_timestamp()),"
	" finished_at = CASE WHEN $5 THEN pg_catalog.clock_timestamp() END"
	" WHERE pub_id = $1 AND requester = $2";

/* ---- requests ---- */

static bool copy_due_at_commit = false;
static bool xact_callback_registered = false;

/* The publisher must not look for the job before it is committed. */
static void
copy_xact_callback(XactEvent event, void *arg)
{
	if (!copy_due_at_commit)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		if (evrep_shared != NULL)
			pg_atomic_write_u32(&evrep_shared->copy_due, 1);
		evrep_wake_publisher();
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		copy_due_at_commit = false;
}

/* The planner's estimate of the table's rows: there is one even before any ANALYZE. */
static int64
estimate_rows(Oid relid)
{
	Relation rel = table_open(relid, AccessShareLock);
	BlockNumber pages;
	double tuples;
	double allvisfrac;

	estimate_rel_size(rel, NULL, &pages, &tuples, &allvisfrac);
	table_close(rel, AccessShareLock);
	return (int64) tuples;
}

/*
 * A node that follows a newer history of this origin than this server's
 * own has heard from another server in this node's name, a copy of it
 * started beside it: this one's rows must not repair that node's.  The
 * refused request is parked here, and asked again every 10 s.
 */
static void
refuse_other_history(const WireCopyRequest *req)
{
	int64 follows = wire_copy_request_history(req, evrep_node_name);
	int64 ours;
	bool isnull;

	if (follows == 0 || !history_catalog())
		return;
	spi_check(SPI_execute("SELECT max(id) FROM evrep.incarnation", true, 1), SPI_OK_SELECT,
			  ANY_ROWS, "could not read the evrep history");
	ours = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull || follows <= ours)
		return;
	/* loud where the wrong server runs, not only in its dead letters */
	ereport(WARNING, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					  errmsg("evrep refuses node \"%s\"'s copy request: it follows a newer "
							 "history of origin \"%s\" than this server's",
							 req->node, evrep_node_name)));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("evrep node \"%s\" asks for a copy of \"%s\".\"%s\" from history " INT64_FORMAT
					" of origin \"%s\", newer than this server's " INT64_FORMAT,
					req->node, req->schema, req->table, follows, evrep_node_name, ours),
			 errhint("Two servers run with evrep.node_name = '%s' (a copy started beside the "
					 "original?): stop the one that should not publish.",
					 evrep_node_name)));
}

void
copy_accept_request(const WireCopyRequest *req)
{
	Datum values[4];
	bool isnull;

	spi_connect();
	refuse_other_history(req);
	values[0] = CStringGetTextDatum(req->schema);
	values[1] = CStringGetTextDatum(req->table);
	if (spi_check(SPI_execute_plan(spi_kept_plan(&publication_plan, publication_query, 2,
												 (Oid[]){TEXTOID, TEXTOID}),
								   values, NULL, true, 1),
				  SPI_OK_SELECT, ANY_ROWS, "could not read evrep publications") == 1)
	{
		Oid relid = DatumGetObjectId(
			SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));

		values[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		values[1] = CStringGetTextDatum(req->node);
		values[2] = Int64GetDatum(req->request_id);
		values[3] = Int64GetDatum(estimate_rows(relid));
		spi_check(SPI_execute_plan(spi_kept_plan(&accept_plan, accept_query, 4,
												 (Oid[]){INT4OID, TEXTOID, INT8OID, INT8OID}),
								   values, NULL, false, 0),
				  SPI_OK_INSERT, ANY_ROWS, "could not record an evrep copy request");
	}
	if (SPI_processed == 0)
	{
		SPI_finish();
		ereport(LOG, (errmsg("evrep copy request %s of node \"%s\" for \"%s\".\"%s\" ignored",
							 psprintf(INT64_FORMAT, req->request_id), req->node, req->schema,
							 req->table),
					  errdetail("The table is not published here, or the request was seen "
								"before.")));
		return;
	}
	SPI_finish();
	ereport(LOG, (errmsg("evrep: node \"%s\" asked for a copy of \"%s\".\"%s\"", req->node,
						 req->schema, req->table)));
	if (!xact_callback_registered)
	{
		RegisterXactCallback(copy_xact_callback, NULL);
		xact_callback_registered = true;
	}
	copy_due_at_commit = true;
}

/* ---- chunks ---- */

/* The job the next chunk belongs to. */
typedef struct CopyJob
{
	int32 pub_id;
	char *requester;
	int64 request_id;
	Datum last_key; /* jsonb */
	bool from_start;
	int64 estimate;
	Oid relid;
	bool others;   /* more unfinished jobs than this one */
	Datum columns; /* the table's column list (text[]), or 0: all */
	char *filter;  /* its row filter, or NULL */
} CopyJob;

static bool
next_job(CopyJob *job)
{
	TupleDesc desc;
	HeapTuple tup;
	bool isnull;

	int contracts = contract_catalog() ? 1 : 0;

	if (spi_check(SPI_execute_plan(
					  spi_kept_plan(&next_job_plan[contracts], next_job_query[contracts], 0, NULL),
					  NULL, NULL, true, 1),
				  SPI_OK_SELECT, ANY_ROWS, "could not read evrep copy jobs") == 0)
		return false;
	desc = SPI_tuptable->tupdesc;
	tup = SPI_tuptable->vals[0];
	job->pub_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	job->requester = SPI_getvalue(tup, desc, 2);
	job->request_id = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	job->last_key = SPI_getbinval(tup, desc, 4, &job->from_start);
	job->estimate = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
	if (isnull)
		job->estimate = 0;
	job->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull));
	job->others = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull)) > 1;
	job->columns = SPI_getbinval(tup, desc, 8, &isnull);
	if (isnull)
		job->columns = (Datum) 0;
	job->filter = SPI_getvalue(tup, desc, 9);
	return true;
}

/*
 * How the publisher reads a published table's chunks: the statements (one
 * from the start, one after a key) and the key's description for the
 * subscriber.  Kept per relation until a relcache invalidation.
 */
typedef struct ChunkReader
{
	RelCacheEntry head; /* the relation */
	char *key_desc;		/* JSON array, in relcache_memory(readers) */
	char *columns_src;	/* the contract read with: column list as text */
	char *filter_src;	/* and row filter; NULL: none */
	SPIPlanPtr first;	/* NULL: not prepared yet */
	SPIPlanPtr next;
	SPIPlanPtr by_key; /* a row's ctid by its key object */
} ChunkReader;

static RelCache *readers = NULL;

static ChunkReader *get_reader(Oid relid);

static void
free_reader(RelCacheEntry *entry)
{
	ChunkReader *r = (ChunkReader *) entry;

	if (r->first)
		SPI_freeplan(r->first);
	if (r->next)
		SPI_freeplan(r->next);
	if (r->by_key)
		SPI_freeplan(r->by_key);
	if (r->key_desc)
		pfree(r->key_desc);
	if (r->columns_src)
		pfree(r->columns_src);
	if (r->filter_src)
		pfree(r->filter_src);
	r->first = r->next = r->by_key = NULL;
	r->key_desc = r->columns_src = r->filter_src = NULL;
}

/*
 * The statement that reads one chunk: the rows after $1's key in key
 * order, up to $2 of them, each as evrep writes it (NULL if too large to
 * send) with its key object.  Names come from the catalog, quoted.  The
 * lower bound is a row comparison against a lateral row (ROW() keeps a
 * one-column key one too), so the primary key's index serves it at any
 * depth of the table.  Materialized in key order, the rows come out in
 * the order they were stored; read through a cursor, a row's JSON is made
 * only when the chunk has room for it.
 */
/*
 * A table's contract narrows the chunk: sel lists the published columns
 * ("t.*" for all) and filter (or NULL) is contract.c's deparse of the
 * checked row filter, whose column names resolve to t, the innermost
 * scope.
 */
static char *
chunk_sql(const char *qualname, bool from_start, const char *tkeys, const char *rkeys,
		  const char *obj, const char *sel, const char *filter)
{
	const char *and_filter = filter ? psprintf(" AND (%s)", filter) : "";

	return psprintf(
		"WITH c AS MATERIALIZED (SELECT %s FROM %s ORDER BY %s LIMIT $2)"
		" SELECT evrep._row_json(c)::pg_catalog.text, pg_catalog.jsonb_build_object(%s) FROM c",
		sel,
		from_start ? psprintf("%s t WHERE $1::pg_catalog.jsonb IS NULL%s", qualname, and_filter)
				   : psprintf("pg_catalog.jsonb_populate_record(NULL::%s, $1) r,"
							  " LATERAL (SELECT * FROM %s t WHERE ROW(%s) > ROW(%s)%s"
							  " ORDER BY %s LIMIT $2) t",
							  qualname, qualname, tkeys, rkeys, and_filter, tkeys),
		tkeys, obj);
}

/* "t.*", or the column list's columns of t. */
static char *
select_list(Datum columns)
{
	StringInfoData sel;
	Datum *elems;
	bool *nulls;
	int n;

	if (columns == (Datum) 0)
		return "t.*";
	initStringInfo(&sel);
	deconstruct_array(DatumGetArrayTypeP(columns), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls,
					  &n);
	for (int i = 0; i < n; i++)
	{
		if (!nulls[i])
			appendStringInfo(&sel, "%st.%s", sel.len > 0 ? ", " : "",
							 quote_identifier(TextDatumGetCString(elems[i])));
	}
	return sel.data;
}

/* A kept plan of $1 jsonb (a key object) and, if nargs is 2, $2 int8 (a row count). */
static SPIPlanPtr
prepare_chunk(const char *sql, int nargs)
{
	SPIPlanPtr plan = SPI_prepare(sql, nargs, (Oid[]){JSONBOID, INT8OID});

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * Nothing until the first chunk: the statements depend on the contract
 * the chunk's snapshot sees (prepare_reader).
 */
static void
build_reader(RelCacheEntry *entry)
{
}

/*
 * Reads the primary key from the catalog and prepares the statements for
 * the job's contract.
 */
static void
prepare_reader(ChunkReader *r, const CopyJob *job)
{
	char *qualname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(r->head.key)),
												get_rel_name(r->head.key));
	StringInfoData key_desc, tkeys, rkeys, obj;
	char *sel;
	char *filter = NULL;
	int ret;

	ret = SPI_execute_with_args(
		"SELECT a.attname, co.collname, a.atttypid, a.atttypmod FROM pg_catalog.pg_index i"
		" CROSS JOIN LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
		" JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
		" LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation"
		" WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
		1, (Oid[]){OIDOID}, (Datum[]){ObjectIdGetDatum(r->head.key)}, NULL, true, 0);
	if (ret != SPI_OK_SELECT || SPI_processed == 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_TABLE_DEFINITION),
						errmsg("published table %s has no primary key", qualname)));
	initStringInfo(&key_desc);
	initStringInfo(&tkeys);
	initStringInfo(&rkeys);
	initStringInfo(&obj);
	appendStringInfoChar(&key_desc, '[');
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char *collation = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		const char *q = quote_identifier(name);
		const char *sep = i > 0 ? ", " : "";
		bool isnull;
		Oid typid = DatumGetObjectId(
			SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull));
		int32 typmod =
			DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull));
		/* a json or jsonb key is its text in a key object, as in a row (row_json.c) */
		bool as_text = row_json_is_text_of_json(typid);

		/* the subscriber cuts its key ranges the same way, or not at all */
		appendStringInfo(&key_desc, "%s{\"column\":", sep);
		escape_json(&key_desc, name);
		appendStringInfoString(&key_desc, ",\"collation\":");
		if (collation)
			escape_json(&key_desc, collation);
		else
			appendStringInfoString(&key_desc, "null");
		appendStringInfoChar(&key_desc, '}');

		appendStringInfo(&tkeys, "%st.%s", sep, q);
		if (as_text)
			appendStringInfo(
				&rkeys, "%s($1 OPERATOR(pg_catalog.->>) %s)::%s", sep, quote_literal_cstr(name),
				format_type_extended(typid, typmod,
									 FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY));
		else
			appendStringInfo(&rkeys, "%sr.%s", sep, q);
		appendStringInfo(&obj, "%s%s, c.%s%s", sep, quote_literal_cstr(name), q,
						 as_text ? "::pg_catalog.text" : "");
	}
	appendStringInfoChar(&key_desc, ']');

	sel = select_list(job->columns);
	if (job->filter)
	{
		Relation rel = table_open(r->head.key, AccessShareLock);

		filter = contract_filter_sql(rel, job->filter);
		table_close(rel, AccessShareLock);
	}
	r->first =
		prepare_chunk(chunk_sql(qualname, true, tkeys.data, rkeys.data, obj.data, sel, filter), 2);
	r->next =
		prepare_chunk(chunk_sql(qualname, false, tkeys.data, rkeys.data, obj.data, sel, filter), 2);
	r->by_key = prepare_chunk(psprintf("SELECT t.ctid FROM %s t, pg_catalog.jsonb_populate_record("
									   "NULL::%s, $1) r WHERE ROW(%s) = ROW(%s)",
									   qualname, qualname, tkeys.data, rkeys.data),
							  1);
	r->key_desc = MemoryContextStrdup(relcache_memory(readers), key_desc.data);
	if (job->columns != (Datum) 0)
		r->columns_src =
			MemoryContextStrdup(relcache_memory(readers), contract_columns_text(job->columns));
	if (job->filter)
		r->filter_src = MemoryContextStrdup(relcache_memory(readers), job->filter);
}

static bool
same_text(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/*
 * The reader for the job, prepared for the contract the job's snapshot
 * sees: a contract changed in between (whose invalidation may come later
 * than the snapshot that sees it) prepares it again.
 */
static ChunkReader *
reader_for(const CopyJob *job)
{
	ChunkReader *r = get_reader(job->relid);
	char *columns = contract_columns_text(job->columns);

	if (r->first == NULL || !same_text(r->columns_src, columns) ||
		!same_text(r->filter_src, job->filter))
	{
		free_reader(&r->head);
		prepare_reader(r, job);
	}
	return r;
}

static ChunkReader *
get_reader(Oid relid)
{
	if (readers == NULL)
		readers =
			relcache_create("evrep chunk readers", sizeof(ChunkReader), build_reader, free_reader);
	return (ChunkReader *) relcache_get(readers, relid);
}

/*
 * One chunk as read: its rows (a JSON array), the keys of the rows too
 * large to send (a JSON array of key objects), and the key of the last
 * row it covers.
 */
typedef struct ChunkRows
{
	StringInfoData rows;
	StringInfoData skipped;
	List *skipped_keys;	  /* jsonb Datums */
	StringInfoData apart; /* the keys of those sent as large events */
	int64 nrows;		  /* rows covered, the skipped ones too */
	int64 nskipped;
	int64 napart;
	Datum upto; /* jsonb */
	bool last;	/* no rows after these */
} ChunkRows;

/*
 * Reads a chunk: up to evrep.copy_chunk_rows rows, fewer when the next
 * would take the chunk past evrep.max_message_bytes.  A row whose own JSON
 * does not fit (NULL from evrep._row_json) is covered by its key alone, in
 * "skipped": the subscriber keeps what it has for that key and parks a
 * dead letter naming it.
 */
static void
read_chunk(SPIPlanPtr plan, Datum *values, const char *nulls, ChunkRows *c)
{
	Portal portal = SPI_cursor_open(NULL, plan, values, nulls, true);
	Size budget = evrep_row_limit();
	int64 fetched = 0;
	bool cut = false;

	memset(c, 0, sizeof(ChunkRows));
	initStringInfo(&c->rows);
	initStringInfo(&c->skipped);
	appendStringInfoChar(&c->rows, '[');
	appendStringInfoChar(&c->skipped, '[');
	for (;;)
	{
		char *row;
		bool isnull;
		Datum key;
		StringInfo into;

		SPI_cursor_fetch(portal, true, 1);
		if (SPI_processed == 0)
			break;
		fetched++;
		row = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (row != NULL && c->nrows > 0 && c->rows.len + c->skipped.len + strlen(row) + 2 > budget)
		{
			cut = true;
			break;
		}
		key = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		into = row != NULL ? &c->rows : &c->skipped;
		if (into->len > 1)
			appendStringInfoChar(into, ',');
		appendStringInfoString(
			into, row != NULL ? row : JsonbToCString(NULL, &DatumGetJsonbP(key)->root, -1));
		if (row == NULL)
		{
			c->nskipped++;
			c->skipped_keys = lappend(c->skipped_keys, DatumGetPointer(datumCopy(key, false, -1)));
		}
		c->nrows++;
		c->upto = datumCopy(key, false, -1);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	appendStringInfoChar(&c->rows, ']');
	appendStringInfoChar(&c->skipped, ']');
	c->last = !cut && fetched < evrep_copy_chunk_rows;
}

/*
 * The chunk's body: {"for", "request", "estimate", "key", "after", "upto",
 * "rows"}, and "skipped" and "apart" when they have keys.
 */
static Datum
chunk_body(const CopyJob *job, const char *key_desc, const ChunkRows *c)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"for\":");
	escape_json(&buf, job->requester);
	appendStringInfo(&buf, ",\"request\":" INT64_FORMAT ",\"estimate\":" INT64_FORMAT,
					 job->request_id, job->estimate);
	appendStringInfo(&buf, ",\"key\":%s", key_desc);
	appendStringInfo(
		&buf, ",\"after\":%s",
		job->from_start ? "null" : JsonbToCString(NULL, &DatumGetJsonbP(job->last_key)->root, -1));
	appendStringInfo(&buf, ",\"upto\":%s",
					 c->last ? "null" : JsonbToCString(NULL, &DatumGetJsonbP(c->upto)->root, -1));
	if (c->nskipped > 0)
		appendStringInfo(&buf, ",\"skipped\":%s", c->skipped.data);
	if (c->napart > 0)
		appendStringInfo(&buf, ",\"apart\":%s", c->apart.data);
	appendStringInfo(&buf, ",\"rows\":%s}", c->rows.data);
	return CStringGetTextDatum(buf.data);
}

/* The columns a job sends, as a mask over rel's attributes; NULL: all. */
static bool *
columns_mask(Relation rel, Datum columns)
{
	TupleDesc desc = RelationGetDescr(rel);
	bool *mask;
	Datum *elems;
	bool *nulls;
	int n;

	if (columns == (Datum) 0)
		return NULL;
	mask = palloc0(sizeof(bool) * desc->natts);
	deconstruct_array(DatumGetArrayTypeP(columns), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls,
					  &n);
	for (int i = 0; i < n; i++)
	{
		AttrNumber attno = nulls[i]
							   ? InvalidAttrNumber
							   : get_attnum(RelationGetRelid(rel), TextDatumGetCString(elems[i]));

		if (attno > 0)
			mask[attno - 1] = true;
	}
	return mask;
}

/*
 * The row of a key as the job's snapshot sees it, its large values still
 * where they are stored (a whole-row value would read them all in).
 */
static HeapTuple
row_by_key(ChunkReader *r, Relation rel, Datum key)
{
	HeapTupleData tuple;
	HeapTuple copy;
	Buffer buf;
	bool isnull;

	if (spi_check(SPI_execute_plan(r->by_key, &key, NULL, true, 1), SPI_OK_SELECT, ANY_ROWS,
				  "could not find a row of a copy by its key") == 0)
		return NULL;
	tuple.t_self = *(ItemPointer) DatumGetPointer(
		SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (!heap_fetch(rel, GetActiveSnapshot(), &tuple, &buf, false))
		return NULL;
	copy = heap_copytuple(&tuple);
	ReleaseBuffer(buf);
	return copy;
}

/*
 * The chunk's rows too large for it go ahead of it as large events
 * (oversize.c), numbered before it: the chunk keeps what they wrote
 * ("apart").  Those that cannot stay in "skipped".  Returns how many ids
 * it added to ids.  One row at a time in memory.
 */
static int
send_rows_apart(const CopyJob *job, ChunkReader *r, ChunkRows *c, int64 *ids)
{
	Relation rel = table_open(job->relid, AccessShareLock);
	bool *mask = columns_mask(rel, job->columns);
	MemoryContext row_cxt =
		AllocSetContextCreate(CurrentMemoryContext, "evrep copy row apart", ALLOCSET_DEFAULT_SIZES);
	ListCell *lc;
	int n = 0;

	resetStringInfo(&c->skipped);
	appendStringInfoChar(&c->skipped, '[');
	initStringInfo(&c->apart);
	appendStringInfoChar(&c->apart, '[');
	c->nskipped = 0;
	foreach (lc, c->skipped_keys)
	{
		Datum key = PointerGetDatum(lfirst(lc));
		MemoryContext old = MemoryContextSwitchTo(row_cxt);
		HeapTuple tuple = row_by_key(r, rel, key);
		OversizeValues *values = NULL;
		char *row = tuple ? oversize_large(rel, 'i', tuple, mask, NULL, &values) : NULL;
		StringInfo into;

		if (row != NULL)
		{
			ids[n] = outbox_add_numbered(job->pub_id, EVREP_OP_LARGE, CStringGetTextDatum(row));
			oversize_store(ids[n++], values);
		}
		MemoryContextSwitchTo(old);
		into = row != NULL ? &c->apart : &c->skipped;
		if (into->len > 1)
			appendStringInfoChar(into, ',');
		appendStringInfoString(into, JsonbToCString(NULL, &DatumGetJsonbP(key)->root, -1));
		if (row != NULL)
			c->napart++;
		else
			c->nskipped++;
		MemoryContextReset(row_cxt);
	}
	appendStringInfoChar(&c->skipped, ']');
	appendStringInfoChar(&c->apart, ']');
	MemoryContextDelete(row_cxt);
	table_close(rel, AccessShareLock);
	return n;
}

/* Under evrep.copy_rate_limit, the next chunk may not be read before this. */
static TimestampTz next_chunk_at = 0;

long
copy_wait_ms(void)
{
	if (evrep_copy_rate_limit <= 0)
		return 0;
	return TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_chunk_at);
}

int64 *
copy_next_chunk(bool *more, int *n)
{
	CopyJob job;
	ChunkReader *reader;
	Datum values[5];
	ChunkRows chunk;
	int64 *ids;

	*more = false;
	*n = 0;
	if (copy_wait_ms() > 0)
	{
		*more = true;
		return NULL;
	}
	if (!next_job(&job))
		return NULL;

	values[0] = job.last_key;
	values[1] = Int64GetDatum(evrep_copy_chunk_rows);
	reader = reader_for(&job);
	read_chunk(job.from_start ? reader->first : reader->next, values, job.from_start ? "n " : "  ",
			   &chunk);
	if (evrep_copy_rate_limit > 0)
		next_chunk_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													chunk.nrows * 1000 / evrep_copy_rate_limit);
	ids = palloc(sizeof(int64) * (chunk.nskipped + 1));
	if (chunk.nskipped > 0)
		*n = send_rows_apart(&job, reader, &chunk, ids);
	if (chunk.nskipped > 0)
		ereport(
			WARNING,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("evrep copy for node \"%s\" leaves out " INT64_FORMAT " rows too large to send",
					job.requester, chunk.nskipped),
			 errdetail("Keys: %s. Their JSON form is over evrep.max_message_bytes (%d bytes).",
					   chunk.skipped.data, evrep_max_message_bytes),
			 errhint("The subscriber keeps what it has for them and parks a dead letter "
					 "naming each.")));

	ids[(*n)++] = outbox_add_numbered(job.pub_id, 'c', chunk_body(&job, reader->key_desc, &chunk));

	values[0] = Int32GetDatum(job.pub_id);
	values[1] = CStringGetTextDatum(job.requester);
	values[2] = chunk.last ? (Datum) 0 : chunk.upto;
	values[3] = Int64GetDatum(chunk.nrows);
	values[4] = BoolGetDatum(chunk.last);
	spi_check(SPI_execute_plan(spi_kept_plan(&advance_plan, advance_query, 5,
											 (Oid[]){INT4OID, TEXTOID, JSONBOID, INT8OID, BOOLOID}),
							   values, chunk.last ? "  n  " : "     ", false, 0),
			  SPI_OK_UPDATE, 1, "could not advance an evrep copy job");
	if (chunk.last)
		ereport(LOG, (errmsg("evrep: copy for node \"%s\" sent, last chunk " INT64_FORMAT " rows",
							 job.requester, chunk.nrows)));
	*more = !chunk.last || job.others;
	return ids;
}
