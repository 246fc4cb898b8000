/*
 * common_client.c
 *		CommonClient: command line client of the evrep demo services
 *		(Thrift binary protocol, unframed buffered transport).
 *
 * Usage: common_client [--host H] [--customer-port P] [--order-port P]
 *                      COMMAND [options]
 *
 *   customer                 create one sample customer, list customers
 *   order                    create one sample order, list that customer's
 *   create-customer --id N --name S --credit N
 *   list-customers [--order-service]
 *   create-order --id N --amount N --status S --customer N
 *   list-orders --customer N
 *   load --customers N --orders M --concurrency C [--peer-db CONNINFO]
 *        [--order-db CONNINFO] [--rate R] [--request-log FILE]
 *
 * Exit status: 0 success, 1 OperationFailedException (or load errors /
 * rows not visible in time), 2 usage error, 3 connection/transport error.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <glib-object.h>

#include "client_load.h"
#include "client_rpc.h"
#include "evrep_evrep_types.h"

#define UNSET G_MININT

/* ---- options ------------------------------------------------------------ */

static char *o_host = NULL;
static int o_customer_port = 9091;
static int o_order_port = 9090;
static int o_timeout_s = 30;
static int o_id = UNSET, o_credit = UNSET, o_amount = UNSET;
static char *o_name = NULL, *o_status = NULL, *o_customer = NULL;
static gboolean o_order_service = FALSE;
static int o_customers = UNSET, o_orders = UNSET, o_concurrency = 1;
static int o_id_base = LOAD_ID_AUTO, o_order_id_base = LOAD_ID_AUTO;
static int o_visibility_timeout_s = 30;
static char *o_peer_db = NULL;
static char *o_order_db = NULL;
static double o_rate = 0;
static char *o_request_log = NULL;
static gboolean o_warmup = FALSE;
static int o_repeat = 1, o_interval_ms = 1000;

static RpcTarget target;

/*
 * String options are G_OPTION_ARG_FILENAME: passed through as bytes, with no
 * conversion from the locale's charset (which fails for UTF-8 names under
 * LANG=C); the services validate UTF-8.
 */
static GOptionEntry entries[] = {
	{"host", 0, 0, G_OPTION_ARG_FILENAME, &o_host, "service host (default 127.0.0.1)", "HOST"},
	{"customer-port", 0, 0, G_OPTION_ARG_INT, &o_customer_port,
	 "CustomerService port (default 9091)", "PORT"},
	{"order-port", 0, 0, G_OPTION_ARG_INT, &o_order_port, "OrderService port (default 9090)",
	 "PORT"},
	{"timeout", 0, 0, G_OPTION_ARG_INT, &o_timeout_s,
	 "socket send/receive timeout in seconds (default 30)", "S"},
	{"id", 0, 0, G_OPTION_ARG_INT, &o_id, "customer or order id", "N"},
	{"name", 0, 0, G_OPTION_ARG_FILENAME, &o_name, "customer name", "S"},
	{"credit", 0, 0, G_OPTION_ARG_INT, &o_credit, "credit limit", "N"},
	{"amount", 0, 0, G_OPTION_ARG_INT, &o_amount, "order amount", "N"},
	{"status", 0, 0, G_OPTION_ARG_FILENAME, &o_status, "order status", "S"},
	{"customer", 0, 0, G_OPTION_ARG_FILENAME, &o_customer, "customer id of an order", "N"},
	{"order-service", 0, 0, G_OPTION_ARG_NONE, &o_order_service,
	 "list-customers: ask OrderService (its customer replica)", NULL},
	{"repeat", 0, 0, G_OPTION_ARG_INT, &o_repeat, "list-*: repeat N times over the same connection",
	 "N"},
	{"interval-ms", 0, 0, G_OPTION_ARG_INT, &o_interval_ms,
	 "list-*: pause between repetitions (default 1000)", "MS"},
	{"customers", 0, 0, G_OPTION_ARG_INT, &o_customers, "load: customers to create", "N"},
	{"orders", 0, 0, G_OPTION_ARG_INT, &o_orders, "load: orders to create", "M"},
	{"concurrency", 0, 0, G_OPTION_ARG_INT, &o_concurrency,
	 "load: threads, each with its own connections (default 1)", "C"},
	{"id-base", 0, 0, G_OPTION_ARG_INT, &o_id_base,
	 "load: first customer id (default: highest existing + 1)", "N"},
	{"order-id-base", 0, 0, G_OPTION_ARG_INT, &o_order_id_base,
	 "load: first order id (default: highest existing + 1)", "N"},
	{"peer-db", 0, 0, G_OPTION_ARG_FILENAME, &o_peer_db,
	 "load: conninfo of the customer database, to time the orders replica", "CONNINFO"},
	{"order-db", 0, 0, G_OPTION_ARG_FILENAME, &o_order_db,
	 "load: conninfo of the order database, to time its customer replica "
	 "(instead of polling OrderService.getCustomers)",
	 "CONNINFO"},
	{"rate", 0, 0, G_OPTION_ARG_DOUBLE, &o_rate,
	 "load: start at most R requests per second in all (default: no limit)", "R"},
	{"request-log", 0, 0, G_OPTION_ARG_FILENAME, &o_request_log,
	 "load: write one CSV line per request to FILE "
	 "(call,id,start_unix_ms,latency_ms,ok)",
	 "FILE"},
	{"warmup", 0, 0, G_OPTION_ARG_NONE, &o_warmup,
	 "load: each thread first makes one untimed call of the phase's kind "
	 "with an id just above the range (so that the service has opened its "
	 "database connections)",
	 NULL},
	{"visibility-timeout", 0, 0, G_OPTION_ARG_INT, &o_visibility_timeout_s,
	 "load: how long to wait for rows to appear on the other side "
	 "(default 30; 0: do not wait or measure)",
	 "S"},
	{NULL, 0, 0, 0, NULL, NULL, NULL}};

