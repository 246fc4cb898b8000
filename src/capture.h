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

#endif /* EVREP_CAPTURE_H */
