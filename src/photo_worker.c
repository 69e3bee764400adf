/*-------------------------------------------------------------------------
 *
 * photo_worker.c
 *		The photo worker: its wait loop, and the photos it has claimed and
 *		not yet sent.
 *
 * One loop multiplexes the latch (new work, SIGTERM, SIGHUP), postmaster
 * death and the sockets and timer of up to moverz_batch.max_inflight AI
 * requests.  Each turn: drive curl, fill the free request slots with photos
 * already claimed, claim more (one short transaction) and send them, write
 * back what finished (many results per transaction; between two, the
 * answers that came meanwhile are read and their slots filled again), then
 * sleep until something happens.  No transaction, snapshot or lock is held
 * while a request is in flight: the transactions run between the turns.
 *
 * With many requests in flight the worker claims ahead of its free slots
 * (moverz_batch.claim_ahead), so that an answer's slot is refilled at once,
 * not after the claim and write-back of every answer that came with it.
 * Photos claimed ahead go back unsent when a recall commits (cancel, pause,
 * a HIGH batch), during a RATE_LIMIT hold, and at shutdown.
 *
 * Shutdown follows contrib/pg_prewarm/autoprewarm.c: SIGTERM sets
 * ShutdownRequestPending, the loop ends at its next turn, and the worker
 * writes back the answers it has read and hands back the photos it has not
 * sent in ordinary transactions before it exits.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* What the loop knows between turns. */
