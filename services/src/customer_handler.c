/*
 * customer_handler.c
 *		CustomerService: getCustomers and createCustomer on the service's own
 *		database.
 *
 *   getCustomers()            all customers of the local database, by id
 *   createCustomer(customer)  INSERT INTO customer
 *
 * The insert is a class method, so that a subclass can store the row in
 * another way and still share the validation and the reads.
 */
#include "customer_handler.h"

#include "svc_check.h"
#include "svc_customer.h"
#include "svc_error.h"

const char customer_insert_sql[] = "INSERT INTO customer (id, customer_name, credit_limit)"
								   " VALUES ($1, $2, $3)";

G_DEFINE_TYPE(CustomerHandler, customer_handler, EVREP_TYPE_CUSTOMER_SERVICE_HANDLER)

#define CUSTOMER_HANDLER(obj) ((CustomerHandler *) (obj))
#define CUSTOMER_HANDLER_GET_CLASS(obj) ((CustomerHandlerClass *) G_OBJECT_GET_CLASS(obj))

static gboolean
customer_get_customers(EvrepCustomerServiceIf *iface, GPtrArray **_return,
					   EvrepOperationFailedException **ex, GError **error)
{
	(void) error;
	return svc_list_customers(CUSTOMER_HANDLER(iface)->db, *_return, ex);
}

static gboolean
customer_create_customer(EvrepCustomerServiceIf *iface, const EvrepCustomer *customer,
						 EvrepOperationFailedException **ex, GError **error)
{
	CustomerHandler *h = CUSTOMER_HANDLER(iface);
	char id[16], credit[16];
	const char *params[3];

	(void) error;
	if (customer == NULL)
		return svc_fail(ex, "createCustomer: customer is required");
	if (!svc_check_text(ex, "customerName", customer->customerName))
		return FALSE;
	if (customer->creditLimit < 0)
		return svc_fail(ex, "creditLimit must not be negative (got %d)", customer->creditLimit);

	g_snprintf(id, sizeof id, "%d", customer->id);
	g_snprintf(credit, sizeof credit, "%d", customer->creditLimit);
	params[0] = id;
	params[1] = customer->customerName;
	params[2] = credit;
	return CUSTOMER_HANDLER_GET_CLASS(h)->insert(h, params, ex);
}

static gboolean
customer_insert(CustomerHandler *self, const char *const *params,
				EvrepOperationFailedException **ex)
{
	SvcDbError err;
	PGresult *res;
	gboolean ok;

	res = svc_db_exec(self->db, customer_insert_sql, 3, params, FALSE, &err);
	if (res != NULL)
	{
		PQclear(res);
		return TRUE;
	}
	if (svc_db_duplicate(&err))
		ok = svc_fail(ex, "customer %s already exists", params[0]);
	else
		ok = svc_fail_db(ex, "createCustomer", &err);
	svc_db_error_clear(&err);
	return ok;
}

static void
customer_handler_class_init(CustomerHandlerClass *klass)
{
	EvrepCustomerServiceHandlerClass *hc = EVREP_CUSTOMER_SERVICE_HANDLER_CLASS(klass);

	hc->get_customers = customer_get_customers;
	hc->create_customer = customer_create_customer;
	klass->insert = customer_insert;
}

static void
customer_handler_init(CustomerHandler *self)
{
	self->db = NULL;
}

ThriftProcessor *
customer_processor_new(GType type, SvcDb *db)
{
	CustomerHandler *h = g_object_new(type, NULL);
	ThriftProcessor *p;

	h->db = db;
	p = g_object_new(EVREP_TYPE_CUSTOMER_SERVICE_PROCESSOR, "handler", h, NULL);
	g_object_unref(h); /* the processor holds a reference */
	return p;
}
