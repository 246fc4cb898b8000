/*
 * spi_plan.h
 *		Prepared statements kept for the life of the backend.
 */
#ifndef EVREP_SPI_PLAN_H
#define EVREP_SPI_PLAN_H

#include "executor/spi.h"

/*
 * Returns *cache, preparing and keeping the statement on first use, with a
 * generic plan.  The plan cache re-analyses the text after DDL, so a kept
 * plan stays valid.
 */
extern SPIPlanPtr spi_kept_plan(SPIPlanPtr *cache, const char *query, int nargs, Oid *argtypes);

/*
 * Turns the planner's enable_<name> settings off, for the names in the
 * NULL-terminated list, until planner_restore(level).  A kept plan is
 * made at its first execution and again at the first after an
 * invalidation (a TRUNCATE of the outbox sends one), so the settings must
 * hold around each execution.
 */
extern int planner_avoid(const char *const *names);
extern void planner_restore(int level);

#endif /* EVREP_SPI_PLAN_H */
