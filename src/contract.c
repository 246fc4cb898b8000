/*
 * contract.c
 *		A published table's contract: the columns it sends (a column list)
 *		and the rows it sends (a row filter), checked when given, compiled
 *		once per relation for the capture trigger, and changed in stream
 *		order (docs/design.md, "Contracts").
 *
 * The catalog (evrep.publication.column_list, .row_filter) holds names and
 * the filter's text as deparsed here from a checked expression: text, not
 * a node tree, because pg_dump carries the publication table and node
 * trees can be neither read back by COPY nor moved to a table whose
 * attribute numbers differ.  The filter is parsed as exactly one
 * expression, against the table alone, and evaluated in C by the capture
 * trigger; never pasted into a statement unless parsed and deparsed here.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_collate.h"
#include "parser/parse_expr.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "parser/parser.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/ruleutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "capture.h"
#include "contract.h"
#include "relcache.h"
#include "spi_util.h"

/* ---- checks ---- */

/*
 * Names in the filter resolve as in pg_catalog alone, whatever the
 * session's search_path: a writer's path must not change what the filter
 * calls, and the deparsed text then qualifies every other name.
 */
static int
fixed_search_path(void)
{
	int level = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

typedef struct FilterErrorArg
{
	const char *src;
	const char *relname;
} FilterErrorArg;

/* A position in the filter is one in its text, not in the caller's statement. */
static void
filter_error_callback(void *arg)
{
	FilterErrorArg *a = (FilterErrorArg *) arg;
	int pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery(a->src);
	}
	errcontext("row filter of table \"%s\"", a->relname);
}

/*
 * The one expression of src: raw_parser's PL/pgSQL expression mode reads
 * a SELECT target list with optional clauses; anything but one unnamed
 * target and no clause is refused.
 */
static Node *
parse_one_expression(const char *src)
{
	List *raw = raw_parser(src, RAW_PARSE_PLPGSQL_EXPR);
	SelectStmt *sel;
	ResTarget *target;

	if (list_length(raw) != 1 || !IsA(linitial_node(RawStmt, raw)->stmt, SelectStmt))
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR), errmsg("a row filter must be one expression")));
	sel = (SelectStmt *) linitial_node(RawStmt, raw)->stmt;
	if (sel->op != SETOP_NONE || sel->distinctClause || sel->intoClause || sel->fromClause ||
		sel->whereClause || sel->groupClause || sel->groupDistinct || sel->havingClause ||
		sel->windowClause || sel->valuesLists || sel->sortClause || sel->limitOffset ||
		sel->limitCount || sel->lockingClause || sel->withClause ||
		list_length(sel->targetList) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR), errmsg("a row filter must be one expression"),
				 errdetail("It may not have a FROM, WHERE or other clause, nor a list.")));
	target = linitial_node(ResTarget, sel->targetList);
	if (target->name != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR), errmsg("a row filter must be one expression"),
				 errdetail("It may not have an alias.")));
	return target->val;
}

/*
 * Only the table's own columns (no system column, no whole-row reference)
 * and no subquery.  Aggregates, window and set-returning functions were
 * refused by transformExpr already (as in a WHERE clause); refused here
 * again, should that change.
 */
static bool
check_filter_node(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Var) && ((Var *) node)->varattno <= 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
						errmsg("a row filter may use only the table's own columns"),
						errdetail("System columns and whole-row references are not allowed.")));
	if (IsA(node, SubLink))
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("a row filter may not contain a subquery")));
	if (IsA(node, Aggref) || IsA(node, WindowFunc) || IsA(node, GroupingFunc))
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("a row filter may not contain aggregate or window functions")));
	if ((IsA(node, FuncExpr) && ((FuncExpr *) node)->funcretset) ||
		(IsA(node, OpExpr) && ((OpExpr *) node)->opretset))
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("a row filter may not contain set-returning functions")));
	return expression_tree_walker(node, check_filter_node, context);
}

/*
 * src parsed against rel alone, as a boolean, and checked.  PostgreSQL 15
 * has no expression kind of its own for a publication's WHERE (its
 * publications check theirs after transforming it as a WHERE clause, as
 * here): other tables are refused by the one range table entry, the rest
 * by check_filter_node and contain_mutable_functions.  Under
 * fixed_search_path.
 */
