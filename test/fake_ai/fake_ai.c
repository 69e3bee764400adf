/*-------------------------------------------------------------------------
 *
 * fake_ai.c
 *		A fake AI photo-analysis HTTP service for the tests, the demo and
 *		the benchmarks of moverz_batch.
 *
 * It speaks the contract of the real service (POST /v1/analyze-photo) and
 * answers deterministically from the request: the room type comes from the
 * request or the file name, the items from the image URL, whose query
 * parameters also inject faults (see README.md).  It counts the calls per
 * photo and exposes counters on /stats.
 *
 * Design: libmicrohttpd with one thread per connection, using poll() so
 * that connections past FD_SETSIZE work.  Latency and hangs are timed waits
 * on a condition variable that shutdown broadcasts, so SIGTERM is quick.
 * The per-photo counters are a striped, mutex-protected open-addressing
 * hash table; the global counters are atomics.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_BODY		(1024 * 1024)	/* largest request body accepted */
#define NSTRIPES		64				/* lock stripes of the photo table */
#define STRIPE_INIT		4096			/* initial slots of a stripe */
#define JSON_MAX_DEPTH	64
#define JSON_CT			"application/json"
#define TEXT_CT			"text/plain"
#define lengthof(a)		(sizeof(a) / sizeof((a)[0]))

/* A growable string buffer; data is malloc'ed and NUL-terminated. */
typedef struct StrBuf
{
	char	   *data;
	size_t		len,
				cap;
} StrBuf;

/* What a request has received so far (MHD's per-request context). */
typedef struct Request
{
	StrBuf		body;
	bool		too_big;
} Request;

/* The answer being prepared for a request. */
typedef struct Reply
{
	unsigned int status;
	const char *ctype;
	const char *static_body;	/* if set, sent instead of body */
	StrBuf		body;
	const char *allow;			/* Allow header of a 405 */
	char		retry_after[64];
} Reply;

/* The fields of an analyze request; the strings point into arena. */
typedef struct AnalyzeReq
{
	char	   *arena;
	char	   *photo_id,
			   *image_url,
			   *filename,
			   *room_type;
} AnalyzeReq;

/* A cursor of the JSON scanner; strings are decoded at out. */
typedef struct JsonCur
{
	const char *p,
			   *end;
	char	   *out;
} JsonCur;

/* A photo of the call table; key is NULL in a free slot. */
typedef struct Slot
{
	char	   *key;
	uint64_t	hash;
	long		calls;
} Slot;

/* A lock stripe of the call table, padded against false sharing. */
typedef struct Stripe
{
	pthread_mutex_t lock;
	Slot	   *slots;
	size_t		cap,
				used;
	char		pad[64];
} Stripe;

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

/* Configuration. */
static long base_latency_ms = 0;
static const char *api_key = NULL;
static FILE *log_file = NULL;

/* Shutdown: the waits end early once stopping is set. */
static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cond;
static bool stopping = false;

/* Global counters. */
static atomic_long st_total, st_ok, st_errors, st_distinct, st_max_calls,
			st_inflight, st_max_inflight;

/* Times of the first and last analyze requests, and their rate. */
static pthread_mutex_t rate_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t first_us, last_us, cur_sec, cur_count, max_rps;

static Stripe stripes[NSTRIPES];

/*
 * sb_append: append n bytes of s to sb, growing it as needed.  If s is
 * NULL, the n bytes are only reserved (the caller fills them).
 */
static void
sb_append(StrBuf *sb, const char *s, size_t n)
{
	if (sb->len + n + 1 > sb->cap)
	{
		sb->cap = sb->len + n + 1 > 2 * sb->cap ? sb->len + n + 256 : 2 * sb->cap;
		if ((sb->data = realloc(sb->data, sb->cap)) == NULL)
			abort();
	}
	if (s != NULL)
		memcpy(sb->data + sb->len, s, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
}

/* sb_printf: append printf-formatted text to sb. */
static void
__attribute__((format(printf, 2, 3)))
sb_printf(StrBuf *sb, const char *fmt,...)
{
	va_list		ap;
	char		small[256];
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < (int) sizeof(small))
		sb_append(sb, small, (size_t) n);
	else
	{
		sb_append(sb, NULL, (size_t) n);
		va_start(ap, fmt);
		vsnprintf(sb->data + sb->len - n, (size_t) n + 1, fmt, ap);
		va_end(ap);
	}
}

