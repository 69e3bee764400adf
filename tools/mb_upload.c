/*-------------------------------------------------------------------------
 *
 * mb_upload.c
 *	  The local image files of submit (issue #21, direct upload): told by
 *	  their magic numbers, announced to request_uploads in one call (their
 *	  name, type and size: a file over moverz_batch.max_upload_bytes is
 *	  refused there, before anything is sent), then each file's bytes sent
 *	  to its signed single-use upload URL:
 *
 *	  - by HTTP PUT with libcurl, with the headers request_uploads gave,
 *		when the URL is absolute (moverz_batch.upload_base_url is set), or
 *		is a path and --api-url or $MOVERZ_API_URL says where the HTTP API
 *		is (nginx: PUT /api/uploads/<id>?token=...);
 *	  - else over the database connection: store_upload(id, token, bytes),
 *		the bytes a binary bytea parameter.
 *
 *	  One file at a time, read whole (at most the size request_uploads
 *	  accepted), a line "uploaded K/N NAME SIZE" on standard error after
 *	  each.  The first failure stops it all, before any batch is created;
 *	  the uploads already made are deleted when their URLs expire.  An
 *	  upload URL carries its token: it is never printed.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "moverz-batch.h"

#ifndef MB_VERSION
#define MB_VERSION "unknown"
#endif

/* An HTTP answer is kept up to this many bytes (its error message). */
#define MAX_ANSWER_BYTES 65536

/* How the bytes of the files are sent. */
typedef struct Sender
{
	PGconn	   *conn;
	const char *api_url;		/* makes a path absolute; NULL: none */
	CURL	   *curl;			/* NULL until the first HTTP upload */
	bool		curl_global;	/* curl_global_init succeeded */
	char		errbuf[CURL_ERROR_SIZE];
	StrBuf		answer;			/* the last HTTP answer's body */
} Sender;

/* The bytes of one HTTP PUT, as curl reads them. */
typedef struct Body
{
	const char *data;
	size_t		len;
	size_t		pos;
} Body;

/* request_uploads with the project given, or created in the same statement:
 * one row per file, in order: the project, the upload's id, its URL and its
 * headers as "Name: value" lines. */
#define UPLOAD_COLUMNS \
	"x.e ->> 'uploadId', x.e ->> 'url', " \
	"(SELECT string_agg(h.key || ': ' || h.value, E'\\n') FROM jsonb_each_text(x.e -> 'headers') AS h)"
static const char *const request_sql[2] = {
	"SELECT $1::uuid, " UPLOAD_COLUMNS
	" FROM jsonb_array_elements(moverz_batch.request_uploads($1::uuid, $2, $3::jsonb))"
	" WITH ORDINALITY AS x(e, i) ORDER BY x.i",
	"SELECT p, " UPLOAD_COLUMNS
	" FROM moverz_batch.create_project($2, $1) AS p,"
	" jsonb_array_elements(moverz_batch.request_uploads(p, $2, $3::jsonb))"
	" WITH ORDINALITY AS x(e, i) ORDER BY x.i",
};

/*
 * files_json: the "files" of request_uploads, one {"filename",
 * "contentType", "size"} per image file of list.  Malloc'd.
 */
static char *
files_json(const AssetList *list)
{
	StrBuf		sb = {NULL, 0, 0};
	char		size[32];

	mb_sb_append(&sb, "[", 1);
	for (int i = 0; i < list->n; i++)
	{
		const Asset *a = &list->items[i];

		if (a->url != NULL)
			continue;
		mb_sb_append(&sb, sb.len > 1 ? ", {\"filename\": " : "{\"filename\": ", sb.len > 1 ? 15 : 13);
		mb_sb_append_json_string(&sb, a->filename);
		mb_sb_append(&sb, ", \"contentType\": ", 17);
		mb_sb_append_json_string(&sb, a->content_type);
		mb_sb_append(&sb, size, snprintf(size, sizeof(size), ", \"size\": %lld}", a->size));
	}
	mb_sb_append(&sb, "]", 1);
	return sb.data;
}

