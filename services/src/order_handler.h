/*
 * order_handler.h
 *		The OrderService handler (owns table orders, reads a replica of
 *		customer).
 */
#ifndef EVREP_ORDER_HANDLER_H
#define EVREP_ORDER_HANDLER_H

#include "evrep_order_service.h"
#include "svc_db.h"

#define ORDER_SERVICE_NAME "OrderService"
#define ORDER_SERVICE_PORT 9090
#define ORDER_SERVICE_DB "dbname=order_db"

/*
 * The statement that stores an order if its customer is in the local
 * replica: $1 id, $2 amount, $3 status, $4 customer id.
 */
extern const char order_insert_sql[];

typedef struct OrderHandler
{
	EvrepOrderServiceHandler parent;
	SvcDb *db; /* the connection thread's own */
	int customer_wait_ms;
} OrderHandler;

typedef struct OrderHandlerClass
{
	EvrepOrderServiceHandlerClass parent;

	/*
	 * Store a validated order; params as for order_insert_sql.  *applied:
	 * the customer was found and the order stored.  FALSE with *ex set on
	 * failure.  The default runs order_insert_sql on db.
	 */
	gboolean (*insert)(OrderHandler *self, const char *const *params, gboolean *applied,
					   EvrepOperationFailedException **ex);
} OrderHandlerClass;

GType order_handler_get_type(void);

#define ORDER_TYPE_HANDLER (order_handler_get_type())

/*
 * A processor for a new handler of type (ORDER_TYPE_HANDLER or a subclass)
 * that uses db and waits up to customer_wait_ms for a customer that is not
 * replicated yet.  Returns a new reference.
 */
ThriftProcessor *order_processor_new(GType type, SvcDb *db, int customer_wait_ms);

#endif /* EVREP_ORDER_HANDLER_H */
