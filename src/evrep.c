/*
 * evrep.c
 *		Module load: settings, shared memory, worker registration, and the
 *		small SQL-callable functions about them.  The queue bindings and
 *		their SQL-callable helpers are bindings.c's.
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "capture.h"
#include "evrep.h"
#include "incarnation.h"
#include "truncate.h"

PG_MODULE_MAGIC;

void _PG_init(void);

char *evrep_node_name = "";
char *evrep_database = "";
char *evrep_broker_url = "";
char *evrep_broker_password_file = "";
char *evrep_exchange = "evrep";
int evrep_queue_type = EVREP_QUEUE_QUORUM;

static const struct config_enum_entry queue_type_options[] = {
	{"quorum", EVREP_QUEUE_QUORUM, false},
	{"classic", EVREP_QUEUE_CLASSIC, false},
	{NULL, 0, false}};

static const struct config_enum_entry repair_options[] = {
	{"resync", EVREP_REPAIR_RESYNC, false}, {"warn", EVREP_REPAIR_WARN, false}, {NULL, 0, false}};
char *evrep_ssl_ca_file = "";
char *evrep_ssl_cert_file = "";
char *evrep_ssl_key_file = "";
bool evrep_ssl_verify_peer = true;
bool evrep_ssl_verify_hostname = true;
int evrep_heartbeat = 30;
int evrep_broker_timeout = 5000;
int evrep_confirm_timeout = 15000;
int evrep_batch_size = 5000;
int evrep_message_events = 500;
int evrep_publish_window = 1;
int evrep_poll_interval = 1000;
char *evrep_crash_at = NULL;
int evrep_outbox_warn_depth = 1000000;
int evrep_prefetch = 2000;
bool evrep_apply_async_commit = true;
int evrep_apply_batch = 1000;
int evrep_apply_max_attempts = 3;
int evrep_reconnect_max = 30000;
int evrep_copy_chunk_rows = 1000;
int evrep_max_message_bytes = 64 * 1024 * 1024;
int evrep_copy_rate_limit = 0;
int evrep_bind_timeout = 10000;

EvrepShared *evrep_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void define_settings(void);
static void register_worker(const char *type, const char *function);
static void evrep_shmem_request(void);
static void evrep_shmem_startup(void);
static void worker_exit(int code, Datum arg);

void
_PG_init(void)
{
	/*
	 * Settings are defined even when loaded later (CREATE EXTENSION in a
	 * session), so SHOW works; the workers and shared memory need preload.
	 */
	define_settings();
	evrep_truncate_install();
	capture_buffer_init();

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = evrep_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = evrep_shmem_startup;

	if (evrep_database[0] != '\0')
	{
		register_worker("evrep publisher", "evrep_publisher_main");
		register_worker("evrep consumer", "evrep_consumer_main");
	}
}

