/*-------------------------------------------------------------------------
 *
 * claim.c
 *		The photo worker's transactions: claim PENDING photos, write the AI
 *		results back, take back the claims of vanished workers.
 *
 * Each runs in a short transaction of its own (moverz_run_in_transaction)
 * through a saved, parameterised SPI plan calling the SQL side
 * (sql/src/60_worker.sql).  Claimed rows are copied out into the worker's
 * queue of ready photos once the transaction has committed; the wait loop
 * sends them as request slots free up.  Photos claimed ahead of free
 * slots wait there, and are handed back unsent (unclaim_photos) on recall.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

struct ClaimState
{
	MoverzWorkerSlot *slot;
	int			worker_index;
	int64		claim_token;	/* the worker incarnation's */
	AiClient   *client;
	MemoryContext ready_cxt;	/* the ready photos and their queue */
	AiPhoto   **ready;			/* claimed, not yet sent; oldest first */
	int			nready;
	int			maxready;
	SPIPlanPtr	claim_plan;
	SPIPlanPtr	complete_plan;
	SPIPlanPtr	release_plan;
	SPIPlanPtr	unclaim_plan;
};

/* Arguments and results of one transaction. */
typedef struct ClaimCall
{
	ClaimState *state;
	int			limit;			/* claim: how many */
	AiPhoto   **photos;			/* claim: the claimed photos (ready_cxt) */
	int			nphotos;
	Datum		ids;			/* unclaim: uuid[] of the photos */
	const char *results;		/* write-back: the JSON array */
	int			count;			/* rows touched */
	int			rate_limit_ms;	/* write-back: hold the pool back that long */
} ClaimCall;

/*
 * claim_state_create
 *		The claim state of photo worker "worker_index", incarnation
 *		claim_token; client is NULL in its writer.
 */
ClaimState *
claim_state_create(MoverzWorkerSlot *slot, int worker_index, int64 claim_token,
				   AiClient *client)
{
	ClaimState *state = MemoryContextAllocZero(TopMemoryContext, sizeof(ClaimState));

	state->slot = slot;
	state->worker_index = worker_index;
	state->claim_token = claim_token;
	state->client = client;
	state->ready_cxt = AllocSetContextCreate(TopMemoryContext, "moverz_batch ready photos",
											 ALLOCSET_DEFAULT_SIZES);
	return state;
}

/*
 * ai_photo_fields
 *		Where each text field of photo is, in claim_photos()'s column order:
 *		id, batch_id, project_id, user_id, url, filename, room_type.
 */
void
ai_photo_fields(AiPhoto *photo, const char **fields[AI_PHOTO_NFIELDS])
{
	fields[0] = &photo->id;
	fields[1] = &photo->batch_id;
	fields[2] = &photo->project_id;
	fields[3] = &photo->user_id;
	fields[4] = &photo->url;
	fields[5] = &photo->filename;
	fields[6] = &photo->room_type;
}

/*
 * build_photo
 *		A photo from its text fields (in ai_photo_fields() order; only
 *		room_type may be NULL) and its attempt, in one chunk of cxt.
 */
static AiPhoto *
build_photo(MemoryContext cxt, const char *const values[AI_PHOTO_NFIELDS], int attempt)
{
	Size		lens[AI_PHOTO_NFIELDS];
	Size		total = sizeof(AiPhoto);
	AiPhoto    *photo;
	const char **fields[AI_PHOTO_NFIELDS];
	char	   *dst;

	for (int i = 0; i < AI_PHOTO_NFIELDS; i++)
	{
		lens[i] = values[i] ? strlen(values[i]) + 1 : 0;
		total += lens[i];
	}
	photo = MemoryContextAlloc(cxt, total);
	ai_photo_fields(photo, fields);
	dst = (char *) (photo + 1);
	for (int i = 0; i < AI_PHOTO_NFIELDS; i++)
	{
		*fields[i] = values[i] ? memcpy(dst, values[i], lens[i]) : NULL;
		dst += lens[i];
	}
	photo->attempt = attempt;
	return photo;
}

/*
 * copy_photo
 *		The claimed photo of SPI row "row" (id, batch_id, project_id,
 *		user_id, url, filename, room_type, attempt), in one chunk of cxt.
 */
static AiPhoto *
copy_photo(MemoryContext cxt, HeapTuple row, TupleDesc desc)
{
	const char *values[AI_PHOTO_NFIELDS];
	char	   *attempt = SPI_getvalue(row, desc, AI_PHOTO_NFIELDS + 1);

	for (int i = 0; i < AI_PHOTO_NFIELDS; i++)
		values[i] = SPI_getvalue(row, desc, i + 1);
	return build_photo(cxt, values, attempt ? pg_strtoint32(attempt) : 1);
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
	values[1] = Int64GetDatum(state->claim_token);
	values[2] = Int32GetDatum(call->limit);
	values[3] = Int32GetDatum(moverz_lease_timeout_ms);
	values[4] = Int32GetDatum(moverz_max_inflight_per_user);
	rc = SPI_execute_plan(state->claim_plan, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "moverz_batch: claim failed: %s", SPI_result_code_string(rc));

	/* copied row by row: a failure halfway frees what was copied */
	call->photos = MemoryContextAlloc(state->ready_cxt, Max(1, SPI_processed) * sizeof(AiPhoto *));
	for (uint64 i = 0; i < SPI_processed; i++)
		call->photos[call->nphotos++] = copy_photo(state->ready_cxt, SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc);
}

/*
 * claim_fetch
 *		Claim up to "limit" photos in a transaction of its own.  Returns how
 *		many were claimed, with the photos in *photos (each a chunk of the
 *		state's context, freed by the caller with pfree), or -1 when the
 *		extension is not installed or the claim failed.
 */
