/*
 * client_stats.h
 *		Latency statistics of common_client load.
 */
#ifndef EVREP_CLIENT_STATS_H
#define EVREP_CLIENT_STATS_H

#include <glib.h>

/* Sort an array of gint64 latencies (µs) for stats_percentile_ms. */
void stats_sort(GArray *lat_us);

/* Nearest-rank percentile (p in 0..1) of a sorted array, in ms; 0 if empty. */
double stats_percentile_ms(const GArray *sorted_us, double p);

#endif /* EVREP_CLIENT_STATS_H */