/*
 * request_uploads: one upload URL per image file of list (and the project,
 * with --create-project); each file's upload_id set.  The result (see
 * request_sql), or NULL after reporting the error.
 */
static PGresult *
request_uploads(PGconn *conn, const MbOptions *opts, AssetList *list)
{
	char	   *json = files_json(list);
	const char *params[3] = {opts->create_project ? opts->create_project : opts->project,
	opts->user, json};
	PGresult   *res = PQexecParams(conn, request_sql[opts->create_project != NULL], 3, NULL,
								   params, NULL, NULL, 0);

	free(json);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != list->nfiles)
	{
		mb_report_error(conn, res);
		mb_explain_error(res, list);
		PQclear(res);
		return NULL;
	}
	for (int i = 0, k = 0; i < list->n; i++)
		if (list->items[i].url == NULL)
			list->items[i].upload_id = mb_strdup(PQgetvalue(res, k++, 1));
	if (opts->create_project)
		fprintf(stderr, "%s: created project %s\n", progname, PQgetvalue(res, 0, 0));
	return res;
}

/*
 * read_file: the bytes of an image file, which must still have the size
 * announced; malloc'd, or NULL after reporting an error.
 */
static char *
read_file(const Asset *a, size_t *len)
{
	FILE	   *in = fopen(a->input, "r");
	char	   *bytes;

	if (in == NULL)
	{
		mb_error("could not open file \"%s\": %s", a->input, strerror(errno));
		return NULL;
	}
	bytes = mb_malloc((size_t) a->size + 1);
	errno = 0;
	*len = fread(bytes, 1, (size_t) a->size + 1, in);
	if (ferror(in))
		mb_error("could not read file \"%s\": %s", a->input, strerror(errno));
	else if (*len != (size_t) a->size)
		mb_error("file \"%s\" changed while it was submitted: it had %lld bytes", a->input, a->size);
	if (ferror(in) || *len != (size_t) a->size)
	{
		free(bytes);
		bytes = NULL;
	}
	fclose(in);
	return bytes;
}

/*
 * upload_failed: "could not upload "FILE"[ to URL]: WHYMESSAGE", and the
 * hint.  The URL (NULL: none) is printed without its query: its token.
 */
static void
upload_failed(const Asset *a, const char *url, const char *why, const char *message,
			  const char *hint)
{
	mb_error("could not upload \"%s\"%s%.*s: %s%s", a->input, url ? " to " : "",
			 url ? (int) strcspn(url, "?") : 0, url ? url : "", why, message);
	if (hint != NULL && *hint != '\0')
		mb_print_trimmed("hint", hint);
}

/*
 * token_of: the value of the "token" parameter of an upload URL's query
 * (hex digits: nothing to decode), malloc'd, or NULL.
 */
static char *
token_of(const char *url)
{
	const char *p = strchr(url, '?');
	size_t		n;
	char	   *token;

	while (p != NULL && strncmp(p + 1, "token=", 6) != 0)
		p = strchr(p + 1, '&');
	if (p == NULL)
		return NULL;
	p += 7;
	n = strcspn(p, "&#");
	token = mb_malloc(n + 1);
	memcpy(token, p, n);
	token[n] = '\0';
	return token;
}

/*
 * sql_store: send the bytes over the database connection, store_upload
 * with the token of the upload URL; false after reporting the error.
 */
static bool
sql_store(Sender *s, const Asset *a, const char *url, const char *bytes, size_t len)
{
	char	   *token = token_of(url);
	const char *values[3] = {a->upload_id, token, bytes};
	int			lengths[3] = {0, 0, (int) len};
	int			formats[3] = {0, 0, 1};
	PGresult   *res;
	bool		ok;

	res = PQexecParams(s->conn, "SELECT moverz_batch.store_upload($1::uuid, $2, $3::bytea)",
					   3, NULL, values, lengths, formats, 0);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	if (!ok && PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) != NULL)
		upload_failed(a, NULL, "", PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
					  PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
	else if (!ok)
		mb_report_error(s->conn, res);
	PQclear(res);
	free(token);
	return ok;
}

