/*
 * incarnation.c
 *		Notice when this database went back in time or changed identity.
 *
 * Crash recovery is not a new history: everything sent was durable first.
 * What is: a start from a base backup (PostgreSQL renames its backup_label
 * to backup_label.old, which stays), a new timeline (promotion, archive
 * recovery to a target), a new system identifier (pg_dump reloaded into
 * another cluster) or database (reloaded into another database).  A
 * restore that leaves none of these (a file-system snapshot) looks like a
 * crash here; subscribers see it in the WAL positions the messages carry
 * (apply.c).
 */
#include "postgres.h"

#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "incarnation.h"
#include "spi_util.h"

int evrep_repair = EVREP_REPAIR_RESYNC;
int evrep_gap_repair_after = 300;

/* What this server is now. */
typedef struct Identity
{
	char *system_identifier;
	Oid database;
	TimeLineID timeline;
	char *backup_label; /* NULL: none */
} Identity;

bool
history_catalog(void)
{
	Oid nspid = get_namespace_oid("evrep", true);

	return OidIsValid(nspid) && OidIsValid(get_relname_relid("incarnation", nspid));
}

/* backup_label.old, which a start from a base backup leaves behind. */
static char *
read_backup_label(void)
{
	FILE *f = AllocateFile("backup_label.old", "r");
	StringInfoData buf;
	char chunk[1024];
	size_t n;

	if (f == NULL)
		return NULL;
	initStringInfo(&buf);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && buf.len < 64 * 1024)
		appendBinaryStringInfo(&buf, chunk, n);
	FreeFile(f);
	return buf.data;
}

static void
current_identity(Identity *id)
{
	id->system_identifier = psprintf(UINT64_FORMAT, GetSystemIdentifier());
	id->database = MyDatabaseId;
	id->timeline = GetWALInsertionTimeLine();
	id->backup_label = read_backup_label();
}

/*
 * Why the history changed; NULL if it did not.  row is the current
 * history, with a last column that tells whether rows of another cluster
 * or database are here that no history of ours has followed yet: a dump's
 * rows can be restored after a worker recorded its first start, so the
 * current row alone does not tell.
 */
static const char *
what_changed(const Identity *now, HeapTuple row, TupleDesc desc, bool *reloaded)
{
	bool isnull;
	char *sysid = SPI_getvalue(row, desc, 2);
	Oid database = DatumGetObjectId(SPI_getbinval(row, desc, 3, &isnull));
	TimeLineID timeline = DatumGetInt32(SPI_getbinval(row, desc, 4, &isnull));
	char *label = SPI_getvalue(row, desc, 5);

	*reloaded = DatumGetBool(SPI_getbinval(row, desc, 6, &isnull));
	if (*reloaded)
		return strcmp(sysid, now->system_identifier) != 0
				   ? "new cluster: reloaded from a dump or copied into another cluster"
				   : "new database: reloaded from a dump";
	if (strcmp(sysid, now->system_identifier) != 0 || database != now->database)
		return NULL; /* a reload already followed; its row sorts after ours */
	if (timeline != now->timeline)
		return psprintf("new timeline %u: promoted standby or point-in-time recovery",
						now->timeline);
	if (now->backup_label != NULL && (label == NULL || strcmp(label, now->backup_label) != 0))
		return "restored from a base backup";
	return NULL;
}

static void
run(const char *sql, int expected)
{
	spi_check(SPI_execute(sql, false, 0), expected, ANY_ROWS, "evrep history statement failed: %s",
			  sql);
}

