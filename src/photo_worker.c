/*-------------------------------------------------------------------------
 *
 * photo_worker.c
 *		The photo worker: its wait loop.
 *
 * One loop multiplexes the latch (new work, SIGTERM, SIGHUP, messages from
 * the writer), postmaster death and the sockets and timer of up to
 * moverz_batch.max_inflight AI requests.  Each turn: drive curl, fill the
 * free slots with photos already claimed, claim more and send them, write
 * back what finished, then sleep until something happens.  Claims and
 * write-backs are transactions; the worker's photo writer (writer.c) runs
 * them, so the loop only asks and hands over, and never waits on one.
 * Without a writer the loop runs them itself: a claim (one short
 * transaction) before sending, write-backs of many results each, the free
 * slots filled again between them.
 * With many requests in flight the worker claims ahead of its free slots
 * (moverz_batch.claim_ahead), so that an answer's slot is refilled at once,
 * not after the claim and write-back of every answer that came with it.
 * Photos claimed ahead go back unsent when a recall commits (cancel, pause,
 * a HIGH batch), during a RATE_LIMIT hold, and at shutdown.
 * No transaction, snapshot or lock is held while waiting.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/*
 * Photos asked of the writer at a time: the first requests leave while
 * the writer claims the next ones.
 */
#define WRITER_CLAIM_MAX	256

/* How long a worker that goes waits for its writer to take what it has. */
#define WRITER_CLOSE_MS		2000

/* What the loop knows between turns. */
typedef struct PhotoLoop
{
	MoverzWorkerSlot *slot;
	AiClient   *client;
	ClaimState *claims;
	bool		recovered;		/* stale claims taken back since start */
	bool		want_claim;		/* woken, or the last claim was full */
	TimestampTz next_poll;		/* fallback claim */
	TimestampTz next_reap;		/* expired leases */
	TimestampTz rate_wait_until;	/* no request token before then */
	uint64		recall_epoch;	/* last recall honoured (or, set back, due) */
	WriterLink *writer;			/* NULL: the transactions run here */
	int			claim_asked;	/* photos asked of the writer, not answered */
	uint64		wakes;			/* wake-ups seen */
	int			reported_inflight;
	int			reported_ready;
} PhotoLoop;

/*
 * claim_ahead_target
 *		How many photos to keep claimed beyond the free request slots.
 */
static int
claim_ahead_target(void)
{
	if (moverz_max_inflight_per_user > 0 || moverz_max_requests_per_second > 0)
		return 0;
	if (moverz_claim_ahead >= 0)
		return moverz_claim_ahead;
	return moverz_max_inflight >= 64 ? moverz_max_inflight / 4 : 0;
}

/*
 * send_ready
 *		Fill the free request slots with photos already claimed.  First hand
 *		them all back if a recall committed since the last look, or while
 *		the pool is held back after a RATE_LIMIT answer.
 */
static void
send_ready(PhotoLoop *loop)
{
	uint64		epoch = moverz_recall_epoch();
	int			ready = claim_ready_count(loop->claims);

	if (epoch != loop->recall_epoch || (ready > 0 && moverz_rate_held_ms() > 0))
	{
		loop->recall_epoch = epoch;
		loop->want_claim = true;
		claim_recall_ready(loop->claims);
		return;
	}
	if (ready > 0 && claim_send_ready(loop->claims,
									  moverz_max_inflight - ai_client_inflight(loop->client)) > 0)
		ai_client_drive(loop->client, false);
}

/*
 * claim_into_queue
 *		Claim up to "want" photos (within the request rate) into the ready
 *		queue, and send what the free slots take.  False when nothing more
 *		should be claimed this turn.
 */
static bool
claim_into_queue(PhotoLoop *loop, int want, TimestampTz now)
{
	long		wait_ms;
	int			granted = moverz_rate_take(want, &wait_ms);
	int			n;

	if (granted == 0)
	{
		/* over the request ceiling, or held back after a 429: come back */
		loop->want_claim = true;
		loop->rate_wait_until = TimestampTzPlusMilliseconds(now, Max(wait_ms, 1));
		return false;
	}
	if (loop->writer != NULL)
	{
		/*
		 * The answer comes later (take_claims); a wake-up meanwhile sets
		 * want_claim again.
		 */
		loop->claim_asked = granted;
		loop->want_claim = false;
		loop->rate_wait_until = 0;
		loop->next_poll = TimestampTzPlusMilliseconds(now, moverz_poll_interval_ms);
		writer_ask_claim(loop->writer, granted);
		return false;
	}
	n = claim_photos(loop->claims, granted);
	moverz_rate_give_back(granted - Max(n, 0));
	/* photos came: there may be more; none: wait for a wake-up or the poll */
	loop->want_claim = (n > 0);
	loop->rate_wait_until = 0;
	loop->next_poll = TimestampTzPlusMilliseconds(now, moverz_poll_interval_ms);
	send_ready(loop);
	return n == granted;
}

/*
 * take_claims
 *		Queue the photos of the writer's answers as ready.  An answer to a
 *		claim that read the recall epoch before the last recall honoured
 *		may hold photos that recall should have handed back: the epoch is
 *		set back to it, so send_ready recalls them.
 */
