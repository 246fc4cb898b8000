/*
 * apply_target.c
 *		The statements that apply events to one subscribed table.
 *
 * Every statement is built from the catalog (quoted names, the primary key
 * of the local table), never from message text, and reads the event's row
 * through jsonb_populate_record, so PostgreSQL's own input functions
 * convert each value to the local column type.  json and jsonb columns
 * arrive as strings of their text (row_json.c) and are read from that.  A
 * copy's rows, and a run's, are read from the message's text by
 * evrep._json_rows (json_rows.c), unless the table has array or composite
 * columns.  The plans are kept per relation and dropped by a relcache
 * invalidation (relcache.c).
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/heap.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "common/hashfn.h"
#include "nodes/bitmapset.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/acl.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "apply_target.h"
#include "incarnation.h"
#include "parts_receive.h"
#include "relcache.h"
#include "row_json.h"
#include "spi_util.h"
#include "wire_scan.h"

struct ApplyTarget
{
	RelCacheEntry head; /* the relation */
	MemoryContext cxt;	/* everything below but the plans */
	char *qualname;		/* quoted schema.table */
	int ncols;
	char **colnames; /* insertable columns */
	int *collens;	 /* their lengths */
	char **textjson; /* json/jsonb columns: their type, else NULL */
	bool any_textjson;
	bool json_rows;				   /* a copy's rows are read from their text (evrep._json_rows) */
	Bitmapset *keycols;			   /* indexes into colnames */
	SPIPlanPtr upsert;			   /* all columns */
	SPIPlanPtr upsert_many;		   /* all columns, rows of a jsonb[] */
	char *many_subset;			   /* columns of many_subset_upsert */
	SPIPlanPtr many_subset_upsert; /* some columns, rows of a jsonb[] */
	SPIPlanPtr insert_many;		   /* as upsert_many, without ON CONFLICT */
	char *many_subset_ins;		   /* columns of many_subset_insert */
	SPIPlanPtr many_subset_insert; /* as many_subset_upsert, without ON CONFLICT */
	char *text_ins_cols;		   /* columns of text_insert */
	SPIPlanPtr text_insert;		   /* a run of inserts read from their text (_json_rows) */
	char *text_ups_cols;		   /* columns of text_upsert */
	SPIPlanPtr text_upsert;		   /* ... of inserts and updates */
	SPIPlanPtr delete;
	char *subset;			   /* columns of subset_upsert: "1" = used */
	SPIPlanPtr subset_upsert;  /* for events that lack some columns */
	char **colcoll;			   /* collation of each column, NULL if none */
	char *copy_subset;		   /* columns of copy_upsert */
	SPIPlanPtr copy_upsert;	   /* a chunk of a copy, set-based */
	char *copy_order;		   /* key order of copy_delete, as column indexes */
	SPIPlanPtr copy_delete[8]; /* by COPY_RANGE_* bits */
	SPIPlanPtr copy_insert;	   /* every column, no conflict possible */
	bool copy_warned;		   /* about a key range it cannot cut */
	int64 unknown_rows;		   /* rows with columns the table lacks, not yet taken */
	bool unknown_warned;	   /* about such columns */
};

/* Which ends a chunk's key range has: (after, upto]. */
#define COPY_RANGE_AFTER 1
#define COPY_RANGE_UPTO 2
/* and whether every local row of the range goes, or those the chunk lacks */
#define COPY_RANGE_WHOLE 4

static RelCache *targets = NULL;

static void
free_plan(SPIPlanPtr *plan)
{
	if (*plan)
		SPI_freeplan(*plan);
	*plan = NULL;
}

/*
 * A stale target drops its plans and columns; the warnings already given
 * for the table stay given.
 */
static void
reset_target(RelCacheEntry *entry)
{
	ApplyTarget *t = (ApplyTarget *) entry;

	free_plan(&t->upsert);
	free_plan(&t->delete);
	free_plan(&t->subset_upsert);
	free_plan(&t->copy_upsert);
	free_plan(&t->copy_insert);
	free_plan(&t->upsert_many);
	free_plan(&t->many_subset_upsert);
	free_plan(&t->insert_many);
	free_plan(&t->many_subset_insert);
	free_plan(&t->text_insert);
	free_plan(&t->text_upsert);
	for (int i = 0; i < lengthof(t->copy_delete); i++)
		free_plan(&t->copy_delete[i]);
	if (t->cxt)
		MemoryContextDelete(t->cxt);
	t->cxt = NULL;
	t->qualname = NULL;
	t->colnames = NULL;
	t->collens = NULL;
	t->textjson = NULL;
	t->any_textjson = false;
	t->json_rows = false;
	t->keycols = NULL;
	t->subset = NULL;
	t->many_subset = NULL;
	t->many_subset_ins = NULL;
	t->text_ins_cols = NULL;
	t->text_ups_cols = NULL;
	t->copy_subset = NULL;
	t->copy_order = NULL;
	t->colcoll = NULL;
	t->ncols = 0;
	t->unknown_rows = 0;
}

static char *
key_list(ApplyTarget *t)
{
	StringInfoData buf;
	int i = -1;

	initStringInfo(&buf);
	while ((i = bms_next_member(t->keycols, i)) >= 0)
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", quote_identifier(t->colnames[i]));
	return buf.data;
}

/*
 * Column i of a row in a statement: the populated record's column, or the
 * text that the row object obj holds for a json or jsonb column (obj NULL:
 * rows of evrep._json_rows, which reads that text itself).
 */
static char *
col_value(ApplyTarget *t, int i, const char *rec, const char *obj)
{
	if (t->textjson[i] && obj != NULL)
		return psprintf("(%s OPERATOR(pg_catalog.->>) %s)::%s", obj,
						quote_literal_cstr(t->colnames[i]), t->textjson[i]);
	return psprintf("%s.%s", rec, quote_identifier(t->colnames[i]));
}

/*
 * The rows of param, a JSON array of row objects, as records r (and
 * objects j.value: qualified, since a column may be called j).
 */
