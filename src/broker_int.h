/*
 * broker_int.h
 *		What broker.c (frames, confirms, deliveries, the workers' calls) and
 *		broker_connect.c (connecting and setting up) share; broker.h is the
 *		API the rest of evrep sees.
 */
#ifndef EVREP_BROKER_INT_H
#define EVREP_BROKER_INT_H

#include <amqp.h>

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "broker.h"

/*
 * The channels of a connection.  A channel the broker closes costs only
 * itself (the consumer's own channel survives a failed bind, the
 * connection a refused copy request), and the answers of a channel's RPCs
 * cannot be mistaken for another's.
 *
 *	1  PUBLISH_CHANNEL (publisher): the exchange is declared, confirm mode
 *	   is on, every event message is published there.
 *	1  CONSUME_CHANNEL (consumer): prefetch, the consumer on the node's
 *	   queue (or the queue of the former type, until drained), acks.
 *	2  TOPOLOGY_CHANNEL (consumer): declares the exchange and the queue;
 *	   binds, unbinds, deletes a drained queue.  A failed bind must not
 *	   close the consumer's channel.
 *	3  PROBE_CHANNEL (consumer): a passive declare of a queue that may not
 *	   exist (the queue of the former type) closes its channel with 404;
 *	   opened for each probe.
 *	4  REQUEST_CHANNEL (consumer): copy requests to an origin, opened at the
 *	   first one; the broker may refuse one (a topic permission missing) by
 *	   closing the channel, which must not cost the connection.
 *	5  LOCK_CHANNEL (both): the node's exclusive lock queue,
 *	   evrep.<node>.lock.<role>, lives with the connection (take_node_lock).
 *	6  LIVENESS_CHANNEL (both): the probe of a silent broker (check_alive),
 *	   whose answer must match no RPC's.
 */
#define PUBLISH_CHANNEL 1
#define CONSUME_CHANNEL 1
#define TOPOLOGY_CHANNEL 2
#define PROBE_CHANNEL 3
#define REQUEST_CHANNEL 4
#define LOCK_CHANNEL 5
#define LIVENESS_CHANNEL 6

/* How often a worker asks again for a lock the broker holds for its past */
#define LOCK_RETRY_MS 10000

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
	TimestampTz lock_retry_at; /* ask for the node's lock again then; 0: no need */
	bool lock_waited;		   /* the broker held our lock for an old connection */

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

static inline const char *
role_name(BrokerConn *conn)
{
	return conn->role == BROKER_PUBLISHER ? "publisher" : "consumer";
}

static inline char *
bytes_to_cstring(amqp_bytes_t b)
{
	return pnstrdup(b.bytes, b.len);
}

static inline long
ms_until(TimestampTz deadline)
{
	return TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
}

/* broker.c */

/*
 * Marks the connection unusable and logs why.  WARNING, not ERROR: the
 * worker must survive to reconnect.  Returns BROKER_ERROR.
 */
extern BrokerStatus broker_conn_failed(BrokerConn *conn, const char *what);
/* The same for a library call that returned status. */
extern BrokerStatus broker_status_failed(BrokerConn *conn, const char *doing, int status);
/* A reply, as the log says it. */
extern char *broker_describe_reply(amqp_rpc_reply_t r);
/* The broker said something: it is alive, any probe is answered. */
extern void broker_heard(BrokerConn *conn);
/* Checks the reply of the RPC just made; logs and fails if it failed. */
extern bool broker_rpc_ok(BrokerConn *conn, const char *doing);
/* Bounds how long a write may wait for a hung node (TCP_USER_TIMEOUT); 0: no bound. */
extern void broker_set_write_timeout(BrokerConn *conn, int ms);
/* A connection was made: the next failure is news, logged as a WARNING. */
extern void broker_log_next_failure(void);

/* broker_connect.c */
extern bool broker_open_channel(BrokerConn *conn, amqp_channel_t channel);
/*
 * Does queue exist, and how many messages are ready in it?  False also
 * when the connection failed (conn->broken says which).
 */
extern bool broker_probe_queue(BrokerConn *conn, const char *queue, uint32 *ready);
/* Asks for the node's lock queue without waiting (see take_node_lock) */
extern bool broker_ask_lock(BrokerConn *conn);
/* The broker refused that (closed LOCK_CHANNEL with code) */
extern bool broker_lock_refused(BrokerConn *conn, int code);

#endif /* EVREP_BROKER_INT_H */
