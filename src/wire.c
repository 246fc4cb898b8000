/*
 * wire.c
 *		Encoding and decoding of evrep.v1 messages.
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonfuncs.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "wire.h"
#include "wire_scan.h"

static void
append_header(StringInfo buf, const char *origin, const char *schema, const char *table)
{
	appendStringInfoString(buf, "{\"format\":\"" EVREP_WIRE_FORMAT "\",\"origin\":");
	escape_json(buf, origin);
	appendStringInfoString(buf, ",\"schema\":");
	escape_json(buf, schema);
	appendStringInfoString(buf, ",\"table\":");
	escape_json(buf, table);
}

static void
append_incarnation(StringInfo buf, const WireIncarnation *inc)
{
	if (inc == NULL || inc->id == 0)
		return;
	appendStringInfo(
		buf,
		",\"incarnation\":{\"id\":" INT64_FORMAT ",\"since\":" INT64_FORMAT ",\"reason\":", inc->id,
		inc->since);
	if (inc->reason != NULL)
		escape_json(buf, inc->reason);
	else
		appendStringInfoString(buf, "null");
	appendStringInfoChar(buf, '}');
}

const char *
wire_op_name(char op)
{
	switch (op)
	{
		case 'i':
			return "insert";
		case 'u':
			return "update";
		case 'd':
			return "delete";
		case 'c':
			return "copy";
		case 't':
			return "truncate";
		case 's':
			return "skip";
		case EVREP_OP_LARGE:
			return "large";
		case EVREP_OP_UPDATE_UNCHANGED:
			return "update";
	}
	elog(ERROR, "unknown evrep operation code \"%c\"", op);
	return NULL; /* keep compiler quiet */
}

void
wire_begin_message(StringInfo buf, const char *origin, const char *schema, const char *table,
				   const char *key_json, const WireIncarnation *inc, XLogRecPtr lsn)
{
	append_header(buf, origin, schema, table);
	appendStringInfoString(buf, ",\"revision\":" CppAsString2(EVREP_WIRE_REVISION));
	append_incarnation(buf, inc);
	if (lsn != InvalidXLogRecPtr)
		appendStringInfo(buf, ",\"lsn\":\"%X/%X\"", LSN_FORMAT_ARGS(lsn));
	appendStringInfo(buf, ",\"key\":%s,\"events\":[", key_json);
}

void
wire_add_event(StringInfo buf, bool first, int64 seq, char op, const char *commit_ts_json,
			   const char *row_json)
{
	appendStringInfo(buf, "%s{\"seq\":" INT64_FORMAT ",\"op\":\"%s\"", first ? "" : ",", seq,
					 wire_op_name(op));
	if (commit_ts_json != NULL)
		appendStringInfo(buf, ",\"commit_ts\":%s", commit_ts_json);
	if (op == EVREP_OP_UPDATE_UNCHANGED)
	{
		/* {"row": ..., "unchanged": ...}: its members are the event's */
		appendStringInfo(buf, ",%s", row_json + 1);
		return;
	}
	/*
	 * A copy chunk is not a row: it has rows, and the key range they fill;
	 * a truncate has options, a skip what was skipped.
	 */
	appendStringInfo(buf, ",\"%s\":%s}",
					 op == 'c' || op == 't' || op == 's' || op == EVREP_OP_LARGE ? wire_op_name(op)
																				 : "row",
					 row_json);
}

void
wire_end_message(StringInfo buf)
{
	appendStringInfoString(buf, "]}");
}

static void
append_routing_word(StringInfo buf, const char *word)
{
	for (const char *p = word; *p; p++)
	{
		if (*p == '.' || *p == '*' || *p == '#' || *p == '%')
			appendStringInfo(buf, "%%%02X", (unsigned char) *p);
		else
			appendStringInfoChar(buf, *p);
	}
}

char *
wire_routing_key(const char *schema, const char *table)
{
	StringInfoData buf;

	initStringInfo(&buf);
	append_routing_word(&buf, schema);
	appendStringInfoChar(&buf, '.');
	append_routing_word(&buf, table);
	return buf.data;
}