static char *
set_source(ApplyTarget *t, const char *param)
{
	if (t->json_rows)
		return psprintf("evrep._json_rows(NULL::%s, %s) r", t->qualname, param);
	if (t->any_textjson)
		return psprintf("pg_catalog.jsonb_array_elements(%s) AS j(value),"
						" pg_catalog.jsonb_populate_record(NULL::%s, j.value) r",
						param, t->qualname);
	return psprintf("pg_catalog.jsonb_populate_recordset(NULL::%s, %s) r", t->qualname, param);
}

/* Where an INSERT's rows come from: $1 is ... */
typedef enum RowSource
{
	ROWS_ONE,  /* a row object */
	ROWS_SET,  /* a JSON array of row objects */
	ROWS_ARRAY /* a jsonb[] of row objects */
} RowSource;

/*
 * INSERT ... [ON CONFLICT (key) DO UPDATE] over the columns in use (all if
 * NULL), from $1 (RowSource); params, if not NULL, gives the columns whose
 * value is a parameter of their own instead ($n for n > 0).
 */
static char *
insert_sql(ApplyTarget *t, const bool *use, RowSource source, bool upsert, const int *params)
{
	char *from;
	const char *obj = source == ROWS_ONE				   ? "$1"
					  : source == ROWS_SET && t->json_rows ? NULL
														   : "j.value";

	StringInfoData cols, sel, set;

	initStringInfo(&cols);
	initStringInfo(&sel);
	initStringInfo(&set);
	for (int i = 0; i < t->ncols; i++)
	{
		const char *q;

		if (use && !use[i])
			continue;
		q = quote_identifier(t->colnames[i]);
		appendStringInfo(&cols, "%s%s", cols.len ? ", " : "", q);
		appendStringInfo(&sel, "%s%s", sel.len ? ", " : "",
						 params && params[i] > 0 ? psprintf("$%d", params[i])
												 : col_value(t, i, "r", obj));
		if (!bms_is_member(i, t->keycols))
			appendStringInfo(&set, "%s%s = EXCLUDED.%s", set.len ? ", " : "", q, q);
	}
	if (source == ROWS_ARRAY)
		from = psprintf("pg_catalog.unnest($1) AS j(value),"
						" pg_catalog.jsonb_populate_record(NULL::%s, j.value) r",
						t->qualname);
	else if (source == ROWS_SET)
		from = set_source(t, "$1");
	else
		from = psprintf("pg_catalog.jsonb_populate_record(NULL::%s, $1) r", t->qualname);
	return psprintf("INSERT INTO %s AS t (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s%s%s%s",
					t->qualname, cols.data, sel.data, from,
					upsert ? psprintf(" ON CONFLICT (%s) DO ", key_list(t)) : "",
					upsert ? (set.len ? "UPDATE SET " : "NOTHING") : "", upsert ? set.data : "");
}

/* t's key equals the key in the row object $1 (populated as r) */
static char *
key_condition(ApplyTarget *t)
{
	StringInfoData cond;
	int i = -1;

	initStringInfo(&cond);
	while ((i = bms_next_member(t->keycols, i)) >= 0)
	{
		appendStringInfo(&cond, "%st.%s = %s", cond.len ? " AND " : "",
						 quote_identifier(t->colnames[i]), col_value(t, i, "r", "$1"));
	}
	return cond.data;
}

static char *
delete_sql(ApplyTarget *t)
{
	return psprintf(
		"DELETE FROM %s AS t USING pg_catalog.jsonb_populate_record(NULL::%s, $1) r WHERE %s",
		t->qualname, t->qualname, key_condition(t));
}

/*
 * An update that left values out as unchanged needs the row it updates:
 * inserted without them, the row would lack them for good.
 */
static void
require_row_for_unchanged(ApplyTarget *t, const WireEvent *ev, Jsonb *row)
{
	Oid argtypes[1] = {JSONBOID};
	Datum values[1] = {JsonbPGetDatum(row)};

	if (ev->unchanged == NULL)
		return;
	if (spi_check(
			SPI_execute_with_args(
				psprintf("SELECT FROM %s AS t, pg_catalog.jsonb_populate_record(NULL::%s, $1) r"
						 " WHERE %s FOR UPDATE OF t",
						 t->qualname, t->qualname, key_condition(t)),
				1, argtypes, values, NULL, false, 1),
			SPI_OK_SELECT, ANY_ROWS, "evrep could not look for the row of an update") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the row of this update is not in %s, and the origin did not send its "
						"unchanged values %s",
						t->qualname, JsonbToCString(NULL, &ev->unchanged->root, -1)),
				 errhint("Resync the table to copy the row whole.")));
}

