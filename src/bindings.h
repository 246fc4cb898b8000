/*
 * bindings.h
 *		The bindings of the node's queue (bindings.c), as the consumer
 *		keeps them.
 */
#ifndef EVREP_BINDINGS_H
#define EVREP_BINDINGS_H

#include "broker.h"

/*
 * Consumer: binds every routing key the subscriptions and publications
 * want and unbinds what this process bound that is no longer wanted.
 * False when the broker failed (the connection is then unusable).
 */
extern bool bindings_sync(BrokerConn *conn);

/* Consumer: true if this process bound key (and has not unbound it). */
extern bool bindings_bound(const char *key);

/*
 * Consumer: binds the key evrep_subscribe is waiting for, if any, and
 * tells it the outcome.
 */
extern void bindings_serve_request(BrokerConn *conn);

#endif /* EVREP_BINDINGS_H */
