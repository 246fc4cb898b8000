/*
 * client_load.h
 *		common_client load: a threaded load generator for the services.
 */
#ifndef EVREP_CLIENT_LOAD_H
#define EVREP_CLIENT_LOAD_H

#include <glib.h>

#include "client_rpc.h"

/* id_base, order_id_base: start above the highest existing id */
#define LOAD_ID_AUTO G_MININT

typedef struct LoadOptions
{
	int customers;			  /* to create, >= 0 */
	int orders;				  /* to create, >= 0 */
	int concurrency;		  /* threads, 1..1024 */
	int id_base;			  /* first customer id, or LOAD_ID_AUTO */
	int order_id_base;		  /* first order id, or LOAD_ID_AUTO */
	int visibility_timeout_s; /* 0: do not wait for the other side */
	const char *peer_db;	  /* conninfo of customer_db, or NULL */
	const char *order_db;	  /* conninfo of order_db, or NULL */
	double rate;			  /* requests/s in all, 0: no limit */
	const char *request_log;  /* CSV file, or NULL */
	gboolean warmup;
} LoadOptions;

/*
 * Create the customers through CustomerService, wait until they are
 * visible to OrderService, create the orders, wait until they are in
 * peer_db; print progress on stderr and a summary on stdout.  Returns an
 * exit code.
 */
int load_run(const RpcTarget *target, const LoadOptions *opts);

#endif /* EVREP_CLIENT_LOAD_H */