/* A kept plan of nargs parameters: the first of type first, then jsonb. */
static SPIPlanPtr
prepare_typed(const char *sql, int nargs, Oid first)
{
	Oid argtypes[3] = {first, JSONBOID, JSONBOID};
	SPIPlanPtr plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/* A kept plan of nargs jsonb parameters (one jsonb[] if nargs is 0). */
static SPIPlanPtr
prepare_kept(const char *sql, int nargs)
{
	return nargs == 0 ? prepare_typed(sql, 1, JSONBARRAYOID) : prepare_typed(sql, nargs, JSONBOID);
}

/* ... whose first parameter is a copy's rows ($1 of set_source). */
static SPIPlanPtr
prepare_rows_kept(ApplyTarget *t, const char *sql, int nargs)
{
	return prepare_typed(sql, nargs, t->json_rows ? TEXTOID : JSONBOID);
}

/* A copy's rows and the key objects it keeps, as one JSON array's text. */
static Datum
rows_and_kept_text(WireCopy *copy)
{
	text *rows = wire_copy_rows_text(copy);
	char *kept = JsonbToCString(NULL, &copy->kept->root, VARSIZE(copy->kept));
	StringInfoData buf;

	initStringInfo(&buf);
	/* both arrays: the first without its ], the second without its [ */
	appendBinaryStringInfo(&buf, VARDATA_ANY(rows), VARSIZE_ANY_EXHDR(rows) - 1);
	if (copy->nrows > 0 && JsonContainerSize(&copy->kept->root) > 0)
		appendStringInfoChar(&buf, ',');
	appendStringInfoString(&buf, kept + 1);
	return PointerGetDatum(cstring_to_text_with_len(buf.data, buf.len));
}

/* A copy's rows as set_source reads them. */
static Datum
copy_rows_arg(ApplyTarget *t, WireCopy *copy)
{
	return t->json_rows ? PointerGetDatum(wire_copy_rows_text(copy))
						: JsonbPGetDatum(wire_copy_rows(copy));
}

/*
 * The relcache counts only an immediate key as the primary key; a
 * deferrable one gets its own message, for the error is then not
 * "add a key" but "make it NOT DEFERRABLE".
 */
static bool
has_deferrable_pkey(Relation rel)
{
	List *indexes = RelationGetIndexList(rel);
	ListCell *lc;
	bool found = false;

	foreach (lc, indexes)
	{
		HeapTuple tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index index;

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for index %u", lfirst_oid(lc));
		index = (Form_pg_index) GETSTRUCT(tup);
		found |= index->indisprimary && !index->indimmediate;
		ReleaseSysCache(tup);
	}
	list_free(indexes);
	return found;
}

/*
 * Can evrep._json_rows read a copy's values of this type?  It reads an
 * array or a composite (written in to_json's form) as JSON text, not as
 * jsonb_populate_record does.
 */
static bool
json_rows_can_read(Oid typid)
{
	Oid base = getBaseType(typid);

	return !type_is_rowtype(base) && !OidIsValid(get_element_type(base));
}

/* Reads columns and primary key of the relation from the catalog. */
static void
build_target(RelCacheEntry *entry)
{
	ApplyTarget *t = (ApplyTarget *) entry;
	Relation rel = table_open(t->head.key, AccessShareLock);
	TupleDesc desc = RelationGetDescr(rel);
	Bitmapset *pk = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	MemoryContext old;
	bool deferrable;

	t->cxt =
		AllocSetContextCreate(relcache_memory(targets), "evrep apply target", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(t->cxt);
	t->qualname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											 RelationGetRelationName(rel));
	t->colnames = palloc(sizeof(char *) * desc->natts);
	t->collens = palloc(sizeof(int) * desc->natts);
	t->colcoll = palloc0(sizeof(char *) * desc->natts);
	t->textjson = palloc0(sizeof(char *) * desc->natts);
	t->json_rows = history_catalog(); /* 1.1 has evrep._json_rows */
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->attgenerated)
			continue;
		if (bms_is_member(att->attnum - FirstLowInvalidHeapAttributeNumber, pk))
			t->keycols = bms_add_member(t->keycols, t->ncols);
		if (OidIsValid(att->attcollation))
			t->colcoll[t->ncols] = get_collation_name(att->attcollation);
		t->json_rows &= json_rows_can_read(att->atttypid);
		if (row_json_is_text_of_json(att->atttypid))
		{
			t->textjson[t->ncols] =
				format_type_extended(att->atttypid, att->atttypmod,
									 FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY);
			t->any_textjson = true;
		}
		t->collens[t->ncols] = strlen(NameStr(att->attname));
		t->colnames[t->ncols++] = pstrdup(NameStr(att->attname));
	}
	MemoryContextSwitchTo(old);
	deferrable = bms_is_empty(t->keycols) && has_deferrable_pkey(rel);
	table_close(rel, AccessShareLock);

	if (deferrable)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the primary key of subscribed table %s is deferrable", t->qualname),
				 errhint("evrep applies changes with INSERT ... ON CONFLICT on the primary key, "
						 "which needs a key checked at once: make it NOT DEFERRABLE, then replay "
						 "the parked events.")));
	if (bms_is_empty(t->keycols))
		ereport(ERROR, (errcode(ERRCODE_INVALID_TABLE_DEFINITION),
						errmsg("subscribed table %s has no primary key", t->qualname)));

	t->upsert = prepare_kept(insert_sql(t, NULL, ROWS_ONE, true, NULL), 1);
	t->delete = prepare_kept(delete_sql(t), 1);
}

ApplyTarget *
apply_target_get(Oid relid)
{
	if (targets == NULL)
		targets =
			relcache_create("evrep apply targets", sizeof(ApplyTarget), build_target, reset_target);
	return (ApplyTarget *) relcache_get(targets, relid);
}

/*
 * The upsert for events that carry only some of the local columns (a
 * subscriber with columns of its own): the plan for the last such column
 * set is kept, since a stream's events all carry the same columns.
 */
static SPIPlanPtr
plan_for(ApplyTarget *t, const bool *use, RowSource source, bool upsert, char **kept_sig,
		 SPIPlanPtr *kept)
{
	char *sig = palloc(t->ncols + 1);

	for (int i = 0; i < t->ncols; i++)
		sig[i] = use[i] ? '1' : '0';
	sig[t->ncols] = '\0';
	if (*kept_sig == NULL || strcmp(sig, *kept_sig) != 0)
	{
		SPIPlanPtr plan = source == ROWS_SET
							  ? prepare_rows_kept(t, insert_sql(t, use, source, upsert, NULL), 1)
							  : prepare_kept(insert_sql(t, use, source, upsert, NULL),
											 source == ROWS_ARRAY ? 0 : 1);

		free_plan(kept);
		*kept = plan;
		*kept_sig = MemoryContextStrdup(t->cxt, sig);
	}
	pfree(sig);
	return *kept;
}

static SPIPlanPtr
subset_plan(ApplyTarget *t, const bool *use)
{
	return plan_for(t, use, ROWS_ONE, true, &t->subset, &t->subset_upsert);
}

static void
run_plan(SPIPlanPtr plan, Jsonb *row, int expect)
{
	Datum values[1] = {JsonbPGetDatum(row)};

	spi_check(SPI_execute_plan(plan, values, NULL, false, 0), expect, ANY_ROWS,
			  "evrep apply statement failed");
}

