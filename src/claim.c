/*-------------------------------------------------------------------------
 *
 * claim.c
 *		The photo worker's transactions: claim PENDING photos, write the AI
 *		results back, take back the claims of vanished workers.
 *
 * Each runs in a short transaction of its own (moverz_run_in_transaction)
 * through a saved, parameterised SPI plan calling the SQL side
 * (sql/src/60_worker.sql).  Claimed rows are copied out and the
 * transaction commits before any request is sent.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

struct ClaimState
{
	MoverzWorkerSlot *slot;
	int			worker_index;
	AiClient   *client;
	SPIPlanPtr	claim_plan;
	SPIPlanPtr	complete_plan;
	SPIPlanPtr	release_plan;
};

/* Arguments and results of one transaction. */
typedef struct ClaimCall
{
	ClaimState *state;
	int			limit;			/* claim: how many */
	MemoryContext cxt;			/* claim: where the copies go */
	AiPhoto    *photos;			/* claim: the claimed photos */
	int			nphotos;
	const char *results;		/* write-back: the JSON array */
	int			count;			/* rows touched */
	int			rate_limit_ms;	/* write-back: hold the pool back that long */
} ClaimCall;

/*
 * claim_state_create
 *		The claim state of worker "worker_index".
 */
ClaimState *
claim_state_create(MoverzWorkerSlot *slot, int worker_index, AiClient *client)
{
	ClaimState *state = MemoryContextAllocZero(TopMemoryContext, sizeof(ClaimState));

	state->slot = slot;
	state->worker_index = worker_index;
	state->client = client;
	return state;
}

/*
 * copy_value
 *		Column "col" of SPI row "row" as a string in cxt (NULL for NULL).
 */
static char *
copy_value(MemoryContext cxt, HeapTuple row, int col)
{
	char	   *v = SPI_getvalue(row, SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(cxt, v) : NULL;
}

/*
 * claim_txn
 *		Transaction body of claim_photos().
 */
static void
claim_txn(void *arg)
{
	ClaimCall  *call = (ClaimCall *) arg;
	ClaimState *state = call->state;
	Oid			types[5] = {INT4OID, INT8OID, INT4OID, INT4OID, INT4OID};
	Datum		values[5];
	int			rc;

	moverz_saved_plan(&state->claim_plan,
				 "SELECT id, batch_id, project_id, user_id, url, filename, room_type, attempt"
				 "  FROM moverz_batch.claim_photos($1, $2, $3, $4, $5)", 5, types);
	values[0] = Int32GetDatum(state->worker_index);
	values[1] = Int64GetDatum(state->slot->claim_token);
	values[2] = Int32GetDatum(call->limit);
	values[3] = Int32GetDatum(moverz_lease_timeout_ms);
	values[4] = Int32GetDatum(moverz_max_inflight_per_user);
	rc = SPI_execute_plan(state->claim_plan, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "moverz_batch: claim failed: %s", SPI_result_code_string(rc));

	call->photos = MemoryContextAllocZero(call->cxt, Max(1, SPI_processed) * sizeof(AiPhoto));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		AiPhoto    *p = &call->photos[i];
		char	   *attempt = SPI_getvalue(row, SPI_tuptable->tupdesc, 8);

		p->id = copy_value(call->cxt, row, 1);
		p->batch_id = copy_value(call->cxt, row, 2);
		p->project_id = copy_value(call->cxt, row, 3);
		p->user_id = copy_value(call->cxt, row, 4);
		p->url = copy_value(call->cxt, row, 5);
		p->filename = copy_value(call->cxt, row, 6);
		p->room_type = copy_value(call->cxt, row, 7);
		p->attempt = attempt ? pg_strtoint32(attempt) : 1;
	}
	call->nphotos = (int) SPI_processed;
}

/*
 * claim_photos
 *		Claim up to "limit" photos and start their requests, once the claim
 *		has committed.  Returns how many were claimed, or -1 when the
 *		extension is not installed or the claim failed.
 */
int
claim_photos(ClaimState *state, int limit)
{
	ClaimCall	call;
	char	   *err;

	memset(&call, 0, sizeof(call));
	call.state = state;
	call.limit = limit;
	call.cxt = CurrentMemoryContext;
	if (!moverz_run_in_transaction(claim_txn, &call, "claiming photos", &err))
	{
		if (err)
			moverz_slot_report(state->slot, ai_client_inflight(state->client), 0, 0, err);
		return -1;
	}
	for (int i = 0; i < call.nphotos; i++)
		ai_client_start(state->client, &call.photos[i]);
	return call.nphotos;
}

/*
 * write_back_txn
 *		Transaction body of one write-back.
 */