static const char *usage_text =
	"Commands:\n"
	"  customer                      create a sample customer (--id, --name,\n"
	"                                --credit optional) and list customers\n"
	"  order                         create a sample order (--id, --customer,\n"
	"                                --amount, --status optional) and list the\n"
	"                                customer's orders\n"
	"  create-customer --id N --name S --credit N\n"
	"  list-customers [--order-service]\n"
	"  create-order --id N --amount N --status S --customer N\n"
	"  list-orders --customer N\n"
	"  load --customers N --orders M --concurrency C [--peer-db CONNINFO]\n"
	"                                [--order-db CONNINFO] [--rate R]\n"
	"                                [--request-log FILE] [--warmup]\n"
	"                                [--id-base N] [--order-id-base N]\n"
	"\n"
	"Exit status: 0 ok, 1 OperationFailedException or load failure,\n"
	"2 usage error, 3 connection or transport error.";

static int usage_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static int
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "common_client: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try --help)\n");
	return EXIT_USAGE;
}

static gboolean
parse_int32(const char *s, gint32 *out)
{
	gint64 v;

	if (s == NULL || !g_ascii_string_to_signed(s, 10, G_MININT32, G_MAXINT32, &v, NULL))
		return FALSE;
	*out = (gint32) v;
	return TRUE;
}

/* ---- printing ----------------------------------------------------------- */

/* Same shape as the toString() of Thrift's Java structs. */
static void
print_customer(const EvrepCustomer *c)
{
	printf("Customer(id:%d, customerName:%s, creditLimit:%d)", c->id,
		   c->customerName ? c->customerName : "", c->creditLimit);
}

static void
print_order(const EvrepOrders *o)
{
	printf("Orders(id:%d, orderAmount:%d, status:%s, customer:", o->id, o->orderAmount,
		   o->status ? o->status : "");
	if (o->customer)
		print_customer(o->customer);
	else
		printf("null");
	printf(")");
}

static void
print_list(GPtrArray *a, gboolean orders)
{
	guint i;

	for (i = 0; i < a->len; i++)
	{
		if (orders)
			print_order(g_ptr_array_index(a, i));
		else
			print_customer(g_ptr_array_index(a, i));
		printf("\n");
	}
	fflush(stdout);
}

/*
 * Fetch a list and print it: the orders of customer (passed through
 * unparsed: the service validates customerId) or, if customer is NULL, the
 * customers.  An exit code; *msg says why on failure.
 */
static int
fetch_and_print(Rpc *r, const char *customer, char **msg)
{
	GPtrArray *list = NULL;
	int rc;

	if (customer != NULL)
		rc = rpc_get_orders(r, customer, &list, msg);
	else
		rc = rpc_get_customers(r, &list, msg);
	if (rc == EXIT_OK)
		print_list(list, customer != NULL);
	g_ptr_array_unref(list);
	return rc;
}

