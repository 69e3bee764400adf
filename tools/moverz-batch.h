/*-------------------------------------------------------------------------
 *
 * moverz-batch.h
 *	  Shared declarations of moverz-batch, the command-line client of the
 *	  moverz_batch extension (tools/moverz-batch.c: options, connection,
 *	  output helpers; tools/mb_submit.c: submit; tools/mb_upload.c: submit's
 *	  local image files, uploaded; tools/mb_monitor.c: status, watch, top;
 *	  tools/mb_bar.c: watch's progress line).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOVERZ_BATCH_CLI_H
#define MOVERZ_BATCH_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include <libpq-fe.h>

/* Exit codes, documented in --help. */
#define MB_EXIT_OK			0	/* success; watch: batch COMPLETED */
#define MB_EXIT_ERROR		1	/* usage, connection, SQL or upload error */
#define MB_EXIT_FAILURES	2	/* watch: batch PARTIAL, FAILED or CANCELLED */
#define MB_EXIT_TIMEOUT		3	/* watch: --timeout expired */
#define MB_EXIT_INTERRUPTED 130 /* watch: interrupted by SIGINT */

/* The options of all commands, after parsing. */
typedef struct MbOptions
{
	/* connection, as PostgreSQL's client tools (NULL: libpq's defaults) */
	const char *dbname;			/* -d: database name or connection string */
	const char *host;			/* -h */
	const char *port;			/* -p */
	const char *username;		/* -U: the database role */

	/* submit */
	const char *project;		/* --project UUID */
	const char *user;			/* --user: the moverz user id */
	const char *priority;		/* --priority HIGH|NORMAL|LOW */
	const char *idempotency_key;	/* --idempotency-key */
	const char *create_project; /* --create-project NAME */
	const char *api_url;		/* --api-url: the HTTP API, for upload paths */

	/* watch */
	double		timeout;		/* --timeout SECONDS, 0: none */

	/* top */
	double		interval;		/* --interval SECONDS */
	bool		once;			/* --once */
} MbOptions;

/* One photo of submit: a line of a list of URLs, or a local image file. */
typedef struct Asset
{
	char	   *url;			/* NULL: a local image file, uploaded */
	char	   *room_type;		/* NULL: none given */
	const char *input;			/* the list it was read from, or the file */
	int			line;			/* line number in the list (0: a file) */
	/* a local image file */
	char	   *filename;		/* its name as sent: the path's last segment */
	const char *content_type;	/* image/jpeg, image/png, image/webp, image/gif */
	long long	size;			/* in bytes, when it was read */
	char	   *upload_id;		/* its upload, once requested */
} Asset;

/* The photos of submit, in the order of the command line. */
typedef struct AssetList
{
	Asset	   *items;
	int			n;
	int			cap;
	int			nfiles;			/* how many are local image files */
} AssetList;

/* A growable string (JSON, HTTP answers). */
typedef struct StrBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} StrBuf;

/* The state of a batch, as batch_progress and the notifications give it. */
typedef struct BatchState
{
	char		batch_id[64];	/* canonical, as in the notifications */
	char		status[16];
	int			progress;
	long		queued;
	long		processing;
	long		completed;
	long		failed;
	long		cancelled;
	long		total;
	bool		inventory_ready;
	char		ai_down_since[16];	/* "HH:MM:SS" while the AI service is down */
} BatchState;

/* Progress samples kept for the rate: enough for MB_RATE_WINDOW seconds. */
#define MB_RATE_SAMPLES 64

/* How watch shows a batch's progress (tools/mb_bar.c). */
typedef struct MbBar
{
	bool		tty;			/* stdout is a terminal: one line redrawn */
	bool		color;			/* ... and NO_COLOR is not set */
	int			columns;		/* the terminal's width */
	int			nsamples;		/* samples kept, the newest at [head] */
	int			head;
	double		sample_time[MB_RATE_SAMPLES];	/* monotonic seconds */
	long		sample_done[MB_RATE_SAMPLES];	/* photos completed or failed */
} MbBar;

extern const char *progname;

/* tools/moverz-batch.c */
#define mb_malloc(size) mb_realloc(NULL, (size))
extern void mb_error(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern void *mb_realloc(void *old, size_t size);
extern char *mb_strdup(const char *s);
extern void mb_print_trimmed(const char *level, const char *text);
extern void mb_report_error(PGconn *conn, const PGresult *res);
extern PGresult *mb_query(PGconn *conn, const char *sql, int nparams,
						  const char *const *params);

/* tools/mb_submit.c: the command submit, and what the uploads share */
extern int	mb_submit(PGconn *conn, const MbOptions *opts, char **args, int nargs);
extern void mb_sb_append(StrBuf *sb, const char *s, size_t n);
extern void mb_sb_append_json_string(StrBuf *sb, const char *s);
extern void mb_explain_error(const PGresult *res, const AssetList *list);

/* tools/mb_upload.c: local image files, told by their magic numbers */
extern int	mb_upload_files(PGconn *conn, const MbOptions *opts, AssetList *list,
							char **project_id);

/* tools/mb_monitor.c: the commands, called with their arguments */
extern volatile sig_atomic_t mb_interrupted;
extern int	mb_status(PGconn *conn, const MbOptions *opts, char **args, int nargs);
extern int	mb_watch(PGconn *conn, const MbOptions *opts, char **args, int nargs);
extern int	mb_top(PGconn *conn, const MbOptions *opts, char **args, int nargs);
extern double mb_now(void);

/* tools/mb_bar.c: watch's progress, a line per change or a redrawn bar */
extern volatile sig_atomic_t mb_resized;
extern void mb_bar_start(MbBar *bar, bool tty);
extern void mb_bar_show(MbBar *bar, const BatchState *st);
extern void mb_bar_stop(MbBar *bar);
extern void mb_bar_print(const MbBar *bar, const char *text);
extern bool mb_is_terminal(const char *status);

#endif							/* MOVERZ_BATCH_CLI_H */
