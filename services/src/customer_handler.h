/*
 * customer_handler.h
 *		The CustomerService handler (owns table customer).
 */
#ifndef EVREP_CUSTOMER_HANDLER_H
#define EVREP_CUSTOMER_HANDLER_H

#include "evrep_customer_service.h"
#include "svc_db.h"

#define CUSTOMER_SERVICE_NAME "CustomerService"
#define CUSTOMER_SERVICE_PORT 9091
#define CUSTOMER_SERVICE_DB "dbname=customer_db"

/* The statement that stores a customer: $1 id, $2 name, $3 credit limit. */
extern const char customer_insert_sql[];

typedef struct CustomerHandler
{
	EvrepCustomerServiceHandler parent;
	SvcDb *db; /* the connection thread's own */
} CustomerHandler;

typedef struct CustomerHandlerClass
{
	EvrepCustomerServiceHandlerClass parent;

	/*
	 * Store a validated customer; params as for customer_insert_sql.
	 * FALSE with *ex set on failure.  The default runs customer_insert_sql
	 * on db.
	 */
	gboolean (*insert)(CustomerHandler *self, const char *const *params,
					   EvrepOperationFailedException **ex);
} CustomerHandlerClass;

GType customer_handler_get_type(void);

#define CUSTOMER_TYPE_HANDLER (customer_handler_get_type())

/*
 * A processor for a new handler of type (CUSTOMER_TYPE_HANDLER or a
 * subclass) that uses db.  Returns a new reference.
 */
ThriftProcessor *customer_processor_new(GType type, SvcDb *db);

#endif /* EVREP_CUSTOMER_HANDLER_H */