/* ---- decoding ---- */

static void
invalid_message(const char *detail)
{
	ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					errmsg("invalid evrep message: %s", detail)));
}

static JsonbValue *
get_field(JsonbContainer *obj, const char *key, enum jbvType type, bool required)
{
	JsonbValue *v = getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);

	if (v == NULL || v->type == jbvNull)
	{
		if (required)
			invalid_message(psprintf("field \"%s\" is missing", key));
		return NULL;
	}
	if (v->type != type)
		invalid_message(psprintf("field \"%s\" has the wrong JSON type", key));
	return v;
}

static char *
get_string(JsonbContainer *obj, const char *key, bool required)
{
	JsonbValue *v = get_field(obj, key, jbvString, required);

	if (v == NULL)
		return NULL;
	if (v->val.string.len == 0)
		invalid_message(psprintf("field \"%s\" is empty", key));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static char
parse_op(const char *op)
{
	if (strcmp(op, "insert") == 0)
		return 'i';
	if (strcmp(op, "update") == 0)
		return 'u';
	if (strcmp(op, "delete") == 0)
		return 'd';
	if (strcmp(op, "copy") == 0)
		return 'c';
	if (strcmp(op, "truncate") == 0)
		return 't';
	if (strcmp(op, "skip") == 0)
		return 's';
	if (strcmp(op, "large") == 0)
		return EVREP_OP_LARGE;
	invalid_message(psprintf("unknown op \"%s\"", op));
	return 0; /* keep compiler quiet */
}

/* An optional key object: null or absent at the ends of the table. */
static Jsonb *
get_key_object(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = get_field(obj, key, jbvBinary, false);

	if (v == NULL)
		return NULL;
	if (!JsonContainerIsObject(v->val.binary.data))
		invalid_message(psprintf("\"%s\" is not a JSON object", key));
	return JsonbValueToJsonb(v);
}

static int64
get_int8(JsonbContainer *obj, const char *key, bool required)
{
	JsonbValue *v = get_field(obj, key, jbvNumeric, required);

	if (v == NULL)
		return 0;
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
}

/* "key": [{"column": "id", "collation": null}, ...] */
static void
parse_copy_key(JsonbContainer *obj, WireCopy *c)
{
	JsonbValue *v = get_field(obj, "key", jbvBinary, true);
	JsonbContainer *arr = v->val.binary.data;

	if (!JsonContainerIsArray(arr) || JsonContainerSize(arr) == 0)
		invalid_message("\"key\" of a copy is not a non-empty array");
	c->nkeys = JsonContainerSize(arr);
	c->key_columns = palloc(sizeof(char *) * c->nkeys);
	c->key_collations = palloc(sizeof(char *) * c->nkeys);
	for (int i = 0; i < c->nkeys; i++)
	{
		JsonbValue *k = getIthJsonbValueFromContainer(arr, i);

		if (k->type != jbvBinary || !JsonContainerIsObject(k->val.binary.data))
			invalid_message("a \"key\" entry of a copy is not a JSON object");
		c->key_columns[i] = get_string(k->val.binary.data, "column", true);
		c->key_collations[i] = get_string(k->val.binary.data, "collation", false);
	}
}

/* An optional array of key objects; NULL when absent. */
static Jsonb *
get_key_array(JsonbContainer *obj, const char *key, int *n)
{
	JsonbValue *v = get_field(obj, key, jbvBinary, false);

	*n = 0;
	if (v == NULL)
		return NULL;
	if (!JsonContainerIsArray(v->val.binary.data))
		invalid_message(psprintf("\"%s\" is not an array", key));
	*n = JsonContainerSize(v->val.binary.data);
	return JsonbValueToJsonb(v);
}

static void
parse_copy(JsonbContainer *ev, WireEvent *out, const WireEventText *sent)
{
	JsonbValue *v = get_field(ev, "copy", jbvBinary, true);
	JsonbContainer *obj = v->val.binary.data;
	WireCopy *c = palloc0(sizeof(WireCopy));

	if (!JsonContainerIsObject(obj))
		invalid_message("\"copy\" is not a JSON object");
	c->target = get_string(obj, "for", true);
	c->request_id = get_int8(obj, "request", true);
	c->estimate = get_int8(obj, "estimate", false);
	parse_copy_key(obj, c);
	c->after = get_key_object(obj, "after");
	c->upto = get_key_object(obj, "upto");
	v = get_field(obj, "rows", jbvBinary, true);
	if (!JsonContainerIsArray(v->val.binary.data))
		invalid_message("\"rows\" is not an array");
	if (sent != NULL && sent->rows.len > 0)
	{
		/* left out of the parse: what they hold is read when applied */
		if (JsonContainerSize(v->val.binary.data) != 0)
			elog(ERROR, "evrep message scan took rows the parse still has");
		c->rows_text = sent->rows.start;
		c->rows_len = sent->rows.len;
		c->nrows = sent->nrows;
		if (c->nrows > 0)
		{
			char *first = pnstrdup(sent->first_row.start, sent->first_row.len);

			c->first_row = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(first)));
		}
	}
	else
	{
		c->nrows = JsonContainerSize(v->val.binary.data);
		c->rows = JsonbValueToJsonb(v);
		if (c->nrows > 0)
			c->first_row = JsonbValueToJsonb(getIthJsonbValueFromContainer(v->val.binary.data, 0));
	}
	c->skipped = get_key_array(obj, "skipped", &c->nskipped);
	c->kept = get_key_array(obj, "apart", &c->nkept);
	if (c->kept != NULL && c->skipped != NULL)
		c->kept = DatumGetJsonbP(
			DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(c->kept), JsonbPGetDatum(c->skipped)));
	else if (c->kept == NULL)
		c->kept = c->skipped;
	c->nkept += c->nskipped;
	out->copy = c;
}

