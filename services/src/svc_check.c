/*
 * svc_check.c
 *		Validation of request values, before anything reaches the database.
 *
 * The tables take any text: these rules are the services' own, checked
 * before the database is asked, so that a client hears which of its fields
 * is wrong.
 */
#include "svc_check.h"

#include "svc_error.h"

gboolean
svc_check_text(EvrepOperationFailedException **ex, const char *field, const char *value)
{
	const char *p;
	glong n;
	gboolean blank = TRUE;

	if (value == NULL || *value == '\0')
		return svc_fail(ex, "%s must not be empty", field);
	if (!g_utf8_validate(value, -1, NULL))
		return svc_fail(ex, "%s is not valid UTF-8", field);
	for (p = value; *p; p = g_utf8_next_char(p))
		if (!g_unichar_isspace(g_utf8_get_char(p)))
		{
			blank = FALSE;
			break;
		}
	if (blank)
		return svc_fail(ex, "%s must not be empty (only whitespace)", field);
	n = g_utf8_strlen(value, -1);
	if (n > SVC_MAX_TEXT_CHARS)
		return svc_fail(ex, "%s is too long (%ld characters, at most %d)", field, n,
						SVC_MAX_TEXT_CHARS);
	return TRUE;
}
