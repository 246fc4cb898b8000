/*
 * client_load.c
 *		common_client load: create customers, then orders, from C threads,
 *		each with its own connection, and report latency and throughput.
 *
 * Phase 1 creates the customers through CustomerService and waits until
 * they are visible to OrderService (through getCustomers, or in order_db
 * with --order-db).  Phase 2 creates orders for them, round robin, and
 * waits until customer_db's orders replica holds them (--peer-db).  Thread
 * k of C makes requests k, k + C, k + 2C, ...
 */
#include "client_load.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "client_stats.h"
#include "client_visibility.h"
#include "evrep_evrep_types.h"

typedef struct
{
	int index;
	gboolean orders; /* createOrder phase (else createCustomer) */
	GArray *lat_us;	 /* gint64 latency of each successful call */
	GArray *log;	 /* ReqRec of every call (--request-log) */
	int ok, failed;
	GThread *thread;
} Worker;

typedef struct
{
	gint32 id;
	gboolean ok;
	gint64 start_real_us; /* wall clock, to line up with other logs */
	gint64 lat_us;
} ReqRec;

typedef struct
{
	const char *name;
	int ok, failed;
	double seconds;
	GArray *lat; /* sorted */
} PhaseResult;

static const RpcTarget *T;
static const LoadOptions *O;

static struct
{
	int nthreads;
	gint32 cbase, obase;
	int ncust, norders;
	gint32 *order_customer; /* customer id of order k (k % n) */
	int n_order_customer;
	gboolean *cust_ok; /* created successfully, by index */
	gint64 phase_t0;   /* monotonic start of the phase (--rate) */
	int ready;		   /* threads connected and warmed up */
	GCond ready_cv;
	FILE *reqlog; /* --request-log */
	/* progress */
	const char *phase;
	gint done, total, errors;
	gboolean stop_progress;
	GMutex mu;
	char *first_error;
	int first_error_rc;
} L;

/* Takes over msg; the first error is the one reported at the end. */
static void
load_note_error(int rc, char *msg)
{
	g_atomic_int_inc(&L.errors);
	g_mutex_lock(&L.mu);
	if (L.first_error == NULL)
	{
		L.first_error = msg;
		L.first_error_rc = rc;
		msg = NULL;
	}
	g_mutex_unlock(&L.mu);
	g_free(msg);
}

static void
set_phase(const char *phase, int total)
{
	g_mutex_lock(&L.mu);
	L.phase = phase;
	L.total = total;
	g_atomic_int_set(&L.done, 0);
	g_mutex_unlock(&L.mu);
}

/*
 * With --rate or --warmup the threads start together, once every one of
 * them is connected (and warmed up); the phase's clock starts then.
 */
static void
ready_wait(void)
{
	if (O->rate <= 0 && !O->warmup)
		return;
	g_mutex_lock(&L.mu);
	if (++L.ready == L.nthreads)
	{
		L.phase_t0 = g_get_monotonic_time();
		g_cond_broadcast(&L.ready_cv);
	}
	else
		while (L.ready < L.nthreads)
			g_cond_wait(&L.ready_cv, &L.mu);
	g_mutex_unlock(&L.mu);
}

