/*
 * broker.c
 *		AMQP connection to RabbitMQ for the evrep workers (rabbitmq-c 0.11).
 *
 * Every frame the broker sends goes through one dispatcher (on_frame), so
 * that confirms, returns, deliveries and closes are handled the same way
 * whichever call happened to read them.  Synchronous RPCs use the library's
 * helpers: while they wait they queue unrelated frames, and the next
 * broker_poll hands those queued frames to the dispatcher in arrival order,
 * so a delivery that arrives during a queue.bind is not lost.
 */
#include "postgres.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
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
#include "broker_url.h"
#include "evrep.h"
#include "wire.h"

#define PUBLISH_CHANNEL 1
#define CONSUME_CHANNEL 1
/* RPCs get their own channel: a failed bind must not close the consumer's */
#define TOPOLOGY_CHANNEL 2
/* Probing a queue that may not exist closes the channel: a channel of its own */
#define PROBE_CHANNEL 3
/*
 * Copy requests, too: the broker may refuse one (a topic permission
 * missing) by closing its channel, which must not cost the connection.
 */
#define REQUEST_CHANNEL 4
/* The node's lock queue lives with the connection, on a channel of its own */
#define LOCK_CHANNEL 5
/* The liveness probe (check_alive): its answer must match no RPC's */
#define LIVENESS_CHANNEL 6

#define FRAME_MAX 131072
#define CLOSE_TIMEOUT_S 2
/* An RPC answered later than this is logged */
#define SLOW_REPLY_MS 1000
#define BACKOFF_MIN_MS 100

/* Used when peer verification is on and evrep.ssl_ca_file is empty. */
#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

typedef struct DeliveryNode
{
	BrokerDelivery d; /* first, so a BrokerDelivery * is the node */
	struct DeliveryNode *next;
} DeliveryNode;

typedef enum ContentKind
{
	CONTENT_NONE,
	CONTENT_DELIVERY,
	CONTENT_RETURN
} ContentKind;

struct BrokerConn
{
	BrokerRole role;
	MemoryContext cxt;		 /* this struct and its strings */
	MemoryContext deliv_cxt; /* deliveries until freed */
	amqp_connection_state_t state;
	bool logged_in;
	bool set_up;			   /* broker_connect is done with it */
	bool broken;			   /* sticky: every call now fails */
	bool blocked;			   /* connection.blocked received */
	uint64 events;			   /* bumped on news for the caller */
	int heartbeat_ms;		   /* negotiated; 0 when off */
	int timeout_ms;			   /* evrep.broker_timeout when connecting */
	int reply_ms;			   /* evrep.confirm_timeout when connecting */
	TimestampTz heard_at;	   /* when the broker last sent anything */
	TimestampTz probe_sent_at; /* our liveness probe awaits its answer; 0: none */
	TimestampTz unblocked_at;  /* end of the last connection.blocked; 0: none */

	/* settings the connection was built from */
	char *settings; /* fingerprint, see settings_fingerprint */
	char *where;	/* for logs: no password */
	char *exchange;
	char *queue;
	char *node_name;
	char *user;			  /* the broker user we log in as: our messages' user_id */
	bool request_open;	  /* REQUEST_CHANNEL is open */
	int queue_type;		  /* EvrepQueueType of queue */
	char *drain_queue;	  /* the queue of the former type, consumed until empty */
	char *consumer_tag;	  /* of our consumer on drain_queue, to cancel it */
	bool drain_cancelled; /* our consumer on drain_queue is cancelled */

	/* publisher confirms: conf_pending[tag - conf_base] */
	uint64 next_tag;
	uint64 conf_base;
	uint64 conf_low; /* no pending tag below this */
	bool *conf_pending;
	uint64 conf_cap;
	int unconfirmed;
	bool nacked;
	uint64 first_nacked; /* lowest tag the broker refused; 0: none */

	/* content (header + body frames) being received */
	ContentKind content;
	bool content_header_seen;
	uint64 content_size;
	uint64 content_got;
	DeliveryNode *content_node;

	/* completed deliveries, oldest first */
	DeliveryNode *deliv_head;
	DeliveryNode *deliv_tail;
	int npending;
	int64 pending_bytes; /* bodies of the completed deliveries */
};

/*
 * The consumer stops reading once its undelivered bodies hold this much:
 * chunks of a copy are large, and a prefetch count alone would let
 * thousands of them into memory when the apply is slower than the origin.
 * TCP then holds the broker back; our acks keep the connection alive.
 */
#define MAX_PENDING_BYTES (64 * 1024 * 1024)

/* Why the last connection failed, for the monitoring view. */
static char last_error[256];

/*
 * A broker outage fails every reconnect the same way; one WARNING a minute
 * says so without flooding the log.  Cleared by a successful connect.
 */
#define REPEAT_LOG_MS 60000
static char last_logged[256];
static TimestampTz last_logged_at;

static const char *
role_name(BrokerConn *conn)
{
	return conn->role == BROKER_PUBLISHER ? "publisher" : "consumer";
}

static char *
bytes_to_cstring(amqp_bytes_t b)
{
	return pnstrdup(b.bytes, b.len);
}

/*
 * Marks the connection unusable and logs why.  WARNING, not ERROR: the
 * worker must survive to reconnect.
 */
static bool probe_queue(BrokerConn *conn, const char *queue, uint32 *ready);
static bool open_channel(BrokerConn *conn, amqp_channel_t channel);
static bool take_node_lock(BrokerConn *conn);

