/*
 * svc_shutdown.h
 *		SIGTERM/SIGINT handling and the "stopping" state of a service.
 */
#ifndef EVREP_SVC_SHUTDOWN_H
#define EVREP_SVC_SHUTDOWN_H

#include <glib.h>

/*
 * Install the SIGTERM/SIGINT handlers (and ignore SIGPIPE).  Returns a
 * descriptor that becomes readable once a signal has arrived, or -1 with
 * errno set.
 */
int svc_shutdown_init(void);

/* The signal received (SIGTERM, SIGINT), or 0. */
int svc_shutdown_signal(void);

/* From now on svc_running() is FALSE. */
void svc_shutdown_begin(void);

/* FALSE once shutdown has begun: long waits inside a request end early. */
gboolean svc_running(void);

#endif /* EVREP_SVC_SHUTDOWN_H */
