/*-------------------------------------------------------------------------
 *
 * mb_submit.c
 *	  The command submit of moverz-batch: a batch of the photos named on
 *	  the command line, in order.  An argument that is a local JPEG, PNG,
 *	  WebP or GIF file (told by its magic numbers) is one photo, uploaded
 *	  first (mb_upload.c); any other argument, or "-" or none for standard
 *	  input, lists photos by URL, one "URL [ROOM_TYPE]" a line.  Then one
 *	  create_batch call, whose "assets" are {"filename", "url", "roomType"}
 *	  and {"uploadId"} elements, and the batch id on standard output.
 *
 *	  Everything is read (and every list checked) before anything is sent.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "moverz-batch.h"
#include "image_type.h"

/* Most bytes of a filename (check_assets, check_upload_file). */
#define MAX_FILENAME_BYTES 255

/*
 * mb_sb_append: append n bytes to a StrBuf, growing it.
 */
void
mb_sb_append(StrBuf *sb, const char *s, size_t n)
{
	if (sb->len + n + 1 > sb->cap)
	{
		sb->cap = sb->cap ? sb->cap : 256;
		while (sb->len + n + 1 > sb->cap)
			sb->cap *= 2;
		sb->data = mb_realloc(sb->data, sb->cap);
	}
	memcpy(sb->data + sb->len, s, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
}

/*
 * mb_sb_append_json_string: append s as a JSON string literal, escaped
 * (quote, backslash, control characters); other bytes are copied as they
 * are, and the server rejects what is not UTF-8.
 */
void
mb_sb_append_json_string(StrBuf *sb, const char *s)
{
	mb_sb_append(sb, "\"", 1);
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;
		char		esc[8];

		if (c == '"' || c == '\\')
		{
			esc[0] = '\\';
			esc[1] = (char) c;
			mb_sb_append(sb, esc, 2);
		}
		else if (c < 0x20)
			mb_sb_append(sb, esc, snprintf(esc, sizeof(esc), "\\u%04x", c));
		else
			mb_sb_append(sb, s, 1);
	}
	mb_sb_append(sb, "\"", 1);
}

/*
 * name_dup: the n bytes of seg as a filename, cut to MAX_FILENAME_BYTES on
 * a character boundary.  Malloc'd.
 */
static char *
name_dup(const char *seg, size_t n)
{
	char	   *name;

	if (n > MAX_FILENAME_BYTES)
	{
		n = MAX_FILENAME_BYTES;
		while (n > 0 && ((unsigned char) seg[n] & 0xC0) == 0x80)
			n--;
	}
	name = mb_malloc(n + 1);
	memcpy(name, seg, n);
	name[n] = '\0';
	return name;
}

/*
 * filename_from_url: the last segment of the URL's path (before any query
 * or fragment), cut as name_dup does; "photoN" when the path has none.
 * Malloc'd.
 */
static char *
filename_from_url(const char *url, int position)
{
	const char *start = strstr(url, "://");
	const char *path;
	const char *end;
	const char *seg;
	char	   *name;

	start = start ? start + 3 : url;
	path = start + strcspn(start, "/?#");	/* skip the authority */
	end = path + strcspn(path, "?#");
	seg = end;
	while (seg > path && seg[-1] != '/')
		seg--;
	if (*path != '/' || end == seg)
	{
		name = mb_malloc(32);
		snprintf(name, 32, "photo%d", position + 1);
		return name;
	}
	return name_dup(seg, (size_t) (end - seg));
}

/*
 * new_asset: a new, zeroed, last element of list, from input.
 */
static Asset *
new_asset(AssetList *list, const char *input)
{
	Asset	   *a;

	if (list->n == list->cap)
	{
		list->cap = list->cap ? list->cap * 2 : 64;
		list->items = mb_realloc(list->items, sizeof(Asset) * list->cap);
	}
	a = &list->items[list->n++];
	memset(a, 0, sizeof(Asset));
	a->input = input;
	return a;
}

/*
 * parse_asset_line: one input line: "URL [ROOM_TYPE]", blank or "#
 * comment" (also after the fields).  Appends to list; false after
 * reporting a malformed line.
 */
