/*-------------------------------------------------------------------------
 *
 * outage.c
 *		The pool-wide circuit: an AI service that is down holds the work,
 *		it does not spend the customers' attempts.
 *
 * Every finished request tells whether the service answered (any 2xx or
 * 4xx but 408: it is up, whatever it thought of the photo) or looked down
 * (a transfer failure or time-out, 408, 5xx, Anthropic's 529).  After
 * AI_OUTAGE_FAILURES downs in a row, all workers together, the circuit
 * opens:
 *	- no photo is claimed, and the photos claimed ahead go back unsent;
 *	- the failures written back while it is open give their photo its
 *	  attempt back (complete_photos: "outage": true), so the photo waits,
 *	  PENDING, for the service;
 *	- one request at a time probes the service, one every
 *	  AI_OUTAGE_PROBE_MS;
 *	- the first answer closes it, and every photo worker is woken to claim.
 * After moverz_batch.outage_max_wait the circuit stops holding (a wrong URL
 * must not hold work for ever): claims and attempts go on as without it,
 * and it still closes at the first answer.  outage_max_wait = 0 turns it
 * off: nothing is counted.  It opens and closes with one
 * log line each; ai_service_status() shows it (queue_overview).
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "fmgr.h"
#include "funcapi.h"
#include "access/htup_details.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

/* Downs in a row, all workers together, that open the circuit. */
#define AI_OUTAGE_FAILURES	5

/* One probe at a time, at most one every that many ms. */
#define AI_OUTAGE_PROBE_MS	2000

PG_FUNCTION_INFO_V1(moverz_ai_service_status);

/*
 * holding
 *		Is the circuit open and still holding the work?  Under the mutex.
 */
static bool
holding(TimestampTz now)
{
	MoverzOutage *o = &moverz_shared->outage;

	return o->since != 0 &&
		!TimestampDifferenceExceeds(o->since, now, moverz_outage_max_wait_ms);
}

/*
 * moverz_outage_report
 *		A request finished: down says whether the service looked down.
 *		Returns true when the circuit holds the work (the result then gives
 *		its photo its attempt back).  Opening and closing are logged here,
 *		once each.
 */
bool
moverz_outage_report(bool down, const char *error)
{
	MoverzOutage *o = &moverz_shared->outage;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz opened = 0;
	TimestampTz closed_since = 0;
	int64		probes = 0;
	bool		hold;

	SpinLockAcquire(&moverz_shared->mutex);
	o->probing = false;
	if (moverz_outage_max_wait_ms == 0)
	{
		/* the circuit is off: it neither counts nor opens */
		o->failures = 0;
		o->since = 0;
		SpinLockRelease(&moverz_shared->mutex);
		return false;
	}
	if (!down)
	{
		o->failures = 0;
		closed_since = o->since;
		probes = o->probes;
		o->since = 0;
	}
	else if (++o->failures >= AI_OUTAGE_FAILURES && o->since == 0)
	{
		o->since = opened = now;
		o->next_probe = TimestampTzPlusMilliseconds(now, AI_OUTAGE_PROBE_MS);
		o->probes = 0;
	}
	if (down && error != NULL)
		strlcpy(o->last_error, error, MOVERZ_LAST_ERROR_LEN);
	hold = down && holding(now);
	SpinLockRelease(&moverz_shared->mutex);

	if (opened != 0)
		ereport(LOG,
				(errmsg("moverz_batch: AI service unreachable (%d failures in a row, the last: %s): holding the photos, probing every %d s",
						AI_OUTAGE_FAILURES, error ? error : "?", AI_OUTAGE_PROBE_MS / 1000)));
	if (closed_since != 0)
	{
		ereport(LOG,
				(errmsg("moverz_batch: AI service back after %ld s (%lld probes): claiming again",
						(long) ((now - closed_since) / USECS_PER_SEC), (long long) probes)));
		moverz_set_latches(true, false);
	}
	return hold;
}

/*
 * moverz_outage_holding
 *		Does the circuit hold the work now (no claim, no photo sent)?
 */
bool
moverz_outage_holding(void)
{
	bool		hold;

	SpinLockAcquire(&moverz_shared->mutex);
	hold = holding(GetCurrentTimestamp());
	SpinLockRelease(&moverz_shared->mutex);
	return hold;
}

/*
 * moverz_outage_take_probe
 *		While the circuit holds: may this worker send one photo to probe the
 *		service now?  *wait_ms says when to ask again.
 */
bool
moverz_outage_take_probe(long *wait_ms)
{
	MoverzOutage *o = &moverz_shared->outage;
	TimestampTz now = GetCurrentTimestamp();
	bool		take = false;

	SpinLockAcquire(&moverz_shared->mutex);
	*wait_ms = AI_OUTAGE_PROBE_MS;
	/* a probe whose worker stopped before its answer: another may go */
	if (o->probing &&
		TimestampDifferenceExceeds(o->probe_sent, now, moverz_request_timeout_ms + AI_OUTAGE_PROBE_MS))
		o->probing = false;
	if (!o->probing && now >= o->next_probe)
	{
		o->probing = take = true;
		o->probe_sent = now;
		o->probes++;
		o->next_probe = TimestampTzPlusMilliseconds(now, AI_OUTAGE_PROBE_MS);
	}
	else if (!o->probing)
		*wait_ms = (long) ((o->next_probe - now + 999) / 1000);
	SpinLockRelease(&moverz_shared->mutex);
	return take;
}

/*
 * moverz_outage_probe_unsent
 *		The probe taken could not leave (nothing to claim): another may go.
 */
void
moverz_outage_probe_unsent(void)
{
	SpinLockAcquire(&moverz_shared->mutex);
	moverz_shared->outage.probing = false;
	moverz_shared->outage.next_probe = 0;
	SpinLockRelease(&moverz_shared->mutex);
}

/*
 * moverz_ai_service_status
 *		SQL ai_service_status() -> (unreachable_since, probes,
 *		failures_in_a_row, holding, last_error): the circuit, now.
 */
Datum
moverz_ai_service_status(PG_FUNCTION_ARGS)
{
	MoverzOutage o;
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	bool		hold;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (moverz_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("moverz_batch is not loaded through shared_preload_libraries")));
	SpinLockAcquire(&moverz_shared->mutex);
	o = moverz_shared->outage;
	hold = holding(GetCurrentTimestamp());
	SpinLockRelease(&moverz_shared->mutex);
	values[0] = TimestampTzGetDatum(o.since);
	nulls[0] = o.since == 0;
	values[1] = Int64GetDatum(o.since == 0 ? 0 : o.probes);
	values[2] = Int32GetDatum(o.failures);
	values[3] = BoolGetDatum(hold);
	values[4] = CStringGetTextDatum(o.last_error);
	nulls[4] = o.last_error[0] == '\0';
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
