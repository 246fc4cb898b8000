/*
 * row_json.c
 *		How evrep writes a row as a JSON object, so that every value reads
 *		back exactly on the other side.
 *
 * Consumers parse a message into jsonb, and jsonb is not a faithful
 * carrier for every value: a JSON null in a jsonb column looks like SQL
 * NULL, a json value loses its exact text (duplicate keys, key order,
 * spacing), and a float's -0 has no jsonb number.  So a value is written
 * the way row_to_json writes it only where that form survives jsonb:
 * booleans, integers, numeric and floats (as numbers, but -0), dates and
 * timestamps, and arrays and composites made only of built-in types other
 * than json, jsonb and floats.  Every other value is a JSON string holding
 * its type's text output, which the type's input function reads back:
 * json, jsonb, ranges, enums, types of extensions, and any array or
 * composite that contains json, jsonb, floats or such types.
 *
 * Text output that depends on settings (DateStyle, IntervalStyle,
 * extra_float_digits) is written with fixed ones, whatever the writer's
 * session has.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "relcache.h"
#include "row_json.h"

typedef enum ValueForm
{
	FORM_BOOL,	   /* true / false */
	FORM_NUMBER,   /* a JSON number, or a string for NaN and infinities */
	FORM_FLOAT,	   /* the same, and -0 a string: jsonb has no -0 */
	FORM_DATETIME, /* ISO 8601 string, as row_to_json writes it */
	FORM_TO_JSON,  /* to_json's form: a JSON array or object */
	FORM_TEXT	   /* the type's text output, as a JSON string */
} ValueForm;

typedef struct TypeForm
{
	RelCacheEntry head; /* the type */
	ValueForm form;
	Oid basetype;	 /* for FORM_DATETIME */
	FmgrInfo output; /* output function, or to_json for FORM_TO_JSON */
} TypeForm;

/*
 * The form of each type met so far, dropped at any change to a type or a
 * relation: a composite's attributes are in pg_attribute.
 */
static RelCache *forms = NULL;

static bool has_exact_json_form(Oid typid, int depth);

/*
 * Does to_json write every value of this type so that jsonb_populate_record
 * reads it back exactly?  Built-in scalars but json, jsonb and floats, and
 * arrays and composites of such.  A type of an extension may have a cast to
 * json that writes something its input function cannot read.
 */
static bool
has_exact_json_form(Oid typid, int depth)
{
	Oid base = getBaseType(typid);
	Oid elem;
	char typtype;

	check_stack_depth();
	if (depth > 16)
		return false;
	switch (base)
	{
		case JSONOID:
		case JSONBOID:
		case FLOAT4OID:
		case FLOAT8OID:
			return false;
		default:
			break;
	}
	elem = get_element_type(base);
	if (OidIsValid(elem))
		return has_exact_json_form(elem, depth + 1);
	typtype = get_typtype(base);
	if (typtype == TYPTYPE_COMPOSITE)
	{
		TupleDesc desc = lookup_rowtype_tupdesc(base, -1);
		bool exact = true;

		for (int i = 0; i < desc->natts && exact; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped)
				exact = has_exact_json_form(att->atttypid, depth + 1);
		}
		ReleaseTupleDesc(desc);
		return exact;
	}
	return typtype == TYPTYPE_BASE && base < FirstNormalObjectId;
}

static ValueForm
form_of(Oid typid, Oid base)
{
	switch (base)
	{
		case BOOLOID:
			return FORM_BOOL;
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case NUMERICOID:
			return FORM_NUMBER;
		case FLOAT4OID:
		case FLOAT8OID:
			return FORM_FLOAT;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return FORM_DATETIME;
		default:
			break;
	}
	if ((OidIsValid(get_element_type(base)) || get_typtype(base) == TYPTYPE_COMPOSITE) &&
		has_exact_json_form(typid, 0))
		return FORM_TO_JSON;
	return FORM_TEXT;
}

static void
build_form(RelCacheEntry *entry)
{
	TypeForm *tf = (TypeForm *) entry;
	Oid typid = entry->key;
	MemoryContext cxt = relcache_memory(forms);
	Oid outfunc;
	bool varlena;

	tf->basetype = getBaseType(typid);
	tf->form = form_of(typid, tf->basetype);
	if (tf->form == FORM_TO_JSON)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		/* to_json learns its argument's type from the call's expression */
		fmgr_info_cxt(F_TO_JSON, &tf->output, cxt);
		tf->output.fn_expr = (Node *) makeFuncExpr(F_TO_JSON, JSONOID,
												   list_make1(makeNullConst(typid, -1, InvalidOid)),
												   InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
		MemoryContextSwitchTo(old);
	}
	else
	{
		getTypeOutputInfo(typid, &outfunc, &varlena);
		fmgr_info_cxt(outfunc, &tf->output, cxt);
	}
}

