/*
 * spi_plan.c
 *		Prepared statements kept for the life of the backend.
 */
#include "postgres.h"

#include "spi_plan.h"

SPIPlanPtr
spi_kept_plan(SPIPlanPtr *cache, const char *query, int nargs, Oid *argtypes)
{
	if (*cache == NULL)
	{
		SPIPlanPtr plan = SPI_prepare(query, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", query,
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*cache = plan;
	}
	return *cache;
}
