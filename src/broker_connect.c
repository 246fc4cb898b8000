/*
 * broker_connect.c
 *		Making an AMQP connection for an evrep worker: the URL list and the
 *		password file, TLS, the login, the node lock queue, the role's
 *		channels and declarations, the switch to a queue of another type;
 *		closing it, and the backoff between attempts.
 *
 * Everything after that (frames, confirms, deliveries, the workers'
 * calls) is broker.c's; broker_int.h is what the two share.
 */
#include "postgres.h"

#include <unistd.h>

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>

#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "broker.h"
#include "broker_int.h"
#include "broker_url.h"
#include "evrep.h"

#define FRAME_MAX 131072
#define CLOSE_TIMEOUT_S 2
#define BACKOFF_MIN_MS 100

/* Used when peer verification is on and evrep.ssl_ca_file is empty. */
#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

static bool take_node_lock(BrokerConn *conn);

/* ---- settings ---- */

static char *
settings_fingerprint(void)
{
	return psprintf("%s\n%s\n%s\n%s\n%s\n%s\n%s\n%d\n%d\n%d\n%d\n%d\n%d\n%d", evrep_broker_url,
					evrep_broker_password_file, evrep_exchange, evrep_node_name, evrep_ssl_ca_file,
					evrep_ssl_cert_file, evrep_ssl_key_file, (int) evrep_ssl_verify_peer,
					(int) evrep_ssl_verify_hostname, evrep_heartbeat, evrep_prefetch,
					evrep_queue_type, evrep_broker_timeout, evrep_confirm_timeout);
}

bool
broker_settings_changed(BrokerConn *conn)
{
	char *now = settings_fingerprint();
	bool changed = strcmp(now, conn->settings) != 0;

	pfree(now);
	return changed;
}

/* ---- TLS and login ---- */

static amqp_socket_t *
new_ssl_socket(BrokerConn *conn)
{
	amqp_socket_t *sock = amqp_ssl_socket_new(conn->state);
	const char *ca = evrep_ssl_ca_file;
	int rc;

	if (sock == NULL)
	{
		broker_conn_failed(conn, "could not create TLS socket");
		return NULL;
	}
	amqp_ssl_socket_set_verify_peer(sock, evrep_ssl_verify_peer);
	amqp_ssl_socket_set_verify_hostname(sock, evrep_ssl_verify_hostname);
	rc = amqp_ssl_socket_set_ssl_versions(sock, AMQP_TLSv1_2, AMQP_TLSvLATEST);
	if (rc != AMQP_STATUS_OK)
	{
		broker_status_failed(conn, "restricting TLS versions", rc);
		return NULL;
	}

	/* rabbitmq-c loads no default trust store */
	if (ca[0] == '\0' && evrep_ssl_verify_peer && access(SYSTEM_CA_BUNDLE, R_OK) == 0)
		ca = SYSTEM_CA_BUNDLE;
	if (ca[0] != '\0' && (rc = amqp_ssl_socket_set_cacert(sock, ca)) != AMQP_STATUS_OK)
	{
		broker_status_failed(conn, psprintf("loading CA file \"%s\"", ca), rc);
		return NULL;
	}

	if (evrep_ssl_cert_file[0] != '\0' || evrep_ssl_key_file[0] != '\0')
	{
		if (evrep_ssl_cert_file[0] == '\0' || evrep_ssl_key_file[0] == '\0')
		{
			broker_conn_failed(conn,
							   "evrep.ssl_cert_file and evrep.ssl_key_file must be set together");
			return NULL;
		}
		rc = amqp_ssl_socket_set_key(sock, evrep_ssl_cert_file, evrep_ssl_key_file);
		if (rc != AMQP_STATUS_OK)
		{
			broker_status_failed(conn, "loading client certificate and key", rc);
			return NULL;
		}
	}
	return sock;
}

static amqp_table_entry_t
bool_entry(const char *key, bool value)
{
	amqp_table_entry_t e;

	e.key = amqp_cstring_bytes(key);
	e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
	e.value.value.boolean = value;
	return e;
}

/*
 * The capabilities make RabbitMQ tell us when it blocks publishing and when
 * it cancels our consumer (queue deleted); without consumer_cancel_notify a
 * cancelled consumer just stops receiving, silently.
 */
