/*
 * broker_url.c
 *		evrep.broker_url as the list of the nodes of one RabbitMQ cluster.
 *
 * rabbitmq-c 0.11 connects to one host; trying the next node of a cluster
 * when one is down is ours to do.
 */
#include "postgres.h"

#include "common/pg_prng.h"

#include "broker_url.h"

/* Next index to try first; -1 before the first connection. */
static int next_start = -1;

int
broker_url_count(const char *list)
{
	int n = 1;

	if (list[strspn(list, " \t")] == '\0')
		return 0;
	for (const char *p = list; *p; p++)
		n += *p == ',';
	return n;
}

char *
broker_url_nth(const char *list, int n)
{
	const char *start = list;
	const char *end;

	for (int i = 0; i < n && start != NULL; i++)
	{
		start = strchr(start, ',');
		if (start != NULL)
			start++;
	}
	if (start == NULL)
		return pstrdup("");
	end = strchr(start, ',');
	if (end == NULL)
		end = start + strlen(start);
	while (start < end && (*start == ' ' || *start == '\t'))
		start++;
	while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	return pnstrdup(start, end - start);
}

int
broker_url_start(int n)
{
	if (n <= 1)
		return 0;
	if (next_start < 0)
		next_start = (int) pg_prng_uint64_range(&pg_global_prng_state, 0, n - 1);
	return next_start % n;
}

void
broker_url_connected(int index, int n)
{
	next_start = n > 0 ? (index + 1) % n : 0;
}