static BrokerStatus
conn_failed(BrokerConn *conn, const char *what)
{
	TimestampTz now = GetCurrentTimestamp();
	bool repeat;

	if (conn->broken)
		return BROKER_ERROR;
	conn->broken = true;
	snprintf(last_error, sizeof(last_error), "%s: %s", conn->where, what);
	repeat = strcmp(last_error, last_logged) == 0 &&
			 !TimestampDifferenceExceeds(last_logged_at, now, REPEAT_LOG_MS);
	if (!repeat)
	{
		strlcpy(last_logged, last_error, sizeof(last_logged));
		last_logged_at = now;
	}
	ereport(repeat ? DEBUG1 : WARNING, (errcode(ERRCODE_CONNECTION_FAILURE),
										errmsg("evrep %s: broker connection to %s failed: %s",
											   role_name(conn), conn->where, what)));
	return BROKER_ERROR;
}

static BrokerStatus
status_failed(BrokerConn *conn, const char *doing, int status)
{
	return conn_failed(conn, psprintf("%s: %s", doing, amqp_error_string2(status)));
}

static char *
describe_close(amqp_method_t *m)
{
	if (m->id == AMQP_CONNECTION_CLOSE_METHOD)
	{
		amqp_connection_close_t *c = m->decoded;

		return psprintf("connection closed by broker: %u %s", c->reply_code,
						bytes_to_cstring(c->reply_text));
	}
	if (m->id == AMQP_CHANNEL_CLOSE_METHOD)
	{
		amqp_channel_close_t *c = m->decoded;

		return psprintf("channel closed by broker: %u %s", c->reply_code,
						bytes_to_cstring(c->reply_text));
	}
	return psprintf("unexpected method 0x%08X from broker", m->id);
}

static char *
describe_reply(amqp_rpc_reply_t r)
{
	switch (r.reply_type)
	{
		case AMQP_RESPONSE_NORMAL:
			return pstrdup("success");
		case AMQP_RESPONSE_NONE:
			return pstrdup("no reply");
		case AMQP_RESPONSE_LIBRARY_EXCEPTION:
			return pstrdup(amqp_error_string2(r.library_error));
		case AMQP_RESPONSE_SERVER_EXCEPTION:
			return describe_close(&r.reply);
	}
	return pstrdup("unknown reply");
}

/* The broker said something: it is alive, any probe is answered. */
static void
heard(BrokerConn *conn)
{
	conn->heard_at = GetCurrentTimestamp();
	conn->probe_sent_at = 0;
}

/* Checks the reply of the RPC just made; logs and fails if it failed. */
static bool
rpc_ok(BrokerConn *conn, const char *doing)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(conn->state);

	if (r.reply_type == AMQP_RESPONSE_NORMAL)
	{
		long took = TimestampDifferenceMilliseconds(conn->heard_at, GetCurrentTimestamp());

		/* setting up, RPCs follow each other: a slow one waited for the cluster */
		if (!conn->set_up && took >= SLOW_REPLY_MS)
			ereport(LOG, (errmsg("evrep %s: the broker took %ld ms for %s", role_name(conn), took,
								 doing)));
		heard(conn);
		return true;
	}
	conn_failed(conn, psprintf("%s: %s", doing, describe_reply(r)));
	return false;
}

/* ---- a hung node ---- */

/*
 * A node that hangs (SIGSTOP, a long garbage collection, a stalled disk or
 * VM) keeps its connections open, and its kernel acknowledges what we send
 * until its receive buffer is full (megabytes); then its window stays shut
 * and rabbitmq-c, which polls with no deadline of ours, waits in a write
 * until two heartbeats were missed.  TCP_USER_TIMEOUT bounds that wait:
 * the kernel aborts a connection whose data stays unacknowledged, or whose
 * zero window lasts (Linux applies it to zero-window probes since 5.x;
 * measured here on 6.18), longer than that.  Keepalives would not help:
 * they are answered by the hung node's kernel.  While the broker blocks us
 * (connection.blocked) it stops reading on purpose: no bound then.
 */
static void
set_write_timeout(BrokerConn *conn, int ms)
{
	int fd = amqp_get_sockfd(conn->state);
	unsigned int t = (unsigned int) ms;

	if (fd >= 0 && setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &t, sizeof(t)) != 0)
		ereport(LOG, (errcode_for_socket_access(),
					  errmsg("evrep %s: could not set TCP_USER_TIMEOUT: %m", role_name(conn))));
}

/*
 * Nothing arrives from a hung node, and nothing tells: its kernel still
 * answers TCP.  So when the broker has been silent for half of
 * evrep.broker_timeout, we ask it something (basic.qos on a channel of
 * its own, answered by the channel process on the node we are connected
 * to: no queue, no Mnesia, nothing another node could delay), and if
 * nothing at all came back within the other half, the node is hung.  A
 * busy connection never probes: any frame counts as an answer.  A
 * blocked one neither: the broker stops reading it on purpose.
 */
static BrokerStatus
check_alive(BrokerConn *conn)
{
	TimestampTz now;
	int half = Max(conn->timeout_ms / 2, 1);

	if (conn->broken)
		return BROKER_ERROR;
	if (conn->blocked || !conn->logged_in)
		return BROKER_OK;
	now = GetCurrentTimestamp();
	if (conn->probe_sent_at != 0)
	{
		if (TimestampDifferenceExceeds(conn->probe_sent_at, now, half))
			return conn_failed(
				conn, psprintf("no answer from the broker for %d ms "
							   "(evrep.broker_timeout): the node hangs",
							   (int) (TimestampDifferenceMilliseconds(conn->heard_at, now))));
	}
	else if (TimestampDifferenceExceeds(conn->heard_at, now, half))
	{
		amqp_basic_qos_t qos = {0};
		int rc = amqp_send_method(conn->state, LIVENESS_CHANNEL, AMQP_BASIC_QOS_METHOD, &qos);

		if (rc != AMQP_STATUS_OK)
			return status_failed(conn, "asking a silent broker whether it is alive", rc);
		conn->probe_sent_at = now;
	}
	return BROKER_OK;
}