static bool
parse_asset_line(char *line, const char *input, int line_no, AssetList *list)
{
	const char *ws = " \t\r\n\v\f";
	char	   *field[3] = {NULL, NULL, NULL};
	int			nfields = 0;
	char	   *p = line;
	Asset	   *a;

	while (nfields < 3)
	{
		p += strspn(p, ws);
		if (*p == '\0' || *p == '#')
			break;
		field[nfields++] = p;
		p += strcspn(p, ws);
		if (*p != '\0')
			*p++ = '\0';
	}
	if (nfields == 0)
		return true;
	if (nfields > 2)
	{
		mb_error("%s:%d: expected \"URL [ROOM_TYPE]\", found more fields", input, line_no);
		return false;
	}
	a = new_asset(list, input);
	a->url = mb_strdup(field[0]);
	a->room_type = field[1] ? mb_strdup(field[1]) : NULL;
	a->line = line_no;
	return true;
}

/*
 * read_assets: all the photos of a list of URLs; false after reporting an
 * error.
 */
static bool
read_assets(FILE *in, const char *input, AssetList *list)
{
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		len;
	int			line_no = 0;
	bool		ok = true;

	errno = 0;
	while (ok && (len = getline(&line, &cap, in)) >= 0)
	{
		line_no++;
		if (memchr(line, '\0', (size_t) len) != NULL)
		{
			mb_error("%s:%d: unexpected NUL byte", input, line_no);
			ok = false;
		}
		else
			ok = parse_asset_line(line, input, line_no, list);
	}
	if (ok && ferror(in))
	{
		mb_error("could not read %s: %s", input, strerror(errno));
		ok = false;
	}
	free(line);
	return ok;
}

/*
 * image_name: path ends like the name of an image file.
 */
static bool
image_name(const char *path)
{
	static const char *const ext[] = {".jpg", ".jpeg", ".png", ".webp", ".gif"};
	size_t		n = strlen(path);

	for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++)
		if (n > strlen(ext[i]) && strcasecmp(path + n - strlen(ext[i]), ext[i]) == 0)
			return true;
	return false;
}

/*
 * hint_not_image: after an error in a list of URLs named like an image,
 * say why it was read as a list.
 */
static void
hint_not_image(const char *path)
{
	if (image_name(path))
		fprintf(stderr, "%s: hint: \"%s\" is no JPEG, PNG, WebP or GIF image (by its first bytes): "
				"it was read as a list of photo URLs\n", progname, path);
}

/*
 * read_argument: the photos of one argument of submit: "-" (standard
 * input), a local image file, or a list of URLs.  A regular file only is
 * looked at for an image (a pipe cannot be read twice).  False after
 * reporting an error.
 */
static bool
read_argument(const char *arg, AssetList *list)
{
	FILE	   *in;
	struct stat st;
	unsigned char head[12];
	const char *type = NULL;
	const char *base = strrchr(arg, '/');
	Asset	   *a;
	bool		ok = true;

	if (strcmp(arg, "-") == 0)
		return read_assets(stdin, "standard input", list);
	if ((in = fopen(arg, "r")) == NULL)
	{
		mb_error("could not open file \"%s\": %s", arg, strerror(errno));
		return false;
	}
	if (fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode))
	{
		type = moverz_image_type(head, fread(head, 1, sizeof(head), in));
		rewind(in);
	}
	if (type != NULL)
	{
		base = base ? base + 1 : arg;
		a = new_asset(list, arg);
		a->filename = name_dup(base, strlen(base));
		a->content_type = type;
		a->size = (long long) st.st_size;
		list->nfiles++;
	}
	else if (!(ok = read_assets(in, arg, list)))
		hint_not_image(arg);
	fclose(in);
	return ok;
}

/*
 * assets_json: the "assets" array of create_batch.  Malloc'd.
 */
static char *
assets_json(const AssetList *list)
{
	StrBuf		sb = {NULL, 0, 0};

	mb_sb_append(&sb, "[", 1);
	for (int i = 0; i < list->n; i++)
	{
		const Asset *a = &list->items[i];
		char	   *filename;

		mb_sb_append(&sb, i > 0 ? ",\n {" : "{", i > 0 ? 4 : 1);
		if (a->url == NULL)
		{
			mb_sb_append(&sb, "\"uploadId\": ", 12);
			mb_sb_append_json_string(&sb, a->upload_id);
		}
		else
		{
			filename = filename_from_url(a->url, i);
			mb_sb_append(&sb, "\"filename\": ", 12);
			mb_sb_append_json_string(&sb, filename);
			mb_sb_append(&sb, ", \"url\": ", 9);
			mb_sb_append_json_string(&sb, a->url);
			free(filename);
		}
		if (a->room_type)
		{
			mb_sb_append(&sb, ", \"roomType\": ", 14);
			mb_sb_append_json_string(&sb, a->room_type);
		}
		mb_sb_append(&sb, "}", 1);
	}
	mb_sb_append(&sb, "]", 1);
	return sb.data;
}

