/*
 * outbox.h
 *		Publisher side of the outbox: claim, encode, and remove after confirm.
 */
#ifndef EVREP_OUTBOX_H
#define EVREP_OUTBOX_H

#include "nodes/pg_list.h"

/* One AMQP message ready to send: several events of one table, in order. */
typedef struct OutboxMessage
{
	int32 pub_id;
	char *routing_key; /* escaped "schema.table" */
	char *body;		   /* JSON envelope, see docs/protocol.md */
	int body_len;
	int nevents;
	char *message_id; /* "<origin>/<table>/<first seq>" for tracing */
	/* a large event travels alone, after the parts of its values (parts_send.c) */
	int64 large_id;	   /* its outbox id; 0: not a large event */
	int64 large_seq;   /* its number */
	int64 incarnation; /* of its stream; 0: none */
	char *schema;
	char *table;
} OutboxMessage;

typedef struct OutboxBatch
{
	List *messages; /* of OutboxMessage *, in send order */
	int nevents;
	int64 *ids;			 /* outbox ids covered */
	int64 *numbered_ids; /* those of rows that carry their number: deleted on confirm */
	int nnumbered;
	int64 last_batch_id; /* the newest evrep.outbox_batch row covered; 0: none */
	int weight;			 /* events, a copy chunk counting as evrep.copy_chunk_rows */
	bool more;			 /* rows may wait beyond it: it was full, or a resend */
	bool large;			 /* has a large event, whose values are removed with it */
} OutboxBatch;

/*
 * Adds one chunk of a copy to the outbox (outbox_add_numbered), after the
 * large events of the rows too large for it, and returns their outbox ids
 * in number order (*n of them; none when no copy is due); sets *more when
 * another chunk is due after it.  Called inside the numbering transaction,
 * SPI connected.
 */
typedef int64 *(*OutboxCopyFn)(bool *more, int *n);

/*
 * Returns the next batch to send, encoded into messages: first the rows
 * numbered earlier but not known to be in flight (after start-up or
 * outbox_resend_unconfirmed), with their numbers; then up to max_events
 * rows numbered now and, when copy_chunk is given and every change this
 * transaction's snapshot sees is numbered, a chunk of a copy numbered
 * after them.  A caller with copy_chunk must run at REPEATABLE READ, so
 * that the chunk and the numbering see one snapshot.  Must be called
 * inside a transaction; the caller commits before sending, so that a
 * re-send reuses the same numbers.  Returns NULL when there is nothing to
 * send.  Memory is allocated in the given context so it survives the
 * commit.
 */
extern OutboxBatch *outbox_claim_batch(int max_events, int max_per_message, OutboxCopyFn copy_chunk,
									   bool *copy_more, MemoryContext mcxt);

/*
 * Adds an event numbered now, after every number already given in its
 * stream (a copy chunk).  row_data is json.  SPI, inside a transaction.
 */
extern int64 outbox_add_numbered(int32 pub_id, char op, Datum row_data);

/*
 * Forget what is in flight: the next claims send every numbered row again
 * (after a connection loss; subscribers skip what they already have).
 */
extern void outbox_resend_unconfirmed(void);

/*
 * About how many events wait in the outbox: the span of ids still there,
 * read from the primary key's ends, so it costs the same at any depth
 * (ids of rolled-back writers make it an upper bound).  SPI, inside a
 * transaction.
 */
extern int64 outbox_depth_estimate(void);

/*
 * Retires a confirmed batch: marks its numbering confirmed (captured rows
 * stay until their partition is emptied) and deletes the rows that carry
 * their number.  Inside a transaction.
 */
extern void outbox_remove_batch(OutboxBatch *batch);

/*
 * Keeps the outbox from bloating: empties the partition writers no longer
 * insert into once it holds no unsent rows, and some seconds later moves
 * the writers to it.  Publisher only, inside a transaction; never waits
 * for a lock.
 */
extern void outbox_rotate(void);

#endif /* EVREP_OUTBOX_H */
