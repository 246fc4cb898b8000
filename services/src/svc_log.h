/*
 * svc_log.h
 *		One log line per event on stderr, for the services.
 */
#ifndef EVREP_SVC_LOG_H
#define EVREP_SVC_LOG_H

#include <glib.h>

/* prog names the process in every line; call once, before any thread. */
void svc_log_init(const char *prog);

void svc_log(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

#endif /* EVREP_SVC_LOG_H */
