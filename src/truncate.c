/*
 * truncate.c
 *		Remembers whether the TRUNCATE being executed said RESTART IDENTITY.
 *
 * A TRUNCATE trigger gets the truncated relation but not the statement's
 * options, and a subscriber must restart its sequences only when the
 * origin did.  A ProcessUtility hook notes the option for the duration of
 * each TruncateStmt; the AFTER TRUNCATE triggers fire before the statement
 * returns (at the end of ExecuteTruncateGuts), so they read it there.
 *
 * A TRUNCATE run by a trigger of another TRUNCATE (through SPI, which goes
 * through ProcessUtility as well) nests: the value is saved on the C stack
 * and restored when the inner statement ends, by error or not.
 */
#include "postgres.h"

#include "nodes/parsenodes.h"
#include "tcop/utility.h"

#include "capture.h"
#include "truncate.h"

/* of the innermost TruncateStmt being executed */
typedef enum TruncateRestart
{
	TRUNCATE_NONE = 0, /* no TRUNCATE seen by the hook is running */
	TRUNCATE_CONTINUE_IDENTITY,
	TRUNCATE_RESTART_IDENTITY
} TruncateRestart;

static TruncateRestart current = TRUNCATE_NONE;
static ProcessUtility_hook_type prev_process_utility = NULL;
static bool installed = false;

static void
next_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					 ProcessUtilityContext context, ParamListInfo params,
					 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest,
								qc);
}

static void
evrep_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	TruncateRestart save = current;

	/* every other statement only pays this test */
	if (!IsA(pstmt->utilityStmt, TruncateStmt))
	{
		next_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		/* COPY FROM fires its row triggers without ExecutorFinish */
		if (IsA(pstmt->utilityStmt, CopyStmt))
			capture_buffer_flush();
		return;
	}

	current = ((TruncateStmt *) pstmt->utilityStmt)->restart_seqs ? TRUNCATE_RESTART_IDENTITY
																  : TRUNCATE_CONTINUE_IDENTITY;
	PG_TRY();
	{
		next_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		current = save;
	}
	PG_END_TRY();
}

void
evrep_truncate_install(void)
{
	/* _PG_init runs once per process; be safe against a second call all the same */
	if (installed)
		return;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = evrep_process_utility;
	installed = true;
}

bool
evrep_truncate_restart_identity(bool *known)
{
	*known = current != TRUNCATE_NONE;
	return current == TRUNCATE_RESTART_IDENTITY;
}
