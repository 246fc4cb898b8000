/*
 * broker.h
 *		AMQP 0-9-1 connection to RabbitMQ over rabbitmq-c 0.11.
 *
 * rabbitmq-c does nothing in the background, so every function here reads
 * whatever the broker sent (confirms, deliveries, heartbeats, closes) before
 * doing its own work, and the waiting functions sleep on the process latch
 * and the broker socket together.  No function raises an ERROR for a broker
 * problem: it logs what happened (never the password) and returns
 * BROKER_ERROR, after which the connection only answers BROKER_ERROR; the
 * caller closes it and reconnects with a backoff.
 */
#ifndef EVREP_BROKER_H
#define EVREP_BROKER_H

#include "datatype/timestamp.h"

typedef enum BrokerStatus
{
	BROKER_OK = 0,	/* done, or something arrived for the caller */
	BROKER_TIMEOUT, /* the wait ended with nothing to report */
	BROKER_LATCH,	/* MyLatch was set (and reset): check
					 * interrupts, then call again */
	BROKER_NACKED,	/* the broker refused a message: re-send */
	BROKER_ERROR	/* connection unusable: close and reconnect */
} BrokerStatus;

/*
 * What a connection is for.  A connection uses several channels (1 to 6),
 * so that a channel the broker closes does not cost the others:
 * broker_int.h says which does what.
 */
typedef enum BrokerRole
{
	BROKER_PUBLISHER, /* the exchange, publishing with confirms */
	BROKER_CONSUMER	  /* the node's queue, its bindings and consumer */
} BrokerRole;

typedef struct BrokerConn BrokerConn;

/* One message received by the consumer; owned by the connection. */
typedef struct BrokerDelivery
{
	uint64 tag; /* delivery tag, for broker_ack */
	bool redelivered;
	char *routing_key;
	char *user_id; /* AMQP user_id the broker vouches for; NULL if absent */
	char *body;	   /* NUL-terminated after len bytes */
	int len;
} BrokerDelivery;

/*
 * Connects with the current evrep.* settings and sets up the role's
 * topology.  Returns NULL (after logging why) on failure.
 */
extern BrokerConn *broker_connect(BrokerRole role);

/* Closes politely if the connection is healthy; frees everything. */
extern void broker_close(BrokerConn *conn);

/* Why the last connection failed (no password); "" if none did. */
extern const char *broker_last_error(void);

/* True when a reload changed a setting this connection was built from. */
extern bool broker_settings_changed(BrokerConn *conn);

/* True while RabbitMQ blocks publishing (resource alarm). */
extern bool broker_blocked(BrokerConn *conn);

/* When the last block ended; 0 if there was none. */
extern TimestampTz broker_unblocked_at(BrokerConn *conn);

/*
 * Marks the connection unusable and logs why (a hung node): broker_close
 * then closes it without waiting for the broker.
 */
extern void broker_give_up(BrokerConn *conn, const char *why);

/*
 * Reads everything the broker sent so far and sends a due heartbeat;
 * never sleeps.  Safe inside a transaction, to keep a long apply alive.
 * A connection silent for half of evrep.broker_timeout is probed; one
 * that then stays silent for the other half fails (BROKER_ERROR).
 */
extern BrokerStatus broker_poll(BrokerConn *conn);

/*
 * Sleeps until the latch is set (BROKER_LATCH), something arrives for the
 * caller, i.e. a delivery or the end of a publishing block (BROKER_OK), or
 * timeout_ms passes (BROKER_TIMEOUT), servicing heartbeats meanwhile.
 */
extern BrokerStatus broker_wait(BrokerConn *conn, long timeout_ms);

/* Publisher: sends one persistent, mandatory message on channel 1. */
extern BrokerStatus broker_publish(BrokerConn *conn, const char *routing_key, const char *body,
								   int len, const char *message_id);

/*
 * Consumer: sends a request (a copy request to a table's origin) as a
 * persistent message, without confirm; the caller repeats it until it is
 * answered.
 */
extern BrokerStatus broker_send_request(BrokerConn *conn, const char *routing_key, const char *body,
										int len);
/* Publisher: messages sent and not yet acked or nacked. */
extern int broker_unconfirmed(BrokerConn *conn);

/*
 * Publisher, for pipelining: the delivery tag of the last message sent,
 * and the tag up to which every message is settled (acked; a nack makes
 * the wait functions return BROKER_NACKED).
 */
extern uint64 broker_last_tag(BrokerConn *conn);
extern uint64 broker_settled_upto(BrokerConn *conn);

/*
 * Publisher: reads what arrived and, if no confirm came, sleeps once on
 * socket, timeout or, if latch, the latch (BROKER_LATCH), then reads again.
 * Without latch a set latch stays set, and interrupts wait for the socket
 * or the timeout.
 */
extern BrokerStatus broker_wait_settle(BrokerConn *conn, long timeout_ms, bool latch);

/* Consumer: binds / unbinds the node's queue to evrep.exchange. */
extern BrokerStatus broker_bind(BrokerConn *conn, const char *routing_key);
extern BrokerStatus broker_unbind(BrokerConn *conn, const char *routing_key);

/*
 * Consumer: binds again a key bound before, without waiting for the
 * broker's answer (Mnesia waits while any cluster node hangs).
 */
extern BrokerStatus broker_rebind(BrokerConn *conn, const char *routing_key);

/*
 * Consumer, after a change of evrep.queue_type: true while it still reads
 * the queue of the former type.  broker_drain_step, called when nothing is
 * pending, moves the switch on: once that queue is empty it cancels the
 * consumer, then (after the last deliveries were applied and acked) deletes
 * the queue and sets *drained; the caller then reconnects to consume the
 * node's queue.
 */
extern bool broker_draining(BrokerConn *conn);
extern BrokerStatus broker_drain_step(BrokerConn *conn, bool *drained);

/* Consumer: deliveries received and not yet taken. */
extern int broker_pending(BrokerConn *conn);

/* Consumer: oldest delivery not yet taken, or NULL; free it when done. */
extern BrokerDelivery *broker_take(BrokerConn *conn);
extern void broker_free_delivery(BrokerDelivery *delivery);

/* Consumer: acks every delivery up to and including tag. */
extern BrokerStatus broker_ack(BrokerConn *conn, uint64 tag);

/*
 * Reconnect backoff: sleeps, doubling from 100 ms up to
 * evrep.reconnect_max; a configuration reload cuts the sleep short.
 */
typedef struct BrokerBackoff
{
	int delay_ms; /* 0: next sleep is the shortest */
} BrokerBackoff;

extern void broker_backoff_sleep(BrokerBackoff *backoff);
extern void broker_backoff_reset(BrokerBackoff *backoff);

/* The broker user the connection logged in as. */
extern const char *broker_user(const BrokerConn *conn);

#endif /* EVREP_BROKER_H */
