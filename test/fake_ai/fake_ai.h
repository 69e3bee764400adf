/*-------------------------------------------------------------------------
 *
 * fake_ai.h
 *		Shared declarations of the fake AI photo-analysis service.
 *
 * The service is split by concern:
 *	fake_ai.c		main, options, daemon, routing and replies
 *	fake_stats.c	per-photo call counters, global counters, /stats
 *	fake_analyze.c	analyze request parsing, fault injection, answers
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
extern void stats_init(void);
extern long photo_calls(const char *id, int add);
extern int64_t stats_begin(void);
extern int64_t stats_answered(unsigned int status);
extern void stats_end(void);
extern void stats_reset(long new_mark);
extern void handle_stats(struct MHD_Connection *conn, const char *url,
						 Reply *r);

/* fake_analyze.c: POST /v1/analyze-photo */
extern enum MHD_Result handle_analyze(struct MHD_Connection *conn,
									  Request *rq);

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