/* An optional non-empty array of column names; NULL when absent. */
static Jsonb *
get_names(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = get_field(obj, key, jbvBinary, false);
	JsonbContainer *arr;

	if (v == NULL)
		return NULL;
	arr = v->val.binary.data;
	if (!JsonContainerIsArray(arr) || JsonContainerSize(arr) == 0)
		invalid_message(psprintf("\"%s\" is not a non-empty array", key));
	for (int i = 0; i < (int) JsonContainerSize(arr); i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(arr, i);

		if (e->type != jbvString || e->val.string.len == 0)
			invalid_message(psprintf("an entry of \"%s\" is not a column name", key));
	}
	return JsonbValueToJsonb(v);
}

/*
 * "large": {"of": "insert"|"update", "row": {...}, "values": [{"column":
 * ..., "form": "bytea"|"text", "bytes": n}, ...]}
 */
static void
parse_large(JsonbContainer *ev, WireEvent *out)
{
	JsonbValue *v = get_field(ev, "large", jbvBinary, true);
	JsonbContainer *obj = v->val.binary.data;
	JsonbContainer *arr;
	WireLarge *l = palloc0(sizeof(WireLarge));
	char *of;

	if (!JsonContainerIsObject(obj))
		invalid_message("\"large\" is not a JSON object");
	of = get_string(obj, "of", true);
	l->of = parse_op(of);
	if (l->of != 'i' && l->of != 'u')
		invalid_message(psprintf("\"large\" of an op that is not insert or update: \"%s\"", of));
	v = get_field(obj, "row", jbvBinary, true);
	if (!JsonContainerIsObject(v->val.binary.data))
		invalid_message("\"row\" of \"large\" is not a JSON object");
	out->row = JsonbValueToJsonb(v);
	if (l->of == 'u')
		out->unchanged = get_names(obj, "unchanged");
	v = get_field(obj, "values", jbvBinary, true);
	arr = v->val.binary.data;
	if (!JsonContainerIsArray(arr) || JsonContainerSize(arr) == 0)
		invalid_message("\"values\" of \"large\" is not a non-empty array");
	l->nvalues = JsonContainerSize(arr);
	l->values = palloc0(sizeof(WireLargeValue) * l->nvalues);
	for (int i = 0; i < l->nvalues; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(arr, i);
		WireLargeValue *lv = &l->values[i];
		char *form;

		if (e->type != jbvBinary || !JsonContainerIsObject(e->val.binary.data))
			invalid_message("a \"values\" entry is not a JSON object");
		lv->column = get_string(e->val.binary.data, "column", true);
		form = get_string(e->val.binary.data, "form", true);
		if (strcmp(form, "bytea") != 0 && strcmp(form, "text") != 0)
			invalid_message(psprintf("unknown form \"%s\" of a large value", form));
		lv->bytea = form[0] == 'b';
		lv->bytes = get_int8(e->val.binary.data, "bytes", true);
		if (lv->bytes < 0 || lv->bytes > MaxAllocSize - VARHDRSZ)
			invalid_message(psprintf("a large value of " INT64_FORMAT " bytes", lv->bytes));
	}
	out->large = l;
}

