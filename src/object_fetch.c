/*-------------------------------------------------------------------------
 *
 * object_fetch.c
 *		A photo worker's side of the s3 store (moverz_batch.object_store =
 *		s3): download the file of an uploaded photo with a presigned GET
 *		before the photo is sent, give the photo the SHA-256 of its bytes
 *		before any AI call (settle_downloads: duplicates by content), and
 *		delete the objects of the uploads deleted (presigned DELETEs).
 *
 * The transfers run in the AI client's curl multi loop
 * (ai_client_add_transfer): a worker waits on nothing else, and no
 * transaction is open while they are in flight.  A download counts as a
 * request in flight; its bytes count in what the worker holds
 * (moverz_batch.max_inflight_bytes).
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include <curl/curl.h>

#include "catalog/pg_type.h"
#include "common/base64.h"
#include "executor/spi.h"
#include "image_type.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "s3_sign.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* How long a presigned GET or DELETE of a worker stays valid. */
#define OBJECT_URL_TTL_S		300

/* Deletions started at most per round, and how often a round runs. */
#define DELETIONS_PER_ROUND		16
#define DELETIONS_EVERY_MS		5000

/* One download of a photo's file. */
typedef struct Download
{
	struct ObjectFetcher *fetcher;
	AiPhoto    *photo;			/* the claimed photo (this download's) */
	void	   *easy;			/* its transfer */
	StringInfoData body;		/* the bytes received */
	bool		too_large;
	long		status;			/* HTTP status, 0 when the transfer failed */
	char		sum[65];		/* SHA-256 of the body, hex, once checked */
	char		error[CURL_ERROR_SIZE];
} Download;

/* One deletion of an object. */
typedef struct Deletion
{
	struct ObjectFetcher *fetcher;
	char	   *key;
	char		error[CURL_ERROR_SIZE];
} Deletion;

struct ObjectFetcher
{
	AiClient   *client;
	MemoryContext cxt;			/* downloads, deletions and their lists */
	List	   *active;			/* Download *, in flight */
	List	   *finished;		/* Download *, ended, not settled yet */
	int64		bytes;			/* reserved by the downloads: their sizes */
	int			deleting;		/* deletions in flight */
	List	   *deleted;		/* keys deleted (or absent) */
	List	   *failed;			/* Deletion * that failed */
	TimestampTz next_round;		/* of deletions */
	int			round_size;		/* deletions the free slots allow */
	SPIPlanPtr	settle_plan;
	SPIPlanPtr	claim_plan;
	SPIPlanPtr	finish_plan;
};

/*
 * object_fetcher_create
 *		The s3 side of a photo worker whose AI client is client.
 */
ObjectFetcher *
object_fetcher_create(AiClient *client)
{
	ObjectFetcher *f = MemoryContextAllocZero(TopMemoryContext, sizeof(ObjectFetcher));

	f->client = client;
	f->cxt = AllocSetContextCreate(TopMemoryContext, "moverz_batch object store",
								   ALLOCSET_DEFAULT_SIZES);
	return f;
}

/*
 * object_fetch_bytes
 *		The bytes the downloads hold.
 */
int64
object_fetch_bytes(ObjectFetcher *f)
{
	return f->bytes;
}

/*
 * download_write
 *		curl's write callback: append, up to the size announced (reserved
 *		in what the worker holds).
 */
static size_t
download_write(char *data, size_t size, size_t nmemb, void *arg)
{
	Download   *d = (Download *) arg;
	size_t		n = size * nmemb;
	long		status = 0;

	/* an error's body (the store's XML) is not the file: not kept */
	if (curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200)
		return n;
	if ((int64) d->body.len + (int64) n > d->photo->image_bytes)
	{
		d->too_large = true;
		return 0;				/* curl ends the transfer: CURLE_WRITE_ERROR */
	}
	appendBinaryStringInfo(&d->body, data, (int) n);
	return n;
}

/*
 * discard_write
 *		curl's write callback of a deletion: its answer's body is not kept.
 */
static size_t
discard_write(char *data, size_t size, size_t nmemb, void *arg)
{
	return size * nmemb;
}

/*
 * download_done
 *		A download ended: kept for object_fetch_settle().
 */
