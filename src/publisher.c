/*-------------------------------------------------------------------------
 *
 * publisher.c
 *		The progress publisher: a background worker that POSTs each
 *		committed change of a batch (publish_queue.c) to the Nchan publisher
 *		location, where browsers follow it over SSE or WebSocket.
 *
 * It has no database connection and holds nothing while it waits: it takes
 * the next event from the shared ring, sends it with libcurl, and waits on
 * its latch, postmaster death and curl's sockets together (one epoll set of
 * curl's sockets, waited on as one descriptor), so SIGTERM and SIGHUP are
 * handled while a request is in flight.  One request at a time, on one
 * kept-alive connection: the events of a batch reach Nchan in commit order.
 * After a batch's final event (finished, inventory ready) its channel is
 * deleted, which ends every subscriber's stream.
 *
 * Nchan down or refusing: the event is dropped, one WARNING is logged when
 * delivery starts failing and one LOG line when it works again; the
 * pipeline never waits for it.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include <sys/epoll.h>
#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "utils/timestamp.h"

/* Time limits of one request to Nchan (loopback). */
#define PUBLISH_CONNECT_TIMEOUT_MS	1000
#define PUBLISH_TIMEOUT_MS			5000

/* The publisher's state. */
typedef struct Publisher
{
	CURLM	   *multi;
	CURL	   *easy;
	int			epfd;			/* curl's sockets */
	TimestampTz timer_due;		/* when curl wants its timeout action; 0: never */
	bool		busy;			/* a request is in flight */
	bool		deleting;		/* it is the DELETE after a final event */
	bool		failing;		/* the last delivery failed (logged once) */
	MoverzWorkerSlot *slot;		/* worker_status: events delivered, failed */
	MoverzPublishEvent event;	/* the event being delivered */
	StringInfoData url;
	struct curl_slist *headers;
	char		errbuf[CURL_ERROR_SIZE];
} Publisher;

/*
 * socket_cb
 *		curl's socket callback: watch s for what curl wants (level
 *		triggered), or stop watching it.
 */
static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	Publisher  *pub = (Publisher *) userp;
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		(void) epoll_ctl(pub->epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	if (epoll_ctl(pub->epfd, EPOLL_CTL_MOD, s, &ev) != 0 &&
		(errno != ENOENT || epoll_ctl(pub->epfd, EPOLL_CTL_ADD, s, &ev) != 0))
		return -1;
	return 0;
}

/*
 * timer_cb
 *		curl's timer callback: when it next wants socket_action(TIMEOUT),
 *		kept as a deadline (curl calls this only when it changes, so a wait
 *		woken by the latch must not start the interval again).
 */
static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	((Publisher *) userp)->timer_due =
		timeout_ms < 0 ? 0 : TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/*
 * timer_left_ms
 *		Milliseconds until curl's deadline (0: due now), -1 when none.
 */
static long
timer_left_ms(const Publisher *pub)
{
	long		ms;

	if (pub->timer_due == 0)
		return -1;
	ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), pub->timer_due);
	return Max(ms, 0);
}

/*
 * discard_body
 *		Nchan's answer (channel information) is not needed.
 */
static size_t
discard_body(char *data, size_t size, size_t nmemb, void *userp)
{
	return size * nmemb;
}

/*
 * check_curl
 *		Every libcurl setup call must succeed; a failure is a bug or no
 *		memory: the worker exits and is restarted.
 */
static void
check_curl(int code, bool multi, const char *what)
{
	if (code != 0)
		ereport(FATAL,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("moverz_batch publisher: %s failed: %s", what,
						multi ? curl_multi_strerror((CURLMcode) code) : curl_easy_strerror((CURLcode) code))));
}

/*
 * publisher_init
 *		curl's multi handle with our callbacks, the easy handle reused for
 *		every request, and the epoll set.
 */
