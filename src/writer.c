/*-------------------------------------------------------------------------
 *
 * writer.c
 *		The photo writer: a photo worker's transactions, in a process of
 *		their own.
 *
 * A photo worker lives on the network; its claims and write-backs are
 * transactions of a few milliseconds, and while one runs no answer is read
 * and no request leaves.  So each photo worker starts a writer (a dynamic
 * background worker) and talks to it through two message queues in a DSM
 * segment: claim requests and finished results go to the writer, claimed
 * photos come back.  The worker does not wait on a queue while it runs
 * (what the queue cannot take yet stays with the worker, in order; only a
 * worker that goes waits, a bounded time, see writer_close); the writer
 * does, and runs its transactions while the worker keeps its requests
 * moving.  Claims go before write-backs: they are what the free request
 * slots wait for.
 *
 * The writer lives and dies with its worker.  It exits once the worker has
 * detached, after writing back every result it received; photos it claimed
 * for a worker that is gone or going are handed back unsent.  On SIGTERM
 * it answers the claim asked without claiming and writes back what it
 * receives for WRITER_DRAIN_MS more, then exits.  A worker that goes hands
 * its finished results to the writer and closes the channel (writer_close),
 * so that no claimed photo is left unsent with its attempt counted.  The
 * worker exits (and is restarted, taking back its claims) if its writer
 * goes away.  When no writer can be started (no free background worker
 * slot or DSM segment), or with moverz_batch.photo_writer = off, the worker
 * runs its transactions itself.
 *
 * Messages, by their first byte:
 *	to the writer	'C' int32 want: claim up to want photos
 *					'R' int32 n, then n x (int32 head_len, int32 len, bytes):
 *					results to write back
 *	to the worker	'P' uint64 epoch, int32 asked, int32 n, then n photos,
 *					each int32 attempt and 7 x (int32 len or -1, bytes):
 *					the answer to a claim (n = -1: it failed); epoch is the
 *					recall epoch read before the claim
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* Sizes of the two queues: results can be large, photos are small. */
#define TO_WRITER_BYTES		(1024 * 1024)
#define TO_WORKER_BYTES		(256 * 1024)

/*
 * Results kept before write-backs go ahead of claims: claims go first (the
 * free request slots wait for them), but not to the point of keeping more
 * than about two rounds of answers unwritten.
 */
#define WRITER_MAX_KEPT		(2 * Max(moverz_max_inflight, moverz_writeback_batch))

/*
 * The head of the DSM segment; the two queues follow.  At shutdown the
 * worker closes the channel: from then on the writer hands the photos of a
 * committed claim back instead of sending them, and the worker waits for an
 * answer only if the writer had begun to send it.
 */
typedef struct WriterChannel
{
	slock_t		mutex;			/* protects closing and sending */
	bool		closing;		/* the worker takes no more answers */
	bool		sending;		/* the writer is sending a committed claim */
	uint64		answers_sent;	/* answers the writer has sent */
	int			worker_index;
	pid_t		worker_pid;
	int64		claim_token;	/* the worker incarnation's */
} WriterChannel;

#define CHANNEL_TO_WRITER(ch) \
	((shm_mq *) ((char *) (ch) + MAXALIGN(sizeof(WriterChannel))))
#define CHANNEL_TO_WORKER(ch) \
	((shm_mq *) ((char *) CHANNEL_TO_WRITER(ch) + TO_WRITER_BYTES))
#define CHANNEL_BYTES \
	(MAXALIGN(sizeof(WriterChannel)) + TO_WRITER_BYTES + TO_WORKER_BYTES)

/* The photo worker's end. */
struct WriterLink
{
	WriterChannel *channel;
	shm_mq_handle *out;			/* to the writer */
	shm_mq_handle *in;			/* from the writer */
	MemoryContext cxt;			/* the messages not yet queued */
	List	   *pending;		/* of StringInfo, oldest first */
	int			index;
	bool		lost;			/* the writer went away */
	uint64		answers_taken;	/* answers read */
};

/* What the writer has received and not yet done. */
typedef struct WriterState
{
	WriterChannel *channel;
	ClaimState *claims;
	shm_mq_handle *in;			/* from the worker */
	shm_mq_handle *out;			/* to the worker */
	int			want;			/* photos asked for, 0: no claim asked */
	MemoryContext results_cxt;
	AiResult   *results;
	int			nresults;
	int			maxresults;
	bool		detached;		/* the worker is gone */
	TimestampTz stop_by;		/* SIGTERM: exit by then; 0 = running */
	TimestampTz last_result;	/* when results last came */
} WriterState;