/* An INSERT of a copy's rows (copy_rows_arg). */
static void
run_rows_plan(SPIPlanPtr plan, Datum rows)
{
	spi_check(SPI_execute_plan(plan, &rows, NULL, false, 0), SPI_OK_INSERT, ANY_ROWS,
			  "evrep apply statement failed");
}

/*
 * A tolerant reader: columns the origin has and this table lacks (the
 * origin's schema ran ahead) are ignored, counted, and named in one
 * WARNING per table.
 */
static void
note_unknown_columns(ApplyTarget *t, JsonbContainer *row, int nused, int64 nrows)
{
	JsonbIterator *it;
	JsonbValue v;
	JsonbIteratorToken tok;
	StringInfoData names;

	if (JsonContainerSize(row) <= nused)
		return;
	t->unknown_rows += nrows;
	if (t->unknown_warned)
		return;
	initStringInfo(&names);
	it = JsonbIteratorInit(row);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		bool known = false;

		if (tok != WJB_KEY)
			continue;
		for (int i = 0; i < t->ncols && !known; i++)
			known = strlen(t->colnames[i]) == v.val.string.len &&
					memcmp(t->colnames[i], v.val.string.val, v.val.string.len) == 0;
		if (!known)
			appendStringInfo(&names, "%s\"%.*s\"", names.len ? ", " : "", v.val.string.len,
							 v.val.string.val);
	}
	ereport(
		WARNING,
		(errmsg("evrep ignores columns of %s that this node lacks: %s", t->qualname, names.data),
		 errdetail("evrep.status counts the events that carried them (unknown_column_events)."),
		 errhint("Add the columns here, then evrep_resync() fills them.")));
	t->unknown_warned = true;
}

/*
 * Which local columns a row object carries (a column the origin lacks
 * keeps the local default); true when it carries them all.  The key must
 * be there.  Columns only the row has are noted, for nrows rows.
 */
static bool
columns_in_use(ApplyTarget *t, JsonbContainer *row, bool *use, int64 nrows)
{
	bool all = true;
	int nused = 0;

	for (int i = 0; i < t->ncols; i++)
	{
		use[i] =
			getKeyJsonValueFromContainer(row, t->colnames[i], strlen(t->colnames[i]), NULL) != NULL;
		if (!use[i] && bms_is_member(i, t->keycols))
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("event for %s lacks key column \"%s\"", t->qualname, t->colnames[i])));
		all &= use[i];
		nused += use[i];
	}
	note_unknown_columns(t, row, nused, nrows);
	return all;
}

int64
apply_target_take_unknown(ApplyTarget *t)
{
	int64 n = t->unknown_rows;

	t->unknown_rows = 0;
	return n;
}

/*
 * The key columns in the given order (indexes into colnames), as "alias.col,
 * ..." of a record alias read from the key object obj (NULL: a table's).
 */
static char *
key_list_of(ApplyTarget *t, const int *order, int nkeys, const char *alias, const char *obj)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < nkeys; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "",
						 obj ? col_value(t, order[i], alias, obj)
							 : psprintf("%s.%s", alias, quote_identifier(t->colnames[order[i]])));
	return buf.data;
}

/*
 * DELETE of the local rows in a chunk's key range (after, upto] ($2, $3),
 * all of them or those the chunk's rows ($1) do not have.  The ends are
 * lateral rows, so the range is a row comparison that the primary key's
 * index serves.
 */
static char *
copy_delete_sql(ApplyTarget *t, const int *order, int nkeys, int range)
{
	StringInfoData same;
	char *tk = key_list_of(t, order, nkeys, "t", NULL);

	initStringInfo(&same);
	for (int i = 0; i < nkeys; i++)
	{
		appendStringInfo(&same, "%s%s = t.%s", i ? " AND " : "",
						 col_value(t, order[i], "r", t->json_rows ? NULL : "j.value"),
						 quote_identifier(t->colnames[order[i]]));
	}
	return psprintf("DELETE FROM %s AS t USING pg_catalog.jsonb_populate_record(NULL::%s, $2) a,"
					" pg_catalog.jsonb_populate_record(NULL::%s, $3) u WHERE %s AND %s%s",
					t->qualname, t->qualname, t->qualname,
					range & COPY_RANGE_AFTER
						? psprintf("ROW(%s) > ROW(%s)", tk, key_list_of(t, order, nkeys, "a", "$2"))
						: "true",
					range & COPY_RANGE_UPTO ? psprintf("ROW(%s) <= ROW(%s)", tk,
													   key_list_of(t, order, nkeys, "u", "$3"))
											: "true",
					range & COPY_RANGE_WHOLE ? ""
											 : psprintf(" AND NOT EXISTS (SELECT FROM %s WHERE %s)",
														set_source(t, "$1"), same.data));
}

/*
 * The local key columns in the origin's key order, if they sort as the
 * origin's do: the same columns, with the same collations.  Otherwise a
 * chunk's range means other rows here, and nothing may be deleted by it.
 */
static int *
copy_key_order(ApplyTarget *t, const WireCopy *copy)
{
	int *order;

	if (copy->nkeys != bms_num_members(t->keycols))
		return NULL;
	order = palloc(sizeof(int) * copy->nkeys);
	for (int k = 0; k < copy->nkeys; k++)
	{
		const char *coll = copy->key_collations[k];

		order[k] = -1;
		for (int i = 0; i < t->ncols; i++)
		{
			if (bms_is_member(i, t->keycols) && strcmp(t->colnames[i], copy->key_columns[k]) == 0)
				order[k] = i;
		}
		if (order[k] < 0 || (coll == NULL) != (t->colcoll[order[k]] == NULL) ||
			(coll != NULL && strcmp(coll, t->colcoll[order[k]]) != 0))
			return NULL;
	}
	return order;
}

/*
 * Deletes the local rows of the chunk's key range: all of them (whole), or
 * those the chunk lacks.  False when the range cannot be cut here.
 */