static gpointer
load_worker(gpointer data)
{
	Worker *w = data;
	Rpc r;
	char *msg = NULL;
	int k, n = w->orders ? L.norders : L.ncust;

	if (!rpc_open(&r, T, w->orders, &msg))
	{
		/* count every request of this worker as failed */
		for (k = w->index; k < n; k += L.nthreads)
			w->failed++;
		load_note_error(EXIT_TRANSPORT, msg);
		ready_wait();
		return NULL;
	}
	if (O->warmup && w->index < n)
	{
		/* untimed and not counted; id n + thread index above the base */
		int rc;
		gint32 id = (w->orders ? L.obase : L.cbase) + n + w->index;

		if (w->orders)
			rc = rpc_create_order(&r, id, 1, "WARMUP", L.order_customer[0], &msg);
		else
			rc = rpc_create_customer(&r, id, "warmup", 0, &msg);
		if (rc != EXIT_OK)
		{
			fprintf(stderr, "load: warm-up call failed: %s\n", msg);
			g_free(msg);
			msg = NULL;
		}
	}
	ready_wait();
	for (k = w->index; k < n; k += L.nthreads)
	{
		gint64 t0, dt, wall;
		int rc;

		if (O->rate > 0)
		{
			/* request k is due k / rate seconds after the phase started */
			gint64 due = L.phase_t0 + (gint64) (k * (1e6 / O->rate));
			gint64 now = g_get_monotonic_time();

			if (due > now)
				g_usleep((gulong) (due - now));
		}
		t0 = g_get_monotonic_time();
		wall = g_get_real_time();
		if (w->orders)
			rc = rpc_create_order(&r, L.obase + k, 1 + k % 1000, "NEW",
								  L.order_customer[k % L.n_order_customer], &msg);
		else
		{
			char name[32];

			g_snprintf(name, sizeof name, "load-%d", L.cbase + k);
			rc = rpc_create_customer(&r, L.cbase + k, name, 1000 + k % 1000, &msg);
		}
		dt = g_get_monotonic_time() - t0;
		if (w->log != NULL)
		{
			ReqRec rec = {(w->orders ? L.obase : L.cbase) + k, rc == EXIT_OK, wall, dt};

			g_array_append_val(w->log, rec);
		}
		if (rc == EXIT_OK)
		{
			g_array_append_val(w->lat_us, dt);
			w->ok++;
			if (!w->orders)
				L.cust_ok[k] = TRUE;
		}
		else
		{
			w->failed++;
			load_note_error(rc, msg);
			msg = NULL;
			if (rc == EXIT_TRANSPORT)
			{
				/* the connection is unusable: give up this worker's share */
				for (k += L.nthreads; k < n; k += L.nthreads)
					w->failed++;
				break;
			}
		}
		g_atomic_int_inc(&L.done);
	}
	rpc_close(&r);
	return NULL;
}

static gpointer
progress_thread(gpointer data)
{
	gboolean tty = isatty(STDERR_FILENO);
	int ticks = 0;

	(void) data;
	while (!g_atomic_int_get(&L.stop_progress))
	{
		g_usleep(100 * 1000);
		if (++ticks % 10 != 0)
			continue;
		g_mutex_lock(&L.mu);
		fprintf(stderr, "%sload: %s %d/%d, errors %d%s", tty ? "\r" : "", L.phase,
				g_atomic_int_get(&L.done), L.total, g_atomic_int_get(&L.errors),
				tty ? "   " : "\n");
		g_mutex_unlock(&L.mu);
	}
	if (tty)
		fprintf(stderr, "\n");
	return NULL;
}

/* Run one phase with L.nthreads workers. */
static void
run_phase(gboolean orders, PhaseResult *res)
{
	Worker *w = g_new0(Worker, L.nthreads);
	int i;

	res->name = orders ? "createOrder" : "createCustomer";
	res->lat = g_array_new(FALSE, FALSE, sizeof(gint64));
	set_phase(res->name, orders ? L.norders : L.ncust);
	L.phase_t0 = g_get_monotonic_time();
	L.ready = 0;
	for (i = 0; i < L.nthreads; i++)
	{
		w[i].index = i;
		w[i].orders = orders;
		w[i].lat_us = g_array_new(FALSE, FALSE, sizeof(gint64));
		if (L.reqlog != NULL)
			w[i].log = g_array_new(FALSE, FALSE, sizeof(ReqRec));
		w[i].thread = g_thread_new("load", load_worker, &w[i]);
	}
	for (i = 0; i < L.nthreads; i++)
	{
		g_thread_join(w[i].thread);
		res->ok += w[i].ok;
		res->failed += w[i].failed;
		g_array_append_vals(res->lat, w[i].lat_us->data, w[i].lat_us->len);
		g_array_unref(w[i].lat_us);
		if (w[i].log != NULL)
		{
			guint j;

			for (j = 0; j < w[i].log->len; j++)
			{
				const ReqRec *q = &g_array_index(w[i].log, ReqRec, j);

				fprintf(L.reqlog, "%s,%d,%.3f,%.3f,%d\n", res->name, q->id,
						q->start_real_us / 1000.0, q->lat_us / 1000.0, q->ok ? 1 : 0);
			}
			g_array_unref(w[i].log);
		}
	}
	/* from the common start (after connecting and warming up) */
	res->seconds = (g_get_monotonic_time() - L.phase_t0) / 1e6;
	stats_sort(res->lat);
	g_free(w);
}

