/*
 * apply_target.h
 *		The statements that apply events to one subscribed table.
 */
#ifndef EVREP_APPLY_TARGET_H
#define EVREP_APPLY_TARGET_H

#include "parts_receive.h"
#include "wire.h"

typedef struct ApplyTarget ApplyTarget;

/*
 * The target for a table, built from the catalog on first use and again
 * after any invalidation of the relation.  Inside a transaction, with SPI
 * connected.
 */
extern ApplyTarget *apply_target_get(Oid relid);

/*
 * Upsert (insert, update) or delete by primary key; for a chunk of a copy,
 * make the local rows in its key range exactly its rows; for a truncate,
 * remove every local row (TRUNCATE, or DELETE where TRUNCATE would fail
 * for want of privilege or for a foreign key).  Columns
 * are matched by name: a local column the event does not carry keeps its
 * value or default, an event column the table lacks is ignored.
 */
extern void apply_target_event(ApplyTarget *target, WireEvent *ev);

/*
 * A large event: its row, with the values put together from their parts
 * (one per entry of its "values", in that order) for their columns.
 */
extern void apply_target_large(ApplyTarget *target, const WireEvent *ev, const PartsValue *values);

/*
 * Applies the leading events of evs[0..n) that upsert distinct keys with
 * the same columns in one statement, if there are two or more of them;
 * returns how many it applied (0: apply evs[0] with apply_target_event).
 */
extern int apply_target_run(ApplyTarget *target, WireEvent *const *evs, int n);

/*
 * Rows applied since the last call that carried columns the table lacks
 * (they were ignored); resets the count.
 */
extern int64 apply_target_take_unknown(ApplyTarget *target);

#endif /* EVREP_APPLY_TARGET_H */
