/*
 * copy_receive.h
 *		Subscriber side of a copy of existing rows.
 */
#ifndef EVREP_COPY_RECEIVE_H
#define EVREP_COPY_RECEIVE_H

#include "nodes/pg_list.h"
#include "wire.h"

/* A copy request to send to the table's origin. */
typedef struct CopyRequest
{
	char *schema;
	char *table;
	int64 request_id;
	char *routing_key; /* the origin binds it (wire_copy_request_key) */
	char *body;		   /* wire_copy_request */
} CopyRequest;

/*
 * Requests not answered yet whose last sending is older than the retry
 * interval (or that were never sent), palloc'd in the caller's context.
 * Inside a transaction.
 */
extern List *copy_requests_due(void);

/* Notes that a request went out.  Inside a transaction. */
extern void copy_request_sent(const CopyRequest *req);

/*
 * The request a chunk must carry to be applied here: the table's current
 * request while its copy is not done, else 0.  SPI connected.
 */
extern int64 copy_current_request(const char *schema, const char *table);

/* Moves the table's copy on after one of its chunks was applied.  SPI connected. */
extern void copy_chunk_applied(const WireMessage *msg, const WireEvent *ev);

#endif /* EVREP_COPY_RECEIVE_H */
