/*-------------------------------------------------------------------------
 *
 * mb_bar.c
 *	  How moverz-batch watch shows a batch's progress.  Piped, one plain
 *	  line per change ("HH:MM:SS STATUS N% queued=... total=..."), a format
 *	  scripts parse.  On a terminal, one line redrawn in place: a bar, the
 *	  counts, the rate (photos/s over the last MB_RATE_WINDOW seconds), the
 *	  ETA once known and the status, fitted to the terminal's width (read
 *	  with TIOCGWINSZ, again after SIGWINCH; else $COLUMNS, else 80) and
 *	  never longer than width - 1 columns, so that the terminal never wraps
 *	  it; the parts that matter least are left out first.  Colours only on a
 *	  terminal and when NO_COLOR is not set (https://no-color.org).
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "moverz-batch.h"

/* The rate is measured over this many seconds (a bit more, at most). */
#define MB_RATE_WINDOW 10.0

/* Samples closer than this to the previous one are not kept. */
#define MB_SAMPLE_GAP 0.25

/*
 * The bar's width between its brackets: a quarter of the line, within
 * [BAR_MIN, BAR_MAX], so that it does not change as the text does; less
 * (not under BAR_MIN, else no bar) only when the text left cannot fit.
 */
#define BAR_MAX 40
#define BAR_MIN 10

/* Width when neither the terminal nor $COLUMNS tells it. */
#define DEFAULT_COLUMNS 80

#define MAX_SEGMENTS 12

#define COLOR_GREEN "\033[32m"
#define COLOR_RED "\033[31m"
#define COLOR_YELLOW "\033[33m"
#define COLOR_RESET "\033[0m"

/* A part of the progress line after the bar. */
typedef struct Segment
{
	const char *sep;			/* printed before it unless it comes first */
	char		text[80];		/* printable ASCII: one column per byte */
	const char *color;			/* NULL: none */
	int			rank;			/* 0: always shown; the highest goes first */
	bool		shown;
} Segment;

volatile sig_atomic_t mb_resized = 0;

/*
 * handle_sigwinch: the terminal was resized; the next redraw reads its width.
 */
static void
handle_sigwinch(int signo)
{
	(void) signo;
	mb_resized = 1;
}

/*
 * read_columns: the width of the terminal on stdout, else $COLUMNS, else 80.
 */
static int
read_columns(void)
{
	struct winsize ws;
	const char *env = getenv("COLUMNS");
	int			cols;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	cols = env != NULL ? atoi(env) : 0;
	return cols > 0 ? cols : DEFAULT_COLUMNS;
}

/*
 * mb_is_terminal: a status no worker changes any more.
 */
bool
mb_is_terminal(const char *status)
{
	return strcmp(status, "PARTIAL") == 0 || strcmp(status, "COMPLETED") == 0 ||
		strcmp(status, "FAILED") == 0 || strcmp(status, "CANCELLED") == 0;
}

/*
 * mb_bar_start: get ready to show a batch's progress; on a terminal, follow
 * its width (SIGWINCH) until mb_bar_stop.
 */
void
mb_bar_start(MbBar *bar, bool tty)
{
	const char *no_color = getenv("NO_COLOR");
	struct sigaction sa;

	memset(bar, 0, sizeof(*bar));
	bar->tty = tty;
	if (!tty)
		return;
	bar->color = no_color == NULL || no_color[0] == '\0';
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = handle_sigwinch;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGWINCH, &sa, NULL);
	mb_resized = 0;
	bar->columns = read_columns();
}

/*
 * mb_bar_stop: end the progress line; stop following the terminal's width.
 */
void
mb_bar_stop(MbBar *bar)
{
	struct sigaction sa;

	if (!bar->tty)
		return;
	putchar('\n');
	fflush(stdout);
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGWINCH, &sa, NULL);
}

/*
 * record_sample: keep (now, done) for the rate, unless the last sample is
 * very recent.
 */
static void
record_sample(MbBar *bar, double now, long done)
{
	if (bar->nsamples > 0 && now - bar->sample_time[bar->head] < MB_SAMPLE_GAP)
		return;
	bar->head = (bar->head + 1) % MB_RATE_SAMPLES;
	bar->sample_time[bar->head] = now;
	bar->sample_done[bar->head] = done;
	if (bar->nsamples < MB_RATE_SAMPLES)
		bar->nsamples++;
}

