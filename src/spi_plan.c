/*
 * spi_plan.c
 *		Prepared statements kept for the life of the backend.
 */
#include "postgres.h"

#include "nodes/parsenodes.h"
#include "utils/guc.h"

#include "spi_plan.h"

SPIPlanPtr
spi_kept_plan(SPIPlanPtr *cache, const char *query, int nargs, Oid *argtypes)
{
	if (*cache == NULL)
	{
		/*
		 * Generic: these statements are shaped by hand (planner_avoid), and
		 * the plan cache otherwise kept choosing custom plans, planning each
		 * statement again at every execution: a sixth of the publisher's
		 * CPU at 1k events/s.
		 */
		SPIPlanPtr plan = SPI_prepare_cursor(query, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", query,
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*cache = plan;
	}
	return *cache;
}

int
planner_avoid(const char *const *names)
{
	int level = NewGUCNestLevel();

	for (; *names != NULL; names++)
	{
		char setting[NAMEDATALEN];

		snprintf(setting, sizeof(setting), "enable_%s", *names);
		(void) set_config_option(setting, "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true,
								 0, false);
	}
	return level;
}

void
planner_restore(int level)
{
	AtEOXact_GUC(true, level);
}
