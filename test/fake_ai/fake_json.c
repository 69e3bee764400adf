/*-------------------------------------------------------------------------
 *
 * fake_json.c
 *		String buffers and the tiny JSON scanner and escaper of the fake AI
 *		service.
 *
 * The scanner validates a whole JSON text and keeps the string members of
 * interest of the top-level object of an analyze request; strings are
 * decoded into an arena no larger than the text.
 *
 *-------------------------------------------------------------------------
 */
#include "fake_ai.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH	64

/*
 * sb_append: append n bytes of s to sb, growing it as needed.  If s is
 * NULL, the n bytes are only reserved (the caller fills them).
 */
void
sb_append(StrBuf *sb, const char *s, size_t n)
{
	if (sb->len + n + 1 > sb->cap)
	{
		sb->cap = sb->len + n + 1 > 2 * sb->cap ? sb->len + n + 256 : 2 * sb->cap;
		if ((sb->data = realloc(sb->data, sb->cap)) == NULL)
			abort();
	}
	if (s != NULL)
		memcpy(sb->data + sb->len, s, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
}

/* sb_printf: append printf-formatted text to sb. */
void
__attribute__((format(printf, 2, 3)))
sb_printf(StrBuf *sb, const char *fmt,...)
{
	va_list		ap;
	char		small[256];
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < (int) sizeof(small))
		sb_append(sb, small, (size_t) n);
	else
	{
		sb_append(sb, NULL, (size_t) n);
		va_start(ap, fmt);
		vsnprintf(sb->data + sb->len - n, (size_t) n + 1, fmt, ap);
		va_end(ap);
	}
}

/* sb_json_str: append s to sb as a quoted, escaped JSON string. */
void
sb_json_str(StrBuf *sb, const char *s)
{
	sb_append(sb, "\"", 1);
	for (; *s; s++)
	{
		if (*s == '"' || *s == '\\')
			sb_append(sb, "\\", 1);
		if ((unsigned char) *s < 0x20)
			sb_printf(sb, "\\u%04x", (unsigned int) *s);
		else
			sb_append(sb, s, 1);
	}
	sb_append(sb, "\"", 1);
}

/* hexval: the value of hex digit ch, or -1. */
int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f')
		return (ch | 0x20) - 'a' + 10;
	return -1;
}

/* js_ws: skip JSON white space. */
void
js_ws(JsonCur *c)
{
	while (c->p < c->end && strchr(" \t\n\r", *c->p) != NULL && *c->p)
		c->p++;
}

/* js_hex4: read the 4 hex digits at p (before end) into *v. */
static bool
js_hex4(const char *p, const char *end, unsigned int *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++)
	{
		if (p + i >= end || hexval(p[i]) < 0)
			return false;
		*v = *v * 16 + (unsigned int) hexval(p[i]);
	}
	return true;
}

/*
 * js_escape: decode the escape sequence after a backslash at c->p.  A
 * decoded string is never longer than its JSON text, so the arena fits.
 */
static bool
js_escape(JsonCur *c)
{
	const char *map = "\"\"\\\\//b\bf\fn\nr\rt\t";
	unsigned int cp,
				lo;
	int			n;

	for (const char *m = map; *m && c->p < c->end; m += 2)
		if (*c->p == m[0])
		{
			*c->out++ = m[1];
			c->p++;
			return true;
		}
	if (c->p >= c->end || *c->p != 'u' || !js_hex4(c->p + 1, c->end, &cp))
		return false;
	c->p += 5;
	if (cp >= 0xD800 && cp < 0xDC00 && c->end - c->p >= 6 && c->p[0] == '\\' &&
		c->p[1] == 'u' && js_hex4(c->p + 2, c->end, &lo) &&
		lo >= 0xDC00 && lo < 0xE000)
	{
		cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
		c->p += 6;
	}
	else if (cp >= 0xD800 && cp < 0xE000)
		cp = 0xFFFD;			/* lone surrogate */
	/* UTF-8: a lead byte, then n continuation bytes */
	n = cp < 0x80 ? 0 : cp < 0x800 ? 1 : cp < 0x10000 ? 2 : 3;
	*c->out++ = (char) (((0xFF00 >> (n + 1)) & (n ? 0xFF : 0)) | (cp >> (6 * n)));
	while (n-- > 0)
		*c->out++ = (char) (0x80 | ((cp >> (6 * n)) & 0x3F));
	return true;
}

/* js_string: decode the JSON string at c->p; *dst is the C string. */
static bool
js_string(JsonCur *c, char **dst)
{
	if (c->p >= c->end || *c->p++ != '"')
		return false;
	*dst = c->out;
	while (c->p < c->end)
	{
		unsigned char ch = (unsigned char) *c->p++;

		if (ch == '"')
		{
			*c->out++ = '\0';
			return true;
		}
		if (ch < 0x20 || (ch == '\\' && !js_escape(c)))
			return false;
		if (ch != '\\')
			*c->out++ = (char) ch;
	}
	return false;
}

