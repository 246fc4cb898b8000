/*
 * capture.h
 *		The capture trigger's outbox writes, for the code that emits events
 *		of a published table outside its trigger (contract.c).
 */
#ifndef EVREP_CAPTURE_H
#define EVREP_CAPTURE_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "utils/relcache.h"

/*
 * Writes one event of publication pub_id into the outbox, in the current
 * transaction, with the columns of mask (NULL: all), and wakes the
 * publisher at commit.
 */
extern void capture_write(Relation rel, int32 pub_id, char op, HeapTuple tuple, const bool *mask);

/* An outbox row of several events of one publication (capture_buffer.c). */
#define EVREP_OP_MANY 'm'

/* Writes one outbox row now: events of them (op m), else one. */
extern int64 capture_outbox_row(int32 pub_id, char op, Datum row_data, int32 events);

/* capture_buffer.c: events gathered into one outbox row */
extern void capture_buffer_init(void);
extern void capture_buffer_add(int32 pub_id, char op, Datum row);
extern void capture_buffer_flush(void);

#endif /* EVREP_CAPTURE_H */