/* The last commit_ts read, and its text. */
typedef struct CommitTsCache
{
	const char *text;
	int len;
	TimestampTz value;
} CommitTsCache;

/*
 * A commit_ts as a timestamp: the events of one transaction share it, and
 * timestamptz_in was a tenth of a message's apply.
 */
static TimestampTz
parse_commit_ts(const char *ts, int len, CommitTsCache *cache)
{
	if (cache->text == NULL || cache->len != len || memcmp(ts, cache->text, len) != 0)
	{
		char *text = pnstrdup(ts, len);

		cache->value = DatumGetTimestampTz(
			DirectFunctionCall3(timestamptz_in, CStringGetDatum(text), ObjectIdGetDatum(InvalidOid),
								Int32GetDatum(-1)));
		cache->text = text;
		cache->len = len;
	}
	return cache->value;
}

static void
parse_event(JsonbValue *ev, WireEvent *out, const WireEventText *sent, CommitTsCache *cache)
{
	JsonbContainer *obj;
	JsonbValue *v;
	char *ts;

	if (ev->type != jbvBinary || !JsonContainerIsObject(ev->val.binary.data))
		invalid_message("an event is not a JSON object");
	obj = ev->val.binary.data;

	v = get_field(obj, "seq", jbvNumeric, true);
	out->seq = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
	/* numeric_int8 rounds: 2.5 must not pass for 3 */
	if (!DatumGetBool(
			DirectFunctionCall2(numeric_eq, NumericGetDatum(v->val.numeric),
								DirectFunctionCall1(int8_numeric, Int64GetDatum(out->seq)))))
		invalid_message("\"seq\" is not a whole number");
	if (out->seq <= 0)
		invalid_message("\"seq\" must be positive");
	out->op = parse_op(get_string(obj, "op", true));

	ts = get_string(obj, "commit_ts", false);
	out->commit_ts = ts ? parse_commit_ts(ts, strlen(ts), cache) : 0;
	out->cxt = CurrentMemoryContext;
	if (out->op != 'i' && out->op != 'u' && out->op != 'd')
	{
		/* a "row" beside what this op carries is none of its business */
		out->row_text = NULL;
		out->row = NULL;
	}

	if (out->op == 'c')
		parse_copy(obj, out, sent);
	else if (out->op == EVREP_OP_LARGE)
		parse_large(obj, out);
	else if (out->op == 's')
	{
		/* what the origin skipped: shown to the operator as it came */
		v = get_field(obj, "skip", jbvBinary, true);
		if (!JsonContainerIsObject(v->val.binary.data))
			invalid_message("\"skip\" is not a JSON object");
		out->row = JsonbValueToJsonb(v);
	}
	else if (out->op == 't')
	{
		/* its options; a reader takes what it knows of them */
		v = get_field(obj, "truncate", jbvBinary, false);
		if (v != NULL && !JsonContainerIsObject(v->val.binary.data))
			invalid_message("\"truncate\" is not a JSON object");
		out->row = v ? JsonbValueToJsonb(v) : NULL;
	}
	else
	{
		v = get_field(obj, "row", jbvBinary, true);
		if (!JsonContainerIsObject(v->val.binary.data))
			invalid_message("\"row\" is not a JSON object");
		if (sent != NULL && sent->row.len > 0)
		{
			/* parsed without it: {} stands in its place */
			out->row_text = sent->row.start;
			out->row_len = sent->row.len;
		}
		else
			out->row = JsonbValueToJsonb(v);
		if (out->op == 'u')
			out->unchanged = get_names(obj, "unchanged");
	}
	if (sent != NULL)
	{
		out->text = sent->event.start;
		out->text_len = sent->event.len;
	}
	else
		out->event = JsonbValueToJsonb(ev);
}

