/*
 * client_visibility.h
 *		How long until the rows common_client load created are visible on
 *		the other side.
 */
#ifndef EVREP_CLIENT_VISIBILITY_H
#define EVREP_CLIENT_VISIBILITY_H

#include <glib.h>
#include <libpq-fe.h>

#include "client_rpc.h"

/*
 * Both waits return the seconds since `since` (monotonic µs) until
 * `expected` rows were visible, or -1 with *msg set after timeout_s.
 * *visible is updated atomically while they poll (for a progress line).
 */

/*
 * Customers first..first+n-1 whose created[] is TRUE, as listed by
 * OrderService.getCustomers (orders: a connection to OrderService).
 */
double visibility_wait_customers(Rpc *orders, gint32 first, int n, const gboolean *created,
								 int expected, gint64 since, int timeout_s, gint *visible,
								 char **msg);

/*
 * Rows with ids first..last in `table` of the database at conninfo; opt
 * is the option that gave conninfo and `what` names the rows, both for
 * messages.  *pgp is a connection from visibility_connect, (re)opened here
 * when missing or broken (the database may be down for a while), and
 * handed back for PQfinish.
 */
double visibility_wait_rows(PGconn **pgp, const char *conninfo, const char *opt, const char *table,
							const char *what, gint32 first, gint32 last, int expected, gint64 since,
							int timeout_s, gint *visible, char **msg);

/*
 * A connection for visibility_wait_rows, made before the phase to be
 * timed; a failure is not reported here (the wait retries).
 */
PGconn *visibility_connect(const char *conninfo, const char *table);

#endif /* EVREP_CLIENT_VISIBILITY_H */
