/*
 * deadletter.c
 *		Events that could not be applied, kept in evrep.dead_letter.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "deadletter.h"
#include "incarnation.h"
#include "spi_plan.h"
#include "spi_util.h"

/*
 * [1]: the 1.1 catalog keeps the error's hint too (incarnation.h), and the
 * local table the event was for (a subscription's target, named now).
 */
static SPIPlanPtr park_plan[2];

static const char *const park_query[2] = {
	"INSERT INTO evrep.dead_letter (origin, schema_name, table_name, seq, sqlstate, error, body,"
	" attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
	"INSERT INTO evrep.dead_letter (origin, schema_name, table_name, seq, sqlstate, error, body,"
	" attempts, hint, target_schema, target_table)"
	" SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9,"
	" coalesce(n.nspname::text, s.target_schema),"
	" coalesce(c.relname::text, s.target_table)"
	" FROM (SELECT) one LEFT JOIN evrep.subscription s ON s.schema_name = $2 AND s.table_name = $3"
	" LEFT JOIN pg_catalog.pg_class c ON c.oid = s.relid"
	" LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"};

static Datum
text_or_null(const char *s, char *null)
{
	*null = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

void
deadletter_park(const WireMessage *msg, int64 seq, const ErrorData *edata, const char *body,
				int attempts)
{
	Oid argtypes[9] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID,
					   TEXTOID, TEXTOID, INT4OID, TEXTOID};
	Datum values[9];
	char nulls[9] = "         ";
	int hist = history_catalog() ? 1 : 0;

	values[0] = text_or_null(msg ? msg->origin : NULL, &nulls[0]);
	values[1] = text_or_null(msg ? msg->schema : NULL, &nulls[1]);
	values[2] = text_or_null(msg ? msg->table : NULL, &nulls[2]);
	values[3] = Int64GetDatum(seq);
	nulls[3] = seq > 0 ? ' ' : 'n';
	values[4] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
	values[5] = CStringGetTextDatum(edata->message ? edata->message : "unknown error");
	values[6] = CStringGetTextDatum(body);
	values[7] = Int32GetDatum(attempts);
	values[8] = text_or_null(edata->hint, &nulls[8]);

	spi_check(
		SPI_execute_plan(spi_kept_plan(&park_plan[hist], park_query[hist], hist ? 9 : 8, argtypes),
						 values, nulls, false, 0),
		SPI_OK_INSERT, ANY_ROWS, "could not park evrep event");
	/* the apply error context names origin, table and seq */
	ereport(LOG, (errcode(edata->sqlerrcode),
				  errmsg("evrep parked an event it could not apply: %s", edata->message),
				  attempts > 1 ? errdetail("It failed %d times.", attempts) : 0));
}

char *
deadletter_raw_body(const char *body, int len)
{
	char *hex;

	if (memchr(body, '\0', len) == NULL && pg_verifymbstr(body, len, true))
		return pnstrdup(body, len);
	hex = palloc(len * 2 + 3);
	hex[0] = '\\';
	hex[1] = 'x';
	hex_encode(body, len, hex + 2);
	hex[len * 2 + 2] = '\0';
	return hex;
}

char *
deadletter_lock_for_replay(int64 id)
{
	Oid argtypes[1] = {INT8OID};
	Datum values[1] = {Int64GetDatum(id)};
	bool isnull;

	if (spi_check(
			SPI_execute_with_args("SELECT body, replayed_at IS NOT NULL FROM evrep.dead_letter"
								  " WHERE id = $1 FOR UPDATE",
								  1, argtypes, values, NULL, false, 1),
			SPI_OK_SELECT, ANY_ROWS, "could not read dead letter") == 0)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
						errmsg("evrep dead letter " INT64_FORMAT " does not exist", id)));
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("evrep dead letter " INT64_FORMAT " was already replayed", id)));
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

void
deadletter_record_replay(int64 id, const ErrorData *edata)
{
	Oid argtypes[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum values[3];
	char nulls[3] = "   ";

	values[0] = Int64GetDatum(id);
	if (edata)
	{
		values[1] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
		values[2] = CStringGetTextDatum(edata->message ? edata->message : "unknown error");
	}
	else
		nulls[1] = nulls[2] = 'n';
	spi_check(
		SPI_execute_with_args("UPDATE evrep.dead_letter SET replay_count = replay_count + 1,"
							  " replayed_at = CASE WHEN $2 IS NULL THEN pg_catalog.now() END,"
							  " sqlstate = coalesce($2, sqlstate), error = coalesce($3, error)"
							  " WHERE id = $1",
							  3, argtypes, values, nulls, false, 0),
		SPI_OK_UPDATE, ANY_ROWS, "could not record replay");
}