static bool
login(BrokerConn *conn, struct amqp_connection_info *info)
{
	amqp_table_entry_t caps[3];
	amqp_table_entry_t props[2];
	amqp_table_t caps_table;
	amqp_table_t props_table;
	amqp_rpc_reply_t r;

	caps[0] = bool_entry("connection.blocked", true);
	caps[1] = bool_entry("consumer_cancel_notify", true);
	caps[2] = bool_entry("basic.nack", true);
	caps_table.num_entries = lengthof(caps);
	caps_table.entries = caps;

	props[0].key = amqp_cstring_bytes("connection_name");
	props[0].value.kind = AMQP_FIELD_KIND_UTF8;
	props[0].value.value.bytes =
		amqp_cstring_bytes(psprintf("evrep %s %s", role_name(conn), conn->node_name));
	props[1].key = amqp_cstring_bytes("capabilities");
	props[1].value.kind = AMQP_FIELD_KIND_TABLE;
	props[1].value.value.table = caps_table;
	props_table.num_entries = lengthof(props);
	props_table.entries = props;

	r = amqp_login_with_properties(conn->state, info->vhost, 0, FRAME_MAX, evrep_heartbeat,
								   &props_table, AMQP_SASL_METHOD_PLAIN, info->user,
								   info->password);
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		broker_conn_failed(conn, psprintf("login: %s", broker_describe_reply(r)));
		return false;
	}
	conn->logged_in = true;
	conn->heartbeat_ms = amqp_get_heartbeat(conn->state) * 1000;
	broker_heard(conn);
	return true;
}

/*
 * The kernel of a hung node still accepts connections: connect succeeds
 * and the handshake waits for an answer that does not come.  So the
 * connect and the handshake wait evrep.broker_timeout at most, after which
 * broker_connect tries the next node.  An RPC may wait for the cluster
 * rather than the node (a consume for a quorum queue electing a leader, a
 * new binding for Mnesia): evrep.confirm_timeout.
 */
static bool
open_connection(BrokerConn *conn, struct amqp_connection_info *info)
{
	amqp_socket_t *sock;
	struct timeval tv = {conn->timeout_ms / 1000, (conn->timeout_ms % 1000) * 1000};
	struct timeval rpc_tv = {conn->reply_ms / 1000, (conn->reply_ms % 1000) * 1000};
	int rc;

	conn->state = amqp_new_connection();
	if (conn->state == NULL)
	{
		broker_conn_failed(conn, "out of memory");
		return false;
	}
	sock = info->ssl ? new_ssl_socket(conn) : amqp_tcp_socket_new(conn->state);
	if (sock == NULL)
	{
		broker_conn_failed(conn, "could not create socket");
		return false;
	}
	amqp_set_handshake_timeout(conn->state, &tv);
	amqp_set_rpc_timeout(conn->state, &rpc_tv);

	rc = amqp_socket_open_noblock(sock, info->host, info->port, &tv);
	if (rc != AMQP_STATUS_OK)
	{
		broker_status_failed(conn, "could not open a connection", rc);
		return false;
	}
	broker_set_write_timeout(conn, conn->timeout_ms);
	return login(conn, info);
}

/* ---- channels and declarations ---- */

bool
broker_open_channel(BrokerConn *conn, amqp_channel_t channel)
{
	amqp_channel_open(conn->state, channel);
	return broker_rpc_ok(conn, "opening channel");
}

static bool
declare_exchange(BrokerConn *conn, amqp_channel_t channel)
{
	amqp_exchange_declare(conn->state, channel, amqp_cstring_bytes(conn->exchange),
						  amqp_cstring_bytes("topic"), false, /* passive */
						  true,								  /* durable */
						  false,							  /* auto-delete */
						  false,							  /* internal */
						  amqp_empty_table);
	return broker_rpc_ok(conn, psprintf("declaring exchange \"%s\"", conn->exchange));
}

static bool
setup_publisher(BrokerConn *conn)
{
	if (!take_node_lock(conn) || !broker_open_channel(conn, PUBLISH_CHANNEL) ||
		!broker_open_channel(conn, LIVENESS_CHANNEL) || !declare_exchange(conn, PUBLISH_CHANNEL))
		return false;
	amqp_confirm_select(conn->state, PUBLISH_CHANNEL);
	if (!broker_rpc_ok(conn, "enabling publisher confirms"))
		return false;
	conn->next_tag = conn->conf_base = conn->conf_low = 1;
	return true;
}

