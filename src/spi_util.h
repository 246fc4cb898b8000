/*
 * spi_util.h
 *		SPI statements whose result is checked in one place (spi_util.c).
 */
#ifndef EVREP_SPI_UTIL_H
#define EVREP_SPI_UTIL_H

#include "executor/spi.h"

/* For rows: any number of rows, or at least one; else exactly that many. */
#define ANY_ROWS (-1)
#define SOME_ROWS (-2)

/*
 * Each runs a statement as its SPI_execute* namesake does and returns
 * SPI_processed.  Unless SPI returned expect, with rows rows, it raises
 * ERROR "<what>: <SPI result code>", what formatted as by printf.
 */
extern uint64 spi_run(const char *sql, bool read_only, long count, int expect, int64 rows,
					  const char *what, ...) pg_attribute_printf(6, 7);
extern uint64 spi_run_args(const char *sql, int nargs, Oid *argtypes, Datum *values,
						   const char *nulls, bool read_only, long count, int expect, int64 rows,
						   const char *what, ...) pg_attribute_printf(10, 11);
extern uint64 spi_run_plan(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only,
						   long count, int expect, int64 rows, const char *what, ...)
	pg_attribute_printf(8, 9);

#endif /* EVREP_SPI_UTIL_H */