static void
take_claims(PhotoLoop *loop)
{
	WriterClaim answer;

	while (loop->writer != NULL && writer_take_claim(loop->writer, loop->claims, &answer))
	{
		loop->claim_asked = 0;
		/* a full claim: there may be more (a wake-up may have said so too) */
		if (answer.claimed == answer.asked)
			loop->want_claim = true;
		if (answer.epoch < loop->recall_epoch)
			loop->recall_epoch = answer.epoch;
	}
}

/*
 * maintain_claims
 *		Take back stale claims at start and, then, expired leases now and
 *		then; claim new photos when woken, after a full claim, or on poll:
 *		first for the free slots (they are sent at once), then, in bulk,
 *		the photos to keep claimed ahead.  A writer is asked for both at
 *		once, one claim at a time.
 */
static void
maintain_claims(PhotoLoop *loop)
{
	TimestampTz now = GetCurrentTimestamp();
	int			ahead = claim_ahead_target();
	int			uncovered;

	if (!loop->recovered || now >= loop->next_reap)
	{
		loop->recovered = claim_release_stale(loop->claims) >= 0;
		loop->next_reap = TimestampTzPlusMilliseconds(now, Max(moverz_poll_interval_ms,
															   moverz_lease_timeout_ms / 4));
		if (!loop->recovered)
		{
			/* extension missing, or the database is busy: again on poll */
			loop->next_poll = TimestampTzPlusMilliseconds(now, moverz_poll_interval_ms);
			return;
		}
	}
	if (ai_client_needs_prompt(loop->client) && !ai_client_load(loop->client))
	{
		/* a model API without its prompt: no claim; recover and read again on poll */
		loop->recovered = false;
		loop->next_poll = TimestampTzPlusMilliseconds(now, moverz_poll_interval_ms);
		return;
	}
	if ((!loop->want_claim && now < loop->next_poll) || loop->claim_asked > 0)
		return;
	/* slots no ready photo will fill */
	uncovered = moverz_max_inflight - ai_client_inflight(loop->client) -
		claim_ready_count(loop->claims);
	if (loop->writer != NULL)
	{
		/*
		 * Asked before the ready photos leave: those the free slots take
		 * count as sent, the rest (-uncovered, at most all) stay ready.
		 */
		int			unsent = Min(Max(-uncovered, 0), claim_ready_count(loop->claims));
		int			want = Max(uncovered, 0);

		if (unsent < (ahead + 1) / 2)
			want += ahead - unsent;
		if (want > 0)
			(void) claim_into_queue(loop, Min(want, WRITER_CLAIM_MAX), now);
		return;
	}
	if (uncovered > 0 && !claim_into_queue(loop, uncovered, now))
		return;
	/* claim ahead in bulk, not photo by photo */
	if (claim_ready_count(loop->claims) < (ahead + 1) / 2)
		(void) claim_into_queue(loop, ahead - claim_ready_count(loop->claims), now);
}

/*
 * refill_slots
 *		Send the ready photos and claim more.  A writer is asked for the next
 *		claim first, so that it claims while these requests leave (sending
 *		256 takes about as long as claiming them).  Without one, the ready
 *		photos leave first, then the loop claims (and sends) more itself.
 */
static void
refill_slots(PhotoLoop *loop)
{
	if (loop->writer != NULL)
	{
		maintain_claims(loop);
		send_ready(loop);
		return;
	}
	send_ready(loop);
	maintain_claims(loop);
}

/*
 * write_back_results
 *		Hand every finished result to the writer.  Without one, write them
 *		back here, moverz_batch.writeback_batch per transaction; between
 *		two, read the answers that came and fill their slots again (from
 *		the ready photos, or by a claim).
 */
static void
write_back_results(PhotoLoop *loop)
{
	AiResult   *batch = palloc(sizeof(AiResult) * moverz_writeback_batch);
	int			n;

	if (loop->writer != NULL)
	{
		while ((n = ai_client_take_results(loop->client, batch, moverz_writeback_batch)) > 0)
			writer_send_results(loop->writer, batch, n);
		writer_flush(loop->writer);
		pfree(batch);
		return;
	}

	while ((n = ai_client_take_results(loop->client, batch, moverz_writeback_batch)) > 0)
	{
		claim_write_back(loop->claims, batch, n);
		ai_client_drive(loop->client, true);
		send_ready(loop);
		maintain_claims(loop);
	}
	pfree(batch);
}

/*
 * report_activity
 *		Show the number of requests in flight in pg_stat_activity.
 */
static void
report_activity(PhotoLoop *loop)
{
	int			inflight = ai_client_inflight(loop->client);
	int			ready = claim_ready_count(loop->claims);

	if (inflight != loop->reported_inflight)
	{
		loop->reported_inflight = inflight;
		moverz_slot_report(loop->slot, loop->slot->claim_token, inflight, 0, 0, NULL);
	}
	/* the transactions of this turn replaced the text: set it again */
	if (ready > 0 || loop->reported_ready > 0)
		pgstat_report_activity(STATE_IDLE,
							   psprintf("waiting for the AI service: %d request(s) in flight, %d photo(s) claimed ahead",
										inflight, ready));
	else
		pgstat_report_activity(STATE_IDLE,
							   psprintf("waiting for the AI service: %d request(s) in flight", inflight));
	loop->reported_ready = ready;
}

