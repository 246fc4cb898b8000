/*
 * svc_server.c - listening socket, thread per connection, shutdown
 *
 * ThriftSimpleServer (the only server class of Thrift c_glib 0.17) serves one
 * connection at a time and its ThriftServerSocket binds every interface.  We
 * listen ourselves (default 127.0.0.1), accept in the main thread and give
 * every accepted connection its own thread.  That thread wraps the fd in a
 * ThriftSocket + ThriftBufferedTransport + ThriftBinaryProtocol (unframed
 * binary, as the original prototype) and runs the processor until the peer
 * closes.  Each connection thread owns one libpq connection, opened lazily
 * at the first request, so requests from different clients run in parallel.
 *
 * Shutdown (SIGTERM/SIGINT): the signal handler writes to a self-pipe, the
 * accept loop stops, the listening socket is closed, every open client
 * socket is shut down (the threads' blocking reads return), and we wait (at
 * most 10 s) for the threads to finish their current request and close
 * their database connections.
 */
#define _GNU_SOURCE             /* accept4, pipe2 */
#include "svc_common.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <thrift/c_glib/protocol/thrift_binary_protocol.h>
#include <thrift/c_glib/transport/thrift_buffered_transport.h>
#include <thrift/c_glib/transport/thrift_socket.h>

#include <thrift/c_glib/thrift_configuration.h>

#include "svc_db_internal.h"

/* Requests are small (strings of at most 200 characters); refuse any string
 * or container claiming more than this before allocating for it. */
#define SVC_MAX_MESSAGE_SIZE (1024 * 1024)
/* Struct/container nesting accepted in a request (ours is 2 deep). */
#define SVC_MAX_DEPTH 16

/* ---- options ------------------------------------------------------------ */

static const SvcConfig *g_cfg;
static ThriftConfiguration *g_thrift_conf;
static int opt_port = -1;
static char *opt_db = NULL;
static char *opt_bind = NULL;
static int opt_max_conn = 64;
static int opt_customer_wait_ms = 2000;
static int opt_statement_timeout_ms = 10000;
static int opt_idle_timeout_s = 600;
static char *opt_mode = NULL;
static char *opt_peer_db = NULL;
static int opt_recovery_interval_ms = 5000;

int
svc_customer_wait_ms (void)
{
  return opt_customer_wait_ms;
}

/* ---- logging ------------------------------------------------------------ */

