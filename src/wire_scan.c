/*
 * wire_scan.c
 *		Where each event, and each copy's rows, lie in a message's text.
 *
 * Only the structure is followed: strings are skipped over, not decoded,
 * and nothing is checked that jsonb_in (the rest of the message) or the
 * rows' own reader (json_rows.c, jsonb_in) checks afterwards.  Any
 * surprise gives up: the message is then parsed whole, as before.
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "wire_scan.h"

typedef struct Scan
{
	const char *p;
	const char *end;
	bool failed;
	bool odd_number; /* skip_value passed a number with an exponent, or a long one */
} Scan;

static void
skip_ws(Scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static bool
at(Scan *s, char c)
{
	skip_ws(s);
	return !s->failed && s->p < s->end && *s->p == c;
}

static bool
expect(Scan *s, char c)
{
	if (!at(s, c))
		s->failed = true;
	else
		s->p++;
	return !s->failed;
}

/* A string: its closing quote is the first one after an even run of backslashes. */
static void
skip_string(Scan *s)
{
	if (!expect(s, '"'))
		return;
	for (;;)
	{
		const char *q = memchr(s->p, '"', s->end - s->p);
		const char *b;

		if (q == NULL)
		{
			s->failed = true;
			return;
		}
		for (b = q; b > s->p && b[-1] == '\\'; b--)
			;
		s->p = q + 1;
		if ((q - b) % 2 == 0)
			return;
	}
}

/*
 * Any value: brackets are counted outside strings.  Numbers numeric_in
 * might refuse (an exponent, a thousand digits) are noted.
 */
static void
skip_value(Scan *s)
{
	int depth = 0;
	int digits = 0;

	skip_ws(s);
	while (s->p < s->end && !s->failed)
	{
		char c = *s->p;

		if (c >= '0' && c <= '9')
			s->odd_number |= ++digits > 1000;
		else
		{
			/* outside strings, an e after a digit is an exponent (true, false have none) */
			s->odd_number |= (c == 'e' || c == 'E') && digits > 0;
			digits = 0;
		}

		if (c == '"')
		{
			skip_string(s);
			if (depth == 0)
				return;
			continue;
		}
		if (c == '{' || c == '[')
			depth++;
		else if (c == '}' || c == ']')
		{
			if (depth == 0)
				return; /* a scalar ends at its container's end */
			if (--depth == 0)
			{
				s->p++;
				return;
			}
		}
		else if (depth == 0 &&
				 (c == ',' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r'))
			return;
		s->p++;
	}
	if (depth > 0)
		s->failed = true;
}

/* A member an object walk looks for, and what it does there. */
typedef struct Wanted
{
	const char *key;
	void (*found)(Scan *, void *);
} Wanted;

/* Is the quoted name (len with its quotes) key? */
static bool
name_is(const char *name, size_t len, const char *key)
{
	return len == strlen(key) + 2 && strncmp(name + 1, key, len - 2) == 0;
}

/*
 * Walks an object's members; at one named in wanted (nwanted of them)
 * calls its found (once: a repeated key fails, since jsonb keeps only the
 * last), others are skipped.  Returns how many members it has.
 */
static int
walk_object(Scan *s, const Wanted *wanted, int nwanted, void *arg)
{
	int seen = 0;
	int n = 0;

	if (!expect(s, '{'))
		return 0;
	if (at(s, '}'))
	{
		s->p++;
		return 0;
	}
	for (;; n++)
	{
		const char *name;
		size_t len;
		int w;

		skip_ws(s);
		name = s->p;
		skip_string(s);
		len = s->p - name;
		/* jsonb compares names unescaped: an escape could hide a repeat */
		if (memchr(name, '\\', len) != NULL)
			s->failed = true;
		if (!expect(s, ':'))
			return n;
		for (w = 0; w < nwanted && !name_is(name, len, wanted[w].key); w++)
			;
		if (w < nwanted)
		{
			if (seen & (1 << w))
				s->failed = true;
			seen |= 1 << w;
			skip_ws(s);
			wanted[w].found(s, arg);
		}
		else
			skip_value(s);
		if (s->failed)
			return n;
		if (at(s, ','))
			s->p++;
		else
		{
			expect(s, '}');
			return n + 1;
		}
	}
}

static void
found_rows(Scan *s, void *arg)
{
	WireEventText *ev = arg;

	if (!at(s, '['))
	{
		skip_value(s); /* not an array: jsonb_in's parse says so */
		return;
	}
	ev->rows.start = s->p++;
	while (!at(s, ']') && !s->failed)
	{
		const char *row;

		if (ev->nrows > 0 && !expect(s, ','))
			return;
		skip_ws(s);
		row = s->p;
		skip_value(s);
		if (ev->nrows++ == 0)
		{
			ev->first_row.start = row;
			ev->first_row.len = s->p - row;
		}
	}
	if (s->failed)
		return;
	s->p++;
	ev->rows.len = s->p - ev->rows.start;
}

static void
found_copy(Scan *s, void *arg)
{
	static const Wanted rows = {"rows", found_rows};

	if (at(s, '{'))
		(void) walk_object(s, &rows, 1, arg);
	else
		skip_value(s);
}

/* An event's row object; anything else is left to jsonb_in's parse. */
static void
found_row(Scan *s, void *arg)
{
	WireEventText *ev = arg;
	const char *start = s->p;
	bool object = at(s, '{');

	s->odd_number = false;
	skip_value(s);
	if (object && !s->failed)
	{
		ev->row.start = start;
		ev->row.len = s->p - start;
		ev->row_odd_number = s->odd_number;
	}
}

/* A scalar member of an event, as written. */
static void
found_scalar(Scan *s, WireSpan *span)
{
	skip_ws(s);
	span->start = s->p;
	skip_value(s);
	span->len = s->p - span->start;
}

static void
found_seq(Scan *s, void *arg)
{
	found_scalar(s, &((WireEventText *) arg)->seq);
}

static void
found_op(Scan *s, void *arg)
{
	found_scalar(s, &((WireEventText *) arg)->op);
}

static void
found_commit_ts(Scan *s, void *arg)
{
	found_scalar(s, &((WireEventText *) arg)->commit_ts);
}

typedef struct Events
{
	WireEventText *ev;
	int n;
	int cap;
	WireSpan array;
} Events;

static void
found_events(Scan *s, void *arg)
{
	static const Wanted in_event[] = {{"seq", found_seq},
									  {"op", found_op},
									  {"commit_ts", found_commit_ts},
									  {"row", found_row},
									  {"copy", found_copy}};
	Events *e = arg;

	skip_ws(s);
	e->array.start = s->p;
	if (!expect(s, '['))
		return;
	while (!at(s, ']') && !s->failed)
	{
		WireEventText *ev;

		if (e->n > 0 && !expect(s, ','))
			return;
		if (e->n == e->cap)
			e->ev = repalloc(e->ev, sizeof(WireEventText) * (e->cap *= 2));
		ev = &e->ev[e->n++];
		memset(ev, 0, sizeof(WireEventText));
		skip_ws(s);
		ev->event.start = s->p;
		if (at(s, '{'))
			ev->nmembers = walk_object(s, in_event, lengthof(in_event), ev);
		else
			skip_value(s);
		ev->event.len = s->p - ev->event.start;
	}
	if (!s->failed)
		s->p++;
	e->array.len = s->p - e->array.start;
}

int
wire_scan_events(const char *text, int len, WireEventText **events, WireSpan *array)
{
	Scan s = {text, text + len, false};
	Events e = {palloc(sizeof(WireEventText) * 8), 0, 8};
	static const Wanted in_body = {"events", found_events};

	(void) walk_object(&s, &in_body, 1, &e);
	skip_ws(&s);
	if (s.failed || s.p != s.end || e.array.len == 0)
		return -1;
	*events = e.ev;
	*array = e.array;
	return e.n;
}

char *
wire_scan_without_rows(const char *text, int len, const WireEventText *events, int nevents)
{
	StringInfoData buf;
	const char *from = text;

	initStringInfo(&buf);
	for (int i = 0; i < nevents; i++)
	{
		/* an event has a copy's rows or a row, if both the row stays */
		const WireSpan *cut = events[i].rows.len > 0  ? &events[i].rows
							  : events[i].row.len > 0 ? &events[i].row
													  : NULL;

		if (cut == NULL)
			continue;
		appendBinaryStringInfo(&buf, from, cut->start - from);
		appendStringInfoString(&buf, cut == &events[i].rows ? "[]" : "{}");
		from = cut->start + cut->len;
	}
	appendBinaryStringInfo(&buf, from, text + len - from);
	return buf.data;
}

char *
wire_scan_cut(const char *text, int len, const WireSpan *span, const char *with)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, text, span->start - text);
	appendStringInfoString(&buf, with);
	appendBinaryStringInfo(&buf, span->start + span->len, text + len - (span->start + span->len));
	return buf.data;
}

void
wire_scan_object_begin(WireObjectScan *it, const char *text, int len)
{
	Scan s = {text, text + len, false};

	it->failed = !expect(&s, '{');
	it->p = s.p;
	it->end = s.end;
	it->first = true;
}

bool
wire_scan_object_next(WireObjectScan *it, WireSpan *name, WireSpan *value)
{
	Scan s = {it->p, it->end, it->failed};

	if (s.failed)
		return false;
	if (at(&s, '}'))
	{
		it->p = s.p + 1;
		return false;
	}
	if (!it->first)
		expect(&s, ',');
	it->first = false;
	skip_ws(&s);
	name->start = s.p + 1;
	skip_string(&s);
	name->len = s.p - name->start - 1;
	if (!s.failed && memchr(name->start, '\\', name->len) != NULL)
		s.failed = true;
	expect(&s, ':');
	skip_ws(&s);
	value->start = s.p;
	skip_value(&s);
	value->len = s.p - value->start;
	if (value->len == 0)
		s.failed = true;
	it->p = s.p;
	it->failed = s.failed;
	return !s.failed;
}
