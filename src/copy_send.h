/*
 * copy_send.h
 *		Origin side of a copy of existing rows.
 */
#ifndef EVREP_COPY_SEND_H
#define EVREP_COPY_SEND_H

#include "wire.h"

/*
 * Records a subscriber's request as a job for the publisher, which is
 * woken once the caller's transaction commits.  A request for a table not
 * published here, or one seen before, is logged and changes nothing.
 * Inside a transaction.
 */
extern void copy_accept_request(const WireCopyRequest *req);

/*
 * Publisher, inside its numbering transaction at REPEATABLE READ with SPI
 * connected: reads the next chunk of the oldest unfinished job and adds it
 * to the outbox numbered, after a large event for each of its rows too
 * large for it (an OutboxCopyFn).
 */
extern int64 *copy_next_chunk(bool *more, int *n);

/* Milliseconds until evrep.copy_rate_limit lets the next chunk go; 0: now. */
extern long copy_wait_ms(void);

#endif /* EVREP_COPY_SEND_H */