void
svc_log (const char *fmt, ...)
{
  char ts[32], msg[2048];
  struct timespec now;
  struct tm tm;
  va_list ap;

  clock_gettime (CLOCK_REALTIME, &now);
  localtime_r (&now.tv_sec, &tm);
  strftime (ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
  va_start (ap, fmt);
  g_vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  fprintf (stderr, "%s.%03ld %s[%d]: %s\n", ts, now.tv_nsec / 1000000L,
           g_cfg ? g_cfg->prog : "svc", (int) getpid (), msg);
}

/* ---- shutdown signalling ------------------------------------------------ */

static int wake_pipe[2] = { -1, -1 };
static volatile sig_atomic_t got_signal = 0;
static gint stopping = 0;          /* read by connection threads */

gboolean
svc_running (void)
{
  return !g_atomic_int_get (&stopping);
}

static void
on_signal (int signo)
{
  int saved = errno;
  ssize_t n;

  got_signal = signo;
  n = write (wake_pipe[1], "x", 1);
  (void) n;
  errno = saved;
}

/* ---- a binary protocol with a nesting limit ------------------------------ */

/*
 * thrift_protocol_skip() of c_glib 0.17 recurses without a depth limit, so
 * an unknown field made of deeply nested structs (3 bytes per level) would
 * overflow a thread's stack.  This subclass of ThriftBinaryProtocol counts
 * struct/list/set/map nesting on the read side and fails the request (and
 * thereby the connection) beyond SVC_MAX_DEPTH.  Same wire format.
 */
typedef struct
{
  ThriftBinaryProtocol parent;
  int depth;
} SvcProtocol;

typedef struct
{
  ThriftBinaryProtocolClass parent;
} SvcProtocolClass;

GType svc_protocol_get_type (void);
G_DEFINE_TYPE (SvcProtocol, svc_protocol, THRIFT_TYPE_BINARY_PROTOCOL)

#define PARENT_PROTOCOL_CLASS THRIFT_PROTOCOL_CLASS (svc_protocol_parent_class)

static gboolean
depth_enter (ThriftProtocol *protocol, GError **error)
{
  SvcProtocol *self = (SvcProtocol *) protocol;

  if (++self->depth > SVC_MAX_DEPTH)
    {
      g_set_error (error, THRIFT_PROTOCOL_ERROR,
                   THRIFT_PROTOCOL_ERROR_DEPTH_LIMIT,
                   "request nested deeper than %d levels", SVC_MAX_DEPTH);
      return FALSE;
    }
  return TRUE;
}

static void
depth_leave (ThriftProtocol *protocol)
{
  SvcProtocol *self = (SvcProtocol *) protocol;

  if (self->depth > 0)
    self->depth--;
}

/* The binary protocol of c_glib 0.17 returns "success" for an unversioned
 * (pre-strict) message header without setting name, type or seqid, which
 * the dispatch processor then uses uninitialised.  The prototype's clients
 * write strict headers, so refuse unversioned ones (an HTTP request, say). */
static gint32
svc_read_message_begin (ThriftProtocol *p, gchar **name,
                        ThriftMessageType *type, gint32 *seqid,
                        GError **error)
{
  gint32 ret;

  *name = NULL;
  ((SvcProtocol *) p)->depth = 0;
  ret = PARENT_PROTOCOL_CLASS->read_message_begin (p, name, type, seqid,
                                                   error);
  if (ret == 4)
    {
      g_set_error (error, THRIFT_PROTOCOL_ERROR,
                   THRIFT_PROTOCOL_ERROR_BAD_VERSION,
                   "message without a binary protocol version header");
      return -1;
    }
  return ret;
}

static gint32
svc_read_struct_begin (ThriftProtocol *p, gchar **name, GError **error)
{
  if (!depth_enter (p, error))
    return -1;
  return PARENT_PROTOCOL_CLASS->read_struct_begin (p, name, error);
}

static gint32
svc_read_struct_end (ThriftProtocol *p, GError **error)
{
  depth_leave (p);
  return PARENT_PROTOCOL_CLASS->read_struct_end (p, error);
}

static gint32
svc_read_list_begin (ThriftProtocol *p, ThriftType *et, guint32 *size,
                     GError **error)
{
  if (!depth_enter (p, error))
    return -1;
  return PARENT_PROTOCOL_CLASS->read_list_begin (p, et, size, error);
}

static gint32
svc_read_list_end (ThriftProtocol *p, GError **error)
{
  depth_leave (p);
  return PARENT_PROTOCOL_CLASS->read_list_end (p, error);
}

static gint32
svc_read_set_begin (ThriftProtocol *p, ThriftType *et, guint32 *size,
                    GError **error)
{
  if (!depth_enter (p, error))
    return -1;
  return PARENT_PROTOCOL_CLASS->read_set_begin (p, et, size, error);
}

static gint32
svc_read_set_end (ThriftProtocol *p, GError **error)
{
  depth_leave (p);
  return PARENT_PROTOCOL_CLASS->read_set_end (p, error);
}

static gint32
svc_read_map_begin (ThriftProtocol *p, ThriftType *kt, ThriftType *vt,
                    guint32 *size, GError **error)
{
  if (!depth_enter (p, error))
    return -1;
  return PARENT_PROTOCOL_CLASS->read_map_begin (p, kt, vt, size, error);
}

static gint32
svc_read_map_end (ThriftProtocol *p, GError **error)
{
  depth_leave (p);
  return PARENT_PROTOCOL_CLASS->read_map_end (p, error);
}

static void
svc_protocol_class_init (SvcProtocolClass *klass)
{
  ThriftProtocolClass *pc = THRIFT_PROTOCOL_CLASS (klass);

  pc->read_message_begin = svc_read_message_begin;
  pc->read_struct_begin = svc_read_struct_begin;
  pc->read_struct_end = svc_read_struct_end;
  pc->read_list_begin = svc_read_list_begin;
  pc->read_list_end = svc_read_list_end;
  pc->read_set_begin = svc_read_set_begin;
  pc->read_set_end = svc_read_set_end;
  pc->read_map_begin = svc_read_map_begin;
  pc->read_map_end = svc_read_map_end;
}

static void
svc_protocol_init (SvcProtocol *self)
{
  self->depth = 0;
}

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
static int reg_active = 0;         /* threads alive (registered or not)  */
static long conn_serial = 0;

static void
reg_unlink_locked (Conn *c)
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
conn_thread (void *arg)
{
  Conn *c = arg;
  SvcDb db, peer;
  ThriftSocket *sock;
  ThriftTransport *transport;
  ThriftProtocol *protocol;
  ThriftProcessor *processor;
  GError *error = NULL;

  svc_db_init (&db, opt_db, opt_statement_timeout_ms, g_cfg->prog);
  svc_db_init (&peer, opt_peer_db, opt_statement_timeout_ms, g_cfg->prog);

  sock = g_object_new (THRIFT_TYPE_SOCKET, NULL);
  sock->sd = c->fd;                 /* the ThriftSocket now owns the fd */
  /* the size limit is checked by the buffered transport, which the
   * protocol reads from; "configuration" makes it survive the reset that
   * every flush does */
  transport = g_object_new (THRIFT_TYPE_BUFFERED_TRANSPORT,
                            "transport", sock,
                            "r_buf_size", 4096,
                            "w_buf_size", 16384,
                            "configuration", g_thrift_conf,
                            "remainingmessagesize", (glong) SVC_MAX_MESSAGE_SIZE,
                            "knowmessagesize", (glong) SVC_MAX_MESSAGE_SIZE,
                            NULL);
  protocol = g_object_new (svc_protocol_get_type (),
                           "transport", transport, NULL);
  processor = g_cfg->make_processor (&db, svc_twopc_enabled () ? &peer
                                                               : NULL);

  /* peek blocks until a request arrives or the peer closes (or shutdown()
   * from the main thread); this also avoids the processor's warning about
   * a failed read at a normal end of connection. */
  while (svc_running ()
         && thrift_transport_peek (transport, &error)
         && thrift_processor_process (processor, protocol, protocol, &error))
    ;
  if (error != NULL)
    {
      if (svc_running ())
        svc_log ("connection closed: %s", error->message);
      g_clear_error (&error);
    }

  /* Unregister before the fd is closed, so the main thread never calls
   * shutdown() on a descriptor number that may already be reused. */
  pthread_mutex_lock (&reg_mu);
  reg_unlink_locked (c);
  pthread_mutex_unlock (&reg_mu);

  g_object_unref (processor);
  g_object_unref (protocol);
  g_object_unref (transport);
  thrift_socket_close (THRIFT_TRANSPORT (sock), NULL);
  g_object_unref (sock);
  svc_db_finish (&db);
  svc_db_finish (&peer);
  g_free (c);

  pthread_mutex_lock (&reg_mu);
  reg_active--;
  pthread_cond_broadcast (&reg_cv);
  pthread_mutex_unlock (&reg_mu);
  return NULL;
}

/* ---- listening ---------------------------------------------------------- */

static int
listen_on (const char *host, int port)
{
  struct addrinfo hints, *res = NULL, *ai;
  char portstr[16];
  int fd = -1, rc, one = 1;

  memset (&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  g_snprintf (portstr, sizeof portstr, "%d", port);
  rc = getaddrinfo (host, portstr, &hints, &res);
  if (rc != 0)
    {
      svc_log ("cannot resolve bind address %s: %s", host, gai_strerror (rc));
      return -1;
    }
  for (ai = res; ai != NULL; ai = ai->ai_next)
    {
      fd = socket (ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                   ai->ai_protocol);
      if (fd < 0)
        continue;
      setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (bind (fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen (fd, 128) == 0)
        break;
      svc_log ("cannot listen on %s:%d: %s", host, port, strerror (errno));
      close (fd);
      fd = -1;
    }
  freeaddrinfo (res);
  if (fd >= 0)
    fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

static void
accept_one (int lfd)
{
  Conn *c;
  pthread_t tid;
  pthread_attr_t attr;
  int fd, one = 1, rc;

  fd = accept4 (lfd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0)
    {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS
          || errno == ENOMEM)
        {
          svc_log ("accept: %s (backing off)", strerror (errno));
          g_usleep (100 * 1000);
        }
      return;                   /* EAGAIN, EINTR, ECONNABORTED, ... */
    }
  /* accepted sockets do not inherit O_NONBLOCK on Linux; be explicit */
  fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) & ~O_NONBLOCK);
  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (opt_idle_timeout_s > 0)
    {
      /* a client silent this long (between or inside requests) is dropped,
       * so a stuck or half-sent request cannot hold a thread forever */
      struct timeval tv = { opt_idle_timeout_s, 0 };
      setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }

  pthread_mutex_lock (&reg_mu);
  if (reg_active >= opt_max_conn)
    {
      pthread_mutex_unlock (&reg_mu);
      svc_log ("refusing connection: %d connections open (--max-connections)",
               opt_max_conn);
      close (fd);
      return;
    }
  c = g_new0 (Conn, 1);
  c->fd = fd;
  c->registered = TRUE;
  c->next = reg_head;
  if (reg_head)
    reg_head->prev = c;
  reg_head = c;
  reg_active++;
  conn_serial++;
  pthread_mutex_unlock (&reg_mu);

  pthread_attr_init (&attr);
  pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
  rc = pthread_create (&tid, &attr, conn_thread, c);
  pthread_attr_destroy (&attr);
  if (rc != 0)
    {
      svc_log ("cannot start connection thread: %s", strerror (rc));
      pthread_mutex_lock (&reg_mu);
      reg_unlink_locked (c);
      reg_active--;
      pthread_mutex_unlock (&reg_mu);
      close (fd);
      g_free (c);
    }
}

static gboolean
stop_connections (int timeout_s)
{
  struct timespec deadline;
  gboolean ok = TRUE;
  Conn *c;

  clock_gettime (CLOCK_REALTIME, &deadline);
  deadline.tv_sec += timeout_s;
  pthread_mutex_lock (&reg_mu);
  g_atomic_int_set (&stopping, 1);
  for (c = reg_head; c != NULL; c = c->next)
    shutdown (c->fd, SHUT_RDWR);
  while (reg_active > 0)
    if (pthread_cond_timedwait (&reg_cv, &reg_mu, &deadline) == ETIMEDOUT)
      {
        ok = FALSE;
        break;
      }
  pthread_mutex_unlock (&reg_mu);
  return ok;
}

/* ---- main --------------------------------------------------------------- */

int
svc_main (int argc, char **argv, const SvcConfig *cfg)
{
  GOptionContext *ctx;
  GError *error = NULL;
  struct sigaction sa;
  int lfd, open_now;
  char *summary;
  GOptionEntry entries[] = {
    { "port", 'p', 0, G_OPTION_ARG_INT, &opt_port,
      "TCP port to listen on", "PORT" },
    { "db", 'd', 0, G_OPTION_ARG_STRING, &opt_db,
      "libpq connection string of the service database", "CONNINFO" },
    { "bind", 'b', 0, G_OPTION_ARG_STRING, &opt_bind,
      "address to listen on (default 127.0.0.1; 0.0.0.0 for all)", "ADDR" },
    { "max-connections", 0, 0, G_OPTION_ARG_INT, &opt_max_conn,
      "client connections served at once, each with its own database "
      "connection (default 64)", "N" },
    { "statement-timeout-ms", 0, 0, G_OPTION_ARG_INT,
      &opt_statement_timeout_ms,
      "statement_timeout of the service's database sessions (default 10000)",
      "MS" },
    { "idle-timeout", 0, 0, G_OPTION_ARG_INT, &opt_idle_timeout_s,
      "drop a client connection silent for this long (default 600; "
      "0: never)", "S" },
    { "customer-wait-ms", 0, 0, G_OPTION_ARG_INT, &opt_customer_wait_ms,
      "OrderService.createOrder: how long to wait for the customer to appear "
      "in the local replica (default 2000)", "MS" },
    { "mode", 0, 0, G_OPTION_ARG_STRING, &opt_mode,
      "evrep (default): write the own database only, evrep replicates; "
      "2pc: write the own and the peer database in one two-phase commit",
      "MODE" },
    { "peer-db", 0, 0, G_OPTION_ARG_STRING, &opt_peer_db,
      "--mode 2pc: libpq connection string of the other service's database",
      "CONNINFO" },
    { "recovery-interval-ms", 0, 0, G_OPTION_ARG_INT,
      &opt_recovery_interval_ms,
      "--mode 2pc: how often in-doubt transactions are looked for and "
      "settled (default 5000; also once at start)", "MS" },
    { NULL, 0, 0, 0, NULL, NULL, NULL }
  };

  g_cfg = cfg;
  setvbuf (stderr, NULL, _IOLBF, 0);

  ctx = g_option_context_new (NULL);
  summary = g_strdup_printf (
    "evrep demo %s: Thrift binary protocol, unframed buffered transport.\n"
    "Default port %d, default database \"%s\".",
    cfg->service_name, cfg->default_port, cfg->default_db);
  g_option_context_set_summary (ctx, summary);
  g_free (summary);
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "%s: %s (try --help)\n", cfg->prog, error->message);
      g_clear_error (&error);
      g_option_context_free (ctx);
      return 2;
    }
  g_option_context_free (ctx);
  if (argc > 1)
    {
      fprintf (stderr, "%s: unexpected argument '%s' (try --help)\n",
               cfg->prog, argv[1]);
      return 2;
    }
  if (opt_port < 0)
    opt_port = cfg->default_port;
  if (opt_port < 1 || opt_port > 65535)
    {
      fprintf (stderr, "%s: --port must be between 1 and 65535\n", cfg->prog);
      return 2;
    }
  if (opt_max_conn < 1 || opt_customer_wait_ms < 0
      || opt_statement_timeout_ms < 0 || opt_idle_timeout_s < 0)
    {
      fprintf (stderr, "%s: --max-connections must be positive, "
               "--customer-wait-ms, --statement-timeout-ms and "
               "--idle-timeout not negative\n", cfg->prog);
      return 2;
    }
  if (opt_db == NULL)
    opt_db = g_strdup (cfg->default_db);
  if (opt_bind == NULL)
    opt_bind = g_strdup ("127.0.0.1");
  if (opt_mode != NULL && strcmp (opt_mode, "2pc") == 0)
    {
      if (!svc_twopc_setup (cfg->prog, cfg->service_name, opt_db,
                            opt_peer_db, opt_statement_timeout_ms,
                            opt_recovery_interval_ms))
        return 2;
    }
  else if (opt_mode != NULL && strcmp (opt_mode, "evrep") != 0)
    {
      fprintf (stderr, "%s: --mode must be evrep or 2pc (try --help)\n",
               cfg->prog);
      return 2;
    }
  else if (opt_peer_db != NULL)
    {
      fprintf (stderr, "%s: --peer-db is only used with --mode 2pc\n",
               cfg->prog);
      return 2;
    }

  if (pipe2 (wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
    {
      svc_log ("pipe: %s", strerror (errno));
      return 1;
    }
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGINT, &sa, NULL);
  signal (SIGPIPE, SIG_IGN);     /* a vanished client must not kill us */

  g_thrift_conf = g_object_new (THRIFT_TYPE_CONFIGURATION,
                                "max_message_size", SVC_MAX_MESSAGE_SIZE,
                                NULL);
  lfd = listen_on (opt_bind, opt_port);
  if (lfd < 0)
    return 1;
  svc_log ("%s listening on %s:%d (max %d connections, mode %s)",
           cfg->service_name, opt_bind, opt_port, opt_max_conn,
           svc_twopc_enabled () ? "2pc" : "evrep");
  svc_twopc_start_recovery ();

  while (!got_signal)
    {
      struct pollfd pfd[2] = {
        { lfd, POLLIN, 0 },
        { wake_pipe[0], POLLIN, 0 },
      };
      if (poll (pfd, 2, -1) < 0)
        {
          if (errno == EINTR)
            continue;
          svc_log ("poll: %s", strerror (errno));
          break;
        }
      if (pfd[1].revents)
        break;
      if (pfd[0].revents & POLLIN)
        accept_one (lfd);
    }

  close (lfd);
  pthread_mutex_lock (&reg_mu);
  open_now = reg_active;
  pthread_mutex_unlock (&reg_mu);
  svc_log ("shutting down (%s), %d connection(s) open",
           got_signal == SIGINT ? "SIGINT" : got_signal == SIGTERM
           ? "SIGTERM" : "error", open_now);
  if (!stop_connections (10))
    {
      svc_log ("connections still busy after 10 s; exiting anyway");
      return 1;
    }
  svc_twopc_stop ();
  svc_log ("stopped after %ld connection(s)", conn_serial);
  g_free (opt_db);
  g_free (opt_bind);
  g_free (opt_mode);
  g_free (opt_peer_db);
  return got_signal ? 0 : 1;
}
