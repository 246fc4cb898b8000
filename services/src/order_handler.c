/*
 * order_handler.c
 *		OrderService: createOrder, getOrdersForCustomer and getCustomers on
 *		the service's own database.
 *
 *   createOrder(order)              INSERT INTO orders, only if the customer
 *                                   exists in the local customer replica;
 *                                   waits up to --customer-wait-ms (2000)
 *                                   for it to be replicated
 *   getOrdersForCustomer(id string) local orders joined with the local
 *                                   customer replica, by order id
 *   getCustomers()                  the local customer replica, by id
 *
 * There is deliberately no foreign key orders.customer_id -> customer: the
 * customer table here is a replica that may lag behind CustomerService (and
 * evrep applies changes with session_replication_role = replica, which
 * skips FK triggers anyway).  The existence check is done by the INSERT
 * itself (INSERT ... SELECT ... WHERE EXISTS), so the fast path is a single
 * statement; see services/README.md.
 *
 * The insert is a class method, so that a subclass can store the row in
 * another way and still share the validation, the wait and the reads.
 */
#include "order_handler.h"

#include <string.h>

#include "svc_check.h"
#include "svc_customer.h"
#include "svc_error.h"
#include "svc_shutdown.h"

const char order_insert_sql[] = "INSERT INTO orders"
								"  (id, order_amount, status, customer_id)"
								" SELECT $1::integer, $2::integer, $3::text,"
								"        $4::integer"
								"  WHERE EXISTS (SELECT 1 FROM customer"
								"                 WHERE id = $4::integer)";

G_DEFINE_TYPE(OrderHandler, order_handler, EVREP_TYPE_ORDER_SERVICE_HANDLER)

#define ORDER_HANDLER(obj) ((OrderHandler *) (obj))
#define ORDER_HANDLER_GET_CLASS(obj) ((OrderHandlerClass *) G_OBJECT_GET_CLASS(obj))

/* poll interval while waiting for a customer to be replicated */
#define CUSTOMER_POLL_MS 50

static gboolean
order_get_customers(EvrepOrderServiceIf *iface, GPtrArray **_return,
					EvrepOperationFailedException **ex, GError **error)
{
	(void) error;
	return svc_list_customers(ORDER_HANDLER(iface)->db, *_return, ex);
}

static gboolean
order_create_order(EvrepOrderServiceIf *iface, const EvrepOrders *order,
				   EvrepOperationFailedException **ex, GError **error)
{
	OrderHandler *h = ORDER_HANDLER(iface);
	char id[16], amount[16], cust[16];
	const char *params[4];
	gint32 customer_id;
	gint64 deadline;

	(void) error;
	if (order == NULL)
		return svc_fail(ex, "createOrder: order is required");
	if (order->customer == NULL)
		return svc_fail(ex, "order.customer is required");
	if (order->orderAmount < 0)
		return svc_fail(ex, "orderAmount must not be negative (got %d)", order->orderAmount);
	if (!svc_check_text(ex, "status", order->status))
		return FALSE;

	customer_id = order->customer->id;
	g_snprintf(id, sizeof id, "%d", order->id);
	g_snprintf(amount, sizeof amount, "%d", order->orderAmount);
	g_snprintf(cust, sizeof cust, "%d", customer_id);
	params[0] = id;
	params[1] = amount;
	params[2] = order->status;
	params[3] = cust;

	deadline = g_get_monotonic_time() + (gint64) h->customer_wait_ms * 1000;
	for (;;)
	{
		gboolean applied = FALSE;
		gint64 left;

		if (!ORDER_HANDLER_GET_CLASS(h)->insert(h, params, &applied, ex))
			return FALSE;
		if (applied)
			return TRUE;

		/* the customer is not (yet) in the local replica */
		left = deadline - g_get_monotonic_time();
		if (left <= 0 || !svc_running())
			return svc_fail(ex, "customer %d not found (not yet replicated?)", customer_id);
		g_usleep(MIN(left, CUSTOMER_POLL_MS * 1000));
	}
}

