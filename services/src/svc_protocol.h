/*
 * svc_protocol.h
 *		The services' binary protocol: ThriftBinaryProtocol with a nesting
 *		limit and without unversioned message headers.
 */
#ifndef EVREP_SVC_PROTOCOL_H
#define EVREP_SVC_PROTOCOL_H

#include <glib-object.h>

/* Struct/container nesting accepted in a request (ours is 2 deep). */
#define SVC_MAX_DEPTH 16

/* A subclass of THRIFT_TYPE_BINARY_PROTOCOL; same "transport" property. */
GType svc_protocol_get_type(void);

#endif /* EVREP_SVC_PROTOCOL_H */
