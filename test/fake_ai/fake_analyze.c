/*-------------------------------------------------------------------------
 *
 * fake_analyze.c
 *		POST /v1/analyze-photo of the fake AI service: request parsing,
 *		fault injection and answer building.
 *
 * The answer is deterministic: the room type comes from the request or the
 * file name, the items from the image URL, whose query parameters also
 * inject faults, or from the bytes of an inline image (image_base64, which
 * carries no faults; see README.md).
 *
 *-------------------------------------------------------------------------
 */
#include "fake_ai.h"

#include <stdlib.h>
#include <string.h>

/* Faults answered with a fixed status and body. */
static const struct
{
	const char *name;
	unsigned int status;
	const char *ctype,
			   *body;
	bool		retry_after;
}			simple_faults[] = {
	{"429", 429, JSON_CT, "{\"error\":{\"code\":\"RATE_LIMIT\",\"message\":\"rate limited\",\"retryable\":true}}", true},
	{"429plain", 429, TEXT_CT, "slow down", true},
	{"500", 500, TEXT_CT, "internal error", false},
	{"503json", 503, JSON_CT, "{\"error\":{\"code\":\"AI_ERROR\",\"message\":\"model overloaded\",\"retryable\":true}}", false},
	{"400", 400, TEXT_CT, "bad request", false},
	{"504", 504, TEXT_CT, "gateway timeout", false},
	{"408", 408, TEXT_CT, "request timeout", false},
	{"malformed", 200, JSON_CT, "{\"room_type\": \"kitchen\", \"items\": [", false},
	{"badshape", 200, JSON_CT, "{\"room_type\": \"kitchen\", \"items\": \"lots\"}", false},
	{"badjson_error", 500, JSON_CT, "{\"error\": 42}", false},
};

/* Furniture catalogue of the hash-derived answers: label, volume. */
static const char *const catalogue[][2] = {
	{"sofa", "1.5"}, {"armchair", "0.6"}, {"bed", "1.8"}, {"wardrobe", "2.2"},
	{"table", "0.9"}, {"chair", "0.25"}, {"bookcase", "1.1"},
	{"dresser", "0.8"}, {"tv_stand", "0.4"}, {"box", "0.1"},
	{"fridge", "0.9"}, {"washing_machine", "0.6"},
};

/* File name substring -> room type; the first match wins. */
static const char *const room_rules[][2] = {
	{"salon", "living_room"}, {"living", "living_room"},
	{"lounge", "living_room"}, {"chambre", "bedroom"}, {"bedroom", "bedroom"},
	{"cuisine", "kitchen"}, {"kitchen", "kitchen"}, {"sdb", "bathroom"},
	{"bath", "bathroom"}, {"bureau", "office"}, {"office", "office"},
	{"garage", "garage"}, {"entree", "hallway"}, {"hall", "hallway"},
	{"salle_a_manger", "dining_room"}, {"dining", "dining_room"},
};

/*
 * parse_analyze: parse the body of an analyze request into req, and decode
 * and check its inline image if it has one; on failure *status is the
 * HTTP status and err says why.  The caller frees req->arena and
 * req->image.  A request without image_base64 (absent or null) is checked
 * exactly as before inline images existed.
 */
static bool
parse_analyze(const StrBuf *body, AnalyzeReq *req, unsigned int *status,
			  StrBuf *err)
{
	JsonCur		c;
	const char *msg;

	*status = 400;
	if ((req->arena = malloc(body->len + 1)) == NULL)
		abort();
	c.p = body->data ? body->data : "";
	c.end = c.p + body->len;
	c.out = req->arena;
	if (!js_value(&c, 0, req) || (js_ws(&c), c.p != c.end))
		msg = "body is not a JSON object";
	else if (req->photo_id == NULL)
		msg = "photo_id must be a string";
	else if (req->image_base64 == NULL && !(req->nonstring & FIELD_IMAGE_BASE64))
		msg = req->image_url ? NULL : "image_url must be a string";
	else if (req->image_url != NULL || (req->nonstring & FIELD_IMAGE_URL))
		msg = "give one of image_url and image_base64, not both";
	else if (req->image_base64 == NULL)
		msg = "image_base64 must be a string";
	else
		return check_inline_image(req, status, err);
	if (msg != NULL)
		sb_printf(err, "%s", msg);
	return msg == NULL;
}