static void
download_done(void *arg, void *easy, int rc)
{
	Download   *d = (Download *) arg;
	MemoryContext oldcxt = MemoryContextSwitchTo(d->fetcher->cxt);

	if (rc != CURLE_OK || curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &d->status) != CURLE_OK)
	{
		d->status = 0;
		if (d->error[0] == '\0')
			strlcpy(d->error, curl_easy_strerror((CURLcode) rc), sizeof(d->error));
	}
	curl_easy_cleanup(easy);
	d->fetcher->active = list_delete_ptr(d->fetcher->active, d);
	d->fetcher->finished = lappend(d->fetcher->finished, d);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * start_transfer
 *		A GET (body into d) or a DELETE of url in the AI client's loop, with
 *		the AI requests' time-outs.  NULL when it started, else why not.
 */
static const char *
start_transfer(ObjectFetcher *f, const char *url, bool get, void *arg, char *errbuf,
			   AiTransferDone done)
{
	CURL	   *easy = curl_easy_init();
	CURLcode	rc = easy ? CURLE_OK : CURLE_FAILED_INIT;

#define OBJ_SETOPT(opt, val) \
	do { if (rc == CURLE_OK) rc = curl_easy_setopt(easy, (opt), (val)); } while (0)
	OBJ_SETOPT(CURLOPT_URL, url);
	OBJ_SETOPT(CURLOPT_ERRORBUFFER, errbuf);
	OBJ_SETOPT(CURLOPT_NOSIGNAL, 1L);
	OBJ_SETOPT(CURLOPT_TIMEOUT_MS, (long) moverz_request_timeout_ms);
	OBJ_SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long) moverz_connect_timeout_ms);
	OBJ_SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	OBJ_SETOPT(CURLOPT_USERAGENT, "moverz_batch/" MOVERZ_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
	OBJ_SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	OBJ_SETOPT(CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	if (get)
	{
		((Download *) arg)->easy = easy;
		OBJ_SETOPT(CURLOPT_WRITEFUNCTION, download_write);
		OBJ_SETOPT(CURLOPT_WRITEDATA, arg);
	}
	else
	{
		OBJ_SETOPT(CURLOPT_CUSTOMREQUEST, "DELETE");
		OBJ_SETOPT(CURLOPT_WRITEFUNCTION, discard_write);
	}
#undef OBJ_SETOPT
	if (rc != CURLE_OK || !ai_client_add_transfer(f->client, easy, done, arg))
	{
		if (easy)
			curl_easy_cleanup(easy);
		return rc != CURLE_OK ? curl_easy_strerror(rc) : "curl_multi_add_handle failed";
	}
	return NULL;
}

/*
 * free_download
 *		Free a download and its photo, its reservation given back.
 */
static void
free_download(ObjectFetcher *f, Download *d)
{
	f->bytes -= d->photo->image_bytes;
	pfree(d->body.data);
	pfree(d->photo);
	pfree(d);
}

/*
 * object_fetch_start
 *		Download the file of photo (an upload of the s3 store), which this
 *		now owns.  A download that cannot start fails the photo (retried).
 */
void
object_fetch_start(ObjectFetcher *f, AiPhoto *photo)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(f->cxt);
	Download   *d = palloc0(sizeof(Download));
	char		url[S3_SIGN_URL_MAX];
	const char *err;

	d->fetcher = f;
	d->photo = photo;
	/* room for the size announced, once (a StringInfo would double up to it) */
	d->body.maxlen = (int) photo->image_bytes + 1;
	d->body.data = palloc(d->body.maxlen);
	resetStringInfo(&d->body);
	f->active = lappend(f->active, d);
	f->bytes += photo->image_bytes;
	MemoryContextSwitchTo(oldcxt);
	err = moverz_s3_url("GET", photo->object_key, OBJECT_URL_TTL_S, time(NULL), url);
	if (err == NULL)
		err = start_transfer(f, url, true, d, d->error, download_done);
	if (err != NULL)
	{
		ereport(LOG,
				(errmsg("moverz_batch: cannot download an uploaded file from the object store: %s", err)));
		ai_client_fail_photo(f->client, photo, "NETWORK_ERROR",
							 "the object store could not be reached (the server log says why)");
		f->active = list_delete_ptr(f->active, d);
		free_download(f, d);
	}
}

/*
 * download_failure
 *		Why a finished download cannot be sent, with its error code (AI_ERROR
 *		final, NETWORK_ERROR retried), or NULL when it can.
 */
