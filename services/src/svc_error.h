/*
 * svc_error.h
 *		OperationFailedException for failed requests.
 */
#ifndef EVREP_SVC_ERROR_H
#define EVREP_SVC_ERROR_H

#include <glib.h>

#include "evrep_evrep_types.h"
#include "svc_db.h"

/*
 * Set *ex to a new OperationFailedException with the formatted message,
 * log it, and return FALSE (the handler's return value).
 */
gboolean svc_fail(EvrepOperationFailedException **ex, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/*
 * Map an error of the service's database to an exception; what is the
 * call, e.g. "createCustomer".
 */
gboolean svc_fail_db(EvrepOperationFailedException **ex, const char *what, const SvcDbError *err);

/* The same for another database, named so in the message. */
gboolean svc_fail_db_in(EvrepOperationFailedException **ex, const char *what, const char *database,
						const SvcDbError *err);

#endif /* EVREP_SVC_ERROR_H */
