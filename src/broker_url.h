/*
 * broker_url.h
 *		evrep.broker_url as the list of the nodes of one RabbitMQ cluster.
 */
#ifndef EVREP_BROKER_URL_H
#define EVREP_BROKER_URL_H

/* Number of comma-separated URLs in the list (0 for an empty setting). */
extern int broker_url_count(const char *list);

/* The n-th URL (from 0), without surrounding blanks; palloc'd. */
extern char *broker_url_nth(const char *list, int n);

/*
 * The order in which a new connection tries the n URLs: a random first one
 * the first time, so that the nodes of a cluster share the connections (as
 * the Java client shuffles its address list), and after that the one after
 * the node last connected to, so that a reconnect moves on from a node that
 * just failed.  broker_url_connected records which one worked.
 */
extern int broker_url_start(int n);
extern void broker_url_connected(int index, int n);

#endif /* EVREP_BROKER_URL_H */
