/*-------------------------------------------------------------------------
 *
 * fake_stats.c
 *		Call counters of the fake AI service and its /stats endpoints.
 *
 * The per-photo counters and the inline images received are two striped,
 * mutex-protected open-addressing hash tables; the global counters are
 * atomics.  The times of the first,
 * last and "mark"-th analyze requests, of the last answer, and the highest
 * rate per second are kept under rate_lock.
 *
 *-------------------------------------------------------------------------
 */
#include "fake_ai.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NSTRIPES		64				/* lock stripes of the photo table */
#define STRIPE_INIT		4096			/* initial slots of a photo stripe */
#define IMAGE_STRIPE_INIT 64			/* initial slots of an image stripe */

/*
 * An entry of a table (a photo id, or the SHA-256 of an image); key is NULL
 * in a free slot.  bytes is an image's size, seq the order of the entries.
 */
typedef struct Slot
{
	char	   *key;
	uint64_t	hash;
	long		calls;
	size_t		bytes;
	long		seq;
} Slot;

/* A lock stripe of a table, padded against false sharing. */
typedef struct Stripe
{
	pthread_mutex_t lock;
	Slot	   *slots;
	size_t		cap,
				used;
	char		pad[64];
} Stripe;

/* A table: its stripes, their initial size, the number of its entries. */
typedef struct Table
{
	Stripe		stripes[NSTRIPES];
	size_t		init_cap;
	atomic_long distinct;
} Table;

/* Global counters. */
static atomic_long st_total, st_ok, st_errors, st_max_calls,
			st_inflight, st_max_inflight;

/*
 * Times of the first and last analyze requests, and their rate; the number
 * of requests since the reset, the time the mark-th came, and the time of
 * the last answer.
 */
static pthread_mutex_t rate_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t first_us, last_us, cur_sec, cur_count, max_rps;
static int64_t received, mark, mark_us, last_answer_us;

/* The calls per photo id, and the inline images received (by SHA-256). */
static Table photos = {.init_cap = STRIPE_INIT},
			images = {.init_cap = IMAGE_STRIPE_INIT};