/*
 * Fewer than moverz_batch.writeback_batch results wait for more until none
 * has come for this long: answers come in bursts, and one transaction of
 * 64 results costs much less than six of ten.
 */
#define WRITER_QUIET_MS		1

/* How long a writer told to stop still takes results from its worker. */
#define WRITER_DRAIN_MS		2000

/*
 * mq_send
 *		shm_mq_send, flushed at once (PostgreSQL 15 and later batch writes
 *		otherwise).
 */
static shm_mq_result
mq_send(shm_mq_handle *mqh, StringInfo msg, bool nowait)
{
#if PG_VERSION_NUM >= 150000
	return shm_mq_send(mqh, msg->len, msg->data, nowait, true);
#else
	return shm_mq_send(mqh, msg->len, msg->data, nowait);
#endif
}

/*
 * writer_start
 *		Start the writer of photo worker "index" and connect to it.  NULL
 *		when it cannot be started: the worker then runs its transactions
 *		itself.
 */
WriterLink *
writer_start(int index, int64 claim_token)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	WriterChannel *channel;
	WriterLink *link;
	dsm_segment *seg;
	shm_mq_handle *out;
	shm_mq_handle *in;
	pid_t		pid;

	seg = dsm_create(CHANNEL_BYTES, DSM_CREATE_NULL_IF_MAXSEGMENTS);
	if (seg == NULL)
	{
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("moverz_batch: photo worker %d could not start its writer (no DSM segment left); it runs its transactions itself",
						index)));
		return NULL;
	}
	dsm_pin_mapping(seg);
	channel = dsm_segment_address(seg);
	memset(channel, 0, sizeof(WriterChannel));
	SpinLockInit(&channel->mutex);
	channel->worker_index = index;
	channel->worker_pid = MyProcPid;
	channel->claim_token = claim_token;
	shm_mq_set_sender(shm_mq_create(CHANNEL_TO_WRITER(channel), TO_WRITER_BYTES), MyProc);
	shm_mq_set_receiver(shm_mq_create(CHANNEL_TO_WORKER(channel), TO_WORKER_BYTES), MyProc);
	/* attached first: if this worker dies from here on, the writer sees it */
	out = shm_mq_attach(CHANNEL_TO_WRITER(channel), seg, NULL);
	in = shm_mq_attach(CHANNEL_TO_WORKER(channel), seg, NULL);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "moverz_batch");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "moverz_photo_writer_main");
	snprintf(worker.bgw_type, BGW_MAXLEN, "moverz_batch photo writer");
	snprintf(worker.bgw_name, BGW_MAXLEN, "moverz_batch photo writer %d", index);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle) ||
		WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
	{
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("moverz_batch: photo worker %d could not start its writer; it runs its transactions itself",
						index),
				 errhint("Raise max_worker_processes: each photo worker uses two background worker slots.")));
		dsm_detach(seg);
		return NULL;
	}

	shm_mq_set_handle(out, handle);
	shm_mq_set_handle(in, handle);
	link = MemoryContextAllocZero(TopMemoryContext, sizeof(WriterLink));
	link->channel = channel;
	link->index = index;
	link->cxt = AllocSetContextCreate(TopMemoryContext, "moverz_batch writer messages",
									  ALLOCSET_DEFAULT_SIZES);
	link->out = out;
	link->in = in;
	return link;
}

/*
 * writer_lost
 *		Has the writer gone away?  The worker cannot go on without it: it
 *		hands back its ready photos and exits (writer_exit).
 */
bool
writer_lost(WriterLink *link)
{
	return link->lost;
}

/*
 * writer_exit
 *		End the worker whose writer went away; it is restarted, and takes
 *		back the photos it had in flight.
 */
void
writer_exit(WriterLink *link)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("moverz_batch: the writer of photo worker %d exited", link->index),
			 errdetail("The worker restarts and takes back the photos it had in flight.")));
}

/*
 * new_message
 *		An empty message of the given kind, queued to be sent.
 */
static StringInfo
new_message(WriterLink *link, char kind)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(link->cxt);
	StringInfo	msg = makeStringInfo();

	appendStringInfoChar(msg, kind);
	link->pending = lappend(link->pending, msg);
	MemoryContextSwitchTo(oldcxt);
	return msg;
}

/* Fixed-size fields of the messages, in host order. */
static void
put_int32(StringInfo msg, int32 v)
{
	appendBinaryStringInfo(msg, (char *) &v, sizeof(v));
}

/* Reading a message: every read is checked against its end. */
typedef struct MsgReader
{
	const char *p;
	const char *end;
} MsgReader;

/*
 * get_bytes
 *		The next len bytes of the message (an error if it is shorter).
 */