static char *
download_failure(Download *d, const char **code)
{
	const char *type;

	*code = "AI_ERROR";
	if (d->too_large)
		return psprintf("the uploaded file is larger than the %lld bytes announced",
						(long long) d->photo->image_bytes);
	if (d->status == 404)
		return pstrdup("the uploaded file is not in the object store (never uploaded, or deleted)");
	/* unreachable, 5xx, or 403 (signature, clock, keys: a setting): retried */
	*code = "NETWORK_ERROR";
	if (d->status != 200)
	{
		ereport(LOG,
				(errmsg("moverz_batch: downloading an uploaded file from the object store failed: %s",
						d->status == 0 ? d->error : psprintf("HTTP %ld", d->status))));
		return psprintf("the object store could not be read (%s; the server log says more)",
						d->status == 0 ? "unreachable" : psprintf("HTTP %ld", d->status));
	}
	*code = "AI_ERROR";
	type = moverz_image_type((const unsigned char *) d->body.data, d->body.len);
	if (type == NULL || strcmp(type, d->photo->media_type) != 0)
		return psprintf("the uploaded file is not an %s image", d->photo->media_type);
	return NULL;
}

/*
 * with_image
 *		A copy of the photo of d, in one chunk of cxt, carrying its bytes in
 *		base64: ready to send.
 */
static AiPhoto *
with_image(Download *d, MemoryContext cxt)
{
	AiPhoto    *src = d->photo;
	const char **from[AI_PHOTO_NFIELDS];
	const char **to[AI_PHOTO_NFIELDS];
	Size		lens[AI_PHOTO_NFIELDS];
	Size		type_len = strlen(src->media_type) + 1;
	Size		b64 = pg_b64_enc_len(d->body.len) + 1;
	Size		total = sizeof(AiPhoto) + type_len + b64;
	AiPhoto    *p;
	char	   *dst;
	int			enc;

	ai_photo_fields(src, from);
	for (int i = 0; i < AI_PHOTO_NFIELDS; i++)
		total += (lens[i] = *from[i] ? strlen(*from[i]) + 1 : 0);
	p = MemoryContextAllocHuge(cxt, total);
	*p = *src;
	ai_photo_fields(p, to);
	dst = (char *) (p + 1);
	for (int i = 0; i < AI_PHOTO_NFIELDS; i++)
	{
		*to[i] = *from[i] ? memcpy(dst, *from[i], lens[i]) : NULL;
		dst += lens[i];
	}
	p->media_type = memcpy(dst, src->media_type, type_len);
	dst += type_len;
	enc = pg_b64_encode(d->body.data, d->body.len, dst, b64 - 1);
	if (enc < 0)
		elog(ERROR, "moverz_batch: could not encode a downloaded photo in base64");
	dst[enc] = '\0';
	p->image_b64 = dst;
	p->image_bytes = d->body.len;
	p->object_key = NULL;
	return p;
}

/* What settle_txn reads and writes. */
typedef struct SettleCall
{
	ObjectFetcher *f;
	int64		claim_token;
	StringInfoData rows;		/* [{"id", "sha256", "size"}] */
	List	   *send;			/* ids (char *) to send */
} SettleCall;

/*
 * settle_txn
 *		Transaction body: settle_downloads(), the ids to send kept.
 */
static void
settle_txn(void *arg)
{
	SettleCall *c = (SettleCall *) arg;
	Oid			types[3] = {INT8OID, INT4OID, JSONBOID};
	Datum		values[3];
	int			rc;

	values[0] = Int64GetDatum(c->claim_token);
	values[1] = Int32GetDatum(moverz_lease_timeout_ms);
	values[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(c->rows.data));
	rc = SPI_execute_plan(moverz_saved_plan(&c->f->settle_plan,
											"SELECT id::text, action FROM moverz_batch_internal.settle_downloads($1, $2, $3)",
											3, types),
						  values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "moverz_batch: settle_downloads failed: %s", SPI_result_code_string(rc));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *action = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		if (action && strcmp(action, "send") == 0)
		{
			/* the list outlives SPI's memory */
			MemoryContext oldcxt = MemoryContextSwitchTo(c->f->cxt);

			c->send = lappend(c->send, pstrdup(SPI_getvalue(SPI_tuptable->vals[i],
															SPI_tuptable->tupdesc, 1)));
			MemoryContextSwitchTo(oldcxt);
		}
	}
}

/*
 * settle_list
 *		The downloads that can be sent, as settle_downloads() rows in
 *		c->rows; those that cannot fail their photo now and are freed.
 *		Returns the ones kept.
 */