/* The end of a command: close r; rc as the exit code, with msg if it failed. */
static int
finish(Rpc *r, int rc, char *msg)
{
	rpc_close(r);
	return rc == EXIT_OK ? EXIT_OK : client_error(rc, msg);
}

/* ---- commands ----------------------------------------------------------- */

static int
cmd_create_customer(void)
{
	Rpc r;
	char *msg = NULL;
	int rc;

	if (o_id == UNSET || o_name == NULL || o_credit == UNSET)
		return usage_error("create-customer needs --id, --name and --credit");
	if (!rpc_open(&r, &target, FALSE, &msg))
		return client_error(EXIT_TRANSPORT, msg);
	rc = rpc_create_customer(&r, o_id, o_name, o_credit, &msg);
	rpc_close(&r);
	if (rc != EXIT_OK)
		return client_error(rc, msg);
	printf("created Customer(id:%d, customerName:%s, creditLimit:%d)\n", o_id, o_name, o_credit);
	return EXIT_OK;
}

static int
cmd_create_order(void)
{
	Rpc r;
	char *msg = NULL;
	gint32 cid;
	int rc;

	if (o_id == UNSET || o_amount == UNSET || o_status == NULL || o_customer == NULL)
		return usage_error("create-order needs --id, --amount, --status and "
						   "--customer");
	if (!parse_int32(o_customer, &cid))
		return usage_error("--customer '%s' is not an integer", o_customer);
	if (!rpc_open(&r, &target, TRUE, &msg))
		return client_error(EXIT_TRANSPORT, msg);
	rc = rpc_create_order(&r, o_id, o_amount, o_status, cid, &msg);
	rpc_close(&r);
	if (rc != EXIT_OK)
		return client_error(rc, msg);
	printf("created Orders(id:%d, orderAmount:%d, status:%s, customer:%d)\n", o_id, o_amount,
		   o_status, cid);
	return EXIT_OK;
}

static int
cmd_list(gboolean orders)
{
	gboolean order_service = orders || o_order_service;
	Rpc r;
	char *msg = NULL;
	int i, rc = EXIT_OK;

	if (orders && o_customer == NULL)
		return usage_error("list-orders needs --customer");
	if (o_repeat < 1 || o_interval_ms < 0)
		return usage_error("--repeat must be positive, --interval-ms not "
						   "negative");
	if (!rpc_open(&r, &target, order_service, &msg))
		return client_error(EXIT_TRANSPORT, msg);
	for (i = 0; i < o_repeat && rc == EXIT_OK; i++)
	{
		if (i > 0)
			g_usleep((gulong) o_interval_ms * 1000);
		rc = fetch_and_print(&r, orders ? o_customer : NULL, &msg);
	}
	return finish(&r, rc, msg);
}

/* "customer": the original prototype's demo step for CustomerService */
static int
cmd_sample_customer(void)
{
	Rpc r;
	GPtrArray *list = NULL;
	char *msg = NULL, *name;
	gint32 id, credit;
	int rc;

	if (!rpc_open(&r, &target, FALSE, &msg))
		return client_error(EXIT_TRANSPORT, msg);
	id = o_id;
	if (id == UNSET)
	{
		rc = rpc_get_customers(&r, &list, &msg);
		if (rc == EXIT_OK)
			id = rpc_max_customer_id(list) + 1;
		g_ptr_array_unref(list);
		if (rc != EXIT_OK)
			return finish(&r, rc, msg);
	}
	credit = o_credit == UNSET ? 1000 : o_credit;
	name = o_name ? g_strdup(o_name) : g_strdup_printf("Customer %d", id);
	rc = rpc_create_customer(&r, id, name, credit, &msg);
	if (rc == EXIT_OK)
	{
		printf("created Customer(id:%d, customerName:%s, creditLimit:%d)\n", id, name, credit);
		printf("customers of CustomerService:\n");
		rc = fetch_and_print(&r, NULL, &msg);
	}
	g_free(name);
	return finish(&r, rc, msg);
}