/* How long until check_alive has something to do; -1: nothing to do. */
static long
alive_wait_ms(BrokerConn *conn)
{
	int half = Max(conn->timeout_ms / 2, 1);
	TimestampTz from = conn->probe_sent_at != 0 ? conn->probe_sent_at : conn->heard_at;

	if (conn->blocked || !conn->logged_in)
		return -1;
	return Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
											   TimestampTzPlusMilliseconds(from, half)),
			   1);
}

/* ---- confirms ---- */

static void
track_publish(BrokerConn *conn)
{
	uint64 idx = conn->next_tag - conn->conf_base;

	if (idx >= conn->conf_cap)
	{
		uint64 newcap = Max(conn->conf_cap * 2, 64);

		conn->conf_pending = conn->conf_pending == NULL
								 ? MemoryContextAllocZero(conn->cxt, newcap * sizeof(bool))
								 : repalloc(conn->conf_pending, newcap * sizeof(bool));
		memset(conn->conf_pending + conn->conf_cap, 0, (newcap - conn->conf_cap) * sizeof(bool));
		conn->conf_cap = newcap;
	}
	conn->conf_pending[idx] = true;
	conn->unconfirmed++;
	conn->next_tag++;
}

/*
 * RabbitMQ may confirm out of order, so each tag is tracked; "multiple"
 * settles every pending tag up to the one given.
 */
static void
settle(BrokerConn *conn, uint64 tag, bool multiple, bool acked)
{
	uint64 t;

	if (!acked)
		conn->nacked = true;
	if (tag < conn->conf_low || tag >= conn->next_tag)
		return; /* already settled, or not ours */

	for (t = multiple ? conn->conf_low : tag; t <= tag; t++)
	{
		if (conn->conf_pending[t - conn->conf_base])
		{
			conn->conf_pending[t - conn->conf_base] = false;
			conn->unconfirmed--;
			if (!acked && (conn->first_nacked == 0 || t < conn->first_nacked))
				conn->first_nacked = t;
		}
	}
	while (conn->conf_low < conn->next_tag && !conn->conf_pending[conn->conf_low - conn->conf_base])
		conn->conf_low++;

	/* all settled: restart the window so the array does not grow */
	if (conn->unconfirmed == 0)
		conn->conf_base = conn->conf_low = conn->next_tag;
}

/* ---- incoming content: deliveries and returns ---- */

static bool
begin_content(BrokerConn *conn, ContentKind kind)
{
	if (conn->content != CONTENT_NONE)
	{
		conn_failed(conn, "protocol error: new message before the previous one was complete");
		return false;
	}
	conn->content = kind;
	conn->content_header_seen = false;
	conn->content_size = conn->content_got = 0;
	return true;
}

static bool
on_deliver(BrokerConn *conn, amqp_basic_deliver_t *m)
{
	DeliveryNode *node;

	if (!begin_content(conn, CONTENT_DELIVERY))
		return false;
	node = MemoryContextAllocZero(conn->deliv_cxt, sizeof(DeliveryNode));
	node->d.tag = m->delivery_tag;
	node->d.redelivered = m->redelivered;
	node->d.routing_key = MemoryContextAlloc(conn->deliv_cxt, m->routing_key.len + 1);
	memcpy(node->d.routing_key, m->routing_key.bytes, m->routing_key.len);
	node->d.routing_key[m->routing_key.len] = '\0';
	conn->content_node = node;
	return true;
}

/*
 * mandatory=true makes the broker return a message that no queue is bound
 * for, and then ack it.  No bound queue means no node subscribes to that
 * table, so there is nobody to deliver to: the message counts as delivered
 * once the ack arrives.  Retrying instead would let one unsubscribed table
 * hold up the whole outbox forever.  The price: events published while a
 * subscriber's binding is missing (exchange deleted and re-declared) are
 * dropped for it; consumers re-bind within seconds to keep that window
 * short.
 */
static bool
on_return(BrokerConn *conn, amqp_basic_return_t *m)
{
	if (!begin_content(conn, CONTENT_RETURN))
		return false;
	ereport(DEBUG1, (errmsg_internal("evrep publisher: message for routing key \"%s\" was "
									 "unroutable (%u %s); counted as delivered",
									 bytes_to_cstring(m->routing_key), m->reply_code,
									 bytes_to_cstring(m->reply_text))));
	return true;
}

static void
finish_content(BrokerConn *conn)
{
	DeliveryNode *node = conn->content_node;

	if (conn->content == CONTENT_DELIVERY)
	{
		node->d.body[node->d.len] = '\0';
		if (conn->deliv_tail)
			conn->deliv_tail->next = node;
		else
			conn->deliv_head = node;
		conn->deliv_tail = node;
		conn->npending++;
		conn->pending_bytes += node->d.len;
		conn->events++;
	}
	conn->content = CONTENT_NONE;
	conn->content_node = NULL;
}

/* The user_id property, which RabbitMQ validated against the publisher's login. */
static char *
delivery_user_id(BrokerConn *conn, amqp_basic_properties_t *props)
{
	char *user;

	if (props == NULL || !(props->_flags & AMQP_BASIC_USER_ID_FLAG))
		return NULL;
	user = MemoryContextAlloc(conn->deliv_cxt, props->user_id.len + 1);
	memcpy(user, props->user_id.bytes, props->user_id.len);
	user[props->user_id.len] = '\0';
	return user;
}

