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
 * A backend that changes which photos should go next (cancel, pause, a HIGH
 * batch) calls recall_claimed_photos(): at commit the recall epoch moves on,
 * and each photo worker hands back the photos it claimed ahead, unsent.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include <math.h>

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

MoverzShared *moverz_shared = NULL;

/* Wake-ups requested by the current transaction, delivered at commit. */
static bool wake_photo_pending = false;
static bool wake_inventory_pending = false;
static bool recall_pending = false;
static bool xact_callback_registered = false;

PG_FUNCTION_INFO_V1(moverz_wake_photo_workers);
PG_FUNCTION_INFO_V1(moverz_wake_inventory_worker);
PG_FUNCTION_INFO_V1(moverz_recall_claimed_photos);
PG_FUNCTION_INFO_V1(moverz_worker_status);

/*
 * moverz_shmem_request
 *		Reserve the shared memory of the extension.
 */
void
moverz_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(MoverzShared)));
	moverz_publish_shmem_request();
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
	moverz_publish_shmem_startup();
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
 *		Take the slot of photo worker "index", the inventory worker's or the
 *		progress publisher's, for the calling process.  The claim token
 *		changes with each incarnation.
 */
MoverzWorkerSlot *
moverz_attach_slot(MoverzSlotKind kind, int index)
{
	MoverzWorkerSlot *slot;

	if (moverz_shared == NULL)
		elog(ERROR, "moverz_batch shared memory is not initialized");
	if (kind == MOVERZ_SLOT_INVENTORY)
		slot = &moverz_shared->inventory;
	else if (kind == MOVERZ_SLOT_PUBLISHER)
		slot = &moverz_shared->publisher;
	else
		slot = &moverz_shared->photo[index];

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
 *		Publish the counters of the worker owning slot (inflight < 0:
 *		unchanged); error, when not NULL, becomes its last error.
 */
void
moverz_slot_report(MoverzWorkerSlot *slot, int inflight,
				   int64 done_delta, int64 failed_delta, const char *error)
{
	SpinLockAcquire(&moverz_shared->mutex);
	if (inflight >= 0)
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
 * moverz_set_latches
 *		Set the latches of the photo workers and/or the inventory worker,
 *		now.  Latches are collected under the spinlock and set outside it.
 */
void
moverz_set_latches(bool photo, bool inventory)
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
			if (recall_pending && moverz_shared != NULL)
			{
				SpinLockAcquire(&moverz_shared->mutex);
				moverz_shared->recall_epoch++;
				SpinLockRelease(&moverz_shared->mutex);
			}
			moverz_set_latches(wake_photo_pending || recall_pending, wake_inventory_pending);
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_photo_pending = false;
			wake_inventory_pending = false;
			recall_pending = false;
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
request_wake(bool photo, bool inventory, bool recall)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_photo_pending |= photo;
	wake_inventory_pending |= inventory;
	recall_pending |= recall;
}

/*
 * moverz_wake_photo_workers
 *		SQL: wake the photo workers when this transaction commits.
 */
Datum
moverz_wake_photo_workers(PG_FUNCTION_ARGS)
{
	request_wake(true, false, false);
	PG_RETURN_VOID();
}

/*
 * moverz_wake_inventory_worker
 *		SQL: wake the inventory worker when this transaction commits.
 */
Datum
moverz_wake_inventory_worker(PG_FUNCTION_ARGS)
{
	request_wake(false, true, false);
	PG_RETURN_VOID();
}

/*
 * moverz_recall_claimed_photos
 *		SQL: when this transaction commits, the photo workers hand back the
 *		photos they claimed ahead and have not sent, and claim again.
 */
Datum
moverz_recall_claimed_photos(PG_FUNCTION_ARGS)
{
	request_wake(false, false, true);
	PG_RETURN_VOID();
}

/*
 * moverz_recall_epoch
 *		How many recalls have committed since the server started.
 */
uint64
moverz_recall_epoch(void)
{
	uint64		epoch;

	SpinLockAcquire(&moverz_shared->mutex);
	epoch = moverz_shared->recall_epoch;
	SpinLockRelease(&moverz_shared->mutex);
	return epoch;
}

/*
 * hold_left_ms
 *		Milliseconds left of the hold after a RATE_LIMIT answer at "now"
 *		(0: none).  Caller holds the mutex.
 */
static long
hold_left_ms(TimestampTz now)
{
	if (now >= moverz_shared->hold_until)
		return 0;
	return (long) ((moverz_shared->hold_until - now + 999) / 1000);
}

/*
 * moverz_rate_take
 *		Take up to "want" request tokens from the pool-wide bucket.  Returns
 *		how many were granted; when none, *wait_ms says when to try again.
 *		The bucket refills at moverz_batch.max_requests_per_second and holds
 *		a tenth of a second's worth, so no wall-clock second sees much more
 *		than the ceiling.  After a RATE_LIMIT answer nothing is granted until
 *		the hold ends, whatever the ceiling.
 */
int
moverz_rate_take(int want, long *wait_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	double		rate = moverz_max_requests_per_second;
	int			granted;

	SpinLockAcquire(&moverz_shared->mutex);
	*wait_ms = hold_left_ms(now);
	if (*wait_ms > 0)
	{
		SpinLockRelease(&moverz_shared->mutex);
		return 0;
	}
	if (rate <= 0)
	{
		SpinLockRelease(&moverz_shared->mutex);
		return want;
	}
	if (moverz_shared->tokens_at == 0)
		moverz_shared->tokens = Max(1.0, rate / 10.0);
	else
		moverz_shared->tokens = Min(Max(1.0, rate / 10.0),
									moverz_shared->tokens +
									(now - moverz_shared->tokens_at) * rate / USECS_PER_SEC);
	moverz_shared->tokens_at = now;
	granted = (int) Min((double) want, floor(moverz_shared->tokens));
	moverz_shared->tokens -= granted;
	if (granted == 0)
		*wait_ms = (long) ceil((1.0 - moverz_shared->tokens) * 1000.0 / rate);
	SpinLockRelease(&moverz_shared->mutex);
	return granted;
}

/*
 * moverz_rate_held_ms
 *		Milliseconds left of the hold after a RATE_LIMIT answer (0: none).
 */
long
moverz_rate_held_ms(void)
{
	long		ms;

	SpinLockAcquire(&moverz_shared->mutex);
	ms = hold_left_ms(GetCurrentTimestamp());
	SpinLockRelease(&moverz_shared->mutex);
	return ms;
}

/*
 * moverz_rate_give_back
 *		Return tokens taken for photos that were not sent (not claimed, or
 *		handed back).  The bucket's cap applies at the next take.
 */
void
moverz_rate_give_back(int n)
{
	if (n <= 0 || moverz_max_requests_per_second <= 0)
		return;
	SpinLockAcquire(&moverz_shared->mutex);
	moverz_shared->tokens += n;
	SpinLockRelease(&moverz_shared->mutex);
}

/*
 * moverz_rate_hold
 *		Hold every request of the pool for ms after a RATE_LIMIT answer.
 *		A hold that begins (none was running) is logged, once for the pool;
 *		moverz_rate_hold_ended() logs its end.
 */
void
moverz_rate_hold(long ms)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until = TimestampTzPlusMilliseconds(now, ms);
	bool		began;

	SpinLockAcquire(&moverz_shared->mutex);
	began = !moverz_shared->hold_logged;
	moverz_shared->hold_logged = true;
	moverz_shared->hold_until = Max(moverz_shared->hold_until, until);
	SpinLockRelease(&moverz_shared->mutex);
	if (began)
		ereport(LOG,
				(errmsg("moverz_batch: the AI service is rate limiting (429): every request held for %ld ms", ms)));
}

