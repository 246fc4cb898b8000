/*
 * wire_scan.h
 *		Where each event, and each copy's rows, lie in a message's text.
 *
 * For wire.c only: a chunk of a copy is parsed as jsonb without its rows,
 * which the apply reads from this text (json_rows.c), and a parked event
 * keeps the text it came with.
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
} WireEventText;

/*
 * The events of a message body, in order; -1 if the text is not JSON of
 * the expected shape or repeats a member on the way: the caller then
 * parses it whole, and jsonb_in says what is wrong.
 */
extern int wire_scan_events(const char *text, int len, WireEventText **events);

/* Did the scan find a copy's rows (nevents -1: no scan)? */
extern bool wire_scan_any_rows(const WireEventText *events, int nevents);

/* The text with each copy's rows replaced by [] (palloc'd). */
extern char *wire_scan_without_rows(const char *text, int len, const WireEventText *events,
									int nevents);

#endif /* EVREP_WIRE_SCAN_H */