Jsonb *
wire_event_row(WireEvent *ev)
{
	if (ev->row == NULL && ev->row_text != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(ev->cxt);
		char *text = pnstrdup(ev->row_text, ev->row_len);

		ev->row = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
		pfree(text);
		MemoryContextSwitchTo(old);
	}
	return ev->row;
}

/* A body parsed as jsonb: a JSON object of our format. */
static void
check_format(Jsonb *jb)
{
	char *format;

	if (!JB_ROOT_IS_OBJECT(jb))
		invalid_message("the body is not a JSON object");
	format = get_string(&jb->root, "format", true);
	if (strcmp(format, EVREP_WIRE_FORMAT) != 0)
		invalid_message(psprintf("unsupported format \"%s\"", format));
}

static Jsonb *
parse_text(const char *text)
{
	Jsonb *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));

	check_format(jb);
	return jb;
}

/* A body's text, checked for what jsonb_in does not check. */
static char *
body_text(const char *body, int len)
{
	if (memchr(body, '\0', len) != NULL)
		invalid_message("the body contains a zero byte");
	pg_verify_mbstr(GetDatabaseEncoding(), body, len, false);
	return pnstrdup(body, len);
}

static Jsonb *
parse_object(const char *body, int len)
{
	char *text = body_text(body, len);
	Jsonb *jb = parse_text(text);

	pfree(text);
	return jb;
}

/* "incarnation" and "lsn" (revision 2); absent in a revision 1 message. */
static void
parse_history(JsonbContainer *root, WireMessage *msg)
{
	JsonbValue *v = get_field(root, "incarnation", jbvBinary, false);
	char *lsn;

	if (v != NULL)
	{
		JsonbContainer *inc = v->val.binary.data;

		if (!JsonContainerIsObject(inc))
			invalid_message("\"incarnation\" is not a JSON object");
		msg->incarnation.id = get_int8(inc, "id", true);
		msg->incarnation.since = get_int8(inc, "since", true);
		msg->incarnation.reason = get_string(inc, "reason", false);
		if (msg->incarnation.id <= 0 || msg->incarnation.since <= 0)
			invalid_message("\"incarnation\" needs a positive id and since");
	}
	lsn = get_string(root, "lsn", false);
	if (lsn != NULL)
	{
		bool have_error = false;

		msg->lsn = pg_lsn_in_internal(lsn, &have_error);
		if (have_error)
			invalid_message("\"lsn\" is not a WAL position");
	}
}

/* A seq as a publisher writes it: a positive integer of at most 18 digits. */
static bool
plain_seq(const WireSpan *v, int64 *seq)
{
	int64 n = 0;

	if (v->len == 0 || v->len > 18 || v->start[0] < '1' || v->start[0] > '9')
		return false;
	for (int i = 0; i < v->len; i++)
	{
		if (v->start[i] < '0' || v->start[i] > '9')
			return false;
		n = n * 10 + (v->start[i] - '0');
	}
	*seq = n;
	return true;
}

/* An op of a row, as written: "insert", "update" or "delete"; else 0. */
static char
plain_op(const WireSpan *v)
{
	static const char ops[] = {'i', 'u', 'd'};

	if (v->len < 2 || v->start[0] != '"' || v->start[v->len - 1] != '"')
		return 0;
	for (int i = 0; i < lengthof(ops); i++)
	{
		const char *name = wire_op_name(ops[i]);

		if (v->len - 2 == strlen(name) && memcmp(v->start + 1, name, v->len - 2) == 0)
			return ops[i];
	}
	return 0;
}

/*
 * An insert, update or delete with the members a publisher writes (seq,
 * op, commit_ts, row; nothing else, no escapes) is read from its text:
 * building its jsonb was most of a message's parse.  Anything else is
 * parsed as jsonb.
 */
