/*-------------------------------------------------------------------------
 *
 * publish_queue.c
 *		Progress events for web clients: what a transaction announces is
 *		queued in shared memory when, and only when, it commits.
 *
 * notify_progress() (sql/src/65_notify.sql) sends the NOTIFY of a batch's
 * change and, when moverz_batch.publish_url is set, hands the batch's state
 * of that moment to publish_after_commit().  The state waits in the
 * transaction's memory; a transaction callback moves it into a ring in
 * shared memory at commit (after the commit is visible to others, before
 * the transaction's locks go, so that the changes of one batch enter the
 * ring in commit order) and wakes the publisher (publisher.c), which POSTs
 * it to Nchan.  An aborted transaction or subtransaction drops what it
 * announced, like NOTIFY.  A prepared transaction (two-phase commit) drops
 * it too: its commit happens elsewhere.
 *
 * The ring is bounded (moverz_batch.publish_queue_size events): when the
 * publisher is behind, new events are dropped and counted, never waited
 * for: a transaction of a worker or a client never blocks on publishing.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(moverz_publish_after_commit);
PG_FUNCTION_INFO_V1(moverz_publish_status);

/* The shared ring; entries[head % size] is written next, [tail % size] read next. */
typedef struct PublishQueue
{
	LWLock	   *lock;
	Latch	   *latch;			/* the publisher's, NULL when it is not running */
	uint64		head;
	uint64		tail;
	uint64		dropped;		/* events dropped because the ring was full */
	uint64		published;		/* events delivered to Nchan */
	uint64		failed;			/* events Nchan did not take */
	TimestampTz last_failure_at;
	char		last_failure[MOVERZ_LAST_ERROR_LEN];
	MoverzPublishEvent entries[FLEXIBLE_ARRAY_MEMBER];
} PublishQueue;

/* An event of the current transaction, not yet committed. */
typedef struct PendingEvent
{
	int			nest_level;		/* the subtransaction that announced it */
	MoverzPublishEvent event;
} PendingEvent;

static PublishQueue *queue = NULL;
static List *pending = NIL;		/* of PendingEvent, in TopTransactionContext */
static bool callbacks_registered = false;
static uint64 dropped_seen = 0;	/* the publisher's: drops it reported */

/*
 * queue_bytes
 *		Size of the shared ring.
 */
static Size
queue_bytes(void)
{
	return add_size(offsetof(PublishQueue, entries),
					mul_size(sizeof(MoverzPublishEvent), moverz_publish_queue_size));
}

/*
 * moverz_publish_shmem_request
 *		Reserve the ring and its lock.
 */
void
moverz_publish_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(queue_bytes()));
	RequestNamedLWLockTranche("moverz_batch publish", 1);
}

/*
 * moverz_publish_shmem_startup
 *		Create or attach the ring.
 */
