/*
 * svc_shutdown.c
 *		Signals to the accept loop, and the stopping flag for requests.
 *
 * The handler only writes to a self-pipe: the accept loop polls its read
 * end next to the listening socket, which is the one async-signal-safe way
 * to wake it.
 */
#define _GNU_SOURCE /* pipe2 */
#include "svc_shutdown.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static int wake_pipe[2] = {-1, -1};
static volatile sig_atomic_t got_signal = 0;
static gint stopping = 0; /* read by connection threads */

static void
on_signal(int signo)
{
	int saved = errno;
	ssize_t n;

	got_signal = signo;
	n = write(wake_pipe[1], "x", 1);
	(void) n;
	errno = saved;
}

int
svc_shutdown_init(void)
{
	struct sigaction sa;

	if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		return -1;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* a client that vanishes mid-reply must not kill the service */
	signal(SIGPIPE, SIG_IGN);
	return wake_pipe[0];
}

int
svc_shutdown_signal(void)
{
	return got_signal;
}

void
svc_shutdown_begin(void)
{
	g_atomic_int_set(&stopping, 1);
}

gboolean
svc_running(void)
{
	return !g_atomic_int_get(&stopping);
}
