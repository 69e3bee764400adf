/*-------------------------------------------------------------------------
 *
 * fake_ai.c
 *		A fake AI photo-analysis HTTP service for the tests, the demo and
 *		the benchmarks of moverz_batch.
 *
 * It speaks the contract of the real service (POST /v1/analyze-photo) and
 * answers deterministically from the request: the room type comes from the
 * request or the file name, the items from the image URL, whose query
 * parameters also inject faults, or from the bytes of an inline image (see
 * README.md).  It counts the calls per photo, records the inline images
 * received, and exposes counters on /stats.
 *
 * Design: libmicrohttpd with one thread per connection, using poll() so
 * that connections past FD_SETSIZE work.  Latency and hangs are timed waits
 * on a condition variable that shutdown broadcasts, so SIGTERM is quick.
 *
 * This file holds main, the options, the daemon, the routing and the
 * replies; see fake_ai.h for the other files.
 *
 *-------------------------------------------------------------------------
 */
#include "fake_ai.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/*
 * Largest request body accepted: room for an image of MAX_IMAGE_BYTES in
 * base64 (4/3 as many characters, up to 6990508) and the other members.
 */
#define MAX_BODY		(8 * 1024 * 1024)

/* Configuration. */
long		base_latency_ms = 0;
static const char *api_key = NULL;
FILE	   *log_file = NULL;

/* Shutdown: the waits end early once stopping is set. */
static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cond;
static bool stopping = false;

/* now_us: wall-clock time in microseconds. */
int64_t
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
void
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

/* reply_error: a JSON error answer {"error":{code, message, retryable}}. */
void
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
void
reply_static(Reply *r, unsigned int status, const char *ctype,
			 const char *body)
{
	r->status = status;
	r->ctype = ctype;
	r->static_body = body;
}

/* send_reply: queue r on conn; the body goes to MHD. */
enum MHD_Result
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
bool
auth_ok(struct MHD_Connection *conn)
{
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
												MHD_HTTP_HEADER_AUTHORIZATION);

	return api_key == NULL || (h != NULL && strncmp(h, "Bearer ", 7) == 0 &&
							   strcmp(h + 7, api_key) == 0);
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
		{
			const char *m = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "mark");

			stats_reset(m ? strtol(m, NULL, 10) : 0);
			reply_static(&r, 200, JSON_CT, "{\"ok\":true}");
		}
	}
	else if (strcmp(url, "/health") == 0)
	{
		if (get)
			reply_static(&r, 200, TEXT_CT, "ok");
	}
	else if (strcmp(url, "/stats") == 0 || strcmp(url, "/stats/photo") == 0 ||
			 strcmp(url, "/stats/calls") == 0 || strcmp(url, "/stats/images") == 0)
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
	stats_init();
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