int
claim_fetch(ClaimState *state, int limit, AiPhoto ***photos)
{
	ClaimCall	call;
	char	   *err;

	memset(&call, 0, sizeof(call));
	call.state = state;
	call.limit = limit;
	*photos = NULL;
	if (!moverz_run_in_transaction(claim_txn, &call, "claiming photos", &err))
	{
		for (int i = 0; i < call.nphotos; i++)
			pfree(call.photos[i]);
		if (call.photos)
			pfree(call.photos);
		if (err)
			moverz_slot_report(state->slot, state->claim_token,
							   state->client ? ai_client_inflight(state->client) : -1,
							   0, 0, err);
		return -1;
	}
	*photos = call.photos;
	return call.nphotos;
}

/*
 * make_room
 *		Room in the ready queue for n more photos.
 */
static void
make_room(ClaimState *state, int n)
{
	if (state->nready + n <= state->maxready)
		return;
	state->maxready = Max(64, 2 * (state->nready + n));
	state->ready = state->ready == NULL ?
		MemoryContextAlloc(state->ready_cxt, state->maxready * sizeof(AiPhoto *)) :
		repalloc(state->ready, state->maxready * sizeof(AiPhoto *));
}

/*
 * claim_photos
 *		Claim up to "limit" photos and queue them as ready to send.
 *		Returns how many were claimed, or -1 (see claim_fetch).
 */
int
claim_photos(ClaimState *state, int limit)
{
	AiPhoto   **photos;
	int			n = claim_fetch(state, limit, &photos);

	if (n > 0)
	{
		make_room(state, n);
		memcpy(state->ready + state->nready, photos, n * sizeof(AiPhoto *));
		state->nready += n;
	}
	if (photos)
		pfree(photos);
	return n;
}

/*
 * claim_push_ready
 *		Queue one photo claimed elsewhere (by the worker's writer) as ready
 *		to send; values as for build_photo().
 */
void
claim_push_ready(ClaimState *state, const char *const values[AI_PHOTO_NFIELDS], int attempt)
{
	make_room(state, 1);
	state->ready[state->nready++] = build_photo(state->ready_cxt, values, attempt);
}

/*
 * claim_ready_count
 *		Photos claimed and not yet sent.
 */
int
claim_ready_count(ClaimState *state)
{
	return state->nready;
}

/*
 * claim_send_ready
 *		Start the requests of up to "max" ready photos, oldest first.
 *		Returns how many were started.
 */
int
claim_send_ready(ClaimState *state, int max)
{
	int			n = Min(max, state->nready);

	if (n <= 0)
		return 0;
	for (int i = 0; i < n; i++)
	{
		ai_client_start(state->client, state->ready[i]);
		pfree(state->ready[i]);
	}
	state->nready -= n;
	memmove(state->ready, state->ready + n, state->nready * sizeof(AiPhoto *));
	return n;
}

/*
 * unclaim_txn
 *		Transaction body of claim_recall_ready().
 */
static void
unclaim_txn(void *arg)
{
	ClaimCall  *call = (ClaimCall *) arg;
	ClaimState *state = call->state;
	Oid			types[2] = {INT8OID, UUIDARRAYOID};
	Datum		values[2];
	bool		isnull;
	int			rc;

	moverz_saved_plan(&state->unclaim_plan,
				 "SELECT moverz_batch.unclaim_photos($1, $2)", 2, types);
	values[0] = Int64GetDatum(state->claim_token);
	values[1] = call->ids;
	rc = SPI_execute_plan(state->unclaim_plan, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "moverz_batch: unclaim failed: %s", SPI_result_code_string(rc));
	call->count = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * claim_unclaim
 *		Hand back n claimed photos unsent: they go back to PENDING, their
 *		attempt not counted.  Frees the photos, whatever happens (a photo
 *		not handed back is taken back when its lease expires).  Returns how
 *		many went back, or -1 on failure.
 */
int
claim_unclaim(ClaimState *state, AiPhoto **photos, int n)
{
	ClaimCall	call;
	Datum	   *ids;

	if (n <= 0)
		return 0;
	ids = palloc(n * sizeof(Datum));
	for (int i = 0; i < n; i++)
	{
		ids[i] = DirectFunctionCall1(uuid_in, CStringGetDatum(photos[i]->id));
		pfree(photos[i]);
	}
	memset(&call, 0, sizeof(call));
	call.state = state;
	call.ids = PointerGetDatum(construct_array(ids, n, UUIDOID,
											   UUID_LEN, false, TYPALIGN_CHAR));
	if (!moverz_run_in_transaction(unclaim_txn, &call, "handing back photos claimed ahead", NULL))
		return -1;
	return call.count;
}

/*
 * claim_recall_ready
 *		Hand back every ready photo unsent (claim_unclaim), and the request
 *		tokens their claim took.  The queue is empty afterwards.
 */
int
claim_recall_ready(ClaimState *state)
{
	int			n = state->nready;

	state->nready = 0;
	moverz_rate_give_back(n);
	return claim_unclaim(state, state->ready, n);
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
	values[0] = Int64GetDatum(state->claim_token);
	values[1] = CStringGetTextDatum(call->results);
	values[2] = Int32GetDatum(moverz_max_attempts);
	values[3] = Int32GetDatum(moverz_retry_backoff_ms);
	values[4] = CStringGetTextDatum(ai_provider_name(moverz_ai_provider));
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
	moverz_slot_report(state->slot, state->claim_token,
					   state->client ? ai_client_inflight(state->client) : -1,
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
	values[1] = Int64GetDatum(state->claim_token);
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
