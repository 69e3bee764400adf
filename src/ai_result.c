/*-------------------------------------------------------------------------
 *
 * ai_result.c
 *		The results of the AI client: each finished request (or photo that
 *		could not be sent) becomes one JSON object for complete_photos()
 *		(sql/src/60_worker.sql), which classifies it by the contract; here
 *		only transfer failures are named.  A body is passed on as JSON only
 *		when it is valid JSON that PostgreSQL can store, otherwise as
 *		(truncated) text.
 *
 *-------------------------------------------------------------------------
 */
#include "ai_client_int.h"

#include "mb/pg_wchar.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/*
 * append_body_text
 *		Append at most AI_MAX_BODY_TEXT bytes of a non-JSON body as a JSON
 *		string, cut at the first byte that is not valid text.
 */
static void
append_body_text(StringInfo buf, const char *data, int len)
{
	int			keep = Min(len, AI_MAX_BODY_TEXT);
	int			valid = pg_verify_mbstr_len(GetDatabaseEncoding(), data, keep, true);
	char	   *text;

	/* pg_verify_mbstr_len returns -1 when invalid: find the valid prefix */
	if (valid < 0)
	{
		while (keep > 0 && pg_verify_mbstr_len(GetDatabaseEncoding(), data, keep, true) < 0)
			keep--;
	}
	text = pnstrdup(data, keep);
	escape_json(buf, text);
	pfree(text);
}

/*
 * ai_add_result
 *		Turn a finished request into a result object for complete_photos().
 *		tcode is NULL when an HTTP answer arrived.
 */
void
ai_add_result(AiClient *client, AiRequest *req, long http_status,
		   const char *tcode, const char *tmsg, long retry_after_ms)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(client->cxt);
	StringInfoData buf;
	long		secs;
	int			usecs;
	int			head_len;

	TimestampDifference(req->started, GetCurrentTimestamp(), &secs, &usecs);
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"id\":\"%s\",\"batch_id\":\"%s\",\"user_id\":",
					 req->id, req->batch_id);
	escape_json(&buf, req->user_id);
	appendStringInfo(&buf, ",\"attempt\":%d,\"latency_ms\":%ld,\"provider\":\"%s\"",
					 req->attempt, secs * 1000 + usecs / 1000, ai_provider_name(req->provider));
	if (req->prompt_version[0] != '\0')
	{
		appendStringInfoString(&buf, ",\"prompt_version\":");
		escape_json(&buf, req->prompt_version);
	}
	head_len = buf.len;
	/*
	 * down: a transfer failure or time-out, 408, 5xx (not an answer too
	 * large); a request that failed before it left says nothing of the
	 * service
	 */
	if (req->sent &&
		moverz_outage_report(tcode != NULL ? strcmp(tcode, "AI_ERROR") != 0 :
							 (http_status >= 500 || http_status == 408),
							 tcode != NULL ? tmsg : NULL))
		appendStringInfoString(&buf, ",\"outage\":true");
	if (tcode != NULL)
	{
		appendStringInfoString(&buf, ",\"transport_code\":");
		escape_json(&buf, tcode);
		appendStringInfoString(&buf, ",\"transport_message\":");
		escape_json(&buf, tmsg);
	}
	else
	{
		appendStringInfo(&buf, ",\"http_status\":%ld", http_status);
		if (retry_after_ms > 0)
			appendStringInfo(&buf, ",\"retry_after_ms\":%ld", retry_after_ms);
		if (moverz_json_parses(req->response.data, req->response.len, client->parse_cxt))
		{
			appendStringInfoString(&buf, ",\"body\":");
			appendBinaryStringInfo(&buf, req->response.data, req->response.len);
		}
		else
		{
			appendStringInfoString(&buf, ",\"body_text\":");
			append_body_text(&buf, req->response.data, req->response.len);
		}
	}
	appendStringInfoChar(&buf, '}');

	if (client->nresults == client->maxresults)
	{
		client->maxresults = Max(64, client->maxresults * 2);
		client->results = client->results ?
			repalloc(client->results, client->maxresults * sizeof(AiResult)) :
			palloc(client->maxresults * sizeof(AiResult));
	}
	client->results[client->nresults].json = buf.data;
	client->results[client->nresults].head_len = head_len;
	client->nresults++;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * ai_client_result_count
 *		How many results wait to be taken.
 */
int
ai_client_result_count(AiClient *client)
{
	return client->nresults;
}

/*
 * ai_client_fail_photo
 *		A photo that cannot be sent becomes a failed result at once:
 *		code AI_ERROR is final, NETWORK_ERROR retried.  Nothing was sent:
 *		the AI service's circuit (outage.c) is not told.
 */
void
ai_client_fail_photo(AiClient *client, const AiPhoto *photo, const char *code, const char *message)
{
	AiRequest  *req = ai_new_request(client, photo);
	MemoryContext oldcxt = MemoryContextSwitchTo(client->cxt);

	initStringInfo(&req->payload);
	initStringInfo(&req->response);
	MemoryContextSwitchTo(oldcxt);
	ai_add_result(client, req, 0, code, message, 0);
	ai_release_request(client, req);
}

/*
 * ai_client_take_results
 *		Hand over up to max finished results (oldest first), and at most
 *		AI_MAX_WRITEBACK_BYTES of JSON (at least one): one write-back's
 *		array stays far below the 1 GB a string may hold.  The JSON strings
 *		belong to the caller, who pfree()s them once written.
 */
int
ai_client_take_results(AiClient *client, AiResult *results, int max)
{
	int			n = 0;
	Size		bytes = 0;

	while (n < Min(max, client->nresults))
	{
		Size		len = strlen(client->results[n].json);

		if (n > 0 && bytes + len > AI_MAX_WRITEBACK_BYTES)
			break;
		bytes += len;
		n++;
	}

	memcpy(results, client->results, n * sizeof(AiResult));
	memmove(client->results, client->results + n,
			(client->nresults - n) * sizeof(AiResult));
	client->nresults -= n;
	return n;
}
