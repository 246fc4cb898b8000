/*
 * evrep.h
 *		Settings and shared state every evrep module needs.
 */
#ifndef EVREP_H
#define EVREP_H

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/condition_variable.h"
#include "storage/s_lock.h"

/* Settings (evrep.c); strings are never NULL after _PG_init. */
extern char *evrep_node_name;
extern char *evrep_database;
extern char *evrep_broker_url;
extern char *evrep_broker_password_file;
extern char *evrep_exchange;
extern int evrep_queue_type; /* EvrepQueueType */
extern char *evrep_ssl_ca_file;
extern char *evrep_ssl_cert_file;
extern char *evrep_ssl_key_file;
extern bool evrep_ssl_verify_peer;
extern bool evrep_ssl_verify_hostname;
extern int evrep_heartbeat;			  /* seconds */
extern int evrep_confirm_timeout;	  /* ms for a confirm or reply from a live node */
extern int evrep_broker_timeout;	  /* ms a broker node may stay silent */
extern int evrep_batch_size;		  /* events per publisher round */
extern int evrep_publish_window;	  /* unconfirmed messages before the next batch */
extern int evrep_message_events;	  /* max events in one AMQP message */
extern int evrep_poll_interval;		  /* ms, publisher fallback poll */
extern int evrep_outbox_warn_depth;	  /* events; 0: never warn */
extern int evrep_prefetch;			  /* consumer prefetch count */
extern bool evrep_apply_async_commit; /* apply commits without waiting for the flush */
extern int evrep_apply_batch;		  /* deliveries per apply transaction */
extern int evrep_apply_max_attempts;  /* tries of a message before it is parked */
extern int evrep_copy_chunk_rows;	  /* rows per chunk of a copy */
extern int evrep_copy_rate_limit;	  /* rows/s a copy sends at most; 0: no limit */
extern int evrep_max_message_bytes;	  /* largest message the publisher sends */
extern int evrep_bind_timeout;		  /* ms evrep_subscribe waits for a binding */
extern int evrep_reconnect_max;		  /* ms, cap of the reconnect backoff */

/*
 * What a message holds besides its events' rows (names, key, history),
 * at most: a row may take evrep.max_message_bytes less this.
 */
#define EVREP_ENVELOPE_BYTES (16 * 1024)

/* How large one row's JSON may be: it must fit in a message */
static inline Size
evrep_row_limit(void)
{
	return (Size) evrep_max_message_bytes - EVREP_ENVELOPE_BYTES;
}

/*
 * Shared memory.  The publisher advertises its latch so that committing
 * writers can wake it; evrep_subscribe/unsubscribe bump the generation so
 * that the consumer re-syncs its queue bindings without a restart.
 */
typedef enum EvrepWorkerKind
{
	EVREP_PUBLISHER = 0,
	EVREP_CONSUMER = 1
} EvrepWorkerKind;

#define EVREP_ERROR_LEN 256

typedef struct EvrepWorkerState
{
	Latch *latch; /* NULL while the worker does not run */
	int pid;
	bool connected; /* to the broker */
	int64 events;	/* published resp. applied since start */
	TimestampTz last_error_at;
	char last_error[EVREP_ERROR_LEN];
} EvrepWorkerState;

typedef struct EvrepShared
{
	slock_t mutex; /* protects workers[] except latch */
	EvrepWorkerState workers[2];
	pg_atomic_uint64 subscription_generation;
	pg_atomic_uint32 outbox_slot; /* outbox partition writers insert into */
	pg_atomic_uint32 copy_due;	  /* a copy job may wait for the publisher */

	/*
	 * evrep_subscribe(copy_data => false) asks the consumer to bind a key
	 * now; under mutex.  bind_done reaches bind_requested when it tried.
	 */
	uint64 bind_requested;
	uint64 bind_done;
	bool bind_ok;
	char bind_key[2 * 3 * NAMEDATALEN];
	ConditionVariable bind_cv;
} EvrepShared;

extern EvrepShared *evrep_shared;

/*
 * A crash test's hook (evrep.crash_at): SIGKILLs this process, once per
 * data directory, when the setting names this point.
 */
extern char *evrep_crash_at;
extern void evrep_crash_point(const char *point);

/* Wakes the publisher; cheap, safe to call with no publisher running. */
extern void evrep_wake_publisher(void);

/*
 * Worker bookkeeping shown by evrep.status: call evrep_worker_started()
 * once the worker runs (it advertises MyLatch and clears it at exit),
 * evrep_worker_report() after connecting, failing or making progress
 * (error NULL clears nothing; pass "" to clear the last error).
 */
extern void evrep_worker_started(EvrepWorkerKind kind);
extern void evrep_worker_report(EvrepWorkerKind kind, bool connected, int64 events_done,
								const char *error);

/* The node's queue: "evrep." || node_name, and ".quorum" for a quorum queue (palloc'd). */
typedef enum EvrepQueueType
{
	EVREP_QUEUE_QUORUM,
	EVREP_QUEUE_CLASSIC
} EvrepQueueType;

extern char *evrep_queue_name(int queue_type);

#endif /* EVREP_H */
