/*-------------------------------------------------------------------------
 *
 * ai_client.c
 *		The AI service contract over libcurl multi: many requests in flight
 *		from one worker, driven from the worker's own wait loop.
 *
 * curl tells us which sockets it wants watched (socket callback) and when
 * it next needs a timeout call (timer callback).  The sockets go into an
 * epoll set of our own, whose single descriptor the worker waits on next to
 * its latch and postmaster death: so the worker reacts to SIGTERM, SIGHUP
 * and new work at all times, also with a thousand requests in flight.
 * Connections are kept alive and reused by the multi handle.  A socket is
 * watched one-shot and stays in the epoll set while its connection waits
 * in curl's cache: one epoll_ctl() per request (to arm it when the request
 * is sent) instead of three (add, and remove when the answer is read).
 *
 * A finished request becomes one JSON result object (ai_result.c).  The
 * same loop drives the object store's downloads and deletions
 * (object_fetch.c, ai_client_add_transfer).
 *
 *-------------------------------------------------------------------------
 */
#include "ai_client_int.h"

#include <sys/epoll.h>
#include <sys/resource.h>
#include <curl/curl.h>

#include "common/base64.h"
#include "common/jsonapi.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* Room in a body for all but an inline image: prompt, schema, names. */
#define AI_BODY_SLACK		(64 * 1024)
/* Socket events handled per drive call. */
#define AI_MAX_EVENTS		256

/* What we know of a socket (AiClient.sockets, indexed by descriptor). */
#define SOCK_IN_SET		0x01	/* added to the epoll set */
#define SOCK_ARMED		0x02	/* one-shot event armed, not yet fired */
#define SOCK_WANT_IN	0x04	/* curl wants to read */
#define SOCK_WANT_OUT	0x08	/* curl wants to write */
#define SOCK_WANT		(SOCK_WANT_IN | SOCK_WANT_OUT)


/*
 * socket_flags
 *		The SOCK_* flags of descriptor s, the table grown to hold it; NULL
 *		when it cannot grow.  malloc(), not palloc(): curl calls us, and an
 *		error must not jump out through it.
 */
static uint8 *
socket_flags(AiClient *client, curl_socket_t s)
{
	if (s < 0)
		return NULL;
	if (s >= client->nsockets)
	{
		int			n = Max(client->nsockets * 2, 1024);
		uint8	   *grown;

		while (n <= s)
			n *= 2;
		grown = realloc(client->sockets, n);
		if (grown == NULL)
			return NULL;
		memset(grown + client->nsockets, 0, n - client->nsockets);
		client->sockets = grown;
		client->nsockets = n;
	}
	return &client->sockets[s];
}

/*
 * arm_socket
 *		Watch s, one-shot, for what curl wants of it.  A descriptor we
 *		believe in the set may be a new socket with the number of a closed
 *		one (closing took it out of the set): then it is added.
 */
static int
arm_socket(AiClient *client, curl_socket_t s, uint8 *flags)
{
	struct epoll_event ev;
	bool		in_set = (*flags & SOCK_IN_SET) != 0;

	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	ev.events = EPOLLONESHOT | ((*flags & SOCK_WANT_IN) ? EPOLLIN : 0) |
		((*flags & SOCK_WANT_OUT) ? EPOLLOUT : 0);
	if (epoll_ctl(client->epfd, in_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev) != 0 &&
		(errno != (in_set ? ENOENT : EEXIST) ||
		 epoll_ctl(client->epfd, in_set ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, s, &ev) != 0))
	{
		elog(LOG, "moverz_batch: epoll_ctl failed for socket %d: %m", (int) s);
		*flags &= ~(SOCK_IN_SET | SOCK_ARMED);
		return -1;
	}
	*flags |= SOCK_IN_SET | SOCK_ARMED;
	return 0;
}

/*
 * socket_callback
 *		curl asks us to watch (or stop watching) socket s.  A socket curl
 *		stops watching stays in the set, disarmed or armed: an event on it
 *		fires at most once, and is not passed on (ai_client_drive).
 */
static int
socket_callback(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	AiClient   *client = (AiClient *) userp;
	uint8	   *flags = socket_flags(client, s);
	uint8		want = ((what & CURL_POLL_IN) ? SOCK_WANT_IN : 0) |
		((what & CURL_POLL_OUT) ? SOCK_WANT_OUT : 0);

	if (flags == NULL)
	{
		elog(LOG, "moverz_batch: no memory to watch socket %d", (int) s);
		return -1;
	}
	if (what == CURL_POLL_REMOVE)
	{
		*flags &= ~SOCK_WANT;
		return 0;
	}
	*flags = (*flags & ~SOCK_WANT) | want;
	return arm_socket(client, s, flags);
}