static bool
copy_delete_range(ApplyTarget *t, WireCopy *copy, bool whole)
{
	int range = (copy->after ? COPY_RANGE_AFTER : 0) | (copy->upto ? COPY_RANGE_UPTO : 0) |
				(whole ? COPY_RANGE_WHOLE : 0);
	int *order = copy_key_order(t, copy);
	char *sig;
	Datum values[3];
	char nulls[3] = "   ";

	if (order == NULL)
	{
		if (!t->copy_warned)
			ereport(
				WARNING,
				(errcode(ERRCODE_COLLATION_MISMATCH),
				 errmsg("evrep copy into %s cannot delete the rows its origin lacks", t->qualname),
				 errdetail("The origin's primary key differs in its columns or collations, "
						   "so its key ranges are not this table's."),
				 errhint("Rows are copied; delete stale rows by hand.")));
		t->copy_warned = true;
		return false;
	}
	sig = psprintf("%d", order[0]);
	for (int i = 1; i < copy->nkeys; i++)
		sig = psprintf("%s,%d", sig, order[i]);
	if (t->copy_order == NULL || strcmp(sig, t->copy_order) != 0)
	{
		for (int i = 0; i < lengthof(t->copy_delete); i++)
			free_plan(&t->copy_delete[i]);
		t->copy_order = MemoryContextStrdup(t->cxt, sig);
	}
	if (t->copy_delete[range] == NULL)
		t->copy_delete[range] =
			prepare_rows_kept(t, copy_delete_sql(t, order, copy->nkeys, range), 3);
	/*
	 * rows skipped at the origin keep what this node has for their keys, and
	 * rows sent ahead as large events what those wrote
	 */
	if (copy->kept && t->json_rows)
		values[0] = rows_and_kept_text(copy);
	else if (copy->kept)
		values[0] = DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(wire_copy_rows(copy)),
										JsonbPGetDatum(copy->kept));
	else
		values[0] = copy_rows_arg(t, copy);
	values[1] = copy->after ? JsonbPGetDatum(copy->after) : (Datum) 0;
	values[2] = copy->upto ? JsonbPGetDatum(copy->upto) : (Datum) 0;
	nulls[1] = copy->after ? ' ' : 'n';
	nulls[2] = copy->upto ? ' ' : 'n';
	spi_check(SPI_execute_plan(t->copy_delete[range], values, nulls, false, 0), SPI_OK_DELETE,
			  ANY_ROWS, "evrep copy delete failed");
	return true;
}

/*
 * evrep._json_rows runs as the subscription's owner, who needs USAGE on
 * schema evrep and EXECUTE on it: evrep_admin's, but an owner may have
 * left evrep_admin since it subscribed.  Such an owner's copies read their
 * rows through jsonb, as before 1.1, instead of being parked.
 */
static void
require_json_rows_rights(ApplyTarget *t)
{
	Oid nsp;
	Oid argtypes[2] = {ANYELEMENTOID, TEXTOID};
	Oid fn = InvalidOid;

	if (!t->json_rows)
		return;
	nsp = get_namespace_oid("evrep", true);
	if (OidIsValid(nsp) && pg_namespace_aclcheck(nsp, GetUserId(), ACL_USAGE) == ACLCHECK_OK)
		fn = LookupFuncName(list_make2(makeString("evrep"), makeString("_json_rows")), 2, argtypes,
							true);
	if (OidIsValid(fn) && pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) == ACLCHECK_OK)
		return;
	t->json_rows = false;
	free_plan(&t->copy_insert);
	free_plan(&t->copy_upsert);
	free_plan(&t->text_insert);
	free_plan(&t->text_upsert);
	t->copy_subset = NULL;
	t->text_ins_cols = NULL;
	t->text_ups_cols = NULL;
	for (int i = 0; i < lengthof(t->copy_delete); i++)
		free_plan(&t->copy_delete[i]);
	t->copy_order = NULL;
}

/*
 * A chunk of a copy: the local rows in its key range become exactly its
 * rows.  Both statements are set-based, one per chunk.
 */
static void
apply_target_copy(ApplyTarget *t, WireCopy *copy)
{
	bool *use = palloc(sizeof(bool) * t->ncols);
	bool all = true;

	require_json_rows_rights(t);
	if (copy->nrows > 0)
	{
		if (!JB_ROOT_IS_OBJECT(copy->first_row))
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("invalid evrep message: a row of a copy is not a JSON object")));
		/* the rows of a chunk come from one SELECT: they all have the same columns */
		all = columns_in_use(t, &copy->first_row->root, use, copy->nrows);
	}

	/*
	 * Rows that carry every column replace the range: a plain INSERT after
	 * emptying it costs far less than an upsert's speculative insertion.
	 * Otherwise the local-only columns of rows that stay keep their values.
	 */
	if (all && copy->nkept == 0 && copy_delete_range(t, copy, true))
	{
		if (t->copy_insert == NULL)
			t->copy_insert = prepare_rows_kept(t, insert_sql(t, NULL, ROWS_SET, false, NULL), 1);
		if (copy->nrows > 0)
			run_rows_plan(t->copy_insert, copy_rows_arg(t, copy));
	}
	else
	{
		if (!all || copy->nkept > 0)
			(void) copy_delete_range(t, copy, false);
		if (copy->nrows > 0)
			run_rows_plan(plan_for(t, use, ROWS_SET, true, &t->copy_subset, &t->copy_upsert),
						  copy_rows_arg(t, copy));
	}
	pfree(use);
}

/* The key's values as the row's text has them, in buf; NULL without a key. */
static char *
key_of_text(ApplyTarget *t, const WireSpan *values, StringInfo buf)
{
	int i = -1;

	resetStringInfo(buf);
	while ((i = bms_next_member(t->keycols, i)) >= 0)
	{
		char c = values[i].len > 0 ? values[i].start[0] : 'n';

		/* null, or an object or array, is no key to tell rows apart by */
		if (c == 'n' || c == '{' || c == '[')
			return NULL;
		appendBinaryStringInfo(buf, values[i].start, values[i].len);
		appendStringInfoChar(buf, '\x1f');
	}
	return buf->data;
}

