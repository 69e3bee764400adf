/*-------------------------------------------------------------------------
 *
 * fake_ai.h
 *		Shared declarations of the fake AI photo-analysis service.
 *
 * The service is split by concern:
 *	fake_ai.c		main, options, daemon, routing and replies
 *	fake_stats.c	per-photo call counters, global counters, /stats
 *	fake_analyze.c	analyze request parsing, fault injection, answers
 *	fake_image.c	inline images: base64, media type, SHA-256
 *	fake_json.c		string buffers, the tiny JSON scanner and escaper
 *
 *-------------------------------------------------------------------------
 */
#ifndef FAKE_AI_H
#define FAKE_AI_H

#define _GNU_SOURCE
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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

/*
 * The fields of an analyze request; the strings point into arena.  A bit
 * of nonstring (1 << the field's index in fake_json.c's table) is set when
 * the field was given a value that is neither a string nor null.  image is
 * the decoded image_base64 (malloc'ed), sha256 its digest in hex.
 */
typedef struct AnalyzeReq
{
	char	   *arena;
	char	   *photo_id,
			   *image_url,
			   *filename,
			   *room_type,
			   *image_base64,
			   *media_type;
	unsigned int nonstring;
	unsigned char *image;
	size_t		image_len;
	char		sha256[65];
} AnalyzeReq;

/* Bits of AnalyzeReq.nonstring (the order of fake_json.c's field table). */
#define FIELD_IMAGE_URL		(1U << 1)
#define FIELD_IMAGE_BASE64	(1U << 4)
#define FIELD_MEDIA_TYPE	(1U << 5)

/* Largest decoded inline image accepted (5 MiB). */
#define MAX_IMAGE_BYTES		(5 * 1024 * 1024)

/* A cursor of the JSON scanner; strings are decoded at out. */
typedef struct JsonCur
{
	const char *p,
			   *end;
	char	   *out;
} JsonCur;

/* fake_ai.c: configuration, time, replies */
extern long base_latency_ms;
extern FILE *log_file;
extern int64_t now_us(void);
extern void sleep_ms(long ms);
extern void reply_error(Reply *r, unsigned int status, const char *code,
						const char *message, bool retryable);
extern void reply_static(Reply *r, unsigned int status, const char *ctype,
						 const char *body);
extern enum MHD_Result send_reply(struct MHD_Connection *conn, Reply *r);
extern bool auth_ok(struct MHD_Connection *conn);

/* fake_stats.c: counters */
extern uint64_t fnv1a(const char *s);
extern uint64_t fnv1a_bytes(const unsigned char *p, size_t n);
extern void stats_init(void);
extern long photo_calls(const char *id, int add);
extern void image_received(const char *sha256, size_t bytes);
extern int64_t stats_begin(void);
extern int64_t stats_answered(unsigned int status);
extern void stats_end(void);
extern void stats_reset(long new_mark);
extern void handle_stats(struct MHD_Connection *conn, const char *url,
						 Reply *r);

/* fake_analyze.c: POST /v1/analyze-photo */
extern enum MHD_Result handle_analyze(struct MHD_Connection *conn,
									  Request *rq);

/* fake_image.c: inline images */
extern bool check_inline_image(AnalyzeReq *req, unsigned int *status,
							   StrBuf *err);

/* fake_json.c: string buffers and JSON */
extern void sb_append(StrBuf *sb, const char *s, size_t n);
extern void sb_printf(StrBuf *sb, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
extern void sb_json_str(StrBuf *sb, const char *s);
extern int	hexval(char ch);
extern void js_ws(JsonCur *c);
extern bool js_number(JsonCur *c);
extern bool js_value(JsonCur *c, int depth, AnalyzeReq *req);

#endif							/* FAKE_AI_H */
