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
 * *known is false when no TRUNCATE passed through the hook (the library
 * was loaded in the middle of the statement); the answer is then false.
 */
extern bool evrep_truncate_restart_identity(bool *known);

#endif /* EVREP_TRUNCATE_H */
