/*
 * spi_plan.h
 *		Prepared statements kept for the life of the backend.
 */
#ifndef EVREP_SPI_PLAN_H
#define EVREP_SPI_PLAN_H

#include "executor/spi.h"

/*
 * Returns *cache, preparing and keeping the statement on first use.  The
 * plan cache re-analyses the text after DDL, so a kept plan stays valid.
 */
extern SPIPlanPtr spi_kept_plan(SPIPlanPtr *cache, const char *query, int nargs, Oid *argtypes);

#endif /* EVREP_SPI_PLAN_H */
