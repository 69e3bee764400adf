/*-------------------------------------------------------------------------
 *
 * claim.c
 *		The photo worker's transactions: claim PENDING photos, write the AI
 *		results back, hand back photos claimed and never sent, take back
 *		the claims of vanished workers.
 *
 * Each runs in a short transaction of its own (moverz_run_in_transaction)
 * through a saved, parameterised SPI plan calling the SQL side
 * (sql/src/60_worker.sql), never while a request waits on the network in
 * it: the worker runs them between the turns of its wait loop.  Claimed
 * rows are copied out before the transaction ends; the loop keeps them
 * (photo_worker.c) until it sends them.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "catalog/pg_type.h"
#include "common/base64.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

/* The kept plans, one per SQL function the worker calls. */
typedef enum ClaimPlan
{
	PLAN_CLAIM,
	PLAN_COMPLETE,
	PLAN_RELEASE,
	PLAN_UNCLAIM,
	NUM_PLANS
} ClaimPlan;

struct ClaimState
{
	MoverzWorkerSlot *slot;
	int			worker_index;
	int64		claim_token;	/* the worker incarnation's */
	SPIPlanPtr	plans[NUM_PLANS];
};

/* Arguments and results of one transaction. */
typedef struct ClaimCall
{
	ClaimState *state;
	int			limit;			/* claim: how many */
	int64		held_bytes;		/* claim: bytes of uploads the worker holds */
	MemoryContext cxt;			/* claim: where the photos are copied */
	AiPhoto   **photos;			/* claim: the claimed photos */
	int			nphotos;
	Datum		ids;			/* unclaim: uuid[] of the photos */
	const char *results;		/* write-back: the JSON array */
	int			count;			/* rows touched */
	int			rate_limit_ms;	/* write-back: hold the pool back that long */
} ClaimCall;

/*
 * claim_state_create
 *		The claim state of photo worker "worker_index", incarnation
 *		claim_token.
 */
ClaimState *
claim_state_create(MoverzWorkerSlot *slot, int worker_index, int64 claim_token)
{
	ClaimState *state = MemoryContextAllocZero(TopMemoryContext, sizeof(ClaimState));

	state->slot = slot;
	state->worker_index = worker_index;
	state->claim_token = claim_token;
	return state;
}

/*
 * run_plan
 *		Execute the kept plan "which" (prepared from sql on first use) with
 *		these arguments; every plan is a SELECT.  With one_row, exactly one
 *		row must come back.  what names the call in errors.
 */
static void
run_plan(ClaimState *state, ClaimPlan which, const char *sql, int nargs, Oid *types,
		 Datum *values, bool one_row, const char *what)
{
	int			rc;

	moverz_saved_plan(&state->plans[which], sql, nargs, types);
	rc = SPI_execute_plan(state->plans[which], values, NULL, false, one_row ? 1 : 0);
	if (rc != SPI_OK_SELECT || (one_row && SPI_processed != 1))
		elog(ERROR, "moverz_batch: %s failed: %s", what, SPI_result_code_string(rc));
}

/*
 * result_int
 *		Column col (from 1) of the first row of the last plan run, as an
 *		int (0 when NULL).
 */