typedef struct PhotoLoop
{
	MoverzWorkerSlot *slot;
	AiClient   *client;
	ObjectFetcher *objects;		/* downloads and deletions of the s3 store */
	ClaimState *claims;
	MemoryContext ready_cxt;	/* the photos claimed, not yet sent */
	AiPhoto   **ready;			/* oldest first */
	int			nready;
	int			maxready;
	bool		recovered;		/* stale claims taken back, prompt read */
	bool		want_claim;		/* woken, or the last claim was full */
	TimestampTz next_poll;		/* fallback claim */
	TimestampTz next_reap;		/* expired leases */
	TimestampTz rate_wait_until;	/* no request token before then */
	uint64		recall_epoch;	/* last recall honoured */
	AiResult   *deferred;		/* answers a transient database error kept */
	int			ndeferred;
	int			maxdeferred;
	int			deferred_tries; /* write-backs of them that failed */
	TimestampTz deferred_retry_at;	/* when to write them again */
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
 * recall_ready
 *		Hand back every photo claimed and not sent, and the request tokens
 *		their claim took.
 */
static void
recall_ready(PhotoLoop *loop)
{
	int			n = loop->nready;

	loop->nready = 0;
	moverz_rate_give_back(n);
	(void) claim_unclaim(loop->claims, loop->ready, n);
}

/*
 * send_photo
 *		Send a claimed photo (and free it): to the AI service, or, for a
 *		file in the s3 store, first to its download (which then owns it).
 */
static void
send_photo(PhotoLoop *loop, AiPhoto *photo)
{
	if (photo->object_key != NULL)
		object_fetch_start(loop->objects, photo);
	else
	{
		ai_client_start(loop->client, photo);
		pfree(photo);
	}
}

/*
 * send_ready
 *		Fill the free request slots with photos already claimed, oldest
 *		first.  First hand them all back if a recall committed since the
 *		last look, or while the pool is held back after a RATE_LIMIT answer.
 */
static void
send_ready(PhotoLoop *loop)
{
	uint64		epoch = moverz_recall_epoch();
	int			n;

	moverz_rate_hold_ended();

	if (epoch != loop->recall_epoch ||
		(loop->nready > 0 && (moverz_rate_held_ms() > 0 || moverz_outage_holding())))
	{
		loop->recall_epoch = epoch;
		loop->want_claim = true;
		recall_ready(loop);
		return;
	}
	/* a model API whose prompt could not be read: they wait (recover) */
	if (ai_client_needs_prompt(loop->client))
		return;
	n = Min(loop->nready, moverz_max_inflight - ai_client_inflight(loop->client));
	if (n <= 0)
		return;
	for (int i = 0; i < n; i++)
		send_photo(loop, loop->ready[i]);
	loop->nready -= n;
	memmove(loop->ready, loop->ready + n, loop->nready * sizeof(AiPhoto *));
	ai_client_drive(loop->client, false);
}

/*
 * held_bytes
 *		The bytes of uploaded photos this worker holds: claimed ahead,
 *		downloaded and in flight (moverz_batch.max_inflight_bytes caps them).
 */
static int64
held_bytes(PhotoLoop *loop)
{
	int64		n = ai_client_image_bytes(loop->client) + object_fetch_bytes(loop->objects);

	for (int i = 0; i < loop->nready; i++)
		n += loop->ready[i]->image_bytes;
	return n;
}

/*
 * ready_add
 *		Queue n photos to send (and free the array photos): behind the
 *		others, or before them (first: they were claimed earlier).
 */
static void
ready_add(PhotoLoop *loop, AiPhoto **photos, int n, bool first)
{
	if (n > 0)
	{
		if (loop->nready + n > loop->maxready)
		{
			loop->maxready = Max(64, 2 * (loop->nready + n));
			loop->ready = loop->ready == NULL ?
				MemoryContextAlloc(loop->ready_cxt, loop->maxready * sizeof(AiPhoto *)) :
				repalloc(loop->ready, loop->maxready * sizeof(AiPhoto *));
		}
		if (first)
			memmove(loop->ready + n, loop->ready, loop->nready * sizeof(AiPhoto *));
		memcpy(loop->ready + (first ? 0 : loop->nready), photos, n * sizeof(AiPhoto *));
		loop->nready += n;
	}
	if (photos)
		pfree(photos);
}

/*
 * settle_downloads
 *		The files downloaded from the s3 store that are still to analyse
 *		join the front of the ready queue (send_ready sends them, under its
 *		checks: pause, rate limit, outage, free slots).
 */
static void
settle_downloads(PhotoLoop *loop)
{
	AiPhoto   **photos;
	int			n = object_fetch_settle(loop->objects, loop->slot->claim_token, loop->ready_cxt, &photos);

	ready_add(loop, photos, n, true);
}

/*
 * claim_into_queue
 *		Claim up to "want" photos (within the request rate) behind the ready
 *		ones, and send what the free slots take.  False when nothing more
 *		should be claimed this turn.
 */
static bool
claim_into_queue(PhotoLoop *loop, int want, TimestampTz now)
{
	long		wait_ms;
	int			granted = moverz_rate_take(want, &wait_ms);
	AiPhoto   **photos;
	int			n;

	if (granted == 0)
	{
		/* over the request ceiling, or held back after a 429: come back */
		loop->want_claim = true;
		loop->rate_wait_until = TimestampTzPlusMilliseconds(now, Max(wait_ms, 1));
		return false;
	}
	n = claim_fetch(loop->claims, granted, held_bytes(loop), loop->ready_cxt, &photos);
	moverz_rate_give_back(granted - Max(n, 0));
	ready_add(loop, photos, n, false);
	/* photos came: there may be more; none: wait for a wake-up or the poll */
	loop->want_claim = (n > 0);
	loop->rate_wait_until = 0;
	loop->next_poll = TimestampTzPlusMilliseconds(now, moverz_poll_interval_ms);
	send_ready(loop);
	return n == granted;
}

/*
 * recover
 *		Before the first claim, and after a failure: take back the stale
 *		claims (this worker's earlier incarnations', vanished workers') and,
 *		for a model API, read its prompt.  Then, now and then, the expired
 *		leases.  False while claims must wait (the extension is missing, or
 *		the database is busy): again on poll.
 */
static bool
recover(PhotoLoop *loop, TimestampTz now)
{
	if (!loop->recovered || now >= loop->next_reap)
	{
		loop->recovered = claim_release_stale(loop->claims) >= 0 &&
			(!ai_client_needs_prompt(loop->client) || ai_client_load(loop->client));
		loop->next_reap = TimestampTzPlusMilliseconds(now, Max(moverz_poll_interval_ms,
															   moverz_lease_timeout_ms / 4));
		if (!loop->recovered)
			loop->next_poll = TimestampTzPlusMilliseconds(now, moverz_poll_interval_ms);
	}
	return loop->recovered;
}

/*
 * probe_outage
 *		The AI service is down (outage.c): no claim, but one photo now and
 *		then to see whether it is back.
 */
static void
probe_outage(PhotoLoop *loop, TimestampTz now)
{
	long		wait_ms;
	AiPhoto   **photos;

	if (moverz_outage_take_probe(&wait_ms))
	{
		if (claim_fetch(loop->claims, 1, held_bytes(loop), loop->ready_cxt, &photos) == 1)
		{
			send_photo(loop, photos[0]);
			ai_client_drive(loop->client, false);
		}
		else
			moverz_outage_probe_unsent();
		if (photos)
			pfree(photos);
	}
	/* come back for the next probe (the circuit closing wakes every worker) */
	loop->want_claim = true;
	loop->rate_wait_until = TimestampTzPlusMilliseconds(now, Max(wait_ms, 1));
}

/*
 * maintain_claims
 *		Claim new photos when woken, after a full claim, or on poll: first
 *		for the free slots (they are sent at once), then, in bulk, the
 *		photos to keep claimed ahead.  While the AI service is down, only
 *		its probes.
 */
static void
maintain_claims(PhotoLoop *loop)
{
	TimestampTz now = GetCurrentTimestamp();
	int			ahead = claim_ahead_target();
	int			uncovered;

	if (!recover(loop, now))
		return;
	if (!loop->want_claim && now < loop->next_poll)
		return;
	/* no new answer to pay for while the database refuses those we have */
	if (loop->ndeferred > 0)
	{
		loop->rate_wait_until = loop->deferred_retry_at;
		return;
	}
	if (moverz_outage_holding())
	{
		if (now >= loop->rate_wait_until)
			probe_outage(loop, now);
		return;
	}
	/* slots no ready photo will fill */
	uncovered = moverz_max_inflight - ai_client_inflight(loop->client) - loop->nready;
	if (uncovered > 0 && !claim_into_queue(loop, uncovered, now))
		return;
	/* claim ahead in bulk, not photo by photo */
	if (loop->nready < (ahead + 1) / 2)
		(void) claim_into_queue(loop, ahead - loop->nready, now);
}

/*
 * defer_results
 *		Keep n answers a transient database error (a deadlock, a lock
 *		time-out...) refused, to write them again after a backoff: 100 ms,
 *		doubling up to 5 s.  A paid answer is not dropped: it is written as
 *		soon as the database takes it, for as long as its photo's claim
 *		lasts (moverz_batch.lease_timeout; after that the photo has been
 *		taken back, and the late answer changes nothing).
 */
static void
defer_results(PhotoLoop *loop, AiResult *results, int n)
{
	if (loop->ndeferred + n > loop->maxdeferred)
	{
		loop->maxdeferred = Max(64, 2 * (loop->ndeferred + n));
		loop->deferred = loop->deferred == NULL ?
			MemoryContextAlloc(TopMemoryContext, loop->maxdeferred * sizeof(AiResult)) :
			repalloc(loop->deferred, loop->maxdeferred * sizeof(AiResult));
	}
	memcpy(loop->deferred + loop->ndeferred, results, n * sizeof(AiResult));
	loop->ndeferred += n;
	loop->deferred_tries++;
	loop->deferred_retry_at =
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
									Min(5000, 100 << Min(loop->deferred_tries - 1, 6)));
	if (loop->deferred_tries == 1)
		elog(LOG, "moverz_batch: the database refused %d AI result(s) for a while (transient error): writing them again later",
			 n);
}

