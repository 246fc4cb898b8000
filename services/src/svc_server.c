/*
 * svc_server.c
 *		Listening socket, thread per connection, shutdown.
 *
 * ThriftSimpleServer (the only server class of Thrift c_glib 0.17) serves one
 * connection at a time and its ThriftServerSocket binds every interface.  We
 * listen ourselves (default 127.0.0.1), accept in the main thread and give
 * every accepted connection its own thread.  That thread wraps the fd in a
 * ThriftSocket + ThriftBufferedTransport + SvcProtocol (unframed binary, as
 * the original prototype) and runs the processor until the peer closes.
 * Each connection thread owns one libpq connection, opened lazily at the
 * first request, so requests from different clients run in parallel.
 *
 * Shutdown (SIGTERM/SIGINT): the accept loop stops, the listening socket is
 * closed, every open client socket is shut down (the threads' blocking
 * reads return), and we wait (at most 10 s) for the threads to finish their
 * current request and close their database connections.
 */
#define _GNU_SOURCE /* accept4 */
#include "svc_server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <thrift/c_glib/thrift_configuration.h>
#include <thrift/c_glib/transport/thrift_buffered_transport.h>
#include <thrift/c_glib/transport/thrift_socket.h>

#include "svc_log.h"
#include "svc_protocol.h"
#include "svc_shutdown.h"

/*
 * Requests are small (strings of at most 200 characters); refuse any string
 * or container claiming more than this before allocating for it.
 */
#define SVC_MAX_MESSAGE_SIZE (1024 * 1024)

/* ---- options ------------------------------------------------------------ */

static const SvcConfig *g_cfg;
static SvcSettings g_settings;
static ThriftConfiguration *g_thrift_conf;
static int opt_port = -1;
static char *opt_db = NULL;
static char *opt_bind = NULL;
static int opt_max_conn = 64;
static int opt_customer_wait_ms = 2000;
static int opt_statement_timeout_ms = 10000;
static int opt_idle_timeout_s = 600;

/* ---- connection registry ------------------------------------------------ */

typedef struct Conn
{
	int fd;
	gboolean registered;
	struct Conn *prev, *next;
} Conn;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reg_cv = PTHREAD_COND_INITIALIZER;
static Conn *reg_head = NULL;
static int reg_active = 0; /* threads alive (registered or not) */
static long conn_serial = 0;

static void
reg_unlink_locked(Conn *c)
{
	if (!c->registered)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		reg_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	c->registered = FALSE;
}

/* ---- per-connection thread ---------------------------------------------- */

static void *
conn_thread(void *arg)
{
	Conn *c = arg;
	SvcDb db;
	ThriftSocket *sock;
	ThriftTransport *transport;
	ThriftProtocol *protocol;
	ThriftProcessor *processor;
	GError *error = NULL;

	svc_db_init(&db, opt_db, opt_statement_timeout_ms, g_cfg->prog);

	sock = g_object_new(THRIFT_TYPE_SOCKET, NULL);
	sock->sd = c->fd; /* the ThriftSocket now owns the fd */

	/*
	 * The size limit is checked by the buffered transport, which the
	 * protocol reads from; "configuration" makes it survive the reset that
	 * every flush does.
	 */
	transport = g_object_new(THRIFT_TYPE_BUFFERED_TRANSPORT, "transport", sock, "r_buf_size", 4096,
							 "w_buf_size", 16384, "configuration", g_thrift_conf,
							 "remainingmessagesize", (glong) SVC_MAX_MESSAGE_SIZE,
							 "knowmessagesize", (glong) SVC_MAX_MESSAGE_SIZE, NULL);
	protocol = g_object_new(svc_protocol_get_type(), "transport", transport, NULL);
	processor = g_cfg->make_processor(&db, &g_settings);

	/*
	 * peek blocks until a request arrives or the peer closes (or shutdown()
	 * from the main thread); this also avoids the processor's warning about
	 * a failed read at a normal end of connection.
	 */
	while (svc_running() && thrift_transport_peek(transport, &error) &&
		   thrift_processor_process(processor, protocol, protocol, &error))
		;
	if (error != NULL)
	{
		if (svc_running())
			svc_log("connection closed: %s", error->message);
		g_clear_error(&error);
	}

	/*
	 * Unregister before the fd is closed, so the main thread never calls
	 * shutdown() on a descriptor number that may already be reused.
	 */
	pthread_mutex_lock(&reg_mu);
	reg_unlink_locked(c);
	pthread_mutex_unlock(&reg_mu);

	g_object_unref(processor);
	g_object_unref(protocol);
	g_object_unref(transport);
	thrift_socket_close(THRIFT_TRANSPORT(sock), NULL);
	g_object_unref(sock);
	svc_db_finish(&db);
	g_free(c);

	pthread_mutex_lock(&reg_mu);
	reg_active--;
	pthread_cond_broadcast(&reg_cv);
	pthread_mutex_unlock(&reg_mu);
	return NULL;
}

