/*-------------------------------------------------------------------------
 *
 * mb_monitor.c
 *	  The commands of moverz-batch that look at batches and at the queue:
 *	  status (batch_progress as JSON), watch (live progress of one batch,
 *	  from NOTIFY moverz_batch_progress, shown by mb_bar.c, then its outcome,
 *	  duplicates and inventory) and top (the queue, the AI throughput and the
 *	  workers, refreshed); and the psql-like table output they share.
 *
 *	  watch and top wait with pselect() on the connection's socket, with
 *	  SIGINT and SIGWINCH blocked outside the wait, so that an interrupt or
 *	  a resize is never lost between the check of its flag and the wait.  A
 *	  SIGINT during a query cancels it (PQcancel is async-signal-safe), as in
 *	  psql.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "moverz-batch.h"

/* watch re-reads batch_progress at least this often, in case a
 * notification was missed (or the server is older than 65_notify.sql); on
 * a terminal more often, for the rate and the ETA. */
#define POLL_SECONDS 2.0
#define TTY_POLL_SECONDS 1.0

/* Failed photos listed after the inventory, at most. */
#define MAX_FAILED_LISTED 20

#define CPP_STR2(x) #x
#define CPP_STR(x) CPP_STR2(x)

volatile sig_atomic_t mb_interrupted = 0;
static PGcancel *volatile cancel_handle = NULL;

/* What ended a wait of watch. */
typedef enum WaitResult
{
	WAIT_REFRESH,				/* a notification about the batch, or time to poll */
	WAIT_TIMEOUT,
	WAIT_INTERRUPTED,
	WAIT_ERROR
} WaitResult;

/*
 * handle_sigint: remember the interrupt and cancel the query in progress.
 */
static void
handle_sigint(int signo)
{
	int			save_errno = errno;
	char		errbuf[256];

	(void) signo;
	mb_interrupted = 1;
	if (cancel_handle != NULL)
		(void) PQcancel(cancel_handle, errbuf, sizeof(errbuf));
	errno = save_errno;
}

/*
 * set_interrupt_handler: install (conn given) or remove our SIGINT handler.
 */
static void
set_interrupt_handler(PGconn *conn)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = conn ? handle_sigint : SIG_DFL;
	if (conn != NULL)
		cancel_handle = PQgetCancel(conn);
	sigaction(SIGINT, &sa, NULL);
	if (conn == NULL && cancel_handle != NULL)
	{
		PQfreeCancel(cancel_handle);
		cancel_handle = NULL;
	}
}

/*
 * mb_now: monotonic clock, in seconds.
 */
double
mb_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * wait_readable: wait until sock (-1: none) is readable, seconds have
 * passed, or SIGINT or SIGWINCH arrives.  1: readable, 0: not, -1: error
 * (reported).
 */
static int
wait_readable(int sock, double seconds)
{
	sigset_t	block;
	sigset_t	old;
	sigset_t	during;
	fd_set		rfds;
	struct timespec ts;
	int			rc = 0;
	int			save_errno = 0;

	if (seconds < 0)
		seconds = 0;
	if (sock >= FD_SETSIZE)
		sock = -1;				/* cannot select() on it: poll by time only */
	ts.tv_sec = (time_t) seconds;
	ts.tv_nsec = (long) ((seconds - (double) ts.tv_sec) * 1e9);
	FD_ZERO(&rfds);
	if (sock >= 0)
		FD_SET(sock, &rfds);
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGWINCH);
	sigprocmask(SIG_BLOCK, &block, &old);
	during = old;
	sigdelset(&during, SIGINT);
	sigdelset(&during, SIGWINCH);
	if (!mb_interrupted && !mb_resized)
	{
		rc = pselect(sock + 1, sock >= 0 ? &rfds : NULL, NULL, NULL, &ts, &during);
		save_errno = errno;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (rc < 0 && save_errno == EINTR)
		return 0;
	if (rc < 0)
		mb_error("select() failed: %s", strerror(save_errno));
	return rc < 0 ? -1 : rc > 0;
}

/*
 * mb_display_width: columns taken by UTF-8 text (one per character).
 */
static size_t
mb_display_width(const char *s)
{
	size_t		w = 0;

	for (; *s; s++)
		if (((unsigned char) *s & 0xC0) != 0x80)
			w++;
	return w;
}

