/*
 * twopc_gid.h
 *		Global transaction ids of the two-phase commit baseline, and which of
 *		them this process is working on.
 */
#ifndef EVREP_TWOPC_GID_H
#define EVREP_TWOPC_GID_H

#include <glib.h>

#define TWOPC_GID_MAX 128

/* Once, before any other call. */
void twopc_gid_init(const char *service_name);

/* "evrep2pc:<ServiceName>:", the prefix of every gid of this service. */
const char *twopc_gid_prefix(void);

/* The prefix of this process' gids: twopc_gid_prefix() + "<start>.<pid>:". */
const char *twopc_gid_instance(void);

/* A new gid in gid (TWOPC_GID_MAX bytes), marked as in flight. */
void twopc_gid_new(char *gid);

/* Mark gid as in flight for recovery; FALSE if someone is working on it. */
gboolean twopc_gid_claim(const char *gid);

/* No longer in flight. */
void twopc_gid_release(const char *gid);

/* Only letters, digits and ":._-", shorter than TWOPC_GID_MAX. */
gboolean twopc_gid_safe(const char *gid);

#endif /* EVREP_TWOPC_GID_H */
