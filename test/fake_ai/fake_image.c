/*-------------------------------------------------------------------------
 *
 * fake_image.c
 *		Inline images of the fake AI service: the image_base64 and
 *		media_type members of an analyze request.
 *
 * image_base64 must be standard base64 (RFC 4648 section 4: the alphabet
 * A-Z a-z 0-9 + /, padded with '=' to a multiple of 4 characters, no white
 * space), not empty, decode to at most MAX_IMAGE_BYTES bytes, and the
 * bytes must start with the signature of the declared media_type (JPEG,
 * PNG, GIF or WebP).  The SHA-256 of the bytes is computed with OpenSSL's
 * libcrypto; see README.md for the contract.
 *
 *-------------------------------------------------------------------------
 */
#include "fake_ai.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* The media types accepted, and the signature that opens their bytes. */
static const struct
{
	const char *type;
	const char *magic;
	size_t		len;
	size_t		at;				/* offset of a second part, or 0 */
	const char *magic2;
}			media_types[] = {
	{"image/jpeg", "\xff\xd8\xff", 3, 0, NULL},
	{"image/png", "\x89PNG\r\n\x1a\n", 8, 0, NULL},
	{"image/gif", "GIF87a", 6, 0, NULL},
	{"image/gif", "GIF89a", 6, 0, NULL},
	{"image/webp", "RIFF", 4, 8, "WEBP"},
};

/* b64val: the value of base64 digit ch (standard alphabet), or -1. */
static int
b64val(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

/*
 * b64_decode: decode the n characters of strict base64 text s into a new
 * buffer (*out, *outlen); false if s is not strict base64.  Like the node
 * fakes, the unused bits of a padded final group are not checked.
 */
static bool
b64_decode(const char *s, size_t n, unsigned char **out, size_t *outlen)
{
	size_t		pad,
				k = 0;
	unsigned char *buf;

	if (n == 0 || n % 4 != 0)
		return false;
	pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
	if ((buf = malloc(n / 4 * 3)) == NULL)
		abort();
	for (size_t i = 0; i < n; i += 4)
	{
		uint32_t	w = 0;

		for (int j = 0; j < 4; j++)
		{
			bool		padding = i + 4 == n && j >= 4 - (int) pad;
			int			v = padding ? 0 : b64val((unsigned char) s[i + j]);

			if (v < 0)
			{
				free(buf);
				return false;
			}
			w = (w << 6) | (uint32_t) v;
		}
		buf[k++] = (unsigned char) (w >> 16);
		buf[k++] = (unsigned char) (w >> 8);
		buf[k++] = (unsigned char) w;
	}
	*out = buf;
	*outlen = k - pad;
	return true;
}

/* sniff_type: the media type whose signature opens the n bytes p, or NULL. */
static const char *
sniff_type(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < lengthof(media_types); i++)
	{
		size_t		need = media_types[i].at + (media_types[i].magic2 ?
												 strlen(media_types[i].magic2) : 0);

		if (n < media_types[i].len || n < need ||
			memcmp(p, media_types[i].magic, media_types[i].len) != 0)
			continue;
		if (media_types[i].magic2 == NULL ||
			memcmp(p + media_types[i].at, media_types[i].magic2,
				   strlen(media_types[i].magic2)) == 0)
			return media_types[i].type;
	}
	return NULL;
}

/* sha256_hex: the SHA-256 of the n bytes p, as 64 hex digits, into hex. */
static void
sha256_hex(const unsigned char *p, size_t n, char hex[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		abort();
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* known_type: is t one of the accepted media types? */
static bool
known_type(const char *t)
{
	for (size_t i = 0; i < lengthof(media_types); i++)
		if (strcmp(t, media_types[i].type) == 0)
			return true;
	return false;
}

/*
 * check_inline_image: validate the media_type and image_base64 of req
 * (image_base64 is a string); on success req->image, image_len and sha256
 * are set (the caller frees req->image).  On failure *status is the HTTP
 * status (400, or 413 for an image over MAX_IMAGE_BYTES) and err says why.
 */
bool
check_inline_image(AnalyzeReq *req, unsigned int *status, StrBuf *err)
{
	const char *seen;

	*status = 400;
	if (req->media_type == NULL)
	{
		sb_printf(err, "media_type %s", (req->nonstring & FIELD_MEDIA_TYPE) ?
				  "must be a string" : "is required with image_base64");
		return false;
	}
	if (!known_type(req->media_type))
	{
		sb_printf(err, "media_type must be one of image/jpeg, image/png, "
				  "image/gif, image/webp");
		return false;
	}
	if (req->image_base64[0] == '\0')
	{
		sb_printf(err, "image_base64 is empty");
		return false;
	}
	if (!b64_decode(req->image_base64, strlen(req->image_base64), &req->image,
					&req->image_len))
	{
		sb_printf(err, "image_base64 is not valid base64 (standard alphabet, "
				  "padded, no white space)");
		return false;
	}
	if (req->image_len > MAX_IMAGE_BYTES)
	{
		*status = 413;
		sb_printf(err, "image too large: %zu bytes > %d bytes", req->image_len,
				  MAX_IMAGE_BYTES);
		return false;
	}
	seen = sniff_type(req->image, req->image_len);
	if (seen == NULL || strcmp(seen, req->media_type) != 0)
	{
		sb_printf(err, "image_base64 is not an image of media_type %s (its bytes "
				  "are %s)", req->media_type, seen ? seen : "no known image type");
		return false;
	}
	sha256_hex(req->image, req->image_len, req->sha256);
	return true;
}