static int
result_int(int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

/*
 * ai_photo_fields
 *		Where each text field of photo is, in claim_photos()'s column order:
 *		id, batch_id, project_id, user_id, url, filename, room_type.
 *		Also what object_fetch.c copies of a downloaded photo.
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
 * image_of
 *		The bytes of an uploaded photo (SPI column "col", a bytea),
 *		detoasted, or NULL when they are gone; *copied when detoasting made
 *		a copy (the caller frees it at once: the claim of 64 photos of 5 MB
 *		held every copy until its transaction ended).
 */
static bytea *
image_of(HeapTuple row, TupleDesc desc, int col, bool *copied)
{
	bool		isnull;
	Datum		d = SPI_getbinval(row, desc, col, &isnull);
	bytea	   *b = isnull ? NULL : DatumGetByteaPP(d);

	*copied = b != NULL && (Pointer) b != DatumGetPointer(d);
	return b;
}

/*
 * copy_photo
 *		The claimed photo of SPI row "row" (id, batch_id, project_id,
 *		user_id, url, filename, room_type, attempt, upload_id, media_type,
 *		image, object_key, upload_size), in one chunk of cxt (freed with one
 *		pfree).  An uploaded
 *		photo's bytes are kept in base64, as both model APIs take them.
 */
static AiPhoto *
copy_photo(MemoryContext cxt, HeapTuple row, TupleDesc desc)
{
	const char *values[AI_PHOTO_NFIELDS];
	Size		lens[AI_PHOTO_NFIELDS];
	Size		total = sizeof(AiPhoto);
	const char **fields[AI_PHOTO_NFIELDS];
	char	   *attempt = SPI_getvalue(row, desc, AI_PHOTO_NFIELDS + 1);
	bool		uploaded = SPI_getvalue(row, desc, AI_PHOTO_NFIELDS + 2) != NULL;
	char	   *media_type = uploaded ? SPI_getvalue(row, desc, AI_PHOTO_NFIELDS + 3) : NULL;
	bool		copied = false;
	bytea	   *image = uploaded ? image_of(row, desc, AI_PHOTO_NFIELDS + 4, &copied) : NULL;
	char	   *object_key = uploaded ? SPI_getvalue(row, desc, AI_PHOTO_NFIELDS + 5) : NULL;
	Size		key_len = object_key ? strlen(object_key) + 1 : 0;
	int			image_len = image ? VARSIZE_ANY_EXHDR(image) : 0;
	Size		b64_len = image ? pg_b64_enc_len(image_len) + 1 : 0;
	Size		type_len = media_type ? strlen(media_type) + 1 : 0;
	AiPhoto    *photo;
	char	   *dst;

	for (int i = 0; i < AI_PHOTO_NFIELDS; i++)
	{
		values[i] = SPI_getvalue(row, desc, i + 1);
		lens[i] = values[i] ? strlen(values[i]) + 1 : 0;
		total += lens[i];
	}
	photo = MemoryContextAllocHuge(cxt, total + type_len + key_len + b64_len);
	ai_photo_fields(photo, fields);
	dst = (char *) (photo + 1);
	for (int i = 0; i < AI_PHOTO_NFIELDS; i++)
	{
		*fields[i] = values[i] ? memcpy(dst, values[i], lens[i]) : NULL;
		dst += lens[i];
	}
	photo->attempt = attempt ? pg_strtoint32(attempt) : 1;
	photo->uploaded = uploaded;
	photo->media_type = media_type ? memcpy(dst, media_type, type_len) : NULL;
	dst += type_len;
	photo->object_key = object_key ? memcpy(dst, object_key, key_len) : NULL;
	dst += key_len;
	photo->image_b64 = NULL;
	/* in the s3 store: the size announced, which its download may not pass */
	photo->image_bytes = object_key ? pg_strtoint32(SPI_getvalue(row, desc, AI_PHOTO_NFIELDS + 6)) : image_len;
	if (image)
	{
		int			enc = pg_b64_encode(VARDATA_ANY(image), image_len, dst, b64_len - 1);

		if (enc < 0)
			elog(ERROR, "moverz_batch: could not encode an uploaded photo in base64");
		dst[enc] = '\0';
		photo->image_b64 = dst;
		if (copied)
			pfree(image);
	}
	return photo;
}

/*
 * claim_txn
 *		Transaction body of claim_fetch().
 */
static void
claim_txn(void *arg)
{
	ClaimCall  *call = (ClaimCall *) arg;
	ClaimState *state = call->state;
	Oid			types[7] = {INT4OID, INT8OID, INT4OID, INT4OID, INT4OID, INT8OID, BOOLOID};
	Datum		values[7];

	values[0] = Int32GetDatum(state->worker_index);
	values[1] = Int64GetDatum(state->claim_token);
	values[2] = Int32GetDatum(call->limit);
	values[3] = Int32GetDatum(moverz_lease_timeout_ms);
	values[4] = Int32GetDatum(moverz_max_inflight_per_user);
	/* the bytes of uploaded photos this worker may still take */
	values[5] = Int64GetDatum(Max((int64) moverz_max_inflight_bytes - call->held_bytes, 0));
	values[6] = BoolGetDatum(call->held_bytes == 0);
	run_plan(state, PLAN_CLAIM,
			 "SELECT id, batch_id, project_id, user_id, url, filename, room_type, attempt,"
			 "       upload_id, media_type, image, object_key, upload_size"
			 "  FROM moverz_batch_internal.claim_photos($1, $2, $3, $4, $5, $6, $7)", 7, types, values,
			 false, "claim");

	/* copied row by row: a failure halfway frees what was copied */
	call->photos = MemoryContextAlloc(call->cxt, Max(1, SPI_processed) * sizeof(AiPhoto *));
	for (uint64 i = 0; i < SPI_processed; i++)
		call->photos[call->nphotos++] = copy_photo(call->cxt, SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc);
}

/*
 * claim_fetch
 *		Claim up to "limit" photos in a transaction of its own.  Returns how
 *		many were claimed, the photos in *photos (an array of cxt, each photo
 *		a chunk of cxt), or -1 when the extension is not installed or the
 *		claim failed (the error is the worker's last error).  held_bytes:
 *		the bytes of uploaded photos the worker holds (ready and in flight):
 *		it takes no more than moverz_batch.max_inflight_bytes in all (but
 *		one photo, alone, whatever its size).
 */
int
claim_fetch(ClaimState *state, int limit, int64 held_bytes, MemoryContext cxt, AiPhoto ***photos)
{
	ClaimCall	call;
	MoverzTxnError err;

	memset(&call, 0, sizeof(call));
	call.state = state;
	call.limit = limit;
	call.held_bytes = held_bytes;
	call.cxt = cxt;
	*photos = NULL;
	if (!moverz_run_in_transaction(claim_txn, &call, "claiming photos", &err))
	{
		for (int i = 0; i < call.nphotos; i++)
			pfree(call.photos[i]);
		if (call.photos)
			pfree(call.photos);
		if (err.message)
			moverz_slot_report(state->slot, -1, 0, 0, err.message);
		return -1;
	}
	*photos = call.photos;
	return call.nphotos;
}

/*
 * unclaim_txn
 *		Transaction body of claim_unclaim().
 */
static void
unclaim_txn(void *arg)
{
	ClaimCall  *call = (ClaimCall *) arg;
	Oid			types[2] = {INT8OID, UUIDARRAYOID};
	Datum		values[2];

	values[0] = Int64GetDatum(call->state->claim_token);
	values[1] = call->ids;
	run_plan(call->state, PLAN_UNCLAIM, "SELECT moverz_batch_internal.unclaim_photos($1, $2)",
			 2, types, values, true, "unclaim");
	call->count = result_int(1);
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
 * write_back_txn
 *		Transaction body of one write-back.
 */
static void
write_back_txn(void *arg)
{
	ClaimCall  *call = (ClaimCall *) arg;
	Oid			types[5] = {INT8OID, TEXTOID, INT4OID, INT4OID, TEXTOID};
	Datum		values[5];

	values[0] = Int64GetDatum(call->state->claim_token);
	values[1] = CStringGetTextDatum(call->results);
	values[2] = Int32GetDatum(moverz_max_attempts);
	values[3] = Int32GetDatum(moverz_retry_backoff_ms);
	values[4] = CStringGetTextDatum(ai_provider_name(moverz_ai_provider));
	run_plan(call->state, PLAN_COMPLETE,
			 "SELECT done, rate_limit_ms"
			 "  FROM moverz_batch_internal.complete_photos($1, $2::jsonb, $3, $4, $5)", 5, types, values,
			 true, "write-back");
	call->count = result_int(1);
	call->rate_limit_ms = result_int(2);
}

/*
 * write_json_array
 *		Write back one JSON array of results; true when it committed.
 */
static bool
write_json_array(ClaimState *state, const char *json, int *done, MoverzTxnError *err)
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
 *		Write back a single result.  Returns false when a transient error
 *		(a deadlock, a lock time-out...) says: again later.  One that can
 *		never be stored (say, an answer with a number jsonb cannot hold) is
 *		written as a final AI_ERROR instead: a poisoned answer never blocks
 *		its photo.
 */
static bool
write_one(ClaimState *state, AiResult *result, int *done)
{
	StringInfoData buf;
	MoverzTxnError err;

	initStringInfo(&buf);
	appendStringInfo(&buf, "[%s]", result->json);
	if (write_json_array(state, buf.data, done, &err) || err.message == NULL)
		return true;
	if (moverz_error_is_transient(err.sqlerrcode))
		return false;
	resetStringInfo(&buf);
	appendStringInfo(&buf, "[%.*s,\"transport_code\":\"AI_ERROR\",\"transport_message\":",
					 result->head_len, result->json);
	escape_json(&buf, psprintf("AI response could not be stored: %s", err.message));
	appendStringInfoString(&buf, "}]");
	if (write_json_array(state, buf.data, done, &err) || err.message == NULL)
		return true;
	if (moverz_error_is_transient(err.sqlerrcode))
		return false;
	elog(LOG, "moverz_batch: dropping an AI result that cannot be written back: %s", err.message);
	return true;
}

/*
 * claim_write_back
 *		Write back n results in one transaction; if that fails for good,
 *		one by one.  A transient error (deadlock, serialization failure,
 *		lock or statement time-out) loses nothing: the results it hit are
 *		moved to the front of the array, not freed, and their number
 *		returned, for the caller to write again later; the others are
 *		freed.  The worker's counters count the calls that finished a
 *		photo DONE, and the others.
 */
int
claim_write_back(ClaimState *state, AiResult *results, int n)
{
	StringInfoData buf;
	MoverzTxnError err;
	int			done = 0;
	int			kept = 0;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfoString(&buf, results[i].json);
	}
	appendStringInfoChar(&buf, ']');

	if (!write_json_array(state, buf.data, &done, &err) && err.message != NULL)
	{
		if (moverz_error_is_transient(err.sqlerrcode))
			kept = n;
		else
		{
			for (int i = 0; i < n; i++)
			{
				if (write_one(state, &results[i], &done))
					pfree(results[i].json);
				else
					results[kept++] = results[i];
			}
		}
	}
	else
	{
		for (int i = 0; i < n; i++)
			pfree(results[i].json);
	}
	moverz_slot_report(state->slot, -1, done, n - kept - done, NULL);
	pfree(buf.data);
	return kept;
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

	values[0] = Int32GetDatum(state->worker_index);
	values[1] = Int64GetDatum(state->claim_token);
	values[2] = Int32GetDatum(moverz_workers);
	values[3] = Int32GetDatum(moverz_max_attempts);
	run_plan(state, PLAN_RELEASE, "SELECT moverz_batch_internal.release_claims($1, $2, $3, $4)",
			 4, types, values, true, "release of stale claims");
	call->count = result_int(1);
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
