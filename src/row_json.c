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

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/transam.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/bytea.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "evrep.h"
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

/*
 * escape_json's output for str, with the runs that need no escape copied
 * at once: a value of a hundred MB went a character at a time.
 */
static void
append_json_string(StringInfo buf, const char *str)
{
	const char *run = str;
	const char *p;

	appendStringInfoCharMacro(buf, '"');
	for (p = str; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c >= ' ' && c != '"' && c != '\\')
			continue;
		appendBinaryStringInfo(buf, run, p - run);
		run = p + 1;
		switch (c)
		{
			case '\b':
				appendStringInfoString(buf, "\\b");
				break;
			case '\f':
				appendStringInfoString(buf, "\\f");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(buf, "\\r");
				break;
			case '\t':
				appendStringInfoString(buf, "\\t");
				break;
			case '"':
				appendStringInfoString(buf, "\\\"");
				break;
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			default:
				appendStringInfo(buf, "\\u%04x", c);
				break;
		}
	}
	appendBinaryStringInfo(buf, run, p - run);
	appendStringInfoCharMacro(buf, '"');
}

/*
 * A bytea as escape_json(byteaout()) writes it in hex, "\\x...", encoded
 * straight into the buffer: no string twice the value's size first.
 */
static void
append_bytea(StringInfo buf, Datum value)
{
	bytea *b = DatumGetByteaPP(value);
	size_t n = VARSIZE_ANY_EXHDR(b);

	enlargeStringInfo(buf, 2 * n + 5);
	appendBinaryStringInfo(buf, "\"\\\\x", 4);
	buf->len += hex_encode(VARDATA_ANY(b), n, buf->data + buf->len);
	appendStringInfoCharMacro(buf, '"');
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
			appendStringInfoChar(buf, '"');
			appendStringInfoString(buf, dt);
			appendStringInfoChar(buf, '"');
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
			/* fixed_output_settings made bytea_output hex */
			if (tf->basetype == BYTEAOID)
				append_bytea(buf, value);
			else
				append_json_string(buf, OutputFunctionCall(&tf->output, value));
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

	if (DateStyle == USE_ISO_DATES && IntervalStyle == INTSTYLE_POSTGRES &&
		extra_float_digits >= 1 && bytea_output == BYTEA_OUTPUT_HEX)
		return -1;
	level = NewGUCNestLevel();
	(void) set_config_option("datestyle", "ISO", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true,
							 0, false);
	(void) set_config_option("intervalstyle", "postgres", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("extra_float_digits", "1", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	/* a row's size limit is checked against the hex form */
	(void) set_config_option("bytea_output", "hex", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	return level;
}

void
row_json_append(StringInfo buf, HeapTuple tuple, TupleDesc desc)
{
	row_json_append_columns(buf, tuple, desc, NULL);
}

/* The length escape_json would give str, quotes included. */
static Size
json_string_length(const char *str)
{
	Size len = 2;

	for (const unsigned char *p = (const unsigned char *) str; *p; p++)
	{
		if (*p == '"' || *p == '\\' || *p == '\b' || *p == '\f' || *p == '\n' || *p == '\r' ||
			*p == '\t')
			len += 2;
		else if (*p < ' ')
			len += 6; /* \u00XX */
		else
			len++;
	}
	return len;
}

/*
 * Appends a large value only if its JSON form fits in room bytes, and
 * makes no form of it that would not: a bytea's hex form is twice its
 * size (a 600 MB one is past PostgreSQL's 1 GB limit for one string), so
 * its length decides before byteaout runs; other text forms are at least
 * as long as the value (a compressed value counts uncompressed).
 */
static bool
append_large_value(StringInfo buf, TypeForm *tf, Datum value, Size room)
{
	Size raw = toast_raw_datum_size(value) - VARHDRSZ;
	char *out;

	if (tf->basetype == BYTEAOID)
	{
		/* "\\x", two digits a byte, the quotes */
		if (2 * raw + 5 > room)
			return false;
		append_value(buf, tf, value);
		return true;
	}
	if (raw > room)
		return false;
	if (tf->form == FORM_TO_JSON)
	{
		text *json = DatumGetTextPP(FunctionCall1(&tf->output, value));

		if (VARSIZE_ANY_EXHDR(json) > room)
			return false;
		appendBinaryStringInfo(buf, VARDATA_ANY(json), VARSIZE_ANY_EXHDR(json));
		return true;
	}
	out = OutputFunctionCall(&tf->output, value);
	if (json_string_length(out) > room)
		return false;
	append_json_string(buf, out);
	pfree(out);
	return true;
}

/*
 * The object's members; false, as soon as it is known, if the object
 * would pass limit bytes (limit 0: no limit).  Values smaller than
 * LARGE_VALUE_BYTES are appended before the length is checked: their JSON
 * (six bytes a character at worst) cannot take the buffer anywhere near
 * PostgreSQL's 1 GB limit past a limit of at most 512 MB.
 */
#define LARGE_VALUE_BYTES (1024 * 1024)

static bool
append_members(StringInfo buf, Datum *values, bool *nulls, TupleDesc desc, const bool *mask,
			   Size limit)
{
	bool first = true;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		TypeForm *tf;

		if (att->attisdropped || (mask != NULL && !mask[i]))
			continue;
		if (!first)
			appendStringInfoChar(buf, ',');
		first = false;
		escape_json(buf, NameStr(att->attname));
		appendStringInfoChar(buf, ':');
		if (nulls[i])
		{
			appendStringInfoString(buf, "null");
			continue;
		}
		tf = lookup_form(att->atttypid);
		if (limit > 0 && att->attlen == -1 && (tf->form == FORM_TEXT || tf->form == FORM_TO_JSON) &&
			toast_raw_datum_size(values[i]) > LARGE_VALUE_BYTES)
		{
			if (!append_large_value(buf, tf, values[i], limit > buf->len ? limit - buf->len : 0))
				return false;
		}
		else
			append_value(buf, tf, values[i]);
		if (limit > 0 && buf->len > limit)
			return false;
	}
	return true;
}

/* Appends the row as a JSON object; false if it would pass limit bytes. */
static bool
append_row(StringInfo buf, HeapTuple tuple, TupleDesc desc, const bool *mask, Size limit)
{
	Datum *values = palloc(sizeof(Datum) * desc->natts);
	bool *nulls = palloc(sizeof(bool) * desc->natts);
	int level = fixed_output_settings();
	bool fits;

	heap_deform_tuple(tuple, desc, values, nulls);
	appendStringInfoChar(buf, '{');
	fits = append_members(buf, values, nulls, desc, mask, limit);
	appendStringInfoChar(buf, '}');
	if (level >= 0)
		AtEOXact_GUC(true, level);
	pfree(values);
	pfree(nulls);
	return fits;
}

void
row_json_append_columns(StringInfo buf, HeapTuple tuple, TupleDesc desc, const bool *mask)
{
	(void) append_row(buf, tuple, desc, mask, 0);
}

Datum
row_json(HeapTuple tuple, TupleDesc desc)
{
	return row_json_columns(tuple, desc, NULL);
}

Datum
row_json_columns(HeapTuple tuple, TupleDesc desc, const bool *mask)
{
	return row_json_bounded(tuple, desc, mask, 0);
}

Datum
row_json_bounded(HeapTuple tuple, TupleDesc desc, const bool *mask, Size limit)
{
	StringInfoData buf;
	Datum result = (Datum) 0;

	initStringInfo(&buf);
	if (append_row(&buf, tuple, desc, mask, limit))
		result = PointerGetDatum(cstring_to_text_with_len(buf.data, buf.len));
	pfree(buf.data);
	return result;
}

char *
row_json_text_form(Oid typid, Datum value)
{
	Oid output;
	bool varlena;
	int level;
	char *out;

	getTypeOutputInfo(typid, &output, &varlena);
	level = fixed_output_settings();
	out = OidOutputFunctionCall(output, value);

	if (level >= 0)
		AtEOXact_GUC(true, level);
	return out;
}

bool
row_json_is_text_of_json(Oid typid)
{
	Oid base = getBaseType(typid);

	return base == JSONOID || base == JSONBOID;
}

/*
 * evrep._row_json(record): a row as evrep writes it, for the statements
 * that read rows in SQL (the chunks of a copy); NULL for a row whose JSON
 * would not fit in a message (evrep.max_message_bytes).
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
	result = row_json_bounded(&tuple, desc, NULL, evrep_row_limit());
	ReleaseTupleDesc(desc);
	if (result == (Datum) 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