static List *
settle_list(ObjectFetcher *f, SettleCall *c)
{
	List	   *kept = NIL;
	ListCell   *lc;
	MemoryContext oldcxt;

	initStringInfo(&c->rows);
	appendStringInfoChar(&c->rows, '[');
	foreach(lc, f->finished)
	{
		Download   *d = (Download *) lfirst(lc);
		const char *code;
		char	   *why = NULL;

		/* checked and hashed once (kept when the transaction failed) */
		if (d->sum[0] == '\0')
		{
			why = download_failure(d, &code);
			if (why == NULL && !moverz_sha256_hex(d->body.data, d->body.len, d->sum))
				why = pstrdup("could not compute the SHA-256 of the uploaded file");
		}
		if (why != NULL)
		{
			ai_client_fail_photo(f->client, d->photo, code, why);
			free_download(f, d);
			continue;
		}
		appendStringInfo(&c->rows, "%s{\"id\":\"%s\",\"sha256\":\"%s\",\"size\":%d}",
						 kept == NIL ? "" : ",", d->photo->id, d->sum, d->body.len);
		oldcxt = MemoryContextSwitchTo(f->cxt);	/* kept across turns */
		kept = lappend(kept, d);
		MemoryContextSwitchTo(oldcxt);
	}
	appendStringInfoChar(&c->rows, ']');
	return kept;
}

/*
 * object_fetch_settle
 *		The downloads that ended: failures fail their photo; the others get
 *		their checksum in one transaction, and those still to analyse come
 *		back in *out (copies in cxt, their bytes in base64) for the worker's
 *		ready queue, which sends them under its usual checks.  Returns how
 *		many.  When that transaction fails (a transient error), they wait
 *		for the next turn; nothing is lost.
 */
int
object_fetch_settle(ObjectFetcher *f, int64 claim_token, MemoryContext cxt, AiPhoto ***out)
{
	SettleCall	c;
	List	   *kept;
	ListCell   *lc;
	int			n = 0;

	*out = NULL;
	if (f->finished == NIL)
		return 0;
	memset(&c, 0, sizeof(c));
	c.f = f;
	c.claim_token = claim_token;
	kept = settle_list(f, &c);
	list_free(f->finished);
	f->finished = kept;
	if (kept == NIL)
		return 0;
	if (!moverz_run_in_transaction(settle_txn, &c, "checksumming downloaded photos", NULL))
	{
		list_free_deep(c.send);
		return 0;
	}
	*out = MemoryContextAlloc(cxt, list_length(kept) * sizeof(AiPhoto *));
	foreach(lc, kept)
	{
		Download   *d = (Download *) lfirst(lc);
		ListCell   *s;

		foreach(s, c.send)
		{
			if (strcmp((char *) lfirst(s), d->photo->id) == 0)
			{
				(*out)[n++] = with_image(d, cxt);
				break;
			}
		}
		free_download(f, d);
	}
	list_free(f->finished);
	f->finished = NIL;
	list_free_deep(c.send);
	return n;
}

/*
 * object_fetch_abandon
 *		At shutdown: the photos being downloaded or not yet settled, in *out
 *		(their downloads freed), to be handed back unsent.  Returns how many.
 *		The transfers still in curl point at freed downloads: the AI client
 *		must not be driven again (the worker exits).
 */
int
object_fetch_abandon(ObjectFetcher *f, AiPhoto ***out)
{
	List	   *all = list_concat(list_copy(f->active), f->finished);
	ListCell   *lc;
	int			n = 0;

	*out = palloc(Max(1, list_length(all)) * sizeof(AiPhoto *));
	foreach(lc, all)
	{
		Download   *d = (Download *) lfirst(lc);

		(*out)[n++] = d->photo;		/* claim_unclaim frees it */
		f->bytes -= d->photo->image_bytes;
		pfree(d->body.data);
		pfree(d);
	}
	f->active = f->finished = NIL;
	return n;
}

/*
 * deletion_done
 *		A deletion ended: deleted (2xx, or 404: already gone) or failed.
 */