static void
define_settings(void)
{
	DefineCustomStringVariable("evrep.node_name",
							   "Name of this node, the origin of the events it publishes.",
							   "Also names the node's queue: evrep.<node_name>.", &evrep_node_name,
							   "", PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("evrep.database",
							   "Database the evrep workers serve; empty starts no workers.", NULL,
							   &evrep_database, "", PGC_POSTMASTER, 0, NULL, NULL, NULL);

	/*
	 * The URL carries the broker password: visible to superusers only, and
	 * never echoed by a check hook (whose error would print the value).
	 */
	DefineCustomStringVariable("evrep.broker_url",
							   "RabbitMQ URL, amqp://user:password@host:port/vhost or amqps://...",
							   NULL, &evrep_broker_url, "", PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL, NULL, NULL, NULL);
	DefineCustomStringVariable("evrep.broker_password_file",
							   "File whose first line is the broker password; overrides the URL's.",
							   "Keeps the password out of postgresql.conf and out of the log line "
							   "PostgreSQL writes when a reloaded setting changes.",
							   &evrep_broker_password_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("evrep.exchange", "Durable topic exchange events are published to.",
							   NULL, &evrep_exchange, "evrep", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable(
		"evrep.queue_type",
		"Type of this node's queue: quorum (replicated by a RabbitMQ cluster) or classic.",
		"A queue cannot change type under one name: the quorum queue is evrep.<node_name>.quorum, "
		"the classic one evrep.<node_name>; after a change the consumer drains the old one first.",
		&evrep_queue_type, EVREP_QUEUE_QUORUM, queue_type_options, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable(
		"evrep.ssl_ca_file", "CA certificates to verify the broker with (amqps).", NULL,
		&evrep_ssl_ca_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("evrep.ssl_cert_file", "Client certificate for the broker (amqps).",
							   NULL, &evrep_ssl_cert_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL,
							   NULL, NULL);
	DefineCustomStringVariable("evrep.ssl_key_file", "Client private key for the broker (amqps).",
							   NULL, &evrep_ssl_key_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL,
							   NULL, NULL);
	DefineCustomBoolVariable("evrep.ssl_verify_peer", "Verify the broker's certificate (amqps).",
							 NULL, &evrep_ssl_verify_peer, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("evrep.ssl_verify_hostname",
							 "Verify that the broker's certificate names its host (amqps).", NULL,
							 &evrep_ssl_verify_hostname, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("evrep.heartbeat", "AMQP heartbeat interval.", NULL, &evrep_heartbeat,
							30, 0, 3600, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);

	/*
	 * A node that hangs (GC pause, stalled disk or VM, black-holed path)
	 * keeps its TCP connections open and its kernel keeps acknowledging:
	 * only an answer that does not come tells.  See broker.c.
	 */
	DefineCustomIntVariable(
		"evrep.broker_timeout",
		"How long a broker node may leave a worker without an answer before the worker moves to "
		"the next node of evrep.broker_url.",
		"Bounds the connection handshake, a socket that takes no writes, and the answer to the "
		"round trip a worker makes once the connection was silent for half of it (the publisher "
		"then sends its unconfirmed messages again through the next node; subscribers skip the "
		"duplicates). Lower: a hung node costs less; higher: fewer needless moves when a node "
		"pauses briefly (a long garbage collection). A broker that blocks publishing (resource "
		"alarm) is waited for, not left.",
		&evrep_broker_timeout, 5000, 100, 3600000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"evrep.confirm_timeout",
		"How long a broker node that still answers may take to confirm a message or to complete a "
		"request before the worker moves to the next node of evrep.broker_url.",
		"Such a wait is the cluster's, not the node's: a quorum queue electing a new leader after "
		"its leader hung, or without a quorum. Moving on then sends the unconfirmed messages "
		"again through a node that waits for the same queue, so this bound is longer than "
		"evrep.broker_timeout. A broker that blocks publishing (resource alarm) is waited for.",
		&evrep_confirm_timeout, 15000, 100, 3600000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("evrep.batch_size",
							"Outbox events the publisher sends per confirmed round.", NULL,
							&evrep_batch_size, 5000, 1, 1000000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("evrep.message_events",
							"Most events of one table packed into one AMQP message.", NULL,
							&evrep_message_events, 500, 1, 100000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"evrep.publish_window",
		"Messages that may await their confirms before the publisher numbers the next batch, "
		"when it has no backlog.",
		"1: the next batch waits for the last one's confirms (Nagle's rule: fewer, bigger "
		"messages); 0: no limit, a batch for every commit (lower latency at moderate rates, more "
		"CPU and WAL flushes).",
		&evrep_publish_window, 1, 0, 1000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"evrep.poll_interval", "Publisher's fallback poll of the outbox when not woken.", NULL,
		&evrep_poll_interval, 1000, 10, 3600000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"evrep.outbox_warn_depth",
		"Outbox depth (events) past which the publisher logs a WARNING; 0 disables it.",
		"Writers are never refused: the outbox grows while the broker is unreachable.",
		&evrep_outbox_warn_depth, 1000000, 0, INT_MAX, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable(
		"evrep.apply_async_commit",
		"The consumer commits without waiting for the WAL flush and acks once it is done.",
		"Off: every apply transaction waits for its flush before the ack, as before.",
		&evrep_apply_async_commit, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("evrep.prefetch", "Unacknowledged deliveries the consumer accepts.",
							NULL, &evrep_prefetch, 2000, 1, 65535, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("evrep.apply_batch",
							"Deliveries the consumer applies in one transaction.", NULL,
							&evrep_apply_batch, 1000, 1, 65535, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"evrep.apply_max_attempts",
		"Attempts at a message that fails with a resource or internal error before it is parked.",
		"Errors that belong to an event (bad value, constraint) park it at once; transient ones "
		"(shutdown, serialization failure, lock timeout, disk full) retry without limit.",
		&evrep_apply_max_attempts, 3, 1, 1000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"evrep.reconnect_max", "Longest wait between broker reconnect attempts.", NULL,
		&evrep_reconnect_max, 30000, 100, 3600000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable(
		"evrep.max_message_bytes", "The largest message the publisher sends to the broker.",
		"At most the broker's limit (RabbitMQ's max_message_size, 128MB by default), and at "
		"most 256MB, what a subscriber can read into jsonb. A row "
		"whose JSON form does not fit is not sent: the origin keeps a record of it in "
		"evrep.skipped and subscribers park an event that names its key.",
		&evrep_max_message_bytes, 64 * 1024 * 1024, 256 * 1024, 256 * 1024 * 1024, PGC_SIGHUP,
		GUC_UNIT_BYTE, NULL, NULL, NULL);

	DefineCustomIntVariable(
		"evrep.copy_chunk_rows", "Rows in one chunk of a copy of existing rows.",
		"The origin's writers are never held up longer than reading one chunk takes.",
		&evrep_copy_chunk_rows, 1000, 1, 1000000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"evrep.copy_rate_limit", "Rows per second a copy of existing rows sends at most.",
		"0 sends as fast as the servers go; a limit leaves CPU and I/O to the origin's writers.",
		&evrep_copy_rate_limit, 0, 0, INT_MAX, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"evrep.bind_timeout",
		"How long evrep_subscribe(copy_data => false) waits for the consumer to bind its queue.",
		"On timeout it warns: changes published before the binding exists are not received.",
		&evrep_bind_timeout, 10000, 0, 3600000, PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomEnumVariable(
		"evrep.repair",
		"What evrep does when a stream's history went back (a restore, a promotion, a reload).",
		"resync copies the affected tables again from their origin, in stream order; warn only "
		"logs a WARNING and flags the stream in evrep.status, for an operator to run "
		"evrep_resync().",
		&evrep_repair, EVREP_REPAIR_RESYNC, repair_options, PGC_SUSET, 0, NULL, NULL, NULL);

	DefineCustomIntVariable(
		"evrep.gap_repair_after",
		"How long numbers of a stream may be missing, while later ones arrived, before the table "
		"is copied again.",
		"Such a hole is not filled by a resend: this node acknowledged the events and lost them "
		"(restored from a file-system snapshot). 0 never repairs holes.",
		&evrep_gap_repair_after, 300, 0, INT_MAX / 1000, PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);

	DefineCustomStringVariable(
		"evrep.crash_at",
		"Developer option: the publisher kills itself once at this point, for crash tests.",
		"claimed, sent, confirming or rotating; it fires while the data directory has no file "
		"evrep_crashed_<point>, and creates that file.",
		&evrep_crash_at, "", PGC_SIGHUP, GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL | GUC_SUPERUSER_ONLY,
		NULL, NULL, NULL);

	MarkGUCPrefixReserved("evrep");
}

static void
register_worker(const char *type, const char *function)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "evrep");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s for %s", type, evrep_database);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", type);
	RegisterBackgroundWorker(&worker);
}

static void
evrep_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(EvrepShared)));
}

static void
evrep_shmem_startup(void)
{
	bool found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	evrep_shared = ShmemInitStruct("evrep", sizeof(EvrepShared), &found);
	if (!found)
	{
		memset(evrep_shared, 0, sizeof(EvrepShared));
		SpinLockInit(&evrep_shared->mutex);
		pg_atomic_init_u64(&evrep_shared->subscription_generation, 0);
		pg_atomic_init_u32(&evrep_shared->outbox_slot, 0);
		/* the publisher looks for unfinished copy jobs once it starts */
		pg_atomic_init_u32(&evrep_shared->copy_due, 1);
		ConditionVariableInit(&evrep_shared->bind_cv);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
evrep_wake_publisher(void)
{
	Latch *latch;

	if (evrep_shared == NULL)
		return;
	/* a stale pointer is harmless: latches live in PGPROC, never freed */
	latch = evrep_shared->workers[EVREP_PUBLISHER].latch;
	if (latch != NULL)
		SetLatch(latch);
}

void
evrep_crash_point(const char *point)
{
	char path[MAXPGPATH];
	int fd;

	if (evrep_crash_at == NULL || strcmp(evrep_crash_at, point) != 0)
		return;
	/* once per data directory: the restart after the crash runs on */
	snprintf(path, sizeof(path), "evrep_crashed_%s", point);
	fd = OpenTransientFile(path, O_CREAT | O_EXCL | O_WRONLY | PG_BINARY);
	if (fd < 0)
		return;
	CloseTransientFile(fd);
	ereport(LOG, (errmsg("evrep publisher crashes on purpose at \"%s\" (evrep.crash_at)", point)));
	(void) kill(MyProcPid, SIGKILL);
}

char *
evrep_queue_name(int queue_type)
{
	if (queue_type == EVREP_QUEUE_QUORUM)
		return psprintf("evrep.%s.quorum", evrep_node_name);
	return psprintf("evrep.%s", evrep_node_name);
}

void
evrep_worker_started(EvrepWorkerKind kind)
{
	EvrepWorkerState *w = &evrep_shared->workers[kind];

	SpinLockAcquire(&evrep_shared->mutex);
	w->pid = MyProcPid;
	w->connected = false;
	w->events = 0;
	SpinLockRelease(&evrep_shared->mutex);
	w->latch = MyLatch;
	before_shmem_exit(worker_exit, Int32GetDatum(kind));
}

static void
worker_exit(int code, Datum arg)
{
	EvrepWorkerState *w = &evrep_shared->workers[DatumGetInt32(arg)];

	w->latch = NULL;
	SpinLockAcquire(&evrep_shared->mutex);
	w->pid = 0;
	w->connected = false;
	SpinLockRelease(&evrep_shared->mutex);
}

void
evrep_worker_report(EvrepWorkerKind kind, bool connected, int64 events_done, const char *error)
{
	EvrepWorkerState *w = &evrep_shared->workers[kind];

	SpinLockAcquire(&evrep_shared->mutex);
	w->connected = connected;
	w->events += events_done;
	if (error != NULL)
	{
		strlcpy(w->last_error, error, EVREP_ERROR_LEN);
		w->last_error_at = error[0] ? GetCurrentTimestamp() : 0;
	}
	SpinLockRelease(&evrep_shared->mutex);
}

PG_FUNCTION_INFO_V1(evrep_worker_state);
Datum
evrep_worker_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	static const char *const names[] = {"publisher", "consumer"};

	InitMaterializedSRF(fcinfo, 0);
	if (evrep_shared == NULL)
		return (Datum) 0;

	for (int i = 0; i < lengthof(names); i++)
	{
		EvrepWorkerState copy;
		Datum values[6];
		bool nulls[6] = {0};

		SpinLockAcquire(&evrep_shared->mutex);
		memcpy(&copy, &evrep_shared->workers[i], sizeof(copy));
		SpinLockRelease(&evrep_shared->mutex);

		values[0] = CStringGetTextDatum(names[i]);
		values[1] = Int32GetDatum(copy.pid);
		nulls[1] = (copy.pid == 0);
		values[2] = BoolGetDatum(copy.connected);
		values[3] = Int64GetDatum(copy.events);
		values[4] = CStringGetTextDatum(copy.last_error);
		nulls[4] = (copy.last_error[0] == '\0');
		values[5] = TimestampTzGetDatum(copy.last_error_at);
		nulls[5] = (copy.last_error_at == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
