/*
 * truncate.h
 *		What the capture trigger cannot see of a TRUNCATE (truncate.c).
 */
#ifndef EVREP_TRUNCATE_H
#define EVREP_TRUNCATE_H

/* Installs the ProcessUtility hook; from _PG_init. */
extern void evrep_truncate_install(void);

/*
 * Was RESTART IDENTITY given to the TRUNCATE this backend is executing?
 * *known is false when no TruncateStmt passed through the hook: code that
 * truncates by calling ExecuteTruncate or ExecuteTruncateGuts itself (an
 * extension; logical replication's apply, whose replica role keeps the
 * capture trigger quiet anyway).  The answer is then false.
 */
extern bool evrep_truncate_restart_identity(bool *known);

#endif /* EVREP_TRUNCATE_H */
