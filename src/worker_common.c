/*-------------------------------------------------------------------------
 *
 * worker_common.c
 *		What the photo workers and the inventory worker share: signal
 *		handling, the database connection, and running one short
 *		transaction that survives its own errors.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

/*
 * moverz_worker_setup
 *		Signals, as contrib/pg_prewarm/autoprewarm.c: SIGHUP reloads the
 *		settings at the next turn, SIGTERM sets ShutdownRequestPending and
 *		the worker's loop ends at its next turn (even with requests in
 *		flight: both set the latch).  Then the connection to
 *		moverz_batch.database.
 */
void
moverz_worker_setup(const char *activity)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(moverz_database, NULL, 0);
	pgstat_report_activity(STATE_IDLE, activity);
}

/*
 * moverz_process_interrupts
 *		The interrupts of a worker's turn: the standard ones, and SIGHUP
 *		(reloads the settings; returns true then).  SIGTERM is the loop's
 *		(ShutdownRequestPending).
 */
bool
moverz_process_interrupts(void)
{
	/* a cancel between two transactions has nothing to cancel (it would be FATAL) */
	QueryCancelPending = false;
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		return true;
	}
	return false;
}

/*
 * moverz_wait_set
 *		The events a worker waits for: its latch, postmaster death (exits),
 *		and, when fd is valid, that descriptor becoming readable.
 */
WaitEventSet *
moverz_wait_set(pgsocket fd)
{
	WaitEventSet *set;

#if PG_VERSION_NUM >= 170000
	set = CreateWaitEventSet(NULL, 3);
#else
	set = CreateWaitEventSet(TopMemoryContext, 3);
#endif
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	if (fd != PGINVALID_SOCKET)
		AddWaitEventToSet(set, WL_SOCKET_READABLE, fd, NULL, NULL);
	return set;
}

/*
 * moverz_extension_present
 *		Is moverz_batch installed in this database, in a version this
 *		library drives?  Inside a transaction.  The workers call the
 *		functions of schema moverz_batch_internal (0.7.0 on): in a database
 *		whose extension is older (the library was updated, ALTER EXTENSION
 *		moverz_batch UPDATE not yet run) they hold the work, and say so once.
 */
bool
moverz_extension_present(void)
{
	static bool older_logged = false;

	if (!OidIsValid(get_extension_oid("moverz_batch", true)))
		return false;
	if (OidIsValid(get_namespace_oid("moverz_batch_internal", true)))
	{
		older_logged = false;
		return true;
	}
	if (!older_logged)
		ereport(LOG,
				(errmsg("moverz_batch: the extension in database \"%s\" is older than its library %s: the workers wait",
						moverz_database, MOVERZ_VERSION),
				 errhint("Run ALTER EXTENSION moverz_batch UPDATE in that database.")));
	older_logged = true;
	return false;
}

/*
 * moverz_run_in_transaction
 *		Run fn(arg) in a transaction of its own, with SPI connected and a
 *		snapshot set.  Returns true when it committed.  Returns false when
 *		the extension is not installed (fn not called, error->message NULL)
 *		or when fn raised an error: the error is logged, the transaction
 *		rolled back, *error set to its message and SQLSTATE, and the worker
 *		goes on.  error may be NULL.
 */
bool
moverz_run_in_transaction(moverz_txn_fn fn, void *arg, const char *activity,
						  MoverzTxnError *error)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool present = false;

	if (error)
	{
		error->message = NULL;
		error->sqlerrcode = 0;
	}
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, activity);
		present = moverz_extension_present();
		if (present)
			fn(arg);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG,
				(errmsg("moverz_batch: %s failed: %s", activity, edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
		if (error)
		{
			error->message = pstrdup(edata->message);
			error->sqlerrcode = edata->sqlerrcode;
		}
		FreeErrorData(edata);
		present = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return present;
}

/*
 * moverz_error_is_transient
 *		Does this error say "try again later" rather than "never": a
 *		deadlock, a serialization failure, a lock or statement time-out, a
 *		cancel, a database starting or shutting down, too many connections?
 */
bool
moverz_error_is_transient(int sqlerrcode)
{
	switch (sqlerrcode)
	{
		case ERRCODE_T_R_DEADLOCK_DETECTED:
		case ERRCODE_T_R_SERIALIZATION_FAILURE:
		case ERRCODE_LOCK_NOT_AVAILABLE:
		case ERRCODE_QUERY_CANCELED:
		case ERRCODE_CANNOT_CONNECT_NOW:
		case ERRCODE_TOO_MANY_CONNECTIONS:
		case ERRCODE_OUT_OF_MEMORY:
		case ERRCODE_DISK_FULL:
			return true;
		default:
			return false;
	}
}

/*
 * moverz_saved_plan
 *		Prepare and keep a parameterised plan once, in *plan.  Kept plans
 *		survive DROP / CREATE EXTENSION: the plan cache re-plans them.
 */
SPIPlanPtr
moverz_saved_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL)
			elog(ERROR, "moverz_batch: SPI_prepare failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "moverz_batch: SPI_keepplan failed");
		*plan = p;
	}
	return *plan;
}
