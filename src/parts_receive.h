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
 * The values of a large event, each put together from its parts: a bytea
 * (form "bytea"), or a NUL-terminated text form checked for the database
 * encoding (form "text").  ERROR if a part is missing.  SPI connected.
 */
typedef struct PartsValue
{
	const WireLargeValue *value;
	char *bytes; /* a bytea varlena, or the text form (a C string) */
} PartsValue;

extern PartsValue *parts_collect(const WireMessage *msg, const WireEvent *ev);

/* Forgets the parts of an event that was applied.  SPI connected. */
extern void parts_forget(const WireMessage *msg, const WireEvent *ev);

#endif /* EVREP_PARTS_RECEIVE_H */