static void
publisher_init(Publisher *pub)
{
	memset(pub, 0, sizeof(*pub));
	check_curl(curl_global_init(CURL_GLOBAL_DEFAULT), false, "curl_global_init");
	pub->multi = curl_multi_init();
	pub->easy = curl_easy_init();
	pub->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (pub->multi == NULL || pub->easy == NULL || pub->epfd < 0)
		ereport(FATAL,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("moverz_batch publisher: cannot set up libcurl: %m")));
	pub->timer_due = 0;
	initStringInfo(&pub->url);
	check_curl(curl_multi_setopt(pub->multi, CURLMOPT_SOCKETFUNCTION, socket_cb), true, "CURLMOPT_SOCKETFUNCTION");
	check_curl(curl_multi_setopt(pub->multi, CURLMOPT_SOCKETDATA, pub), true, "CURLMOPT_SOCKETDATA");
	check_curl(curl_multi_setopt(pub->multi, CURLMOPT_TIMERFUNCTION, timer_cb), true, "CURLMOPT_TIMERFUNCTION");
	check_curl(curl_multi_setopt(pub->multi, CURLMOPT_TIMERDATA, pub), true, "CURLMOPT_TIMERDATA");
	pub->headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (pub->headers == NULL)
		ereport(FATAL, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
}

/*
 * start_request
 *		Send the current event (POST of its state), or the DELETE of its
 *		channel, to <publish_url><batch id>.
 */
static void
start_request(Publisher *pub)
{
	CURL	   *e = pub->easy;

	resetStringInfo(&pub->url);
	appendStringInfo(&pub->url, "%s%s", moverz_publish_url, pub->event.batch_id);
	curl_easy_reset(e);
	pub->errbuf[0] = '\0';
	check_curl(curl_easy_setopt(e, CURLOPT_URL, pub->url.data), false, "CURLOPT_URL");
#if LIBCURL_VERSION_NUM >= 0x075500
	check_curl(curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https"), false, "CURLOPT_PROTOCOLS_STR");
#else
	check_curl(curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS)), false,
			   "CURLOPT_PROTOCOLS");
#endif
	check_curl(curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L), false, "CURLOPT_NOSIGNAL");
	check_curl(curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) PUBLISH_CONNECT_TIMEOUT_MS), false,
			   "CURLOPT_CONNECTTIMEOUT_MS");
	check_curl(curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) PUBLISH_TIMEOUT_MS), false, "CURLOPT_TIMEOUT_MS");
	check_curl(curl_easy_setopt(e, CURLOPT_ERRORBUFFER, pub->errbuf), false, "CURLOPT_ERRORBUFFER");
	check_curl(curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body), false, "CURLOPT_WRITEFUNCTION");
	if (pub->deleting)
		check_curl(curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE"), false, "CURLOPT_CUSTOMREQUEST");
	else
	{
		check_curl(curl_easy_setopt(e, CURLOPT_HTTPHEADER, pub->headers), false, "CURLOPT_HTTPHEADER");
		check_curl(curl_easy_setopt(e, CURLOPT_POSTFIELDS, pub->event.state), false, "CURLOPT_POSTFIELDS");
	}
	check_curl(curl_multi_add_handle(pub->multi, e), true, "curl_multi_add_handle");
	pub->busy = true;
}

/*
 * delivered
 *		The request ended: count it, log a change between working and
 *		failing once, and go on to the DELETE after a final event.
 */
static void
delivered(Publisher *pub, CURLcode rc)
{
	long		status = 0;
	char		why[MOVERZ_LAST_ERROR_LEN];

	pub->busy = false;
	if (rc == CURLE_OK)
		check_curl(curl_easy_getinfo(pub->easy, CURLINFO_RESPONSE_CODE, &status), false, "CURLINFO_RESPONSE_CODE");
	check_curl(curl_multi_remove_handle(pub->multi, pub->easy), true, "curl_multi_remove_handle");
	/* a DELETE of a channel nobody opened answers 404: nothing to end */
	if (rc == CURLE_OK && ((status >= 200 && status < 300) || (pub->deleting && status == 404)))
	{
		if (!pub->deleting)
		{
			moverz_publish_report(true, NULL);
			moverz_slot_report(pub->slot, 0, 1, 0, NULL);
		}
		if (pub->failing)
			ereport(LOG, (errmsg("moverz_batch publisher: progress events reach %s again", moverz_publish_url)));
		pub->failing = false;
		pub->deleting = !pub->deleting && pub->event.final;
		if (pub->deleting)
			start_request(pub);
		return;
	}
	if (rc != CURLE_OK)
		snprintf(why, sizeof(why), "%s", pub->errbuf[0] ? pub->errbuf : curl_easy_strerror(rc));
	else
		snprintf(why, sizeof(why), "HTTP %ld from %s", status, pub->url.data);
	moverz_publish_report(false, why);
	moverz_slot_report(pub->slot, 0, 0, 1, why);
	if (!pub->failing)
		ereport(WARNING,
				(errmsg("moverz_batch publisher: progress events are not delivered: %s", why),
				 errdetail("Events are dropped until Nchan takes them again; the batches go on."),
				 errhint("Check moverz_batch.publish_url and that nginx with Nchan runs.")));
	pub->failing = true;
	pub->deleting = false;
}

