/*
 * svc_customer.h
 *		Customer rows, as both services read them.
 */
#ifndef EVREP_SVC_CUSTOMER_H
#define EVREP_SVC_CUSTOMER_H

#include <glib.h>

#include "evrep_evrep_types.h"
#include "svc_db.h"

EvrepCustomer *svc_customer_new(gint32 id, const char *name, gint32 credit);

/*
 * getCustomers of either service: every row of db's customer table, by id,
 * appended to out.  FALSE with *ex set on failure.
 */
gboolean svc_list_customers(SvcDb *db, GPtrArray *out, EvrepOperationFailedException **ex);

#endif /* EVREP_SVC_CUSTOMER_H */