/*
 * write_deferred
 *		Write again the answers kept by a transient error, when due.
 */
static void
write_deferred(PhotoLoop *loop)
{
	AiResult   *kept = loop->deferred;
	int			n = loop->ndeferred;

	if (n == 0 || (GetCurrentTimestamp() < loop->deferred_retry_at && !ShutdownRequestPending))
		return;
	loop->deferred = NULL;
	loop->ndeferred = loop->maxdeferred = 0;
	for (int i = 0; i < n; i += moverz_writeback_batch)
	{
		int			chunk = Min(moverz_writeback_batch, n - i);
		int			again = claim_write_back(loop->claims, kept + i, chunk);

		if (again > 0)
			defer_results(loop, kept + i, again);
	}
	pfree(kept);
	if (loop->ndeferred == 0)
	{
		if (loop->deferred_tries > 1)
			elog(LOG, "moverz_batch: the AI results kept are written back");
		loop->deferred_tries = 0;
		loop->want_claim = true;
	}
}

/*
 * write_back_results
 *		Write back the finished results, moverz_batch.writeback_batch per
 *		transaction; between two, read the answers that came and fill their
 *		slots again (from the ready photos, or by a claim).  First those a
 *		transient error kept, when due.
 */
static void
write_back_results(PhotoLoop *loop)
{
	AiResult   *batch = palloc(sizeof(AiResult) * moverz_writeback_batch);
	int			n;

	write_deferred(loop);
	while ((n = ai_client_take_results(loop->client, batch, moverz_writeback_batch)) > 0)
	{
		int			kept = claim_write_back(loop->claims, batch, n);

		if (kept > 0)
			defer_results(loop, batch, kept);
		if (ShutdownRequestPending)
			continue;
		ai_client_drive(loop->client, true);
		send_ready(loop);
		maintain_claims(loop);
	}
	pfree(batch);
}

/*
 * report_activity
 *		Show the number of requests in flight in pg_stat_activity and in the
 *		worker's slot.
 */