/* Customers visible to OrderService, in order_db or through the service. */
static double
wait_customers(PGconn **order_pg, Rpc *ord, int expected, gint64 since, char **msg)
{
	if (O->order_db == NULL)
	{
		set_phase("waiting for customers in OrderService", expected);
		return visibility_wait_customers(ord, L.cbase, L.ncust, L.cust_ok, expected, since,
										 O->visibility_timeout_s, &L.done, msg);
	}
	set_phase("waiting for customers in --order-db", expected);
	return visibility_wait_rows(order_pg, O->order_db, "--order-db", "customer", "customers",
								L.cbase, L.cbase + L.ncust - 1, expected, since,
								O->visibility_timeout_s, &L.done, msg);
}

/* Orders in the peer (customer) database's replica. */
static double
wait_orders(PGconn **peer_pg, int expected, gint64 since, char **msg)
{
	set_phase("waiting for orders in --peer-db", expected);
	return visibility_wait_rows(peer_pg, O->peer_db, "--peer-db", "orders", "orders", L.obase,
								L.obase + L.norders - 1, expected, since, O->visibility_timeout_s,
								&L.done, msg);
}

static void
print_phase(const PhaseResult *p)
{
	printf("%-15s %8d %7d %8.3f %9.1f %8.3f %8.3f %8.3f\n", p->name, p->ok, p->failed, p->seconds,
		   p->seconds > 0 ? p->ok / p->seconds : 0.0, stats_percentile_ms(p->lat, 0.50),
		   stats_percentile_ms(p->lat, 0.99), stats_percentile_ms(p->lat, 1.0));
}

static void
print_summary(const PhaseResult *pc, const PhaseResult *po, double cvis, double ovis)
{
	printf("load summary: concurrency %d", L.nthreads);
	if (L.ncust > 0)
		printf(", customer ids %d..%d", L.cbase, L.cbase + L.ncust - 1);
	if (L.norders > 0)
		printf(", order ids %d..%d", L.obase, L.obase + L.norders - 1);
	printf("\n");
	printf("%-15s %8s %7s %8s %9s %8s %8s %8s\n", "call", "ok", "errors", "seconds", "req/s",
		   "p50_ms", "p99_ms", "max_ms");
	if (pc->name)
		print_phase(pc);
	if (po->name)
		print_phase(po);
	if (pc->name || po->name)
	{
		double secs = pc->seconds + po->seconds;

		printf("%-15s %8d %7d %8.3f %9.1f\n", "all", pc->ok + po->ok, pc->failed + po->failed, secs,
			   secs > 0 ? (pc->ok + po->ok) / secs : 0.0);
	}
	if (cvis >= 0)
		printf("customers visible %s %.3f s after the last createCustomer\n",
			   O->order_db ? "in the order database" : "via OrderService.getCustomers", cvis);
	else if (cvis == -1)
		printf("customers NOT all visible %s\n",
			   O->order_db ? "in the order database" : "via OrderService.getCustomers");
	if (ovis >= 0)
		printf("orders visible in the peer database %.3f s after the last "
			   "createOrder\n",
			   ovis);
	else if (ovis == -1)
		printf("orders NOT all visible in the peer database\n");
	else if (po->ok > 0)
		printf("orders visibility not measured (%s)\n",
			   O->visibility_timeout_s > 0 ? "no --peer-db" : "--visibility-timeout 0");
	if (cvis == -2 && pc->ok > 0)
		printf("customers visibility not measured (--visibility-timeout 0)\n");
	fflush(stdout);
}