/*
 * is_numeric_type: whether a column of this type is right-aligned.
 */
static bool
is_numeric_type(Oid type)
{
	/* int8, int2, int4, oid, float4, float8, numeric */
	return type == 20 || type == 21 || type == 23 || type == 26 ||
		type == 700 || type == 701 || type == 1700;
}

/*
 * print_cell: one cell padded to width, aligned left or right; no trailing
 * blanks after the last column.
 */
static void
print_cell(FILE *out, const char *s, size_t width, bool right, bool last)
{
	size_t		w = mb_display_width(s);
	int			pad = (int) (width > w ? width - w : 0);

	fprintf(out, " %*s%s", right ? pad : 0, "", s);
	if (!last)
		fprintf(out, "%*s ", right ? 0 : pad, "");
}

/*
 * print_rule: the line under the header, as psql draws it.
 */
static void
print_rule(FILE *out, const size_t *width, int ncols)
{
	for (int c = 0; c < ncols; c++)
	{
		if (c > 0)
			fputc('+', out);
		for (size_t i = 0; i < width[c] + 2; i++)
			fputc('-', out);
	}
	fputc('\n', out);
}

/*
 * print_table: a result as an aligned table, psql style.  The last nfooter
 * rows (totals) are set off by a rule.
 */
static void
print_table(FILE *out, const PGresult *res, int nfooter)
{
	int			ncols = PQnfields(res);
	int			nrows = PQntuples(res);
	size_t	   *width = mb_malloc(sizeof(size_t) * (ncols + 1));

	for (int c = 0; c < ncols; c++)
	{
		width[c] = mb_display_width(PQfname(res, c));
		for (int r = 0; r < nrows; r++)
		{
			size_t		w = mb_display_width(PQgetvalue(res, r, c));

			if (w > width[c])
				width[c] = w;
		}
	}
	for (int c = 0; c < ncols; c++)
	{
		fputs(c > 0 ? "|" : "", out);
		print_cell(out, PQfname(res, c), width[c], false, c == ncols - 1);
	}
	fputc('\n', out);
	print_rule(out, width, ncols);
	for (int r = 0; r < nrows; r++)
	{
		if (r == nrows - nfooter && r > 0)
			print_rule(out, width, ncols);
		for (int c = 0; c < ncols; c++)
		{
			fputs(c > 0 ? "|" : "", out);
			print_cell(out, PQgetvalue(res, r, c), width[c],
					   is_numeric_type(PQftype(res, c)), c == ncols - 1);
		}
		fputc('\n', out);
	}
	free(width);
}

/*
 * mb_status: "status BATCH_ID": batch_progress, pretty-printed.
 */
int
mb_status(PGconn *conn, const MbOptions *opts, char **args, int nargs)
{
	const char *params[1] = {args[0]};
	PGresult   *res;

	(void) opts;
	(void) nargs;
	res = mb_query(conn, "SELECT pg_catalog.jsonb_pretty(moverz_batch.batch_progress($1::uuid))",
				   1, params);
	if (res == NULL)
		return MB_EXIT_ERROR;
	printf("%s\n", PQgetvalue(res, 0, 0));
	PQclear(res);
	return MB_EXIT_OK;
}

/*
 * fetch_ai_down: since when the workers hold the photos because the AI
 * service is down (moverz_batch.ai_service_status(), 0.5.0 and later), as
 * HH:MM:SS into since, or "" (also when it cannot be read).
 */