static bool
is_plain_event(const WireEventText *sent)
{
	const WireSpan *ts = &sent->commit_ts;
	int64 seq;

	if (sent->row.len == 0 || sent->nmembers != 3 + (ts->len > 0) || !plain_seq(&sent->seq, &seq) ||
		plain_op(&sent->op) == 0)
		return false;
	if (ts->len == 0)
		return true;
	if (ts->len < 3 || ts->start[0] != '"' || ts->start[ts->len - 1] != '"')
		return false;
	for (int i = 1; i < ts->len - 1; i++)
	{
		if (ts->start[i] == '\\' || (unsigned char) ts->start[i] < 0x20)
			return false;
	}
	return true;
}

static void
parse_plain_event(const WireEventText *sent, WireEvent *out, CommitTsCache *cache)
{
	const WireSpan *ts = &sent->commit_ts;

	(void) plain_seq(&sent->seq, &out->seq);
	out->op = plain_op(&sent->op);
	if (ts->len > 0)
		out->commit_ts = parse_commit_ts(ts->start + 1, ts->len - 2, cache);
	out->text = sent->event.start;
	out->text_len = sent->event.len;
}

/* An event that is not plain, as jsonb: its own text, without its rows. */
static Jsonb *
event_jsonb(const WireEventText *sent)
{
	char *text = wire_scan_without_rows(sent->event.start, sent->event.len, sent, 1);
	Jsonb *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));

	pfree(text);
	return jb;
}

/* origin, schema, table, history, and that "events" is an array. */
static JsonbContainer *
parse_header(Jsonb *jb, WireMessage *msg)
{
	JsonbValue *events;

	msg->origin = get_string(&jb->root, "origin", true);
	msg->schema = get_string(&jb->root, "schema", true);
	msg->table = get_string(&jb->root, "table", true);
	parse_history(&jb->root, msg);
	events = get_field(&jb->root, "events", jbvBinary, true);
	if (!JsonContainerIsArray(events->val.binary.data))
		invalid_message("\"events\" is not an array");
	return events->val.binary.data;
}

/*
 * A row read from text is checked as jsonb_in would have checked it with
 * the message, so that a message that is not JSON is still refused whole:
 * by the lexer, decoding \u escapes if it has any (only then does it check
 * what they name); a row with a number numeric_in might refuse is built as
 * jsonb (which it will be anyway, to be applied).
 */
static void
check_row(WireEvent *ev, const WireEventText *sent)
{
	JsonLexContext *lex;
	bool unicode = memmem(ev->row_text, ev->row_len, "\\u", 2) != NULL;

	if (sent->row_odd_number)
	{
		(void) wire_event_row(ev);
		return;
	}
	lex = makeJsonLexContextCstringLen(unconstify(char *, ev->row_text), ev->row_len,
									   GetDatabaseEncoding(), unicode);
	pg_parse_json_or_ereport(lex, &nullSemAction);
	if (lex->strval)
	{
		pfree(lex->strval->data);
		pfree(lex->strval);
	}
	pfree(lex);
}

/*
 * A body the scan followed: every part of it is checked as JSON first (the
 * rest as jsonb, each event as jsonb unless plain, each row by the
 * lexer), as jsonb_in checked the whole body before anything it says;
 * then what it says.
 */
static void
parse_parts(const char *text, int len, WireMessage *msg, const WireEventText *sent,
			const WireSpan *array)
{
	char *head = wire_scan_cut(text, len, array, "[]");
	Jsonb *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(head)));
	Jsonb **events = palloc0(sizeof(Jsonb *) * msg->nevents);
	CommitTsCache cache = {0};

	pfree(head);
	for (int i = 0; i < msg->nevents; i++)
	{
		WireEvent *ev = &msg->events[i];

		if (!is_plain_event(&sent[i]))
			events[i] = event_jsonb(&sent[i]);
		if (sent[i].row.len > 0)
		{
			ev->row_text = sent[i].row.start;
			ev->row_len = sent[i].row.len;
			ev->cxt = CurrentMemoryContext;
			check_row(ev, &sent[i]);
		}
	}
	check_format(jb);
	parse_header(jb, msg);
	for (int i = 0; i < msg->nevents; i++)
	{
		JsonbValue v = {.type = jbvBinary};

		if (events[i] == NULL)
		{
			parse_plain_event(&sent[i], &msg->events[i], &cache);
			continue;
		}
		v.val.binary.data = &events[i]->root;
		v.val.binary.len = VARSIZE(events[i]) - VARHDRSZ;
		parse_event(&v, &msg->events[i], &sent[i], &cache);
	}
	pfree(events);
}