/*
 * url_decode: percent-decode n bytes of src ('+' is a space) into dst,
 * which has room for n + 1 bytes.
 */
static void
url_decode(const char *src, size_t n, char *dst)
{
	for (size_t i = 0; i < n; i++)
	{
		if (src[i] == '%' && i + 2 < n && hexval(src[i + 1]) >= 0 &&
			hexval(src[i + 2]) >= 0)
		{
			*dst++ = (char) (hexval(src[i + 1]) * 16 + hexval(src[i + 2]));
			i += 2;
		}
		else
			*dst++ = src[i] == '+' ? ' ' : src[i];
	}
	*dst = '\0';
}

/*
 * query_raw: find parameter name in the query string of url; *val and *vlen
 * are its raw (still encoded) value.  The first occurrence wins.
 */
static bool
query_raw(const char *url, const char *name, const char **val, size_t *vlen)
{
	const char *q = strchr(url, '?');
	size_t		nlen = strlen(name);

	while (q != NULL && *q != '\0' && *q != '#')
	{
		const char *seg = q + 1,
				   *seg_end = seg + strcspn(seg, "&#"),
				   *eq = memchr(seg, '=', (size_t) (seg_end - seg));

		if ((size_t) ((eq ? eq : seg_end) - seg) == nlen &&
			memcmp(seg, name, nlen) == 0)
		{
			*val = eq ? eq + 1 : seg_end;
			*vlen = (size_t) (seg_end - *val);
			return true;
		}
		q = seg_end;
	}
	return false;
}

/* query_str: decoded parameter name of url (maybe truncated), or "". */
static bool
query_str(const char *url, const char *name, char *buf, size_t cap)
{
	const char *v;
	size_t		n;

	buf[0] = '\0';
	if (!query_raw(url, name, &v, &n))
		return false;
	url_decode(v, n < cap ? n : cap - 1, buf);
	return true;
}

/*
 * query_long: integer parameter name of url; dflt if absent or invalid.
 * Values are capped at 10^9 (so that sums of latencies cannot overflow).
 */
static long
query_long(const char *url, const char *name, long dflt)
{
	char		buf[32],
			   *end;
	long		v;

	if (!query_str(url, name, buf, sizeof(buf)) || buf[0] == '\0')
		return dflt;
	v = strtol(buf, &end, 10);
	if (*end != '\0' || v < 0)
		return dflt;
	return v > 1000000000L ? 1000000000L : v;
}

/* host_is_invalid: does the host of url end in ".invalid" (RFC 2606)? */
static bool
host_is_invalid(const char *url)
{
	const char *h = strstr(url, "://"),
			   *at;
	char		host[256];
	size_t		n;

	h = h ? h + 3 : url;
	n = strcspn(h, "/?#");
	if ((at = memchr(h, '@', n)) != NULL)
	{
		n -= (size_t) (at + 1 - h);
		h = at + 1;
	}
	if (*h != '[' && memchr(h, ':', n) != NULL)
		n = (size_t) ((const char *) memchr(h, ':', n) - h);
	if (n > 0 && h[n - 1] == '.')
		n--;
	snprintf(host, sizeof(host), "%.*s", (int) n, h);
	n = strlen(host);
	return strcasecmp(host, "invalid") == 0 ||
		(n > 8 && strcasecmp(host + n - 8, ".invalid") == 0);
}

/* append_item: append one item object to sb. */
static void
append_item(StrBuf *sb, bool first, const char *label, long qty,
			const char *vol)
{
	JsonCur		c = {vol, vol + strlen(vol), NULL};
	bool		is_number = js_number(&c) && c.p == c.end;

	sb_printf(sb, "%s{\"label\": ", first ? "" : ", ");
	sb_json_str(sb, label);
	sb_printf(sb, ", \"quantity\": %ld, \"volume_m3\": %s}", qty,
			  is_number ? vol : "0");
}