/* sb_json_str: append s to sb as a quoted, escaped JSON string. */
static void
sb_json_str(StrBuf *sb, const char *s)
{
	sb_append(sb, "\"", 1);
	for (; *s; s++)
	{
		if (*s == '"' || *s == '\\')
			sb_append(sb, "\\", 1);
		if ((unsigned char) *s < 0x20)
			sb_printf(sb, "\\u%04x", (unsigned int) *s);
		else
			sb_append(sb, s, 1);
	}
	sb_append(sb, "\"", 1);
}

/* now_us: wall-clock time in microseconds. */
static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * sleep_ms: wait ms milliseconds, or less if the server is stopping.
 * No lock is held while waiting (the condition wait releases stop_lock).
 */
static void
sleep_ms(long ms)
{
	struct timespec dl;

	if (ms <= 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += ms / 1000 + (dl.tv_nsec + (ms % 1000) * 1000000L) / 1000000000L;
	dl.tv_nsec = (dl.tv_nsec + (ms % 1000) * 1000000L) % 1000000000L;
	pthread_mutex_lock(&stop_lock);
	while (!stopping &&
		   pthread_cond_timedwait(&stop_cond, &stop_lock, &dl) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&stop_lock);
}

/* fnv1a: 64-bit FNV-1a hash of a C string. */
static uint64_t
fnv1a(const char *s)
{
	uint64_t	h = 14695981039346656037ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 1099511628211ULL;
	return h;
}

/* atomic_max: raise *a to v if v is larger. */
static void
atomic_max(atomic_long *a, long v)
{
	long		cur = atomic_load(a);

	while (v > cur && !atomic_compare_exchange_weak(a, &cur, v))
		;
}

/* stripe_find: the slot of key in st, or the free slot where it belongs. */
static Slot *
stripe_find(Stripe *st, const char *key, uint64_t h)
{
	size_t		i = (size_t) (h >> 8) & (st->cap - 1);

	while (st->slots[i].key != NULL &&
		   (st->slots[i].hash != h || strcmp(st->slots[i].key, key) != 0))
		i = (i + 1) & (st->cap - 1);
	return &st->slots[i];
}

/*
 * stripe_reset: give st an empty table of cap slots, rehashing the old
 * slots into it if keep, else freeing them.
 */
static void
stripe_reset(Stripe *st, size_t cap, bool keep)
{
	Slot	   *old = st->slots;
	size_t		oldcap = old ? st->cap : 0;

	if ((st->slots = calloc(cap, sizeof(Slot))) == NULL)
		abort();
	st->cap = cap;
	st->used = 0;
	for (size_t i = 0; i < oldcap; i++)
	{
		if (old[i].key != NULL && keep)
		{
			*stripe_find(st, old[i].key, old[i].hash) = old[i];
			st->used++;
		}
		else
			free(old[i].key);
	}
	free(old);
}

/* photo_calls: the number of calls of photo id, after adding add (0 or 1). */
static long
photo_calls(const char *id, int add)
{
	uint64_t	h = fnv1a(id);
	Stripe	   *st = &stripes[h % NSTRIPES];
	Slot	   *slot;
	long		calls;

	pthread_mutex_lock(&st->lock);
	slot = stripe_find(st, id, h);
	if (slot->key == NULL && add > 0)
	{
		if ((st->used + 1) * 2 > st->cap)
		{
			stripe_reset(st, st->cap * 2, true);
			slot = stripe_find(st, id, h);
		}
		if ((slot->key = strdup(id)) == NULL)
			abort();
		slot->hash = h;
		slot->calls = 0;
		st->used++;
		atomic_fetch_add(&st_distinct, 1);
	}
	calls = slot->key ? (slot->calls += add) : 0;
	pthread_mutex_unlock(&st->lock);
	atomic_max(&st_max_calls, calls);
	return calls;
}

/* photos_dump: append a line "photo_id calls" per photo to sb. */
static void
photos_dump(StrBuf *sb)
{
	for (int s = 0; s < NSTRIPES; s++)
	{
		pthread_mutex_lock(&stripes[s].lock);
		for (size_t i = 0; i < stripes[s].cap; i++)
			if (stripes[s].slots[i].key != NULL)
				sb_printf(sb, "%s %ld\n", stripes[s].slots[i].key,
						  stripes[s].slots[i].calls);
		pthread_mutex_unlock(&stripes[s].lock);
	}
}

/* stats_begin: account for an analyze request just received. */
static void
stats_begin(void)
{
	int64_t		now;

	atomic_fetch_add(&st_total, 1);
	atomic_max(&st_max_inflight, atomic_fetch_add(&st_inflight, 1) + 1);
	pthread_mutex_lock(&rate_lock);
	now = now_us();				/* under the lock, so seconds never go back */
	if (first_us == 0)
		first_us = now;
	last_us = now;
	if (now / 1000000 != cur_sec)
	{
		cur_sec = now / 1000000;
		cur_count = 0;
	}
	if (++cur_count > max_rps)
		max_rps = cur_count;
	pthread_mutex_unlock(&rate_lock);
}

/*
 * stats_reset: zero the counters and forget the photos.  inflight is a
 * gauge of the requests being served, so it is kept.
 */
static void
stats_reset(void)
{
	atomic_store(&st_total, 0);
	atomic_store(&st_ok, 0);
	atomic_store(&st_errors, 0);
	atomic_store(&st_distinct, 0);
	atomic_store(&st_max_calls, 0);
	atomic_store(&st_max_inflight, atomic_load(&st_inflight));
	pthread_mutex_lock(&rate_lock);
	first_us = last_us = cur_sec = cur_count = max_rps = 0;
	pthread_mutex_unlock(&rate_lock);
	for (int s = 0; s < NSTRIPES; s++)
	{
		pthread_mutex_lock(&stripes[s].lock);
		stripe_reset(&stripes[s], STRIPE_INIT, false);
		pthread_mutex_unlock(&stripes[s].lock);
	}
}

/* hexval: the value of hex digit ch, or -1. */
static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f')
		return (ch | 0x20) - 'a' + 10;
	return -1;
}