/*
 * A quorum queue is replicated by Raft over the cluster's nodes: losing one
 * broker node loses nothing.  Its type is fixed at declaration (the type is
 * an x-queue-type argument of kind string; RabbitMQ refuses a bytes kind).
 */
static bool
declare_queue(BrokerConn *conn)
{
	amqp_table_entry_t arg;
	amqp_table_t args = amqp_empty_table;

	if (conn->queue_type == EVREP_QUEUE_QUORUM)
	{
		arg.key = amqp_cstring_bytes("x-queue-type");
		arg.value.kind = AMQP_FIELD_KIND_UTF8;
		arg.value.value.bytes = amqp_cstring_bytes("quorum");
		args.num_entries = 1;
		args.entries = &arg;
	}
	amqp_queue_declare(conn->state, TOPOLOGY_CHANNEL, amqp_cstring_bytes(conn->queue),
					   false, /* passive */
					   true,  /* durable */
					   false, /* exclusive */
					   false, /* auto-delete */
					   args);
	return broker_rpc_ok(conn, psprintf("declaring queue \"%s\"", conn->queue));
}

/*
 * Does queue exist, and how many messages are ready in it?  A passive
 * declare of a missing queue closes the channel with 404: the probe has a
 * channel of its own and acknowledges that close.  False also when the
 * connection failed (conn->broken says which).
 */
bool
broker_probe_queue(BrokerConn *conn, const char *queue, uint32 *ready)
{
	amqp_queue_declare_ok_t *ok;
	amqp_rpc_reply_t r;

	if (!broker_open_channel(conn, PROBE_CHANNEL))
		return false;
	ok = amqp_queue_declare(conn->state, PROBE_CHANNEL, amqp_cstring_bytes(queue), true, false,
							false, false, amqp_empty_table);
	r = amqp_get_rpc_reply(conn->state);
	if (r.reply_type == AMQP_RESPONSE_NORMAL)
	{
		*ready = ok->message_count;
		amqp_channel_close(conn->state, PROBE_CHANNEL, AMQP_REPLY_SUCCESS);
		return broker_rpc_ok(conn, "closing the probe channel");
	}
	if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
		((amqp_channel_close_t *) r.reply.decoded)->reply_code == AMQP_NOT_FOUND)
	{
		amqp_channel_close_ok_t close_ok;

		if (amqp_send_method(conn->state, PROBE_CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok) !=
			AMQP_STATUS_OK)
			broker_conn_failed(conn, "acknowledging the close of the probe channel");
		return false;
	}
	broker_conn_failed(conn, psprintf("probing queue \"%s\": %s", queue, broker_describe_reply(r)));
	return false;
}

/* Acknowledges a channel the broker closed; false if even that failed. */
static bool
ack_close(BrokerConn *conn, amqp_channel_t channel, const char *what)
{
	amqp_channel_close_ok_t close_ok;

	if (amqp_send_method(conn->state, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok) ==
		AMQP_STATUS_OK)
		return true;
	broker_conn_failed(conn, what);
	return false;
}

/*
 * One server speaks as a node.  Two servers with one evrep.node_name (a
 * copy of a server started beside it, an old primary still running after
 * its standby was promoted) would publish two histories of its streams and
 * split its queue between them, each missing what the other took; and
 * RabbitMQ ignores the exclusive flag of a consumer on a quorum queue.  So
 * each worker holds an exclusive queue, evrep.<node>.lock.<role>, for the
 * life of its connection: the second server's workers are refused
 * (RESOURCE_LOCKED), say so, and retry; its writers go on filling its
 * outbox.  Without the permission to declare the lock (an older
 * least-privilege recipe), a worker goes on unguarded, once said.
 */
static bool lock_held_before = false; /* this process held its lock */
static bool warned_lock_permission = false;

static char *
lock_queue_name(BrokerConn *conn)
{
	return psprintf("evrep.%s.lock.%s", conn->node_name, role_name(conn));
}

