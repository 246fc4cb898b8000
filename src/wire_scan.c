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

static void
skip_string(Scan *s)
{
	if (!expect(s, '"'))
		return;
	while (s->p < s->end && *s->p != '"')
		s->p += *s->p == '\\' ? 2 : 1;
	if (s->p >= s->end)
		s->failed = true;
	else
		s->p++;
}

/* Any value: brackets are counted outside strings. */
static void
skip_value(Scan *s)
{
	int depth = 0;

	skip_ws(s);
	while (s->p < s->end && !s->failed)
	{
		char c = *s->p;

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

/*
 * Walks an object's members; at the one named key calls found (once: a
 * repeated key fails, since jsonb keeps only the last), others are
 * skipped.
 */
static void
walk_object(Scan *s, const char *key, void (*found)(Scan *, void *), void *arg)
{
	bool seen = false;

	if (!expect(s, '{'))
		return;
	if (at(s, '}'))
	{
		s->p++;
		return;
	}
	for (;;)
	{
		const char *name;
		size_t len;

		skip_ws(s);
		name = s->p;
		skip_string(s);
		len = s->p - name;
		/* jsonb compares names unescaped: an escape could hide a repeat */
		if (memchr(name, '\\', len) != NULL)
			s->failed = true;
		if (!expect(s, ':'))
			return;
		if (len == strlen(key) + 2 && strncmp(name + 1, key, len - 2) == 0)
		{
			if (seen)
				s->failed = true;
			seen = true;
			skip_ws(s);
			found(s, arg);
		}
		else
			skip_value(s);
		if (s->failed)
			return;
		if (at(s, ','))
			s->p++;
		else
		{
			expect(s, '}');
			return;
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
	if (at(s, '{'))
		walk_object(s, "rows", found_rows, arg);
	else
		skip_value(s);
}

typedef struct Events
{
	WireEventText *ev;
	int n;
	int cap;
} Events;

static void
found_events(Scan *s, void *arg)
{
	Events *e = arg;

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
			walk_object(s, "copy", found_copy, ev);
		else
			skip_value(s);
		ev->event.len = s->p - ev->event.start;
	}
	if (!s->failed)
		s->p++;
}

int
wire_scan_events(const char *text, int len, WireEventText **events)
{
	Scan s = {text, text + len, false};
	Events e = {palloc(sizeof(WireEventText) * 8), 0, 8};

	walk_object(&s, "events", found_events, &e);
	skip_ws(&s);
	if (s.failed || s.p != s.end)
		return -1;
	*events = e.ev;
	return e.n;
}

bool
wire_scan_any_rows(const WireEventText *events, int nevents)
{
	for (int i = 0; i < nevents; i++)
	{
		if (events[i].rows.len > 0)
			return true;
	}
	return false;
}

char *
wire_scan_without_rows(const char *text, int len, const WireEventText *events, int nevents)
{
	StringInfoData buf;
	const char *from = text;

	initStringInfo(&buf);
	for (int i = 0; i < nevents; i++)
	{
		if (events[i].rows.len == 0)
			continue;
		appendBinaryStringInfo(&buf, from, events[i].rows.start - from);
		appendStringInfoString(&buf, "[]");
		from = events[i].rows.start + events[i].rows.len;
	}
	appendBinaryStringInfo(&buf, from, text + len - from);
	return buf.data;
}