/* js_ws: skip JSON white space. */
static void
js_ws(JsonCur *c)
{
	while (c->p < c->end && strchr(" \t\n\r", *c->p) != NULL && *c->p)
		c->p++;
}

/* js_hex4: read the 4 hex digits at p (before end) into *v. */
static bool
js_hex4(const char *p, const char *end, unsigned int *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++)
	{
		if (p + i >= end || hexval(p[i]) < 0)
			return false;
		*v = *v * 16 + (unsigned int) hexval(p[i]);
	}
	return true;
}

/*
 * js_escape: decode the escape sequence after a backslash at c->p.  A
 * decoded string is never longer than its JSON text, so the arena fits.
 */
static bool
js_escape(JsonCur *c)
{
	const char *map = "\"\"\\\\//b\bf\fn\nr\rt\t";
	unsigned int cp,
				lo;
	int			n;

	for (const char *m = map; *m && c->p < c->end; m += 2)
		if (*c->p == m[0])
		{
			*c->out++ = m[1];
			c->p++;
			return true;
		}
	if (c->p >= c->end || *c->p != 'u' || !js_hex4(c->p + 1, c->end, &cp))
		return false;
	c->p += 5;
	if (cp >= 0xD800 && cp < 0xDC00 && c->end - c->p >= 6 && c->p[0] == '\\' &&
		c->p[1] == 'u' && js_hex4(c->p + 2, c->end, &lo) &&
		lo >= 0xDC00 && lo < 0xE000)
	{
		cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
		c->p += 6;
	}
	else if (cp >= 0xD800 && cp < 0xE000)
		cp = 0xFFFD;			/* lone surrogate */
	/* UTF-8: a lead byte, then n continuation bytes */
	n = cp < 0x80 ? 0 : cp < 0x800 ? 1 : cp < 0x10000 ? 2 : 3;
	*c->out++ = (char) (((0xFF00 >> (n + 1)) & (n ? 0xFF : 0)) | (cp >> (6 * n)));
	while (n-- > 0)
		*c->out++ = (char) (0x80 | ((cp >> (6 * n)) & 0x3F));
	return true;
}