/*
 * append_items_param: append the items of an items=label:qty:vol,... query
 * value (raw, n bytes, decoded as a whole first) to sb.  A missing
 * quantity is 1, a missing or non-numeric volume 0.
 */
static void
append_items_param(StrBuf *sb, const char *raw, size_t n)
{
	char	   *buf = malloc(n + 1),
			   *entry,
			   *save = NULL;
	bool		first = true;

	if (buf == NULL)
		abort();
	url_decode(raw, n, buf);
	for (entry = strtok_r(buf, ",", &save); entry;
		 entry = strtok_r(NULL, ",", &save))
	{
		char	   *f[3] = {entry, "1", "0"},
				   *colon,
				   *end;
		long		qty;

		for (int i = 1; i < 3 && (colon = strchr(f[i - 1], ':')); i++)
		{
			*colon = '\0';
			f[i] = colon + 1;
		}
		qty = strtol(f[1], &end, 10);
		if (*end != '\0' || end == f[1])
			qty = 1;
		if (f[0][0] == '\0')
			continue;
		append_item(sb, first, f[0], qty, f[2]);
		first = false;
	}
	free(buf);
}

/*
 * append_items_hash: append 1 to 4 catalogue items chosen by h, the hash of
 * the image URL or of the inline image's bytes.
 */
static void
append_items_hash(StrBuf *sb, uint64_t h)
{
	int			n = 1 + (int) (h % 4);
	size_t		start = (size_t) ((h >> 8) % lengthof(catalogue));

	for (int i = 0; i < n; i++)
	{
		size_t		k = (start + (size_t) i) % lengthof(catalogue);

		append_item(sb, i == 0, catalogue[k][0],
					1 + (long) ((h >> (16 + 4 * i)) % 3), catalogue[k][1]);
	}
}

/* build_success: the 200 answer of an analysis. */
static void
build_success(Reply *r, const AnalyzeReq *req)
{
	const char *room = "other",
			   *raw;
	size_t		n;

	if (req->room_type != NULL && req->room_type[0] != '\0')
		room = req->room_type;
	else
		for (size_t i = 0; req->filename && i < lengthof(room_rules); i++)
			if (strcasestr(req->filename, room_rules[i][0]) != NULL)
			{
				room = room_rules[i][1];
				break;
			}
	r->status = 200;
	r->ctype = JSON_CT;
	sb_printf(&r->body, "{\"room_type\": ");
	sb_json_str(&r->body, room);
	sb_printf(&r->body, ", \"items\": [");
	if (req->image != NULL)
		append_items_hash(&r->body, fnv1a_bytes(req->image, req->image_len));
	else if (query_raw(req->image_url, "items", &raw, &n))
		append_items_param(&r->body, raw, n);
	else
		append_items_hash(&r->body, fnv1a(req->image_url));
	sb_printf(&r->body, "], \"model\": \"fake-vision-1\", \"usage\": "
			  "{\"input_tokens\": 1200, \"output_tokens\": 150}, "
			  "\"cost_usd\": 0.015}");
}

/*
 * decide_analysis: the answer to call number calls of a parsed request,
 * after the faults of its image URL (an inline image has none).  *hang_ms
 * is set for fault=hang.
 */
