/*
 * wire.h
 *		The evrep wire format, evrep.v1 revision 2 (docs/protocol.md).
 *
 * One AMQP message carries one or more events of one table from one
 * origin, in the origin's order:
 *
 *	{"format": "evrep.v1", "revision": 2, "origin": "...", "schema": "...",
 *	 "table": "...", "incarnation": {"id": 1, "since": 1, "reason": "..."},
 *	 "lsn": "0/1", "key": ["id"], "events": [{"seq": 1, "op": "insert",
 *	 "commit_ts": "...", "row": {...}}, ...]}
 *
 * Revision 2 (evrep 1.1) only adds: readers of revision 1 ignore the new
 * header fields, and park a message with a "truncate" or "skip" event
 * whole (a skip travels alone in its message).
 */
#ifndef EVREP_WIRE_H
#define EVREP_WIRE_H

#include "access/xlogdefs.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

/* The body's "format" field, and the AMQP type and content_type properties. */
#define EVREP_WIRE_FORMAT "evrep.v1"
#define EVREP_WIRE_TYPE EVREP_WIRE_FORMAT
#define EVREP_WIRE_CONTENT_TYPE "application/json"
#define EVREP_WIRE_REVISION 2

/*
 * The history a stream's numbers belong to (incarnation.c): id grows with
 * every restore, promotion or reload of the origin; numbers below since
 * are shared with the history before it.
 */
typedef struct WireIncarnation
{
	int64 id; /* 0: the sender did not say (revision 1) */
	int64 since;
	char *reason;
} WireIncarnation;

/*
 * Encoding.  The *_json arguments are already JSON text (PostgreSQL's own
 * output), copied verbatim so the row is never re-parsed on the way out.
 */
extern void wire_begin_message(StringInfo buf, const char *origin, const char *schema,
							   const char *table, const char *key_json, const WireIncarnation *inc,
							   XLogRecPtr lsn);
extern void wire_add_event(StringInfo buf, bool first, int64 seq, char op,
						   const char *commit_ts_json, const char *row_json);
extern void wire_end_message(StringInfo buf);

/* "insert", "update", "delete", "copy", "truncate", "skip", "large" */
extern const char *wire_op_name(char op);

/* "schema.table" with '.', '*', '#' and '%' percent-escaped (palloc'd). */
extern char *wire_routing_key(const char *schema, const char *table);

/*
 * A chunk of a copy of existing rows (op "copy"): the origin's rows with
 * keys in (after, upto], in key order; after is NULL for the first chunk,
 * upto for the last.  Only the node it is for applies it.
 */
typedef struct WireCopy
{
	char *target; /* "for": the node that asked for the copy */
	int64 request_id;
	int64 estimate; /* rows the origin expects to send; 0 if unknown */
	int nkeys;		/* the origin's primary key, in its order: */
	char **key_columns;
	char **key_collations; /* NULL for a type without collation */
	Jsonb *after;		   /* key object, or NULL */
	Jsonb *upto;		   /* key object, or NULL */
	int nrows;
	Jsonb *first_row; /* the first row object, or NULL when there is none */
	/* the rows: wire_copy_rows_text and wire_copy_rows */
	const char *rows_text; /* the array as sent, if it was not parsed */
	int rows_len;
	Jsonb *rows;	/* as jsonb, once parsed */
	Jsonb *skipped; /* key objects of rows too large to send, or NULL */
	int nskipped;
	Jsonb *kept; /* those and the rows sent before as large events ("apart") */
	int nkept;
} WireCopy;

/*
 * A copy's rows, a JSON array of row objects: as text (evrep._json_rows
 * reads it without building jsonb), or as jsonb.
 */
extern text *wire_copy_rows_text(WireCopy *copy);
extern Jsonb *wire_copy_rows(WireCopy *copy);

/*
 * An insert or update ("of") with values too large for one message: each
 * travels in parts, messages of their own sent before this event's
 * message (wire_part_header).  The event's row has the other columns.
 */
#define EVREP_OP_LARGE 'L'

/*
 * In the outbox, an update that left values of a MB or more as they were:
 * its row_data is {"row": {...}, "unchanged": [<column>, ...]}, sent as an
 * "update" event with those two members.  A reader keeps what it has for
 * the unchanged columns, and needs the row to be there.
 */
#define EVREP_OP_UPDATE_UNCHANGED 'v'

typedef struct WireLargeValue
{
	char *column;
	bool bytea; /* form "bytea": the bytes of a bytea; else "text": its text form */
	int64 bytes;
} WireLargeValue;

