/*
 * svc_error.c
 *		Failed requests: an exception for the client, a line in the log.
 *
 * Every failure is logged, because the client may not show the message to
 * anyone and the log is where an operator looks first.
 */
#include "svc_error.h"

#include <stdarg.h>
#include <string.h>

#include "svc_log.h"

/* Takes over msg. */
static gboolean
set_exception(EvrepOperationFailedException **ex, char *msg)
{
	svc_log("request failed: %s", msg);
	if (ex != NULL)
	{
		if (*ex != NULL)
			g_object_unref(*ex);
		*ex = g_object_new(EVREP_TYPE_OPERATION_FAILED_EXCEPTION, "message", msg, NULL);
	}
	g_free(msg);
	return FALSE;
}

gboolean
svc_fail(EvrepOperationFailedException **ex, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	return set_exception(ex, msg);
}

gboolean
svc_fail_db(EvrepOperationFailedException **ex, const char *what, const SvcDbError *err)
{
	return svc_fail_db_in(ex, what, "database", err);
}

gboolean
svc_fail_db_in(EvrepOperationFailedException **ex, const char *what, const char *database,
			   const SvcDbError *err)
{
	const char *m = err->message ? err->message : "unknown error";

	if (err->unavailable)
		return set_exception(ex,
							 g_strdup_printf("%s failed: %s unavailable: %s", what, database, m));
	if (strcmp(err->sqlstate, "57014") == 0)
		return set_exception(ex,
							 g_strdup_printf("%s failed: %s statement timeout", what, database));
	return set_exception(
		ex, g_strdup_printf("%s failed: %s error %s: %s", what, database, err->sqlstate, m));
}
