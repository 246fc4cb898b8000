/*
 * apply.h
 *		Apply side: turn one wire message into local row changes, once.
 */
#ifndef EVREP_APPLY_H
#define EVREP_APPLY_H

#include "nodes/pg_list.h"

/*
 * Applies every event of one message (the raw AMQP body) inside the
 * caller's transaction.  Events already applied are skipped, events that
 * cannot be applied are parked in evrep.dead_letter; neither raises.  Only
 * infrastructure failures (out of memory, shutdown) raise an ERROR, in
 * which case the caller must roll back and not ack.
 *
 * Returns the number of events applied (not skipped, not parked).
 */
extern int apply_message(const char *body, int len);

/*
 * Routing keys the consumer's queue must be bound to: one per
 * subscription, as palloc'd strings.  Inside a transaction.
 */
extern List *apply_subscription_keys(void);

#endif /* EVREP_APPLY_H */
