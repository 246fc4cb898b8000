/*
 * twopc_service.h
 *		What the two-phase commit binaries add to the shared service runtime:
 *		options, start-up and shutdown, the peer connection, error messages.
 */
#ifndef EVREP_TWOPC_SERVICE_H
#define EVREP_TWOPC_SERVICE_H

#include <glib.h>

#include "evrep_evrep_types.h"
#include "svc_db.h"
#include "svc_server.h"
#include "twopc_write.h"

/* For SvcConfig.summary, .options, .setup, .start and .stop. */
extern const char twopc_summary[];
extern const GOptionEntry twopc_options[];
gboolean twopc_setup(const SvcSettings *settings);
void twopc_start(void);
void twopc_stop(void);

/* A connection thread's handle on the peer database (not connected yet). */
void twopc_peer_init(SvcDb *peer);

/*
 * TWOPC_DEFINE_HANDLER(TN, t_n, PARENT_TYPE, ParentClass, insert_fn) defines
 * the GObject type t_n (G_DEFINE_TYPE) of a 2PC handler: a subclass of a
 * product handler whose instance struct TN holds the parent first and a
 * SvcDb peer, and whose class struct TN##Class holds the parent's class
 * (ParentClass) first.  Each handler (one a connection thread) opens its
 * own peer connection lazily and closes it when finalized; the class's
 * insert is insert_fn.  Declare TN, TN##Class and insert_fn before it.
 */
#define TWOPC_DEFINE_HANDLER(TN, t_n, PARENT_TYPE, ParentClass, insert_fn)                         \
	static GType t_n##_get_type(void);                                                             \
	G_DEFINE_TYPE(TN, t_n, PARENT_TYPE)                                                            \
                                                                                                   \
	static void t_n##_finalize(GObject *object)                                                    \
	{                                                                                              \
		svc_db_finish(&((TN *) object)->peer);                                                     \
		G_OBJECT_CLASS(t_n##_parent_class)->finalize(object);                                      \
	}                                                                                              \
                                                                                                   \
	static void t_n##_class_init(TN##Class *klass)                                                 \
	{                                                                                              \
		G_OBJECT_CLASS(klass)->finalize = t_n##_finalize;                                          \
		((ParentClass *) klass)->insert = insert_fn;                                               \
	}                                                                                              \
                                                                                                   \
	static void t_n##_init(TN *self)                                                               \
	{                                                                                              \
		twopc_peer_init(&self->peer);                                                              \
	}

/* How a service's insert becomes a two-phase commit (twopc_insert). */
typedef struct TwopcInsert
{
	const char *local_sql; /* on the service's own database */
	const char *peer_sql;  /* on the peer's replica, the same parameters */
	int nparams;
	const char *call;	/* for messages, e.g. "createCustomer" */
	const char *entity; /* "<entity> <id> already exists", e.g. "customer" */
} TwopcInsert;

/*
 * The 2PC handlers' insert: twopc_write of one row (params[0] its id) to db
 * and peer; on failure *ex says why (a duplicate id, the peer, an outcome in
 * doubt) and FALSE.  *applied as twopc_write's.
 */
gboolean twopc_insert(const TwopcInsert *ins, SvcDb *db, SvcDb *peer, const char *const *params,
					  gboolean *applied, EvrepOperationFailedException **ex);

#endif /* EVREP_TWOPC_SERVICE_H */
