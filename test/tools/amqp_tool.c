/*
 * amqp_tool -- the AMQP operations tests need that amqp-tools 0.11 lacks.
 * Built on first use by rmq_tool (test/lib/rabbitmq.sh).
 *
 *   amqp_tool declare-quorum URL QUEUE
 *       declares a durable quorum queue (x-queue-type = "quorum")
 *   amqp_tool publish URL EXCHANGE ROUTING_KEY BODY [USER_ID]
 *       publishes one persistent, mandatory message and waits for the
 *       broker's confirm; fails if it is nacked or returned as unroutable
 *       (amqp-publish sends no confirm: a quorum queue may lose a message
 *       published just before the connection closes).  BODY "-" reads the
 *       body from standard input (any bytes).  USER_ID sets the AMQP user_id
 *       property, which RabbitMQ checks against the login ("=" means the
 *       URL's user; amqp-publish cannot set it).
 *
 * URL is amqp://user:password@host:port[/vhost] (no TLS: amqp-tools' --ssl
 * covers that). Exit status 0 on success, 1 on failure (message on stderr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define TOOL_NAME "amqp_tool"
#include "amqp_common.h"

static const char *url_user; /* for USER_ID "=" */

static int
declare_quorum(const char *url, const char *queue)
{
	amqp_connection_state_t conn = tool_connect(url, &url_user);
	amqp_table_entry_t e;
	amqp_table_t args;

	e.key = amqp_cstring_bytes("x-queue-type");
	e.value.kind = AMQP_FIELD_KIND_UTF8;
	e.value.value.bytes = amqp_cstring_bytes("quorum");
	args.num_entries = 1;
	args.entries = &e;
	amqp_queue_declare(conn, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, args);
	check_reply(amqp_get_rpc_reply(conn), "queue.declare");
	tool_disconnect(conn);
	return 0;
}

/* The whole of standard input. */
static amqp_bytes_t
read_stdin(void)
{
	size_t cap = 65536, len = 0, n;
	char *buf = malloc(cap);
	amqp_bytes_t b;

	if (buf == NULL)
		die("out of memory");
	while ((n = fread(buf + len, 1, cap - len, stdin)) > 0)
	{
		len += n;
		if (len == cap && (buf = realloc(buf, cap *= 2)) == NULL)
			die("out of memory");
	}
	b.bytes = buf;
	b.len = len;
	return b;
}

static int
publish(const char *url, const char *exchange, const char *key, const char *body,
		const char *user_id)
{
	amqp_connection_state_t conn = tool_connect(url, &url_user);
	amqp_basic_properties_t props;
	amqp_bytes_t payload = strcmp(body, "-") == 0 ? read_stdin() : amqp_cstring_bytes(body);
	struct timeval tv;
	int returned = 0;

	amqp_confirm_select(conn, 1);
	check_reply(amqp_get_rpc_reply(conn), "confirm.select");
	memset(&props, 0, sizeof(props));
	props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
	props.delivery_mode = 2;
	props.content_type = amqp_cstring_bytes("text/plain");
	if (user_id != NULL)
	{
		props._flags |= AMQP_BASIC_USER_ID_FLAG;
		props.user_id = amqp_cstring_bytes(strcmp(user_id, "=") == 0 ? url_user : user_id);
	}
	if (amqp_basic_publish(conn, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes(key), 1, 0,
						   &props, payload) != AMQP_STATUS_OK)
		die("basic.publish failed");
	for (;;)
	{
		amqp_frame_t f;
		int st;

		tv.tv_sec = 30;
		tv.tv_usec = 0;
		st = amqp_simple_wait_frame_noblock(conn, &f, &tv);
		if (st == AMQP_STATUS_TIMEOUT)
			die("no confirm within 30 s");
		if (st != AMQP_STATUS_OK)
			die("waiting for the confirm: %s", amqp_error_string2(st));
		if (f.frame_type != AMQP_FRAME_METHOD)
			continue;
		switch (f.payload.method.id)
		{
			case AMQP_BASIC_ACK_METHOD:
				if (returned)
					die("message returned as unroutable (no queue bound to '%s')", key);
				tool_disconnect(conn);
				return 0;
			case AMQP_BASIC_NACK_METHOD:
				die("message nacked by the broker");
			case AMQP_BASIC_RETURN_METHOD:
			{
				amqp_message_t m;

				returned = 1;
				check_reply(amqp_read_message(conn, f.channel, &m, 0),
							"reading the returned message");
				amqp_destroy_message(&m);
				break;
			}
			case AMQP_CHANNEL_CLOSE_METHOD:
				die_if_closed(NULL, f.payload.method);
				break;
			default:
				break;
		}
	}
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "declare-quorum") == 0)
		return declare_quorum(argv[2], argv[3]);
	if ((argc == 6 || argc == 7) && strcmp(argv[1], "publish") == 0)
		return publish(argv[2], argv[3], argv[4], argv[5], argc == 7 ? argv[6] : NULL);
	fprintf(stderr, "usage: amqp_tool declare-quorum URL QUEUE\n"
					"       amqp_tool publish URL EXCHANGE ROUTING_KEY BODY|- [USER_ID|=]\n");
	return 2;
}