typedef struct WireLarge
{
	char of; /* 'i' or 'u' */
	int nvalues;
	WireLargeValue *values;
} WireLarge;

/* A parsed message; strings point into palloc'd copies. */
typedef struct WireEvent
{
	int64 seq;
	char op;			   /* 'i', 'u', 'd', 'c' (copy), 't' (truncate), 's' (skip), 'L' */
	TimestampTz commit_ts; /* 0 when absent */
	Jsonb *row;			   /* NULL for a copy; options of a truncate; a skip's object */
	const char *row_text;  /* an insert's, update's or delete's row as sent, if known: */
	int row_len;		   /* then row is NULL until wire_event_row builds it */
	MemoryContext cxt;	   /* the message's, where it is built */
	WireCopy *copy;		   /* only for a copy */
	WireLarge *large;	   /* only for a large event (its row is the row) */
	Jsonb *unchanged;	   /* an update's or large event's columns left as they were, or NULL */
	Jsonb *event;		   /* the whole event object, for parking, unless ... */
	const char *text;	   /* ... its text as sent is known */
	int text_len;
} WireEvent;

typedef struct WireMessage
{
	char *origin;
	char *schema;
	char *table;
	WireIncarnation incarnation; /* id 0 when absent */
	XLogRecPtr lsn;				 /* origin's WAL position at numbering; 0: absent */
	int nevents;
	WireEvent *events;
} WireMessage;

/*
 * Parses and validates a message; raises ERRCODE_INVALID_TEXT_REPRESENTATION
 * or ERRCODE_INVALID_PARAMETER_VALUE with a precise message when it is not
 * a valid evrep.v1 message.
 */
extern WireMessage *wire_parse(const char *body, int len);

/*
 * An event's row (an insert's, update's or delete's) as jsonb, parsed from
 * its text the first time it is asked for; an error if that text is not
 * JSON.
 */
extern Jsonb *wire_event_row(WireEvent *ev);

/* Re-wraps one event of a message as a one-event message (for parking). */
extern char *wire_single_event(const WireMessage *msg, const WireEvent *ev);

/*
 * A part of a large value: a message whose body is one line of JSON, a
 * newline and the part's bytes:
 *
 *	{"format": "evrep.v1", "origin": "...", "schema": "...", "table": "...",
 *	 "revision": 2, "part": {"incarnation": 1, "seq": 12, "value": 0,
 *	 "offset": 0, "bytes": 8388608}}\n<bytes>
 *
 * value indexes the event's "values"; offset is where the bytes go in it.
 * A message of events never holds a newline (JSON escapes it in strings).
 */
#define WIRE_PART_HEADER_MAX 4096

typedef struct WirePart
{
	char *origin;
	char *schema;
	char *table;
	int64 incarnation; /* 0: the sender named none */
	int64 seq;
	int value;
	int64 offset;
	const char *data; /* into the body */
	int64 len;
} WirePart;

extern void wire_part_header(StringInfo buf, const char *origin, const char *schema,
							 const char *table, int64 incarnation, int64 seq, int value,
							 int64 offset, int64 bytes);
extern bool wire_is_part(const char *body, int len);
extern WirePart *wire_parse_part(const char *body, int len);

/*
 * A request for a copy of a table, sent by a subscriber to the routing key
 * EVREP_COPY_KEY_PREFIX || "schema.table", which only the table's origin
 * binds (three words: it never matches a table's two-word key):
 *
 *	{"format": "evrep.v1", "request": "copy", "node": "...",
 *	 "schema": "...", "table": "...", "request_id": 1234,
 *	 "histories": {"<origin>": <incarnation id>, ...}}
 *
 * histories (revision 2) names the history the asking node follows of each
 * origin it applies the table from: an origin in an older history (a copy
 * of it started beside the newer one) refuses to answer.
 */
#define EVREP_COPY_KEY_PREFIX "copy."

typedef struct WireCopyRequest
{
	char *node;
	char *schema;
	char *table;
	int64 request_id;
	Jsonb *histories; /* NULL when absent */
} WireCopyRequest;

extern char *wire_copy_request(const char *node, const char *schema, const char *table,
							   int64 request_id, const char *histories_json);

/* The history the asking node follows of origin; 0 when it does not say. */
extern int64 wire_copy_request_history(const WireCopyRequest *req, const char *origin);
extern char *wire_copy_request_key(const char *schema, const char *table);
extern WireCopyRequest *wire_parse_copy_request(const char *body, int len);

#endif /* EVREP_WIRE_H */
