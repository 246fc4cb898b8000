/*
 * customer_service_2pc.c
 *		main() of customer_service_2pc: CustomerService that writes every
 *		customer to its own database and to the order database's replica in
 *		one two-phase commit, the baseline evrep is measured against.
 *
 * The reads and the validation are CustomerService's own; only the insert
 * is replaced.
 */
#include "customer_handler.h"
#include "svc_db.h"
#include "svc_server.h"
#include "twopc_service.h"

typedef struct
{
	CustomerHandler parent;
	SvcDb peer; /* the order database */
} CustomerTwopcHandler;

typedef struct
{
	CustomerHandlerClass parent;
} CustomerTwopcHandlerClass;

/* the replica has the same definition: the same statement on both */
static const TwopcInsert customer_twopc = {
	.local_sql = customer_insert_sql,
	.peer_sql = customer_insert_sql,
	.nparams = 3,
	.call = "createCustomer",
	.entity = "customer",
};

static gboolean
customer_twopc_insert(CustomerHandler *h, const char *const *params,
					  EvrepOperationFailedException **ex)
{
	gboolean applied;

	return twopc_insert(&customer_twopc, h->db, &((CustomerTwopcHandler *) h)->peer, params,
						&applied, ex);
}

TWOPC_DEFINE_HANDLER(CustomerTwopcHandler, customer_twopc_handler, CUSTOMER_TYPE_HANDLER,
					 CustomerHandlerClass, customer_twopc_insert)

static ThriftProcessor *
make_processor(SvcDb *db, const SvcSettings *settings)
{
	(void) settings;
	return customer_processor_new(customer_twopc_handler_get_type(), db);
}

int
main(int argc, char **argv)
{
	static const SvcConfig cfg = {
		.prog = "customer_service_2pc",
		.service_name = CUSTOMER_SERVICE_NAME,
		.default_port = CUSTOMER_SERVICE_PORT,
		.default_db = CUSTOMER_SERVICE_DB,
		.make_processor = make_processor,
		.summary = twopc_summary,
		.options = twopc_options,
		.setup = twopc_setup,
		.start = twopc_start,
		.stop = twopc_stop,
	};

	return svc_main(argc, argv, &cfg);
}