static gboolean
order_insert(OrderHandler *self, const char *const *params, gboolean *applied,
			 EvrepOperationFailedException **ex)
{
	SvcDbError err;
	PGresult *res;
	gboolean ok;

	res = svc_db_exec(self->db, order_insert_sql, 4, params, FALSE, &err);
	if (res != NULL)
	{
		*applied = strcmp(PQcmdTuples(res), "1") == 0;
		PQclear(res);
		return TRUE;
	}
	if (svc_db_duplicate(&err))
		ok = svc_fail(ex, "order %s already exists", params[0]);
	else
		ok = svc_fail_db(ex, "createOrder", &err);
	svc_db_error_clear(&err);
	return ok;
}

static gboolean
order_get_orders_for_customer(EvrepOrderServiceIf *iface, GPtrArray **_return,
							  const gchar *customerId, EvrepOperationFailedException **ex,
							  GError **error)
{
	OrderHandler *h = ORDER_HANDLER(iface);
	gint64 cid;
	char cidtext[16];
	const char *params[1];
	SvcDbError err;
	PGresult *res;
	int i, n;

	(void) error;
	if (customerId == NULL ||
		!g_ascii_string_to_signed(customerId, 10, G_MININT32, G_MAXINT32, &cid, NULL))
	{
		const char *s = customerId ? customerId : "";

		if (strlen(s) > 40)
			return svc_fail(ex, "customerId '%.40s...' is not a valid integer", s);
		return svc_fail(ex, "customerId '%s' is not a valid integer", s);
	}
	g_snprintf(cidtext, sizeof cidtext, "%d", (gint32) cid);
	params[0] = cidtext;

	/*
	 * LEFT JOIN: an order whose customer row is missing from the replica is
	 * still returned, with an empty customer name and credit limit 0.
	 */
	res = svc_db_exec(h->db,
					  "SELECT o.id, o.order_amount, o.status, o.customer_id,"
					  "       coalesce(c.customer_name, ''),"
					  "       coalesce(c.credit_limit, 0)"
					  "  FROM orders o"
					  "  LEFT JOIN customer c ON c.id = o.customer_id"
					  " WHERE o.customer_id = $1::integer"
					  " ORDER BY o.id",
					  1, params, TRUE, &err);
	if (res == NULL)
	{
		gboolean r = svc_fail_db(ex, "getOrdersForCustomer", &err);

		svc_db_error_clear(&err);
		return r;
	}
	n = PQntuples(res);
	for (i = 0; i < n; i++)
	{
		EvrepCustomer *c = svc_customer_new(svc_db_int_value(res, i, 3), PQgetvalue(res, i, 4),
											svc_db_int_value(res, i, 5));
		EvrepOrders *o = g_object_new(EVREP_TYPE_ORDERS, "id", svc_db_int_value(res, i, 0),
									  "orderAmount", svc_db_int_value(res, i, 1), "status",
									  PQgetvalue(res, i, 2), "customer", c, NULL);

		g_object_unref(c);
		g_ptr_array_add(*_return, o);
	}
	PQclear(res);
	return TRUE;
}

static void
order_handler_class_init(OrderHandlerClass *klass)
{
	EvrepOrderServiceHandlerClass *hc = EVREP_ORDER_SERVICE_HANDLER_CLASS(klass);

	hc->get_orders_for_customer = order_get_orders_for_customer;
	hc->create_order = order_create_order;
	hc->get_customers = order_get_customers;
	klass->insert = order_insert;
}

static void
order_handler_init(OrderHandler *self)
{
	self->db = NULL;
	self->customer_wait_ms = 0;
}

ThriftProcessor *
order_processor_new(GType type, SvcDb *db, int customer_wait_ms)
{
	OrderHandler *h = g_object_new(type, NULL);
	ThriftProcessor *p;

	h->db = db;
	h->customer_wait_ms = customer_wait_ms;
	p = g_object_new(EVREP_TYPE_ORDER_SERVICE_PROCESSOR, "handler", h, NULL);
	g_object_unref(h); /* the processor holds a reference */
	return p;
}
