/*
 * svc_check.h
 *		Validation of request values.
 */
#ifndef EVREP_SVC_CHECK_H
#define EVREP_SVC_CHECK_H

#include <glib.h>

#include "evrep_evrep_types.h"

/* Longest accepted customerName / status, in characters. */
#define SVC_MAX_TEXT_CHARS 200

/*
 * customerName / status: non-empty, not only blanks, valid UTF-8, at most
 * SVC_MAX_TEXT_CHARS characters.  On failure sets *ex and returns FALSE.
 */
gboolean svc_check_text(EvrepOperationFailedException **ex, const char *field, const char *value);

#endif /* EVREP_SVC_CHECK_H */