static const char *
get_bytes(MsgReader *r, Size len)
{
	const char *at = r->p;

	if ((Size) (r->end - r->p) < len)
		elog(ERROR, "moverz_batch: truncated message between a photo worker and its writer");
	r->p += len;
	return at;
}

static int32
get_int32(MsgReader *r)
{
	int32		v;

	memcpy(&v, get_bytes(r, sizeof(v)), sizeof(v));
	return v;
}

/*
 * writer_flush
 *		Queue what the writer's queue takes now, in order; the rest waits
 *		for the next call (the writer sets our latch as it reads).
 */
void
writer_flush(WriterLink *link)
{
	while (link->pending != NIL && !link->lost)
	{
		StringInfo	msg = (StringInfo) linitial(link->pending);
		shm_mq_result res = mq_send(link->out, msg, true);

		if (res == SHM_MQ_WOULD_BLOCK)
			return;
		if (res != SHM_MQ_SUCCESS)
		{
			link->lost = true;
			return;
		}
		link->pending = list_delete_first(link->pending);
		pfree(msg->data);
		pfree(msg);
	}
}

/*
 * writer_ask_claim
 *		Ask the writer to claim up to want photos.
 */
void
writer_ask_claim(WriterLink *link, int want)
{
	put_int32(new_message(link, 'C'), want);
	writer_flush(link);
}

/*
 * writer_send_results
 *		Hand n results to the writer, which writes them back in one
 *		transaction.  Frees the result strings.
 */
void
writer_send_results(WriterLink *link, AiResult *results, int n)
{
	StringInfo	msg = new_message(link, 'R');
	MemoryContext oldcxt = MemoryContextSwitchTo(link->cxt);

	put_int32(msg, n);
	for (int i = 0; i < n; i++)
	{
		int			len = strlen(results[i].json);

		put_int32(msg, results[i].head_len);
		put_int32(msg, len);
		appendBinaryStringInfo(msg, results[i].json, len);
		pfree(results[i].json);
	}
	MemoryContextSwitchTo(oldcxt);
	writer_flush(link);
}

/*
 * writer_take_claim
 *		Take the next answer to a claim, if one came: its photos join the
 *		ready queue of claims, the request tokens of those asked for and
 *		not claimed go back.  False when none is there.
 */
bool
writer_take_claim(WriterLink *link, ClaimState *claims, WriterClaim *answer)
{
	Size		nbytes;
	void	   *data;
	MsgReader	r;
	shm_mq_result res;

	/* what the writer sent before it went away is still there to read */
	res = shm_mq_receive(link->in, &nbytes, &data, true);
	if (res == SHM_MQ_WOULD_BLOCK)
		return false;
	if (res != SHM_MQ_SUCCESS)
	{
		link->lost = true;
		return false;
	}
	r.p = data;
	r.end = r.p + nbytes;
	if (*get_bytes(&r, 1) != 'P')
		elog(ERROR, "moverz_batch: unexpected message from the photo writer");
	memcpy(&answer->epoch, get_bytes(&r, sizeof(uint64)), sizeof(uint64));
	answer->asked = get_int32(&r);
	answer->claimed = get_int32(&r);
	for (int i = 0; i < answer->claimed; i++)
	{
		const char *values[AI_PHOTO_NFIELDS];
		int			attempt = get_int32(&r);

		for (int f = 0; f < AI_PHOTO_NFIELDS; f++)
		{
			int32		len = get_int32(&r);

			/* the strings are sent with their terminating NUL */
			values[f] = len <= 0 ? NULL : get_bytes(&r, len);
			/* only room_type (the last) may be NULL */
			if (values[f] == NULL ? f < 6 : values[f][len - 1] != '\0')
				elog(ERROR, "moverz_batch: malformed photo from the photo writer");
		}
		claim_push_ready(claims, values, attempt);
	}
	moverz_rate_give_back(answer->asked - Max(answer->claimed, 0));
	link->answers_taken++;
	return true;
}

/*
 * writer_close
 *		The worker is going: hand the writer what is queued for it (for up
 *		to timeout_ms), then close the channel and take the answer to the
 *		claim asked, if the writer had begun to send it; its photos join
 *		the ready queue, to be handed back.  *asked is set to 0 once no
 *		answer can come any more.
 */