static void
deletion_done(void *arg, void *easy, int rc)
{
	Deletion   *d = (Deletion *) arg;
	ObjectFetcher *f = d->fetcher;
	MemoryContext oldcxt = MemoryContextSwitchTo(f->cxt);
	long		status = 0;

	if (rc == CURLE_OK && curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
		((status >= 200 && status < 300) || status == 404))
	{
		f->deleted = lappend(f->deleted, d->key);
		pfree(d);
	}
	else
	{
		if (rc == CURLE_OK)
			snprintf(d->error, sizeof(d->error), "HTTP %ld", status);
		else if (d->error[0] == '\0')
			strlcpy(d->error, curl_easy_strerror((CURLcode) rc), sizeof(d->error));
		f->failed = lappend(f->failed, d);
	}
	curl_easy_cleanup(easy);
	f->deleting--;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * claim_deletions_txn
 *		Transaction body: the objects to delete now, started.
 */
static void
claim_deletions_txn(void *arg)
{
	ObjectFetcher *f = (ObjectFetcher *) arg;
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(f->round_size)};
	int			rc = SPI_execute_plan(moverz_saved_plan(&f->claim_plan,
														"SELECT moverz_batch_internal.claim_object_deletions($1)",
														1, types),
									  values, NULL, false, 0);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "moverz_batch: claim_object_deletions failed: %s", SPI_result_code_string(rc));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Deletion   *d = MemoryContextAllocZero(f->cxt, sizeof(Deletion));
		char		url[S3_SIGN_URL_MAX];
		const char *err;

		d->fetcher = f;
		d->key = MemoryContextStrdup(f->cxt, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		err = moverz_s3_url("DELETE", d->key, OBJECT_URL_TTL_S, time(NULL), url);
		if (err == NULL)
			err = start_transfer(f, url, false, d, d->error, deletion_done);
		if (err != NULL)
		{
			MemoryContext oldcxt = MemoryContextSwitchTo(f->cxt);

			strlcpy(d->error, err, sizeof(d->error));
			f->failed = lappend(f->failed, d);
			MemoryContextSwitchTo(oldcxt);
		}
		else
			f->deleting++;
	}
}

/*
 * finish_deletions_txn
 *		Transaction body: the outcomes of the deletions to the queue.
 */
static void
finish_deletions_txn(void *arg)
{
	ObjectFetcher *f = (ObjectFetcher *) arg;
	Oid			types[2] = {TEXTARRAYOID, JSONBOID};
	Datum	   *keys = palloc(Max(1, list_length(f->deleted)) * sizeof(Datum));
	StringInfoData failed;
	Datum		values[2];
	ListCell   *lc;
	int			n = 0;
	int			rc;

	foreach(lc, f->deleted)
		keys[n++] = CStringGetTextDatum((char *) lfirst(lc));
	initStringInfo(&failed);
	appendStringInfoChar(&failed, '[');
	foreach(lc, f->failed)
	{
		Deletion   *d = (Deletion *) lfirst(lc);

		appendStringInfoString(&failed, failed.len > 1 ? ",{\"key\":" : "{\"key\":");
		escape_json(&failed, d->key);
		appendStringInfoString(&failed, ",\"error\":");
		escape_json(&failed, d->error);
		appendStringInfoChar(&failed, '}');
	}
	appendStringInfoChar(&failed, ']');
	values[0] = PointerGetDatum(construct_array(keys, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(failed.data));
	rc = SPI_execute_plan(moverz_saved_plan(&f->finish_plan,
											"SELECT moverz_batch_internal.finish_object_deletions($1, $2)",
											2, types),
						  values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "moverz_batch: finish_object_deletions failed: %s", SPI_result_code_string(rc));
}

/*
 * object_deletions_run
 *		Every few seconds, while an s3 store is configured: report the
 *		deletions that ended, then start the due ones, no more than the free
 *		request slots (a lease of a minute covers them in the queue).
 */
void
object_deletions_run(ObjectFetcher *f, int free_slots)
{
	TimestampTz now = GetCurrentTimestamp();

	if (f->deleting > 0)
		return;
	if ((f->deleted != NIL || f->failed != NIL) &&
		moverz_run_in_transaction(finish_deletions_txn, f, "deleting objects of the s3 store", NULL))
	{
		ListCell   *lc;

		foreach(lc, f->failed)
			pfree(((Deletion *) lfirst(lc))->key);
		list_free_deep(f->deleted);
		list_free_deep(f->failed);
		f->deleted = f->failed = NIL;
	}
	if (now < f->next_round || moverz_s3_bucket == NULL || moverz_s3_bucket[0] == '\0' ||
		f->deleted != NIL || f->failed != NIL || free_slots <= 0)
		return;
	f->next_round = TimestampTzPlusMilliseconds(now, DELETIONS_EVERY_MS);
	f->round_size = Min(DELETIONS_PER_ROUND, free_slots);
	moverz_run_in_transaction(claim_deletions_txn, f, "deleting objects of the s3 store", NULL);
}
