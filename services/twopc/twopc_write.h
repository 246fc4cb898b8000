/*
 * twopc_write.h
 *		One row written to two databases in one distributed transaction.
 */
#ifndef EVREP_TWOPC_WRITE_H
#define EVREP_TWOPC_WRITE_H

#include <glib.h>

#include "svc_db.h"

typedef struct TwopcError
{
	SvcDbError db;	   /* what went wrong */
	gboolean peer;	   /* ... in the peer database */
	gboolean in_doubt; /* prepared everywhere, but whether the decision
						* was logged is unknown; recovery finishes the
						* transaction either way */
} TwopcError;

/*
 * Read the crash hooks from the environment: EVREP_2PC_CRASH_BEFORE_DECISION=1
 * or EVREP_2PC_CRASH_AFTER_DECISION=1.  Returns a note for the log ("" when
 * neither is set).
 */
const char *twopc_write_init(void);

/*
 * Write one row to the service's own database (db) and to the peer
 * database in one distributed transaction: BEGIN on both, local_sql on db
 * and peer_sql on peer (same parameters), PREPARE TRANSACTION on both, the
 * decision committed to the local decision log (table twopc_decision),
 * COMMIT PREPARED on both.  Both sides run each step in parallel.  Before
 * the decision every failure rolls back both sides; after it the
 * transaction counts as committed (a side that could not be committed yet
 * is committed by recovery).
 *
 * Returns TRUE when committed, or when local_sql affected no row, in which
 * case *applied is FALSE and nothing was written.  Returns FALSE with *err
 * filled otherwise.
 */
gboolean twopc_write(SvcDb *db, SvcDb *peer, const char *local_sql, const char *peer_sql,
					 int nparams, const char *const *values, gboolean *applied, TwopcError *err);

void twopc_error_clear(TwopcError *err);

#endif /* EVREP_TWOPC_WRITE_H */