WireMessage *
wire_parse(const char *body, int len)
{
	WireMessage *msg = palloc0(sizeof(WireMessage));
	char *text = body_text(body, len);
	WireEventText *sent = NULL;
	WireSpan array;
	CommitTsCache cache = {0};
	JsonbContainer *events;
	Jsonb *jb;

	/*
	 * The events are read from the text (it stays: they and their rows
	 * point into it); a text the scan cannot follow is parsed whole.
	 */
	msg->nevents = wire_scan_events(text, len, &sent, &array);
	if (msg->nevents > 0)
	{
		msg->events = palloc0(sizeof(WireEvent) * msg->nevents);
		parse_parts(text, len, msg, sent, &array);
		return msg;
	}
	jb = parse_text(text);
	events = parse_header(jb, msg);
	msg->nevents = JsonContainerSize(events);
	if (msg->nevents == 0)
		invalid_message("\"events\" is empty");
	msg->events = palloc0(sizeof(WireEvent) * msg->nevents);
	for (int i = 0; i < msg->nevents; i++)
		parse_event(getIthJsonbValueFromContainer(events, i), &msg->events[i], NULL, &cache);
	return msg;
}

char *
wire_single_event(const WireMessage *msg, const WireEvent *ev)
{
	StringInfoData buf;

	initStringInfo(&buf);
	append_header(&buf, msg->origin, msg->schema, msg->table);
	/* a replay of a large event finds its parts by the history it named */
	append_incarnation(&buf, &msg->incarnation);
	appendStringInfoString(&buf, ",\"events\":[");
	if (ev->text != NULL)
		appendBinaryStringInfo(&buf, ev->text, ev->text_len);
	else
		appendStringInfoString(&buf, JsonbToCString(NULL, &ev->event->root, VARSIZE(ev->event)));
	appendStringInfoString(&buf, "]}");
	return buf.data;
}

text *
wire_copy_rows_text(WireCopy *copy)
{
	if (copy->rows_text != NULL)
		return cstring_to_text_with_len(copy->rows_text, copy->rows_len);
	return cstring_to_text(JsonbToCString(NULL, &copy->rows->root, VARSIZE(copy->rows)));
}

Jsonb *
wire_copy_rows(WireCopy *copy)
{
	if (copy->rows == NULL)
	{
		/* kept as long as the message */
		MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(copy));
		char *text = pnstrdup(copy->rows_text, copy->rows_len);

		copy->rows = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
		MemoryContextSwitchTo(old);
	}
	return copy->rows;
}

/* ---- parts of large values ---- */

void
wire_part_header(StringInfo buf, const char *origin, const char *schema, const char *table,
				 int64 incarnation, int64 seq, int value, int64 offset, int64 bytes)
{
	append_header(buf, origin, schema, table);
	appendStringInfo(buf,
					 ",\"revision\":" CppAsString2(
						 EVREP_WIRE_REVISION) ",\"part\":{\"incarnation\":" INT64_FORMAT
											  ",\"seq\":" INT64_FORMAT
											  ",\"value\":%d,\"offset\":" INT64_FORMAT
											  ",\"bytes\":" INT64_FORMAT "}}\n",
					 incarnation, seq, value, offset, bytes);
}

/*
 * The end of a part's header line, if body has one; our messages of events
 * have no newline, one of another sender's may.
 */
