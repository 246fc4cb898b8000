/*
 * svc_server.h
 *		The shared runtime of the services: options, listening socket, one
 *		thread per connection, clean shutdown.
 *
 * A service is a Thrift c_glib processor plus a handler that talks to one
 * PostgreSQL database over libpq.  svc_main() owns everything around it.
 */
#ifndef EVREP_SVC_SERVER_H
#define EVREP_SVC_SERVER_H

#include <glib.h>
#include <thrift/c_glib/processor/thrift_processor.h>

#include "svc_db.h"

/* What every service is configured with, once the options are parsed. */
typedef struct SvcSettings
{
	const char *prog;
	const char *service_name;
	const char *db; /* conninfo of the service's database */
	int statement_timeout_ms;
	int customer_wait_ms; /* OrderService.createOrder */
} SvcSettings;

typedef struct SvcConfig
{
	const char *prog;		  /* "customer_service" (logs, --help) */
	const char *service_name; /* "CustomerService" */
	int default_port;
	const char *default_db; /* conninfo used when --db is not given */

	/*
	 * A processor whose handler uses db, the connection thread's own
	 * database connection, for every request.  Returns a new reference.
	 */
	ThriftProcessor *(*make_processor)(SvcDb *db, const SvcSettings *settings);

	/*
	 * Optional, for a binary that needs more than its own database: a line
	 * for --help, more options (NULL-terminated), and calls before
	 * listening (FALSE: a usage error, already reported), once listening,
	 * and after the last connection has ended.
	 */
	const char *summary;
	const GOptionEntry *options;
	gboolean (*setup)(const SvcSettings *settings);
	void (*start)(void);
	void (*stop)(void);
} SvcConfig;

/* Runs the service until SIGTERM/SIGINT; returns the process exit code. */
int svc_main(int argc, char **argv, const SvcConfig *cfg);

#endif /* EVREP_SVC_SERVER_H */