/* js_string: decode the JSON string at c->p; *dst is the C string. */
static bool
js_string(JsonCur *c, char **dst)
{
	if (c->p >= c->end || *c->p++ != '"')
		return false;
	*dst = c->out;
	while (c->p < c->end)
	{
		unsigned char ch = (unsigned char) *c->p++;

		if (ch == '"')
		{
			*c->out++ = '\0';
			return true;
		}
		if (ch < 0x20 || (ch == '\\' && !js_escape(c)))
			return false;
		if (ch != '\\')
			*c->out++ = (char) ch;
	}
	return false;
}

/* js_digits: skip decimal digits; false if there are none. */
static bool
js_digits(JsonCur *c)
{
	const char *start = c->p;

	while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
		c->p++;
	return c->p > start;
}

/* js_number: skip a JSON number. */
static bool
js_number(JsonCur *c)
{
	if (c->p < c->end && *c->p == '-')
		c->p++;
	if (!js_digits(c))
		return false;
	if (c->p < c->end && *c->p == '.' && (++c->p, !js_digits(c)))
		return false;
	if (c->p < c->end && (*c->p == 'e' || *c->p == 'E'))
	{
		c->p++;
		if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
			c->p++;
		return js_digits(c);
	}
	return true;
}

/*
 * js_field: the field of req named key, or NULL.  Only the members of the
 * top-level object (req != NULL) are kept.
 */
static char **
js_field(AnalyzeReq *req, const char *key)
{
	if (req == NULL)
		return NULL;
	if (strcmp(key, "photo_id") == 0)
		return &req->photo_id;
	if (strcmp(key, "image_url") == 0)
		return &req->image_url;
	if (strcmp(key, "filename") == 0)
		return &req->filename;
	return strcmp(key, "room_type") == 0 ? &req->room_type : NULL;
}

/*
 * js_value: skip (and validate) the JSON value at c->p.  If req is set,
 * the value must be an object, whose string members of interest are kept
 * in req (a member that is null or not a string leaves its field NULL).
 */
static bool
js_value(JsonCur *c, int depth, AnalyzeReq *req)
{
	char	   *save = c->out,
			   *s,
			  **field = NULL;
	char		open,
				close;

	js_ws(c);
	if (c->p >= c->end || depth > JSON_MAX_DEPTH)
		return false;
	open = *c->p;
	if (req != NULL && open != '{')
		return false;
	if (open == '"')
	{
		bool		ok = js_string(c, &s);

		c->out = save;
		return ok;
	}
	for (int i = 0; open != '{' && open != '[' && i < 3; i++)
	{
		static const char *const lits[] = {"true", "false", "null"};
		size_t		n = strlen(lits[i]);

		if ((size_t) (c->end - c->p) >= n && memcmp(c->p, lits[i], n) == 0)
		{
			c->p += n;
			return true;
		}
	}
	if (open != '{' && open != '[')
		return js_number(c);
	close = open == '{' ? '}' : ']';
	c->p++;
	js_ws(c);
	if (c->p < c->end && *c->p == close)
	{
		c->p++;
		return true;
	}
	for (;;)
	{
		if (open == '{')
		{
			js_ws(c);
			if (!js_string(c, &s))
				return false;
			field = js_field(req, s);
			c->out = save;		/* forget the key */
			js_ws(c);
			if (c->p >= c->end || *c->p++ != ':')
				return false;
			js_ws(c);
		}
		if (field != NULL && c->p < c->end && *c->p == '"')
		{
			if (!js_string(c, field))
				return false;
			save = c->out;		/* keep the value */
		}
		else
		{
			if (field != NULL)
				*field = NULL;
			if (!js_value(c, depth + 1, NULL))
				return false;
		}
		js_ws(c);
		if (c->p >= c->end || (*c->p != ',' && *c->p != close))
			return false;
		if (*c->p++ == close)
			return true;
	}
}

/*
 * parse_analyze: parse the body of an analyze request into req; on failure
 * *err tells why.  The caller frees req->arena.
 */