/*
 * timer_callback
 *		curl wants a timeout call in timeout_ms (-1: no timer).
 */
static int
timer_callback(CURLM *multi, long timeout_ms, void *userp)
{
	AiClient   *client = (AiClient *) userp;

	client->timer_due = timeout_ms < 0 ? 0 :
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/*
 * write_callback
 *		Collect the answer; refuse one larger than AI_MAX_RESPONSE.
 */
static size_t
write_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	AiRequest  *req = (AiRequest *) userp;
	size_t		len = size * nmemb;

	if (req->response.len + len > AI_MAX_RESPONSE)
	{
		req->too_large = true;
		return 0;
	}
	appendBinaryStringInfo(&req->response, data, (int) len);
	return len;
}

/*
 * check_multi
 *		Raise an error for a failed curl_multi_* call.
 */
static void
check_multi(CURLMcode rc, const char *what)
{
	if (rc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("moverz_batch: %s failed: %s", what, curl_multi_strerror(rc))));
}

/*
 * raise_fd_limit
 *		Allow as many sockets as the hard limit permits: a worker may keep
 *		thousands of requests in flight.
 */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			elog(LOG, "moverz_batch: could not raise the file descriptor limit: %m");
	}
}

/*
 * ai_client_create
 *		A client with no request in flight, configured from the settings.
 */
AiClient *
ai_client_create(void)
{
	AiClient   *client;
	MemoryContext cxt;
	CURLcode	grc;

	grc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (grc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("moverz_batch: curl_global_init failed: %s", curl_easy_strerror(grc))));
	raise_fd_limit();

	cxt = AllocSetContextCreate(TopMemoryContext, "moverz_batch AI client",
								ALLOCSET_DEFAULT_SIZES);
	client = MemoryContextAllocZero(cxt, sizeof(AiClient));
	client->cxt = cxt;
	client->parse_cxt = AllocSetContextCreate(cxt, "moverz_batch JSON check",
											  ALLOCSET_SMALL_SIZES);
	dlist_init(&client->inflight);
	client->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (client->epfd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("moverz_batch: could not create epoll set: %m")));
	client->multi = curl_multi_init();
	if (client->multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("moverz_batch: curl_multi_init failed")));
	check_multi(curl_multi_setopt(client->multi, CURLMOPT_SOCKETFUNCTION, socket_callback),
				"CURLMOPT_SOCKETFUNCTION");
	check_multi(curl_multi_setopt(client->multi, CURLMOPT_SOCKETDATA, client),
				"CURLMOPT_SOCKETDATA");
	check_multi(curl_multi_setopt(client->multi, CURLMOPT_TIMERFUNCTION, timer_callback),
				"CURLMOPT_TIMERFUNCTION");
	check_multi(curl_multi_setopt(client->multi, CURLMOPT_TIMERDATA, client),
				"CURLMOPT_TIMERDATA");
	ai_client_configure(client);
	return client;
}

/*
 * ai_client_configure
 *		(Re)read the settings: provider, endpoint, key, connection cache
 *		size.  A model API's prompt is read again next (ai_client_load).
 */
void
ai_client_configure(AiClient *client)
{
	ai_shape_configure(&client->shape, client->cxt);
	check_multi(curl_multi_setopt(client->multi, CURLMOPT_MAXCONNECTS,
								  (long) moverz_max_inflight),
				"CURLMOPT_MAXCONNECTS");
}

/*
 * ai_client_needs_prompt
 *		Must the prompt be read (ai_client_load) before photos are sent?
 */
bool
ai_client_needs_prompt(AiClient *client)
{
	return ai_shape_needs_frame(&client->shape);
}

/*
 * ai_client_load
 *		Read the prompt and schema of a model API (a short transaction);
 *		false when they could not be read.
 */
bool
ai_client_load(AiClient *client)
{
	return ai_shape_load(&client->shape, client->cxt);
}

/* Accessors for the wait loop. */
int
ai_client_event_fd(AiClient *client)
{
	return client->epfd;
}

int
ai_client_inflight(AiClient *client)
{
	return client->ninflight;
}

/*
 * ai_client_image_bytes
 *		The bytes of the uploaded photos in flight.
 */
int64
ai_client_image_bytes(AiClient *client)
{
	return client->image_bytes;
}

/*
 * ai_client_timeout_ms
 *		Milliseconds until curl's next timeout (0: due now; -1: none).
 */