static void
write_back_txn(void *arg)
{
	ClaimCall  *call = (ClaimCall *) arg;
	ClaimState *state = call->state;
	Oid			types[5] = {INT8OID, TEXTOID, INT4OID, INT4OID, TEXTOID};
	Datum		values[5];
	bool		isnull;
	int			rc;

	moverz_saved_plan(&state->complete_plan,
				 "SELECT done, rate_limit_ms"
				 "  FROM moverz_batch.complete_photos($1, $2::jsonb, $3, $4, $5)", 5, types);
	values[0] = Int64GetDatum(state->slot->claim_token);
	values[1] = CStringGetTextDatum(call->results);
	values[2] = Int32GetDatum(moverz_max_attempts);
	values[3] = Int32GetDatum(moverz_retry_backoff_ms);
	values[4] = CStringGetTextDatum(moverz_ai_provider);
	rc = SPI_execute_plan(state->complete_plan, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "moverz_batch: write-back failed: %s", SPI_result_code_string(rc));
	call->count = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
	call->rate_limit_ms = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 2, &isnull));
}

/*
 * write_json_array
 *		Write back one JSON array of results; true when it committed.
 */
static bool
write_json_array(ClaimState *state, const char *json, int *done, char **err)
{
	ClaimCall	call;
	bool		ok;

	memset(&call, 0, sizeof(call));
	call.state = state;
	call.results = json;
	ok = moverz_run_in_transaction(write_back_txn, &call, "writing back AI results", err);
	if (ok)
		*done += call.count;
	if (ok && call.rate_limit_ms > 0)
		moverz_rate_hold(call.rate_limit_ms);
	return ok;
}

/*
 * write_one
 *		Write back a single result.  One that cannot be stored (say, an
 *		answer with a number jsonb cannot hold) is written as a final
 *		AI_ERROR instead: a poisoned answer never blocks its photo.
 */
static void
write_one(ClaimState *state, AiResult *result, int *done)
{
	StringInfoData buf;
	char	   *err;

	initStringInfo(&buf);
	appendStringInfo(&buf, "[%s]", result->json);
	if (write_json_array(state, buf.data, done, &err) || err == NULL)
		return;
	resetStringInfo(&buf);
	appendStringInfo(&buf, "[%.*s,\"transport_code\":\"AI_ERROR\",\"transport_message\":",
					 result->head_len, result->json);
	escape_json(&buf, psprintf("AI response could not be stored: %s", err));
	appendStringInfoString(&buf, "}]");
	if (!write_json_array(state, buf.data, done, &err) && err != NULL)
		elog(LOG, "moverz_batch: dropping an AI result that cannot be written back: %s", err);
}

/*
 * claim_write_back
 *		Write back n results in one transaction; if that fails, one by one.
 *		Frees the result strings.  The worker's counters count the calls
 *		that finished a photo DONE, and the others.
 */
void
claim_write_back(ClaimState *state, AiResult *results, int n)
{
	StringInfoData buf;
	char	   *err;
	int			done = 0;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfoString(&buf, results[i].json);
	}
	appendStringInfoChar(&buf, ']');

	if (!write_json_array(state, buf.data, &done, &err) && err != NULL)
	{
		for (int i = 0; i < n; i++)
			write_one(state, &results[i], &done);
	}
	moverz_slot_report(state->slot, ai_client_inflight(state->client),
					   done, n - done, NULL);
	for (int i = 0; i < n; i++)
		pfree(results[i].json);
	pfree(buf.data);
}

/*
 * release_txn
 *		Transaction body of claim_release_stale().
 */
static void
release_txn(void *arg)
{
	ClaimCall  *call = (ClaimCall *) arg;
	ClaimState *state = call->state;
	Oid			types[4] = {INT4OID, INT8OID, INT4OID, INT4OID};
	Datum		values[4];
	bool		isnull;
	int			rc;

	moverz_saved_plan(&state->release_plan,
				 "SELECT moverz_batch.release_claims($1, $2, $3, $4)", 4, types);
	values[0] = Int32GetDatum(state->worker_index);
	values[1] = Int64GetDatum(state->slot->claim_token);
	values[2] = Int32GetDatum(moverz_workers);
	values[3] = Int32GetDatum(moverz_max_attempts);
	rc = SPI_execute_plan(state->release_plan, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "moverz_batch: release of stale claims failed: %s",
			 SPI_result_code_string(rc));
	call->count = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * claim_release_stale
 *		Take back the photos of this worker's earlier incarnations, of
 *		vanished worker slots and of expired leases.  Returns how many, or
 *		-1 when the extension is not installed or it failed.
 */
int
claim_release_stale(ClaimState *state)
{
	ClaimCall	call;

	memset(&call, 0, sizeof(call));
	call.state = state;
	if (!moverz_run_in_transaction(release_txn, &call, "releasing stale claims", NULL))
		return -1;
	if (call.count > 0)
		elog(LOG, "moverz_batch: took back %d photo(s) claimed by a stopped worker or with an expired lease",
			 call.count);
	return call.count;
}