static void
report_activity(PhotoLoop *loop)
{
	int			inflight = ai_client_inflight(loop->client);

	if (inflight != loop->reported_inflight)
	{
		loop->reported_inflight = inflight;
		moverz_slot_report(loop->slot, inflight, 0, 0, NULL);
	}
	/* the transactions of this turn replaced the text: set it again */
	if (loop->nready > 0 || loop->reported_ready > 0)
		pgstat_report_activity(STATE_IDLE,
							   psprintf("waiting for the AI service: %d request(s) in flight, %d photo(s) claimed ahead",
										inflight, loop->nready));
	else
		pgstat_report_activity(STATE_IDLE,
							   psprintf("waiting for the AI service: %d request(s) in flight", inflight));
	loop->reported_ready = loop->nready;
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
	TimestampTz until = Min(loop->next_poll, loop->next_reap);
	long		curl_ms = ai_client_timeout_ms(loop->client);
	bool		free_slots = ai_client_inflight(loop->client) < moverz_max_inflight;
	long		ms;

	if (!loop->recovered)
		until = loop->next_poll;	/* claims wait for the recovery */
	else if (loop->nready > 0 && free_slots)
		return 0;
	else if (loop->want_claim && free_slots)
	{
		if (loop->rate_wait_until <= now)
			return 0;
		until = Min(until, loop->rate_wait_until);
	}
	if (ai_client_result_count(loop->client) > 0)
		return 0;
	if (loop->ndeferred > 0)
		until = Min(until, loop->deferred_retry_at);
	ms = until <= now ? 0 : (long) ((until - now + 999) / 1000);
	if (curl_ms >= 0)
		ms = Min(ms, curl_ms);
	return ms;
}

/*
 * reconfigure
 *		After a reload of the settings: the AI client's endpoint and key,
 *		and a model API's prompt, so that the photos claimed ahead leave
 *		with the new one.
 */
static void
reconfigure(PhotoLoop *loop)
{
	ai_client_configure(loop->client);
	if (ai_client_needs_prompt(loop->client) && !ai_client_load(loop->client))
		loop->recovered = false;	/* read again on poll; nothing sent meanwhile */
}

/*
 * run_turn
 *		One turn of the loop: what curl has, then refill the free slots
 *		first (the requests leave), then claim, then write back.
 */
static void
run_turn(PhotoLoop *loop, bool socket_ready)
{
	ai_client_drive(loop->client, socket_ready);
	settle_downloads(loop);
	send_ready(loop);
	maintain_claims(loop);
	ai_client_drive(loop->client, false);
	settle_downloads(loop);
	object_deletions_run(loop->objects, moverz_max_inflight - ai_client_inflight(loop->client));
	write_back_results(loop);
	report_activity(loop);
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
	loop.slot = moverz_attach_slot(MOVERZ_SLOT_PHOTO, index);
	loop.client = ai_client_create();
	loop.objects = object_fetcher_create(loop.client);
	loop.claims = claim_state_create(loop.slot, index, loop.slot->claim_token);
	loop.ready_cxt = AllocSetContextCreate(TopMemoryContext, "moverz_batch ready photos",
										   ALLOCSET_DEFAULT_SIZES);
	loop.want_claim = true;
	loop.reported_inflight = -1;
	loop.recall_epoch = moverz_recall_epoch();
	events = moverz_wait_set(ai_client_event_fd(loop.client));
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "moverz_batch photo worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	elog(LOG, "moverz_batch: photo worker %d started (database \"%s\", up to %d requests in flight)",
		 index, moverz_database, moverz_max_inflight);

	while (!ShutdownRequestPending)
	{
		WaitEvent	occurred[3];
		int			n;

		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);
		if (moverz_process_interrupts())
			reconfigure(&loop);
		run_turn(&loop, socket_ready);

		socket_ready = false;
		n = WaitEventSetWait(events, wait_timeout(&loop), occurred, lengthof(occurred),
							 PG_WAIT_EXTENSION);
		for (int i = 0; i < n; i++)
		{
			if (occurred[i].events & WL_LATCH_SET)
			{
				/* new work (or a signal: a claim too many costs little) */
				ResetLatch(MyLatch);
				loop.want_claim = true;
			}
			if (occurred[i].events & WL_SOCKET_READABLE)
				socket_ready = true;
		}
	}

	/*
	 * Shutting down: the answers already read are written back, the photos
	 * claimed ahead and those being downloaded go back unsent.  The requests still in flight are left:
	 * their photos are taken back (the attempt counted) when the worker
	 * starts again.
	 */
	MemoryContextSwitchTo(loop_cxt);
	write_back_results(&loop);
	if (loop.ndeferred > 0)
		elog(LOG, "moverz_batch: %d AI result(s) could not be written back before the stop: their photos are taken back at the next start",
			 loop.ndeferred);
	if (loop.nready > 0)
		recall_ready(&loop);
	{
		/* the files being downloaded: their photos go back unsent too */
		AiPhoto   **photos;
		int			n = object_fetch_abandon(loop.objects, &photos);

		if (n > 0)
			(void) claim_unclaim(loop.claims, photos, n);
	}
	elog(LOG, "moverz_batch: photo worker %d stopped", index);

	/*
	 * Exit code 1, not 0: the postmaster restarts a worker stopped alone
	 * (pg_terminate_backend), as it does one that failed; at shutdown it
	 * restarts nothing.  Code 0 would unregister it for good.
	 */
	proc_exit(1);
}
