/*
 * deadletter.h
 *		Events that could not be applied, kept in evrep.dead_letter for an
 *		operator to see, fix and replay.
 */
#ifndef EVREP_DEADLETTER_H
#define EVREP_DEADLETTER_H

#include "wire.h"

/*
 * Parks body with the error that stopped it on the given attempt.  msg is
 * NULL for a body that could not be parsed; seq is 0 when the whole
 * message is parked.  SPI.
 */
extern void deadletter_park(const WireMessage *msg, int64 seq, const ErrorData *edata,
							const char *body, int attempts);

/* A raw message body as text: verbatim when it is valid text, else \x hex. */
extern char *deadletter_raw_body(const char *body, int len);

/*
 * Locks dead letter id for a replay and returns its body; an ERROR when it
 * does not exist or was already replayed.  SPI.
 */
extern char *deadletter_lock_for_replay(int64 id);

/* Records the outcome of a replay (edata NULL: applied).  SPI. */
extern void deadletter_record_replay(int64 id, const ErrorData *edata);

#endif /* EVREP_DEADLETTER_H */