/* ---- listening ---------------------------------------------------------- */

static int
listen_on(const char *host, int port)
{
	struct addrinfo hints, *res = NULL, *ai;
	char portstr[16];
	int fd = -1, rc, one = 1;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	g_snprintf(portstr, sizeof portstr, "%d", port);
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0)
	{
		svc_log("cannot resolve bind address %s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next)
	{
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0)
			break;
		svc_log("cannot listen on %s:%d: %s", host, port, strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd >= 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

static void
accept_one(int lfd)
{
	Conn *c;
	pthread_t tid;
	pthread_attr_t attr;
	int fd, one = 1, rc;

	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
	{
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
		{
			svc_log("accept: %s (backing off)", strerror(errno));
			g_usleep(100 * 1000);
		}
		return; /* EAGAIN, EINTR, ECONNABORTED, ... */
	}
	/* accepted sockets do not inherit O_NONBLOCK on Linux; be explicit */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (opt_idle_timeout_s > 0)
	{
		/*
		 * a client silent this long (between or inside requests) is dropped,
		 * so a stuck or half-sent request cannot hold a thread forever
		 */
		struct timeval tv = {opt_idle_timeout_s, 0};

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	}

	pthread_mutex_lock(&reg_mu);
	if (reg_active >= opt_max_conn)
	{
		pthread_mutex_unlock(&reg_mu);
		svc_log("refusing connection: %d connections open (--max-connections)", opt_max_conn);
		close(fd);
		return;
	}
	c = g_new0(Conn, 1);
	c->fd = fd;
	c->registered = TRUE;
	c->next = reg_head;
	if (reg_head)
		reg_head->prev = c;
	reg_head = c;
	reg_active++;
	conn_serial++;
	pthread_mutex_unlock(&reg_mu);

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&tid, &attr, conn_thread, c);
	pthread_attr_destroy(&attr);
	if (rc != 0)
	{
		svc_log("cannot start connection thread: %s", strerror(rc));
		pthread_mutex_lock(&reg_mu);
		reg_unlink_locked(c);
		reg_active--;
		pthread_mutex_unlock(&reg_mu);
		close(fd);
		g_free(c);
	}
}

static gboolean
stop_connections(int timeout_s)
{
	struct timespec deadline;
	gboolean ok = TRUE;
	Conn *c;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_s;
	pthread_mutex_lock(&reg_mu);
	svc_shutdown_begin();
	for (c = reg_head; c != NULL; c = c->next)
		shutdown(c->fd, SHUT_RDWR);
	while (reg_active > 0)
		if (pthread_cond_timedwait(&reg_cv, &reg_mu, &deadline) == ETIMEDOUT)
		{
			ok = FALSE;
			break;
		}
	pthread_mutex_unlock(&reg_mu);
	return ok;
}

/* ---- main --------------------------------------------------------------- */

/* Exit code 2 and a message on stderr for bad options; 0 when they are fine. */
static int
parse_options(int argc, char **argv, const SvcConfig *cfg)
{
	GOptionContext *ctx;
	GError *error = NULL;
	char *summary;
	GOptionEntry entries[] = {
		{"port", 'p', 0, G_OPTION_ARG_INT, &opt_port, "TCP port to listen on", "PORT"},
		{"db", 'd', 0, G_OPTION_ARG_STRING, &opt_db,
		 "libpq connection string of the service database", "CONNINFO"},
		{"bind", 'b', 0, G_OPTION_ARG_STRING, &opt_bind,
		 "address to listen on (default 127.0.0.1; 0.0.0.0 for all)", "ADDR"},
		{"max-connections", 0, 0, G_OPTION_ARG_INT, &opt_max_conn,
		 "client connections served at once, each with its own database "
		 "connection (default 64)",
		 "N"},
		{"statement-timeout-ms", 0, 0, G_OPTION_ARG_INT, &opt_statement_timeout_ms,
		 "statement_timeout of the service's database sessions (default 10000)", "MS"},
		{"idle-timeout", 0, 0, G_OPTION_ARG_INT, &opt_idle_timeout_s,
		 "drop a client connection silent for this long (default 600; "
		 "0: never)",
		 "S"},
		{"customer-wait-ms", 0, 0, G_OPTION_ARG_INT, &opt_customer_wait_ms,
		 "OrderService.createOrder: how long to wait for the customer to appear "
		 "in the local replica (default 2000)",
		 "MS"},
		{NULL, 0, 0, 0, NULL, NULL, NULL}};

	ctx = g_option_context_new(NULL);
	summary = g_strdup_printf("evrep demo %s: Thrift binary protocol, unframed buffered "
							  "transport.\nDefault port %d, default database \"%s\".%s%s",
							  cfg->service_name, cfg->default_port, cfg->default_db,
							  cfg->summary ? "\n" : "", cfg->summary ? cfg->summary : "");
	g_option_context_set_summary(ctx, summary);
	g_free(summary);
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (cfg->options != NULL)
		g_option_context_add_main_entries(ctx, cfg->options, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &error))
	{
		fprintf(stderr, "%s: %s (try --help)\n", cfg->prog, error->message);
		g_clear_error(&error);
		g_option_context_free(ctx);
		return 2;
	}
	g_option_context_free(ctx);
	if (argc > 1)
	{
		fprintf(stderr, "%s: unexpected argument '%s' (try --help)\n", cfg->prog, argv[1]);
		return 2;
	}
	if (opt_port < 0)
		opt_port = cfg->default_port;
	if (opt_port < 1 || opt_port > 65535)
	{
		fprintf(stderr, "%s: --port must be between 1 and 65535\n", cfg->prog);
		return 2;
	}
	if (opt_max_conn < 1 || opt_customer_wait_ms < 0 || opt_statement_timeout_ms < 0 ||
		opt_idle_timeout_s < 0)
	{
		fprintf(stderr,
				"%s: --max-connections must be positive, "
				"--customer-wait-ms, --statement-timeout-ms and "
				"--idle-timeout not negative\n",
				cfg->prog);
		return 2;
	}
	if (opt_db == NULL)
		opt_db = g_strdup(cfg->default_db);
	if (opt_bind == NULL)
		opt_bind = g_strdup("127.0.0.1");
	return 0;
}

int
svc_main(int argc, char **argv, const SvcConfig *cfg)
{
	int lfd, wake_fd, open_now, signo, rc;

	g_cfg = cfg;
	svc_log_init(cfg->prog);
	rc = parse_options(argc, argv, cfg);
	if (rc != 0)
		return rc;
	g_settings.prog = cfg->prog;
	g_settings.service_name = cfg->service_name;
	g_settings.db = opt_db;
	g_settings.statement_timeout_ms = opt_statement_timeout_ms;
	g_settings.customer_wait_ms = opt_customer_wait_ms;
	if (cfg->setup != NULL && !cfg->setup(&g_settings))
		return 2;

	wake_fd = svc_shutdown_init();
	if (wake_fd < 0)
	{
		svc_log("pipe: %s", strerror(errno));
		return 1;
	}
	g_thrift_conf =
		g_object_new(THRIFT_TYPE_CONFIGURATION, "max_message_size", SVC_MAX_MESSAGE_SIZE, NULL);
	lfd = listen_on(opt_bind, opt_port);
	if (lfd < 0)
		return 1;
	svc_log("%s listening on %s:%d (max %d connections)", cfg->service_name, opt_bind, opt_port,
			opt_max_conn);
	if (cfg->start != NULL)
		cfg->start();

	while (svc_shutdown_signal() == 0)
	{
		struct pollfd pfd[2] = {
			{lfd, POLLIN, 0},
			{wake_fd, POLLIN, 0},
		};

		if (poll(pfd, 2, -1) < 0)
		{
			if (errno == EINTR)
				continue;
			svc_log("poll: %s", strerror(errno));
			break;
		}
		if (pfd[1].revents)
			break;
		if (pfd[0].revents & POLLIN)
			accept_one(lfd);
	}

	close(lfd);
	signo = svc_shutdown_signal();
	pthread_mutex_lock(&reg_mu);
	open_now = reg_active;
	pthread_mutex_unlock(&reg_mu);
	svc_log("shutting down (%s), %d connection(s) open",
			signo == SIGINT	   ? "SIGINT"
			: signo == SIGTERM ? "SIGTERM"
							   : "error",
			open_now);
	if (!stop_connections(10))
	{
		svc_log("connections still busy after 10 s; exiting anyway");
		return 1;
	}
	if (cfg->stop != NULL)
		cfg->stop();
	svc_log("stopped after %ld connection(s)", conn_serial);
	g_free(opt_db);
	g_free(opt_bind);
	return signo ? 0 : 1;
}
