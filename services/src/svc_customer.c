/*
 * svc_customer.c
 *		Customer rows, as both services read them.
 *
 * CustomerService reads its own table and OrderService its replica; the
 * two tables have the same definition, so one query serves both.
 */
#include "svc_customer.h"

#include "svc_error.h"

EvrepCustomer *
svc_customer_new(gint32 id, const char *name, gint32 credit)
{
	return g_object_new(EVREP_TYPE_CUSTOMER, "id", id, "customerName", name, "creditLimit", credit,
						NULL);
}

gboolean
svc_list_customers(SvcDb *db, GPtrArray *out, EvrepOperationFailedException **ex)
{
	SvcDbError err;
	PGresult *res;
	int i, n;

	res = svc_db_exec(db,
					  "SELECT id, customer_name, credit_limit"
					  "  FROM customer ORDER BY id",
					  0, NULL, TRUE, &err);
	if (res == NULL)
	{
		gboolean r = svc_fail_db(ex, "getCustomers", &err);

		svc_db_error_clear(&err);
		return r;
	}
	n = PQntuples(res);
	for (i = 0; i < n; i++)
		g_ptr_array_add(out, svc_customer_new(svc_db_int_value(res, i, 0), PQgetvalue(res, i, 1),
											  svc_db_int_value(res, i, 2)));
	PQclear(res);
	return TRUE;
}