/* The row's key values as text, to tell rows of one key apart; NULL without a key. */
static char *
key_text(ApplyTarget *t, JsonbContainer *row)
{
	StringInfoData buf;
	int i = -1;

	initStringInfo(&buf);
	while ((i = bms_next_member(t->keycols, i)) >= 0)
	{
		JsonbValue *v =
			getKeyJsonValueFromContainer(row, t->colnames[i], strlen(t->colnames[i]), NULL);

		if (v == NULL || v->type == jbvNull || v->type == jbvBinary)
			return NULL;
		/* a separator no JSON text of a scalar has unescaped */
		appendStringInfoString(&buf, JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, -1));
		appendStringInfoChar(&buf, '\x1f');
	}
	return buf.data;
}

/* What a run needs to know of an event's row. */
typedef struct RowShape
{
	bool *use;			 /* the local columns it carries */
	int nmembers;		 /* its members, columns or not */
	char *key;			 /* its key values as text, or NULL */
	StringInfoData text; /* where a key read from text is */
} RowShape;

/*
 * The shape of a row from its text: no jsonb is built.  The key is its
 * values as written, so two ways of writing one key (an escape, 1.0 for
 * 1) pass for two keys: the run's statement then fails, and the message
 * is applied one event at a time.  false if the text does not say (an
 * escaped name, a column repeated).
 */
static bool
shape_of_text(ApplyTarget *t, const WireEvent *ev, RowShape *shape, WireSpan *values)
{
	WireObjectScan it;
	WireSpan name, value;
	int next = 0;

	memset(shape->use, 0, sizeof(bool) * t->ncols);
	memset(values, 0, sizeof(WireSpan) * t->ncols);
	shape->nmembers = 0;
	wire_scan_object_begin(&it, ev->row_text, ev->row_len);
	while (wire_scan_object_next(&it, &name, &value))
	{
		int i = next;

		shape->nmembers++;
		/* members come in the columns' order, mostly: try the next one first */
		if (i >= t->ncols || t->collens[i] != name.len ||
			memcmp(t->colnames[i], name.start, name.len) != 0)
		{
			for (i = 0; i < t->ncols; i++)
			{
				if (t->collens[i] == name.len && memcmp(t->colnames[i], name.start, name.len) == 0)
					break;
			}
		}
		if (i == t->ncols)
			continue;
		if (shape->use[i])
			return false;
		shape->use[i] = true;
		values[i] = value;
		next = i + 1;
	}
	if (it.failed)
		return false;
	shape->key = key_of_text(t, values, &shape->text);
	return true;
}

static void
shape_of(ApplyTarget *t, WireEvent *ev, RowShape *shape, WireSpan *values)
{
	JsonbContainer *row;

	if (ev->row_text != NULL && shape_of_text(t, ev, shape, values))
		return;
	row = &wire_event_row(ev)->root;
	for (int i = 0; i < t->ncols; i++)
		shape->use[i] =
			getKeyJsonValueFromContainer(row, t->colnames[i], t->collens[i], NULL) != NULL;
	shape->nmembers = JsonContainerSize(row);
	shape->key = key_text(t, row);
}

/*
 * Rows with members that are no column of the table: counted, and named
 * once (from the first such row's jsonb).
 */
static void
note_unknown_in_run(ApplyTarget *t, WireEvent *ev, int nmembers, int nused)
{
	if (nmembers <= nused)
		return;
	if (t->unknown_warned)
		t->unknown_rows++;
	else
		note_unknown_columns(t, &wire_event_row(ev)->root, nused, 1);
}

/*
 * The run's rows as evrep._json_rows reads them, a JSON array's text, if
 * each came as text and this owner may call it; else NULL.
 */
static text *
run_rows_text(ApplyTarget *t, WireEvent *const *evs, int len)
{
	StringInfoData buf;

	for (int i = 0; i < len; i++)
	{
		if (evs[i]->row_text == NULL)
			return NULL;
	}
	require_json_rows_rights(t);
	if (!t->json_rows)
		return NULL;
	initStringInfo(&buf);
	enlargeStringInfo(&buf, VARHDRSZ);
	buf.len = VARHDRSZ;
	appendStringInfoChar(&buf, '[');
	for (int i = 0; i < len; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendBinaryStringInfo(&buf, evs[i]->row_text, evs[i]->row_len);
	}
	appendStringInfoChar(&buf, ']');
	SET_VARSIZE(buf.data, buf.len);
	return (text *) buf.data;
}

/*
 * The statement for a run with the columns use (nused of them): its rows
 * read from their text, or from a jsonb[].
 */
static SPIPlanPtr
run_plan_for(ApplyTarget *t, const bool *use, int nused, bool inserts, bool as_text)
{
	if (as_text)
		return inserts ? plan_for(t, use, ROWS_SET, false, &t->text_ins_cols, &t->text_insert)
					   : plan_for(t, use, ROWS_SET, true, &t->text_ups_cols, &t->text_upsert);
	if (nused < t->ncols)
		return inserts
				   ? plan_for(t, use, ROWS_ARRAY, false, &t->many_subset_ins,
							  &t->many_subset_insert)
				   : plan_for(t, use, ROWS_ARRAY, true, &t->many_subset, &t->many_subset_upsert);
	if (inserts)
	{
		if (t->insert_many == NULL)
			t->insert_many = prepare_kept(insert_sql(t, NULL, ROWS_ARRAY, false, NULL), 0);
		return t->insert_many;
	}
	if (t->upsert_many == NULL)
		t->upsert_many = prepare_kept(insert_sql(t, NULL, ROWS_ARRAY, true, NULL), 0);
	return t->upsert_many;
}

#define IS_UPSERT(ev) (((ev)->op == 'i' || (ev)->op == 'u') && (ev)->unchanged == NULL)

