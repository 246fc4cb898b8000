/*
 * customer_service.c - CustomerService (owns table customer)
 *
 *   getCustomers()            all customers of the local database, by id
 *   createCustomer(customer)  INSERT INTO customer; with --mode 2pc into
 *                             the customer table of the peer (order)
 *                             database too, in one two-phase commit
 *
 * Default port 9091, default database "dbname=customer_db".
 */
#include <string.h>

#include "svc_common.h"
#include "evrep_customer_service.h"

typedef struct
{
  EvrepCustomerServiceHandler parent;
  SvcDb *db;
  SvcDb *peer;                  /* --mode 2pc: the order database */
} CustomerHandler;

typedef struct
{
  EvrepCustomerServiceHandlerClass parent;
} CustomerHandlerClass;

GType customer_handler_get_type (void);
G_DEFINE_TYPE (CustomerHandler, customer_handler,
               EVREP_TYPE_CUSTOMER_SERVICE_HANDLER)

#define CUSTOMER_HANDLER(obj) ((CustomerHandler *) (obj))

static gboolean
customer_get_customers (EvrepCustomerServiceIf *iface, GPtrArray **_return,
                        EvrepOperationFailedException **ex, GError **error)
{
  (void) error;
  return svc_list_customers (CUSTOMER_HANDLER (iface)->db, *_return, ex);
}

static gboolean
customer_create_customer (EvrepCustomerServiceIf *iface,
                          const EvrepCustomer *customer,
                          EvrepOperationFailedException **ex, GError **error)
{
  static const char *insert_sql =
    "INSERT INTO customer (id, customer_name, credit_limit)"
    " VALUES ($1, $2, $3)";
  CustomerHandler *h = CUSTOMER_HANDLER (iface);
  char id[16], credit[16];
  const char *params[3];
  SvcDbError err;
  PGresult *res;
  gboolean ok, applied;

  (void) error;
  if (customer == NULL)
    return svc_fail (ex, "createCustomer: customer is required");
  if (!svc_check_text (ex, "customerName", customer->customerName))
    return FALSE;
  if (customer->creditLimit < 0)
    return svc_fail (ex, "creditLimit must not be negative (got %d)",
                     customer->creditLimit);

  g_snprintf (id, sizeof id, "%d", customer->id);
  g_snprintf (credit, sizeof credit, "%d", customer->creditLimit);
  params[0] = id;
  params[1] = customer->customerName;
  params[2] = credit;
  if (h->peer != NULL)
    {
      if (svc_twopc_write (h->db, h->peer, insert_sql, insert_sql, 3, params,
                           &applied, &err))
        return TRUE;
    }
  else if ((res = svc_db_exec (h->db, insert_sql, 3, params, FALSE, &err))
           != NULL)
    {
      PQclear (res);
      return TRUE;
    }
  if (strcmp (err.sqlstate, "23505") == 0)
    ok = svc_fail (ex, "customer %d already exists", customer->id);
  else
    ok = svc_fail_db (ex, "createCustomer", &err);
  svc_db_error_clear (&err);
  return ok;
}

static void
customer_handler_class_init (CustomerHandlerClass *klass)
{
  EvrepCustomerServiceHandlerClass *hc =
    EVREP_CUSTOMER_SERVICE_HANDLER_CLASS (klass);

  hc->get_customers = customer_get_customers;
  hc->create_customer = customer_create_customer;
}

static void
customer_handler_init (CustomerHandler *self)
{
  self->db = NULL;
  self->peer = NULL;
}

static ThriftProcessor *
make_processor (SvcDb *db, SvcDb *peer)
{
  CustomerHandler *h = g_object_new (customer_handler_get_type (), NULL);
  ThriftProcessor *p;

  h->db = db;
  h->peer = peer;
  p = g_object_new (EVREP_TYPE_CUSTOMER_SERVICE_PROCESSOR,
                    "handler", h, NULL);
  g_object_unref (h);           /* the processor holds a reference */
  return p;
}

int
main (int argc, char **argv)
{
  static const SvcConfig cfg = {
    .prog = "customer_service",
    .service_name = "CustomerService",
    .default_port = 9091,
    .default_db = "dbname=customer_db",
    .make_processor = make_processor,
  };
  return svc_main (argc, argv, &cfg);
}
