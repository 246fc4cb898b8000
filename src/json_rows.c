/*
 * json_rows.c
 *		evrep._json_rows(NULL::t, rows): the rows of a JSON array of row
 *		objects as records of t, read from the JSON text itself.
 *
 * A chunk of a copy carries a thousand rows.  Reading them through
 * jsonb_populate_recordset first built the whole message as jsonb
 * (jsonb_in was a third of the consumer's time in a copy), and
 * json_populate_recordset builds a hash table for every row object.  Here
 * the JSON lexer walks the text once: each member of a row object whose
 * name is a column goes straight to that column type's input function.
 *
 * A value reads as jsonb_populate_record reads the forms row_json.c
 * writes: a string is its column type's text (also for json and jsonb
 * columns), a number or boolean its JSON text, null and a missing member
 * SQL NULL (a domain still checks it).  An array or object is read as its
 * JSON text: the caller uses this function only for tables without array
 * or composite columns, whose values row_json.c writes in to_json's form.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonfuncs.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

typedef struct RowsState
{
	JsonLexContext *lex;
	TupleDesc desc;
	FmgrInfo *input; /* per attribute */
	Oid *ioparam;
	char **value;			  /* this row's text per attribute; NULL: SQL NULL */
	int field;				  /* attribute of the member being read; -1: none */
	int last;				  /* attribute of the member read before: the next is likely after it */
	const char *nested_start; /* an array or object member's text */
	Tuplestorestate *store;
	MemoryContext row_cxt;
} RowsState;

static void
not_rows(void)
{
	ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					errmsg("evrep rows must be a JSON array of row objects")));
}

/* The attribute named name, or -1: members come in the same order in every row. */
static int
find_attribute(RowsState *s, const char *name)
{
	int natts = s->desc->natts;

	for (int k = 1; k <= natts; k++)
	{
		int i = (s->last + k) % natts;
		Form_pg_attribute att = TupleDescAttr(s->desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return s->last = i;
	}
	return -1;
}

static void
rows_array_start(void *state)
{
	RowsState *s = state;

	if (s->lex->lex_level == 2)
		s->nested_start = s->lex->token_start;
	else if (s->lex->lex_level == 1)
		not_rows();
}

static void
rows_object_start(void *state)
{
	RowsState *s = state;

	if (s->lex->lex_level == 0)
		not_rows();
	else if (s->lex->lex_level == 1)
	{
		MemoryContextReset(s->row_cxt);
		memset(s->value, 0, sizeof(char *) * s->desc->natts);
		s->field = -1;
	}
	else if (s->lex->lex_level == 2)
		s->nested_start = s->lex->token_start;
}

static void
end_nested(RowsState *s)
{
	if (s->lex->lex_level == 2 && s->field >= 0)
		s->value[s->field] =
			pnstrdup(s->nested_start, s->lex->prev_token_terminator - s->nested_start);
}

static void
rows_array_end(void *state)
{
	end_nested(state);
}

static void
rows_object_end(void *state)
{
	RowsState *s = state;
	int natts = s->desc->natts;
	Datum *values;
	bool *nulls;

	if (s->lex->lex_level != 1)
	{
		end_nested(s);
		return;
	}
	values = palloc(sizeof(Datum) * natts);
	nulls = palloc(sizeof(bool) * natts);
	for (int i = 0; i < natts; i++)
	{
		if (TupleDescAttr(s->desc, i)->attisdropped)
		{
			nulls[i] = true;
			continue;
		}
		values[i] = InputFunctionCall(&s->input[i], s->value[i], s->ioparam[i],
									  TupleDescAttr(s->desc, i)->atttypmod);
		nulls[i] = s->value[i] == NULL;
	}
	tuplestore_putvalues(s->store, s->desc, values, nulls);
}

static void
rows_field_start(void *state, char *fname, bool isnull)
{
	RowsState *s = state;

	if (s->lex->lex_level == 2)
		s->field = find_attribute(s, fname);
}

static void
rows_scalar(void *state, char *token, JsonTokenType type)
{
	RowsState *s = state;

	if (s->lex->lex_level <= 1)
		not_rows();
	if (s->lex->lex_level == 2 && s->field >= 0)
		s->value[s->field] = type == JSON_TOKEN_NULL ? NULL : token;
}

PG_FUNCTION_INFO_V1(evrep_json_rows);
Datum
evrep_json_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid rowtype = get_fn_expr_argtype(fcinfo->flinfo, 0);
	text *rows;
	RowsState s = {0};
	JsonSemAction sem = {0};
	MemoryContext old;

	if (!type_is_rowtype(rowtype))
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
						errmsg("the first argument of evrep._json_rows must be of a row type")));
	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(1))
		return (Datum) 0;
	rows = PG_GETARG_TEXT_PP(1);

	s.desc = rsinfo->setDesc;
	s.store = rsinfo->setResult;
	s.input = palloc(sizeof(FmgrInfo) * s.desc->natts);
	s.ioparam = palloc(sizeof(Oid) * s.desc->natts);
	s.value = palloc0(sizeof(char *) * s.desc->natts);
	s.last = s.desc->natts - 1;
	for (int i = 0; i < s.desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(s.desc, i);
		Oid infunc;

		if (att->attisdropped)
			continue;
		getTypeInputInfo(att->atttypid, &infunc, &s.ioparam[i]);
		fmgr_info(infunc, &s.input[i]);
	}
	s.row_cxt =
		AllocSetContextCreate(CurrentMemoryContext, "evrep json rows", ALLOCSET_DEFAULT_SIZES);
	s.lex = makeJsonLexContextCstringLen(VARDATA_ANY(rows), VARSIZE_ANY_EXHDR(rows),
										 GetDatabaseEncoding(), true);
	sem.semstate = &s;
	sem.array_start = rows_array_start;
	sem.array_end = rows_array_end;
	sem.object_start = rows_object_start;
	sem.object_end = rows_object_end;
	sem.object_field_start = rows_field_start;
	sem.scalar = rows_scalar;
	/*
	 * What the lexer hands over (names, values) and what a row's input
	 * functions make are the row's: all of it goes when the next row starts.
	 */
	old = MemoryContextSwitchTo(s.row_cxt);
	pg_parse_json_or_ereport(s.lex, &sem);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(s.row_cxt);
	return (Datum) 0;
}