/*
 * bar_rate: photos finished per second since the newest sample at least
 * MB_RATE_WINDOW seconds old (else the oldest one); -1 while under a second
 * of history.
 */
static double
bar_rate(const MbBar *bar, double now, long done)
{
	int			from = -1;

	for (int i = 0; i < bar->nsamples; i++)
	{
		int			k = (bar->head - i + MB_RATE_SAMPLES) % MB_RATE_SAMPLES;

		from = k;
		if (now - bar->sample_time[k] >= MB_RATE_WINDOW)
			break;
	}
	if (from < 0 || now - bar->sample_time[from] < 1.0)
		return -1;
	return (done - bar->sample_done[from]) / (now - bar->sample_time[from]);
}

/*
 * format_duration: seconds as "42s", "3m05s" or "2h07m".
 */
static void
format_duration(char *buf, size_t len, double seconds)
{
	long		s = (long) (seconds + 0.5);

	if (s < 60)
		snprintf(buf, len, "%lds", s);
	else if (s < 3600)
		snprintf(buf, len, "%ldm%02lds", s / 60, s % 60);
	else
		snprintf(buf, len, "%ldh%02ldm", s / 3600, s % 3600 / 60);
}

/*
 * add_segment: append a part of the line (text from fmt) to segs[*n].
 */
static void add_segment(Segment *segs, int *n, int rank, const char *color,
						const char *sep, const char *fmt,...)
			__attribute__((format(printf, 6, 7)));

static void
add_segment(Segment *segs, int *n, int rank, const char *color, const char *sep,
			const char *fmt,...)
{
	va_list		ap;
	Segment    *seg = &segs[(*n)++];

	seg->sep = sep;
	seg->rank = rank;
	seg->color = color;
	seg->shown = true;
	va_start(ap, fmt);
	vsnprintf(seg->text, sizeof(seg->text), fmt, ap);
	va_end(ap);
}

/*
 * build_segments: the parts of the progress line, in their order; returns
 * how many.
 */
static int
build_segments(const BatchState *st, double rate, Segment *segs)
{
	int			n = 0;
	long		left = st->queued + st->processing;
	bool		done = mb_is_terminal(st->status);
	char		eta[32];

	add_segment(segs, &n, 0, NULL, "", "%3d%%", st->progress);
	add_segment(segs, &n, 0, COLOR_GREEN, "  ", "%ld/%ld done", st->completed, st->total);
	if (st->failed > 0)
		add_segment(segs, &n, 1, COLOR_RED, ", ", "%ld failed", st->failed);
	if (st->cancelled > 0)
		add_segment(segs, &n, 1, COLOR_YELLOW, ", ", "%ld cancelled", st->cancelled);
	if (!done)
		add_segment(segs, &n, 5, NULL, ", ", "%ld processing, %ld queued",
					st->processing, st->queued);
	if (rate >= 0)
		add_segment(segs, &n, 3, NULL, "  ", rate < 10 ? "%.1f photos/s" : "%.0f photos/s", rate);
	if (!done && rate > 0 && left > 0)
	{
		format_duration(eta, sizeof(eta), left / rate);
		add_segment(segs, &n, 2, NULL, "  ", "ETA %s", eta);
	}
	add_segment(segs, &n, done ? 1 : 4, NULL, "  ", "%s", st->status);
	if (done && !st->inventory_ready)
		add_segment(segs, &n, 2, NULL, ", ", "waiting for the inventory");
	if (st->ai_down_since[0])
		add_segment(segs, &n, 1, COLOR_YELLOW, "  ", "AI service down since %s, waiting",
					st->ai_down_since);
	return n;
}

/*
 * segments_width: the columns the shown segments take.
 */
static int
segments_width(const Segment *segs, int n)
{
	int			w = 0;
	bool		first = true;

	for (int i = 0; i < n; i++)
		if (segs[i].shown)
		{
			w += (first ? 0 : (int) strlen(segs[i].sep)) + (int) strlen(segs[i].text);
			first = false;
		}
	return w;
}

/*
 * fit_segments: leave out segments, the highest rank (the last of it)
 * first, until they fit in avail columns beside the bar (3 columns more
 * than its width: brackets and a blank), of its preferred width for the
 * segments of rank 2 and more, of BAR_MIN at least for the others; returns
 * the bar's width (0: no bar, the segments alone may still not fit).
 */