static bool
parse_analyze(const StrBuf *body, AnalyzeReq *req, const char **err)
{
	JsonCur		c;

	if ((req->arena = malloc(body->len + 1)) == NULL)
		abort();
	c.p = body->data ? body->data : "";
	c.end = c.p + body->len;
	c.out = req->arena;
	*err = "body is not a JSON object";
	if (!js_value(&c, 0, req) || (js_ws(&c), c.p != c.end))
		return false;
	*err = "photo_id must be a string";
	if (req->photo_id == NULL)
		return false;
	*err = "image_url must be a string";
	return req->image_url != NULL;
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

/* append_items_hash: append 1 to 4 catalogue items chosen by hash of url. */
static void
append_items_hash(StrBuf *sb, const char *url)
{
	uint64_t	h = fnv1a(url);
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
	if (query_raw(req->image_url, "items", &raw, &n))
		append_items_param(&r->body, raw, n);
	else
		append_items_hash(&r->body, req->image_url);
	sb_printf(&r->body, "], \"model\": \"fake-vision-1\", \"usage\": "
			  "{\"input_tokens\": 1200, \"output_tokens\": 150}, "
			  "\"cost_usd\": 0.015}");
}

/* reply_error: a JSON error answer {"error":{code, message, retryable}}. */
static void
reply_error(Reply *r, unsigned int status, const char *code,
			const char *message, bool retryable)
{
	r->status = status;
	r->ctype = JSON_CT;
	sb_printf(&r->body, "{\"error\":{\"code\":\"%s\",\"message\":", code);
	sb_json_str(&r->body, message);
	sb_printf(&r->body, ",\"retryable\":%s}}", retryable ? "true" : "false");
}

/* reply_static: an answer with a constant body. */
static void
reply_static(Reply *r, unsigned int status, const char *ctype,
			 const char *body)
{
	r->status = status;
	r->ctype = ctype;
	r->static_body = body;
}

/*
 * decide_analysis: the answer to call number calls of a parsed request,
 * after the faults of its image URL.  *hang_ms is set for fault=hang.
 */
static void
decide_analysis(Reply *r, const AnalyzeReq *req, long calls, long *hang_ms)
{
	const char *url = req->image_url;
	char		fault[32];
	long		fail_first;
	StrBuf		msg = {0};

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

/* send_reply: queue r on conn; the body goes to MHD. */
static enum MHD_Result
send_reply(struct MHD_Connection *conn, Reply *r)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (r->static_body != NULL || r->body.data == NULL)
	{
		free(r->body.data);
		r->static_body = r->static_body ? r->static_body : "";
		resp = MHD_create_response_from_buffer(strlen(r->static_body),
											   (void *) r->static_body,
											   MHD_RESPMEM_PERSISTENT);
	}
	else
		resp = MHD_create_response_from_buffer(r->body.len, r->body.data,
											   MHD_RESPMEM_MUST_FREE);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
	if (r->retry_after[0] != '\0')
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER,
								r->retry_after);
	if (r->allow != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
	ret = MHD_queue_response(conn, r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* auth_ok: does the request carry the API key (if one is required)? */
static bool
auth_ok(struct MHD_Connection *conn)
{
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
												MHD_HTTP_HEADER_AUTHORIZATION);

	return api_key == NULL || (h != NULL && strncmp(h, "Bearer ", 7) == 0 &&
							   strcmp(h + 7, api_key) == 0);
}

/*
 * handle_analyze: POST /v1/analyze-photo.  Waits (without locks) for the
 * latency and hang of the request, then answers.
 */
static enum MHD_Result
handle_analyze(struct MHD_Connection *conn, Request *rq)
{
	Reply		r = {0};
	AnalyzeReq	req = {0};
	const char *err;
	long		calls = 0,
				hang_ms = 0,
				extra_ms = 0;
	enum MHD_Result ret;

	stats_begin();
	if (!auth_ok(conn))
		reply_error(&r, 401, "AI_ERROR", "invalid api key", false);
	else if (rq->too_big)
		reply_error(&r, 413, "AI_ERROR", "body too large", false);
	else if (!parse_analyze(&rq->body, &req, &err))
		reply_error(&r, 400, "AI_ERROR", err, false);
	else
	{
		calls = photo_calls(req.photo_id, 1);
		extra_ms = query_long(req.image_url, "latency_ms", 0);
		decide_analysis(&r, &req, calls, &hang_ms);
	}
	sleep_ms(base_latency_ms + extra_ms + hang_ms);
	if (log_file != NULL)
		fprintf(log_file, "%lld %s %u %ld\n", (long long) now_us(),
				req.photo_id ? req.photo_id : "-", r.status, calls);
	atomic_fetch_add(r.status == 200 ? &st_ok : &st_errors, 1);
	ret = send_reply(conn, &r);
	atomic_fetch_sub(&st_inflight, 1);
	free(req.arena);
	return ret;
}

/* handle_stats: GET /stats, /stats/photo and /stats/calls. */
static void
handle_stats(struct MHD_Connection *conn, const char *url, Reply *r)
{
	const char *id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
												 "id");

	r->status = 200;
	r->ctype = JSON_CT;
	if (strcmp(url, "/stats/calls") == 0)
	{
		r->ctype = TEXT_CT;
		photos_dump(&r->body);
		return;
	}
	if (strcmp(url, "/stats/photo") == 0)
	{
		if (id == NULL)
			reply_error(r, 400, "AI_ERROR", "id is required", false);
		else
		{
			sb_printf(&r->body, "{\"photo_id\": ");
			sb_json_str(&r->body, id);
			sb_printf(&r->body, ", \"calls\": %ld}", photo_calls(id, 0));
		}
		return;
	}
	pthread_mutex_lock(&rate_lock);
	sb_printf(&r->body, "{\"total\": %ld, \"ok\": %ld, \"errors\": %ld, "
			  "\"distinct_photos\": %ld, \"max_calls_per_photo\": %ld, "
			  "\"inflight\": %ld, \"max_inflight\": %ld, "
			  "\"first_request_us\": %lld, \"last_request_us\": %lld, "
			  "\"max_rps_1s\": %lld}",
			  atomic_load(&st_total), atomic_load(&st_ok),
			  atomic_load(&st_errors), atomic_load(&st_distinct),
			  atomic_load(&st_max_calls), atomic_load(&st_inflight),
			  atomic_load(&st_max_inflight), (long long) first_us,
			  (long long) last_us, (long long) max_rps);
	pthread_mutex_unlock(&rate_lock);
}

/* route: answer a fully received request. */
static enum MHD_Result
route(struct MHD_Connection *conn, const char *url, const char *method,
	  Request *rq)
{
	Reply		r = {0};
	bool		get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0,
				post = strcmp(method, "POST") == 0;

	r.allow = post ? "GET, HEAD" : "POST";
	if (strcmp(url, "/v1/analyze-photo") == 0)
	{
		if (post)
			return handle_analyze(conn, rq);
	}
	else if (strcmp(url, "/reset") == 0)
	{
		if (post)
			stats_reset();
		if (post)
			reply_static(&r, 200, JSON_CT, "{\"ok\":true}");
	}
	else if (strcmp(url, "/health") == 0)
	{
		if (get)
			reply_static(&r, 200, TEXT_CT, "ok");
	}
	else if (strcmp(url, "/stats") == 0 || strcmp(url, "/stats/photo") == 0 ||
			 strcmp(url, "/stats/calls") == 0)
	{
		if (get)
			handle_stats(conn, url, &r);
	}
	else
		reply_static(&r, 404, TEXT_CT, "not found");
	if (r.status == 0)
		reply_static(&r, 405, TEXT_CT, "method not allowed");
	else
		r.allow = NULL;
	return send_reply(conn, &r);
}

/* on_request: MHD access handler; gathers the body, then routes. */
static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
		   const char *method, const char *version, const char *upload_data,
		   size_t *upload_data_size, void **con_cls)
{
	Request    *rq = *con_cls;

	(void) cls;
	(void) version;
	if (rq == NULL)
	{
		*con_cls = rq = calloc(1, sizeof(Request));
		return rq ? MHD_YES : MHD_NO;
	}
	if (*upload_data_size == 0)
		return route(conn, url, method, rq);
	if (rq->body.len + *upload_data_size > MAX_BODY)
		rq->too_big = true;
	else
		sb_append(&rq->body, upload_data, *upload_data_size);
	*upload_data_size = 0;
	return MHD_YES;
}