/*
 * moverz_rate_hold_ended
 *		Log the end of a rate-limit hold, once for the pool (the first
 *		worker to see it over).
 */
void
moverz_rate_hold_ended(void)
{
	bool		ended = false;

	/* every turn of every photo worker asks: no lock while no hold began */
	if (!moverz_shared->hold_logged)
		return;
	SpinLockAcquire(&moverz_shared->mutex);
	if (moverz_shared->hold_logged && hold_left_ms(GetCurrentTimestamp()) == 0)
	{
		moverz_shared->hold_logged = false;
		ended = true;
	}
	SpinLockRelease(&moverz_shared->mutex);
	if (ended)
		ereport(LOG, (errmsg("moverz_batch: the rate-limit hold is over: sending again")));
}

/*
 * put_slot_row
 *		One row of worker_status().
 */
static void
put_slot_row(Tuplestorestate *store, TupleDesc desc, const char *kind, int index,
			 const MoverzWorkerSlot *slot)
{
	Datum		values[9];
	bool		nulls[9];

	memset(nulls, 0, sizeof(nulls));
	values[0] = CStringGetTextDatum(kind);
	values[1] = Int32GetDatum(index);
	values[2] = Int32GetDatum(slot->pid);
	values[3] = Int32GetDatum(slot->inflight);
	values[4] = Int64GetDatum(slot->done);
	values[5] = Int64GetDatum(slot->failed);
	values[6] = CStringGetTextDatum(slot->last_error);
	nulls[6] = slot->last_error[0] == '\0';
	values[7] = TimestampTzGetDatum(slot->last_error_at);
	nulls[7] = slot->last_error_at == 0;
	values[8] = TimestampTzGetDatum(slot->since);
	tuplestore_putvalues(store, desc, values, nulls);
}

/*
 * moverz_worker_status
 *		SQL: one row per running worker, from shared memory.
 */
Datum
moverz_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MoverzWorkerSlot slots[MOVERZ_MAX_PHOTO_WORKERS + 2];
	TupleDesc	desc;
	Tuplestorestate *store;
	MemoryContext oldcxt;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("worker_status must be called in a context that accepts a set")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	if (moverz_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("moverz_batch is not loaded through shared_preload_libraries")));
	SpinLockAcquire(&moverz_shared->mutex);
	memcpy(slots, moverz_shared->photo, sizeof(MoverzWorkerSlot) * MOVERZ_MAX_PHOTO_WORKERS);
	slots[MOVERZ_MAX_PHOTO_WORKERS] = moverz_shared->inventory;
	slots[MOVERZ_MAX_PHOTO_WORKERS + 1] = moverz_shared->publisher;
	SpinLockRelease(&moverz_shared->mutex);

	oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	desc = CreateTupleDescCopy(desc);
	store = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = store;
	rsinfo->setDesc = desc;
	MemoryContextSwitchTo(oldcxt);

	for (int i = 0; i < MOVERZ_MAX_PHOTO_WORKERS; i++)
		if (slots[i].pid != 0)
			put_slot_row(store, desc, "photo", i, &slots[i]);
	if (slots[MOVERZ_MAX_PHOTO_WORKERS].pid != 0)
		put_slot_row(store, desc, "inventory", 0, &slots[MOVERZ_MAX_PHOTO_WORKERS]);
	if (slots[MOVERZ_MAX_PHOTO_WORKERS + 1].pid != 0)
		put_slot_row(store, desc, "publisher", 0, &slots[MOVERZ_MAX_PHOTO_WORKERS + 1]);
	return (Datum) 0;
}
