/*
 * spi_util.c
 *		The result of an SPI statement, checked in one place.
 *
 * Every statement evrep runs through SPI expects one result code, and some
 * a number of rows.  A statement that fails raises its own ERROR inside
 * SPI; anything else unexpected is a bug or a damaged catalog, an internal
 * ERROR that names what was being done.  Its message is formatted only
 * then: the statements run on the apply and publish paths.
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "spi_util.h"

uint64
spi_check(int ret, int expect, int64 rows, const char *what, ...)
{
	StringInfoData buf;

	if (ret == expect && (rows == ANY_ROWS ||
						  (rows == SOME_ROWS ? SPI_processed > 0 : SPI_processed == (uint64) rows)))
		return SPI_processed;
	initStringInfo(&buf);
	for (;;)
	{
		va_list args;
		int needed;

		va_start(args, what);
		needed = appendStringInfoVA(&buf, what, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	elog(ERROR, "%s: %s", buf.data, SPI_result_code_string(ret));
}

void
spi_connect(void)
{
	int ret = SPI_connect();

	if (ret != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
}