static TypeForm *
lookup_form(Oid typid)
{
	if (forms == NULL)
		forms = relcache_create_types("evrep row_json", sizeof(TypeForm), build_form);
	return (TypeForm *) relcache_get(forms, typid);
}

static void
append_value(StringInfo buf, TypeForm *tf, Datum value)
{
	char *out;

	switch (tf->form)
	{
		case FORM_BOOL:
			appendStringInfoString(buf, DatumGetBool(value) ? "true" : "false");
			return;
		case FORM_DATETIME:
		{
			char dt[MAXDATELEN + 1];

			JsonEncodeDateTime(dt, value, tf->basetype, NULL);
			appendStringInfo(buf, "\"%s\"", dt);
			return;
		}
		case FORM_TO_JSON:
		{
			text *json = DatumGetTextPP(FunctionCall1(&tf->output, value));

			appendBinaryStringInfo(buf, VARDATA_ANY(json), VARSIZE_ANY_EXHDR(json));
			return;
		}
		case FORM_NUMBER:
		case FORM_FLOAT:
			out = OutputFunctionCall(&tf->output, value);
			/* NaN and the infinities are no JSON numbers */
			if (IsValidJsonNumber(out, strlen(out)) &&
				!(tf->form == FORM_FLOAT && strcmp(out, "-0") == 0))
				appendStringInfoString(buf, out);
			else
				escape_json(buf, out);
			return;
		case FORM_TEXT:
			escape_json(buf, OutputFunctionCall(&tf->output, value));
			return;
	}
}

/*
 * The settings some output functions read, at the values every reader
 * understands: returns the GUC nest level to pop, or -1 if the session
 * has them already (the common case costs three comparisons).
 */
static int
fixed_output_settings(void)
{
	int level;

	if (DateStyle == USE_ISO_DATES && IntervalStyle == INTSTYLE_POSTGRES && extra_float_digits >= 1)
		return -1;
	level = NewGUCNestLevel();
	(void) set_config_option("datestyle", "ISO", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true,
							 0, false);
	(void) set_config_option("intervalstyle", "postgres", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("extra_float_digits", "1", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	return level;
}

void
row_json_append(StringInfo buf, HeapTuple tuple, TupleDesc desc)
{
	row_json_append_columns(buf, tuple, desc, NULL);
}

void
row_json_append_columns(StringInfo buf, HeapTuple tuple, TupleDesc desc, const bool *mask)
{
	Datum *values = palloc(sizeof(Datum) * desc->natts);
	bool *nulls = palloc(sizeof(bool) * desc->natts);
	bool first = true;
	int level = fixed_output_settings();

	heap_deform_tuple(tuple, desc, values, nulls);
	appendStringInfoChar(buf, '{');
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || (mask != NULL && !mask[i]))
			continue;
		if (!first)
			appendStringInfoChar(buf, ',');
		first = false;
		escape_json(buf, NameStr(att->attname));
		appendStringInfoChar(buf, ':');
		if (nulls[i])
			appendStringInfoString(buf, "null");
		else
			append_value(buf, lookup_form(att->atttypid), values[i]);
	}
	appendStringInfoChar(buf, '}');
	if (level >= 0)
		AtEOXact_GUC(true, level);
	pfree(values);
	pfree(nulls);
}

Datum
row_json(HeapTuple tuple, TupleDesc desc)
{
	return row_json_columns(tuple, desc, NULL);
}

Datum
row_json_columns(HeapTuple tuple, TupleDesc desc, const bool *mask)
{
	StringInfoData buf;
	Datum result;

	initStringInfo(&buf);
	row_json_append_columns(&buf, tuple, desc, mask);
	result = PointerGetDatum(cstring_to_text_with_len(buf.data, buf.len));
	pfree(buf.data);
	return result;
}

bool
row_json_is_text_of_json(Oid typid)
{
	Oid base = getBaseType(typid);

	return base == JSONOID || base == JSONBOID;
}

/*
 * evrep._row_json(record): a row as evrep writes it, for the statements
 * that read rows in SQL (the chunks of a copy).
 */
PG_FUNCTION_INFO_V1(evrep_row_json);

Datum
evrep_row_json(PG_FUNCTION_ARGS)
{
	HeapTupleHeader rec = PG_GETARG_HEAPTUPLEHEADER(0);
	TupleDesc desc =
		lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(rec), HeapTupleHeaderGetTypMod(rec));
	HeapTupleData tuple;
	Datum result;

	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;
	result = row_json(&tuple, desc);
	ReleaseTupleDesc(desc);
	PG_RETURN_DATUM(result);
}
