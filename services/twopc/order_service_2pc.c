/*
 * order_service_2pc.c
 *		main() of order_service_2pc: OrderService that writes every order to
 *		its own database and to the customer database's replica in one
 *		two-phase commit, the baseline evrep is measured against.
 *
 * The reads, the validation and the wait for a customer are OrderService's
 * own; only the insert is replaced.
 */
#include "order_handler.h"
#include "svc_db.h"
#include "svc_server.h"
#include "twopc_service.h"

/* the peer's orders table is a replica: no existence check there */
static const char peer_insert_sql[] = "INSERT INTO orders (id, order_amount, status, customer_id)"
									  " VALUES ($1::integer, $2::integer, $3::text, $4::integer)";

typedef struct
{
	OrderHandler parent;
	SvcDb peer; /* the customer database */
} OrderTwopcHandler;

typedef struct
{
	OrderHandlerClass parent;
} OrderTwopcHandlerClass;

static const TwopcInsert order_twopc = {
	.local_sql = order_insert_sql,
	.peer_sql = peer_insert_sql,
	.nparams = 4,
	.call = "createOrder",
	.entity = "order",
};

static gboolean
order_twopc_insert(OrderHandler *h, const char *const *params, gboolean *applied,
				   EvrepOperationFailedException **ex)
{
	return twopc_insert(&order_twopc, h->db, &((OrderTwopcHandler *) h)->peer, params, applied, ex);
}

TWOPC_DEFINE_HANDLER(OrderTwopcHandler, order_twopc_handler, ORDER_TYPE_HANDLER, OrderHandlerClass,
					 order_twopc_insert)

static ThriftProcessor *
make_processor(SvcDb *db, const SvcSettings *settings)
{
	return order_processor_new(order_twopc_handler_get_type(), db, settings->customer_wait_ms);
}

int
main(int argc, char **argv)
{
	static const SvcConfig cfg = {
		.prog = "order_service_2pc",
		.service_name = ORDER_SERVICE_NAME,
		.default_port = ORDER_SERVICE_PORT,
		.default_db = ORDER_SERVICE_DB,
		.make_processor = make_processor,
		.summary = twopc_summary,
		.options = twopc_options,
		.setup = twopc_setup,
		.start = twopc_start,
		.stop = twopc_stop,
	};

	return svc_main(argc, argv, &cfg);
}
