/*
 * common_client.c - CommonClient: command line client of the evrep demo
 * services (Thrift binary protocol, unframed buffered transport).
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
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib-object.h>
#include <libpq-fe.h>
#include <thrift/c_glib/protocol/thrift_binary_protocol.h>
#include <thrift/c_glib/transport/thrift_buffered_transport.h>
#include <thrift/c_glib/transport/thrift_socket.h>

#include "evrep_customer_service.h"
#include "evrep_order_service.h"

enum
{
  EXIT_OK = 0,
  EXIT_EXCEPTION = 1,
  EXIT_USAGE = 2,
  EXIT_TRANSPORT = 3
};

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
static int o_id_base = UNSET, o_order_id_base = UNSET;
static int o_visibility_timeout_s = 30;
static char *o_peer_db = NULL;
static char *o_order_db = NULL;
static double o_rate = 0;
static char *o_request_log = NULL;
static gboolean o_warmup = FALSE;
static int o_repeat = 1, o_interval_ms = 1000;

/* String options are G_OPTION_ARG_FILENAME: passed through as bytes, with no
 * conversion from the locale's charset (which fails for UTF-8 names under
 * LANG=C); the services validate UTF-8. */
static GOptionEntry entries[] = {
  { "host", 0, 0, G_OPTION_ARG_FILENAME, &o_host,
    "service host (default 127.0.0.1)", "HOST" },
  { "customer-port", 0, 0, G_OPTION_ARG_INT, &o_customer_port,
    "CustomerService port (default 9091)", "PORT" },
  { "order-port", 0, 0, G_OPTION_ARG_INT, &o_order_port,
    "OrderService port (default 9090)", "PORT" },
  { "timeout", 0, 0, G_OPTION_ARG_INT, &o_timeout_s,
    "socket send/receive timeout in seconds (default 30)", "S" },
  { "id", 0, 0, G_OPTION_ARG_INT, &o_id, "customer or order id", "N" },
  { "name", 0, 0, G_OPTION_ARG_FILENAME, &o_name, "customer name", "S" },
  { "credit", 0, 0, G_OPTION_ARG_INT, &o_credit, "credit limit", "N" },
  { "amount", 0, 0, G_OPTION_ARG_INT, &o_amount, "order amount", "N" },
  { "status", 0, 0, G_OPTION_ARG_FILENAME, &o_status, "order status", "S" },
  { "customer", 0, 0, G_OPTION_ARG_FILENAME, &o_customer,
    "customer id of an order", "N" },
  { "order-service", 0, 0, G_OPTION_ARG_NONE, &o_order_service,
    "list-customers: ask OrderService (its customer replica)", NULL },
  { "repeat", 0, 0, G_OPTION_ARG_INT, &o_repeat,
    "list-*: repeat N times over the same connection", "N" },
  { "interval-ms", 0, 0, G_OPTION_ARG_INT, &o_interval_ms,
    "list-*: pause between repetitions (default 1000)", "MS" },
  { "customers", 0, 0, G_OPTION_ARG_INT, &o_customers,
    "load: customers to create", "N" },
  { "orders", 0, 0, G_OPTION_ARG_INT, &o_orders,
    "load: orders to create", "M" },
  { "concurrency", 0, 0, G_OPTION_ARG_INT, &o_concurrency,
    "load: threads, each with its own connections (default 1)", "C" },
  { "id-base", 0, 0, G_OPTION_ARG_INT, &o_id_base,
    "load: first customer id (default: highest existing + 1)", "N" },
  { "order-id-base", 0, 0, G_OPTION_ARG_INT, &o_order_id_base,
    "load: first order id (default: highest existing + 1)", "N" },
  { "peer-db", 0, 0, G_OPTION_ARG_FILENAME, &o_peer_db,
    "load: conninfo of the customer database, to time the orders replica",
    "CONNINFO" },
  { "order-db", 0, 0, G_OPTION_ARG_FILENAME, &o_order_db,
    "load: conninfo of the order database, to time its customer replica "
    "(instead of polling OrderService.getCustomers)", "CONNINFO" },
  { "rate", 0, 0, G_OPTION_ARG_DOUBLE, &o_rate,
    "load: start at most R requests per second in all (default: no limit)",
    "R" },
  { "request-log", 0, 0, G_OPTION_ARG_FILENAME, &o_request_log,
    "load: write one CSV line per request to FILE "
    "(call,id,start_unix_ms,latency_ms,ok)", "FILE" },
  { "warmup", 0, 0, G_OPTION_ARG_NONE, &o_warmup,
    "load: each thread first makes one untimed call of the phase's kind "
    "with an id just above the range (so that the service has opened its "
    "database connections)", NULL },
  { "visibility-timeout", 0, 0, G_OPTION_ARG_INT, &o_visibility_timeout_s,
    "load: how long to wait for rows to appear on the other side "
    "(default 30; 0: do not wait or measure)", "S" },
  { NULL, 0, 0, 0, NULL, NULL, NULL }
};

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

