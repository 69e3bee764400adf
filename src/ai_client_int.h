/*-------------------------------------------------------------------------
 *
 * ai_client_int.h
 *		The AI client's private structures, shared by ai_client.c (the
 *		curl multi loop) and ai_result.c (results for complete_photos()).
 *
 *-------------------------------------------------------------------------
 */
#ifndef AI_CLIENT_INT_H
#define AI_CLIENT_INT_H

#include "moverz_batch.h"

#include <curl/curl.h>

#include "lib/ilist.h"
#include "lib/stringinfo.h"

/* Largest answer we accept from the AI service. */
#define AI_MAX_RESPONSE		(1024 * 1024)
/* Most JSON of results handed over for one write-back. */
#define AI_MAX_WRITEBACK_BYTES	(64 * 1024 * 1024)
/* Longest non-JSON body kept in an error message. */
#define AI_MAX_BODY_TEXT	300
/*
 * Header lines of a request: Idempotency-Key, Content-Type, Accept, Expect
 * and the provider's (its key, its API version).
 */
#define AI_HEADER_LINES		(4 + AI_AUTH_LINES)

/* One request in flight. */
typedef struct AiRequest
{
	dlist_node	node;
	CURL	   *easy;
	struct curl_slist headers[AI_HEADER_LINES];	/* linked here: no allocation */
	char		idempotency[64];	/* "Idempotency-Key: <photo id>" */
	char	   *auth[AI_AUTH_LINES];	/* copies of the shape's, or NULL */
	int			provider;		/* the provider it was sent to */
	char		prompt_version[32];	/* and the prompt, for a model API */
	bool		sent;			/* handed to curl (not failed before leaving) */
	StringInfoData payload;		/* the request body */
	StringInfoData response;	/* the answer, as received */
	bool		too_large;
	char		id[40];
	char		batch_id[40];
	char	   *user_id;
	int			attempt;
	int64		image_bytes;	/* of an uploaded photo, held in payload */
	AiTransferDone done;		/* a transfer of another kind: its callback */
	void	   *done_arg;
	TimestampTz started;
	char		errbuf[CURL_ERROR_SIZE];
} AiRequest;

struct AiClient
{
	MemoryContext cxt;			/* requests and results live here */
	MemoryContext parse_cxt;	/* scratch of moverz_json_parses(), reset per call */
	CURLM	   *multi;
	int			epfd;			/* epoll set of curl's sockets */
	TimestampTz timer_due;		/* curl's next timeout; 0 = none */
	uint8	   *sockets;		/* SOCK_* flags, by descriptor */
	int			nsockets;		/* entries allocated */
	dlist_head	inflight;
	int			ninflight;
	int64		image_bytes;	/* of the uploaded photos in flight */
	CURL	   *idle[64];		/* easy handles kept for reuse */
	int			nidle;
	AiResult   *results;		/* finished, not yet written back */
	int			nresults;
	int			maxresults;
	AiShape		shape;			/* where and how requests are sent */
};

/* ai_client.c */
extern AiRequest *ai_new_request(AiClient *client, const AiPhoto *photo);
extern void ai_release_request(AiClient *client, AiRequest *req);

/* ai_result.c */
extern void ai_add_result(AiClient *client, AiRequest *req, long http_status,
						  const char *tcode, const char *tmsg, long retry_after_ms);

#endif							/* AI_CLIENT_INT_H */