int
load_run(const RpcTarget *target, const LoadOptions *opts)
{
	Rpc cust, ord;
	char *msg = NULL;
	PhaseResult pc = {0}, po = {0};
	PGconn *order_pg = NULL, *peer_pg = NULL;
	GThread *progress;
	double cvis = -2, ovis = -2; /* -2: not measured, -1: failed */
	int rc = EXIT_OK, i;
	gint32 maxid;

	T = target;
	O = opts;
	memset(&L, 0, sizeof L);
	g_cond_init(&L.ready_cv);
	if (O->request_log != NULL && (L.reqlog = fopen(O->request_log, "w")) == NULL)
	{
		fprintf(stderr, "common_client: --request-log %s: %s\n", O->request_log, g_strerror(errno));
		return EXIT_USAGE;
	}
	if (L.reqlog != NULL)
		fprintf(L.reqlog, "call,id,start_unix_ms,latency_ms,ok\n");
	g_mutex_init(&L.mu);
	L.nthreads = O->concurrency;
	L.ncust = O->customers;
	L.norders = O->orders;
	L.cust_ok = g_new0(gboolean, MAX(L.ncust, 1));

	/*
	 * control connections: CustomerService for the id base, OrderService for
	 * the order id base, the visibility poll and the existing customers
	 */
	memset(&cust, 0, sizeof cust);
	memset(&ord, 0, sizeof ord);
	if (L.ncust > 0 && O->id_base == LOAD_ID_AUTO && !rpc_open(&cust, T, FALSE, &msg))
		return client_error(EXIT_TRANSPORT, msg);
	if ((L.norders > 0 || (O->visibility_timeout_s > 0 && O->order_db == NULL)) &&
		!rpc_open(&ord, T, TRUE, &msg))
	{
		rpc_close(&cust);
		return client_error(EXIT_TRANSPORT, msg);
	}

	/* id ranges */
	if (L.ncust > 0)
	{
		if (O->id_base != LOAD_ID_AUTO)
			L.cbase = O->id_base;
		else
		{
			GPtrArray *list = NULL;

			rc = rpc_get_customers(&cust, &list, &msg);
			if (rc == EXIT_OK)
				L.cbase = rpc_max_customer_id(list) + 1;
			g_ptr_array_unref(list);
		}
	}
	if (rc == EXIT_OK && L.norders > 0)
	{
		if (O->order_id_base != LOAD_ID_AUTO)
			L.obase = O->order_id_base;
		else if ((rc = rpc_max_order_id(&ord, &maxid, &msg)) == EXIT_OK)
			L.obase = maxid + 1;
	}
	if (rc == EXIT_OK &&
		((gint64) L.cbase + L.ncust > G_MAXINT32 || (gint64) L.obase + L.norders > G_MAXINT32))
	{
		msg = g_strdup("id range exceeds the 32-bit id space");
		rc = EXIT_USAGE;
	}
	if (rc != EXIT_OK)
	{
		rpc_close(&cust);
		rpc_close(&ord);
		return client_error(rc, msg);
	}
	fprintf(stderr,
			"load: %d customers (ids from %d), %d orders (ids from %d), "
			"concurrency %d\n",
			L.ncust, L.cbase, L.norders, L.obase, L.nthreads);

	/*
	 * the visibility polls' connections, opened now so that connecting is
	 * not part of the time measured (a failure here is retried later)
	 */
	if (O->visibility_timeout_s > 0 && O->order_db != NULL && L.ncust > 0)
		order_pg = visibility_connect(O->order_db, "customer");
	if (O->visibility_timeout_s > 0 && O->peer_db != NULL && L.norders > 0)
		peer_pg = visibility_connect(O->peer_db, "orders");

	progress = g_thread_new("progress", progress_thread, NULL);

	/* phase 1: customers through CustomerService */
	if (L.ncust > 0)
	{
		gint64 end;

		run_phase(FALSE, &pc);
		end = g_get_monotonic_time();
		if (pc.ok > 0 && O->visibility_timeout_s > 0)
		{
			cvis = wait_customers(&order_pg, &ord, pc.ok, end, &msg);
			if (cvis < 0)
			{
				load_note_error(EXIT_EXCEPTION, msg);
				msg = NULL;
			}
		}
	}

	/*
	 * phase 2: orders through OrderService, for the new customers (they are
	 * in OrderService's replica now) or, without new ones, existing ones
	 */
	if (L.norders > 0 && cvis != -1)
	{
		if (L.ncust > 0)
		{
			L.order_customer = g_new(gint32, L.ncust);
			for (i = 0; i < L.ncust; i++)
				if (L.cust_ok[i])
					L.order_customer[L.n_order_customer++] = L.cbase + i;
		}
		else
		{
			GPtrArray *list = NULL;
			guint j;

			if (rpc_get_customers(&ord, &list, &msg) == EXIT_OK)
			{
				L.order_customer = g_new(gint32, MAX(list->len, 1));
				for (j = 0; j < list->len; j++)
					L.order_customer[L.n_order_customer++] =
						((EvrepCustomer *) g_ptr_array_index(list, j))->id;
			}
			else
			{
				load_note_error(EXIT_TRANSPORT, msg);
				msg = NULL;
			}
			g_ptr_array_unref(list);
		}
		if (L.n_order_customer == 0)
			load_note_error(EXIT_EXCEPTION, g_strdup("no customer to attach orders to (none "
													 "created, none visible via OrderService)"));
		else
		{
			gint64 end;

			run_phase(TRUE, &po);
			end = g_get_monotonic_time();
			if (O->peer_db != NULL && po.ok > 0 && O->visibility_timeout_s > 0)
			{
				ovis = wait_orders(&peer_pg, po.ok, end, &msg);
				if (ovis < 0)
				{
					load_note_error(EXIT_EXCEPTION, msg);
					msg = NULL;
				}
			}
		}
	}

	g_atomic_int_set(&L.stop_progress, TRUE);
	g_thread_join(progress);
	if (order_pg != NULL)
		PQfinish(order_pg);
	if (peer_pg != NULL)
		PQfinish(peer_pg);
	rpc_close(&cust);
	rpc_close(&ord);

	print_summary(&pc, &po, cvis, ovis);
	if (g_atomic_int_get(&L.errors) > 0)
	{
		fprintf(stderr, "common_client: load: %d error(s); first: %s\n",
				g_atomic_int_get(&L.errors), L.first_error ? L.first_error : "?");
		rc = L.first_error_rc == EXIT_TRANSPORT ? EXIT_TRANSPORT : EXIT_EXCEPTION;
	}
	if (pc.lat)
		g_array_unref(pc.lat);
	if (po.lat)
		g_array_unref(po.lat);
	g_free(L.first_error);
	g_free(L.cust_ok);
	g_free(L.order_customer);
	if (L.reqlog != NULL && fclose(L.reqlog) != 0)
	{
		fprintf(stderr, "common_client: --request-log %s: %s\n", O->request_log, g_strerror(errno));
		rc = rc == EXIT_OK ? EXIT_EXCEPTION : rc;
	}
	g_mutex_clear(&L.mu);
	g_cond_clear(&L.ready_cv);
	return rc;
}