/* fnv1a_bytes: 64-bit FNV-1a hash of the n bytes p. */
uint64_t
fnv1a_bytes(const unsigned char *p, size_t n)
{
	uint64_t	h = 14695981039346656037ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

/* fnv1a: 64-bit FNV-1a hash of a C string. */
uint64_t
fnv1a(const char *s)
{
	return fnv1a_bytes((const unsigned char *) s, strlen(s));
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

/* table_init: set up the lock stripes of t. */
static void
table_init(Table *t)
{
	for (int s = 0; s < NSTRIPES; s++)
	{
		pthread_mutex_init(&t->stripes[s].lock, NULL);
		stripe_reset(&t->stripes[s], t->init_cap, false);
	}
}

/* stats_init: set up the tables (once, at start). */
void
stats_init(void)
{
	table_init(&photos);
	table_init(&images);
}

/* table_reset: forget every entry of t. */
static void
table_reset(Table *t)
{
	for (int s = 0; s < NSTRIPES; s++)
	{
		pthread_mutex_lock(&t->stripes[s].lock);
		stripe_reset(&t->stripes[s], t->init_cap, false);
		pthread_mutex_unlock(&t->stripes[s].lock);
	}
	atomic_store(&t->distinct, 0);
}

/*
 * table_count: the calls of key in t after adding add (0 or 1); a new
 * entry gets bytes and the next sequence number.
 */
static long
table_count(Table *t, const char *key, int add, size_t bytes)
{
	static atomic_long next_seq;
	uint64_t	h = fnv1a(key);
	Stripe	   *st = &t->stripes[h % NSTRIPES];
	Slot	   *slot;
	long		calls;

	pthread_mutex_lock(&st->lock);
	slot = stripe_find(st, key, h);
	if (slot->key == NULL && add > 0)
	{
		if ((st->used + 1) * 2 > st->cap)
		{
			stripe_reset(st, st->cap * 2, true);
			slot = stripe_find(st, key, h);
		}
		if ((slot->key = strdup(key)) == NULL)
			abort();
		slot->hash = h;
		slot->calls = 0;
		slot->bytes = bytes;
		slot->seq = atomic_fetch_add(&next_seq, 1);
		st->used++;
		atomic_fetch_add(&t->distinct, 1);
	}
	calls = slot->key ? (slot->calls += add) : 0;
	pthread_mutex_unlock(&st->lock);
	return calls;
}

/* photo_calls: the number of calls of photo id, after adding add (0 or 1). */
long
photo_calls(const char *id, int add)
{
	long		calls = table_count(&photos, id, add, 0);

	atomic_max(&st_max_calls, calls);
	return calls;
}

/* image_received: count a call with the inline image of this SHA-256. */
void
image_received(const char *sha256, size_t bytes)
{
	table_count(&images, sha256, 1, bytes);
}

/* photos_dump: append a line "photo_id calls" per photo to sb. */
static void
photos_dump(StrBuf *sb)
{
	for (int s = 0; s < NSTRIPES; s++)
	{
		Stripe	   *st = &photos.stripes[s];

		pthread_mutex_lock(&st->lock);
		for (size_t i = 0; i < st->cap; i++)
			if (st->slots[i].key != NULL)
				sb_printf(sb, "%s %ld\n", st->slots[i].key, st->slots[i].calls);
		pthread_mutex_unlock(&st->lock);
	}
}

/* slot_by_seq: qsort order of copied slots, by sequence number. */
static int
slot_by_seq(const void *a, const void *b)
{
	long		x = ((const Slot *) a)->seq,
				y = ((const Slot *) b)->seq;

	return (x > y) - (x < y);
}

/*
 * images_dump: append {"images": [{"sha256", "bytes", "calls"}, ...]} to
 * sb, in the order the images were first received.
 */
static void
images_dump(StrBuf *sb)
{
	Slot	   *all = NULL;
	size_t		n = 0,
				cap = 0;

	for (int s = 0; s < NSTRIPES; s++)
	{
		Stripe	   *st = &images.stripes[s];

		pthread_mutex_lock(&st->lock);
		for (size_t i = 0; i < st->cap; i++)
		{
			if (st->slots[i].key == NULL)
				continue;
			if (n == cap && (all = realloc(all, (cap = cap ? 2 * cap : 64) * sizeof(Slot))) == NULL)
				abort();
			all[n] = st->slots[i];
			if ((all[n++].key = strdup(st->slots[i].key)) == NULL)
				abort();
		}
		pthread_mutex_unlock(&st->lock);
	}
	qsort(all, n, sizeof(Slot), slot_by_seq);
	sb_printf(sb, "{\"images\": [");
	for (size_t i = 0; i < n; i++)
	{
		sb_printf(sb, "%s{\"sha256\": \"%s\", \"bytes\": %zu, \"calls\": %ld}",
				  i ? ", " : "", all[i].key, all[i].bytes, all[i].calls);
		free(all[i].key);
	}
	sb_printf(sb, "]}");
	free(all);
}

/*
 * stats_begin: account for an analyze request just received.  Returns the
 * time it was counted at (CLOCK_REALTIME µs).
 */
int64_t
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
	if (++received == mark)
		mark_us = now;
	if (now / 1000000 != cur_sec)
	{
		cur_sec = now / 1000000;
		cur_count = 0;
	}
	if (++cur_count > max_rps)
		max_rps = cur_count;
	pthread_mutex_unlock(&rate_lock);
	return now;
}

/*
 * stats_answered: count an analyze answer of status as ok or an error.
 * Returns the time it was counted at, as last_answer_us.
 */
int64_t
stats_answered(unsigned int status)
{
	int64_t		now = now_us();

	atomic_fetch_add(status == 200 ? &st_ok : &st_errors, 1);
	pthread_mutex_lock(&rate_lock);
	last_answer_us = now;
	pthread_mutex_unlock(&rate_lock);
	return now;
}

/* stats_end: account for an analyze request whose answer is queued. */
void
stats_end(void)
{
	atomic_fetch_sub(&st_inflight, 1);
}

/*
 * stats_reset: zero the counters, forget the photos and images.  inflight is a
 * gauge of the requests being served, so it is kept.  The arrival time of
 * request number new_mark (counted from now; 0: none) will be recorded.
 */
void
stats_reset(long new_mark)
{
	atomic_store(&st_total, 0);
	atomic_store(&st_ok, 0);
	atomic_store(&st_errors, 0);
	atomic_store(&st_max_calls, 0);
	atomic_store(&st_max_inflight, atomic_load(&st_inflight));
	pthread_mutex_lock(&rate_lock);
	first_us = last_us = cur_sec = cur_count = max_rps = 0;
	received = mark_us = last_answer_us = 0;
	mark = new_mark;
	pthread_mutex_unlock(&rate_lock);
	table_reset(&photos);
	table_reset(&images);
}

/* handle_stats: GET /stats, /stats/photo, /stats/calls and /stats/images. */
void
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
	if (strcmp(url, "/stats/images") == 0)
	{
		images_dump(&r->body);
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
			  "\"max_rps_1s\": %lld, \"mark_request_us\": %lld, "
			  "\"last_answer_us\": %lld}",
			  atomic_load(&st_total), atomic_load(&st_ok),
			  atomic_load(&st_errors), atomic_load(&photos.distinct),
			  atomic_load(&st_max_calls), atomic_load(&st_inflight),
			  atomic_load(&st_max_inflight), (long long) first_us,
			  (long long) last_us, (long long) max_rps, (long long) mark_us,
			  (long long) last_answer_us);
	pthread_mutex_unlock(&rate_lock);
}
