/*
 * twopc_gid.c
 *		Global transaction ids, and the set of them in flight.
 *
 * gids are made from the service name, the process' start time, its pid
 * and a counter (letters, digits, ':' and '.').  They are the only text
 * pasted into SQL (PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED take no
 * parameters), so a gid read back from pg_prepared_xacts is used only if
 * twopc_gid_safe() accepts it.
 *
 * Recovery must never settle a transaction that a request thread is still
 * working on: both mark the gid in flight here first.
 */
#include "twopc_gid.h"

#include <string.h>
#include <unistd.h>

static char *gid_prefix = NULL;
static char *gid_instance = NULL;
static guint64 gid_counter = 0; /* under gid_mu */

static GMutex gid_mu;
static GHashTable *gid_busy = NULL;

void
twopc_gid_init(const char *service_name)
{
	gid_prefix = g_strdup_printf("evrep2pc:%s:", service_name);
	gid_instance = g_strdup_printf("%s%" G_GINT64_MODIFIER "x.%d:", gid_prefix, g_get_real_time(),
								   (int) getpid());
	g_assert(twopc_gid_safe(gid_instance));
	gid_busy = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
}

const char *
twopc_gid_prefix(void)
{
	return gid_prefix;
}

const char *
twopc_gid_instance(void)
{
	return gid_instance;
}

void
twopc_gid_new(char *gid)
{
	g_mutex_lock(&gid_mu);
	g_snprintf(gid, TWOPC_GID_MAX, "%s%" G_GUINT64_FORMAT, gid_instance, ++gid_counter);
	g_hash_table_add(gid_busy, g_strdup(gid));
	g_mutex_unlock(&gid_mu);
}

gboolean
twopc_gid_claim(const char *gid)
{
	gboolean ok;

	g_mutex_lock(&gid_mu);
	ok = !g_hash_table_contains(gid_busy, gid);
	if (ok)
		g_hash_table_add(gid_busy, g_strdup(gid));
	g_mutex_unlock(&gid_mu);
	return ok;
}

void
twopc_gid_release(const char *gid)
{
	g_mutex_lock(&gid_mu);
	g_hash_table_remove(gid_busy, gid);
	g_mutex_unlock(&gid_mu);
}

gboolean
twopc_gid_safe(const char *gid)
{
	const char *p;

	if (*gid == '\0' || strlen(gid) >= TWOPC_GID_MAX)
		return FALSE;
	for (p = gid; *p; p++)
		if (!g_ascii_isalnum(*p) && strchr(":._-", *p) == NULL)
			return FALSE;
	return TRUE;
}
