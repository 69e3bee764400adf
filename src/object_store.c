/*-------------------------------------------------------------------------
 *
 * object_store.c
 *		The S3-compatible store of uploaded photo files (moverz_batch.
 *		object_store = s3): presigned URLs from the moverz_batch.s3_*
 *		settings (the signing is s3_sign.c's), as request_uploads hands
 *		them out (SQL s3_presign) and as the photo workers download and
 *		delete objects with them; and the SHA-256 of downloaded bytes.
 *
 * The bytes never pass through PostgreSQL: the client PUTs them to the
 * store, a photo worker GETs them when it sends the photo (object_fetch.c).
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include <openssl/evp.h>

#include "fmgr.h"
#include "s3_sign.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(moverz_s3_presign);

/*
 * moverz_s3_url
 *		A presigned URL for method (GET, PUT, DELETE) on object key, valid
 *		expires_s seconds from now (a Unix time), in out (S3_SIGN_URL_MAX
 *		bytes).  Returns NULL, or why it cannot be made.
 */
const char *
moverz_s3_url(const char *method, const char *key, int expires_s, time_t now, char *out)
{
	S3SignConfig cfg;
	int			rc;

	if (moverz_s3_bucket == NULL || moverz_s3_bucket[0] == '\0')
		return "moverz_batch.s3_bucket is not set";
	if (moverz_s3_endpoint == NULL || moverz_s3_endpoint[0] == '\0')
		return "moverz_batch.s3_endpoint is not set";
	cfg.endpoint = moverz_s3_endpoint;
	cfg.region = moverz_s3_region;
	cfg.bucket = moverz_s3_bucket;
	cfg.path_style = moverz_s3_path_style;
	cfg.access_key_id = moverz_s3_access_key_id;
	cfg.secret_access_key = moverz_s3_secret_access_key;
	rc = s3_presign(&cfg, method, key, expires_s, now, out, S3_SIGN_URL_MAX);
	return rc == S3_SIGN_OK ? NULL : s3_sign_strerror(rc);
}

/*
 * moverz_s3_presign
 *		SQL s3_presign(method text, key text, expires_s int, at timestamptz):
 *		the presigned URL request_uploads hands out (at now()); at a fixed
 *		time, the one the tests compare with the AWS SDK's.
 */
Datum
moverz_s3_presign(PG_FUNCTION_ARGS)
{
	char	   *method = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *key = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int			expires_s = PG_GETARG_INT32(2);
	time_t		at = (time_t) timestamptz_to_time_t(PG_GETARG_TIMESTAMPTZ(3));
	char	   *url = palloc(S3_SIGN_URL_MAX);
	const char *err = moverz_s3_url(method, key, expires_s, at, url);

	if (err != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("moverz_batch: cannot presign an S3 URL: %s", err),
				 errhint("Check the moverz_batch.s3_* settings.")));
	PG_RETURN_TEXT_P(cstring_to_text(url));
}

/*
 * moverz_sha256_hex
 *		The SHA-256 of data, in lower-case hex (65 bytes with the NUL);
 *		false when OpenSSL fails.
 */
bool
moverz_sha256_hex(const char *data, size_t len, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return false;
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return true;
}