static void
warn_lock_permission(BrokerConn *conn)
{
	char *name = lock_queue_name(conn);

	if (!warned_lock_permission)
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("evrep %s may not declare its lock queue \"%s\"", role_name(conn), name),
				 errdetail("A second server with evrep.node_name = '%s' would go unnoticed "
						   "and take part of this node's deliveries.",
						   conn->node_name),
				 errhint("Grant the broker user configure, write and read on \"%s\".", name)));
	warned_lock_permission = true;
}

/*
 * A process that held the lock before and connects again (its broker node
 * stopped answering) asks for the lock without waiting for the answer.
 * Creating a queue is a write to the cluster's metadata, which waits for
 * every node, the hung one included, until it thaws or is declared down:
 * waiting would cost the whole hang.  Most likely the broker still holds
 * the lock for the old connection to the hung node anyway; then
 * broker_lock_refused asks again later, so that the lock is this
 * process's again once that connection is gone.  The channel is opened and
 * the queue declared with nowait: only a refusal (a channel.close) answers.
 */
bool
broker_ask_lock(BrokerConn *conn)
{
	amqp_channel_open_t open = {0};
	amqp_queue_declare_t declare = {0};
	int rc;

	declare.queue = amqp_cstring_bytes(lock_queue_name(conn));
	declare.exclusive = true; /* this connection's */
	declare.auto_delete = true;
	declare.nowait = true;
	declare.arguments = amqp_empty_table;
	conn->lock_retry_at = 0;
	rc = amqp_send_method(conn->state, LOCK_CHANNEL, AMQP_CHANNEL_OPEN_METHOD, &open);
	if (rc == AMQP_STATUS_OK)
		rc = amqp_send_method(conn->state, LOCK_CHANNEL, AMQP_QUEUE_DECLARE_METHOD, &declare);
	if (rc == AMQP_STATUS_OK)
		return true;
	broker_status_failed(conn, "asking for the lock queue", rc);
	return false;
}

/* The broker refused broker_ask_lock's declare, closing LOCK_CHANNEL. */
bool
broker_lock_refused(BrokerConn *conn, int code)
{
	if (!ack_close(conn, LOCK_CHANNEL, "acknowledging the close of the lock channel"))
		return false;
	if (code == AMQP_ACCESS_REFUSED)
	{
		warn_lock_permission(conn);
		return true;
	}
	if (code != AMQP_RESOURCE_LOCKED)
	{
		broker_conn_failed(conn, psprintf("declaring queue \"%s\": the broker closed the channel "
										  "with code %d",
										  lock_queue_name(conn), code));
		return false;
	}
	if (!conn->lock_waited)
		ereport(LOG, (errmsg("evrep %s goes on while the broker holds lock queue \"%s\" for its "
							 "connection to a node that stopped answering; it asks again every "
							 "%d s",
							 role_name(conn), lock_queue_name(conn), LOCK_RETRY_MS / 1000)));
	conn->lock_waited = true;
	conn->lock_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), LOCK_RETRY_MS);
	return true;
}

/*
 * A process's first lock is waited for: until the broker answers, it does
 * not know whether it is the second server.
 */
static bool
take_node_lock(BrokerConn *conn)
{
	char *name = lock_queue_name(conn);
	amqp_rpc_reply_t r;
	int code;

	if (lock_held_before)
		return broker_ask_lock(conn);
	if (!broker_open_channel(conn, LOCK_CHANNEL))
		return false;
	amqp_queue_declare(conn->state, LOCK_CHANNEL, amqp_cstring_bytes(name), false, /* passive */
					   false,													   /* durable */
					   true, /* exclusive: this connection's */
					   true, /* auto-delete */
					   amqp_empty_table);
	r = amqp_get_rpc_reply(conn->state);
	if (r.reply_type == AMQP_RESPONSE_NORMAL)
	{
		lock_held_before = true;
		return true;
	}
	if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || r.reply.id != AMQP_CHANNEL_CLOSE_METHOD)
	{
		broker_conn_failed(conn,
						   psprintf("declaring queue \"%s\": %s", name, broker_describe_reply(r)));
		return false;
	}
	code = ((amqp_channel_close_t *) r.reply.decoded)->reply_code;
	if (!ack_close(conn, LOCK_CHANNEL, "acknowledging the close of the lock channel"))
		return false;
	if (code == AMQP_ACCESS_REFUSED)
	{
		warn_lock_permission(conn);
		return true;
	}
	broker_conn_failed(conn,
					   psprintf("another connection holds \"%s\": a second server runs with "
								"evrep.node_name = '%s' (a copy started beside this one, or an old "
								"primary?); this one's %s waits until it stops",
								name, conn->node_name, role_name(conn)));
	return false;
}