static const char *
part_header_end(const char *body, int len)
{
	static const char start[] = "{\"format\":\"" EVREP_WIRE_FORMAT "\"";
	const char *end;
	char *line;
	bool part;

	if (len < (int) sizeof(start) || memcmp(body, start, sizeof(start) - 1) != 0)
		return NULL;
	end = memchr(body, '\n', Min(len, WIRE_PART_HEADER_MAX));
	if (end == NULL)
		return NULL;
	line = pnstrdup(body, end - body);
	part = strstr(line, ",\"part\":{") != NULL;
	pfree(line);
	return part ? end : NULL;
}

bool
wire_is_part(const char *body, int len)
{
	return part_header_end(body, len) != NULL;
}

WirePart *
wire_parse_part(const char *body, int len)
{
	const char *end = part_header_end(body, len);
	WirePart *part = palloc0(sizeof(WirePart));
	JsonbContainer *obj;
	JsonbValue *v;
	Jsonb *jb;

	if (end == NULL)
		invalid_message("a part has no header line");
	jb = parse_object(body, end - body);
	part->origin = get_string(&jb->root, "origin", true);
	part->schema = get_string(&jb->root, "schema", true);
	part->table = get_string(&jb->root, "table", true);
	v = get_field(&jb->root, "part", jbvBinary, true);
	obj = v->val.binary.data;
	if (!JsonContainerIsObject(obj))
		invalid_message("\"part\" is not a JSON object");
	part->incarnation = get_int8(obj, "incarnation", false);
	part->seq = get_int8(obj, "seq", true);
	part->value = (int) get_int8(obj, "value", true);
	part->offset = get_int8(obj, "offset", true);
	part->len = get_int8(obj, "bytes", true);
	part->data = end + 1;
	if (part->seq <= 0 || part->value < 0 || part->offset < 0 || part->incarnation < 0)
		invalid_message("a part's seq must be positive, its value, offset and incarnation not "
						"negative");
	if (part->len != len - (part->data - body))
		invalid_message(psprintf("a part says it has " INT64_FORMAT " bytes and has %d", part->len,
								 (int) (len - (part->data - body))));
	return part;
}

/* ---- copy requests ---- */

char *
wire_copy_request(const char *node, const char *schema, const char *table, int64 request_id,
				  const char *histories_json)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf,
						   "{\"format\":\"" EVREP_WIRE_FORMAT "\",\"request\":\"copy\",\"node\":");
	escape_json(&buf, node);
	appendStringInfoString(&buf, ",\"schema\":");
	escape_json(&buf, schema);
	appendStringInfoString(&buf, ",\"table\":");
	escape_json(&buf, table);
	appendStringInfo(&buf, ",\"request_id\":" INT64_FORMAT, request_id);
	if (histories_json != NULL)
		appendStringInfo(&buf, ",\"histories\":%s", histories_json);
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

char *
wire_copy_request_key(const char *schema, const char *table)
{
	return psprintf(EVREP_COPY_KEY_PREFIX "%s", wire_routing_key(schema, table));
}

WireCopyRequest *
wire_parse_copy_request(const char *body, int len)
{
	WireCopyRequest *req = palloc0(sizeof(WireCopyRequest));
	Jsonb *jb = parse_object(body, len);
	char *what;
	JsonbValue *v;

	what = get_string(&jb->root, "request", true);
	if (strcmp(what, "copy") != 0)
		invalid_message(psprintf("unknown request \"%s\"", what));
	req->node = get_string(&jb->root, "node", true);
	req->schema = get_string(&jb->root, "schema", true);
	req->table = get_string(&jb->root, "table", true);
	req->request_id = get_int8(&jb->root, "request_id", true);
	if (req->request_id <= 0)
		invalid_message("\"request_id\" must be positive");
	v = get_field(&jb->root, "histories", jbvBinary, false);
	if (v != NULL && !JsonContainerIsObject(v->val.binary.data))
		invalid_message("\"histories\" is not a JSON object");
	req->histories = v ? JsonbValueToJsonb(v) : NULL;
	return req;
}

int64
wire_copy_request_history(const WireCopyRequest *req, const char *origin)
{
	if (req->histories == NULL)
		return 0;
	return get_int8(&req->histories->root, origin, false);
}
