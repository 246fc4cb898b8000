/*
 * client_stats.c
 *		Latency percentiles.
 *
 * Nearest rank rather than interpolation: every figure reported is a
 * latency that some request really had.
 */
#include "client_stats.h"

static int
cmp_i64(const void *a, const void *b)
{
	gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;

	return x < y ? -1 : x > y;
}

void
stats_sort(GArray *lat_us)
{
	g_array_sort(lat_us, cmp_i64);
}

double
stats_percentile_ms(const GArray *sorted_us, double p)
{
	guint n = sorted_us->len;
	guint rank;

	if (n == 0)
		return 0.0;
	rank = (guint) (p * n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return g_array_index(sorted_us, gint64, rank - 1) / 1000.0;
}
