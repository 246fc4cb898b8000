/*
 * oversize.h
 *		Rows too large for one message: what is sent instead (oversize.c).
 */
#ifndef EVREP_OVERSIZE_H
#define EVREP_OVERSIZE_H

#include "access/htup.h"
#include "utils/relcache.h"

/* The outbox op of a skip event, "skip" on the wire */
#define EVREP_OP_SKIP 's'

/* Values of a row that travel apart, in parts (oversize.c) */
typedef struct OversizeValues OversizeValues;

/*
 * Does the row have a value that goes apart even if the row fits in a
 * message (a bytea or text of a MB or more)?  Then oversize_capture makes
 * its event.
 */
extern bool oversize_goes_apart(Relation rel, HeapTuple tuple, const bool *mask);

/*
 * The row_data of an event whose row did not fit (mask: the columns
 * published, NULL for all): for a delete, the key alone (a subscriber
 * deletes by key), which *op keeps; for an insert or update, a large
 * event ({"of", "row", "values"}, op EVREP_OP_LARGE) whose largest values
 * are left out of the row and returned in *apart, to be stored with
 * oversize_store once the outbox row has its id; if even that does not
 * fit, a skip event ({"op", "key", "reason"}), which *op becomes,
 * recorded in evrep.skipped and said to the writer as a WARNING.
 * unchanged (or NULL) is oversize_unchanged's list, which a large event
 * names.
 */
extern Datum oversize_capture(Relation rel, char *op, HeapTuple tuple, const bool *mask,
							  const char *unchanged, OversizeValues **apart);

/*
 * The large event of an insert or update (op), as oversize_capture makes
 * it; NULL if the row cannot be sent that way either.
 */
extern char *oversize_large(Relation rel, char op, HeapTuple tuple, const bool *mask,
							const char *unchanged, OversizeValues **apart);

/*
 * The values of a MB or more an UPDATE left as they were (the same value
 * stored out of line), which are not sent again: their names as a JSON
 * array, and in *sent the columns to send (mask without them); NULL if
 * there are none.
 */
extern char *oversize_unchanged(Relation rel, HeapTuple oldtup, HeapTuple newtup, const bool *mask,
								bool **sent);

/* Stores the values that travel apart, beside the outbox row outbox_id. */
extern void oversize_store(int64 outbox_id, const OversizeValues *apart);

/*
 * The same at send time, for an outbox row (JSON text) that was captured
 * before the limit was lowered, or by evrep 1.0: key_columns is the
 * publication's key as a JSON array.  record: this is the first time the
 * row is sent (a resend must not record it twice).  SPI connected.
 */
extern char *oversize_skip_at_send(const char *schema, const char *table, const char *key_columns,
								   char op, const char *row_json, bool record);

#endif /* EVREP_OVERSIZE_H */