void
moverz_publish_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	queue = ShmemInitStruct("moverz_batch publish queue", queue_bytes(), &found);
	if (!found)
	{
		memset(queue, 0, offsetof(PublishQueue, entries));
		queue->lock = &(GetNamedLWLockTranche("moverz_batch publish"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * enqueue_pending
 *		Commit: move the transaction's events into the ring, in the order
 *		they were announced, and wake the publisher.  No error may be raised
 *		here (the transaction is committed): a full ring drops and counts.
 */
static void
enqueue_pending(void)
{
	ListCell   *lc;
	Latch	   *latch;

	if (queue == NULL)
		return;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	foreach(lc, pending)
	{
		PendingEvent *p = (PendingEvent *) lfirst(lc);

		if (queue->head - queue->tail >= (uint64) moverz_publish_queue_size)
			queue->dropped++;
		else
			queue->entries[queue->head++ % moverz_publish_queue_size] = p->event;
	}
	latch = queue->latch;
	LWLockRelease(queue->lock);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * publish_xact_callback
 *		At commit the events go to the ring; at abort or prepare they go.
 *		Either way the list, in TopTransactionContext, is forgotten.
 */
static void
publish_xact_callback(XactEvent event, void *arg)
{
	if (pending == NIL)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		enqueue_pending();
	else if (event != XACT_EVENT_ABORT && event != XACT_EVENT_PARALLEL_ABORT &&
			 event != XACT_EVENT_PREPARE)
		return;
	pending = NIL;
}

/*
 * publish_subxact_callback
 *		A subtransaction that aborts drops its events; one that commits
 *		hands them to its parent (which may still abort).
 */
static void
publish_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	ListCell   *lc;

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach(lc, pending)
		{
			if (((PendingEvent *) lfirst(lc))->nest_level >= level)
				pending = foreach_delete_current(pending, lc);
		}
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach(lc, pending)
		{
			PendingEvent *p = (PendingEvent *) lfirst(lc);

			if (p->nest_level >= level)
				p->nest_level = level - 1;
		}
	}
}

/*
 * moverz_publish_after_commit
 *		publish_after_commit(batch_id uuid, state text, final boolean): queue
 *		the batch's state for Nchan when this transaction commits; "final"
 *		(the batch finished and its inventory is ready) closes the channel
 *		after it.  Nothing when moverz_batch.publish_url is empty.
 */
Datum
moverz_publish_after_commit(PG_FUNCTION_ARGS)
{
	text	   *state = PG_GETARG_TEXT_PP(1);
	int			len = VARSIZE_ANY_EXHDR(state);
	PendingEvent *p;
	MemoryContext oldcxt;

	if (moverz_publish_url == NULL || moverz_publish_url[0] == '\0' || queue == NULL)
		PG_RETURN_VOID();
	/* never fail the transaction for its progress event: skip it */
	if (len >= MOVERZ_PUBLISH_STATE_MAX)
	{
		ereport(WARNING,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("progress event of batch %s not published: its state is %d bytes, more than an event holds (%d)",
						DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(0))),
						len, MOVERZ_PUBLISH_STATE_MAX - 1)));
		PG_RETURN_VOID();
	}
	if (!callbacks_registered)
	{
		RegisterXactCallback(publish_xact_callback, NULL);
		RegisterSubXactCallback(publish_subxact_callback, NULL);
		callbacks_registered = true;
	}
	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	p = palloc0(sizeof(PendingEvent));
	p->nest_level = GetCurrentTransactionNestLevel();
	strlcpy(p->event.batch_id, DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(0))),
			sizeof(p->event.batch_id));
	memcpy(p->event.state, VARDATA_ANY(state), len);
	p->event.state[len] = '\0';
	p->event.final = PG_GETARG_BOOL(2);
	pending = lappend(pending, p);
	MemoryContextSwitchTo(oldcxt);
	PG_RETURN_VOID();
}

/*
 * moverz_publish_attach
 *		The publisher takes the ring's latch; on_shmem_exit gives it back.
 */
static void
publish_detach(int code, Datum arg)
{
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->latch = NULL;
	LWLockRelease(queue->lock);
}

void
moverz_publish_attach(void)
{
	if (queue == NULL)
		elog(ERROR, "moverz_batch publish queue is not initialized");
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->latch = MyLatch;
	dropped_seen = queue->dropped;	/* an earlier incarnation reported those */
	LWLockRelease(queue->lock);
	on_shmem_exit(publish_detach, (Datum) 0);
}

/*
 * moverz_publish_next
 *		The publisher takes the oldest event; false when there is none.
 *		Adds to *dropped the events dropped since the last call.
 */
bool
moverz_publish_next(MoverzPublishEvent *out, uint64 *dropped)
{
	bool		found = false;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	if (queue->tail < queue->head)
	{
		*out = queue->entries[queue->tail++ % moverz_publish_queue_size];
		found = true;
	}
	*dropped += queue->dropped - dropped_seen;
	dropped_seen = queue->dropped;
	LWLockRelease(queue->lock);
	return found;
}

/*
 * moverz_publish_report
 *		Count one event delivered or not (with why).
 */
void
moverz_publish_report(bool delivered, const char *failure)
{
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	if (delivered)
		queue->published++;
	else
	{
		queue->failed++;
		queue->last_failure_at = GetCurrentTimestamp();
		strlcpy(queue->last_failure, failure ? failure : "", sizeof(queue->last_failure));
	}
	LWLockRelease(queue->lock);
}

/*
 * moverz_publish_status
 *		publish_status(): events waiting, delivered, dropped (ring full) and
 *		failed (Nchan did not take them), the last failure, and whether
 *		the publisher runs.
 */
Datum
moverz_publish_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {0};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "publish_status: return type must be a row type");
	if (queue == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("moverz_batch shared memory is not initialized"),
				 errhint("Add moverz_batch to shared_preload_libraries and restart the server.")));
	LWLockAcquire(queue->lock, LW_SHARED);
	values[0] = Int64GetDatum((int64) (queue->head - queue->tail));
	values[1] = Int64GetDatum((int64) queue->published);
	values[2] = Int64GetDatum((int64) queue->dropped);
	values[3] = Int64GetDatum((int64) queue->failed);
	values[4] = TimestampTzGetDatum(queue->last_failure_at);
	nulls[4] = queue->last_failure_at == 0;
	values[5] = CStringGetTextDatum(queue->last_failure);
	nulls[5] = queue->last_failure[0] == '\0';
	values[6] = BoolGetDatum(queue->latch != NULL);
	LWLockRelease(queue->lock);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