/*
 * wait_timeout
 *		How long the loop may sleep: until curl's timer, the next poll or
 *		lease check, and not at all while claimable slots are known.
 */
static long
wait_timeout(PhotoLoop *loop)
{
	TimestampTz now = GetCurrentTimestamp();
	/* no poll while a claim is asked: its answer wakes the loop */
	TimestampTz until = loop->claim_asked > 0 ? loop->next_reap :
		Min(loop->next_poll, loop->next_reap);
	long		curl_ms = ai_client_timeout_ms(loop->client);
	long		ms;

	if (loop->writer != NULL && writer_lost(loop->writer))
		return 0;
	if (!loop->recovered)
		until = loop->next_poll;	/* claims wait for the recovery */
	else if (claim_ready_count(loop->claims) > 0 && ai_client_inflight(loop->client) < moverz_max_inflight)
		return 0;
	else if (loop->want_claim && loop->claim_asked == 0 &&
		ai_client_inflight(loop->client) < moverz_max_inflight)
	{
		if (loop->rate_wait_until <= now)
			return 0;
		until = Min(until, loop->rate_wait_until);
	}
	if (ai_client_result_count(loop->client) > 0)
		return 0;
	ms = until <= now ? 0 : (long) ((until - now + 999) / 1000);
	if (curl_ms >= 0)
		ms = Min(ms, curl_ms);
	return ms;
}

/*
 * hand_back_and_exit
 *		Shutting down, or the writer went away.  The answers read go to the
 *		writer to be written back, the channel is closed (with the photos
 *		of a claim the writer was answering), the photos claimed ahead go
 *		back unsent, and the worker exits.
 */
static void
hand_back_and_exit(PhotoLoop *loop)
{
	HOLD_INTERRUPTS();
	if (loop->writer != NULL)
	{
		write_back_results(loop);
		writer_close(loop->writer, loop->claims, &loop->claim_asked, WRITER_CLOSE_MS);
	}
	if (claim_ready_count(loop->claims) > 0)
		claim_recall_ready(loop->claims);
	RESUME_INTERRUPTS();
	if (loop->writer != NULL && writer_lost(loop->writer) && !ProcDiePending)
		writer_exit(loop->writer);
	CHECK_FOR_INTERRUPTS();
}

/*
 * moverz_photo_worker_main
 *		Entry point of photo worker number main_arg.
 */
void
moverz_photo_worker_main(Datum main_arg)
{
	int			index = DatumGetInt32(main_arg);
	PhotoLoop	loop;
	WaitEventSet *events;
	MemoryContext loop_cxt;
	bool		socket_ready = false;

	moverz_worker_setup("starting");
	memset(&loop, 0, sizeof(loop));
	loop.slot = moverz_attach_slot(index, false);
	loop.client = ai_client_create();
	loop.claims = claim_state_create(loop.slot, index, loop.slot->claim_token, loop.client);
	loop.want_claim = true;
	loop.reported_inflight = -1;
	loop.recall_epoch = moverz_recall_epoch();
	loop.wakes = moverz_photo_wakes();
	loop.writer = moverz_photo_writer ? writer_start(index, loop.slot->claim_token) : NULL;
	events = moverz_wait_set(ai_client_event_fd(loop.client));
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "moverz_batch photo worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	elog(LOG, "moverz_batch: photo worker %d started (database \"%s\", up to %d requests in flight)",
		 index, moverz_database, moverz_max_inflight);

	for (;;)
	{
		WaitEvent	occurred[3];
		int			n;

		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);
		if (ProcDiePending || (loop.writer != NULL && writer_lost(loop.writer)))
			hand_back_and_exit(&loop);
		if (moverz_process_interrupts())
		{
			/* the prompt too: the photos claimed ahead leave with the new one */
			ai_client_configure(loop.client);
			if (ai_client_needs_prompt(loop.client))
				(void) ai_client_load(loop.client);
		}

		ai_client_drive(loop.client, socket_ready);
		/* refill the free slots first: the requests leave, then we write */
		take_claims(&loop);
		refill_slots(&loop);
		ai_client_drive(loop.client, false);
		write_back_results(&loop);
		report_activity(&loop);

		socket_ready = false;
		n = WaitEventSetWait(events, wait_timeout(&loop), occurred, lengthof(occurred),
							 PG_WAIT_EXTENSION);
		for (int i = 0; i < n; i++)
		{
			if (occurred[i].events & WL_LATCH_SET)
			{
				uint64		wakes;

				/* the writer sets the latch too: new work moves the count */
				ResetLatch(MyLatch);
				wakes = moverz_photo_wakes();
				if (wakes != loop.wakes)
				{
					loop.wakes = wakes;
					loop.want_claim = true;
				}
			}
			if (occurred[i].events & WL_SOCKET_READABLE)
				socket_ready = true;
		}
	}
}