long
ai_client_timeout_ms(AiClient *client)
{
	long		secs;
	int			usecs;

	if (client->timer_due == 0)
		return -1;
	TimestampDifference(GetCurrentTimestamp(), client->timer_due, &secs, &usecs);
	return secs * 1000 + (usecs + 999) / 1000;
}

/*
 * transfer_failure
 *		Name a failed transfer by the contract: TIMEOUT or NETWORK_ERROR
 *		(retried), or AI_ERROR for an answer too large to take (final).
 */
static const char *
transfer_failure(AiRequest *req, CURLcode rc)
{
	if (req->too_large)
		return "AI_ERROR";
	if (rc == CURLE_OPERATION_TIMEDOUT)
		return "TIMEOUT";
	return "NETWORK_ERROR";
}

/*
 * ai_release_request
 *		Give the easy handle back to the pool and free the request.
 */
void
ai_release_request(AiClient *client, AiRequest *req)
{
	if (req->easy != NULL)
	{
		if (client->nidle < (int) lengthof(client->idle))
			client->idle[client->nidle++] = req->easy;
		else
			curl_easy_cleanup(req->easy);
	}
	for (int i = 0; i < AI_AUTH_LINES; i++)
	{
		if (req->auth[i] != NULL)
		{
			explicit_bzero(req->auth[i], strlen(req->auth[i]));
			pfree(req->auth[i]);
		}
	}
	client->image_bytes -= req->image_bytes;
	pfree(req->payload.data);
	pfree(req->response.data);
	pfree(req->user_id);
	pfree(req);
}

/*
 * finish_request
 *		A transfer ended (rc): record its result and free it.
 */
static void
finish_request(AiClient *client, AiRequest *req, CURLcode rc)
{
	long		status = 0;
	curl_off_t	retry_after = -1;
	CURLcode	irc;

	if (req->done != NULL)
	{
		/* another kind of transfer (ai_client_add_transfer): its owner's */
		check_multi(curl_multi_remove_handle(client->multi, req->easy),
					"curl_multi_remove_handle");
		dlist_delete(&req->node);
		client->ninflight--;
		req->done(req->done_arg, req->easy, (int) rc);
		pfree(req);
		return;
	}
	if (rc == CURLE_OK)
	{
		irc = curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
		if (irc == CURLE_OK)
			irc = curl_easy_getinfo(req->easy, CURLINFO_RETRY_AFTER, &retry_after);
		if (irc != CURLE_OK)
			ai_add_result(client, req, 0, "NETWORK_ERROR", curl_easy_strerror(irc), 0);
		else
			ai_add_result(client, req, status, NULL, NULL,
					   retry_after > 0 ? (long) Min(Min(retry_after, (curl_off_t) 86400) * 1000,
													(curl_off_t) moverz_max_retry_after_ms) : 0);
	}
	else if (req->too_large &&
			 curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status >= 500)
	{
		/* a 5xx with a huge body is a 5xx (retried), its body cut */
		ai_add_result(client, req, status, NULL, NULL, 0);
	}
	else
		ai_add_result(client, req, 0, transfer_failure(req, rc),
				   req->too_large ? "AI response larger than 1 MB" :
				   (req->errbuf[0] ? req->errbuf : curl_easy_strerror(rc)), 0);

	check_multi(curl_multi_remove_handle(client->multi, req->easy),
				"curl_multi_remove_handle");
	dlist_delete(&req->node);
	client->ninflight--;
	ai_release_request(client, req);
}