static bool
on_header(BrokerConn *conn, amqp_frame_t *f)
{
	uint64 size = f->payload.properties.body_size;

	if (conn->content == CONTENT_NONE || conn->content_header_seen)
	{
		conn_failed(conn, "protocol error: unexpected content header");
		return false;
	}
	conn->content_header_seen = true;
	conn->content_size = size;
	if (conn->content == CONTENT_DELIVERY)
	{
		if (size >= (uint64) INT_MAX)
		{
			conn_failed(conn, psprintf("message of " UINT64_FORMAT " bytes is too large", size));
			return false;
		}
		conn->content_node->d.body = MemoryContextAllocHuge(conn->deliv_cxt, size + 1);
		conn->content_node->d.len = (int) size;
		conn->content_node->d.user_id = delivery_user_id(conn, f->payload.properties.decoded);
	}
	if (size == 0)
		finish_content(conn);
	return true;
}

static bool
on_body(BrokerConn *conn, amqp_frame_t *f)
{
	amqp_bytes_t frag = f->payload.body_fragment;

	if (conn->content == CONTENT_NONE || !conn->content_header_seen ||
		conn->content_got + frag.len > conn->content_size)
	{
		conn_failed(conn, "protocol error: unexpected content body");
		return false;
	}
	if (conn->content == CONTENT_DELIVERY)
		memcpy(conn->content_node->d.body + conn->content_got, frag.bytes, frag.len);
	conn->content_got += frag.len;
	if (conn->content_got == conn->content_size)
		finish_content(conn);
	return true;
}

/* ---- methods ---- */

