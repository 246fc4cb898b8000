/*
 * client_rpc.c
 *		common_client's Thrift connections and calls.
 *
 * Binary protocol over an unframed buffered transport, as the services and
 * the original prototype's Java clients speak it.
 */
#include "client_rpc.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <thrift/c_glib/protocol/thrift_binary_protocol.h>
#include <thrift/c_glib/transport/thrift_buffered_transport.h>

#include "evrep_customer_service.h"
#include "evrep_order_service.h"

static const char *
svc_name(gboolean order)
{
	return order ? "OrderService" : "CustomerService";
}

void
rpc_close(Rpc *r)
{
	if (r->transport && thrift_transport_is_open(r->transport))
		thrift_transport_close(r->transport, NULL);
	if (r->client)
		g_object_unref(r->client);
	if (r->protocol)
		g_object_unref(r->protocol);
	if (r->transport)
		g_object_unref(r->transport);
	if (r->sock)
		g_object_unref(r->sock);
	memset(r, 0, sizeof *r);
}

gboolean
rpc_open(Rpc *r, const RpcTarget *target, gboolean order, char **msg)
{
	int port = order ? target->order_port : target->customer_port;
	GError *error = NULL;
	struct timeval tv = {target->timeout_s, 0};
	int one = 1;

	memset(r, 0, sizeof *r);
	r->order = order;
	r->sock =
		g_object_new(THRIFT_TYPE_SOCKET, "hostname", target->host, "port", (guint) port, NULL);
	r->transport = g_object_new(THRIFT_TYPE_BUFFERED_TRANSPORT, "transport", r->sock, "r_buf_size",
								4096, "w_buf_size", 4096, NULL);
	r->protocol = g_object_new(THRIFT_TYPE_BINARY_PROTOCOL, "transport", r->transport, NULL);
	if (!thrift_transport_open(r->transport, &error))
	{
		*msg = g_strdup_printf("cannot connect to %s at %s:%d: %s", svc_name(order), target->host,
							   port, error ? error->message : "unknown error");
		g_clear_error(&error);
		rpc_close(r);
		return FALSE;
	}
	/* one small request at a time: Nagle would only add latency */
	setsockopt(r->sock->sd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (target->timeout_s > 0)
	{
		setsockopt(r->sock->sd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		setsockopt(r->sock->sd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	}
	r->client =
		g_object_new(order ? EVREP_TYPE_ORDER_SERVICE_CLIENT : EVREP_TYPE_CUSTOMER_SERVICE_CLIENT,
					 "input_protocol", r->protocol, "output_protocol", r->protocol, NULL);
	return TRUE;
}

/* Turn the outcome of a generated client call into an exit code. */
static int
call_outcome(const Rpc *r, const char *method, gboolean ok, EvrepOperationFailedException *ex,
			 GError *error, char **msg)
{
	int rc = EXIT_OK;

	if (!ok)
	{
		if (ex != NULL)
		{
			*msg = g_strdup_printf("%s.%s: OperationFailedException: %s", svc_name(r->order),
								   method, ex->message ? ex->message : "(no message)");
			rc = EXIT_EXCEPTION;
		}
		else
		{
			*msg = g_strdup_printf("%s.%s: transport error: %s", svc_name(r->order), method,
								   error ? error->message : "unknown error");
			rc = EXIT_TRANSPORT;
		}
	}
	if (ex != NULL)
		g_object_unref(ex);
	g_clear_error(&error);
	return rc;
}

int
rpc_create_customer(Rpc *r, gint32 id, const char *name, gint32 credit, char **msg)
{
	EvrepOperationFailedException *ex = NULL;
	GError *error = NULL;
	EvrepCustomer *c = g_object_new(EVREP_TYPE_CUSTOMER, "id", id, "customerName", name,
									"creditLimit", credit, NULL);
	gboolean ok = evrep_customer_service_client_create_customer(
		EVREP_CUSTOMER_SERVICE_IF(r->client), c, &ex, &error);

	g_object_unref(c);
	return call_outcome(r, "createCustomer", ok, ex, error, msg);
}

int
rpc_get_customers(Rpc *r, GPtrArray **out, char **msg)
{
	EvrepOperationFailedException *ex = NULL;
	GError *error = NULL;
	gboolean ok;

	*out = g_ptr_array_new_with_free_func(g_object_unref);
	if (r->order)
		ok = evrep_order_service_client_get_customers(EVREP_ORDER_SERVICE_IF(r->client), out, &ex,
													  &error);
	else
		ok = evrep_customer_service_client_get_customers(EVREP_CUSTOMER_SERVICE_IF(r->client), out,
														 &ex, &error);
	return call_outcome(r, "getCustomers", ok, ex, error, msg);
}

int
rpc_create_order(Rpc *r, gint32 id, gint32 amount, const char *status, gint32 customer_id,
				 char **msg)
{
	EvrepOperationFailedException *ex = NULL;
	GError *error = NULL;

	/* the service uses only the customer's id: its replica is the truth */
	EvrepCustomer *c = g_object_new(EVREP_TYPE_CUSTOMER, "id", customer_id, "customerName", "",
									"creditLimit", 0, NULL);
	EvrepOrders *o = g_object_new(EVREP_TYPE_ORDERS, "id", id, "orderAmount", amount, "status",
								  status, "customer", c, NULL);
	gboolean ok =
		evrep_order_service_client_create_order(EVREP_ORDER_SERVICE_IF(r->client), o, &ex, &error);

	g_object_unref(c);
	g_object_unref(o);
	return call_outcome(r, "createOrder", ok, ex, error, msg);
}

int
rpc_get_orders(Rpc *r, const char *customer_id, GPtrArray **out, char **msg)
{
	EvrepOperationFailedException *ex = NULL;
	GError *error = NULL;
	gboolean ok;

	*out = g_ptr_array_new_with_free_func(g_object_unref);
	ok = evrep_order_service_client_get_orders_for_customer(EVREP_ORDER_SERVICE_IF(r->client), out,
															customer_id, &ex, &error);
	return call_outcome(r, "getOrdersForCustomer", ok, ex, error, msg);
}

gint32
rpc_max_customer_id(GPtrArray *customers)
{
	gint32 m = 0;
	guint i;

	for (i = 0; i < customers->len; i++)
	{
		EvrepCustomer *c = g_ptr_array_index(customers, i);

		if (c->id > m)
			m = c->id;
	}
	return m;
}

/*
 * The Thrift API has no "list all orders", but every order's customer is
 * in OrderService's replica (createOrder checks it): ask for the orders of
 * each of them.
 */
int
rpc_max_order_id(Rpc *orders, gint32 *out, char **msg)
{
	GPtrArray *customers = NULL, *list = NULL;
	gint32 m = 0;
	guint i, j;
	int rc;

	rc = rpc_get_customers(orders, &customers, msg);
	for (i = 0; rc == EXIT_OK && i < customers->len; i++)
	{
		char idtext[16];

		g_snprintf(idtext, sizeof idtext, "%d",
				   ((EvrepCustomer *) g_ptr_array_index(customers, i))->id);
		rc = rpc_get_orders(orders, idtext, &list, msg);
		for (j = 0; rc == EXIT_OK && j < list->len; j++)
		{
			EvrepOrders *o = g_ptr_array_index(list, j);

			if (o->id > m)
				m = o->id;
		}
		g_ptr_array_unref(list);
	}
	if (customers)
		g_ptr_array_unref(customers);
	*out = m;
	return rc;
}

int
client_error(int rc, char *msg)
{
	fprintf(stderr, "common_client: error: %s\n", msg);
	g_free(msg);
	return rc;
}
