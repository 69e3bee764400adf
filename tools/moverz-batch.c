/*-------------------------------------------------------------------------
 *
 * moverz-batch.c
 *	  moverz-batch, the command-line client of the moverz_batch extension,
 *	  over libpq: submit a batch of photo URLs, watch it live, print its
 *	  progress, or watch the queue.  It follows the conventions of
 *	  PostgreSQL's client tools: libpq connection string and PG* environment,
 *	  -d/-h/-p/-U, --help, --version, messages "moverz-batch: error: ..." on
 *	  standard error and documented exit codes.
 *
 *	  This file: options, connection and error reporting.  The command
 *	  submit is in mb_submit.c (its local image files: mb_upload.c), the
 *	  commands that look at batches and at the queue (status, watch, top)
 *	  in mb_monitor.c.
 *
 *	  Every value reaches the server as a query parameter (PQexecParams);
 *	  no SQL is ever built from user input.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "moverz-batch.h"

#ifndef MB_VERSION
#define MB_VERSION "unknown"
#endif

const char *progname = "moverz-batch";

/* Long-only options. */
enum
{
	OPT_PROJECT = 1000,
	OPT_USER,
	OPT_PRIORITY,
	OPT_IDEMPOTENCY_KEY,
	OPT_CREATE_PROJECT,
	OPT_API_URL,
	OPT_TIMEOUT,
	OPT_INTERVAL,
	OPT_ONCE,
	OPT_HELP
};

/* Command-specific options given, to reject them with the wrong command. */
#define HAS_SUBMIT_OPT	0x01
#define HAS_WATCH_OPT	0x02
#define HAS_TOP_OPT		0x04

/* A command: its name, the options it accepts, its arguments, its code. */
typedef struct MbCommand
{
	const char *name;
	int			options;		/* HAS_*_OPT it accepts */
	int			min_args;
	int			max_args;
	int			(*run) (PGconn *conn, const MbOptions *opts, char **args, int nargs);
} MbCommand;

static int	usage_error(const char *fmt,...) __attribute__((format(printf, 1, 2)));

static const MbCommand commands[] = {
	{"submit", HAS_SUBMIT_OPT, 0, INT_MAX, mb_submit},
	{"watch", HAS_WATCH_OPT, 1, 1, mb_watch},
	{"status", 0, 1, 1, mb_status},
	{"top", HAS_TOP_OPT, 0, 0, mb_top},
};

/*
 * usage: the --help text.
 */