/*
 * free_assets: release an AssetList.
 */
static void
free_assets(AssetList *list)
{
	for (int i = 0; i < list->n; i++)
	{
		free(list->items[i].url);
		free(list->items[i].room_type);
		free(list->items[i].filename);
		free(list->items[i].upload_id);
	}
	free(list->items);
}

/*
 * mb_explain_error: when the server's message names "assets[N]" (of
 * create_batch) or "files[N]" (of request_uploads: the image files only),
 * say which input line or which file that photo is.
 */
void
mb_explain_error(const PGresult *res, const AssetList *list)
{
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const Asset *a = NULL;
	bool		files;
	const char *num;
	char	   *end;
	long		idx;

	if (msg == NULL)
		return;
	files = strncmp(msg, "files[", 6) == 0;
	if (!files && strncmp(msg, "assets[", 7) != 0)
		return;
	num = msg + (files ? 6 : 7);
	idx = strtol(num, &end, 10);
	if (end == num || *end != ']' || idx < 0)
		return;
	for (int i = 0, k = 0; i < list->n && a == NULL; i++)
		if (files ? list->items[i].url == NULL && k++ == idx : i == idx)
			a = &list->items[i];
	if (a != NULL && a->url != NULL)
	{
		fprintf(stderr, "%s: detail: %.*s is line %d of %s\n",
				progname, (int) (end + 1 - msg), msg, a->line, a->input);
		hint_not_image(a->input);
	}
	else if (a != NULL)
		fprintf(stderr, "%s: detail: %.*s is the file %s\n",
				progname, (int) (end + 1 - msg), msg, a->input);
}

/*
 * run_create_batch: create the batch in project (NULL: the options'; with
 * --create-project, the project is created in the same statement, so
 * atomically); prints the batch id.
 */
static int
run_create_batch(PGconn *conn, const MbOptions *opts, const char *project,
				 const char *json, const AssetList *list)
{
	const char *params[5];
	bool		create = project == NULL && opts->create_project != NULL;
	PGresult   *res;

	params[0] = project ? project : create ? opts->create_project : opts->project;
	params[1] = opts->user;
	params[2] = json;
	params[3] = opts->priority ? opts->priority : "NORMAL";
	params[4] = opts->idempotency_key;
	res = PQexecParams(conn, create
					   ? "SELECT p, moverz_batch.create_batch(p, $2, $3::jsonb, $4, $5) "
					   "FROM moverz_batch.create_project($2, $1) AS p"
					   : "SELECT $1::uuid, moverz_batch.create_batch($1::uuid, $2, $3::jsonb, $4, $5)",
					   5, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		mb_report_error(conn, res);
		mb_explain_error(res, list);
		PQclear(res);
		return MB_EXIT_ERROR;
	}
	if (create)
		fprintf(stderr, "%s: created project %s\n", progname, PQgetvalue(res, 0, 0));
	printf("%s\n", PQgetvalue(res, 0, 1));
	PQclear(res);
	return MB_EXIT_OK;
}

/*
 * mb_submit: "submit [FILE]...": a batch of the photos of the FILEs (none:
 * standard input), the image files uploaded first.
 */
int
mb_submit(PGconn *conn, const MbOptions *opts, char **args, int nargs)
{
	AssetList	list = {NULL, 0, 0, 0};
	char	   *project = NULL;
	char	   *json;
	int			rc = MB_EXIT_OK;

	for (int i = 0; i < (nargs > 0 ? nargs : 1) && rc == MB_EXIT_OK; i++)
		if (!read_argument(nargs > 0 ? args[i] : "-", &list))
			rc = MB_EXIT_ERROR;
	if (rc == MB_EXIT_OK && list.nfiles > 0)
		rc = mb_upload_files(conn, opts, &list, &project);
	if (rc == MB_EXIT_OK)
	{
		json = assets_json(&list);
		rc = run_create_batch(conn, opts, project, json, &list);
		free(json);
	}
	free(project);
	free_assets(&list);
	return rc;
}
