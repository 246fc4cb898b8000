/*
 * progress.h
 *		Apply progress of one (origin, schema, table) stream.
 *
 * A stream is numbered 1, 2, 3, ... by its origin.  The subscriber keeps
 * the highest number applied and the gaps below it that a late message may
 * still fill; both are written in the transaction that applies the rows,
 * so a redelivered message is recognised after any crash.
 */
#ifndef EVREP_PROGRESS_H
#define EVREP_PROGRESS_H

#include "datatype/timestamp.h"

#include "wire.h"

typedef struct StreamProgress
{
	bool exists; /* a row was loaded */
	int64 last_seq;
	int ngaps;	 /* pairs in gaps */
	int64 *gaps; /* lo, hi, lo, hi ... */
	/* counted in this transaction, added to the stored totals on save */
	int64 applied;
	int64 skipped;
	int64 parked;
	int64 unknown_columns;		/* rows that carried columns the table lacks */
	TimestampTz last_commit_ts; /* 0 when unknown */
} StreamProgress;

/* Reads the message's stream progress and locks it until commit.  SPI. */
extern void progress_load(const WireMessage *msg, StreamProgress *p);

/* Writes it back, adding the counts to the stored ones.  SPI. */
extern void progress_save(const WireMessage *msg, StreamProgress *p);

/*
 * Claims seq for applying: false when the event was already applied or
 * parked.  A number beyond last_seq + 1 opens a gap; one inside a gap
 * shrinks it.
 */
extern bool progress_claim(StreamProgress *p, int64 seq);

/*
 * Stops expecting the numbers below seq: a copy's first chunk holds the
 * state every earlier event led to.
 */
extern void progress_forget_below(StreamProgress *p, int64 seq);

#endif /* EVREP_PROGRESS_H */