/* on_completed: MHD completion callback; frees the request context. */
static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	Request    *rq = *con_cls;

	(void) cls;
	(void) conn;
	(void) toe;
	if (rq != NULL)
		free(rq->body.data);
	free(rq);
	*con_cls = NULL;
}

/* parse_args: read the command line into the configuration; exit if bad. */
static void
parse_args(int argc, char **argv, struct sockaddr_in *addr,
		   const char **pidfile)
{
	static const struct option opts[] = {
		{"port", required_argument, NULL, 'p'},
		{"host", required_argument, NULL, 'h'},
		{"latency-ms", required_argument, NULL, 'l'},
		{"api-key", required_argument, NULL, 'k'},
		{"pidfile", required_argument, NULL, 'f'},
		{"log", required_argument, NULL, 'g'},
		{NULL, 0, NULL, 0}
	};
	long		port = -1;
	char	   *end = NULL;
	int			o;
	bool		bad = false;

	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1)
	{
		if (o == 'p')
			port = strtol(optarg, &end, 10);
		else if (o == 'h')
			bad |= inet_pton(AF_INET, optarg, &addr->sin_addr) != 1;
		else if (o == 'l')
			base_latency_ms = strtol(optarg, &end, 10);
		else if (o == 'k')
			api_key = optarg;
		else if (o == 'f')
			*pidfile = optarg;
		else if (o == 'g' && (log_file = fopen(optarg, "a")) == NULL)
		{
			perror(optarg);
			exit(1);
		}
		else if (o == 'g')
			setvbuf(log_file, NULL, _IOLBF, 0);
		else
			bad = true;
		bad |= end != NULL && *end != '\0';
		end = NULL;
	}
	if (bad || optind < argc || port < 0 || port > 65535 || base_latency_ms < 0)
	{
		fprintf(stderr, "usage: fake_ai --port P [--host 127.0.0.1] "
				"[--latency-ms N] [--api-key KEY] [--pidfile F] [--log F]\n");
		exit(2);
	}
	addr->sin_port = htons((uint16_t) port);
}

