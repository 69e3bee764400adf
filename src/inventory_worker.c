/*-------------------------------------------------------------------------
 *
 * inventory_worker.c
 *		The inventory worker: runs the inventory-sync jobs that finished
 *		batches enqueue, one job per transaction.
 *
 * A batch becoming terminal inserts its job and wakes this worker when that
 * transaction commits.  Each job is claimed with SKIP LOCKED and run by
 * run_next_inventory_job() (sql/src/60_worker.sql); a job that fails stays
 * queued with a backoff, and one interrupted by a crash was never marked
 * done: no job is lost.  Once a minute it also deletes the uploads never
 * attached to a batch whose URL expired (expire_uploads()).
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* Jobs run in one turn before the loop looks at its interrupts again. */
#define INVENTORY_JOBS_PER_TURN		64

/* How often the expired uploads are deleted. */
#define EXPIRE_UPLOADS_EVERY_MS		60000

/* State of the inventory loop. */
typedef struct InventoryLoop
{
	MoverzWorkerSlot *slot;		/* worker_status: jobs run */
	SPIPlanPtr	run_plan;
	SPIPlanPtr	due_plan;
	SPIPlanPtr	expire_plan;
	TimestampTz next_expiry;	/* when expire_uploads() runs next */
	bool		ran;			/* the last transaction ran a job */
	long		due_ms;			/* next pending job due in (-1: none) */
} InventoryLoop;

/*
 * single_value
 *		Run a saved one-row, one-column plan; isnull tells a NULL.
 */
static Datum
single_value(SPIPlanPtr plan, bool *isnull)
{
	int			rc = SPI_execute_plan(plan, NULL, NULL, false, 1);

	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "moverz_batch: inventory query failed: %s", SPI_result_code_string(rc));
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
}

/*
 * run_job_txn
 *		Transaction body: run the next due job, if any.
 */
static void
run_job_txn(void *arg)
{
	InventoryLoop *loop = (InventoryLoop *) arg;
	bool		isnull;

	single_value(moverz_saved_plan(&loop->run_plan, "SELECT moverz_batch_internal.run_next_inventory_job()", 0, NULL),
				 &isnull);
	loop->ran = !isnull;
}

/*
 * due_txn
 *		Transaction body: when is the next pending job due?
 */
static void
due_txn(void *arg)
{
	InventoryLoop *loop = (InventoryLoop *) arg;
	bool		isnull;
	Datum		d;

	d = single_value(moverz_saved_plan(&loop->due_plan, "SELECT moverz_batch_internal.next_inventory_due_ms()", 0, NULL),
					 &isnull);
	loop->due_ms = isnull ? -1 : (long) Min(DatumGetFloat8(d), (double) LONG_MAX);
}

/*
 * expire_txn
 *		Transaction body: delete the expired uploads never attached.
 */
static void
expire_txn(void *arg)
{
	InventoryLoop *loop = (InventoryLoop *) arg;
	bool		isnull;

	single_value(moverz_saved_plan(&loop->expire_plan, "SELECT moverz_batch_internal.expire_uploads()", 0, NULL),
				 &isnull);
}

/*
 * expire_uploads
 *		Once a minute, in a transaction of its own.
 */
static void
expire_uploads(InventoryLoop *loop)
{
	TimestampTz now = GetCurrentTimestamp();

	if (now < loop->next_expiry)
		return;
	loop->next_expiry = TimestampTzPlusMilliseconds(now, EXPIRE_UPLOADS_EVERY_MS);
	moverz_run_in_transaction(expire_txn, loop, "deleting expired uploads", NULL);
}

/*
 * run_due_jobs
 *		Run the due jobs, a bounded number per turn.  Returns true when more
 *		may be waiting.
 */
static bool
run_due_jobs(InventoryLoop *loop)
{
	for (int i = 0; i < INVENTORY_JOBS_PER_TURN; i++)
	{
		if (ShutdownRequestPending)
			return false;
		loop->ran = false;
		if (!moverz_run_in_transaction(run_job_txn, loop, "syncing an inventory", NULL) ||
			!loop->ran)
			return false;
		moverz_slot_report(loop->slot, -1, 1, 0, NULL);
	}
	return true;
}

/*
 * moverz_inventory_worker_main
 *		Entry point of the inventory worker.
 */
void
moverz_inventory_worker_main(Datum main_arg)
{
	InventoryLoop loop;
	WaitEventSet *events;
	MemoryContext loop_cxt;

	moverz_worker_setup("starting");
	memset(&loop, 0, sizeof(loop));
	loop.slot = moverz_attach_slot(MOVERZ_SLOT_INVENTORY, 0);
	events = moverz_wait_set(PGINVALID_SOCKET);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "moverz_batch inventory worker loop",
									 ALLOCSET_DEFAULT_SIZES);

	while (!ShutdownRequestPending)
	{
		WaitEvent	occurred[2];
		long		timeout = moverz_poll_interval_ms;

		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);
		moverz_process_interrupts();

		expire_uploads(&loop);
		if (run_due_jobs(&loop))
			timeout = 0;
		else
		{
			loop.due_ms = -1;
			if (moverz_run_in_transaction(due_txn, &loop, "looking for inventory jobs", NULL) &&
				loop.due_ms >= 0)
				timeout = Min(timeout, loop.due_ms);
		}
		pgstat_report_activity(STATE_IDLE, "waiting for finished batches");
		if (WaitEventSetWait(events, timeout, occurred, lengthof(occurred),
							 PG_WAIT_EXTENSION) > 0)
			ResetLatch(MyLatch);
	}
	/* exit code 1: see moverz_photo_worker_main */
	proc_exit(1);
}