static Node *
parse_filter(Relation rel, const char *src)
{
	ErrorContextCallback errcb;
	FilterErrorArg arg = {src, RelationGetRelationName(rel)};
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	Node *expr;

	errcb.callback = filter_error_callback;
	errcb.arg = &arg;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	expr = parse_one_expression(src);
	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = src;
	nsitem = addRangeTableEntryForRelation(pstate, rel, AccessShareLock, NULL, false, false);
	addNSItemToQuery(pstate, nsitem, false, true, true);
	expr = transformExpr(pstate, expr, EXPR_KIND_WHERE);
	expr = coerce_to_boolean(pstate, expr, "evrep row filter");
	assign_expr_collations(pstate, expr);
	(void) check_filter_node(expr, NULL);
	if (contain_mutable_functions(expr))
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("a row filter may call only immutable functions and operators"),
						errdetail("Its result must depend on the row alone, the same for "
								  "every writer and for a copy.")));
	free_parsestate(pstate);

	error_context_stack = errcb.previous;
	return expr;
}

char *
contract_filter_sql(Relation rel, const char *filter)
{
	int level;
	Node *expr;
	char *sql;

	if (filter == NULL)
		return NULL;
	level = fixed_search_path();
	expr = parse_filter(rel, filter);
	sql = deparse_expression(
		expr, deparse_context_for(RelationGetRelationName(rel), RelationGetRelid(rel)), false,
		false);
	AtEOXact_GUC(true, level);
	return sql;
}

/*
 * The attributes a column list names, checked: every name a column of the
 * table, once, no system column, and (check_keys) every key column in it.
 */
static bool *
columns_mask(Relation rel, ArrayType *arr, bool check_keys)
{
	TupleDesc desc = RelationGetDescr(rel);
	bool *mask = palloc0(sizeof(bool) * desc->natts);
	Bitmapset *keys = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	Datum *elems;
	bool *nulls;
	int n;
	int k = -1;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char *name;
		AttrNumber attnum;

		if (nulls[i])
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("a column list may not contain NULL")));
		name = TextDatumGetCString(elems[i]);
		attnum = get_attnum(RelationGetRelid(rel), name);
		if (attnum == InvalidAttrNumber)
			ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
							errmsg("column \"%s\" of table \"%s\" does not exist", name,
								   RelationGetRelationName(rel))));
		if (attnum < 0)
			ereport(ERROR, (errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
							errmsg("system column \"%s\" cannot be published", name)));
		if (mask[attnum - 1])
			ereport(ERROR, (errcode(ERRCODE_DUPLICATE_COLUMN),
							errmsg("column \"%s\" is listed more than once", name)));
		mask[attnum - 1] = true;
	}
	while ((k = bms_next_member(keys, k)) >= 0)
	{
		AttrNumber attnum = k + FirstLowInvalidHeapAttributeNumber;

		if (mask[attnum - 1])
			continue;
		if (check_keys)
			ereport(
				ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("the column list of table \"%s\" lacks key column \"%s\"",
						RelationGetRelationName(rel),
						NameStr(TupleDescAttr(desc, attnum - 1)->attname)),
				 errhint("Subscribers find rows by the primary key: list all of its columns.")));
		mask[attnum - 1] = true;
	}
	return mask;
}

char *
contract_columns_text(Datum columns)
{
	StringInfoData buf;
	Datum *elems;
	bool *nulls;
	int n;

	if (columns == (Datum) 0)
		return NULL;
	initStringInfo(&buf);
	deconstruct_array(DatumGetArrayTypeP(columns), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls,
					  &n);
	for (int i = 0; i < n; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? "," : "",
						 nulls[i] ? "NULL" : quote_identifier(TextDatumGetCString(elems[i])));
	return buf.data;
}

/* ---- compiled contracts ---- */

Contract *
contract_compile(Relation rel, Datum columns, const char *filter)
{
	MemoryContext cxt =
		AllocSetContextCreate(CurrentMemoryContext, "evrep contract", ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	TupleDesc desc = RelationGetDescr(rel);
	Contract *c = palloc0(sizeof(Contract));

	c->cxt = cxt;
	c->natts = desc->natts;
	c->all_columns = columns == (Datum) 0;
	if (!c->all_columns)
	{
		c->published = columns_mask(rel, DatumGetArrayTypeP(columns), false);
		c->columns_src = contract_columns_text(columns);
	}
	if (filter != NULL)
	{
		int level = fixed_search_path();
		Expr *expr = (Expr *) parse_filter(rel, filter);

		expr = expression_planner(expr);
		AtEOXact_GUC(true, level);
		c->filter_src = pstrdup(filter);
		c->filter = ExecInitExpr(expr, NULL);
		c->econtext = CreateStandaloneExprContext();
		c->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(desc), &TTSOpsHeapTuple);
	}
	MemoryContextSwitchTo(old);
	return c;
}

