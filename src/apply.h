/*
 * apply.h
 *		Apply side: turn one wire message into local row changes, once.
 */
#ifndef EVREP_APPLY_H
#define EVREP_APPLY_H

#include "nodes/pg_list.h"

/* One message as it arrived, and what its receiver knows about it. */
typedef struct ApplyDelivery
{
	const char *body; /* the raw AMQP body */
	int len;
	const char *sender; /* AMQP user_id RabbitMQ validated; NULL when absent */
	bool vouched;		/* a superuser applies it (evrep_apply): no sender check */
	bool copy_request;	/* a node asks for a copy (wire_copy_request) */
	int attempt;		/* 1 for the first try of this message */
	bool last_attempt;	/* park what would otherwise be retried */
} ApplyDelivery;

/*
 * Applies every event of one message inside the caller's transaction.
 * Events already applied are skipped; events that cannot be applied, and
 * whole messages from a sender that may not speak for their origin, are
 * parked in evrep.dead_letter.  None of that raises.
 *
 * An ERROR escapes only for a condition the message may not be to blame
 * for: a transient one (apply_error_is_transient: shutdown, serialization
 * failure, lock timeout, disk full), or, before the last attempt, a
 * resource or internal error (out of memory, stack depth, timeout).  The
 * caller then rolls back, does not ack, and tries the message again; on
 * its last attempt such an error parks the message instead.
 *
 * Returns the number of events applied (not skipped, not parked).
 */
extern int apply_message(const ApplyDelivery *delivery);

/* An error that retries without counting an attempt, however often. */
extern bool apply_error_is_transient(int sqlerrcode);

#endif /* EVREP_APPLY_H */
