/* svc_db_internal.h - the SvcDb struct, private to the service runtime */
#ifndef EVREP_SVC_DB_INTERNAL_H
#define EVREP_SVC_DB_INTERNAL_H

#include "svc_common.h"

struct SvcDb
{
  PGconn *pg;                  /* NULL until the first request            */
  const char *conninfo;        /* --db, shared, read-only                 */
  char options[64];            /* "-c statement_timeout=..."             */
  const char *app_name;
};

void svc_db_init (SvcDb *db, const char *conninfo, int statement_timeout_ms,
                  const char *app_name);
void svc_db_finish (SvcDb *db);

#endif