/*
 * How many leading events of evs[0..n) make a run: upserts of distinct
 * keys with the columns of the first (in use), whose member counts go to
 * nmembers; 0 if fewer than two.
 */
static int
run_length(ApplyTarget *t, WireEvent *const *evs, int n, bool *use, int *nmembers)
{
	RowShape first = {use}, other = {0};
	WireSpan *values;
	HTAB *keys;
	HASHCTL ctl;
	int len;

	/* the common cases that make no run, before building anything */
	if (n < 2 || !IS_UPSERT(evs[0]) || !IS_UPSERT(evs[1]))
		return 0;
	values = palloc(sizeof(WireSpan) * t->ncols);
	initStringInfo(&first.text);
	initStringInfo(&other.text);

	/*
	 * The run's events carry the same columns, all of the table's or (a
	 * subscriber with columns of its own) some: those it lacks keep their
	 * values or defaults, as with one event.
	 */
	shape_of(t, evs[0], &first, values);
	if (first.key == NULL)
		return 0;
	nmembers[0] = first.nmembers;
	other.use = palloc(sizeof(bool) * t->ncols);

	/*
	 * Keys by a 64-bit hash of their text: two keys that collide end the
	 * run early, which costs a statement and nothing else.
	 */
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = ctl.keysize;
	ctl.hcxt = CurrentMemoryContext;
	keys = hash_create("evrep apply run keys", n, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (len = 0; len < n; len++)
	{
		RowShape *shape = len == 0 ? &first : &other;
		uint64 hash;
		bool found;

		if (len > 0)
		{
			if (!IS_UPSERT(evs[len]))
				break;
			shape_of(t, evs[len], &other, values);
			if (memcmp(other.use, use, sizeof(bool) * t->ncols) != 0)
				break;
			nmembers[len] = other.nmembers;
		}
		/* one statement may touch a row once: a key seen again ends the run */
		if (shape->key == NULL)
			break;
		hash = hash_bytes_extended((const unsigned char *) shape->key, strlen(shape->key), 0);
		(void) hash_search(keys, &hash, HASH_ENTER, &found);
		if (found)
			break;
	}
	hash_destroy(keys);
	pfree(other.use);
	pfree(values);
	pfree(first.text.data);
	pfree(other.text.data);
	return len >= 2 ? len : 0;
}

int
apply_target_run(ApplyTarget *t, WireEvent *const *evs, int n)
{
	bool *use = palloc(sizeof(bool) * t->ncols);
	int *nmembers = palloc(sizeof(int) * Max(n, 1));
	int len = run_length(t, evs, n, use, nmembers);
	int nused = 0;
	bool inserts = true;
	text *rows_text;
	Datum arg;

	if (len == 0)
	{
		pfree(use);
		pfree(nmembers);
		return 0;
	}
	for (int i = 0; i < t->ncols; i++)
		nused += use[i];

	/*
	 * A run of inserts is a plain INSERT: ON CONFLICT's look at the key
	 * before each row and its speculative insertion were a sixth of the
	 * apply.  A key the table has already (a row of its own, say) fails
	 * the message's attempt with unique_violation, and its events are
	 * applied one by one, as upserts.
	 */
	for (int i = 0; i < len; i++)
		inserts &= evs[i]->op == 'i';
	rows_text = run_rows_text(t, evs, len);
	if (rows_text != NULL)
		arg = PointerGetDatum(rows_text);
	else
	{
		Datum *rows = palloc(sizeof(Datum) * len);

		for (int i = 0; i < len; i++)
			rows[i] = JsonbPGetDatum(wire_event_row(evs[i]));
		arg = PointerGetDatum(construct_array(rows, len, JSONBOID, -1, false, TYPALIGN_INT));
		pfree(rows);
	}
	for (int i = 0; i < len; i++)
		note_unknown_in_run(t, evs[i], nmembers[i], nused);
	spi_check(SPI_execute_plan(run_plan_for(t, use, nused, inserts, rows_text != NULL), &arg, NULL,
							   false, 0),
			  SPI_OK_INSERT, ANY_ROWS, "evrep apply statement failed");
	pfree(DatumGetPointer(arg));
	pfree(use);
	pfree(nmembers);
	return len;
}

/*
 * A truncate's options: restart_identity, false when absent.  Options this
 * node does not know are ignored; a known one of the wrong type is a
 * malformed event.
 */
static bool
truncate_restarts_identity(Jsonb *options)
{
	JsonbValue *v;

	if (options == NULL)
		return false;
	v = getKeyJsonValueFromContainer(&options->root, "restart_identity", strlen("restart_identity"),
									 NULL);
	if (v == NULL || v->type == jbvNull)
		return false;
	if (v->type != jbvBool)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("invalid evrep message: \"restart_identity\" is not a boolean")));
	return v->val.boolean;
}

/* ALTER SEQUENCE ... RESTART for the sequences the table owns (serial, identity). */
static void
restart_owned_sequences(Oid relid)
{
	List *seqs = getOwnedSequences(relid);
	ListCell *lc;

	foreach (lc, seqs)
	{
		Oid seqid = lfirst_oid(lc);
		char *name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(seqid)),
												get_rel_name(seqid));

		spi_check(SPI_execute(psprintf("ALTER SEQUENCE %s RESTART", name), false, 0),
				  SPI_OK_UTILITY, ANY_ROWS, "could not restart sequence %s", name);
		pfree(name);
	}
	list_free(seqs);
}