/*
 * Consumes the node's queue, or first the queue of the former type while
 * one is left: a change of evrep.queue_type must not reorder a stream, so
 * the old queue is emptied before the new one is read (broker_bind binds
 * the new one and unbinds the old, so the new one collects what comes
 * meanwhile), then deleted (broker_drain_step).
 */
static bool
setup_consumer(BrokerConn *conn)
{
	int prefetch = Min(Max(evrep_prefetch, 1), UINT16_MAX);
	char *former = evrep_queue_name(conn->queue_type == EVREP_QUEUE_QUORUM ? EVREP_QUEUE_CLASSIC
																		   : EVREP_QUEUE_QUORUM);
	uint32 ready;
	amqp_basic_consume_ok_t *consuming;
	const char *from;

	if (!broker_open_channel(conn, CONSUME_CHANNEL) ||
		!broker_open_channel(conn, TOPOLOGY_CHANNEL) ||
		!broker_open_channel(conn, LIVENESS_CHANNEL) || !declare_exchange(conn, TOPOLOGY_CHANNEL) ||
		!declare_queue(conn))
		return false;
	if (broker_probe_queue(conn, former, &ready))
		conn->drain_queue = former;
	else if (conn->broken)
		return false;
	if (!take_node_lock(conn))
		return false;
	from = conn->drain_queue ? conn->drain_queue : conn->queue;
	amqp_basic_qos(conn->state, CONSUME_CHANNEL, 0, (uint16_t) prefetch, false);
	if (!broker_rpc_ok(conn, "setting prefetch"))
		return false;
	consuming = amqp_basic_consume(conn->state, CONSUME_CHANNEL, amqp_cstring_bytes(from),
								   amqp_empty_bytes, false, /* no-local */
								   false,					/* no-ack: we ack after commit */
								   true,					/* exclusive */
								   amqp_empty_table);
	if (!broker_rpc_ok(conn, psprintf("consuming from queue \"%s\"", from)))
		return false;
	conn->consumer_tag = bytes_to_cstring(consuming->consumer_tag);
	return true;
}

/* ---- connecting ---- */

static BrokerConn *
new_conn(BrokerRole role)
{
	MemoryContext cxt =
		AllocSetContextCreate(TopMemoryContext, "evrep broker connection", ALLOCSET_SMALL_SIZES);
	BrokerConn *conn = MemoryContextAllocZero(cxt, sizeof(BrokerConn));
	MemoryContext old = MemoryContextSwitchTo(cxt);

	conn->role = role;
	conn->cxt = cxt;
	conn->deliv_cxt = AllocSetContextCreate(cxt, "evrep deliveries", ALLOCSET_DEFAULT_SIZES);
	conn->settings = settings_fingerprint();
	conn->where = pstrdup("(unparsed evrep.broker_url)");
	conn->exchange = pstrdup(evrep_exchange);
	conn->node_name = pstrdup(evrep_node_name);
	conn->queue_type = evrep_queue_type;
	conn->queue = evrep_queue_name(conn->queue_type);
	conn->timeout_ms = evrep_broker_timeout;
	conn->reply_ms = evrep_confirm_timeout;
	MemoryContextSwitchTo(old);
	return conn;
}

/*
 * The password from evrep.broker_password_file replaces the URL's, so that
 * the URL in postgresql.conf holds none (PostgreSQL logs a reloaded
 * setting's new value).  First line, without its newline; palloc'd.
 */
static char *
read_password_file(BrokerConn *conn)
{
	FILE *f;
	char buf[1024];
	char *pw = NULL;

	f = AllocateFile(evrep_broker_password_file, "r");
	if (f == NULL)
	{
		broker_conn_failed(conn, psprintf("could not open evrep.broker_password_file \"%s\": %m",
										  evrep_broker_password_file));
		return NULL;
	}
	if (fgets(buf, sizeof(buf), f) != NULL)
	{
		buf[strcspn(buf, "\r\n")] = '\0';
		pw = pstrdup(buf);
	}
	else
		broker_conn_failed(conn, psprintf("evrep.broker_password_file \"%s\" is empty",
										  evrep_broker_password_file));
	explicit_bzero(buf, sizeof(buf));
	FreeFile(f);
	return pw;
}

