/*
 * svc_protocol.c
 *		A binary protocol that fails hostile requests instead of crashing.
 *
 * thrift_protocol_skip() of c_glib 0.17 recurses without a depth limit, so
 * an unknown field made of deeply nested structs (3 bytes per level) would
 * overflow a thread's stack.  This subclass of ThriftBinaryProtocol counts
 * struct/list/set/map nesting on the read side and fails the request (and
 * thereby the connection) beyond SVC_MAX_DEPTH.  Same wire format.
 */
#include "svc_protocol.h"

#include <thrift/c_glib/protocol/thrift_binary_protocol.h>

typedef struct
{
	ThriftBinaryProtocol parent;
	int depth;
} SvcProtocol;

typedef struct
{
	ThriftBinaryProtocolClass parent;
} SvcProtocolClass;

G_DEFINE_TYPE(SvcProtocol, svc_protocol, THRIFT_TYPE_BINARY_PROTOCOL)

#define PARENT_PROTOCOL_CLASS THRIFT_PROTOCOL_CLASS(svc_protocol_parent_class)

static gboolean
depth_enter(ThriftProtocol *protocol, GError **error)
{
	SvcProtocol *self = (SvcProtocol *) protocol;

	if (++self->depth > SVC_MAX_DEPTH)
	{
		g_set_error(error, THRIFT_PROTOCOL_ERROR, THRIFT_PROTOCOL_ERROR_DEPTH_LIMIT,
					"request nested deeper than %d levels", SVC_MAX_DEPTH);
		return FALSE;
	}
	return TRUE;
}

static void
depth_leave(ThriftProtocol *protocol)
{
	SvcProtocol *self = (SvcProtocol *) protocol;

	if (self->depth > 0)
		self->depth--;
}

/*
 * The binary protocol of c_glib 0.17 returns "success" for an unversioned
 * (pre-strict) message header without setting name, type or seqid, which
 * the dispatch processor then uses uninitialised.  The prototype's clients
 * write strict headers, so refuse unversioned ones (an HTTP request, say).
 */
static gint32
svc_read_message_begin(ThriftProtocol *p, gchar **name, ThriftMessageType *type, gint32 *seqid,
					   GError **error)
{
	gint32 ret;

	*name = NULL;
	((SvcProtocol *) p)->depth = 0;
	ret = PARENT_PROTOCOL_CLASS->read_message_begin(p, name, type, seqid, error);
	if (ret == 4)
	{
		g_set_error(error, THRIFT_PROTOCOL_ERROR, THRIFT_PROTOCOL_ERROR_BAD_VERSION,
					"message without a binary protocol version header");
		return -1;
	}
	return ret;
}

static gint32
svc_read_struct_begin(ThriftProtocol *p, gchar **name, GError **error)
{
	if (!depth_enter(p, error))
		return -1;
	return PARENT_PROTOCOL_CLASS->read_struct_begin(p, name, error);
}

static gint32
svc_read_struct_end(ThriftProtocol *p, GError **error)
{
	depth_leave(p);
	return PARENT_PROTOCOL_CLASS->read_struct_end(p, error);
}

static gint32
svc_read_list_begin(ThriftProtocol *p, ThriftType *et, guint32 *size, GError **error)
{
	if (!depth_enter(p, error))
		return -1;
	return PARENT_PROTOCOL_CLASS->read_list_begin(p, et, size, error);
}

static gint32
svc_read_list_end(ThriftProtocol *p, GError **error)
{
	depth_leave(p);
	return PARENT_PROTOCOL_CLASS->read_list_end(p, error);
}

static gint32
svc_read_set_begin(ThriftProtocol *p, ThriftType *et, guint32 *size, GError **error)
{
	if (!depth_enter(p, error))
		return -1;
	return PARENT_PROTOCOL_CLASS->read_set_begin(p, et, size, error);
}

static gint32
svc_read_set_end(ThriftProtocol *p, GError **error)
{
	depth_leave(p);
	return PARENT_PROTOCOL_CLASS->read_set_end(p, error);
}

static gint32
svc_read_map_begin(ThriftProtocol *p, ThriftType *kt, ThriftType *vt, guint32 *size, GError **error)
{
	if (!depth_enter(p, error))
		return -1;
	return PARENT_PROTOCOL_CLASS->read_map_begin(p, kt, vt, size, error);
}

static gint32
svc_read_map_end(ThriftProtocol *p, GError **error)
{
	depth_leave(p);
	return PARENT_PROTOCOL_CLASS->read_map_end(p, error);
}

static void
svc_protocol_class_init(SvcProtocolClass *klass)
{
	ThriftProtocolClass *pc = THRIFT_PROTOCOL_CLASS(klass);

	pc->read_message_begin = svc_read_message_begin;
	pc->read_struct_begin = svc_read_struct_begin;
	pc->read_struct_end = svc_read_struct_end;
	pc->read_list_begin = svc_read_list_begin;
	pc->read_list_end = svc_read_list_end;
	pc->read_set_begin = svc_read_set_begin;
	pc->read_set_end = svc_read_set_end;
	pc->read_map_begin = svc_read_map_begin;
	pc->read_map_end = svc_read_map_end;
}

static void
svc_protocol_init(SvcProtocol *self)
{
	self->depth = 0;
}