/* js_digits: skip decimal digits; false if there are none. */
static bool
js_digits(JsonCur *c)
{
	const char *start = c->p;

	while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
		c->p++;
	return c->p > start;
}

/* js_number: skip a JSON number. */
bool
js_number(JsonCur *c)
{
	if (c->p < c->end && *c->p == '-')
		c->p++;
	if (!js_digits(c))
		return false;
	if (c->p < c->end && *c->p == '.' && (++c->p, !js_digits(c)))
		return false;
	if (c->p < c->end && (*c->p == 'e' || *c->p == 'E'))
	{
		c->p++;
		if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
			c->p++;
		return js_digits(c);
	}
	return true;
}

/*
 * The string members of an analyze request that are kept, in the order of
 * the FIELD_* bits of fake_ai.h.
 */
static const struct
{
	const char *name;
	size_t		offset;
}			req_fields[] = {
	{"photo_id", offsetof(AnalyzeReq, photo_id)},
	{"image_url", offsetof(AnalyzeReq, image_url)},
	{"filename", offsetof(AnalyzeReq, filename)},
	{"room_type", offsetof(AnalyzeReq, room_type)},
	{"image_base64", offsetof(AnalyzeReq, image_base64)},
	{"media_type", offsetof(AnalyzeReq, media_type)},
};

/*
 * js_field: the field of req named key, or NULL; *bit is its bit in
 * req->nonstring.  Only the members of the top-level object (req != NULL)
 * are kept.
 */
static char **
js_field(AnalyzeReq *req, const char *key, unsigned int *bit)
{
	for (size_t i = 0; req != NULL && i < lengthof(req_fields); i++)
		if (strcmp(key, req_fields[i].name) == 0)
		{
			*bit = 1U << i;
			return (char **) ((char *) req + req_fields[i].offset);
		}
	return NULL;
}

/*
 * js_member: read the value at c->p of a member (or element) of depth; field
 * is the field of req it fills (NULL: none), bit the field's bit of
 * req->nonstring.  A kept string moves *save past it.
 */
static bool
js_member(JsonCur *c, int depth, AnalyzeReq *req, char **field,
		  unsigned int bit, char **save)
{
	if (field == NULL)
		return js_value(c, depth + 1, NULL);
	req->nonstring &= ~bit;
	if (c->p < c->end && *c->p == '"')
	{
		if (!js_string(c, field))
			return false;
		*save = c->out;			/* keep the value */
		return true;
	}
	*field = NULL;
	if (c->p < c->end && *c->p != 'n')
		req->nonstring |= bit;
	return js_value(c, depth + 1, NULL);
}

/*
 * js_value: skip (and validate) the JSON value at c->p.  If req is set,
 * the value must be an object, whose string members of interest are kept
 * in req (a member that is null or not a string leaves its field NULL; one
 * that is not null sets its bit of req->nonstring).  The last of repeated
 * members wins.
 */
bool
js_value(JsonCur *c, int depth, AnalyzeReq *req)
{
	char	   *save = c->out,
			   *s,
			  **field = NULL;
	char		open,
				close;
	unsigned int bit = 0;

	js_ws(c);
	if (c->p >= c->end || depth > JSON_MAX_DEPTH)
		return false;
	open = *c->p;
	if (req != NULL && open != '{')
		return false;
	if (open == '"')
	{
		bool		ok = js_string(c, &s);

		c->out = save;
		return ok;
	}
	for (int i = 0; open != '{' && open != '[' && i < 3; i++)
	{
		static const char *const lits[] = {"true", "false", "null"};
		size_t		n = strlen(lits[i]);

		if ((size_t) (c->end - c->p) >= n && memcmp(c->p, lits[i], n) == 0)
		{
			c->p += n;
			return true;
		}
	}
	if (open != '{' && open != '[')
		return js_number(c);
	close = open == '{' ? '}' : ']';
	c->p++;
	js_ws(c);
	if (c->p < c->end && *c->p == close)
	{
		c->p++;
		return true;
	}
	for (;;)
	{
		if (open == '{')
		{
			js_ws(c);
			if (!js_string(c, &s))
				return false;
			field = js_field(req, s, &bit);
			c->out = save;		/* forget the key */
			js_ws(c);
			if (c->p >= c->end || *c->p++ != ':')
				return false;
			js_ws(c);
		}
		if (!js_member(c, depth, req, field, bit, &save))
			return false;
		js_ws(c);
		if (c->p >= c->end || (*c->p != ',' && *c->p != close))
			return false;
		if (*c->p++ == close)
			return true;
	}
}
