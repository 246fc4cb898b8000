/*
 * order_service.c
 *		main() of order_service: OrderService on its own database, with the
 *		customer replica that evrep keeps.
 *
 * Default port 9090, default database "dbname=order_db".
 */
#include "order_handler.h"
#include "svc_server.h"

static ThriftProcessor *
make_processor(SvcDb *db, const SvcSettings *settings)
{
	return order_processor_new(ORDER_TYPE_HANDLER, db, settings->customer_wait_ms);
}

int
main(int argc, char **argv)
{
	static const SvcConfig cfg = {
		.prog = "order_service",
		.service_name = ORDER_SERVICE_NAME,
		.default_port = ORDER_SERVICE_PORT,
		.default_db = ORDER_SERVICE_DB,
		.make_processor = make_processor,
	};

	return svc_main(argc, argv, &cfg);
}
