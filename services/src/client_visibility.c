/*
 * client_visibility.c
 *		Polls for the rows common_client load created, on the other side.
 *
 * Through Thrift, OrderService.getCustomers lists every customer, which
 * gets slow as the table grows; with a conninfo, one count(*) over the new
 * ids in the database itself is cheaper and also works for the orders
 * replica, which no service call can read.
 */
#include "client_visibility.h"

#include <stdlib.h>

#include "evrep_evrep_types.h"

double
visibility_wait_customers(Rpc *orders, gint32 first, int n, const gboolean *created, int expected,
						  gint64 since, int timeout_s, gint *visible_out, char **msg)
{
	gint64 deadline = since + (gint64) timeout_s * 1000000;
	int visible = 0;

	for (;;)
	{
		GPtrArray *list = NULL;
		guint i;
		int rc = rpc_get_customers(orders, &list, msg);

		if (rc != EXIT_OK)
		{
			g_ptr_array_unref(list);
			return -1;
		}
		visible = 0;
		for (i = 0; i < list->len; i++)
		{
			gint32 id = ((EvrepCustomer *) g_ptr_array_index(list, i))->id;

			if (id >= first && id - first < n && created[id - first])
				visible++;
		}
		g_ptr_array_unref(list);
		g_atomic_int_set(visible_out, visible);
		if (visible >= expected)
			return (g_get_monotonic_time() - since) / 1e6;
		if (g_get_monotonic_time() > deadline)
		{
			*msg = g_strdup_printf("only %d of %d created customers visible "
								   "through OrderService.getCustomers after "
								   "%d s (is replication running?)",
								   visible, expected, timeout_s);
			return -1;
		}
		g_usleep(20 * 1000);
	}
}

static char *
count_sql(const char *table)
{
	return g_strdup_printf("SELECT count(*) FROM %s WHERE id BETWEEN"
						   " $1::integer AND $2::integer",
						   table);
}

double
visibility_wait_rows(PGconn **pgp, const char *conninfo, const char *opt, const char *table,
					 const char *what, gint32 first, gint32 last, int expected, gint64 since,
					 int timeout_s, gint *visible, char **msg)
{
	gint64 deadline = since + (gint64) timeout_s * 1000000;
	PGconn *pg = *pgp;
	char lo[16], hi[16], *sql;
	const char *params[2] = {lo, hi};
	char *last_error = NULL;
	double result = -1;
	long n = 0;

	sql = count_sql(table);
	g_snprintf(lo, sizeof lo, "%d", first);
	g_snprintf(hi, sizeof hi, "%d", last);
	for (;;)
	{
		PGresult *res;

		if (pg == NULL || PQstatus(pg) != CONNECTION_OK)
		{
			if (pg != NULL)
				PQfinish(pg);
			pg = PQconnectdb(conninfo);
		}
		res = PQstatus(pg) == CONNECTION_OK ? PQexecParams(pg, sql, 2, NULL, params, NULL, NULL, 0)
											: NULL;
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
		{
			n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
			g_atomic_int_set(visible, (gint) n);
		}
		else
		{
			g_free(last_error);
			last_error = g_strdup(PQerrorMessage(pg));
			g_strchomp(last_error);
		}
		PQclear(res);
		if (n >= expected)
		{
			result = (g_get_monotonic_time() - since) / 1e6;
			break;
		}
		if (g_get_monotonic_time() > deadline)
		{
			*msg =
				g_strdup_printf("only %ld of %d created %s visible in "
								"%s after %d s (is replication "
								"running?)%s%s",
								n, expected, what, opt, timeout_s,
								last_error ? "; last error: " : "", last_error ? last_error : "");
			break;
		}
		g_usleep(10 * 1000);
	}
	g_free(sql);
	g_free(last_error);
	*pgp = pg;
	return result;
}

/*
 * The first query of a session loads the table's catalog entries, which
 * is not part of the time to be measured either: run it once now.
 */
PGconn *
visibility_connect(const char *conninfo, const char *table)
{
	PGconn *pg = PQconnectdb(conninfo);
	char *sql = count_sql(table);
	const char *params[2] = {"0", "-1"};

	if (PQstatus(pg) == CONNECTION_OK)
		PQclear(PQexecParams(pg, sql, 2, NULL, params, NULL, NULL, 0));
	g_free(sql);
	return pg;
}