/*
 * drive
 *		Let curl work on the sockets that are ready (or on its timeout), and
 *		collect the end of the request.
 */
static void
drive(Publisher *pub, bool sockets_ready)
{
	int			running;
	CURLMsg    *msg;
	int			left;
	CURLMcode	mrc = CURLM_OK;

	if (sockets_ready)
	{
		struct epoll_event evs[8];
		int			n = epoll_wait(pub->epfd, evs, lengthof(evs), 0);

		for (int i = 0; i < n && mrc == CURLM_OK; i++)
		{
			mrc = curl_multi_socket_action(pub->multi, evs[i].data.fd,
										   ((evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
										   ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
										   ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0),
										   &running);
			/* a socket curl closed while handling an earlier one: no matter */
			if (mrc == CURLM_BAD_SOCKET)
				mrc = CURLM_OK;
		}
	}
	else
		mrc = curl_multi_socket_action(pub->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	/* a multi handle that fails here is broken (no memory...): start again */
	check_curl(mrc, true, "curl_multi_socket_action");
	while ((msg = curl_multi_info_read(pub->multi, &left)) != NULL)
	{
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == pub->easy)
			delivered(pub, msg->data.result);
	}
}

/*
 * next_event
 *		Start the next event, if any, when idle.  Publishing off: the ring
 *		is emptied (what was announced before it was turned off).
 */
static void
next_event(Publisher *pub)
{
	uint64		dropped = 0;

	while (!pub->busy && moverz_publish_next(&pub->event, &dropped))
	{
		if (moverz_publish_url[0] == '\0')
			continue;
		pub->deleting = false;
		start_request(pub);
	}
	if (dropped > 0)
		ereport(WARNING,
				(errmsg("moverz_batch publisher: %llu progress events dropped: the queue was full",
						(unsigned long long) dropped),
				 errhint("Raise moverz_batch.publish_queue_size, or check that Nchan answers quickly.")));
}

/*
 * moverz_publisher_main
 *		Entry point of the progress publisher.
 */
void
moverz_publisher_main(Datum main_arg)
{
	Publisher	pub;
	WaitEventSet *idle_events;
	WaitEventSet *busy_events;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	moverz_publish_attach();
	publisher_init(&pub);
	pub.slot = moverz_attach_slot(MOVERZ_SLOT_PUBLISHER, 0);
	/* curl's sockets are waited on only while a request is in flight */
	idle_events = moverz_wait_set(PGINVALID_SOCKET);
	busy_events = moverz_wait_set(pub.epfd);
	ereport(LOG, (errmsg("moverz_batch: progress publisher started (%s)",
						 moverz_publish_url[0] ? moverz_publish_url : "moverz_batch.publish_url is empty: off")));

	while (!ShutdownRequestPending)
	{
		WaitEvent	occurred[3];
		int			n;
		bool		sockets_ready = false;

		moverz_process_interrupts();
		next_event(&pub);
		pgstat_report_activity(STATE_IDLE, pub.busy ? "publishing" : "waiting for progress events");
		n = WaitEventSetWait(pub.busy ? busy_events : idle_events, pub.busy ? timer_left_ms(&pub) : -1,
							 occurred, lengthof(occurred), PG_WAIT_EXTENSION);
		for (int i = 0; i < n; i++)
		{
			if (occurred[i].events & WL_LATCH_SET)
				ResetLatch(MyLatch);
			if (occurred[i].events & WL_SOCKET_READABLE)
				sockets_ready = true;
		}
		/* curl's sockets; its deadline, whatever woke us */
		if (pub.busy && sockets_ready)
			drive(&pub, true);
		if (pub.busy && timer_left_ms(&pub) == 0)
			drive(&pub, false);
	}
	/* exit code 1: restarted after pg_terminate_backend, as the other workers */
	proc_exit(1);
}