/* Where we connect, for logs; the URL minus its password. */
static char *
describe_target(struct amqp_connection_info *info)
{
	return psprintf("%s://%s@%s:%d vhost \"%s\"", info->ssl ? "amqps" : "amqp", info->user,
					info->host, info->port, info->vhost);
}

/* One connection attempt to one URL of the list; NULL (logged) on failure. */
static BrokerConn *
connect_url(BrokerRole role, const char *list, int index)
{
	BrokerConn *conn = new_conn(role);
	MemoryContext old = MemoryContextSwitchTo(conn->cxt);
	struct amqp_connection_info info;
	char *url = broker_url_nth(list, index); /* parsed in place */
	size_t url_len = strlen(url);
	bool ok;

	/* never echo the URL: it may hold the password */
	if (url[0] == '\0')
		broker_conn_failed(conn, "evrep.broker_url is not set");
	else if (amqp_parse_url(url, &info) != AMQP_STATUS_OK)
		broker_conn_failed(
			conn, psprintf("URL %d of evrep.broker_url is not a valid amqp:// or amqps:// URL",
						   index + 1));
	else if (evrep_broker_password_file[0] != '\0' &&
			 (info.password = read_password_file(conn)) == NULL)
		; /* conn_failed said why */
	else
	{
		conn->where = describe_target(&info);
		conn->user = pstrdup(info.user);
		if (open_connection(conn, &info))
			(void) (role == BROKER_PUBLISHER ? setup_publisher(conn) : setup_consumer(conn));
	}
	ok = !conn->broken;
	/* the parsed copy holds the password: do not keep it around */
	explicit_bzero(url, url_len);
	pfree(url);
	MemoryContextSwitchTo(old);
	if (ok)
		return conn;
	broker_close(conn);
	return NULL;
}

/*
 * Tries the URLs of the list in turn (broker_url.h says in which order)
 * until one connects.
 */
BrokerConn *
broker_connect(BrokerRole role)
{
	int n = Max(broker_url_count(evrep_broker_url), 1);
	int first = broker_url_start(n);

	for (int i = 0; i < n; i++)
	{
		int index = (first + i) % n;
		BrokerConn *conn = connect_url(role, evrep_broker_url, index);

		if (conn == NULL)
			continue;
		broker_url_connected(index, n);
		conn->set_up = true;
		broker_log_next_failure();
		ereport(LOG,
				(errmsg("evrep %s connected to broker %s (heartbeat %d s)%s", role_name(conn),
						conn->where, conn->heartbeat_ms / 1000,
						conn->drain_queue ? ", draining the queue of the former type first" : "")));
		return conn;
	}
	return NULL;
}

void
broker_close(BrokerConn *conn)
{
	if (conn == NULL)
		return;
	if (conn->state != NULL)
	{
		if (conn->logged_in && !conn->broken)
		{
			struct timeval tv = {CLOSE_TIMEOUT_S, 0};

			amqp_set_rpc_timeout(conn->state, &tv);
			(void) amqp_connection_close(conn->state, AMQP_REPLY_SUCCESS);
		}
		amqp_destroy_connection(conn->state);
	}
	MemoryContextDelete(conn->cxt);
}

/* ---- backoff ---- */

void
broker_backoff_sleep(BrokerBackoff *backoff)
{
	int cap = Max(evrep_reconnect_max, BACKOFF_MIN_MS);
	int delay = Min(Max(backoff->delay_ms, BACKOFF_MIN_MS), cap);
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay);

	for (;;)
	{
		long left = ms_until(end);
		int rc;

		/* a reload may have fixed the URL: do not sit out the delay */
		if (left <= 0 || ConfigReloadPending)
			break;
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, left,
					   PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	backoff->delay_ms = Min(delay * 2, cap);
}

void
broker_backoff_reset(BrokerBackoff *backoff)
{
	backoff->delay_ms = 0;
}
