/*
 * apply_target.c
 *		The statements that apply events to one subscribed table.
 *
 * Every statement is built from the catalog (quoted names, the primary key
 * of the local table), never from message text, and reads the event's row
 * through jsonb_populate_record, so PostgreSQL's own input functions
 * convert each value to the local column type.  The plans are kept per
 * relation and dropped by a relcache invalidation.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "nodes/bitmapset.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"

#include "apply_target.h"

struct ApplyTarget
{
	Oid relid; /* hash key */
	bool valid;
	MemoryContext cxt; /* everything below but the plans */
	char *qualname;	   /* quoted schema.table */
	int ncols;
	char **colnames;	/* insertable columns */
	Bitmapset *keycols; /* indexes into colnames */
	SPIPlanPtr upsert;	/* all columns */
	SPIPlanPtr delete;
	char *subset;			  /* columns of subset_upsert: "1" = used */
	SPIPlanPtr subset_upsert; /* for events that lack some columns */
};

static HTAB *targets = NULL;

static void
invalidate_target(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	ApplyTarget *t;

	hash_seq_init(&status, targets);
	while ((t = hash_seq_search(&status)) != NULL)
	{
		if (relid == InvalidOid || t->relid == relid)
			t->valid = false;
	}
}

static void
free_plan(SPIPlanPtr *plan)
{
	if (*plan)
		SPI_freeplan(*plan);
	*plan = NULL;
}

static void
reset_target(ApplyTarget *t)
{
	free_plan(&t->upsert);
	free_plan(&t->delete);
	free_plan(&t->subset_upsert);
	if (t->cxt)
		MemoryContextDelete(t->cxt);
	t->cxt = NULL;
	t->qualname = NULL;
	t->colnames = NULL;
	t->keycols = NULL;
	t->subset = NULL;
	t->ncols = 0;
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

/* INSERT ... ON CONFLICT (key) DO UPDATE over the columns in use (all if NULL). */
static char *
upsert_sql(ApplyTarget *t, const bool *use)
{
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
		appendStringInfo(&sel, "%sr.%s", sel.len ? ", " : "", q);
		if (!bms_is_member(i, t->keycols))
			appendStringInfo(&set, "%s%s = EXCLUDED.%s", set.len ? ", " : "", q, q);
	}
	return psprintf("INSERT INTO %s AS t (%s) OVERRIDING SYSTEM VALUE"
					" SELECT %s FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) r"
					" ON CONFLICT (%s) DO %s%s",
					t->qualname, cols.data, sel.data, t->qualname, key_list(t),
					set.len ? "UPDATE SET " : "NOTHING", set.data);
}

static char *
delete_sql(ApplyTarget *t)
{
	StringInfoData cond;
	int i = -1;

	initStringInfo(&cond);
	while ((i = bms_next_member(t->keycols, i)) >= 0)
	{
		const char *q = quote_identifier(t->colnames[i]);

		appendStringInfo(&cond, "%st.%s = r.%s", cond.len ? " AND " : "", q, q);
	}
	return psprintf(
		"DELETE FROM %s AS t USING pg_catalog.jsonb_populate_record(NULL::%s, $1) r WHERE %s",
		t->qualname, t->qualname, cond.data);
}

static SPIPlanPtr
prepare_kept(const char *sql)
{
	Oid argtypes[1] = {JSONBOID};
	SPIPlanPtr plan = SPI_prepare(sql, 1, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/* Reads columns and primary key of the relation from the catalog. */
static void
build_target(ApplyTarget *t)
{
	Relation rel = table_open(t->relid, AccessShareLock);
	TupleDesc desc = RelationGetDescr(rel);
	Bitmapset *pk = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	MemoryContext old;

	t->cxt = AllocSetContextCreate(TopMemoryContext, "evrep apply target", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(t->cxt);
	t->qualname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											 RelationGetRelationName(rel));
	t->colnames = palloc(sizeof(char *) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->attgenerated)
			continue;
		if (bms_is_member(att->attnum - FirstLowInvalidHeapAttributeNumber, pk))
			t->keycols = bms_add_member(t->keycols, t->ncols);
		t->colnames[t->ncols++] = pstrdup(NameStr(att->attname));
	}
	MemoryContextSwitchTo(old);
	table_close(rel, AccessShareLock);

	if (bms_is_empty(t->keycols))
		ereport(ERROR, (errcode(ERRCODE_INVALID_TABLE_DEFINITION),
						errmsg("subscribed table %s has no primary key", t->qualname)));

	t->upsert = prepare_kept(upsert_sql(t, NULL));
	t->delete = prepare_kept(delete_sql(t));
	t->valid = true;
}

ApplyTarget *
apply_target_get(Oid relid)
{
	ApplyTarget *t;
	bool found;

	if (targets == NULL)
	{
		HASHCTL ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(ApplyTarget);
		targets = hash_create("evrep apply targets", 32, &ctl, HASH_ELEM | HASH_BLOBS);
		CacheRegisterRelcacheCallback(invalidate_target, (Datum) 0);
	}
	t = hash_search(targets, &relid, HASH_ENTER, &found);
	if (!found)
	{
		memset(t, 0, sizeof(ApplyTarget));
		t->relid = relid;
	}
	if (!t->valid)
	{
		reset_target(t);
		build_target(t);
	}
	return t;
}

/*
 * The upsert for events that carry only some of the local columns (a
 * subscriber with columns of its own): the plan for the last such column
 * set is kept, since a stream's events all carry the same columns.
 */
static SPIPlanPtr
subset_plan(ApplyTarget *t, const bool *use)
{
	char *sig = palloc(t->ncols + 1);

	for (int i = 0; i < t->ncols; i++)
		sig[i] = use[i] ? '1' : '0';
	sig[t->ncols] = '\0';
	if (t->subset == NULL || strcmp(sig, t->subset) != 0)
	{
		SPIPlanPtr plan = prepare_kept(upsert_sql(t, use));

		free_plan(&t->subset_upsert);
		t->subset_upsert = plan;
		t->subset = MemoryContextStrdup(t->cxt, sig);
	}
	pfree(sig);
	return t->subset_upsert;
}

static void
run_plan(SPIPlanPtr plan, Jsonb *row, int expect)
{
	Datum values[1] = {JsonbPGetDatum(row)};
	int ret = SPI_execute_plan(plan, values, NULL, false, 0);

	if (ret != expect)
		elog(ERROR, "evrep apply statement failed: %s", SPI_result_code_string(ret));
}

void
apply_target_event(ApplyTarget *t, const WireEvent *ev)
{
	bool *use = palloc(sizeof(bool) * t->ncols);
	bool all = true;

	for (int i = 0; i < t->ncols; i++)
	{
		use[i] = getKeyJsonValueFromContainer(&ev->row->root, t->colnames[i],
											  strlen(t->colnames[i]), NULL) != NULL;
		if (!use[i] && bms_is_member(i, t->keycols))
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("event for %s lacks key column \"%s\"", t->qualname, t->colnames[i])));
		all &= use[i];
	}

	if (ev->op == 'd')
		run_plan(t->delete, ev->row, SPI_OK_DELETE);
	else if (all)
		run_plan(t->upsert, ev->row, SPI_OK_INSERT);
	else
		run_plan(subset_plan(t, use), ev->row, SPI_OK_INSERT);
	pfree(use);
}
