/*
 * twopc_service.h
 *		What the two-phase commit binaries add to the shared service runtime:
 *		options, start-up and shutdown, the peer connection, error messages.
 */
#ifndef EVREP_TWOPC_SERVICE_H
#define EVREP_TWOPC_SERVICE_H

#include <glib.h>

#include "evrep_evrep_types.h"
#include "svc_db.h"
#include "svc_server.h"
#include "twopc_write.h"

/* For SvcConfig.summary, .options, .setup, .start and .stop. */
extern const char twopc_summary[];
extern const GOptionEntry twopc_options[];
gboolean twopc_setup(const SvcSettings *settings);
void twopc_start(void);
void twopc_stop(void);

/* A connection thread's handle on the peer database (not connected yet). */
void twopc_peer_init(SvcDb *peer);

/* Map a failed twopc_write to an exception; what is e.g. "createCustomer". */
gboolean twopc_fail(EvrepOperationFailedException **ex, const char *what, const TwopcError *err);

#endif /* EVREP_TWOPC_SERVICE_H */