static bool
on_close(BrokerConn *conn, amqp_channel_t channel, amqp_method_t *m)
{
	char *why = describe_close(m);

	if (channel == REQUEST_CHANNEL && m->id == AMQP_CHANNEL_CLOSE_METHOD)
	{
		amqp_channel_close_ok_t ok = {0};

		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("evrep %s: the broker refused a copy request: %s", role_name(conn), why),
				 errhint("The node's broker user needs the topic permission to publish to "
						 "\"copy.<schema>.<table>\" for the tables it subscribes.")));
		conn->request_open = false;
		if (amqp_send_method(conn->state, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) ==
			AMQP_STATUS_OK)
			return true;
		conn_failed(conn, "acknowledging the close of the request channel");
		return false;
	}
	/* answer politely; the connection is rebuilt anyway */
	if (m->id == AMQP_CONNECTION_CLOSE_METHOD)
	{
		amqp_connection_close_ok_t ok = {0};

		(void) amqp_send_method(conn->state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
	}
	else
	{
		amqp_channel_close_ok_t ok = {0};

		(void) amqp_send_method(conn->state, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
	}
	conn_failed(conn, why);
	return false;
}

static bool
on_method(BrokerConn *conn, amqp_channel_t channel, amqp_method_t *m)
{
	switch (m->id)
	{
		case AMQP_BASIC_ACK_METHOD:
		{
			amqp_basic_ack_t *a = m->decoded;

			settle(conn, a->delivery_tag, a->multiple, true);
			return true;
		}
		case AMQP_BASIC_NACK_METHOD:
		{
			amqp_basic_nack_t *n = m->decoded;

			ereport(LOG, (errmsg("evrep publisher: broker refused message " UINT64_FORMAT
								 "%s; the batch will be sent again",
								 n->delivery_tag, n->multiple ? " and earlier" : "")));
			settle(conn, n->delivery_tag, n->multiple, false);
			return true;
		}
		case AMQP_BASIC_RETURN_METHOD:
			return on_return(conn, m->decoded);
		case AMQP_BASIC_DELIVER_METHOD:
			return on_deliver(conn, m->decoded);
		case AMQP_CHANNEL_CLOSE_METHOD:
		case AMQP_CONNECTION_CLOSE_METHOD:
			return on_close(conn, channel, m);
		case AMQP_BASIC_CANCEL_METHOD:
			conn_failed(conn, "broker cancelled the consumer (queue deleted?)");
			return false;
		case AMQP_CONNECTION_BLOCKED_METHOD:
		{
			amqp_connection_blocked_t *b = m->decoded;

			ereport(LOG, (errmsg("evrep %s: broker blocks publishing: %s", role_name(conn),
								 bytes_to_cstring(b->reason))));
			conn->blocked = true;
			/* it stops reading us on purpose: waited for, not a hang */
			set_write_timeout(conn, 0);
			return true;
		}
		case AMQP_CONNECTION_UNBLOCKED_METHOD:
			ereport(LOG, (errmsg("evrep %s: broker accepts publishing again", role_name(conn))));
			conn->blocked = false;
			conn->unblocked_at = GetCurrentTimestamp();
			set_write_timeout(conn, conn->timeout_ms);
			conn->events++;
			return true;
		default:
			/* late RPC replies and the like carry nothing for us */
			elog(DEBUG1, "evrep %s: ignoring method 0x%08X on channel %u", role_name(conn), m->id,
				 channel);
			return true;
	}
}

static bool
on_frame(BrokerConn *conn, amqp_frame_t *f)
{
	switch (f->frame_type)
	{
		case AMQP_FRAME_METHOD:
			return on_method(conn, f->channel, &f->payload.method);
		case AMQP_FRAME_HEADER:
			return on_header(conn, f);
		case AMQP_FRAME_BODY:
			return on_body(conn, f);
		case AMQP_FRAME_HEARTBEAT:
			/* frames queued by the library may include heartbeats */
			return true;
	}
	conn_failed(conn, psprintf("protocol error: frame type %d", f->frame_type));
	return false;
}

/* ---- reading and waiting ---- */

/*
 * Reads and dispatches every frame available without blocking: first the
 * frames the library queued during RPCs, then its input buffer, then the
 * socket, until the socket would block.  A zero timeout still lets the
 * library send a due heartbeat and notice a missed one.
 */
BrokerStatus
broker_poll(BrokerConn *conn)
{
	struct timeval zero = {0, 0};
	bool got = false;

	for (;;)
	{
		amqp_frame_t frame;
		int rc;

		if (conn->broken)
			return BROKER_ERROR;
		if (conn->pending_bytes >= MAX_PENDING_BYTES && conn->content == CONTENT_NONE)
			break;
		rc = amqp_simple_wait_frame_noblock(conn->state, &frame, &zero);
		if (rc == AMQP_STATUS_TIMEOUT)
			break;
		if (rc != AMQP_STATUS_OK)
			return status_failed(conn, "reading from broker", rc);
		got = true;
		if (!on_frame(conn, &frame))
			return BROKER_ERROR;
		/* everything needed was copied out of the frame */
		amqp_maybe_release_buffers_on_channel(conn->state, frame.channel);
	}
	if (got)
		heard(conn);
	return check_alive(conn);
}

/*
 * One sleep on the socket and, if asked, the latch.  Capped at half the
 * heartbeat so that the next broker_poll sends ours in time.
 */
static BrokerStatus
sleep_on_socket(BrokerConn *conn, long timeout_ms, bool latch)
{
	int fd = amqp_get_sockfd(conn->state);
	long alive_ms = alive_wait_ms(conn);
	int rc;

	if (fd < 0)
		return conn_failed(conn, "socket closed");
	if (conn->heartbeat_ms > 0)
		timeout_ms = Min(timeout_ms, conn->heartbeat_ms / 2);
	/* wake up for the liveness probe, and to judge its answer */
	if (alive_ms >= 0)
		timeout_ms = Min(timeout_ms, alive_ms);
	rc = WaitLatchOrSocket(
		MyLatch, (latch ? WL_LATCH_SET : 0) | WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
		fd, timeout_ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
	{
		ResetLatch(MyLatch);
		return BROKER_LATCH;
	}
	return BROKER_OK;
}

static long
ms_until(TimestampTz deadline)
{
	return TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
}

BrokerStatus
broker_wait(BrokerConn *conn, long timeout_ms)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	uint64 events = conn->events;

	for (;;)
	{
		BrokerStatus st = broker_poll(conn);
		long left;

		if (st != BROKER_OK)
			return st;
		if (conn->npending > 0 || conn->events != events)
			return BROKER_OK;
		left = ms_until(deadline);
		if (left <= 0)
			return BROKER_TIMEOUT;
		st = sleep_on_socket(conn, left, true);
		if (st != BROKER_OK)
			return st;
	}
}

/* ---- publisher ---- */

/* What every message of ours carries; message_id may be NULL. */
static void
set_properties(BrokerConn *conn, amqp_basic_properties_t *props, const char *message_id)
{
	memset(props, 0, sizeof(*props));
	props->_flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
					AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_APP_ID_FLAG |
					AMQP_BASIC_USER_ID_FLAG;
	props->content_type = amqp_cstring_bytes(EVREP_WIRE_CONTENT_TYPE);
	props->delivery_mode = 2; /* persistent */
	if (message_id != NULL)
	{
		props->_flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
		props->message_id = amqp_cstring_bytes(message_id);
	}
	props->timestamp = (uint64) time(NULL);
	props->type = amqp_cstring_bytes(EVREP_WIRE_TYPE);
	props->app_id = amqp_cstring_bytes(conn->node_name);
	/* RabbitMQ checks it against our login: subscribers trust it, not "origin" */
	props->user_id = amqp_cstring_bytes(conn->user);
}

BrokerStatus
broker_publish(BrokerConn *conn, const char *routing_key, const char *body, int len,
			   const char *message_id)
{
	amqp_basic_properties_t props;
	amqp_bytes_t payload;
	int rc;

	Assert(conn->role == BROKER_PUBLISHER);
	if (conn->broken)
		return BROKER_ERROR;

	set_properties(conn, &props, message_id);
	payload.len = len;
	payload.bytes = (void *) body;

	rc = amqp_basic_publish(conn->state, PUBLISH_CHANNEL, amqp_cstring_bytes(conn->exchange),
							amqp_cstring_bytes(routing_key), true, /* mandatory: see on_return */
							false, &props, payload);
	if (rc != AMQP_STATUS_OK)
		return status_failed(conn, "publishing", rc);
	track_publish(conn);
	return BROKER_OK;
}

BrokerStatus
broker_send_request(BrokerConn *conn, const char *routing_key, const char *body, int len)
{
	amqp_basic_properties_t props;
	amqp_bytes_t payload;
	int rc;

	Assert(conn->role == BROKER_CONSUMER);
	if (conn->broken)
		return BROKER_ERROR;
	if (!conn->request_open)
	{
		if (!open_channel(conn, REQUEST_CHANNEL))
			return BROKER_ERROR;
		conn->request_open = true;
	}
	set_properties(conn, &props, NULL);
	payload.len = len;
	payload.bytes = (void *) body;
	rc = amqp_basic_publish(conn->state, REQUEST_CHANNEL, amqp_cstring_bytes(conn->exchange),
							amqp_cstring_bytes(routing_key), false, false, &props, payload);
	if (rc != AMQP_STATUS_OK)
		return status_failed(conn, "sending a request", rc);
	return BROKER_OK;
}

int
broker_unconfirmed(BrokerConn *conn)
{
	return conn->unconfirmed;
}

uint64
broker_last_tag(BrokerConn *conn)
{
	return conn->next_tag - 1;
}

uint64
broker_settled_upto(BrokerConn *conn)
{
	/* a refused message is settled but not delivered: nothing from it on counts */
	if (conn->first_nacked != 0)
		return Min(conn->conf_low, conn->first_nacked) - 1;
	return conn->conf_low - 1;
}

BrokerStatus
broker_wait_settle(BrokerConn *conn, long timeout_ms, bool latch)
{
	uint64 low = conn->conf_low;
	BrokerStatus st = broker_poll(conn);

	if (st == BROKER_OK && !conn->nacked && conn->unconfirmed > 0 && conn->conf_low == low)
	{
		st = sleep_on_socket(conn, timeout_ms, latch);
		if (st == BROKER_OK)
			st = broker_poll(conn);
	}
	if (st == BROKER_OK && conn->nacked)
		return BROKER_NACKED;
	return st;
}

const char *
broker_last_error(void)
{
	return last_error;
}

bool
broker_blocked(BrokerConn *conn)
{
	return conn->blocked;
}

TimestampTz
broker_unblocked_at(BrokerConn *conn)
{
	return conn->unblocked_at;
}

void
broker_give_up(BrokerConn *conn, const char *why)
{
	(void) conn_failed(conn, why);
}

/* ---- consumer ---- */

BrokerStatus
broker_bind(BrokerConn *conn, const char *routing_key)
{
	Assert(conn->role == BROKER_CONSUMER);
	if (conn->broken)
		return BROKER_ERROR;
	amqp_queue_bind(conn->state, TOPOLOGY_CHANNEL, amqp_cstring_bytes(conn->queue),
					amqp_cstring_bytes(conn->exchange), amqp_cstring_bytes(routing_key),
					amqp_empty_table);
	if (!rpc_ok(conn, psprintf("binding routing key \"%s\"", routing_key)))
		return BROKER_ERROR;
	if (conn->drain_queue != NULL)
	{
		amqp_queue_unbind(conn->state, TOPOLOGY_CHANNEL, amqp_cstring_bytes(conn->drain_queue),
						  amqp_cstring_bytes(conn->exchange), amqp_cstring_bytes(routing_key),
						  amqp_empty_table);
		if (!rpc_ok(conn, psprintf("unbinding routing key \"%s\" from queue \"%s\"", routing_key,
								   conn->drain_queue)))
			return BROKER_ERROR;
	}
	return BROKER_OK;
}

/*
 * Adding a binding, even one that exists, is a Mnesia transaction over
 * every node of the cluster: while one node hangs it waits, on whichever
 * node we are connected to, and an RPC would time out and cost a
 * connection through which deliveries flow.  A key bound before is bound
 * again with nowait; a refusal still closes the channel (on_close).
 */
BrokerStatus
broker_rebind(BrokerConn *conn, const char *routing_key)
{
	amqp_queue_bind_t req = {0};
	int rc;

	Assert(conn->role == BROKER_CONSUMER);
	if (conn->broken)
		return BROKER_ERROR;
	if (conn->drain_queue != NULL)
		return broker_bind(conn, routing_key); /* unbinds the former queue too */
	req.queue = amqp_cstring_bytes(conn->queue);
	req.exchange = amqp_cstring_bytes(conn->exchange);
	req.routing_key = amqp_cstring_bytes(routing_key);
	req.nowait = 1;
	req.arguments = amqp_empty_table;
	rc = amqp_send_method(conn->state, TOPOLOGY_CHANNEL, AMQP_QUEUE_BIND_METHOD, &req);
	if (rc != AMQP_STATUS_OK)
		return status_failed(conn, psprintf("binding routing key \"%s\" again", routing_key), rc);
	return BROKER_OK;
}

BrokerStatus
broker_unbind(BrokerConn *conn, const char *routing_key)
{
	Assert(conn->role == BROKER_CONSUMER);
	if (conn->broken)
		return BROKER_ERROR;
	amqp_queue_unbind(conn->state, TOPOLOGY_CHANNEL, amqp_cstring_bytes(conn->queue),
					  amqp_cstring_bytes(conn->exchange), amqp_cstring_bytes(routing_key),
					  amqp_empty_table);
	if (!rpc_ok(conn, psprintf("unbinding routing key \"%s\"", routing_key)))
		return BROKER_ERROR;
	return BROKER_OK;
}

int
broker_pending(BrokerConn *conn)
{
	return conn->npending;
}

BrokerDelivery *
broker_take(BrokerConn *conn)
{
	DeliveryNode *node = conn->deliv_head;

	if (node == NULL)
		return NULL;
	conn->deliv_head = node->next;
	if (conn->deliv_head == NULL)
		conn->deliv_tail = NULL;
	conn->npending--;
	conn->pending_bytes -= node->d.len;
	node->next = NULL;
	return &node->d;
}

bool
broker_draining(BrokerConn *conn)
{
	return conn->drain_queue != NULL;
}

BrokerStatus
broker_drain_step(BrokerConn *conn, bool *drained)
{
	uint32 ready = 0;

	*drained = false;
	if (conn->broken)
		return BROKER_ERROR;
	if (!conn->drain_cancelled)
	{
		if (!probe_queue(conn, conn->drain_queue, &ready))
			return conn_failed(
				conn, psprintf("queue \"%s\" vanished while it was drained", conn->drain_queue));
		if (ready > 0)
			return BROKER_OK;
		/* what the broker sent before the cancel-ok is queued for broker_poll */
		amqp_basic_cancel(conn->state, CONSUME_CHANNEL, amqp_cstring_bytes(conn->consumer_tag));
		if (!rpc_ok(conn, "cancelling the consumer of the drained queue"))
			return BROKER_ERROR;
		conn->drain_cancelled = true;
		return broker_poll(conn);
	}
	if (conn->npending > 0)
		return BROKER_OK;
	/* if_empty: a message that came in meanwhile fails this, and we drain again */
	amqp_queue_delete(conn->state, TOPOLOGY_CHANNEL, amqp_cstring_bytes(conn->drain_queue), false,
					  true);
	if (!rpc_ok(conn, psprintf("deleting the drained queue \"%s\"", conn->drain_queue)))
		return BROKER_ERROR;
	ereport(LOG, (errmsg("evrep consumer drained and deleted queue \"%s\"; it consumes \"%s\" now",
						 conn->drain_queue, conn->queue)));
	*drained = true;
	return BROKER_OK;
}

void
broker_free_delivery(BrokerDelivery *delivery)
{
	if (delivery->body)
		pfree(delivery->body);
	if (delivery->user_id)
		pfree(delivery->user_id);
	pfree(delivery->routing_key);
	pfree(delivery);
}

BrokerStatus
broker_ack(BrokerConn *conn, uint64 tag)
{
	int rc;

	if (conn->broken)
		return BROKER_ERROR;
	rc = amqp_basic_ack(conn->state, CONSUME_CHANNEL, tag, true);
	if (rc != AMQP_STATUS_OK)
		return status_failed(conn, "acknowledging deliveries", rc);
	return BROKER_OK;
}

/* ---- connecting ---- */

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

static amqp_socket_t *
new_ssl_socket(BrokerConn *conn)
{
	amqp_socket_t *sock = amqp_ssl_socket_new(conn->state);
	const char *ca = evrep_ssl_ca_file;
	int rc;

	if (sock == NULL)
	{
		conn_failed(conn, "could not create TLS socket");
		return NULL;
	}
	amqp_ssl_socket_set_verify_peer(sock, evrep_ssl_verify_peer);
	amqp_ssl_socket_set_verify_hostname(sock, evrep_ssl_verify_hostname);
	rc = amqp_ssl_socket_set_ssl_versions(sock, AMQP_TLSv1_2, AMQP_TLSvLATEST);
	if (rc != AMQP_STATUS_OK)
	{
		status_failed(conn, "restricting TLS versions", rc);
		return NULL;
	}

	/* rabbitmq-c loads no default trust store */
	if (ca[0] == '\0' && evrep_ssl_verify_peer && access(SYSTEM_CA_BUNDLE, R_OK) == 0)
		ca = SYSTEM_CA_BUNDLE;
	if (ca[0] != '\0' && (rc = amqp_ssl_socket_set_cacert(sock, ca)) != AMQP_STATUS_OK)
	{
		status_failed(conn, psprintf("loading CA file \"%s\"", ca), rc);
		return NULL;
	}

	if (evrep_ssl_cert_file[0] != '\0' || evrep_ssl_key_file[0] != '\0')
	{
		if (evrep_ssl_cert_file[0] == '\0' || evrep_ssl_key_file[0] == '\0')
		{
			conn_failed(conn, "evrep.ssl_cert_file and evrep.ssl_key_file must be set together");
			return NULL;
		}
		rc = amqp_ssl_socket_set_key(sock, evrep_ssl_cert_file, evrep_ssl_key_file);
		if (rc != AMQP_STATUS_OK)
		{
			status_failed(conn, "loading client certificate and key", rc);
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
		conn_failed(conn, psprintf("login: %s", describe_reply(r)));
		return false;
	}
	conn->logged_in = true;
	conn->heartbeat_ms = amqp_get_heartbeat(conn->state) * 1000;
	heard(conn);
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
		conn_failed(conn, "out of memory");
		return false;
	}
	sock = info->ssl ? new_ssl_socket(conn) : amqp_tcp_socket_new(conn->state);
	if (sock == NULL)
	{
		conn_failed(conn, "could not create socket");
		return false;
	}
	amqp_set_handshake_timeout(conn->state, &tv);
	amqp_set_rpc_timeout(conn->state, &rpc_tv);

	rc = amqp_socket_open_noblock(sock, info->host, info->port, &tv);
	if (rc != AMQP_STATUS_OK)
	{
		status_failed(conn, "could not open a connection", rc);
		return false;
	}
	set_write_timeout(conn, conn->timeout_ms);
	return login(conn, info);
}

static bool
open_channel(BrokerConn *conn, amqp_channel_t channel)
{
	amqp_channel_open(conn->state, channel);
	return rpc_ok(conn, "opening channel");
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
	return rpc_ok(conn, psprintf("declaring exchange \"%s\"", conn->exchange));
}

static bool
setup_publisher(BrokerConn *conn)
{
	if (!take_node_lock(conn) || !open_channel(conn, PUBLISH_CHANNEL) ||
		!open_channel(conn, LIVENESS_CHANNEL) || !declare_exchange(conn, PUBLISH_CHANNEL))
		return false;
	amqp_confirm_select(conn->state, PUBLISH_CHANNEL);
	if (!rpc_ok(conn, "enabling publisher confirms"))
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
	return rpc_ok(conn, psprintf("declaring queue \"%s\"", conn->queue));
}

/*
 * Does queue exist, and how many messages are ready in it?  A passive
 * declare of a missing queue closes the channel with 404: the probe has a
 * channel of its own and acknowledges that close.  False also when the
 * connection failed (conn->broken says which).
 */
static bool
probe_queue(BrokerConn *conn, const char *queue, uint32 *ready)
{
	amqp_queue_declare_ok_t *ok;
	amqp_rpc_reply_t r;

	if (!open_channel(conn, PROBE_CHANNEL))
		return false;
	ok = amqp_queue_declare(conn->state, PROBE_CHANNEL, amqp_cstring_bytes(queue), true, false,
							false, false, amqp_empty_table);
	r = amqp_get_rpc_reply(conn->state);
	if (r.reply_type == AMQP_RESPONSE_NORMAL)
	{
		*ready = ok->message_count;
		amqp_channel_close(conn->state, PROBE_CHANNEL, AMQP_REPLY_SUCCESS);
		return rpc_ok(conn, "closing the probe channel");
	}
	if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
		((amqp_channel_close_t *) r.reply.decoded)->reply_code == AMQP_NOT_FOUND)
	{
		amqp_channel_close_ok_t close_ok;

		if (amqp_send_method(conn->state, PROBE_CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok) !=
			AMQP_STATUS_OK)
			conn_failed(conn, "acknowledging the close of the probe channel");
		return false;
	}
	conn_failed(conn, psprintf("probing queue \"%s\": %s", queue, describe_reply(r)));
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
	conn_failed(conn, what);
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
 * outbox.  A process that held the lock before goes on even without it:
 * the holder is most likely its own connection to a broker node that
 * stopped answering, which the broker has not noticed yet.  Without the
 * permission to declare the lock (an older least-privilege recipe), it
 * goes on unguarded, once said.
 */
static bool
take_node_lock(BrokerConn *conn)
{
	static bool had_lock = false;
	static bool warned_permission = false;
	char *name = psprintf("evrep.%s.lock.%s", conn->node_name, role_name(conn));
	amqp_rpc_reply_t r;
	int code;

	if (!open_channel(conn, LOCK_CHANNEL))
		return false;
	amqp_queue_declare(conn->state, LOCK_CHANNEL, amqp_cstring_bytes(name), false, /* passive */
					   false,													   /* durable */
					   true, /* exclusive: this connection's */
					   true, /* auto-delete */
					   amqp_empty_table);
	r = amqp_get_rpc_reply(conn->state);
	if (r.reply_type == AMQP_RESPONSE_NORMAL)
	{
		had_lock = true;
		return true;
	}
	if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || r.reply.id != AMQP_CHANNEL_CLOSE_METHOD)
	{
		conn_failed(conn, psprintf("declaring queue \"%s\": %s", name, describe_reply(r)));
		return false;
	}
	code = ((amqp_channel_close_t *) r.reply.decoded)->reply_code;
	if (!ack_close(conn, LOCK_CHANNEL, "acknowledging the close of the lock channel"))
		return false;
	if (code == AMQP_ACCESS_REFUSED)
	{
		if (!warned_permission)
			ereport(WARNING,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("evrep consumer may not declare its lock queue \"%s\"", name),
					 errdetail("A second server with evrep.node_name = '%s' would go unnoticed "
							   "and take part of this node's deliveries.",
							   conn->node_name),
					 errhint("Grant the broker user configure, write and read on \"%s\".", name)));
		warned_permission = true;
		return true;
	}
	if (code == AMQP_RESOURCE_LOCKED && had_lock)
		return true;
	conn_failed(conn, psprintf("another connection holds \"%s\": a second server runs with "
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

	if (!open_channel(conn, CONSUME_CHANNEL) || !open_channel(conn, TOPOLOGY_CHANNEL) ||
		!open_channel(conn, LIVENESS_CHANNEL) || !declare_exchange(conn, TOPOLOGY_CHANNEL) ||
		!declare_queue(conn))
		return false;
	if (probe_queue(conn, former, &ready))
		conn->drain_queue = former;
	else if (conn->broken)
		return false;
	if (!take_node_lock(conn))
		return false;
	from = conn->drain_queue ? conn->drain_queue : conn->queue;
	amqp_basic_qos(conn->state, CONSUME_CHANNEL, 0, (uint16_t) prefetch, false);
	if (!rpc_ok(conn, "setting prefetch"))
		return false;
	consuming = amqp_basic_consume(conn->state, CONSUME_CHANNEL, amqp_cstring_bytes(from),
								   amqp_empty_bytes, false, /* no-local */
								   false,					/* no-ack: we ack after commit */
								   true,					/* exclusive */
								   amqp_empty_table);
	if (!rpc_ok(conn, psprintf("consuming from queue \"%s\"", from)))
		return false;
	conn->consumer_tag = bytes_to_cstring(consuming->consumer_tag);
	return true;
}

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
		conn_failed(conn, psprintf("could not open evrep.broker_password_file \"%s\": %m",
								   evrep_broker_password_file));
		return NULL;
	}
	if (fgets(buf, sizeof(buf), f) != NULL)
	{
		buf[strcspn(buf, "\r\n")] = '\0';
		pw = pstrdup(buf);
	}
	else
		conn_failed(conn, psprintf("evrep.broker_password_file \"%s\" is empty",
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
		conn_failed(conn, "evrep.broker_url is not set");
	else if (amqp_parse_url(url, &info) != AMQP_STATUS_OK)
		conn_failed(conn,
					psprintf("URL %d of evrep.broker_url is not a valid amqp:// or amqps:// URL",
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
		last_logged[0] = '\0';
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

const char *
broker_user(const BrokerConn *conn)
{
	return conn->user;
}
