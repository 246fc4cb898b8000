/*
 * spi_util.c
 *		SPI statements whose result is checked in one place.
 *
 * Every statement evrep runs through SPI expects one result code, and some
 * a number of rows; anything else is a bug or a damaged catalog, an
 * internal ERROR that names what was being done.  The message is formatted
 * only then: the statements run on the apply and publish paths.
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "spi_util.h"

static char *unexpected(int ret, int expect, int64 rows, const char *what, va_list args)
	pg_attribute_printf(4, 0);

/*
 * NULL when SPI returned expect with rows rows; else the ERROR's message,
 * "<what>: <SPI result code>".
 */
static char *
unexpected(int ret, int expect, int64 rows, const char *what, va_list args)
{
	StringInfoData buf;

	if (ret == expect && (rows == ANY_ROWS ||
						  (rows == SOME_ROWS ? SPI_processed > 0 : SPI_processed == (uint64) rows)))
		return NULL;
	initStringInfo(&buf);
	for (;;)
	{
		va_list copy;
		int needed;

		va_copy(copy, args);
		needed = appendStringInfoVA(&buf, what, copy);
		va_end(copy);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	appendStringInfo(&buf, ": %s", SPI_result_code_string(ret));
	return buf.data;
}

uint64
spi_run(const char *sql, bool read_only, long count, int expect, int64 rows, const char *what, ...)
{
	int ret = SPI_execute(sql, read_only, count);
	va_list args;
	char *error;

	va_start(args, what);
	error = unexpected(ret, expect, rows, what, args);
	va_end(args);
	if (error)
		elog(ERROR, "%s", error);
	return SPI_processed;
}

uint64
spi_run_args(const char *sql, int nargs, Oid *argtypes, Datum *values, const char *nulls,
			 bool read_only, long count, int expect, int64 rows, const char *what, ...)
{
	int ret = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, read_only, count);
	va_list args;
	char *error;

	va_start(args, what);
	error = unexpected(ret, expect, rows, what, args);
	va_end(args);
	if (error)
		elog(ERROR, "%s", error);
	return SPI_processed;
}

uint64
spi_run_plan(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only, long count,
			 int expect, int64 rows, const char *what, ...)
{
	int ret = SPI_execute_plan(plan, values, nulls, read_only, count);
	va_list args;
	char *error;

	va_start(args, what);
	error = unexpected(ret, expect, rows, what, args);
	va_end(args);
	if (error)
		elog(ERROR, "%s", error);
	return SPI_processed;
}