static void
usage(void)
{
	printf("%s submits photo-analysis batches to the moverz_batch extension and follows them.\n\n", progname);
	printf("Usage:\n");
	printf("  %s [OPTION]... submit --user=USER_ID {--project=UUID | --create-project=NAME} [FILE]...\n", progname);
	printf("  %s [OPTION]... watch [--timeout=SECONDS] BATCH_ID\n", progname);
	printf("  %s [OPTION]... status BATCH_ID\n", progname);
	printf("  %s [OPTION]... top [--interval=SECONDS] [--once]\n", progname);
	printf("\nCommands:\n");
	printf("  submit    create a batch of the photos of the FILEs, in order, and print\n"
		   "            its id.  A FILE that is a JPEG, PNG, WebP or GIF image (told by\n"
		   "            its first bytes, not its name) is one photo, uploaded; any other\n"
		   "            FILE (\"-\" or none: standard input) lists photos by URL, one a\n"
		   "            line: \"URL [ROOM_TYPE]\"; blank lines and # comments are ignored;\n"
		   "            the filename is the last segment of the URL's path\n");
	printf("  watch     follow a batch live (NOTIFY moverz_batch_progress) until it is\n"
		   "            finished and its inventory is ready, then print the inventory;\n"
		   "            on a terminal, a progress bar with the rate and the ETA (colours\n"
		   "            unless NO_COLOR is set), else one line per change\n");
	printf("  status    print the batch's progress (batch_progress) as JSON\n");
	printf("  top       overview of the queue, the AI throughput and the workers,\n"
		   "            refreshed; printed once when standard output is not a terminal\n");
	printf("\nOptions of submit:\n");
	printf("      --user=USER_ID          user the batch is submitted for (required)\n");
	printf("      --project=UUID          project of the batch, owned by USER_ID\n");
	printf("      --create-project=NAME   create project NAME for USER_ID and use it\n"
		   "                              (its id is reported on standard error)\n");
	printf("      --priority=PRIORITY     HIGH, NORMAL (default) or LOW\n");
	printf("      --idempotency-key=KEY   the same KEY and input again return the same\n"
		   "                              batch (with --project, and URLs only: every\n"
		   "                              upload of a file is a new one)\n");
	printf("      --api-url=URL           base URL of the HTTP API that upload paths are\n"
		   "                              relative to (default: $MOVERZ_API_URL)\n");
	printf("Photo files are uploaded before the batch is created, with one request_uploads\n"
		   "call for them all (--create-project creates the project then).  Each file is\n"
		   "sent to its upload URL by HTTP PUT (libcurl) when that URL is absolute\n"
		   "(moverz_batch.upload_base_url is set) or --api-url or $MOVERZ_API_URL is\n"
		   "given; else its bytes go over the database connection (store_upload).  A\n"
		   "line per file on standard error; the first file refused stops it all, and\n"
		   "no batch is created.\n");
	printf("\nOptions of watch:\n");
	printf("      --timeout=SECONDS       give up after SECONDS (default: wait forever)\n");
	printf("\nOptions of top:\n");
	printf("      --interval=SECONDS      refresh every SECONDS (default: 2)\n");
	printf("      --once                  print the overview once and exit\n");
	printf("\nConnection options:\n");
	printf("  -d, --dbname=DBNAME         database name or connection string\n");
	printf("  -h, --host=HOSTNAME         database server host or socket directory\n");
	printf("  -p, --port=PORT             database server port\n");
	printf("  -U, --username=USERNAME     database user name\n");
	printf("Without them, libpq's defaults and environment variables apply (PGDATABASE,\n"
		   "PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSERVICE, ...).\n");
	printf("\nOther options:\n");
	printf("  -V, --version               output version information, then exit\n");
	printf("  -?, --help                  show this help, then exit\n");
	printf("\nExit status:\n");
	printf("  0    success; watch: the batch is COMPLETED\n");
	printf("  1    usage, connection, SQL or upload error (the server's message is\n"
		   "       printed)\n");
	printf("  2    watch: the batch finished PARTIAL, FAILED or CANCELLED\n");
	printf("  3    watch: --timeout expired before the batch and its inventory were done\n");
	printf("  130  watch: interrupted (SIGINT)\n");
}

/*
 * mb_error: "moverz-batch: error: MESSAGE" on standard error.
 */
void
mb_error(const char *fmt,...)
{
	va_list		ap;

	fflush(stdout);
	fprintf(stderr, "%s: error: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * usage_error: a usage error, with the hint to --help; returns the exit code.
 */
static int
usage_error(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "%s: error: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n%s: hint: Try \"%s --help\" for more information.\n", progname, progname);
	return MB_EXIT_ERROR;
}

/*
 * mb_realloc: realloc (malloc when old is NULL), exiting on out of memory.
 */
void *
mb_realloc(void *old, size_t size)
{
	void	   *p = realloc(old, size ? size : 1);

	if (p == NULL)
	{
		mb_error("out of memory");
		exit(MB_EXIT_ERROR);
	}
	return p;
}

/*
 * mb_strdup: strdup, exiting on out of memory.
 */
char *
mb_strdup(const char *s)
{
	size_t		n = strlen(s) + 1;

	return memcpy(mb_malloc(n), s, n);
}

/*
 * mb_print_trimmed: "moverz-batch: LEVEL: TEXT" without TEXT's trailing
 * newlines.
 */
void
mb_print_trimmed(const char *level, const char *text)
{
	size_t		n = strlen(text);

	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
		n--;
	fflush(stdout);
	fprintf(stderr, "%s: %s: %.*s\n", progname, level, (int) n, text);
}

/*
 * mb_report_error: the error of a failed query (res, may be NULL) or of the
 * connection: the server's message, then its detail and hint if any.
 */
void
mb_report_error(PGconn *conn, const PGresult *res)
{
	const char *primary = NULL;
	const char *detail;
	const char *hint;

	if (res != NULL)
		primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (primary == NULL)
	{
		const char *msg = res != NULL ? PQresultErrorMessage(res) : "";

		mb_print_trimmed("error", *msg ? msg : PQerrorMessage(conn));
		return;
	}
	mb_print_trimmed("error", primary);
	detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	if (detail != NULL)
		mb_print_trimmed("detail", detail);
	if (hint != NULL)
		mb_print_trimmed("hint", hint);
}

/*
 * mb_query: run sql with text parameters; the result, or NULL after
 * reporting the error (not reported once interrupted by SIGINT: the query
 * was cancelled on purpose).
 */
PGresult *
mb_query(PGconn *conn, const char *sql, int nparams, const char *const *params)
{
	PGresult   *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (res != NULL && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK))
		return res;
	if (!mb_interrupted)
		mb_report_error(conn, res);
	PQclear(res);
	return NULL;
}

