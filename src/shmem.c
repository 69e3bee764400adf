/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		Shared state of the moverz_batch workers, and their wake-up.
 *
 * Each worker owns a slot: its latch (to be woken), a claim token that
 * identifies the photos it claimed in this incarnation, and counters read
 * by the administration views.  A backend that creates work calls
 * wake_photo_workers() or wake_inventory_worker(); the latches are set when
 * its transaction commits, so a worker never looks for rows not yet visible.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

MoverzShared *moverz_shared = NULL;

/* Wake-ups requested by the current transaction, delivered at commit. */
static bool wake_photo_pending = false;
static bool wake_inventory_pending = false;
static bool xact_callback_registered = false;

PG_FUNCTION_INFO_V1(moverz_wake_photo_workers);
PG_FUNCTION_INFO_V1(moverz_wake_inventory_worker);

/*
 * moverz_shmem_request
 *		Reserve the shared memory of the extension.
 */
void
moverz_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(MoverzShared)));
}

/*
 * moverz_shmem_startup
 *		Create (postmaster) or attach (EXEC_BACKEND children) the state.
 */
void
moverz_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	moverz_shared = ShmemInitStruct("moverz_batch", sizeof(MoverzShared), &found);
	if (!found)
	{
		memset(moverz_shared, 0, sizeof(MoverzShared));
		SpinLockInit(&moverz_shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * detach_slot
 *		on_shmem_exit callback: the worker no longer answers its latch.
 */
static void
detach_slot(int code, Datum arg)
{
	MoverzWorkerSlot *slot = (MoverzWorkerSlot *) DatumGetPointer(arg);

	SpinLockAcquire(&moverz_shared->mutex);
	slot->pid = 0;
	slot->latch = NULL;
	slot->inflight = 0;
	SpinLockRelease(&moverz_shared->mutex);
}

/*
 * moverz_attach_slot
 *		Take the slot of photo worker "index", or the inventory worker's, for
 *		the calling process.  The claim token changes with each incarnation.
 */
MoverzWorkerSlot *
moverz_attach_slot(int index, bool inventory)
{
	MoverzWorkerSlot *slot;

	if (moverz_shared == NULL)
		elog(ERROR, "moverz_batch shared memory is not initialized");
	slot = inventory ? &moverz_shared->inventory : &moverz_shared->photo[index];

	SpinLockAcquire(&moverz_shared->mutex);
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	slot->since = GetCurrentTimestamp();
	slot->claim_token = (int64) slot->since ^ ((int64) MyProcPid << 40);
	slot->inflight = 0;
	slot->done = 0;
	slot->failed = 0;
	slot->last_error[0] = '\0';
	slot->last_error_at = 0;
	SpinLockRelease(&moverz_shared->mutex);

	on_shmem_exit(detach_slot, PointerGetDatum(slot));
	return slot;
}

/*
 * moverz_slot_report
 *		Publish a worker's counters; error, when not NULL, becomes its last
 *		error.
 */
void
moverz_slot_report(MoverzWorkerSlot *slot, int inflight, int64 done_delta,
				   int64 failed_delta, const char *error)
{
	SpinLockAcquire(&moverz_shared->mutex);
	slot->inflight = inflight;
	slot->done += done_delta;
	slot->failed += failed_delta;
	if (error != NULL)
	{
		strlcpy(slot->last_error, error, MOVERZ_LAST_ERROR_LEN);
		slot->last_error_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&moverz_shared->mutex);
}

/*
 * set_latches
 *		Set the latches of the photo workers and/or the inventory worker.
 *		Latches are collected under the spinlock and set outside it.
 */
static void
set_latches(bool photo, bool inventory)
{
	Latch	   *latches[MOVERZ_MAX_PHOTO_WORKERS + 1];
	int			n = 0;

	if (moverz_shared == NULL)
		return;
	SpinLockAcquire(&moverz_shared->mutex);
	for (int i = 0; photo && i < MOVERZ_MAX_PHOTO_WORKERS; i++)
		if (moverz_shared->photo[i].latch != NULL)
			latches[n++] = moverz_shared->photo[i].latch;
	if (inventory && moverz_shared->inventory.latch != NULL)
		latches[n++] = moverz_shared->inventory.latch;
	SpinLockRelease(&moverz_shared->mutex);

	for (int i = 0; i < n; i++)
		SetLatch(latches[i]);
}

/*
 * wake_xact_callback
 *		Deliver the wake-ups of a committed transaction; forget those of an
 *		aborted one.
 */
static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			set_latches(wake_photo_pending, wake_inventory_pending);
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_photo_pending = false;
			wake_inventory_pending = false;
			break;
		default:
			break;
	}
}

/*
 * request_wake
 *		Remember a wake-up for the end of the current transaction.
 */
static void
request_wake(bool photo, bool inventory)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_photo_pending |= photo;
	wake_inventory_pending |= inventory;
}

/*
 * moverz_wake_photo_workers
 *		SQL: wake the photo workers when this transaction commits.
 */
Datum
moverz_wake_photo_workers(PG_FUNCTION_ARGS)
{
	request_wake(true, false);
	PG_RETURN_VOID();
}

/*
 * moverz_wake_inventory_worker
 *		SQL: wake the inventory worker when this transaction commits.
 */
Datum
moverz_wake_inventory_worker(PG_FUNCTION_ARGS)
{
	request_wake(false, true);
	PG_RETURN_VOID();
}