bool
contract_row_matches(Contract *c, HeapTuple tuple)
{
	Datum result;
	bool isnull;

	if (c->filter == NULL)
		return true;
	ExecStoreHeapTuple(tuple, c->slot, false);
	c->econtext->ecxt_scantuple = c->slot;
	result = ExecEvalExprSwitchContext(c->filter, c->econtext, &isnull);
	ResetExprContext(c->econtext);
	ExecClearTuple(c->slot);
	return !isnull && DatumGetBool(result);
}

bool
contract_published_changed(Contract *c, TupleDesc desc, HeapTuple oldtup, HeapTuple newtup)
{
	if (c->all_columns)
		return true;
	for (int i = 0; i < c->natts && i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool oldnull, newnull;
		Datum oldval, newval;

		if (!c->published[i] || att->attisdropped)
			continue;
		oldval = heap_getattr(oldtup, i + 1, desc, &oldnull);
		newval = heap_getattr(newtup, i + 1, desc, &newnull);
		if (oldnull != newnull)
			return true;
		if (oldnull)
			continue;
		/*
		 * An UPDATE that leaves a toasted value alone keeps its toast
		 * pointer: equal bytes say so without detoasting both sides.
		 */
		if (datumIsEqual(oldval, newval, att->attbyval, att->attlen))
			continue;
		if (!datum_image_eq(oldval, newval, att->attbyval, att->attlen))
			return true;
	}
	return false;
}

const bool *
contract_mask(Contract *c)
{
	return c->all_columns ? NULL : c->published;
}

/* ---- the catalog ---- */

/* Whether the catalog has contracts (not a 1.0 catalog under this library). */
bool
contract_catalog(void)
{
	Oid nsp = get_namespace_oid("evrep", true);
	Oid pubrel = OidIsValid(nsp) ? get_relname_relid("publication", nsp) : InvalidOid;

	return OidIsValid(pubrel) && get_attnum(pubrel, "row_filter") != InvalidAttrNumber;
}