/* "order": the original prototype's demo step for OrderService */
static int
cmd_sample_order(void)
{
	Rpc r;
	GPtrArray *list = NULL;
	char *msg = NULL, idtext[16];
	gint32 id, cid = 0, amount;
	const char *status;
	int rc = EXIT_OK;

	if (o_customer != NULL && !parse_int32(o_customer, &cid))
		return usage_error("--customer '%s' is not an integer", o_customer);
	if (!rpc_open(&r, &target, TRUE, &msg))
		return client_error(EXIT_TRANSPORT, msg);
	if (o_customer == NULL)
	{
		rc = rpc_get_customers(&r, &list, &msg);
		if (rc == EXIT_OK && list->len == 0)
		{
			msg = g_strdup("no customer is visible through OrderService yet "
						   "(create one with 'customer' and let evrep "
						   "replicate it)");
			rc = EXIT_EXCEPTION;
		}
		if (rc == EXIT_OK)
			cid = ((EvrepCustomer *) g_ptr_array_index(list, 0))->id;
		g_ptr_array_unref(list);
	}
	id = o_id;
	if (rc == EXIT_OK && id == UNSET)
	{
		rc = rpc_max_order_id(&r, &id, &msg);
		id++;
	}
	amount = o_amount == UNSET ? 100 : o_amount;
	status = o_status ? o_status : "NEW";
	if (rc == EXIT_OK)
		rc = rpc_create_order(&r, id, amount, status, cid, &msg);
	if (rc == EXIT_OK)
	{
		printf("created Orders(id:%d, orderAmount:%d, status:%s, "
			   "customer:%d)\n",
			   id, amount, status, cid);
		printf("orders of customer %d:\n", cid);
		g_snprintf(idtext, sizeof idtext, "%d", cid);
		rc = fetch_and_print(&r, idtext, &msg);
	}
	return finish(&r, rc, msg);
}

static int
cmd_load(void)
{
	LoadOptions opts;

	if (o_customers == UNSET || o_orders == UNSET)
		return usage_error("load needs --customers and --orders");
	if (o_customers < 0 || o_orders < 0 || o_concurrency < 1 || o_concurrency > 1024 ||
		o_visibility_timeout_s < 0 || o_rate < 0)
		return usage_error("--customers/--orders/--visibility-timeout/--rate "
						   "must not be negative, --concurrency between 1 and "
						   "1024");
	opts.customers = o_customers;
	opts.orders = o_orders;
	opts.concurrency = o_concurrency;
	opts.id_base = o_id_base;
	opts.order_id_base = o_order_id_base;
	opts.visibility_timeout_s = o_visibility_timeout_s;
	opts.peer_db = o_peer_db;
	opts.order_db = o_order_db;
	opts.rate = o_rate;
	opts.request_log = o_request_log;
	opts.warmup = o_warmup;
	return load_run(&target, &opts);
}

/* ---- main --------------------------------------------------------------- */

int
main(int argc, char **argv)
{
	GOptionContext *ctx;
	GError *error = NULL;
	const char *cmd;
	int rc;

	/* a service that closes mid-request must give an error, not kill us */
	signal(SIGPIPE, SIG_IGN);
	ctx = g_option_context_new("COMMAND");
	g_option_context_set_summary(ctx, "CommonClient of the evrep demo "
									  "services (Thrift binary protocol, unframed).");
	g_option_context_set_description(ctx, usage_text);
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &error))
	{
		rc = usage_error("%s", error->message);
		g_clear_error(&error);
		g_option_context_free(ctx);
		return rc;
	}
	g_option_context_free(ctx);
	if (o_host == NULL)
		o_host = g_strdup("127.0.0.1");
	target.host = o_host;
	target.customer_port = o_customer_port;
	target.order_port = o_order_port;
	target.timeout_s = o_timeout_s;
	if (argc != 2)
		return usage_error(argc < 2 ? "missing COMMAND" : "exactly one COMMAND expected");
	cmd = argv[1];

	if (strcmp(cmd, "customer") == 0)
		rc = cmd_sample_customer();
	else if (strcmp(cmd, "order") == 0)
		rc = cmd_sample_order();
	else if (strcmp(cmd, "create-customer") == 0)
		rc = cmd_create_customer();
	else if (strcmp(cmd, "list-customers") == 0)
		rc = cmd_list(FALSE);
	else if (strcmp(cmd, "create-order") == 0)
		rc = cmd_create_order();
	else if (strcmp(cmd, "list-orders") == 0)
		rc = cmd_list(TRUE);
	else if (strcmp(cmd, "load") == 0)
		rc = cmd_load();
	else
		rc = usage_error("unknown command '%s'", cmd);
	return rc;
}