static int
fit_segments(Segment *segs, int n, int avail)
{
	int			pref = avail / 4;
	int			w;

	pref = pref < BAR_MIN ? BAR_MIN : pref > BAR_MAX ? BAR_MAX : pref;
	for (;;)
	{
		int			drop = -1;

		w = segments_width(segs, n);
		for (int i = 0; i < n; i++)
			if (segs[i].shown && segs[i].rank > 0 &&
				(drop < 0 || segs[i].rank >= segs[drop].rank))
				drop = i;
		if (w + (drop >= 0 && segs[drop].rank >= 2 ? pref : BAR_MIN) + 3 <= avail)
			break;
		if (drop < 0)
			return 0;
		segs[drop].shown = false;
	}
	w = avail - w - 3;
	return w > pref ? pref : w;
}

/*
 * put_text: append text to the line, at most *room more columns, in color
 * (NULL: none).
 */
static void
put_text(FILE *out, const char *text, const char *color, int *room)
{
	int			len = (int) strlen(text);

	if (len > *room)
		len = *room;
	if (len <= 0)
		return;
	if (color != NULL)
		fputs(color, out);
	fwrite(text, 1, len, out);
	if (color != NULL)
		fputs(COLOR_RESET, out);
	*room -= len;
}

/*
 * draw_bar: redraw the progress line in place, within the terminal's width.
 */
static void
draw_bar(MbBar *bar, const BatchState *st, double rate)
{
	Segment		segs[MAX_SEGMENTS];
	int			n = build_segments(st, rate, segs);
	int			room;
	int			width;
	bool		first = true;

	if (mb_resized)
	{
		mb_resized = 0;
		bar->columns = read_columns();
	}
	room = bar->columns - 1;
	width = fit_segments(segs, n, room);
	fputc('\r', stdout);
	if (width > 0)
	{
		int			filled = st->progress * width / 100;
		char		line[BAR_MAX + 4];

		line[0] = '[';
		memset(line + 1, '#', filled);
		memset(line + 1 + filled, '.', width - filled);
		strcpy(line + 1 + width, "] ");
		put_text(stdout, line, NULL, &room);
	}
	for (int i = 0; i < n; i++)
		if (segs[i].shown)
		{
			put_text(stdout, first ? "" : segs[i].sep, NULL, &room);
			put_text(stdout, segs[i].text, bar->color ? segs[i].color : NULL, &room);
			first = false;
		}
	fputs("\033[K", stdout);
}

/*
 * print_line: one plain line "HH:MM:SS STATUS N% queued=... total=...".
 */
static void
print_line(const BatchState *st)
{
	char		stamp[16];
	time_t		t = time(NULL);
	struct tm	tm;

	localtime_r(&t, &tm);
	strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
	printf("%s %s %d%% queued=%ld processing=%ld completed=%ld failed=%ld",
		   stamp, st->status, st->progress, st->queued, st->processing,
		   st->completed, st->failed);
	if (st->cancelled > 0)
		printf(" cancelled=%ld", st->cancelled);
	printf(" total=%ld%s", st->total, st->inventory_ready ? " inventory=ready" : "");
	if (st->ai_down_since[0])
		printf(" waiting_for_ai_service_since=%s", st->ai_down_since);
	printf("\n");
}

/*
 * mb_bar_show: show the batch's state: on a terminal, redraw the line (also
 * when only the rate or the width changed); otherwise print a plain line.
 */
void
mb_bar_show(MbBar *bar, const BatchState *st)
{
	double		now = mb_now();
	long		done = st->completed + st->failed;
	double		rate;

	if (bar->tty)
	{
		rate = bar_rate(bar, now, done);
		record_sample(bar, now, done);
		draw_bar(bar, st, rate);
	}
	else
		print_line(st);
	fflush(stdout);
}

/*
 * mb_bar_print: text and a newline; on a terminal, wrapped at blanks (after
 * a comma when one is not too far back) to
 * fit its width.
 */
void
mb_bar_print(const MbBar *bar, const char *text)
{
	int			max = bar->tty ? bar->columns - 1 : 0;

	while (max > 0 && (int) strlen(text) > max)
	{
		int			cut = max;
		int			comma = max;

		while (cut > 0 && text[cut] != ' ')
			cut--;
		while (comma > max / 2 && (text[comma] != ' ' || text[comma - 1] != ','))
			comma--;
		if (comma > max / 2)
			cut = comma;		/* rather after a comma */
		if (cut == 0)
			break;				/* one word longer than the line */
		printf("%.*s\n", cut, text);
		text += cut + 1;
	}
	printf("%s\n", text);
}