/*
 * parse_seconds: a --timeout / --interval value; false if not a number of
 * seconds within [min, one day].
 */
static bool
parse_seconds(const char *arg, double min, double *out)
{
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(arg, &end);
	if (errno != 0 || end == arg || *end != '\0' || !isfinite(v) || v < min || v > 86400)
		return false;
	*out = v;
	return true;
}

/*
 * parse_option: apply one option returned by getopt_long; the HAS_*_OPT
 * bit it sets, 0, or -1 after reporting a usage error.
 */
static int
parse_option(int c, const char *arg, MbOptions *opts)
{
	switch (c)
	{
		case 'd':
			opts->dbname = arg;
			return 0;
		case 'h':
			opts->host = arg;
			return 0;
		case 'p':
			opts->port = arg;
			return 0;
		case 'U':
			opts->username = arg;
			return 0;
		case OPT_PROJECT:
			opts->project = arg;
			return HAS_SUBMIT_OPT;
		case OPT_USER:
			opts->user = arg;
			return HAS_SUBMIT_OPT;
		case OPT_IDEMPOTENCY_KEY:
			opts->idempotency_key = arg;
			return HAS_SUBMIT_OPT;
		case OPT_CREATE_PROJECT:
			opts->create_project = arg;
			return HAS_SUBMIT_OPT;
		case OPT_API_URL:
			opts->api_url = arg;
			if (strncmp(arg, "http://", 7) == 0 || strncmp(arg, "https://", 8) == 0)
				return HAS_SUBMIT_OPT;
			usage_error("--api-url must be an http:// or https:// URL, not \"%s\"", arg);
			return -1;
		case OPT_PRIORITY:
			opts->priority = arg;
			if (strcmp(arg, "HIGH") == 0 || strcmp(arg, "NORMAL") == 0 || strcmp(arg, "LOW") == 0)
				return HAS_SUBMIT_OPT;
			usage_error("--priority must be HIGH, NORMAL or LOW, not \"%s\"", arg);
			return -1;
		case OPT_TIMEOUT:
			if (parse_seconds(arg, 0, &opts->timeout))
				return HAS_WATCH_OPT;
			usage_error("invalid --timeout \"%s\": must be a number of seconds", arg);
			return -1;
		case OPT_INTERVAL:
			if (parse_seconds(arg, 0.1, &opts->interval))
				return HAS_TOP_OPT;
			usage_error("invalid --interval \"%s\": must be at least 0.1 seconds", arg);
			return -1;
		case OPT_ONCE:
			opts->once = true;
			return HAS_TOP_OPT;
		default:
			return -1;
	}
}

/*
 * parse_options: all the options (anywhere on the line); *given collects
 * the HAS_*_OPT bits.  Returns optind, or -1 after a usage error, or -2
 * after --help/--version was handled.
 */
