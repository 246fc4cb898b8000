/*
 * svc_log.c
 *		Timestamped log lines on stderr.
 *
 * A line is written by a single fprintf, which locks the stream, so lines
 * of concurrent connection threads never interleave.
 */
#include "svc_log.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "svc";

void
svc_log_init(const char *prog)
{
	log_prog = prog;
	/* a service's stderr is usually a file: do not hold lines back */
	setvbuf(stderr, NULL, _IOLBF, 0);
}

void
svc_log(const char *fmt, ...)
{
	char ts[32], msg[2048];
	struct timespec now;
	struct tm tm;
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &now);
	localtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
	va_start(ap, fmt);
	g_vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s.%03ld %s[%d]: %s\n", ts, now.tv_nsec / 1000000L, log_prog, (int) getpid(),
			msg);
}