void
writer_close(WriterLink *link, ClaimState *claims, int *asked, long timeout_ms)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	WriterClaim answer;
	bool		sending;

	while (!link->lost)
	{
		long		secs;
		int			usecs;

		writer_flush(link);
		while (writer_take_claim(link, claims, &answer))
			*asked = 0;
		TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
		if ((link->pending == NIL && *asked == 0) || (secs == 0 && usecs == 0))
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 secs * 1000 + usecs / 1000 + 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	SpinLockAcquire(&link->channel->mutex);
	link->channel->closing = true;
	SpinLockRelease(&link->channel->mutex);
	/* from now on no answer starts; read those sent or being sent */
	for (;;)
	{
		uint64		sent;

		SpinLockAcquire(&link->channel->mutex);
		sending = link->channel->sending;
		sent = link->channel->answers_sent;
		SpinLockRelease(&link->channel->mutex);
		if (writer_take_claim(link, claims, &answer))
		{
			*asked = 0;
			continue;
		}
		if (link->lost || (!sending && link->answers_taken >= sent))
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	/* a claim never answered sent nothing: its request tokens go back */
	moverz_rate_give_back(*asked);
	*asked = 0;
}

/* ---------------------------------------------------------------- writer */

/*
 * put_photo
 *		Append one claimed photo to an answer.
 */
static void
put_photo(StringInfo msg, const AiPhoto *photo)
{
	const char **fields[AI_PHOTO_NFIELDS];

	ai_photo_fields(unconstify(AiPhoto *, photo), fields);
	put_int32(msg, photo->attempt);
	for (int f = 0; f < AI_PHOTO_NFIELDS; f++)
	{
		const char *value = *fields[f];
		int32		len = value ? (int32) strlen(value) + 1 : -1;

		put_int32(msg, len);
		if (len > 0)
			appendBinaryStringInfo(msg, value, len);
	}
}

/*
 * worker_gone
 *		Is the worker gone, or going (no claim is made for it then)?
 */
static bool
worker_gone(WriterState *ws)
{
	bool		closing;

	SpinLockAcquire(&ws->channel->mutex);
	closing = ws->channel->closing;
	SpinLockRelease(&ws->channel->mutex);
	return closing || ws->detached ||
		moverz_photo_slot(ws->channel->worker_index)->pid != ws->channel->worker_pid;
}

/*
 * writer_claim
 *		Claim what the worker asked for and send it the photos; when
 *		stopping, or the worker is going, answer without claiming.  Photos
 *		the worker can no longer take go back unsent.
 */
static void
writer_claim(WriterState *ws)
{
	StringInfoData msg;
	AiPhoto   **photos = NULL;
	uint64		epoch = moverz_recall_epoch();
	int			n = 0;
	bool		deliver;

	if (ws->stop_by == 0 && !worker_gone(ws))
		n = claim_fetch(ws->claims, ws->want, &photos);
	initStringInfo(&msg);
	appendStringInfoChar(&msg, 'P');
	appendBinaryStringInfo(&msg, (char *) &epoch, sizeof(epoch));
	put_int32(&msg, ws->want);
	put_int32(&msg, n);
	for (int i = 0; i < n; i++)
		put_photo(&msg, photos[i]);
	ws->want = 0;

	/* committed: the photos reach the worker, or go back unsent */
	HOLD_INTERRUPTS();
	SpinLockAcquire(&ws->channel->mutex);
	deliver = !ws->channel->closing;
	ws->channel->sending = deliver;
	SpinLockRelease(&ws->channel->mutex);
	if (deliver)
		deliver = (mq_send(ws->out, &msg, false) == SHM_MQ_SUCCESS);
	SpinLockAcquire(&ws->channel->mutex);
	ws->channel->sending = false;
	if (deliver)
		ws->channel->answers_sent++;
	SpinLockRelease(&ws->channel->mutex);
	if (!deliver)
		(void) claim_unclaim(ws->claims, photos, n);
	else
	{
		for (int i = 0; i < n; i++)
			pfree(photos[i]);
	}
	RESUME_INTERRUPTS();
	if (photos)
		pfree(photos);
	pfree(msg.data);
}

/*
 * writer_keep_results
 *		Keep the results of one 'R' message until they are written back.
 */
static void
writer_keep_results(WriterState *ws, MsgReader *m)
{
	int			n = get_int32(m);

	if (ws->nresults + n > ws->maxresults)
	{
		ws->maxresults = Max(64, 2 * (ws->nresults + n));
		ws->results = ws->results == NULL ?
			MemoryContextAlloc(ws->results_cxt, ws->maxresults * sizeof(AiResult)) :
			repalloc(ws->results, ws->maxresults * sizeof(AiResult));
	}
	for (int i = 0; i < n; i++)
	{
		AiResult   *r = &ws->results[ws->nresults++];
		int			len;

		r->head_len = get_int32(m);
		len = get_int32(m);
		if (len < 0 || r->head_len < 0 || r->head_len > len)
			elog(ERROR, "moverz_batch: malformed result from the photo worker");
		r->json = MemoryContextAlloc(ws->results_cxt, len + 1);
		memcpy(r->json, get_bytes(m, len), len);
		r->json[len] = '\0';
	}
}

/*
 * writer_receive
 *		Take every message the worker has queued.
 */
static void
writer_receive(WriterState *ws)
{
	for (;;)
	{
		Size		nbytes;
		void	   *data;
		MsgReader	m;
		char		kind;
		shm_mq_result res = shm_mq_receive(ws->in, &nbytes, &data, true);

		if (res == SHM_MQ_WOULD_BLOCK)
			return;
		if (res != SHM_MQ_SUCCESS)
		{
			ws->detached = true;
			return;
		}
		m.p = data;
		m.end = m.p + nbytes;
		kind = *get_bytes(&m, 1);
		if (kind == 'C')
		{
			int32		want = get_int32(&m);

			ws->want = Max(ws->want, want);
		}
		else if (kind == 'R')
		{
			writer_keep_results(ws, &m);
			ws->last_result = GetCurrentTimestamp();
		}
		else
			elog(ERROR, "moverz_batch: unexpected message from the photo worker");
	}
}

/*
 * writer_write_back
 *		Write back up to moverz_batch.writeback_batch of the results kept,
 *		oldest first.
 */
static void
writer_write_back(WriterState *ws)
{
	int			n = Min(ws->nresults, moverz_writeback_batch);

	claim_write_back(ws->claims, ws->results, n);
	ws->nresults -= n;
	memmove(ws->results, ws->results + n, ws->nresults * sizeof(AiResult));
}

/*
 * moverz_photo_writer_main
 *		Entry point of a photo writer; main_arg is the handle of the DSM
 *		segment its photo worker created.
 */
void
moverz_photo_writer_main(Datum main_arg)
{
	dsm_segment *seg;
	WriterChannel *channel;
	WriterState ws;
	MemoryContext loop_cxt;
	int			index;

	moverz_worker_setup("starting");
	/* SIGTERM: answer, write back what came, then go (writer_stop) */
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		proc_exit(0);			/* the worker is already gone */
	channel = dsm_segment_address(seg);
	index = channel->worker_index;

	memset(&ws, 0, sizeof(ws));
	shm_mq_set_receiver(CHANNEL_TO_WRITER(channel), MyProc);
	shm_mq_set_sender(CHANNEL_TO_WORKER(channel), MyProc);
	ws.in = shm_mq_attach(CHANNEL_TO_WRITER(channel), seg, NULL);
	ws.out = shm_mq_attach(CHANNEL_TO_WORKER(channel), seg, NULL);
	ws.channel = channel;
	ws.claims = claim_state_create(moverz_photo_slot(index), index, channel->claim_token, NULL);
	ws.results_cxt = AllocSetContextCreate(TopMemoryContext, "moverz_batch results to write",
										   ALLOCSET_DEFAULT_SIZES);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "moverz_batch photo writer loop",
									 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		TimestampTz now;
		TimestampTz quiet;
		bool		full;

		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);
		(void) moverz_process_interrupts();
		now = GetCurrentTimestamp();
		if (ShutdownRequestPending && ws.stop_by == 0)
			ws.stop_by = TimestampTzPlusMilliseconds(now, WRITER_DRAIN_MS);
		writer_receive(&ws);
		now = GetCurrentTimestamp();
		quiet = TimestampTzPlusMilliseconds(ws.last_result, WRITER_QUIET_MS);
		full = ws.nresults >= moverz_writeback_batch || now >= quiet ||
			ws.detached || ws.stop_by != 0;
		/* claims first, unless the results kept pile up */
		if (ws.want > 0 && !ws.detached && ws.nresults < WRITER_MAX_KEPT)
			writer_claim(&ws);
		else if (ws.nresults > 0 && full)
			writer_write_back(&ws);
		else if (ws.want > 0 && !ws.detached)
			writer_claim(&ws);
		else if (ws.nresults == 0 && (ws.detached || (ws.stop_by != 0 && now >= ws.stop_by)))
			break;
		else
		{
			TimestampTz until = ws.nresults > 0 ? quiet : ws.stop_by;
			long		secs = 0;
			int			usecs = 0;

			if (until != 0)
				TimestampDifference(now, until, &secs, &usecs);
			if (ws.nresults == 0)
				pgstat_report_activity(STATE_IDLE, "waiting for work from its photo worker");
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH |
							 (until != 0 ? WL_TIMEOUT : 0),
							 until != 0 ? secs * 1000 + usecs / 1000 + 1 : -1,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
	proc_exit(0);
}