#define SETOPT(req, opt, val) \
	do { \
		CURLcode	rc_ = curl_easy_setopt((req)->easy, (opt), (val)); \
		if (rc_ != CURLE_OK) \
		{ \
			snprintf((req)->errbuf, CURL_ERROR_SIZE, "curl_easy_setopt(%s): %s", \
					 #opt, curl_easy_strerror(rc_)); \
			return false; \
		} \
	} while (0)

/*
 * link_headers
 *		The request's header list, in its own nodes (curl only reads it).
 */
static struct curl_slist *
link_headers(AiClient *client, AiRequest *req)
{
	const char *lines[AI_HEADER_LINES];
	int			n = 0;

	snprintf(req->idempotency, sizeof(req->idempotency), "Idempotency-Key: %s", req->id);
	lines[0] = req->idempotency;
	lines[1] = "Content-Type: application/json";
	lines[2] = "Accept: application/json";
	lines[3] = "Expect:";
	/* a SIGHUP may replace the shape's before curl has read the list */
	for (int i = 0; i < AI_AUTH_LINES; i++)
	{
		if (client->shape.auth[i] != NULL)
			req->auth[i] = MemoryContextStrdup(client->cxt, client->shape.auth[i]);
		lines[4 + i] = req->auth[i];
	}
	for (int i = 0; i < (int) lengthof(lines); i++)
	{
		if (lines[i] == NULL)
			continue;
		req->headers[n].data = unconstify(char *, lines[i]);
		req->headers[n].next = NULL;
		if (n > 0)
			req->headers[n - 1].next = &req->headers[n];
		n++;
	}
	return req->headers;
}

/*
 * setup_easy
 *		Prepare the transfer of one request.  On failure, req->errbuf says
 *		why and false is returned.
 */
static bool
setup_easy(AiClient *client, AiRequest *req)
{
	req->easy = client->nidle > 0 ? client->idle[--client->nidle] : curl_easy_init();
	if (req->easy == NULL)
	{
		strlcpy(req->errbuf, "curl_easy_init failed", CURL_ERROR_SIZE);
		return false;
	}
	curl_easy_reset(req->easy);
	SETOPT(req, CURLOPT_URL, client->shape.endpoint);
	SETOPT(req, CURLOPT_HTTPHEADER, link_headers(client, req));
	SETOPT(req, CURLOPT_POSTFIELDSIZE, (long) req->payload.len);
	SETOPT(req, CURLOPT_POSTFIELDS, req->payload.data);
	SETOPT(req, CURLOPT_WRITEFUNCTION, write_callback);
	SETOPT(req, CURLOPT_WRITEDATA, req);
	SETOPT(req, CURLOPT_PRIVATE, req);
	SETOPT(req, CURLOPT_ERRORBUFFER, req->errbuf);
	SETOPT(req, CURLOPT_NOSIGNAL, 1L);
	SETOPT(req, CURLOPT_TIMEOUT_MS, (long) moverz_request_timeout_ms);
	SETOPT(req, CURLOPT_CONNECTTIMEOUT_MS, (long) moverz_connect_timeout_ms);
	SETOPT(req, CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(req, CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(req, CURLOPT_TCP_NODELAY, 1L);
	SETOPT(req, CURLOPT_USERAGENT, "moverz_batch/" MOVERZ_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(req, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SETOPT(req, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	return true;
}

/*
 * ai_new_request
 *		A request for photo, in the client's context, not yet sent.
 */
AiRequest *
ai_new_request(AiClient *client, const AiPhoto *photo)
{
	AiRequest  *req = MemoryContextAllocZero(client->cxt, sizeof(AiRequest));

	strlcpy(req->id, photo->id, sizeof(req->id));
	strlcpy(req->batch_id, photo->batch_id, sizeof(req->batch_id));
	req->user_id = MemoryContextStrdup(client->cxt, photo->user_id);
	req->attempt = photo->attempt;
	req->provider = client->shape.provider;
	req->started = GetCurrentTimestamp();
	return req;
}

/*
 * ai_client_add_transfer
 *		Drive another kind of transfer in the same curl multi loop (the
 *		downloads and deletions of object_fetch.c): easy is set up by the
 *		caller, counts as a request in flight, and done(arg, easy, rc) is
 *		called once it ended, to take the easy handle back.  False (and
 *		done never called) when curl refuses it.
 */
bool
ai_client_add_transfer(AiClient *client, void *easy, AiTransferDone done, void *arg)
{
	AiRequest  *req = MemoryContextAllocZero(client->cxt, sizeof(AiRequest));
	CURLcode	rc = curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	CURLMcode	mrc;

	req->easy = easy;
	req->done = done;
	req->done_arg = arg;
	mrc = rc == CURLE_OK ? curl_multi_add_handle(client->multi, easy) : CURLM_INTERNAL_ERROR;
	if (mrc != CURLM_OK)
	{
		pfree(req);
		return false;
	}
	dlist_push_tail(&client->inflight, &req->node);
	client->ninflight++;
	return true;
}

/*
 * ai_client_start
 *		Send one photo to the AI service.  Never loses it: a request that
 *		cannot even start becomes a failed result at once.
 */
void
ai_client_start(AiClient *client, const AiPhoto *photo)
{
	AiRequest  *req;
	MemoryContext oldcxt;
	CURLMcode	mrc;

	if (photo->uploaded && photo->image_b64 == NULL)
	{
		/* nothing to send, ever: final */
		ai_client_fail_photo(client, photo, "AI_ERROR",
							 "the uploaded file of this photo is gone (its bytes are no longer stored)");
		return;
	}
	req = ai_new_request(client, photo);
	oldcxt = MemoryContextSwitchTo(client->cxt);
	req->image_bytes = photo->image_bytes;
	client->image_bytes += req->image_bytes;
	if (photo->image_b64 != NULL)
	{
		/* the bytes inline: the body sized once, not doubled up to it */
		req->payload.maxlen = (int) (pg_b64_enc_len((int) photo->image_bytes) + AI_BODY_SLACK);
		req->payload.data = palloc(req->payload.maxlen);
		resetStringInfo(&req->payload);
	}
	else
		initStringInfo(&req->payload);
	if (!ai_shape_needs_frame(&client->shape))
		ai_shape_body(&client->shape, &req->payload, photo);
	if (client->shape.provider != AI_PROVIDER_MOVERZ && client->shape.prompt_version != NULL)
		strlcpy(req->prompt_version, client->shape.prompt_version, sizeof(req->prompt_version));
	initStringInfo(&req->response);
	MemoryContextSwitchTo(oldcxt);

	dlist_push_tail(&client->inflight, &req->node);
	client->ninflight++;
	if (req->payload.len == 0)
		strlcpy(req->errbuf, "the AI prompt could not be read from the database", CURL_ERROR_SIZE);
	if (req->payload.len == 0 || !setup_easy(client, req))
	{
		ai_add_result(client, req, 0, "NETWORK_ERROR", req->errbuf, 0);
		dlist_delete(&req->node);
		client->ninflight--;
		ai_release_request(client, req);
		return;
	}
	mrc = curl_multi_add_handle(client->multi, req->easy);
	req->sent = (mrc == CURLM_OK);
	if (mrc != CURLM_OK)
	{
		ai_add_result(client, req, 0, "NETWORK_ERROR", curl_multi_strerror(mrc), 0);
		dlist_delete(&req->node);
		client->ninflight--;
		ai_release_request(client, req);
	}
}

/*
 * ai_client_drive
 *		Let curl progress: the sockets epoll reports ready (when
 *		socket_ready), then its timer if due; collect finished transfers.
 */
void
ai_client_drive(AiClient *client, bool socket_ready)
{
	int			running;
	int			left;
	CURLMsg    *msg;

	/* every socket that is ready (a burst of answers is read in one go) */
	for (int n = AI_MAX_EVENTS, round = 0; socket_ready && n == AI_MAX_EVENTS && round < 4; round++)
	{
		struct epoll_event evs[AI_MAX_EVENTS];

		n = epoll_wait(client->epfd, evs, AI_MAX_EVENTS, 0);
		if (n < 0 && errno != EINTR)
			elog(LOG, "moverz_batch: epoll_wait failed: %m");
		for (int i = 0; i < n; i++)
		{
			int			flags = 0;

			/* the event fired: the socket is disarmed (it is in the table) */
			client->sockets[evs[i].data.fd] &= ~SOCK_ARMED;
			/* a connection waiting in curl's cache (closed by the server?) */
			if (!(client->sockets[evs[i].data.fd] & SOCK_WANT))
				continue;
			if (evs[i].events & EPOLLIN)
				flags |= CURL_CSELECT_IN;
			if (evs[i].events & EPOLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				flags |= CURL_CSELECT_ERR;
			check_multi(curl_multi_socket_action(client->multi, evs[i].data.fd, flags, &running),
						"curl_multi_socket_action");
		}
		/* arm again the sockets curl still watches (it said nothing new) */
		for (int i = 0; i < n; i++)
		{
			uint8	   *flags = &client->sockets[evs[i].data.fd];

			if ((*flags & SOCK_WANT) && !(*flags & SOCK_ARMED) &&
				arm_socket(client, evs[i].data.fd, flags) != 0)
				ereport(ERROR,
						(errcode_for_socket_access(),
						 errmsg("moverz_batch: could not watch socket %d of a request in flight",
								evs[i].data.fd)));
		}
	}
	if (client->timer_due != 0 && client->timer_due <= GetCurrentTimestamp())
	{
		client->timer_due = 0;
		check_multi(curl_multi_socket_action(client->multi, CURL_SOCKET_TIMEOUT, 0, &running),
					"curl_multi_socket_action");
	}
	while ((msg = curl_multi_info_read(client->multi, &left)) != NULL)
	{
		AiRequest  *req = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req) != CURLE_OK ||
			req == NULL)
			elog(ERROR, "moverz_batch: finished transfer without its request");
		finish_request(client, req, msg->data.result);
	}
}
