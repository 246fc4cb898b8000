/*
 * parts_send.h
 *		The publisher's side of large events: their values, in parts.
 */
#ifndef EVREP_PARTS_SEND_H
#define EVREP_PARTS_SEND_H

#include "broker.h"
#include "outbox.h"

/*
 * Publishes the values of m, a large event, as part messages, each in a
 * transaction of its own and freed once sent: the publisher holds one part
 * at a time.  False if the connection failed.  Outside a transaction.
 */
extern bool parts_send(BrokerConn *conn, const OutboxMessage *m);

#endif /* EVREP_PARTS_SEND_H */