static void
fetch_ai_down(PGconn *conn, char *since, size_t len)
{
	PGresult   *res = PQexec(conn, "SELECT pg_catalog.to_char(unreachable_since, 'HH24:MI:SS') "
							 "FROM moverz_batch.ai_service_status() WHERE holding");

	since[0] = '\0';
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		snprintf(since, len, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
}

/*
 * fetch_state: the batch's state from batch_progress (without its photos),
 * and whether the AI service is down; false after reporting an error.
 */
static bool
fetch_state(PGconn *conn, const char *batch_id, BatchState *st)
{
	const char *params[1] = {batch_id};
	PGresult   *res;
	long	   *counts[] = {&st->queued, &st->processing, &st->completed,
	&st->failed, &st->cancelled, &st->total};

	res = mb_query(conn,
				   "SELECT p ->> 'batchId', p ->> 'status', p ->> 'progress', "
				   "p #>> '{counts,queued}', p #>> '{counts,processing}', "
				   "p #>> '{counts,completed}', p #>> '{counts,failed}', "
				   "coalesce(p #>> '{counts,cancelled}', '0'), p #>> '{counts,total}', "
				   "p ? 'inventorySummary' "
				   "FROM moverz_batch.batch_progress($1::uuid, 0) AS p", 1, params);
	if (res == NULL)
		return false;
	memset(st, 0, sizeof(*st));
	snprintf(st->batch_id, sizeof(st->batch_id), "%s", PQgetvalue(res, 0, 0));
	snprintf(st->status, sizeof(st->status), "%s", PQgetvalue(res, 0, 1));
	st->progress = atoi(PQgetvalue(res, 0, 2));
	for (int i = 0; i < 6; i++)
		*counts[i] = strtol(PQgetvalue(res, 0, 3 + i), NULL, 10);
	st->inventory_ready = strcmp(PQgetvalue(res, 0, 9), "t") == 0;
	PQclear(res);
	fetch_ai_down(conn, st->ai_down_since, sizeof(st->ai_down_since));
	return true;
}

/*
 * same_state: whether nothing shown of the batch changed.
 */
static bool
same_state(const BatchState *a, const BatchState *b)
{
	return strcmp(a->status, b->status) == 0 && a->progress == b->progress &&
		a->queued == b->queued && a->processing == b->processing &&
		a->completed == b->completed && a->failed == b->failed &&
		a->cancelled == b->cancelled && a->total == b->total &&
		a->inventory_ready == b->inventory_ready &&
		strcmp(a->ai_down_since, b->ai_down_since) == 0;
}

/*
 * drain_notifications: consume the notifications received; whether one
 * was about the batch.
 */
static bool
drain_notifications(PGconn *conn, const char *batch_id)
{
	PGnotify   *n;
	bool		matched = false;

	while ((n = PQnotifies(conn)) != NULL)
	{
		if (strcmp(n->relname, "moverz_batch_progress") == 0 &&
			n->extra != NULL && strstr(n->extra, batch_id) != NULL)
			matched = true;
		PQfreemem(n);
	}
	return matched;
}

/*
 * watch_wait: wait for a notification about the batch, the next poll
 * (then poll seconds later), a resize of the terminal, the deadline (0:
 * none) or SIGINT.
 */
static WaitResult
watch_wait(PGconn *conn, const char *batch_id, double deadline, double poll,
		   double *next_poll)
{
	for (;;)
	{
		double		now = mb_now();
		double		until = *next_poll;
		int			r;

		if (deadline > 0 && now >= deadline)
			return WAIT_TIMEOUT;
		if (drain_notifications(conn, batch_id) || now >= *next_poll || mb_resized)
		{
			*next_poll = now + poll;
			return WAIT_REFRESH;
		}
		if (deadline > 0 && deadline < until)
			until = deadline;
		r = wait_readable(PQsocket(conn), until - now);
		if (mb_interrupted)
			return WAIT_INTERRUPTED;
		if (r < 0)
			return WAIT_ERROR;
		if (r > 0 && !PQconsumeInput(conn))
		{
			mb_report_error(conn, NULL);
			return WAIT_ERROR;
		}
	}
}

/*
 * watch_loop: show the batch's progress until it is terminal and its
 * inventory is ready (MB_EXIT_OK, *st is its final state), or the
 * timeout, SIGINT or an error (their exit codes).
 */
static int
watch_loop(PGconn *conn, const MbOptions *opts, const char *batch_arg, BatchState *st,
		   MbBar *bar)
{
	double		deadline = opts->timeout > 0 ? mb_now() + opts->timeout : 0;
	double		poll = bar->tty ? TTY_POLL_SECONDS : POLL_SECONDS;
	double		next_poll = mb_now() + poll;
	BatchState	shown;
	PGresult   *res = mb_query(conn, "LISTEN moverz_batch_progress", 0, NULL);
	WaitResult	w = WAIT_REFRESH;

	PQclear(res);
	if (res == NULL || !fetch_state(conn, batch_arg, st))
		return mb_interrupted ? MB_EXIT_INTERRUPTED : MB_EXIT_ERROR;
	mb_bar_show(bar, st);
	shown = *st;
	while (!mb_is_terminal(st->status) || !st->inventory_ready)
	{
		w = watch_wait(conn, st->batch_id, deadline, poll, &next_poll);
		if (w != WAIT_REFRESH)
			break;
		if (!fetch_state(conn, st->batch_id, st))
		{
			w = mb_interrupted ? WAIT_INTERRUPTED : WAIT_ERROR;
			break;
		}
		if (bar->tty || !same_state(st, &shown))
			mb_bar_show(bar, st);
		shown = *st;
	}
	mb_bar_stop(bar);
	if (w == WAIT_TIMEOUT)
		mb_error("timed out after %g s: batch %s is %s%s", opts->timeout, st->batch_id,
				 st->status, mb_is_terminal(st->status) ? ", its inventory is not ready" : "");
	else if (w == WAIT_INTERRUPTED)
		fprintf(stderr, "%s: interrupted\n", progname);
	return w == WAIT_REFRESH ? MB_EXIT_OK : w == WAIT_TIMEOUT ? MB_EXIT_TIMEOUT :
		w == WAIT_INTERRUPTED ? MB_EXIT_INTERRUPTED : MB_EXIT_ERROR;
}

/*
 * print_failed_photos: the photos in ERROR, with their error codes (the
 * first MAX_FAILED_LISTED).
 */
static bool
print_failed_photos(PGconn *conn, const BatchState *st)
{
	const char *params[1] = {st->batch_id};
	PGresult   *res;

	res = mb_query(conn,
				   "SELECT e ->> 'filename' AS photo, coalesce(e ->> 'errorCode', '') AS error "
				   "FROM pg_catalog.jsonb_array_elements("
				   "moverz_batch.batch_progress($1::uuid) -> 'photos') AS e "
				   "WHERE e ->> 'status' = 'ERROR' LIMIT " CPP_STR(MAX_FAILED_LISTED), 1, params);
	if (res == NULL)
		return false;
	printf("\nFailed photos\n");
	print_table(stdout, res, 0);
	if (st->failed > PQntuples(res))
		printf("(and %ld more)\n", st->failed - PQntuples(res));
	PQclear(res);
	return true;
}

/*
 * print_duplicates: how many of the batch's photos were duplicates (of
 * photos of earlier batches, of other photos of this one), whose items
 * the inventory counts once, for the original; nothing when none.
 */
static bool
print_duplicates(PGconn *conn, const BatchState *st, const MbBar *bar)
{
	const char *params[1] = {st->batch_id};
	PGresult   *res;
	long		earlier;
	long		here;
	char		text[256];

	res = mb_query(conn,
				   "WITH p AS (SELECT e ->> 'id' AS id, e ->> 'duplicateOf' AS dup"
				   "   FROM pg_catalog.jsonb_array_elements("
				   "moverz_batch.batch_progress($1::uuid) -> 'photos') AS e) "
				   "SELECT count(*) FILTER (WHERE dup NOT IN (SELECT id FROM p)),"
				   "       count(*) FILTER (WHERE dup IN (SELECT id FROM p))"
				   "  FROM p WHERE dup IS NOT NULL", 1, params);
	if (res == NULL)
		return false;
	earlier = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	here = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	if (earlier > 0)
	{
		snprintf(text, sizeof(text), earlier == 1 ?
				 "%ld of %ld photos was a duplicate of a photo already analysed: "
				 "its items are counted once, in the earlier batch" :
				 "%ld of %ld photos were duplicates of photos already analysed: "
				 "their items are counted once, in the earlier batch", earlier, st->total);
		mb_bar_print(bar, text);
	}
	if (here > 0)
	{
		snprintf(text, sizeof(text), here == 1 ?
				 "%ld photo repeated another photo of this batch: its items are counted once" :
				 "%ld photos repeated other photos of this batch: their items are counted once",
				 here);
		mb_bar_print(bar, text);
	}
	return true;
}

/*
 * print_summary: the batch's outcome, its duplicates and its inventory: one
 * row per room, then the totals; then its failed photos.
 */
static bool
print_summary(PGconn *conn, const BatchState *st, const MbBar *bar)
{
	char		text[256];

	const char *params[1] = {st->batch_id};
	PGresult   *res;

	res = mb_query(conn,
				   "WITH b AS (SELECT moverz_batch.batch_progress($1::uuid, 0) -> 'inventorySummary' AS s) "
				   "SELECT room, items, volume_m3 FROM ("
				   " SELECT 0 AS k, r.n, r.v ->> 'roomType' AS room, (r.v ->> 'itemsCount')::bigint AS items,"
				   "        (r.v ->> 'volume_m3')::numeric AS volume_m3"
				   "   FROM b, pg_catalog.jsonb_array_elements(b.s -> 'rooms') WITH ORDINALITY AS r(v, n)"
				   " UNION ALL"
				   " SELECT 1, 0, 'total', (b.s ->> 'totalItems')::bigint, (b.s ->> 'totalVolume')::numeric"
				   "   FROM b) AS t ORDER BY k, n", 1, params);
	if (res == NULL)
		return false;
	snprintf(text, sizeof(text), "Batch %s: %s, %ld of %ld photos analysed, %ld failed",
			 st->batch_id, st->status, st->completed, st->total, st->failed);
	if (st->cancelled > 0)
		snprintf(text + strlen(text), sizeof(text) - strlen(text), ", %ld cancelled",
				 st->cancelled);
	putchar('\n');
	mb_bar_print(bar, text);
	if (!print_duplicates(conn, st, bar))
	{
		PQclear(res);
		return false;
	}
	printf("\nInventory\n");
	print_table(stdout, res, 1);
	PQclear(res);
	return st->failed == 0 || print_failed_photos(conn, st);
}

/*
 * mb_watch: "watch BATCH_ID": follow the batch live, then print its
 * inventory.  Exit code: 0 COMPLETED, 2 PARTIAL/FAILED/CANCELLED, 3
 * timeout, 130 SIGINT, 1 error.
 */
int
mb_watch(PGconn *conn, const MbOptions *opts, char **args, int nargs)
{
	BatchState	st;
	MbBar		bar;
	int			rc;

	(void) nargs;
	set_interrupt_handler(conn);
	mb_bar_start(&bar, isatty(fileno(stdout)));
	rc = watch_loop(conn, opts, args[0], &st, &bar);
	if (rc == MB_EXIT_OK)
	{
		if (!print_summary(conn, &st, &bar))
			rc = mb_interrupted ? MB_EXIT_INTERRUPTED : MB_EXIT_ERROR;
		else if (strcmp(st.status, "COMPLETED") != 0)
			rc = MB_EXIT_FAILURES;
	}
	set_interrupt_handler(NULL);
	return rc;
}

/*
 * top_table: TITLE, then the result of sql as a table; false after
 * reporting an error.
 */
static bool
top_table(PGconn *conn, FILE *out, const char *title, const char *sql)
{
	PGresult   *res = mb_query(conn, sql, 0, NULL);

	if (res == NULL)
		return false;
	fprintf(out, "\n%s\n", title);
	print_table(out, res, 0);
	PQclear(res);
	return true;
}

/*
 * top_workers: the workers, from moverz_batch.worker_status when it exists
 * and may be read, else their pg_stat_activity rows.
 */
static bool
top_workers(PGconn *conn, FILE *out)
{
	PGresult   *res;
	bool		have_view;

	res = mb_query(conn, "SELECT pg_catalog.to_regclass('moverz_batch.worker_status') IS NOT NULL",
				   0, NULL);
	if (res == NULL)
		return false;
	have_view = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (have_view)
	{
		res = PQexec(conn, "SELECT kind, worker, pid, inflight, done, failed, "
					 "pg_catalog.date_trunc('second', since) AS since, "
					 "pg_catalog.left(last_error, 60) AS last_error "
					 "FROM moverz_batch.worker_status ORDER BY kind, worker");
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
		{
			fprintf(out, "\nWorkers\n");
			print_table(out, res, 0);
			PQclear(res);
			return true;
		}
		if (!mb_interrupted)
			fprintf(out, "\n(moverz_batch.worker_status: %s)",
					PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
					? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "unavailable");
		PQclear(res);
		if (mb_interrupted)
			return false;
	}
	return top_table(conn, out, "Workers (pg_stat_activity)",
					 "SELECT pid, backend_type AS worker, state, "
					 "pg_catalog.date_trunc('second', backend_start) AS since, "
					 "pg_catalog.left(pg_catalog.regexp_replace(query, '\\s+', ' ', 'g'), 60) AS query "
					 "FROM pg_catalog.pg_stat_activity "
					 "WHERE backend_type LIKE 'moverz\\_batch%' ORDER BY backend_type, pid");
}

/*
 * top_print: the whole overview, once; interval > 0 for a refreshing
 * screen.
 */
static bool
top_print(PGconn *conn, FILE *out, double interval)
{
	char		stamp[32];
	time_t		t = time(NULL);
	struct tm	tm;

	localtime_r(&t, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(out, "moverz_batch on %s/%s at %s", PQhost(conn), PQdb(conn), stamp);
	if (interval > 0)
		fprintf(out, " (every %gs, Ctrl-C to quit)", interval);
	fputc('\n', out);
	return top_table(conn, out, "Photos",
					 "SELECT count(*) FILTER (WHERE status = 'PENDING' AND next_attempt_at <= now()) AS pending,"
					 " count(*) FILTER (WHERE status = 'PENDING' AND next_attempt_at > now()) AS \"retry-waiting\","
					 " count(*) FILTER (WHERE status = 'PROCESSING') AS \"in flight\","
					 " count(*) FILTER (WHERE status = 'ERROR') AS \"failed (last hour)\","
					 " (SELECT count(*) FROM moverz_batch.batches"
					 "   WHERE status IN ('QUEUED', 'PROCESSING')) AS \"active batches\""
					 " FROM moverz_batch.photos"
					 " WHERE status IN ('PENDING', 'PROCESSING')"
					 "    OR (status = 'ERROR' AND finished_at > now() - interval '1 hour')") &&
		top_table(conn, out, "AI calls, last minute",
				  "SELECT count(*) AS calls, round(count(*) / 60.0, 2) AS \"calls/s\","
				  " count(*) FILTER (WHERE success) AS ok, count(*) FILTER (WHERE NOT success) AS failed,"
				  " coalesce(round(avg(latency_ms)), 0) AS \"avg ms\","
				  " coalesce(percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms), 0) AS \"p95 ms\","
				  " coalesce(sum(cost_usd), 0) AS \"cost usd\""
				  " FROM moverz_batch.ai_metrics WHERE created_at > now() - interval '1 minute'") &&
		top_workers(conn, out);
}

/*
 * top_screen: one refresh on a terminal: the overview built in memory,
 * then the screen cleared and redrawn at once.
 */
static bool
top_screen(PGconn *conn, double interval)
{
	char	   *buf = NULL;
	size_t		len = 0;
	FILE	   *mem = open_memstream(&buf, &len);
	bool		ok;

	if (mem == NULL)
	{
		mb_error("out of memory");
		return false;
	}
	ok = top_print(conn, mem, interval);
	fclose(mem);
	if (ok)
	{
		fputs("\033[H\033[2J", stdout);
		fwrite(buf, 1, len, stdout);
		fflush(stdout);
	}
	free(buf);
	return ok;
}

/*
 * mb_top: "top": the overview, refreshed every --interval seconds until
 * SIGINT (exit 0); once with --once or when stdout is not a terminal.
 */
int
mb_top(PGconn *conn, const MbOptions *opts, char **args, int nargs)
{
	bool		once = opts->once || !isatty(fileno(stdout));
	bool		ok = true;

	(void) args;
	(void) nargs;
	if (once)
		return top_print(conn, stdout, 0) ? MB_EXIT_OK : MB_EXIT_ERROR;
	set_interrupt_handler(conn);
	while (ok && !mb_interrupted)
	{
		ok = top_screen(conn, opts->interval);
		if (ok && wait_readable(-1, opts->interval) < 0)
			ok = false;
	}
	set_interrupt_handler(NULL);
	return ok || mb_interrupted ? MB_EXIT_OK : MB_EXIT_ERROR;
}