static int64
record_incarnation(const Identity *now, const char *reason, bool reloaded)
{
	Oid argtypes[7] = {INT8OID, TEXTOID, NUMERICOID, INT4OID, TEXTOID, OIDOID, BOOLOID};
	Datum values[7];
	char nulls[7] = "       ";
	bool isnull;

	values[0] = Int64GetDatum(GetCurrentTimestamp());
	values[1] = CStringGetTextDatum(reason);
	values[2] = DirectFunctionCall3(numeric_in, CStringGetDatum(now->system_identifier),
									ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	values[3] = Int32GetDatum(now->timeline);
	values[4] = now->backup_label ? CStringGetTextDatum(now->backup_label) : (Datum) 0;
	values[5] = ObjectIdGetDatum(now->database);
	values[6] = BoolGetDatum(reloaded);
	if (now->backup_label == NULL)
		nulls[4] = 'n';
	spi_check(
		SPI_execute_with_args(
			"INSERT INTO evrep.incarnation AS i (id, reason, system_identifier, timeline,"
			" backup_label, database_oid, start_lsn, reloaded)"
			" SELECT GREATEST($1, coalesce(pg_catalog.max(id), 0) + 1), $2, $3, $4, $5,"
			" $6, pg_catalog.pg_current_wal_insert_lsn(), $7 FROM evrep.incarnation RETURNING id",
			7, argtypes, values, nulls, false, 1),
		SPI_OK_INSERT_RETURNING, 1, "could not record an evrep history");
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Oids mean nothing in the cluster or database a dump was restored into:
 * tables and roles are found again by name.
 */
static void
resolve_names_again(void)
{
	run("UPDATE evrep.publication SET relid = coalesce(pg_catalog.to_regclass("
		"pg_catalog.format('%I.%I', schema_name, table_name))::oid, relid)",
		SPI_OK_UPDATE);
	/*
	 * A subscription's relid is a regclass, restored by name: only one that
	 * dangles is looked up by the target's names as subscribed.
	 */
	run("UPDATE evrep.subscription s SET relid = CASE WHEN EXISTS (SELECT FROM"
		" pg_catalog.pg_class c WHERE c.oid = s.relid) THEN s.relid ELSE"
		" coalesce(pg_catalog.to_regclass(pg_catalog.format('%I.%I', target_schema,"
		" target_table)), s.relid) END,"
		" owner = coalesce((SELECT oid FROM pg_catalog.pg_roles WHERE rolname = owner_name),"
		" owner)",
		SPI_OK_UPDATE);
}

/*
 * This node's streams go on above their last number; the numbers below
 * are shared with the history before, except after a reload: events
 * captured before the dump and never sent are gone with the old outbox,
 * so nothing is vouched for and every subscriber copies again.
 */
static void
fork_streams(bool reloaded)
{
	run(reloaded ? "UPDATE evrep.publication SET since = 1"
				 : "UPDATE evrep.publication SET since = last_seq + 1",
		SPI_OK_UPDATE);
}

/*
 * What this node applied and acked in the lost part of its history is
 * gone, and the broker no longer has it: only the origins can fill the
 * hole, with a copy.
 */
static int64
repair_subscriptions(void)
{
	if (evrep_repair == EVREP_REPAIR_WARN)
	{
		run("SELECT 1 FROM evrep.subscription", SPI_OK_SELECT);
		return -(int64) SPI_processed;
	}
	run("SELECT evrep._start_sync(schema_name, table_name, 'requested') FROM evrep.subscription",
		SPI_OK_SELECT);
	return SPI_processed;
}

void
incarnation_check(void)
{
	Identity now;
	const char *reason;
	bool reloaded = false;
	int64 id;
	int64 resynced;

	current_identity(&now);
	spi_connect();
	/*
	 * Both workers check at start: one decides.  The read below is not
	 * read-only, so that it takes a snapshot after the lock and sees what
	 * the other decided.
	 */
	run("LOCK TABLE evrep.incarnation IN EXCLUSIVE MODE", SPI_OK_UTILITY);
	if (spi_check(
			SPI_execute_with_args(
				"SELECT id, system_identifier::text, database_oid, timeline, backup_label,"
				" EXISTS (SELECT FROM evrep.incarnation f"
				"  WHERE (f.system_identifier, f.database_oid) IS DISTINCT FROM ($1, $2))"
				" AND NOT EXISTS (SELECT FROM evrep.incarnation o"
				"  WHERE o.system_identifier = $1 AND o.database_oid = $2 AND o.reloaded)"
				" FROM evrep.incarnation ORDER BY id DESC LIMIT 1",
				2, (Oid[]){NUMERICOID, OIDOID},
				(Datum[]){DirectFunctionCall3(numeric_in, CStringGetDatum(now.system_identifier),
											  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)),
						  ObjectIdGetDatum(now.database)},
				NULL, false, 1),
			SPI_OK_SELECT, ANY_ROWS, "could not read the evrep history") == 0)
	{
		/*
		 * Since a 1.0 catalog was updated, the publisher numbered on
		 * without a history: the first one begins above what it sent.
		 */
		(void) record_incarnation(&now, "first start", false);
		fork_streams(false);
		SPI_finish();
		return;
	}
	reason = what_changed(&now, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, &reloaded);
	if (reason == NULL)
	{
		SPI_finish();
		return;
	}
	id = record_incarnation(&now, reason, reloaded);
	if (reloaded)
		resolve_names_again();
	fork_streams(reloaded);
	resynced = repair_subscriptions();
	SPI_finish();

	ereport(WARNING,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("evrep: this database started a new history (%s)", reason),
			 errdetail("Incarnation " INT64_FORMAT
					   ": its streams go on above their last numbers, and subscribers that"
					   " applied numbers of the lost history copy those tables again.",
					   id),
			 resynced >= 0 ? errhint("%lld subscribed tables are copied again from their origins"
									 " (evrep.sync_status).",
									 (long long) resynced)
						   : errhint("evrep.repair = warn: %lld subscribed tables may lack rows; "
									 "run evrep_resync() on them.",
									 (long long) -resynced)));
}