static void
decide_analysis(Reply *r, const AnalyzeReq *req, long calls, long *hang_ms)
{
	const char *url = req->image_url;
	char		fault[32];
	long		fail_first;
	StrBuf		msg = {0};

	if (req->image != NULL)
	{
		build_success(r, req);
		return;
	}
	query_str(url, "fault", fault, sizeof(fault));
	fail_first = query_long(url, "fail_first", 0);
	if (fail_first > 0 && calls > fail_first)
		fault[0] = '\0';		/* the failures are over: succeed */
	else if (fail_first > 0 && fault[0] == '\0')
	{
		reply_static(r, 500, TEXT_CT, "internal error");
		return;
	}
	if (strcmp(fault, "unreachable") == 0 || host_is_invalid(url))
	{
		sb_printf(&msg, "image unreachable: ");
		sb_append(&msg, url, strlen(url));
		reply_error(r, 422, "NETWORK_ERROR", msg.data, false);
		free(msg.data);
		return;
	}
	if (strcmp(fault, "hang") == 0)
		*hang_ms = query_long(url, "hang_ms", 600000);
	if (fault[0] == '\0' || strcmp(fault, "hang") == 0)
	{
		build_success(r, req);
		return;
	}
	if (strcmp(fault, "500huge") == 0)
	{
		/* a 5xx whose body is larger than the workers take (1 MB) */
		r->status = 500;
		r->ctype = TEXT_CT;
		for (int i = 0; i < 2 * 1024; i++)
			sb_printf(&r->body, "%01023d\n", i);
		return;
	}
	if (strcmp(fault, "bigmeta") == 0)
	{
		/* a valid analysis whose metadata no column can hold */
		r->status = 200;
		r->ctype = JSON_CT;
		sb_printf(&r->body, "{\"room_type\": \"kitchen\", \"items\": [{\"label\": \"chair\", "
				  "\"quantity\": 2, \"volume_m3\": 0.25}], \"model\": \"fake-vision-1\", "
				  "\"usage\": {\"input_tokens\": 3000000000, \"output_tokens\": 1e12}, "
				  "\"cost_usd\": 12345678.9}");
		return;
	}
	for (size_t i = 0; i < lengthof(simple_faults); i++)
	{
		if (strcmp(fault, simple_faults[i].name) != 0)
			continue;
		reply_static(r, simple_faults[i].status, simple_faults[i].ctype,
					 simple_faults[i].body);
		if (simple_faults[i].retry_after &&
			(!query_str(url, "retry_after", r->retry_after,
						sizeof(r->retry_after)) || r->retry_after[0] == '\0'))
			strcpy(r->retry_after, "1");
		for (char *p = r->retry_after; *p; p++)
			if ((unsigned char) *p < 0x20)
				*p = ' ';		/* no header injection */
		return;
	}
	reply_error(r, 400, "AI_ERROR", "unknown fault", false);
}

/*
 * log_id: the photo id as the log shows it, one field on one line: "-" when
 * there is none, "?" when it has a space or a control character.
 */
static const char *
log_id(const char *photo_id)
{
	if (photo_id == NULL)
		return "-";
	for (const unsigned char *c = (const unsigned char *) photo_id; *c; c++)
		if (*c <= ' ' || *c == 0x7f)
			return "?";
	return photo_id;
}

/*
 * handle_analyze: POST /v1/analyze-photo.  Waits (without locks) for the
 * latency and hang of the request, then answers.
 */
enum MHD_Result
handle_analyze(struct MHD_Connection *conn, Request *rq)
{
	Reply		r = {0};
	AnalyzeReq	req = {0};
	StrBuf		err = {0};
	unsigned int status;
	long		calls = 0,
				hang_ms = 0,
				extra_ms = 0;
	enum MHD_Result ret;
	int64_t		received_us = stats_begin();
	int64_t		answered_us;

	if (!auth_ok(conn))
		reply_error(&r, 401, "AI_ERROR", "invalid api key", false);
	else if (rq->too_big)
		reply_error(&r, 413, "AI_ERROR", "body too large", false);
	else if (!parse_analyze(&rq->body, &req, &status, &err))
		reply_error(&r, status, "AI_ERROR", err.data, false);
	else
	{
		calls = photo_calls(req.photo_id, 1);
		if (req.image != NULL)
			image_received(req.sha256, req.image_len);
		else
			extra_ms = query_long(req.image_url, "latency_ms", 0);
		decide_analysis(&r, &req, calls, &hang_ms);
	}
	sleep_ms(base_latency_ms + extra_ms + hang_ms);
	answered_us = stats_answered(r.status);
	if (log_file != NULL)
		fprintf(log_file, "%lld %s %u %ld %lld\n", (long long) answered_us,
				log_id(req.photo_id), r.status, calls, (long long) received_us);
	ret = send_reply(conn, &r);
	stats_end();
	free(req.arena);
	free(req.image);
	free(err.data);
	return ret;
}
