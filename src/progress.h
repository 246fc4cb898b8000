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

#include "access/xlogdefs.h"
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

	/* The origin's history; kept only on a 1.1 catalog (history) */
	bool history;
	int64 incarnation;	 /* 0 when unknown */
	XLogRecPtr last_lsn; /* the origin's WAL position at last_seq */
	int64 prev_incarnation;
	int64 prev_last_seq;
	bool history_changed; /* set history_changed_at on save */
	char *history_reason;
	char *repair;
	int64 repair_request;
	int64 base_seq;			/* numbers below were never expected here; 0: not yet */
	TimestampTz gaps_since; /* when the gaps opened; 0: none */
} StreamProgress;

/* What a message's history means for its stream (progress_follow_history). */
typedef enum HistoryVerdict
{
	HISTORY_SAME,		   /* the stream's history, or the sender does not say */
	HISTORY_FOLLOWED,	   /* a newer history; nothing applied here was lost */
	HISTORY_DIVERGED,	   /* a newer history; numbers applied here name lost events */
	HISTORY_OLD_DUPLICATE, /* the history before: a late duplicate */
	HISTORY_OLD_ALIVE	   /* an older history still speaking: two servers */
} HistoryVerdict;

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

/*
 * Compares the message's history with the stream's, and moves the stream
 * to a newer one: numbers from the fork on (incarnation.since) are
 * expected again.
 */
extern HistoryVerdict progress_follow_history(StreamProgress *p, const WireMessage *msg);

/*
 * Within one history the origin's WAL position grows with its numbers.
 * After claiming the message's events (old_last_seq: last_seq before;
 * duplicates: whether some were not fresh), tells whether the origin went
 * back without a trace, and keeps the position of last_seq.
 */
/*
 * A hole a resend would have filled by now: a gap at or above base_seq,
 * open for longer than after_ms.  Its lowest one in *lo, *hi.
 */
extern bool progress_hole(const StreamProgress *p, int after_ms, int64 *lo, int64 *hi);

extern bool progress_went_back(StreamProgress *p, const WireMessage *msg, int64 old_last_seq,
							   bool duplicates);

#endif /* EVREP_PROGRESS_H */