static Oid
publication_owner(void)
{
	Oid relid = get_relname_relid("publication", get_namespace_oid("evrep", false));
	HeapTuple tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * The publication *pub_id, or if that is 0 the one of relid (or of the
 * partitioned table it is a partition of), as last committed: its id,
 * column list (copied into the caller's context, or 0) and filter text (or
 * NULL).  false if there is none, or the catalog predates contracts (a 1.0
 * catalog under this library).  The capture asks by the id its trigger
 * carries: after a pg_dump is restored the rows keep their ids while relid
 * still names the old oid until a worker notices the reload, and a
 * contract missed then would send every column of every row.
 */
static bool
read_contract(Oid relid, int32 *pub_id, Datum *columns, char **filter)
{
	MemoryContext caller = CurrentMemoryContext;
	SPIPlanPtr plan;
	Datum args[2] = {ObjectIdGetDatum(relid), Int32GetDatum(*pub_id)};
	bool found;

	Oid save_userid;
	int save_sec_context;

	if (!contract_catalog())
		return false;
	/* as evrep's owner: a writer needs no rights on evrep's schema */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(publication_owner(), save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
													SECURITY_RESTRICTED_OPERATION);
	spi_connect();
	plan = SPI_prepare("SELECT id, column_list, row_filter FROM evrep.publication WHERE active"
					   " AND CASE WHEN $2 <> 0 THEN id = $2 ELSE relid = $1 OR relid IN"
					   " (SELECT a.relid FROM pg_catalog.pg_partition_ancestors($1) a) END",
					   2, (Oid[]){OIDOID, INT4OID});
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	/* the latest: a writer waited for the table's lock after the change committed */
	found = spi_check(SPI_execute_snapshot(plan, args, NULL, GetLatestSnapshot(), InvalidSnapshot,
										   true, false, 1),
					  SPI_OK_SELECT, ANY_ROWS, "could not read evrep publications") == 1;
	if (found)
	{
		HeapTuple tup = SPI_tuptable->vals[0];
		TupleDesc desc = SPI_tuptable->tupdesc;
		bool isnull;
		Datum d;
		MemoryContext old;

		*pub_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		d = SPI_getbinval(tup, desc, 2, &isnull);
		old = MemoryContextSwitchTo(caller);
		*columns = isnull ? (Datum) 0 : datumCopy(d, false, -1);
		d = SPI_getbinval(tup, desc, 3, &isnull);
		*filter = isnull ? NULL : TextDatumGetCString(d);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return found;
}

typedef struct ContractEntry
{
	RelCacheEntry head; /* the relation the trigger fires on */
	Contract *contract; /* NULL: all columns, every row */
} ContractEntry;

static RelCache *contracts = NULL;

/* The publication id of the trigger that asks contract_get to build. */
static int32 wanted_pub_id = 0;

static void
free_contract(RelCacheEntry *entry)
{
	ContractEntry *e = (ContractEntry *) entry;

	if (e->contract)
		MemoryContextDelete(e->contract->cxt);
	e->contract = NULL;
}

static void
build_contract(RelCacheEntry *entry)
{
	ContractEntry *e = (ContractEntry *) entry;
	int32 pub_id = wanted_pub_id;
	Datum columns;
	char *filter;
	Relation rel;
	MemoryContext old;

	e->contract = NULL;
	if (!read_contract(entry->key, &pub_id, &columns, &filter) ||
		(columns == (Datum) 0 && filter == NULL))
		return;
	/* the trigger's caller holds a lock on it */
	rel = table_open(entry->key, NoLock);
	old = MemoryContextSwitchTo(relcache_memory(contracts));
	e->contract = contract_compile(rel, columns, filter);
	MemoryContextSwitchTo(old);
	table_close(rel, NoLock);
}

Contract *
contract_get(Relation rel, int32 pub_id)
{
	if (contracts == NULL)
		contracts = relcache_create("evrep contracts", sizeof(ContractEntry), build_contract,
									free_contract);
	wanted_pub_id = pub_id;
	return ((ContractEntry *) relcache_get(contracts, RelationGetRelid(rel)))->contract;
}

/* ---- SQL ---- */

PG_FUNCTION_INFO_V1(evrep_contract_columns);
PG_FUNCTION_INFO_V1(evrep_contract_filter);
PG_FUNCTION_INFO_V1(evrep_contract_change);

/*
 * evrep._contract_columns(rel, columns text[]) RETURNS text[]: the list
 * checked, in the table's column order; NULL (all columns) for NULL.
 */
Datum
evrep_contract_columns(PG_FUNCTION_ARGS)
{
	Relation rel;
	bool *mask;
	ArrayBuildState *names = NULL;
	TupleDesc desc;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("table must not be NULL")));
	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	rel = table_open(PG_GETARG_OID(0), AccessShareLock);
	desc = RelationGetDescr(rel);
	mask = columns_mask(rel, PG_GETARG_ARRAYTYPE_P(1), true);
	for (int i = 0; i < desc->natts; i++)
	{
		if (mask[i])
			names = accumArrayResult(names,
									 CStringGetTextDatum(NameStr(TupleDescAttr(desc, i)->attname)),
									 false, TEXTOID, CurrentMemoryContext);
	}
	table_close(rel, AccessShareLock);
	PG_RETURN_DATUM(makeArrayResult(names, CurrentMemoryContext));
}

/*
 * evrep._contract_filter(rel, row_filter text) RETURNS text: the filter
 * checked and deparsed (as pg_get_expr would show it); NULL for NULL.
 */
Datum
evrep_contract_filter(PG_FUNCTION_ARGS)
{
	Relation rel;
	char *sql;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("table must not be NULL")));
	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	rel = table_open(PG_GETARG_OID(0), AccessShareLock);
	sql = contract_filter_sql(rel, text_to_cstring(PG_GETARG_TEXT_PP(1)));
	table_close(rel, AccessShareLock);
	PG_RETURN_TEXT_P(cstring_to_text(sql));
}

typedef struct ChangeCount
{
	int64 deleted;	/* rows that left the filter */
	int64 inserted; /* rows that entered it */
	int64 updated;	/* rows that stayed, sent for columns now published */
} ChangeCount;

/* Has the new column list a column the old one lacked? */
static bool
columns_added(Contract *from, Contract *to, TupleDesc desc)
{
	if (from->all_columns)
		return false;
	for (int i = 0; i < desc->natts; i++)
	{
		if (!TupleDescAttr(desc, i)->attisdropped && !from->published[i] &&
			(to->all_columns || to->published[i]))
			return true;
	}
	return false;
}

/*
 * The contract being replaced, or NULL if it no longer compiles (a listed
 * or filtered column was renamed or dropped): which rows it sent is then
 * unknown, and every row is sent as the new contract says.
 */