static int
usage_error (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

static int
usage_error (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "common_client: ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, " (try --help)\n");
  return EXIT_USAGE;
}

/* ---- connections -------------------------------------------------------- */

typedef struct
{
  ThriftSocket *sock;
  ThriftTransport *transport;
  ThriftProtocol *protocol;
  GObject *client;
  gboolean order;              /* OrderService (else CustomerService) */
} Rpc;

static const char *
svc_name (gboolean order)
{
  return order ? "OrderService" : "CustomerService";
}

static void
rpc_close (Rpc *r)
{
  if (r->transport && thrift_transport_is_open (r->transport))
    thrift_transport_close (r->transport, NULL);
  if (r->client)
    g_object_unref (r->client);
  if (r->protocol)
    g_object_unref (r->protocol);
  if (r->transport)
    g_object_unref (r->transport);
  if (r->sock)
    g_object_unref (r->sock);
  memset (r, 0, sizeof *r);
}

static gboolean
rpc_open (Rpc *r, gboolean order, char **msg)
{
  int port = order ? o_order_port : o_customer_port;
  GError *error = NULL;
  struct timeval tv = { o_timeout_s, 0 };
  int one = 1;

  memset (r, 0, sizeof *r);
  r->order = order;
  r->sock = g_object_new (THRIFT_TYPE_SOCKET, "hostname", o_host,
                          "port", (guint) port, NULL);
  r->transport = g_object_new (THRIFT_TYPE_BUFFERED_TRANSPORT,
                               "transport", r->sock,
                               "r_buf_size", 4096, "w_buf_size", 4096, NULL);
  r->protocol = g_object_new (THRIFT_TYPE_BINARY_PROTOCOL,
                              "transport", r->transport, NULL);
  if (!thrift_transport_open (r->transport, &error))
    {
      *msg = g_strdup_printf ("cannot connect to %s at %s:%d: %s",
                              svc_name (order), o_host, port,
                              error ? error->message : "unknown error");
      g_clear_error (&error);
      rpc_close (r);
      return FALSE;
    }
  setsockopt (r->sock->sd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (o_timeout_s > 0)
    {
      setsockopt (r->sock->sd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      setsockopt (r->sock->sd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
  r->client = g_object_new (order ? EVREP_TYPE_ORDER_SERVICE_CLIENT
                                  : EVREP_TYPE_CUSTOMER_SERVICE_CLIENT,
                            "input_protocol", r->protocol,
                            "output_protocol", r->protocol, NULL);
  return TRUE;
}

/* Turn the outcome of a generated client call into an exit code. */
static int
call_outcome (const Rpc *r, const char *method, gboolean ok,
              EvrepOperationFailedException *ex, GError *error, char **msg)
{
  int rc = EXIT_OK;

  if (!ok)
    {
      if (ex != NULL)
        {
          *msg = g_strdup_printf ("%s.%s: OperationFailedException: %s",
                                  svc_name (r->order), method,
                                  ex->message ? ex->message : "(no message)");
          rc = EXIT_EXCEPTION;
        }
      else
        {
          *msg = g_strdup_printf ("%s.%s: transport error: %s",
                                  svc_name (r->order), method,
                                  error ? error->message : "unknown error");
          rc = EXIT_TRANSPORT;
        }
    }
  if (ex != NULL)
    g_object_unref (ex);
  g_clear_error (&error);
  return rc;
}

static int
call_create_customer (Rpc *r, gint32 id, const char *name, gint32 credit,
                      char **msg)
{
  EvrepOperationFailedException *ex = NULL;
  GError *error = NULL;
  EvrepCustomer *c = g_object_new (EVREP_TYPE_CUSTOMER, "id", id,
                                   "customerName", name,
                                   "creditLimit", credit, NULL);
  gboolean ok = evrep_customer_service_client_create_customer (
    EVREP_CUSTOMER_SERVICE_IF (r->client), c, &ex, &error);

  g_object_unref (c);
  return call_outcome (r, "createCustomer", ok, ex, error, msg);
}

/* r->order selects CustomerService.getCustomers or OrderService.getCustomers */
static int
call_get_customers (Rpc *r, GPtrArray **out, char **msg)
{
  EvrepOperationFailedException *ex = NULL;
  GError *error = NULL;
  gboolean ok;

  *out = g_ptr_array_new_with_free_func (g_object_unref);
  if (r->order)
    ok = evrep_order_service_client_get_customers (
      EVREP_ORDER_SERVICE_IF (r->client), out, &ex, &error);
  else
    ok = evrep_customer_service_client_get_customers (
      EVREP_CUSTOMER_SERVICE_IF (r->client), out, &ex, &error);
  return call_outcome (r, "getCustomers", ok, ex, error, msg);
}

static int
call_create_order (Rpc *r, gint32 id, gint32 amount, const char *status,
                   gint32 customer_id, char **msg)
{
  EvrepOperationFailedException *ex = NULL;
  GError *error = NULL;
  EvrepCustomer *c = g_object_new (EVREP_TYPE_CUSTOMER, "id", customer_id,
                                   "customerName", "", "creditLimit", 0, NULL);
  EvrepOrders *o = g_object_new (EVREP_TYPE_ORDERS, "id", id,
                                 "orderAmount", amount, "status", status,
                                 "customer", c, NULL);
  gboolean ok = evrep_order_service_client_create_order (
    EVREP_ORDER_SERVICE_IF (r->client), o, &ex, &error);

  g_object_unref (c);
  g_object_unref (o);
  return call_outcome (r, "createOrder", ok, ex, error, msg);
}

static int
call_get_orders (Rpc *r, const char *customer_id, GPtrArray **out, char **msg)
{
  EvrepOperationFailedException *ex = NULL;
  GError *error = NULL;
  gboolean ok;

  *out = g_ptr_array_new_with_free_func (g_object_unref);
  ok = evrep_order_service_client_get_orders_for_customer (
    EVREP_ORDER_SERVICE_IF (r->client), out, customer_id, &ex, &error);
  return call_outcome (r, "getOrdersForCustomer", ok, ex, error, msg);
}

/* ---- printing ----------------------------------------------------------- */

/* Same shape as the toString() of Thrift's Java structs. */
static void
print_customer (const EvrepCustomer *c)
{
  printf ("Customer(id:%d, customerName:%s, creditLimit:%d)", c->id,
          c->customerName ? c->customerName : "", c->creditLimit);
}

static void
print_order (const EvrepOrders *o)
{
  printf ("Orders(id:%d, orderAmount:%d, status:%s, customer:", o->id,
          o->orderAmount, o->status ? o->status : "");
  if (o->customer)
    print_customer (o->customer);
  else
    printf ("null");
  printf (")");
}

static void
print_list (GPtrArray *a, gboolean orders)
{
  guint i;

  for (i = 0; i < a->len; i++)
    {
      if (orders)
        print_order (g_ptr_array_index (a, i));
      else
        print_customer (g_ptr_array_index (a, i));
      printf ("\n");
    }
  fflush (stdout);
}

/* ---- helpers ------------------------------------------------------------ */

static int
fail (int rc, char *msg)
{
  fprintf (stderr, "common_client: error: %s\n", msg);
  g_free (msg);
  return rc;
}

static gboolean
parse_int32 (const char *s, gint32 *out)
{
  gint64 v;

  if (s == NULL
      || !g_ascii_string_to_signed (s, 10, G_MININT32, G_MAXINT32, &v, NULL))
    return FALSE;
  *out = (gint32) v;
  return TRUE;
}

static gint32
max_customer_id (GPtrArray *customers)
{
  gint32 m = 0;
  guint i;

  for (i = 0; i < customers->len; i++)
    {
      EvrepCustomer *c = g_ptr_array_index (customers, i);
      if (c->id > m)
        m = c->id;
    }
  return m;
}

/* Highest order id over every customer visible through OrderService: the
 * Thrift API has no "list all orders", and every order's customer is in
 * OrderService's replica (createOrder checks it). */
static int
max_order_id (Rpc *orders, gint32 *out, char **msg)
{
  GPtrArray *customers = NULL, *list = NULL;
  gint32 m = 0;
  guint i, j;
  int rc;

  rc = call_get_customers (orders, &customers, msg);
  for (i = 0; rc == EXIT_OK && i < customers->len; i++)
    {
      char idtext[16];
      g_snprintf (idtext, sizeof idtext, "%d",
                  ((EvrepCustomer *) g_ptr_array_index (customers, i))->id);
      rc = call_get_orders (orders, idtext, &list, msg);
      for (j = 0; rc == EXIT_OK && j < list->len; j++)
        {
          EvrepOrders *o = g_ptr_array_index (list, j);
          if (o->id > m)
            m = o->id;
        }
      g_ptr_array_unref (list);
    }
  if (customers)
    g_ptr_array_unref (customers);
  *out = m;
  return rc;
}

/* ---- simple commands ---------------------------------------------------- */

static int
cmd_create_customer (void)
{
  Rpc r;
  char *msg = NULL;
  int rc;

  if (o_id == UNSET || o_name == NULL || o_credit == UNSET)
    return usage_error ("create-customer needs --id, --name and --credit");
  if (!rpc_open (&r, FALSE, &msg))
    return fail (EXIT_TRANSPORT, msg);
  rc = call_create_customer (&r, o_id, o_name, o_credit, &msg);
  rpc_close (&r);
  if (rc != EXIT_OK)
    return fail (rc, msg);
  printf ("created Customer(id:%d, customerName:%s, creditLimit:%d)\n",
          o_id, o_name, o_credit);
  return EXIT_OK;
}

static int
cmd_create_order (void)
{
  Rpc r;
  char *msg = NULL;
  gint32 cid;
  int rc;

  if (o_id == UNSET || o_amount == UNSET || o_status == NULL
      || o_customer == NULL)
    return usage_error ("create-order needs --id, --amount, --status and "
                        "--customer");
  if (!parse_int32 (o_customer, &cid))
    return usage_error ("--customer '%s' is not an integer", o_customer);
  if (!rpc_open (&r, TRUE, &msg))
    return fail (EXIT_TRANSPORT, msg);
  rc = call_create_order (&r, o_id, o_amount, o_status, cid, &msg);
  rpc_close (&r);
  if (rc != EXIT_OK)
    return fail (rc, msg);
  printf ("created Orders(id:%d, orderAmount:%d, status:%s, customer:%d)\n",
          o_id, o_amount, o_status, cid);
  return EXIT_OK;
}

static int
cmd_list (gboolean orders)
{
  gboolean order_service = orders || o_order_service;
  Rpc r;
  char *msg = NULL;
  int i, rc = EXIT_OK;

  if (orders && o_customer == NULL)
    return usage_error ("list-orders needs --customer");
  if (o_repeat < 1 || o_interval_ms < 0)
    return usage_error ("--repeat must be positive, --interval-ms not "
                        "negative");
  if (!rpc_open (&r, order_service, &msg))
    return fail (EXIT_TRANSPORT, msg);
  for (i = 0; i < o_repeat && rc == EXIT_OK; i++)
    {
      GPtrArray *list = NULL;

      if (i > 0)
        g_usleep ((gulong) o_interval_ms * 1000);
      if (orders)
        /* passed through unparsed: the service validates customerId */
        rc = call_get_orders (&r, o_customer, &list, &msg);
      else
        rc = call_get_customers (&r, &list, &msg);
      if (rc == EXIT_OK)
        print_list (list, orders);
      g_ptr_array_unref (list);
    }
  rpc_close (&r);
  return rc == EXIT_OK ? EXIT_OK : fail (rc, msg);
}

/* "customer": the original prototype's demo step for CustomerService */
static int
cmd_sample_customer (void)
{
  Rpc r;
  GPtrArray *list = NULL;
  char *msg = NULL, *name;
  gint32 id, credit;
  int rc;

  if (!rpc_open (&r, FALSE, &msg))
    return fail (EXIT_TRANSPORT, msg);
  id = o_id;
  if (id == UNSET)
    {
      rc = call_get_customers (&r, &list, &msg);
      if (rc == EXIT_OK)
        id = max_customer_id (list) + 1;
      g_ptr_array_unref (list);
      if (rc != EXIT_OK)
        {
          rpc_close (&r);
          return fail (rc, msg);
        }
    }
  credit = o_credit == UNSET ? 1000 : o_credit;
  name = o_name ? g_strdup (o_name) : g_strdup_printf ("Customer %d", id);
  rc = call_create_customer (&r, id, name, credit, &msg);
  if (rc == EXIT_OK)
    {
      printf ("created Customer(id:%d, customerName:%s, creditLimit:%d)\n",
              id, name, credit);
      printf ("customers of CustomerService:\n");
      rc = call_get_customers (&r, &list, &msg);
      if (rc == EXIT_OK)
        print_list (list, FALSE);
      g_ptr_array_unref (list);
    }
  g_free (name);
  rpc_close (&r);
  return rc == EXIT_OK ? EXIT_OK : fail (rc, msg);
}

/* "order": the original prototype's demo step for OrderService */
static int
cmd_sample_order (void)
{
  Rpc r;
  GPtrArray *list = NULL;
  char *msg = NULL, idtext[16];
  gint32 id, cid = 0, amount;
  const char *status;
  int rc = EXIT_OK;

  if (o_customer != NULL && !parse_int32 (o_customer, &cid))
    return usage_error ("--customer '%s' is not an integer", o_customer);
  if (!rpc_open (&r, TRUE, &msg))
    return fail (EXIT_TRANSPORT, msg);
  if (o_customer == NULL)
    {
      rc = call_get_customers (&r, &list, &msg);
      if (rc == EXIT_OK && list->len == 0)
        {
          msg = g_strdup ("no customer is visible through OrderService yet "
                          "(create one with 'customer' and let evrep "
                          "replicate it)");
          rc = EXIT_EXCEPTION;
        }
      if (rc == EXIT_OK)
        cid = ((EvrepCustomer *) g_ptr_array_index (list, 0))->id;
      g_ptr_array_unref (list);
    }
  id = o_id;
  if (rc == EXIT_OK && id == UNSET)
    {
      rc = max_order_id (&r, &id, &msg);
      id++;
    }
  amount = o_amount == UNSET ? 100 : o_amount;
  status = o_status ? o_status : "NEW";
  if (rc == EXIT_OK)
    rc = call_create_order (&r, id, amount, status, cid, &msg);
  if (rc == EXIT_OK)
    {
      printf ("created Orders(id:%d, orderAmount:%d, status:%s, "
              "customer:%d)\n", id, amount, status, cid);
      printf ("orders of customer %d:\n", cid);
      g_snprintf (idtext, sizeof idtext, "%d", cid);
      rc = call_get_orders (&r, idtext, &list, &msg);
      if (rc == EXIT_OK)
        print_list (list, TRUE);
      g_ptr_array_unref (list);
    }
  rpc_close (&r);
  return rc == EXIT_OK ? EXIT_OK : fail (rc, msg);
}

/* ---- load --------------------------------------------------------------- */

typedef struct
{
  int index;
  gboolean orders;             /* createOrder phase (else createCustomer) */
  GArray *lat_us;              /* gint64 latency of each successful call  */
  GArray *log;                 /* ReqRec of every call (--request-log)    */
  int ok, failed;
  GThread *thread;
} Worker;

typedef struct
{
  gint32 id;
  gboolean ok;
  gint64 start_real_us;        /* wall clock, to line up with other logs  */
  gint64 lat_us;
} ReqRec;

static struct
{
  int nthreads;
  gint32 cbase, obase;
  int ncust, norders;
  gint32 *order_customer;      /* customer id of order k (k % n)          */
  int n_order_customer;
  gboolean *cust_ok;           /* created successfully, by index          */
  gint64 phase_t0;             /* monotonic start of the phase (--rate)   */
  int ready;                   /* threads connected and warmed up         */
  GCond ready_cv;
  FILE *reqlog;                /* --request-log                           */
  /* progress */
  const char *phase;
  gint done, total, errors;
  gboolean stop_progress;
  GMutex mu;
  char *first_error;
  int first_error_rc;
} L;

static void
load_note_error (int rc, char *msg)
{
  g_atomic_int_inc (&L.errors);
  g_mutex_lock (&L.mu);
  if (L.first_error == NULL)
    {
      L.first_error = msg;
      L.first_error_rc = rc;
      msg = NULL;
    }
  g_mutex_unlock (&L.mu);
  g_free (msg);
}

/* With --rate or --warmup the threads start together, once every one of
 * them is connected (and warmed up); the phase's clock starts then. */
static void
ready_wait (void)
{
  if (o_rate <= 0 && !o_warmup)
    return;
  g_mutex_lock (&L.mu);
  if (++L.ready == L.nthreads)
    {
      L.phase_t0 = g_get_monotonic_time ();
      g_cond_broadcast (&L.ready_cv);
    }
  else
    while (L.ready < L.nthreads)
      g_cond_wait (&L.ready_cv, &L.mu);
  g_mutex_unlock (&L.mu);
}

static gpointer
load_worker (gpointer data)
{
  Worker *w = data;
  Rpc r;
  char *msg = NULL;
  int k, n = w->orders ? L.norders : L.ncust;

  if (!rpc_open (&r, w->orders, &msg))
    {
      /* count every request of this worker as failed */
      for (k = w->index; k < n; k += L.nthreads)
        w->failed++;
      load_note_error (EXIT_TRANSPORT, msg);
      ready_wait ();
      return NULL;
    }
  if (o_warmup && w->index < n)
    {
      /* untimed and not counted; id n + thread index above the base */
      int rc;
      gint32 id = (w->orders ? L.obase : L.cbase) + n + w->index;

      if (w->orders)
        rc = call_create_order (&r, id, 1, "WARMUP", L.order_customer[0],
                                &msg);
      else
        rc = call_create_customer (&r, id, "warmup", 0, &msg);
      if (rc != EXIT_OK)
        {
          fprintf (stderr, "load: warm-up call failed: %s\n", msg);
          g_free (msg);
          msg = NULL;
        }
    }
  ready_wait ();
  for (k = w->index; k < n; k += L.nthreads)
    {
      gint64 t0, dt, wall;
      int rc;

      if (o_rate > 0)
        {
          /* request k is due k / rate seconds after the phase started */
          gint64 due = L.phase_t0 + (gint64) (k * (1e6 / o_rate));
          gint64 now = g_get_monotonic_time ();
          if (due > now)
            g_usleep ((gulong) (due - now));
        }
      t0 = g_get_monotonic_time ();
      wall = g_get_real_time ();
      if (w->orders)
        rc = call_create_order (&r, L.obase + k, 1 + k % 1000, "NEW",
                                L.order_customer[k % L.n_order_customer],
                                &msg);
      else
        {
          char name[32];
          g_snprintf (name, sizeof name, "load-%d", L.cbase + k);
          rc = call_create_customer (&r, L.cbase + k, name, 1000 + k % 1000,
                                     &msg);
        }
      dt = g_get_monotonic_time () - t0;
      if (w->log != NULL)
        {
          ReqRec rec = { (w->orders ? L.obase : L.cbase) + k, rc == EXIT_OK,
                         wall, dt };
          g_array_append_val (w->log, rec);
        }
      if (rc == EXIT_OK)
        {
          g_array_append_val (w->lat_us, dt);
          w->ok++;
          if (!w->orders)
            L.cust_ok[k] = TRUE;
        }
      else
        {
          w->failed++;
          load_note_error (rc, msg);
          msg = NULL;
          if (rc == EXIT_TRANSPORT)
            {
              /* the connection is unusable: give up this worker's share */
              for (k += L.nthreads; k < n; k += L.nthreads)
                w->failed++;
              break;
            }
        }
      g_atomic_int_inc (&L.done);
    }
  rpc_close (&r);
  return NULL;
}

static gpointer
progress_thread (gpointer data)
{
  gboolean tty = isatty (STDERR_FILENO);
  int ticks = 0;

  (void) data;
  while (!g_atomic_int_get (&L.stop_progress))
    {
      g_usleep (100 * 1000);
      if (++ticks % 10 != 0)
        continue;
      g_mutex_lock (&L.mu);
      fprintf (stderr, "%sload: %s %d/%d, errors %d%s", tty ? "\r" : "",
               L.phase, g_atomic_int_get (&L.done), L.total,
               g_atomic_int_get (&L.errors), tty ? "   " : "\n");
      g_mutex_unlock (&L.mu);
    }
  if (tty)
    fprintf (stderr, "\n");
  return NULL;
}

static void
set_phase (const char *phase, int total)
{
  g_mutex_lock (&L.mu);
  L.phase = phase;
  L.total = total;
  g_atomic_int_set (&L.done, 0);
  g_mutex_unlock (&L.mu);
}

static int
cmp_i64 (const void *a, const void *b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;
  return x < y ? -1 : x > y;
}

/* nearest-rank percentile of a sorted array, in milliseconds */
static double
pct_ms (const GArray *sorted, double p)
{
  guint n = sorted->len;
  guint rank;

  if (n == 0)
    return 0.0;
  rank = (guint) (p * n + 0.999999);
  if (rank < 1)
    rank = 1;
  if (rank > n)
    rank = n;
  return g_array_index (sorted, gint64, rank - 1) / 1000.0;
}

typedef struct
{
  const char *name;
  int ok, failed;
  double seconds;
  GArray *lat;                 /* sorted */
} PhaseResult;

/* Run one phase with L.nthreads workers; returns the wall time. */
static void
run_phase (gboolean orders, PhaseResult *res)
{
  Worker *w = g_new0 (Worker, L.nthreads);
  gint64 t0;
  int i;

  res->name = orders ? "createOrder" : "createCustomer";
  res->lat = g_array_new (FALSE, FALSE, sizeof (gint64));
  set_phase (res->name, orders ? L.norders : L.ncust);
  t0 = g_get_monotonic_time ();
  L.phase_t0 = t0;
  L.ready = 0;
  for (i = 0; i < L.nthreads; i++)
    {
      w[i].index = i;
      w[i].orders = orders;
      w[i].lat_us = g_array_new (FALSE, FALSE, sizeof (gint64));
      if (L.reqlog != NULL)
        w[i].log = g_array_new (FALSE, FALSE, sizeof (ReqRec));
      w[i].thread = g_thread_new ("load", load_worker, &w[i]);
    }
  for (i = 0; i < L.nthreads; i++)
    {
      g_thread_join (w[i].thread);
      res->ok += w[i].ok;
      res->failed += w[i].failed;
      g_array_append_vals (res->lat, w[i].lat_us->data, w[i].lat_us->len);
      g_array_unref (w[i].lat_us);
      if (w[i].log != NULL)
        {
          guint j;
          for (j = 0; j < w[i].log->len; j++)
            {
              const ReqRec *q = &g_array_index (w[i].log, ReqRec, j);
              fprintf (L.reqlog, "%s,%d,%.3f,%.3f,%d\n", res->name, q->id,
                       q->start_real_us / 1000.0, q->lat_us / 1000.0,
                       q->ok ? 1 : 0);
            }
          g_array_unref (w[i].log);
        }
    }
  /* from the common start (after connecting and warming up) */
  res->seconds = (g_get_monotonic_time () - L.phase_t0) / 1e6;
  g_array_sort (res->lat, cmp_i64);
  g_free (w);
}

/* Poll until every created customer is returned by OrderService.getCustomers.
 * Returns seconds since `since` (monotonic µs), or -1 on timeout/error. */
static double
wait_customers_visible (Rpc *orders, int expected, gint64 since, char **msg)
{
  gint64 deadline = since + (gint64) o_visibility_timeout_s * 1000000;
  int visible = 0;

  set_phase ("waiting for customers in OrderService", expected);
  for (;;)
    {
      GPtrArray *list = NULL;
      guint i;
      int rc = call_get_customers (orders, &list, msg);

      if (rc != EXIT_OK)
        {
          g_ptr_array_unref (list);
          return -1;
        }
      visible = 0;
      for (i = 0; i < list->len; i++)
        {
          gint32 id = ((EvrepCustomer *) g_ptr_array_index (list, i))->id;
          if (id >= L.cbase && id - L.cbase < L.ncust && L.cust_ok[id - L.cbase])
            visible++;
        }
      g_ptr_array_unref (list);
      g_atomic_int_set (&L.done, visible);
      if (visible >= expected)
        return (g_get_monotonic_time () - since) / 1e6;
      if (g_get_monotonic_time () > deadline)
        {
          *msg = g_strdup_printf ("only %d of %d created customers visible "
                                  "through OrderService.getCustomers after "
                                  "%d s (is replication running?)",
                                  visible, expected, o_visibility_timeout_s);
          return -1;
        }
      g_usleep (20 * 1000);
    }
}

/* Poll a database until `table` holds `expected` rows with ids lo..hi
 * (what: "orders"/"customers", opt: the option that gave conninfo, for
 * messages).  *pgp is a connection opened before the phase, so that
 * connecting is not part of the time measured; it is (re)opened here when
 * it is missing or broken: the database may be down for a while (a fault
 * test), and a failed connection or query is retried until the deadline.
 * Returns seconds since `since` (monotonic µs), or -1 with *msg set. */
static double
wait_rows_visible (PGconn **pgp, const char *conninfo, const char *opt,
                   const char *table, const char *what, gint32 first,
                   gint32 last, int expected, gint64 since, char **msg)
{
  gint64 deadline = since + (gint64) o_visibility_timeout_s * 1000000;
  PGconn *pg = *pgp;
  char lo[16], hi[16], *sql, *phase;
  const char *params[2] = { lo, hi };
  char *last_error = NULL;
  double result = -1;
  long n = 0;

  phase = g_strdup_printf ("waiting for %s in %s", what, opt);
  set_phase (phase, expected);
  sql = g_strdup_printf ("SELECT count(*) FROM %s WHERE id BETWEEN"
                         " $1::integer AND $2::integer", table);
  g_snprintf (lo, sizeof lo, "%d", first);
  g_snprintf (hi, sizeof hi, "%d", last);
  for (;;)
    {
      PGresult *res;

      if (pg == NULL || PQstatus (pg) != CONNECTION_OK)
        {
          if (pg != NULL)
            PQfinish (pg);
          pg = PQconnectdb (conninfo);
        }
      res = PQstatus (pg) == CONNECTION_OK
            ? PQexecParams (pg, sql, 2, NULL, params, NULL, NULL, 0) : NULL;
      if (PQresultStatus (res) == PGRES_TUPLES_OK)
        {
          n = strtol (PQgetvalue (res, 0, 0), NULL, 10);
          g_atomic_int_set (&L.done, (gint) n);
        }
      else
        {
          g_free (last_error);
          last_error = g_strdup (PQerrorMessage (pg));
          g_strchomp (last_error);
        }
      PQclear (res);
      if (n >= expected)
        {
          result = (g_get_monotonic_time () - since) / 1e6;
          break;
        }
      if (g_get_monotonic_time () > deadline)
        {
          *msg = g_strdup_printf ("only %ld of %d created %s visible in "
                                  "%s after %d s (is replication "
                                  "running?)%s%s", n, expected, what, opt,
                                  o_visibility_timeout_s,
                                  last_error ? "; last error: " : "",
                                  last_error ? last_error : "");
          break;
        }
      g_usleep (10 * 1000);
    }
  /* the progress thread may still print the phase name */
  g_mutex_lock (&L.mu);
  L.phase = "done";
  g_mutex_unlock (&L.mu);
  g_free (phase);
  g_free (sql);
  g_free (last_error);
  *pgp = pg;
  return result;
}

/* A connection for wait_rows_visible, opened and used once before the
 * phase: the first query of a session loads the table's catalog entries,
 * which is not part of the time to be measured either. */
static PGconn *
poll_connect (const char *conninfo, const char *table)
{
  PGconn *pg = PQconnectdb (conninfo);
  char *sql = g_strdup_printf ("SELECT count(*) FROM %s WHERE id BETWEEN"
                               " $1::integer AND $2::integer", table);
  const char *params[2] = { "0", "-1" };

  if (PQstatus (pg) == CONNECTION_OK)
    PQclear (PQexecParams (pg, sql, 2, NULL, params, NULL, NULL, 0));
  g_free (sql);
  return pg;
}

static void
print_phase (const PhaseResult *p)
{
  printf ("%-15s %8d %7d %8.3f %9.1f %8.3f %8.3f %8.3f\n", p->name, p->ok,
          p->failed, p->seconds, p->seconds > 0 ? p->ok / p->seconds : 0.0,
          pct_ms (p->lat, 0.50), pct_ms (p->lat, 0.99), pct_ms (p->lat, 1.0));
}

static int
cmd_load (void)
{
  Rpc cust, ord;
  char *msg = NULL;
  PhaseResult pc = { 0 }, po = { 0 };
  PGconn *order_pg = NULL, *peer_pg = NULL;
  GThread *progress;
  double cvis = -2, ovis = -2;  /* -2: not measured, -1: failed */
  int rc = EXIT_OK, i;
  gint32 maxid;

  if (o_customers == UNSET || o_orders == UNSET)
    return usage_error ("load needs --customers and --orders");
  if (o_customers < 0 || o_orders < 0 || o_concurrency < 1
      || o_concurrency > 1024 || o_visibility_timeout_s < 0 || o_rate < 0)
    return usage_error ("--customers/--orders/--visibility-timeout/--rate "
                        "must not be negative, --concurrency between 1 and "
                        "1024");
  memset (&L, 0, sizeof L);
  g_cond_init (&L.ready_cv);
  if (o_request_log != NULL
      && (L.reqlog = fopen (o_request_log, "w")) == NULL)
    {
      fprintf (stderr, "common_client: --request-log %s: %s\n",
               o_request_log, g_strerror (errno));
      return EXIT_USAGE;
    }
  if (L.reqlog != NULL)
    fprintf (L.reqlog, "call,id,start_unix_ms,latency_ms,ok\n");
  g_mutex_init (&L.mu);
  L.nthreads = o_concurrency;
  L.ncust = o_customers;
  L.norders = o_orders;
  L.cust_ok = g_new0 (gboolean, MAX (L.ncust, 1));

  /* control connections: CustomerService for the id base, OrderService
   * for the order id base, the visibility poll and the existing customers */
  memset (&cust, 0, sizeof cust);
  memset (&ord, 0, sizeof ord);
  if (L.ncust > 0 && o_id_base == UNSET && !rpc_open (&cust, FALSE, &msg))
    return fail (EXIT_TRANSPORT, msg);
  if ((L.norders > 0 || (o_visibility_timeout_s > 0 && o_order_db == NULL))
      && !rpc_open (&ord, TRUE, &msg))
    {
      rpc_close (&cust);
      return fail (EXIT_TRANSPORT, msg);
    }

  /* id ranges */
  if (L.ncust > 0)
    {
      if (o_id_base != UNSET)
        L.cbase = o_id_base;
      else
        {
          GPtrArray *list = NULL;
          rc = call_get_customers (&cust, &list, &msg);
          if (rc == EXIT_OK)
            L.cbase = max_customer_id (list) + 1;
          g_ptr_array_unref (list);
        }
    }
  if (rc == EXIT_OK && L.norders > 0)
    {
      if (o_order_id_base != UNSET)
        L.obase = o_order_id_base;
      else if ((rc = max_order_id (&ord, &maxid, &msg)) == EXIT_OK)
        L.obase = maxid + 1;
    }
  if (rc == EXIT_OK
      && ((gint64) L.cbase + L.ncust > G_MAXINT32
          || (gint64) L.obase + L.norders > G_MAXINT32))
    {
      msg = g_strdup ("id range exceeds the 32-bit id space");
      rc = EXIT_USAGE;
    }
  if (rc != EXIT_OK)
    {
      rpc_close (&cust);
      rpc_close (&ord);
      return fail (rc, msg);
    }
  fprintf (stderr, "load: %d customers (ids from %d), %d orders (ids from %d), "
           "concurrency %d\n", L.ncust, L.cbase, L.norders, L.obase,
           L.nthreads);

  /* the visibility polls' connections, opened now so that connecting is
   * not part of the time measured (a failure here is retried later) */
  if (o_visibility_timeout_s > 0 && o_order_db != NULL && L.ncust > 0)
    order_pg = poll_connect (o_order_db, "customer");
  if (o_visibility_timeout_s > 0 && o_peer_db != NULL && L.norders > 0)
    peer_pg = poll_connect (o_peer_db, "orders");

  progress = g_thread_new ("progress", progress_thread, NULL);

  /* phase 1: customers through CustomerService */
  if (L.ncust > 0)
    {
      gint64 end;
      run_phase (FALSE, &pc);
      end = g_get_monotonic_time ();
      if (pc.ok > 0 && o_visibility_timeout_s > 0)
        {
          cvis = o_order_db != NULL
                 ? wait_rows_visible (&order_pg, o_order_db, "--order-db",
                                      "customer",
                                      "customers", L.cbase,
                                      L.cbase + L.ncust - 1, pc.ok, end, &msg)
                 : wait_customers_visible (&ord, pc.ok, end, &msg);
          if (cvis < 0)
            {
              load_note_error (EXIT_EXCEPTION, msg);
              msg = NULL;
            }
        }
    }

  /* phase 2: orders through OrderService, for the new customers (they are
   * in OrderService's replica now) or, without new ones, existing ones */
  if (L.norders > 0 && cvis != -1)
    {
      if (L.ncust > 0)
        {
          L.order_customer = g_new (gint32, L.ncust);
          for (i = 0; i < L.ncust; i++)
            if (L.cust_ok[i])
              L.order_customer[L.n_order_customer++] = L.cbase + i;
        }
      else
        {
          GPtrArray *list = NULL;
          guint j;
          if (call_get_customers (&ord, &list, &msg) == EXIT_OK)
            {
              L.order_customer = g_new (gint32, MAX (list->len, 1));
              for (j = 0; j < list->len; j++)
                L.order_customer[L.n_order_customer++] =
                  ((EvrepCustomer *) g_ptr_array_index (list, j))->id;
            }
          else
            {
              load_note_error (EXIT_TRANSPORT, msg);
              msg = NULL;
            }
          g_ptr_array_unref (list);
        }
      if (L.n_order_customer == 0)
        load_note_error (EXIT_EXCEPTION,
                         g_strdup ("no customer to attach orders to (none "
                                   "created, none visible via OrderService)"));
      else
        {
          gint64 end;
          run_phase (TRUE, &po);
          end = g_get_monotonic_time ();
          if (o_peer_db != NULL && po.ok > 0 && o_visibility_timeout_s > 0)
            {
              ovis = wait_rows_visible (&peer_pg, o_peer_db, "--peer-db",
                                        "orders",
                                        "orders", L.obase,
                                        L.obase + L.norders - 1, po.ok, end,
                                        &msg);
              if (ovis < 0)
                {
                  load_note_error (EXIT_EXCEPTION, msg);
                  msg = NULL;
                }
            }
        }
    }

  g_atomic_int_set (&L.stop_progress, TRUE);
  g_thread_join (progress);
  if (order_pg != NULL)
    PQfinish (order_pg);
  if (peer_pg != NULL)
    PQfinish (peer_pg);
  rpc_close (&cust);
  rpc_close (&ord);

  /* summary */
  printf ("load summary: concurrency %d", L.nthreads);
  if (L.ncust > 0)
    printf (", customer ids %d..%d", L.cbase, L.cbase + L.ncust - 1);
  if (L.norders > 0)
    printf (", order ids %d..%d", L.obase, L.obase + L.norders - 1);
  printf ("\n");
  printf ("%-15s %8s %7s %8s %9s %8s %8s %8s\n", "call", "ok", "errors",
          "seconds", "req/s", "p50_ms", "p99_ms", "max_ms");
  if (pc.name)
    print_phase (&pc);
  if (po.name)
    print_phase (&po);
  if (pc.name || po.name)
    {
      double secs = pc.seconds + po.seconds;
      printf ("%-15s %8d %7d %8.3f %9.1f\n", "all", pc.ok + po.ok,
              pc.failed + po.failed, secs,
              secs > 0 ? (pc.ok + po.ok) / secs : 0.0);
    }
  if (cvis >= 0)
    printf ("customers visible %s %.3f s after the last createCustomer\n",
            o_order_db ? "in the order database" :
            "via OrderService.getCustomers", cvis);
  else if (cvis == -1)
    printf ("customers NOT all visible %s\n",
            o_order_db ? "in the order database"
                       : "via OrderService.getCustomers");
  if (ovis >= 0)
    printf ("orders visible in the peer database %.3f s after the last "
            "createOrder\n", ovis);
  else if (ovis == -1)
    printf ("orders NOT all visible in the peer database\n");
  else if (po.ok > 0)
    printf ("orders visibility not measured (%s)\n",
            o_visibility_timeout_s > 0 ? "no --peer-db"
                                       : "--visibility-timeout 0");
  if (cvis == -2 && pc.ok > 0)
    printf ("customers visibility not measured (--visibility-timeout 0)\n");
  fflush (stdout);

  if (g_atomic_int_get (&L.errors) > 0)
    {
      fprintf (stderr, "common_client: load: %d error(s); first: %s\n",
               g_atomic_int_get (&L.errors),
               L.first_error ? L.first_error : "?");
      rc = L.first_error_rc == EXIT_TRANSPORT ? EXIT_TRANSPORT
                                              : EXIT_EXCEPTION;
    }
  if (pc.lat)
    g_array_unref (pc.lat);
  if (po.lat)
    g_array_unref (po.lat);
  g_free (L.first_error);
  g_free (L.cust_ok);
  g_free (L.order_customer);
  if (L.reqlog != NULL && fclose (L.reqlog) != 0)
    {
      fprintf (stderr, "common_client: --request-log %s: %s\n",
               o_request_log, g_strerror (errno));
      rc = rc == EXIT_OK ? EXIT_EXCEPTION : rc;
    }
  g_mutex_clear (&L.mu);
  g_cond_clear (&L.ready_cv);
  return rc;
}

/* ---- main --------------------------------------------------------------- */

int
main (int argc, char **argv)
{
  GOptionContext *ctx;
  GError *error = NULL;
  const char *cmd;
  int rc;

  signal (SIGPIPE, SIG_IGN);
  ctx = g_option_context_new ("COMMAND");
  g_option_context_set_summary (ctx, "CommonClient of the evrep demo "
                                "services (Thrift binary protocol, unframed).");
  g_option_context_set_description (ctx, usage_text);
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      rc = usage_error ("%s", error->message);
      g_clear_error (&error);
      g_option_context_free (ctx);
      return rc;
    }
  g_option_context_free (ctx);
  if (o_host == NULL)
    o_host = g_strdup ("127.0.0.1");
  if (argc != 2)
    return usage_error (argc < 2 ? "missing COMMAND"
                                 : "exactly one COMMAND expected");
  cmd = argv[1];

  if (strcmp (cmd, "customer") == 0)
    rc = cmd_sample_customer ();
  else if (strcmp (cmd, "order") == 0)
    rc = cmd_sample_order ();
  else if (strcmp (cmd, "create-customer") == 0)
    rc = cmd_create_customer ();
  else if (strcmp (cmd, "list-customers") == 0)
    rc = cmd_list (FALSE);
  else if (strcmp (cmd, "create-order") == 0)
    rc = cmd_create_order ();
  else if (strcmp (cmd, "list-orders") == 0)
    rc = cmd_list (TRUE);
  else if (strcmp (cmd, "load") == 0)
    rc = cmd_load ();
  else
    rc = usage_error ("unknown command '%s'", cmd);
  return rc;
}