/*
 * read_body: curl's read callback: the next bytes of a Body.
 */
static size_t
read_body(char *buf, size_t size, size_t nitems, void *arg)
{
	Body	   *body = arg;
	size_t		n = size * nitems;

	if (n > body->len - body->pos)
		n = body->len - body->pos;
	memcpy(buf, body->data + body->pos, n);
	body->pos += n;
	return n;
}

/*
 * seek_body: curl's seek callback (to send the body again, e.g. on a new
 * connection when a kept-alive one was closed).
 */
static int
seek_body(void *arg, curl_off_t offset, int origin)
{
	Body	   *body = arg;

	if (origin != SEEK_SET || offset < 0 || (size_t) offset > body->len)
		return CURL_SEEKFUNC_CANTSEEK;
	body->pos = (size_t) offset;
	return CURL_SEEKFUNC_OK;
}

/*
 * write_answer: curl's write callback: the answer's body, kept up to
 * MAX_ANSWER_BYTES.
 */
static size_t
write_answer(char *data, size_t size, size_t nmemb, void *arg)
{
	StrBuf	   *answer = arg;
	size_t		n = size * nmemb;
	size_t		room = answer->len < MAX_ANSWER_BYTES ? MAX_ANSWER_BYTES - answer->len : 0;

	mb_sb_append(answer, data, n < room ? n : room);
	return n;
}

#define SETOPT(s, opt, val) \
	do { \
		CURLcode	cc_ = curl_easy_setopt((s)->curl, (opt), (val)); \
		if (cc_ != CURLE_OK) \
			return cc_; \
	} while (0)

/*
 * http_setup: the options of one PUT of body to url, with headers.
 */
