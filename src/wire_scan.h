/*
 * wire_scan.h
 *		Where each event, and each copy's rows, lie in a message's text.
 *
 * wire.c parses a message as jsonb without its rows (a copy's rows, an
 * event's row), which the apply reads from this text (json_rows.c), and a
 * parked event keeps the text it came with.  apply_target.c reads a row's
 * members from its text.
 */
#ifndef EVREP_WIRE_SCAN_H
#define EVREP_WIRE_SCAN_H

typedef struct WireSpan
{
	const char *start;
	int len; /* 0: none */
} WireSpan;

typedef struct WireEventText
{
	WireSpan event;		/* the event object */
	WireSpan rows;		/* "rows" of its "copy" object */
	WireSpan first_row; /* the first of them */
	int nrows;
	WireSpan row;		 /* its "row" object */
	bool row_odd_number; /* with a number numeric_in might refuse */
	WireSpan seq;		 /* these members' values as written */
	WireSpan op;
	WireSpan commit_ts;
	int nmembers; /* all of its members */
} WireEventText;

/*
 * The events of a message body, in order, and where their array lies; -1
 * if the text is not JSON of the expected shape or repeats a member on
 * the way: the caller then parses it whole, and jsonb_in says what is
 * wrong.
 */
extern int wire_scan_events(const char *text, int len, WireEventText **events, WireSpan *array);

/*
 * The text with each copy's rows replaced by [] and each other event's row
 * by {} (palloc'd).
 */
extern char *wire_scan_without_rows(const char *text, int len, const WireEventText *events,
									int nevents);

/* The text with span replaced by with (palloc'd). */
extern char *wire_scan_cut(const char *text, int len, const WireSpan *span, const char *with);

/*
 * The members of one object's text, in order, their values as they are
 * written.  Stops (failed) at an escaped name, which only a decoder can
 * compare, and at what is not an object; values are not checked.
 */
typedef struct WireObjectScan
{
	const char *p;
	const char *end;
	bool first;
	bool failed;
} WireObjectScan;

extern void wire_scan_object_begin(WireObjectScan *it, const char *text, int len);
extern bool wire_scan_object_next(WireObjectScan *it, WireSpan *name, WireSpan *value);

#endif /* EVREP_WIRE_SCAN_H */
