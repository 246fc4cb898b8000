/*
 * incarnation.h
 *		The history (incarnation) of this database, and the catalog version.
 *
 * A database can go back or change identity: restored from a base backup,
 * promoted, recovered to a point in time, reloaded from a dump.  A stream
 * number then names another event than before, so each history gets an id
 * and every message carries it (wire.h).  What a new history means for
 * this node's own streams and subscriptions is decided here, once, when a
 * worker first starts in it.
 */
#ifndef EVREP_INCARNATION_H
#define EVREP_INCARNATION_H

/*
 * Whether the catalog is evrep 1.1 or later (ALTER EXTENSION evrep UPDATE
 * has run): until then the library serves the 1.0 catalog as 1.0 did,
 * without histories.  Inside a transaction; a syscache lookup.
 */
extern bool history_catalog(void);

/*
 * Compares the database's identity (system identifier, database, timeline,
 * backup_label.old) with the current history and starts a new one if it
 * changed: streams continue above their last number, subscriptions are
 * copied again (evrep.repair), oids are looked up again after a reload.
 * Inside a transaction, on a 1.1 catalog.
 */
extern void incarnation_check(void);

/* Settings: evrep.repair. */
typedef enum EvrepRepair
{
	EVREP_REPAIR_RESYNC,
	EVREP_REPAIR_WARN
} EvrepRepair;

extern int evrep_repair;
extern int evrep_gap_repair_after; /* s; 0: never */

#endif /* EVREP_INCARNATION_H */
