/*
 * contract.h
 *		What a published table promises its subscribers: the columns it
 *		sends and the rows it sends (contract.c).
 */
#ifndef EVREP_CONTRACT_H
#define EVREP_CONTRACT_H

#include "access/htup.h"
#include "nodes/execnodes.h"
#include "utils/relcache.h"

/*
 * A table's contract, compiled: a column list (or all columns) and a row
 * filter (or every row).  Kept per relation until a relcache invalidation
 * (contract_get), or made for one call (contract_compile).
 */
typedef struct Contract
{
	MemoryContext cxt;	   /* everything below */
	bool all_columns;	   /* no column list */
	int natts;			   /* of the table when compiled */
	bool *published;	   /* per attribute, when !all_columns */
	char *columns_src;	   /* the catalog's column list as text, or NULL */
	char *filter_src;	   /* the catalog's filter text, or NULL */
	ExprState *filter;	   /* NULL: every row */
	ExprContext *econtext; /* for the filter, standalone */
	TupleTableSlot *slot;
} Contract;

/* Has the catalog the contract columns (1.1), or is it 1.0's? */
extern bool contract_catalog(void);

/*
 * The current contract of a published table, publication pub_id (its
 * capture trigger's argument), from evrep.publication (latest committed
 * state).  NULL if the table has neither a column list nor a filter (or the
 * catalog predates them): capture as before.
 */
extern Contract *contract_get(Relation rel, int32 pub_id);

/*
 * A contract made of a column list (text[] Datum, or 0 for all) and a
 * filter text (or NULL), in a new context under CurrentMemoryContext.
 */
extern Contract *contract_compile(Relation rel, Datum columns, const char *filter);

/* A column list (text[] Datum) as text, to compare; NULL for 0. */
extern char *contract_columns_text(Datum columns);

/* Does the row pass the filter?  true without one. */
extern bool contract_row_matches(Contract *c, HeapTuple tuple);

/* Did an UPDATE change a published column?  true without a column list. */
extern bool contract_published_changed(Contract *c, TupleDesc desc, HeapTuple oldtup,
									   HeapTuple newtup);

/* The published attributes (a mask of natts), or NULL for all. */
extern const bool *contract_mask(Contract *c);

/*
 * The filter parsed and checked again, then deparsed with every name that
 * pg_catalog does not hold schema-qualified: the text a statement of the
 * copy may embed.  NULL for NULL.
 */
extern char *contract_filter_sql(Relation rel, const char *filter);

#endif /* EVREP_CONTRACT_H */
