/*
 * spi_util.h
 *		The result of an SPI statement, checked in one place (spi_util.c).
 */
#ifndef EVREP_SPI_UTIL_H
#define EVREP_SPI_UTIL_H

#include "executor/spi.h"

/* For rows: any number of rows, or at least one; else exactly that many. */
#define ANY_ROWS (-1)
#define SOME_ROWS (-2)

/*
 * ret is what an SPI_execute* call just returned: unless it is expect,
 * with rows rows (SPI_processed), raises ERROR "<what>: <SPI result
 * code>", what formatted as by printf.  Returns SPI_processed.
 *
 *		spi_check(SPI_execute_plan(plan, values, NULL, false, 0), SPI_OK_INSERT,
 *				  ANY_ROWS, "could not park evrep event");
 */
extern uint64 spi_check(int ret, int expect, int64 rows, const char *what, ...)
	pg_attribute_printf(4, 5);

/* SPI_connect, or ERROR. */
extern void spi_connect(void);

#endif /* EVREP_SPI_UTIL_H */
