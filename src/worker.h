/*
 * worker.h
 *		The evrep background workers and what they share.
 */
#ifndef EVREP_WORKER_H
#define EVREP_WORKER_H

#include "broker.h"
#include "evrep.h"

/* How often to look for CREATE EXTENSION while it has not run. */
#define NO_EXTENSION_WAIT_MS 5000

/* Entry points named in the BackgroundWorker registrations (evrep.c). */
PGDLLEXPORT void evrep_publisher_main(Datum main_arg);
PGDLLEXPORT void evrep_consumer_main(Datum main_arg);

/* worker.c */
extern void worker_init(EvrepWorkerKind kind, const char *name);
extern void worker_begin_turn(void);
extern void worker_commit(void);
extern void worker_abort(void);
extern void worker_check_interrupts(void);
extern bool worker_extension_ready(void);
extern void worker_check_history(void);
extern bool worker_require_history(void);
extern void worker_durable_commit(void);
extern void worker_async_commit(void);
extern BrokerConn *worker_connect(EvrepWorkerKind kind, BrokerRole role, BrokerBackoff *backoff);

#endif /* EVREP_WORKER_H */
