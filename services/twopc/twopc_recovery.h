/*
 * twopc_recovery.h
 *		Settling the in-doubt transactions of the two-phase commit baseline.
 */
#ifndef EVREP_TWOPC_RECOVERY_H
#define EVREP_TWOPC_RECOVERY_H

/*
 * Once, after twopc_gid_init.  The strings must outlive the process'
 * recovery; app_name names recovery's database sessions.
 */
void twopc_recovery_init(const char *app_name, const char *local_conninfo,
						 const char *peer_conninfo, int statement_timeout_ms, int interval_ms);

/* One pass over both databases, in the calling thread. */
void twopc_recovery_pass(void);

/* A pass every interval_ms in a thread of its own, until ..._stop. */
void twopc_recovery_start(void);
void twopc_recovery_stop(void);

#endif /* EVREP_TWOPC_RECOVERY_H */
