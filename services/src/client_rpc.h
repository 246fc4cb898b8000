/*
 * client_rpc.h
 *		common_client's Thrift connections and calls, and its exit codes.
 */
#ifndef EVREP_CLIENT_RPC_H
#define EVREP_CLIENT_RPC_H

#include <glib-object.h>
#include <thrift/c_glib/protocol/thrift_protocol.h>
#include <thrift/c_glib/transport/thrift_socket.h>
#include <thrift/c_glib/transport/thrift_transport.h>

enum
{
	EXIT_OK = 0,
	EXIT_EXCEPTION = 1, /* OperationFailedException, failed load */
	EXIT_USAGE = 2,
	EXIT_TRANSPORT = 3 /* connection or transport error */
};

/* Where the services are. */
typedef struct RpcTarget
{
	const char *host;
	int customer_port;
	int order_port;
	int timeout_s; /* socket send/receive timeout; 0: none */
} RpcTarget;

typedef struct Rpc
{
	ThriftSocket *sock;
	ThriftTransport *transport;
	ThriftProtocol *protocol;
	GObject *client;
	gboolean order; /* OrderService (else CustomerService) */
} Rpc;

/* Connect to OrderService (order) or CustomerService; FALSE with *msg set. */
gboolean rpc_open(Rpc *r, const RpcTarget *target, gboolean order, char **msg);
void rpc_close(Rpc *r);

/*
 * The calls return an exit code: EXIT_OK, or EXIT_EXCEPTION /
 * EXIT_TRANSPORT with *msg set.  *out is always set and must be unref'd.
 */
int rpc_create_customer(Rpc *r, gint32 id, const char *name, gint32 credit, char **msg);
/* CustomerService.getCustomers or, on an OrderService Rpc, its replica's */
int rpc_get_customers(Rpc *r, GPtrArray **out, char **msg);
int rpc_create_order(Rpc *r, gint32 id, gint32 amount, const char *status, gint32 customer_id,
					 char **msg);
int rpc_get_orders(Rpc *r, const char *customer_id, GPtrArray **out, char **msg);

/* Highest id in a list of EvrepCustomer, 0 for none. */
gint32 rpc_max_customer_id(GPtrArray *customers);

/* Highest order id visible through OrderService (orders), 0 for none. */
int rpc_max_order_id(Rpc *orders, gint32 *out, char **msg);

/* Print msg as an error, free it, return rc. */
int client_error(int rc, char *msg);

#endif /* EVREP_CLIENT_RPC_H */
