/*
 * customer_service.c
 *		main() of customer_service: CustomerService on its own database;
 *		evrep replicates the rows.
 *
 * Default port 9091, default database "dbname=customer_db".
 */
#include "customer_handler.h"
#include "svc_server.h"

static ThriftProcessor *
make_processor(SvcDb *db, const SvcSettings *settings)
{
	(void) settings;
	return customer_processor_new(CUSTOMER_TYPE_HANDLER, db);
}

int
main(int argc, char **argv)
{
	static const SvcConfig cfg = {
		.prog = "customer_service",
		.service_name = CUSTOMER_SERVICE_NAME,
		.default_port = CUSTOMER_SERVICE_PORT,
		.default_db = CUSTOMER_SERVICE_DB,
		.make_processor = make_processor,
	};

	return svc_main(argc, argv, &cfg);
}
