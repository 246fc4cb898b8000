/*
 * amqp_common.h -- what the AMQP test tools (amqp_tool.c, evrep_fuzz.c)
 * share: dying with a message, checking a broker reply, opening and closing
 * a connection from a URL.
 *
 * Each tool is built from its one .c file on first use (rmq_tool in
 * test/lib/rabbitmq.sh, fuzz_tool in test/t/40_fuzz.t), so this is a header
 * of static functions rather than a file of its own to link.  Define
 * TOOL_NAME (the prefix of every message) before including it.  The build
 * rules rebuild a tool when its .c file is newer than the binary: touch the
 * .c files after changing this one.
 */
#ifndef EVREP_TEST_AMQP_COMMON_H
#define EVREP_TEST_AMQP_COMMON_H

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TOOL_NAME
#error "define TOOL_NAME before including amqp_common.h"
#endif

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* "TOOL_NAME: message" on stderr, exit status 1. */
static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs(TOOL_NAME ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

/*
 * Dies if method is the broker closing the channel or the connection, with
 * its code and text ("WHAT: " before it unless what is NULL); else returns.
 */
static void
die_if_closed(const char *what, amqp_method_t method)
{
	const char *sep = what ? ": " : "";

	if (what == NULL)
		what = "";
	if (method.id == AMQP_CONNECTION_CLOSE_METHOD)
	{
		amqp_connection_close_t *m = method.decoded;

		die("%s%sconnection closed by the broker: %u %.*s", what, sep, m->reply_code,
			(int) m->reply_text.len, (char *) m->reply_text.bytes);
	}
	if (method.id == AMQP_CHANNEL_CLOSE_METHOD)
	{
		amqp_channel_close_t *m = method.decoded;

		die("%s%schannel closed by the broker: %u %.*s", what, sep, m->reply_code,
			(int) m->reply_text.len, (char *) m->reply_text.bytes);
	}
}

/* Dies with "WHAT: why" unless r is a normal reply. */
static void
check_reply(amqp_rpc_reply_t r, const char *what)
{
	switch (r.reply_type)
	{
		case AMQP_RESPONSE_NORMAL:
			return;
		case AMQP_RESPONSE_NONE:
			die("%s: no reply", what);
		case AMQP_RESPONSE_LIBRARY_EXCEPTION:
			die("%s: %s", what, amqp_error_string2(r.library_error));
		case AMQP_RESPONSE_SERVER_EXCEPTION:
			die_if_closed(what, r.reply);
			die("%s: broker error (method 0x%08X)", what, r.reply.id);
	}
	die("%s: failed (reply type %d)", what, (int) r.reply_type);
}

/*
 * A connection to URL (amqp://user:password@host:port[/vhost], no TLS),
 * logged in, with channel 1 open; *user is the URL's user (for the AMQP
 * user_id property), valid for the life of the program.  Dies on failure.
 */
static amqp_connection_state_t
tool_connect(const char *url, const char **user)
{
	struct amqp_connection_info ci;
	char *u = strdup(url); /* ci points into it: never freed */
	amqp_connection_state_t conn;
	amqp_socket_t *sock;
	int st;

	if (u == NULL)
		die("out of memory");
	amqp_default_connection_info(&ci);
	if (amqp_parse_url(u, &ci) != AMQP_STATUS_OK)
		die("cannot parse URL '%s'", url);
	if (ci.ssl)
		die("amqps:// is not supported here");
	conn = amqp_new_connection();
	if ((sock = amqp_tcp_socket_new(conn)) == NULL)
		die("cannot create a socket");
	if ((st = amqp_socket_open(sock, ci.host, ci.port)) != AMQP_STATUS_OK)
		die("cannot connect to %s:%d: %s", ci.host, ci.port, amqp_error_string2(st));
	check_reply(
		amqp_login(conn, ci.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, ci.user, ci.password),
		"login");
	amqp_channel_open(conn, 1);
	check_reply(amqp_get_rpc_reply(conn), "channel.open");
	*user = ci.user;
	return conn;
}

/* Closes channel 1 and the connection, and frees it. */
static void
tool_disconnect(amqp_connection_state_t conn)
{
	amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(conn);
}

#endif /* EVREP_TEST_AMQP_COMMON_H */