static int
parse_options(int argc, char **argv, MbOptions *opts, int *given)
{
	static const struct option long_options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"host", required_argument, NULL, 'h'},
		{"port", required_argument, NULL, 'p'},
		{"username", required_argument, NULL, 'U'},
		{"project", required_argument, NULL, OPT_PROJECT},
		{"user", required_argument, NULL, OPT_USER},
		{"priority", required_argument, NULL, OPT_PRIORITY},
		{"idempotency-key", required_argument, NULL, OPT_IDEMPOTENCY_KEY},
		{"create-project", required_argument, NULL, OPT_CREATE_PROJECT},
		{"api-url", required_argument, NULL, OPT_API_URL},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"interval", required_argument, NULL, OPT_INTERVAL},
		{"once", no_argument, NULL, OPT_ONCE},
		{"help", no_argument, NULL, OPT_HELP},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}
	};
	int			c;
	int			bit;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:h:p:U:V?", long_options, NULL)) != -1)
	{
		if (c == 'V' || c == OPT_HELP || (c == '?' && strcmp(argv[optind - 1], "-?") == 0))
		{
			if (c == 'V')
				printf("%s (moverz_batch) %s\n", progname, MB_VERSION);
			else
				usage();
			return -2;
		}
		if (c == ':')
			usage_error("option \"%s\" requires an argument", argv[optind - 1]);
		else if (c == '?')
			usage_error("invalid option \"%s\"", argv[optind - 1]);
		if (c == ':' || c == '?' || (bit = parse_option(c, optarg, opts)) < 0)
			return -1;
		*given |= bit;
	}
	return optind;
}

/*
 * check_command: the command's arguments and options; false after a
 * usage error.
 */
static bool
check_command(const MbCommand *cmd, const MbOptions *opts, int given, int nargs)
{
	const char *problem = NULL;

	if (given & ~cmd->options)
		problem = "an option given is not valid with command";
	else if (nargs < cmd->min_args)
		problem = "missing argument of command";
	else if (nargs > cmd->max_args)
		problem = "too many arguments for command";
	else if (cmd->run == mb_submit && opts->user == NULL)
		problem = "--user is required by command";
	else if (cmd->run == mb_submit && (opts->project == NULL) == (opts->create_project == NULL))
		problem = "exactly one of --project and --create-project is required by command";
	if (problem != NULL)
		usage_error("%s \"%s\"", problem, cmd->name);
	return problem == NULL;
}

/*
 * mb_connect: connect as the options and the environment say, secure the
 * search_path (as PostgreSQL's tools do) and check the extension is
 * there.  NULL after reporting an error.
 */
static PGconn *
mb_connect(const MbOptions *opts)
{
	const char *keywords[] = {"host", "port", "user", "dbname", "fallback_application_name", NULL};
	const char *values[] = {opts->host, opts->port, opts->username, opts->dbname, progname, NULL};
	PGconn	   *conn = PQconnectdbParams(keywords, values, 1);
	PGresult   *res;

	if (conn == NULL)
	{
		mb_error("out of memory");
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK)
	{
		mb_print_trimmed("error", PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	res = mb_query(conn, "SELECT pg_catalog.set_config('search_path', '', false), "
				   "EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'moverz_batch')",
				   0, NULL);
	if (res != NULL && strcmp(PQgetvalue(res, 0, 1), "t") != 0)
		mb_error("extension moverz_batch is not installed in database \"%s\"", PQdb(conn));
	if (res == NULL || strcmp(PQgetvalue(res, 0, 1), "t") != 0)
	{
		PQclear(res);
		PQfinish(conn);
		return NULL;
	}
	PQclear(res);
	return conn;
}

/*
 * main: parse the command line, connect, run the command.
 */
int
main(int argc, char **argv)
{
	MbOptions	opts;
	const MbCommand *cmd = NULL;
	int			given = 0;
	int			first;
	PGconn	   *conn;
	int			rc;

	memset(&opts, 0, sizeof(opts));
	opts.interval = 2.0;
	first = parse_options(argc, argv, &opts, &given);
	if (first < 0)
		return first == -2 ? MB_EXIT_OK : MB_EXIT_ERROR;
	if (first >= argc)
		return usage_error("no command given");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[first], commands[i].name) == 0)
			cmd = &commands[i];
	if (cmd == NULL)
		return usage_error("unknown command \"%s\"", argv[first]);
	if (!check_command(cmd, &opts, given, argc - first - 1))
		return MB_EXIT_ERROR;
	if ((conn = mb_connect(&opts)) == NULL)
		return MB_EXIT_ERROR;
	rc = cmd->run(conn, &opts, argv + first + 1, argc - first - 1);
	PQfinish(conn);
	if (fflush(stdout) != 0 && rc == MB_EXIT_OK)
	{
		mb_error("could not write to standard output: %s", strerror(errno));
		rc = MB_EXIT_ERROR;
	}
	return rc;
}