/* start_daemon: raise the open files limit, start the HTTP daemon. */
static struct MHD_Daemon *
start_daemon(struct sockaddr_in *addr)
{
	struct rlimit rl;
	unsigned int limit = 4096,
				flags = MHD_USE_THREAD_PER_CONNECTION |
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
	{
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < limit + 64)
			limit = rl.rlim_cur > 128 ? (unsigned int) rl.rlim_cur - 64 : 64;
	}
	/* select() cannot watch fds >= FD_SETSIZE: use poll() */
	if (MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES)
		flags |= MHD_USE_POLL;
	return MHD_start_daemon(flags, 0, NULL, NULL, &on_request, NULL,
							MHD_OPTION_SOCK_ADDR, (struct sockaddr *) addr,
							MHD_OPTION_CONNECTION_LIMIT, limit,
							MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096U,
							MHD_OPTION_THREAD_STACK_SIZE, (size_t) 256 * 1024,
							MHD_OPTION_NOTIFY_COMPLETED,
							(MHD_RequestCompletedCallback) &on_completed, NULL,
							MHD_OPTION_END);
}

/* main: start the service, wait for SIGTERM or SIGINT, stop. */
int
main(int argc, char **argv)
{
	struct sockaddr_in addr = {0};
	const char *pidfile = NULL;
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	pthread_condattr_t ca;
	sigset_t	sigs;
	int			sig;
	FILE	   *f;

	parse_args(argc, argv, &addr, &pidfile);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&stop_cond, &ca);
	for (int s = 0; s < NSTRIPES; s++)
	{
		pthread_mutex_init(&stripes[s].lock, NULL);
		stripe_reset(&stripes[s], STRIPE_INIT, false);
	}
	signal(SIGPIPE, SIG_IGN);
	/* the threads inherit this mask: only sigwait() below sees signals */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	if ((d = start_daemon(&addr)) == NULL)
	{
		fprintf(stderr, "fake_ai: cannot listen on port %d\n",
				ntohs(addr.sin_port));
		return 1;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (info != NULL && info->port != 0)
		addr.sin_port = htons(info->port);
	if (pidfile != NULL && ((f = fopen(pidfile, "w")) == NULL ||
							fprintf(f, "%d\n", (int) getpid()) < 0 || fclose(f) != 0))
		perror(pidfile);
	printf("fake_ai listening on %s:%d\n", inet_ntoa(addr.sin_addr),
		   ntohs(addr.sin_port));
	fflush(stdout);
	sigwait(&sigs, &sig);
	pthread_mutex_lock(&stop_lock);
	stopping = true;
	pthread_cond_broadcast(&stop_cond);
	pthread_mutex_unlock(&stop_lock);
	MHD_stop_daemon(d);
	if (pidfile != NULL)
		unlink(pidfile);
	if (log_file != NULL)
		fclose(log_file);
	return 0;
}
