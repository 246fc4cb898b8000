/*
 * outbox_int.h
 *		What the outbox's two numberings share: outbox.c (encoding, the
 *		rows the publisher writes itself, and evrep 1.0's numbering in
 *		place) and outbox_window.c (batches of an immutable outbox, 1.1).
 *		Not for other modules.
 */
#ifndef EVREP_OUTBOX_INT_H
#define EVREP_OUTBOX_INT_H

#include "access/xlogdefs.h"
#include "executor/spi.h"

#include "outbox.h"
#include "wire.h"

/* A publication as the batch builder needs it. */
typedef struct PubInfo
{
	int32 id;
	char *schema;
	char *table;
	char *key_json;
	WireIncarnation incarnation; /* id 0 on a 1.0 catalog */
} PubInfo;

/* One event to encode, with its number. */
typedef struct EventRow
{
	int64 id;
	int32 pub_id;
	int64 seq;
	char op;
	char *row;		 /* row_data as text */
	char *commit_ts; /* as JSON */
	XLogRecPtr lsn;	 /* where it was numbered; 0: not known (1.0) */
	bool numbered;	 /* seq is stored in its row, deleted once confirmed */
} EventRow;

/*
 * The statement shape of rows that carry their number:
 * id, pub_id, seq, op, row_data::text, commit_ts as JSON, lsn.
 */
#define EVENT_COLUMNS(lsn)                                                                         \
	"id, pub_id, seq, op, row_data::text, pg_catalog.to_json(commit_ts)::text, " lsn

/* The rows with their numbers in seq, by id; a 1.1 catalog. */
extern void outbox_fetch_numbered(Datum ids, EventRow **rows, int *n);

/* EVENT_COLUMNS rows of an SPI result as EventRows (numbered). */
extern EventRow *outbox_event_rows(SPITupleTable *tuptable, uint64 n);

extern PubInfo *outbox_load_publications(int *npubs);

/*
 * Encodes rows (in number order per publication) into the messages of a
 * batch, allocated in mcxt.  first_time: they were just numbered.
 */
extern OutboxBatch *outbox_encode(int max_per_message, EventRow *rows, int n, bool first_time,
								  MemoryContext mcxt);

/* An int8[] of n values. */
extern Datum outbox_int8_array(const int64 *v, int n);

/* Takes count numbers of a publication's stream; returns the last before them. */
extern int64 outbox_reserve_numbers(int32 pub_id, int64 count);

/*
 * The id sequence's last value, or -1 if it cannot bound what writers hold
 * (never used, or values cached by backends ahead of their use).
 */
extern int64 outbox_seq_value(void);

/* Numbers rows of a round are given at: the WAL insert position. */
extern XLogRecPtr outbox_round_lsn;

/* A round reads rows of at most this many full messages */
#define ROUND_MESSAGES 2

/* outbox_window.c */
extern OutboxBatch *window_claim(int max_events, int max_per_message, OutboxCopyFn copy_chunk,
								 bool *copy_more, MemoryContext mcxt);
extern OutboxBatch *window_resend(int max_per_message, MemoryContext mcxt);
extern void window_confirm(OutboxBatch *batch);
extern int64 window_truncate_below(void);
extern int64 window_depth_estimate(void);

#endif /* EVREP_OUTBOX_INT_H */
