/*
 * parts_receive.h
 *		The subscriber's side of large events: parts kept until their event.
 */
#ifndef EVREP_PARTS_RECEIVE_H
#define EVREP_PARTS_RECEIVE_H

#include "wire.h"

/* Keeps a part in evrep.inbox_part, once.  SPI connected. */
extern void parts_keep(const WirePart *part);

/*
 * The values of a large event, each put together from its parts: a
 * varlena of its bytes, NUL-terminated past its end (form "text": checked
 * for the database encoding, its VARDATA a C string).  ERROR if a part is
 * missing.  SPI connected.
 */
typedef struct PartsValue
{
	const WireLargeValue *value;
	char *bytes; /* a bytea, or for form "text" a text */
} PartsValue;

extern PartsValue *parts_collect(const WireMessage *msg, const WireEvent *ev);

/* Forgets the parts of an event that was applied.  SPI connected. */
extern void parts_forget(const WireMessage *msg, const WireEvent *ev);

#endif /* EVREP_PARTS_RECEIVE_H */
