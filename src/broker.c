/*
 * broker.c
 *		AMQP connection to RabbitMQ for the evrep workers (rabbitmq-c 0.11):
 *		frames, confirms, deliveries, and the publisher's and consumer's
 *		calls on a connection that is set up.  broker_connect.c makes the
 *		connection; broker_int.h is what the two share.
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

#include <amqp.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "broker.h"
#include "broker_int.h"
#include "evrep.h"
#include "wire.h"

/* An RPC answered later than this is logged */
#define SLOW_REPLY_MS 1000

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

/*
 * Marks the connection unusable and logs why.  WARNING, not ERROR: the
 * worker must survive to reconnect.
 */
BrokerStatus
broker_conn_failed(BrokerConn *conn, const char *what)
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

BrokerStatus
broker_status_failed(BrokerConn *conn, const char *doing, int status)
{
	return broker_conn_failed(conn, psprintf("%s: %s", doing, amqp_error_string2(status)));
}

void
broker_log_next_failure(void)
{
	last_logged[0] = '\0';
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

char *
broker_describe_reply(amqp_rpc_reply_t r)
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
void
broker_heard(BrokerConn *conn)
{
	conn->heard_at = GetCurrentTimestamp();
	conn->probe_sent_at = 0;
}

/* Checks the reply of the RPC just made; logs and fails if it failed. */
bool
broker_rpc_ok(BrokerConn *conn, const char *doing)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(conn->state);

	if (r.reply_type == AMQP_RESPONSE_NORMAL)
	{
		long took = TimestampDifferenceMilliseconds(conn->heard_at, GetCurrentTimestamp());

		/* setting up, RPCs follow each other: a slow one waited for the cluster */
		if (!conn->set_up && took >= SLOW_REPLY_MS)
			ereport(LOG, (errmsg("evrep %s: the broker took %ld ms for %s", role_name(conn), took,
								 doing)));
		broker_heard(conn);
		return true;
	}
	broker_conn_failed(conn, psprintf("%s: %s", doing, broker_describe_reply(r)));
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
void
broker_set_write_timeout(BrokerConn *conn, int ms)
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
			return broker_conn_failed(
				conn, psprintf("no answer from the broker for %d ms "
							   "(evrep.broker_timeout): the node hangs",
							   (int) (TimestampDifferenceMilliseconds(conn->heard_at, now))));
	}
	else if (TimestampDifferenceExceeds(conn->heard_at, now, half))
	{
		amqp_basic_qos_t qos = {0};
		int rc = amqp_send_method(conn->state, LIVENESS_CHANNEL, AMQP_BASIC_QOS_METHOD, &qos);

		if (rc != AMQP_STATUS_OK)
			return broker_status_failed(conn, "asking a silent broker whether it is alive", rc);
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
		broker_conn_failed(conn,
						   "protocol error: new message before the previous one was complete");
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
		broker_conn_failed(conn, "protocol error: unexpected content header");
		return false;
	}
	conn->content_header_seen = true;
	conn->content_size = size;
	if (conn->content == CONTENT_DELIVERY)
	{
		if (size >= (uint64) INT_MAX)
		{
			broker_conn_failed(conn,
							   psprintf("message of " UINT64_FORMAT " bytes is too large", size));
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
		broker_conn_failed(conn, "protocol error: unexpected content body");
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

	if (channel == LOCK_CHANNEL && m->id == AMQP_CHANNEL_CLOSE_METHOD)
		return broker_lock_refused(conn, ((amqp_channel_close_t *) m->decoded)->reply_code);
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
		broker_conn_failed(conn, "acknowledging the close of the request channel");
		return false;
	}
	/* the broker's limit is below ours: every reconnect would send it again */
	if (m->id == AMQP_CHANNEL_CLOSE_METHOD && strstr(why, "larger than configured max size"))
		why = psprintf("%s; evrep.max_message_bytes (%d bytes) must be at most the broker's "
					   "max_message_size",
					   why, evrep_max_message_bytes);
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
	broker_conn_failed(conn, why);
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
			broker_conn_failed(conn, "broker cancelled the consumer (queue deleted?)");
			return false;
		case AMQP_CONNECTION_BLOCKED_METHOD:
		{
			amqp_connection_blocked_t *b = m->decoded;

			ereport(LOG, (errmsg("evrep %s: broker blocks publishing: %s", role_name(conn),
								 bytes_to_cstring(b->reason))));
			conn->blocked = true;
			/* it stops reading us on purpose: waited for, not a hang */
			broker_set_write_timeout(conn, 0);
			return true;
		}
		case AMQP_CONNECTION_UNBLOCKED_METHOD:
			ereport(LOG, (errmsg("evrep %s: broker accepts publishing again", role_name(conn))));
			conn->blocked = false;
			conn->unblocked_at = GetCurrentTimestamp();
			broker_set_write_timeout(conn, conn->timeout_ms);
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
	broker_conn_failed(conn, psprintf("protocol error: frame type %d", f->frame_type));
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
			return broker_status_failed(conn, "reading from broker", rc);
		got = true;
		if (!on_frame(conn, &frame))
			return BROKER_ERROR;
		/* everything needed was copied out of the frame */
		amqp_maybe_release_buffers_on_channel(conn->state, frame.channel);
	}
	if (got)
		broker_heard(conn);
	if (conn->lock_retry_at != 0 && GetCurrentTimestamp() >= conn->lock_retry_at &&
		!broker_ask_lock(conn))
		return BROKER_ERROR;
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
		return broker_conn_failed(conn, "socket closed");
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
		return broker_status_failed(conn, "publishing", rc);
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
		if (!broker_open_channel(conn, REQUEST_CHANNEL))
			return BROKER_ERROR;
		conn->request_open = true;
	}
	set_properties(conn, &props, NULL);
	payload.len = len;
	payload.bytes = (void *) body;
	rc = amqp_basic_publish(conn->state, REQUEST_CHANNEL, amqp_cstring_bytes(conn->exchange),
							amqp_cstring_bytes(routing_key), false, false, &props, payload);
	if (rc != AMQP_STATUS_OK)
		return broker_status_failed(conn, "sending a request", rc);
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
	(void) broker_conn_failed(conn, why);
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
	if (!broker_rpc_ok(conn, psprintf("binding routing key \"%s\"", routing_key)))
		return BROKER_ERROR;
	if (conn->drain_queue != NULL)
	{
		amqp_queue_unbind(conn->state, TOPOLOGY_CHANNEL, amqp_cstring_bytes(conn->drain_queue),
						  amqp_cstring_bytes(conn->exchange), amqp_cstring_bytes(routing_key),
						  amqp_empty_table);
		if (!broker_rpc_ok(conn, psprintf("unbinding routing key \"%s\" from queue \"%s\"",
										  routing_key, conn->drain_queue)))
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
		return broker_status_failed(conn, psprintf("binding routing key \"%s\" again", routing_key),
									rc);
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
	if (!broker_rpc_ok(conn, psprintf("unbinding routing key \"%s\"", routing_key)))
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
		if (!broker_probe_queue(conn, conn->drain_queue, &ready))
			return broker_conn_failed(
				conn, psprintf("queue \"%s\" vanished while it was drained", conn->drain_queue));
		if (ready > 0)
			return BROKER_OK;
		/* what the broker sent before the cancel-ok is queued for broker_poll */
		amqp_basic_cancel(conn->state, CONSUME_CHANNEL, amqp_cstring_bytes(conn->consumer_tag));
		if (!broker_rpc_ok(conn, "cancelling the consumer of the drained queue"))
			return BROKER_ERROR;
		conn->drain_cancelled = true;
		return broker_poll(conn);
	}
	if (conn->npending > 0)
		return BROKER_OK;
	/* if_empty: a message that came in meanwhile fails this, and we drain again */
	amqp_queue_delete(conn->state, TOPOLOGY_CHANNEL, amqp_cstring_bytes(conn->drain_queue), false,
					  true);
	if (!broker_rpc_ok(conn, psprintf("deleting the drained queue \"%s\"", conn->drain_queue)))
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
		return broker_status_failed(conn, "acknowledging deliveries", rc);
	return BROKER_OK;
}

const char *
broker_user(const BrokerConn *conn)
{
	return conn->user;
}
