/*-------------------------------------------------------------------------
 *
 * image_type.h
 *		The image type of a file from its first bytes (magic numbers):
 *		image/jpeg, image/png, image/gif or image/webp, as the models take
 *		them.  Plain C, header only: the photo workers check a file
 *		downloaded from the s3 store with it (object_fetch.c) and the
 *		command-line client tells an image file from a list of URLs
 *		(tools/mb_submit.c).  SQL's image_type() (45_uploads.sql) says the
 *		same for the database store.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOVERZ_IMAGE_TYPE_H
#define MOVERZ_IMAGE_TYPE_H

#include <stddef.h>
#include <string.h>

/*
 * moverz_image_type
 *		The type of the n bytes at head (12 are enough), or NULL.
 */
static inline const char *
moverz_image_type(const unsigned char *head, size_t n)
{
	if (n >= 3 && memcmp(head, "\xff\xd8\xff", 3) == 0)
		return "image/jpeg";
	if (n >= 8 && memcmp(head, "\x89PNG\r\n\x1a\n", 8) == 0)
		return "image/png";
	if (n >= 6 && (memcmp(head, "GIF87a", 6) == 0 || memcmp(head, "GIF89a", 6) == 0))
		return "image/gif";
	if (n >= 12 && memcmp(head, "RIFF", 4) == 0 && memcmp(head + 8, "WEBP", 4) == 0)
		return "image/webp";
	return NULL;
}

#endif							/* MOVERZ_IMAGE_TYPE_H */