/*
 * A truncate empties the local table: every row goes, those of other
 * origins and the local-only columns too, as with native logical
 * replication.  The statement is TRUNCATE ONLY (a table inheriting from
 * this one is another table, with a subscription of its own or none); a
 * partitioned table is truncated with its partitions, which hold its rows.
 *
 * TRUNCATE would fail where a DELETE of every row can succeed, and then
 * DELETE is used: when the subscription's owner has DELETE but not
 * TRUNCATE privilege, and when another table references this one by a
 * foreign key (TRUNCATE refuses that whatever session_replication_role
 * says; a DELETE under replica role fires no RI trigger, as for the
 * delete events of every row).  A table the origin truncated together with
 * the ones referencing it arrives as one event per table, each in its own
 * stream, in no fixed order, so refusing would park the first of them
 * every time.  RESTART IDENTITY goes with the DELETE as ALTER SEQUENCE
 * ... RESTART of the owned sequences, which, as TRUNCATE's own, needs the
 * owner to own them.  Whatever still fails (no privilege at all, pending
 * trigger events on the table) parks the event like any other.
 */
static void
apply_target_truncate(ApplyTarget *t, const WireEvent *ev)
{
	bool restart = truncate_restarts_identity(ev->row);
	bool partitioned = get_rel_relkind(t->head.key) == RELKIND_PARTITIONED_TABLE;
	const char *only = partitioned ? "" : "ONLY ";
	List *referencing;
	bool use_delete;

	/* read from the catalog without locking the table: TRUNCATE will lock it */
	use_delete = pg_class_aclcheck(t->head.key, GetUserId(), ACL_TRUNCATE) != ACLCHECK_OK;
	if (!use_delete)
	{
		referencing = heap_truncate_find_FKs(list_make1_oid(t->head.key));
		use_delete = referencing != NIL;
		list_free(referencing);
	}
	if (!use_delete)
	{
		spi_check(SPI_execute(psprintf("TRUNCATE %s%s%s", only, t->qualname,
									   restart ? " RESTART IDENTITY" : ""),
							  false, 0),
				  SPI_OK_UTILITY, ANY_ROWS, "evrep truncate failed");
		return;
	}
	spi_check(SPI_execute(psprintf("DELETE FROM %s%s", only, t->qualname), false, 0), SPI_OK_DELETE,
			  ANY_ROWS, "evrep truncate by DELETE failed");
	if (restart)
		restart_owned_sequences(t->head.key);
}

/* The type, typmod and input function of column i. */
static void
column_input(ApplyTarget *t, int i, Oid *type, int32 *typmod, FmgrInfo *input, Oid *ioparam)
{
	AttrNumber attno = get_attnum(t->head.key, t->colnames[i]);
	Oid coll;
	Oid func;

	get_atttypetypmodcoll(t->head.key, attno, type, typmod, &coll);
	getTypeInputInfo(*type, &func, ioparam);
	fmgr_info(func, input);
}

/*
 * The value of column i from a large value's bytes (parts_receive.h): a
 * bytea for a bytea, a text form for a text as they are (no copy of the
 * value), any other through the column's input function, as
 * jsonb_populate_record would read it.
 */
static Datum
large_datum(ApplyTarget *t, int i, const PartsValue *v, Oid *type)
{
	int32 typmod;
	FmgrInfo input;
	Oid ioparam;
	char *text = VARDATA(v->bytes);

	column_input(t, i, type, &typmod, &input, &ioparam);
	if (v->value->bytea)
	{
		if (*type == BYTEAOID)
			return PointerGetDatum(v->bytes);
		text = DatumGetCString(DirectFunctionCall1(byteaout, PointerGetDatum(v->bytes)));
	}
	else if (*type == TEXTOID)
		return PointerGetDatum(v->bytes);
	return InputFunctionCall(&input, text, ioparam, typmod);
}

void
apply_target_large(ApplyTarget *t, const WireEvent *ev, const PartsValue *values)
{
	bool *use = palloc(sizeof(bool) * t->ncols);
	int *params = palloc0(sizeof(int) * t->ncols);
	int nargs = 1;
	Oid *types = palloc(sizeof(Oid) * (ev->large->nvalues + 1));
	Datum *args = palloc(sizeof(Datum) * (ev->large->nvalues + 1));
	bool unknown = false;

	(void) columns_in_use(t, &ev->row->root, use, 1);
	require_row_for_unchanged(t, ev, ev->row);
	types[0] = JSONBOID;
	args[0] = JsonbPGetDatum(ev->row);
	for (int k = 0; k < ev->large->nvalues; k++)
	{
		int i = 0;

		while (i < t->ncols && strcmp(t->colnames[i], values[k].value->column) != 0)
			i++;
		if (i == t->ncols || bms_is_member(i, t->keycols))
		{
			unknown = true; /* ignored, as a column of a row the table lacks */
			continue;
		}
		use[i] = true;
		params[i] = ++nargs;
		args[nargs - 1] = large_datum(t, i, &values[k], &types[nargs - 1]);
	}
	if (unknown)
		t->unknown_rows++;
	spi_check(SPI_execute_with_args(insert_sql(t, use, ROWS_ONE, true, params), nargs, types, args,
									NULL, false, 0),
			  SPI_OK_INSERT, ANY_ROWS, "evrep could not apply a large event");
	pfree(use);
	pfree(params);
}

void
apply_target_event(ApplyTarget *t, WireEvent *ev)
{
	bool *use;
	bool all;
	Jsonb *row;

	if (ev->op == 'c')
	{
		apply_target_copy(t, ev->copy);
		return;
	}
	if (ev->op == 't')
	{
		apply_target_truncate(t, ev);
		return;
	}
	if (ev->op == 's')
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("the origin skipped this event: its row was too large to send"),
						errdetail("Skipped: %s.", JsonbToCString(NULL, &ev->row->root, -1)),
						errhint("Raise evrep.max_message_bytes on the origin (up to the broker's "
								"max_message_size) and update the row there again, or resync the "
								"table.")));
	use = palloc(sizeof(bool) * t->ncols);
	row = wire_event_row(ev);
	all = columns_in_use(t, &row->root, use, 1);
	require_row_for_unchanged(t, ev, row);

	if (ev->op == 'd')
		run_plan(t->delete, row, SPI_OK_DELETE);
	else if (all)
		run_plan(t->upsert, row, SPI_OK_INSERT);
	else
		run_plan(subset_plan(t, use), row, SPI_OK_INSERT);
	pfree(use);
}