static Contract *
compile_old_contract(Relation rel, Datum columns, const char *filter)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Contract *c = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		c = contract_compile(rel, columns, filter);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ereport(NOTICE, (errmsg("the old contract of table \"%s\" does not compile: %s",
								RelationGetRelationName(rel), edata->message),
						 errdetail("Every row is sent as the new contract says.")));
		c = NULL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return c;
}

/*
 * The events that move subscribers of one (leaf) table from contract
 * "from" to "to": a row that leaves the filter is deleted, one that
 * enters it is inserted, one that stays is sent again if columns were
 * added.  The table is locked against writers: these are its only
 * changes until commit.
 */
static void
change_leaf(Oid relid, int32 pub_id, Datum old_columns, const char *old_filter, Datum new_columns,
			const char *new_filter, ChangeCount *count)
{
	Relation rel = table_open(relid, NoLock);
	TupleDesc desc = RelationGetDescr(rel);
	Contract *to = contract_compile(rel, new_columns, new_filter);
	Contract *from = compile_old_contract(rel, old_columns, old_filter);
	bool resend = from == NULL || columns_added(from, to, desc);
	Snapshot snapshot = RegisterSnapshot(GetLatestSnapshot());
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	MemoryContext row_cxt = AllocSetContextCreate(CurrentMemoryContext, "evrep contract change",
												  ALLOCSET_DEFAULT_SIZES);

	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		MemoryContext old = MemoryContextSwitchTo(row_cxt);
		bool shouldfree;
		HeapTuple tuple = ExecFetchSlotHeapTuple(slot, false, &shouldfree);
		/* an old contract that no longer compiles: maybe, so delete what is out */
		bool was =
			from == NULL ? !contract_row_matches(to, tuple) : contract_row_matches(from, tuple);
		bool is = contract_row_matches(to, tuple);

		CHECK_FOR_INTERRUPTS();
		if (was && !is)
		{
			capture_write(rel, pub_id, 'd', tuple, contract_mask(to));
			count->deleted++;
		}
		else if (is && !was)
		{
			/* an upsert on subscribers that have it (an unknown old contract) */
			capture_write(rel, pub_id, 'i', tuple, contract_mask(to));
			count->inserted++;
		}
		else if (is && resend)
		{
			capture_write(rel, pub_id, 'u', tuple, contract_mask(to));
			count->updated++;
		}
		if (shouldfree)
			heap_freetuple(tuple);
		MemoryContextSwitchTo(old);
		MemoryContextReset(row_cxt);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	if (from != NULL)
		MemoryContextDelete(from->cxt);
	MemoryContextDelete(to->cxt);
	MemoryContextDelete(row_cxt);
	table_close(rel, NoLock);
}

/*
 * evrep._contract_change(rel, columns text[], row_filter text) RETURNS
 * text: called by evrep_alter_publication before it stores the new
 * contract.  Locks the table (and its partitions) against writers until
 * commit, writes the events that bring subscribers from the stored
 * contract to the new one into the outbox, and invalidates the table's
 * relcache entries so that every backend's capture reads the new one.
 * Returns what it sent, for a NOTICE.
 */
Datum
evrep_contract_change(PG_FUNCTION_ARGS)
{
	Oid relid;
	int32 pub_id = 0; /* by relid: the caller found it published by relid */
	Datum old_columns, new_columns;
	char *old_filter, *new_filter;
	List *rels;
	ListCell *lc;
	ChangeCount count = {0, 0, 0};
	AclResult aclresult;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("table must not be NULL")));
	relid = PG_GETARG_OID(0);
	new_columns = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	new_filter = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));

	/* as CREATE TRIGGER: no writer's transaction straddles the change */
	rels = find_all_inheritors(relid, ShareRowExclusiveLock, NULL);
	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_TRIGGER);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, get_relkind_objtype(get_rel_relkind(relid)), get_rel_name(relid));
	if (!read_contract(relid, &pub_id, &old_columns, &old_filter))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
						errmsg("table \"%s\" is not published", get_rel_name(relid))));

	foreach (lc, rels)
	{
		Oid leaf = lfirst_oid(lc);

		if (get_rel_relkind(leaf) == RELKIND_RELATION)
			change_leaf(leaf, pub_id, old_columns, old_filter, new_columns, new_filter, &count);
		CacheInvalidateRelcacheByRelid(leaf);
	}
	PG_RETURN_TEXT_P(cstring_to_text(psprintf(INT64_FORMAT " deleted, " INT64_FORMAT
														   " inserted, " INT64_FORMAT " sent again",
											  count.deleted, count.inserted, count.updated)));
}