static CURLcode
http_setup(Sender *s, const char *url, struct curl_slist *headers, Body *body)
{
	SETOPT(s, CURLOPT_ERRORBUFFER, s->errbuf);
	SETOPT(s, CURLOPT_URL, url);
	SETOPT(s, CURLOPT_UPLOAD, 1L);
	SETOPT(s, CURLOPT_INFILESIZE_LARGE, (curl_off_t) body->len);
	SETOPT(s, CURLOPT_READFUNCTION, read_body);
	SETOPT(s, CURLOPT_READDATA, body);
	SETOPT(s, CURLOPT_SEEKFUNCTION, seek_body);
	SETOPT(s, CURLOPT_SEEKDATA, body);
	SETOPT(s, CURLOPT_HTTPHEADER, headers);
	SETOPT(s, CURLOPT_WRITEFUNCTION, write_answer);
	SETOPT(s, CURLOPT_WRITEDATA, &s->answer);
	SETOPT(s, CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(s, CURLOPT_CONNECTTIMEOUT, 30L);
	/* a transfer stalled for a minute is given up */
	SETOPT(s, CURLOPT_LOW_SPEED_LIMIT, 1L);
	SETOPT(s, CURLOPT_LOW_SPEED_TIME, 60L);
	SETOPT(s, CURLOPT_USERAGENT, "moverz-batch/" MB_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(s, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SETOPT(s, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	return CURLE_OK;
}

/*
 * header_list: curl's list of the "Name: value" lines of request_uploads'
 * headers; false (out of memory) after freeing what was made.
 */
static bool
header_list(const char *lines, struct curl_slist **list)
{
	char	   *copy = mb_strdup(lines);
	char	   *save = NULL;
	struct curl_slist *more;

	*list = NULL;
	for (char *line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
	{
		if ((more = curl_slist_append(*list, line)) == NULL)
		{
			curl_slist_free_all(*list);
			*list = NULL;
			free(copy);
			return false;
		}
		*list = more;
	}
	free(copy);
	return true;
}

/*
 * answer_text: the message of an answer that is not JSON: the <Message> of
 * an XML error (an S3-compatible store's), else the start of the body;
 * control characters as spaces, at most size - 1 bytes.
 */
static void
answer_text(const char *body, char *text, size_t size)
{
	const char *start = strstr(body, "<Message>");
	size_t		n;

	if (start != NULL)
		n = strcspn(start += 9, "<");
	else
		n = strlen(start = body + strspn(body, " \t\r\n"));
	n = n < size - 1 ? n : size - 1;
	for (size_t i = 0; i < n; i++)
		text[i] = (unsigned char) start[i] < 0x20 ? ' ' : start[i];
	text[n] = '\0';
}

/*
 * report_http_error: an HTTP error answer to the PUT of a file, with the
 * API's message and hint (its JSON body, read by the server: this client
 * has no JSON parser), or answer_text when it is not JSON.
 */
static void
report_http_error(Sender *s, const Asset *a, const char *url, long status)
{
	const char *body = s->answer.data ? s->answer.data : "";
	char		why[48];
	char		text[201];
	PGresult   *res = NULL;

	snprintf(why, sizeof(why), "HTTP %ld: ", status);
	if (body[strspn(body, " \t\r\n")] == '{')
		res = PQexecParams(s->conn, "SELECT j ->> 'message', j ->> 'hint' "
						   "FROM (SELECT $1::jsonb AS j) AS a", 1, NULL, &body, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && !PQgetisnull(res, 0, 0))
		upload_failed(a, url, why, PQgetvalue(res, 0, 0),
					  PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1));
	else
	{
		answer_text(body, text, sizeof(text));
		upload_failed(a, url, why, *text ? text : "(an answer without a message)", NULL);
	}
	PQclear(res);
}

/*
 * http_put: send the bytes by HTTP PUT to url (absolute), with the header
 * lines; false after reporting the error (the URL without its token).
 */
static bool
http_put(Sender *s, const Asset *a, const char *url, const char *lines, const char *bytes,
		 size_t len)
{
	Body		body = {bytes, len, 0};
	struct curl_slist *headers = NULL;
	CURLcode	cc = CURLE_OK;
	long		status = 0;

	if (s->curl == NULL && (cc = curl_global_init(CURL_GLOBAL_DEFAULT)) == CURLE_OK)
	{
		s->curl_global = true;
		if ((s->curl = curl_easy_init()) == NULL)
			cc = CURLE_FAILED_INIT;
	}
	if (cc == CURLE_OK && !header_list(lines, &headers))
		cc = CURLE_OUT_OF_MEMORY;
	s->answer.len = 0;
	s->errbuf[0] = '\0';
	if (cc == CURLE_OK)
	{
		cc = http_setup(s, url, headers, &body);
		if (cc == CURLE_OK)
			cc = curl_easy_perform(s->curl);
		if (cc == CURLE_OK)
			cc = curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
		curl_slist_free_all(headers);
	}
	if (cc != CURLE_OK)
		upload_failed(a, url, "", s->errbuf[0] ? s->errbuf : curl_easy_strerror(cc), NULL);
	else if (status < 200 || status > 299)
		report_http_error(s, a, url, status);
	return cc == CURLE_OK && status >= 200 && status <= 299;
}

/*
 * absolute_url: where to PUT the file of an upload URL: the URL when it
 * is absolute, api_url and the path when it is a path and api_url is
 * known; malloc'd.  NULL: send it over the database connection.
 */
static char *
absolute_url(const Sender *s, const char *url)
{
	size_t		n;
	char	   *out;

	if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0)
		return mb_strdup(url);
	if (url[0] != '/' || s->api_url == NULL)
		return NULL;
	n = strlen(s->api_url);
	while (n > 0 && s->api_url[n - 1] == '/')
		n--;
	out = mb_malloc(n + strlen(url) + 1);
	memcpy(out, s->api_url, n);
	strcpy(out + n, url);
	return out;
}

/*
 * announce: how the files go, said once: the server the PUTs go to
 * (scheme and authority of the first URL), or the database connection.
 */
static void
announce(const Sender *s, int nfiles, const char *first_url)
{
	char	   *target = absolute_url(s, first_url);
	const char *files = nfiles == 1 ? "file" : "files";

	if (target != NULL)
	{
		char	   *host = strstr(target, "://") + 3;

		fprintf(stderr, "%s: uploading %d %s by HTTP PUT to %.*s\n", progname, nfiles, files,
				(int) (host - target + strcspn(host, "/?#")), target);
	}
	else
		fprintf(stderr, "%s: uploading %d %s over the database connection (store_upload)\n",
				progname, nfiles, files);
	free(target);
}

/*
 * send_file: the bytes of one file to its upload URL (see absolute_url);
 * then its progress line.  False after reporting the error.
 */
static bool
send_file(Sender *s, const Asset *a, const char *url, const char *lines, int k, int nfiles)
{
	size_t		len;
	char	   *bytes = read_file(a, &len);
	char	   *target;
	char		size[32];
	bool		ok;

	if (bytes == NULL)
		return false;
	target = absolute_url(s, url);
	ok = target ? http_put(s, a, target, lines, bytes, len) : sql_store(s, a, url, bytes, len);
	if (ok && len < 1024)
		snprintf(size, sizeof(size), "%zu bytes", len);
	else if (ok && len < 1024 * 1024)
		snprintf(size, sizeof(size), "%zu kB", (len + 512) / 1024);
	else if (ok)
		snprintf(size, sizeof(size), "%.1f MB", len / 1048576.0);
	if (ok)
		fprintf(stderr, "%s: uploaded %d/%d %s %s\n", progname, k, nfiles, a->filename, size);
	free(target);
	free(bytes);
	return ok;
}

/*
 * mb_upload_files: upload the image files of list (their upload_id set)
 * and, with --create-project, create the project; *project_id is the
 * project's id (malloc'd).  An exit code, after reporting any error.
 */
int
mb_upload_files(PGconn *conn, const MbOptions *opts, AssetList *list, char **project_id)
{
	Sender		s = {conn, opts->api_url, NULL, false, "", {NULL, 0, 0}};
	PGresult   *res;
	bool		ok = true;

	if (s.api_url == NULL && (s.api_url = getenv("MOVERZ_API_URL")) != NULL && *s.api_url == '\0')
		s.api_url = NULL;
	if (s.api_url != NULL && strncmp(s.api_url, "http://", 7) != 0
		&& strncmp(s.api_url, "https://", 8) != 0)
	{
		mb_error("MOVERZ_API_URL must be an http:// or https:// URL, not \"%s\"", s.api_url);
		return MB_EXIT_ERROR;
	}
	if ((res = request_uploads(conn, opts, list)) == NULL)
		return MB_EXIT_ERROR;
	*project_id = mb_strdup(PQgetvalue(res, 0, 0));
	announce(&s, list->nfiles, PQgetvalue(res, 0, 2));
	for (int i = 0, k = 0; i < list->n && ok; i++)
		if (list->items[i].url == NULL)
		{
			ok = send_file(&s, &list->items[i], PQgetvalue(res, k, 2), PQgetvalue(res, k, 3), k + 1,
						   list->nfiles);
			k++;
		}
	if (!ok)
		fprintf(stderr, "%s: detail: no batch was created (files already uploaded are deleted "
				"when their upload URLs expire)\n", progname);
	PQclear(res);
	curl_easy_cleanup(s.curl);
	if (s.curl_global)
		curl_global_cleanup();
	free(s.answer.data);
	return ok ? MB_EXIT_OK : MB_EXIT_ERROR;
}
