/*-------------------------------------------------------------------------
 *
 * assets.c
 *		create_batch's "assets": validated, and turned into photo rows.
 *
 * check_assets raises the first broken rule (the array as a whole, then
 * each element in order, then the room types of all elements); asset_rows
 * returns one row per element, with a new id and the checksum, for
 * insert_photos.  Both walk the jsonb once, in C: done in SQL the rules and
 * the row values cost about 15 us per photo, a third of create_batch.
 *
 * The rules and their messages are those of README.md ("Bad input"); the
 * URL rule is the regular expression of 0.1.0 (under the C collation, as
 * since 0.2.0), written out in C (url_ok).
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "fmgr.h"
#include "funcapi.h"
#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "mb/pg_wchar.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(moverz_check_assets);
PG_FUNCTION_INFO_V1(moverz_asset_rows);

#define ASSETS_HINT "Pass a JSON array of {\"filename\", \"filePath\", \"url\", \"roomType\"} " \
	"or {\"uploadId\", \"roomType\"} objects."

/* One element's fields, pointing into the jsonb (not NUL-terminated). */
typedef struct Asset
{
	JsonbValue	filename;		/* jbvNull for an upload without one */
	JsonbValue	url;			/* jbvNull for an upload */
	JsonbValue	upload_id;		/* jbvNull for a photo given by URL */
	JsonbValue	file_path;		/* jbvNull when absent or null */
	JsonbValue	room_type;		/* jbvNull when absent or null */
} Asset;

/* Length of an md5 checksum in hex. */
#define CHECKSUM_LEN 32

/* The first element seen with a checksum (asset_rows' duplicates). */
typedef struct FirstOfChecksum
{
	char		checksum[CHECKSUM_LEN];	/* hash key */
	int			index;
} FirstOfChecksum;

/* State of asset_rows between calls. */
typedef struct AssetRowsState
{
	Jsonb	   *assets;
	pg_uuid_t  *ids;			/* one id per element (time_ordered_ids) */
	HTAB	   *firsts;			/* checksum -> first element with it */
} AssetRowsState;

/*
 * json_type_name
 *		jsonb_typeof's name for a value.
 */
static const char *
json_type_name(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? "object" : "array";
		default:
			return "unknown";
	}
}

/*
 * invalid
 *		Raise the error of one element's broken rule: the element, the
 *		field and the rule, in a translatable message.
 */
#define invalid(sqlstate, ...) \
	ereport(ERROR, (errcode(sqlstate), errmsg(__VA_ARGS__)))

/*
 * has_control
 *		Does a string contain a control character (0x01-0x1f, 0x7f)?
 */
static bool
has_control(const JsonbValue *s)
{
	for (int i = 0; i < s->val.string.len; i++)
	{
		unsigned char c = (unsigned char) s->val.string.val[i];

		if ((c >= 0x01 && c <= 0x1f) || c == 0x7f)
			return true;
	}
	return false;
}

/*
 * is_blank
 *		Is a string empty once spaces are trimmed (btrim)?
 */
static bool
is_blank(const JsonbValue *s)
{
	for (int i = 0; i < s->val.string.len; i++)
		if (s->val.string.val[i] != ' ')
			return false;
	return true;
}

/*
 * url_ok
 *		Is a URL absolute http or https?  The regular expression
 *		^https?://[^/?#\s@]*[a-z0-9\]][^\s]*$ (case-insensitive, C collation)
 *		written out: the scheme; then a host part, up to the first '/', '?',
 *		'#' or '@', holding at least one ASCII letter, digit or ']'; and no
 *		white space (space, \t to \r) anywhere.  Through the regex engine it
 *		cost 1 us per photo, twice per create_batch.
 */
static bool
url_ok(const JsonbValue *url)
{
	const char *s = url->val.string.val;
	int			len = url->val.string.len;
	int			i;
	bool		in_host = true;
	bool		host_ok = false;

	if (len >= 7 && pg_strncasecmp(s, "http://", 7) == 0)
		i = 7;
	else if (len >= 8 && pg_strncasecmp(s, "https://", 8) == 0)
		i = 8;
	else
		return false;
	for (; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == ' ' || (c >= '\t' && c <= '\r'))
			return false;
		if (!in_host)
			continue;
		if (c == '/' || c == '?' || c == '#' || c == '@')
			in_host = false;
		else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				 (c >= '0' && c <= '9') || c == ']')
			host_ok = true;
	}
	return host_ok;
}

/*
 * optional_string
 *		An optional string member into *out (jbvNull when absent or null);
 *		false when it is present with another type.
 */
static bool
optional_string(JsonbContainer *obj, const char *key, JsonbValue *out)
{
	if (!moverz_json_key(obj, key, out))
		out->type = jbvNull;
	return out->type == jbvNull || out->type == jbvString;
}

/*
 * check_url
 *		The rules of one element's url, already known to be a string.
 */
static void
check_url(const JsonbValue *url, int idx)
{
	const char *refused;

	if (url->val.string.len > 2048)
		invalid(ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
				"assets[%d].url must be at most 2048 bytes (got %d)", idx,
				url->val.string.len);
	if (has_control(url) || !url_ok(url))
		invalid(ERRCODE_INVALID_PARAMETER_VALUE,
				"assets[%d].url must be an absolute http or https URL", idx);
	if ((refused = url_host_refused(url->val.string.val, url->val.string.len)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("assets[%d].url %s", idx, refused),
				 errhint("The AI provider fetches the image: a host of a private network is refused "
						 "unless moverz_batch.allowed_image_hosts lists it.")));
}

/*
 * is_uuid
 *		Is the string a UUID in its canonical text form (8-4-4-4-12 hex)?
 */
static bool
is_uuid(const JsonbValue *s)
{
	if (s->val.string.len != 36)
		return false;
	for (int i = 0; i < 36; i++)
	{
		char		c = s->val.string.val[i];

		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (c != '-')
				return false;
		}
		else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return false;
	}
	return true;
}

/*
 * read_filename
 *		The rules of an element's filename, required unless it names an
 *		upload (which has one).
 */
static void
read_filename(JsonbContainer *obj, int idx, bool required, Asset *a)
{
	if (!moverz_json_key(obj, "filename", &a->filename) ||
		(!required && a->filename.type == jbvNull))
	{
		if (required)
			invalid(ERRCODE_INVALID_PARAMETER_VALUE,
					"assets[%d].filename is required and must be a string", idx);
		a->filename.type = jbvNull;
		return;
	}
	if (a->filename.type != jbvString)
		invalid(ERRCODE_INVALID_PARAMETER_VALUE,
				"assets[%d].filename %smust be a string", idx, required ? "is required and " : "");
	if (is_blank(&a->filename))
		invalid(ERRCODE_INVALID_PARAMETER_VALUE,
				"assets[%d].filename must not be empty", idx);
	if (a->filename.val.string.len > 255)
		invalid(ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
				"assets[%d].filename must be at most 255 bytes (got %d)", idx,
				a->filename.val.string.len);
	if (has_control(&a->filename))
		invalid(ERRCODE_INVALID_PARAMETER_VALUE,
				"assets[%d].filename must not contain control characters", idx);
}

/*
 * read_asset
 *		Check one element against every rule but the room type's being an
 *		accepted one and what an upload must be (check_uploads), raising the
 *		first it breaks, and fill *a.  An element is a photo given by URL
 *		({"filename", "url"}) or an upload ({"uploadId"}).
 */
static void
read_asset(JsonbValue *elem, int idx, Asset *a)
{
	JsonbContainer *obj;
	bool		upload;

	if (!moverz_json_is_container(elem, true))
		invalid(ERRCODE_INVALID_PARAMETER_VALUE,
				"assets[%d] must be a JSON object, not %s", idx, json_type_name(elem));
	obj = elem->val.binary.data;
	upload = moverz_json_key(obj, "uploadId", &a->upload_id);
	read_filename(obj, idx, !upload, a);

	if (upload)
	{
		if (a->upload_id.type != jbvString || !is_uuid(&a->upload_id))
			invalid(ERRCODE_INVALID_PARAMETER_VALUE,
					"assets[%d].uploadId must be a UUID string (an uploadId of request_uploads)", idx);
		if (moverz_json_key(obj, "url", &a->url))
			invalid(ERRCODE_INVALID_PARAMETER_VALUE,
					"assets[%d] must have a url or an uploadId, not both", idx);
		a->url.type = jbvNull;
	}
	else
	{
		a->upload_id.type = jbvNull;
		if (!moverz_json_key(obj, "url", &a->url) || a->url.type != jbvString)
			invalid(ERRCODE_INVALID_PARAMETER_VALUE,
					"assets[%d].url is required and must be a string", idx);
		check_url(&a->url, idx);
	}

	if (!optional_string(obj, "filePath", &a->file_path))
		invalid(ERRCODE_INVALID_PARAMETER_VALUE,
				"assets[%d].filePath must be a string", idx);
	if (a->file_path.type == jbvString && a->file_path.val.string.len > 1024)
		invalid(ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
				"assets[%d].filePath must be at most 1024 bytes", idx);
	if (!optional_string(obj, "roomType", &a->room_type))
		invalid(ERRCODE_INVALID_PARAMETER_VALUE,
				"assets[%d].roomType must be a string", idx);
}

/*
 * check_array
 *		The rules of "assets" as a whole; returns the number of elements.
 */
static int
check_array(Jsonb *assets)
{
	int			n;

	if (assets == NULL || JB_ROOT_IS_SCALAR(assets))
	{
		JsonbValue	v;

		if (assets == NULL || (JsonbExtractScalar(&assets->root, &v) && v.type == jbvNull))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("assets must not be null"),
					 errhint(ASSETS_HINT)));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("assets must be a JSON array, not %s", json_type_name(&v)),
				 errhint(ASSETS_HINT)));
	}
	if (!JB_ROOT_IS_ARRAY(assets))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("assets must be a JSON array, not object"),
				 errhint(ASSETS_HINT)));
	n = JB_ROOT_COUNT(assets);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("assets must contain at least one photo")));
	if (n > moverz_max_batch_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("assets has %d photos, more than the maximum batch size of %d",
						n, moverz_max_batch_size),
				 errhint("Split the photos into several batches, or raise moverz_batch.max_batch_size.")));
	return n;
}

/*
 * accepted_room_types
 *		The rows of moverz_batch.room_types, as a NULL-terminated array.
 */
static char **
accepted_room_types(void)
{
	static SPIPlanPtr plan = NULL;
	char	  **types;
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "moverz_batch: SPI_connect failed");
	rc = SPI_execute_plan(moverz_saved_plan(&plan, "SELECT room_type FROM moverz_batch.room_types",
											0, NULL),
						  NULL, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "moverz_batch: reading room_types failed: %s", SPI_result_code_string(rc));
	types = SPI_palloc((SPI_processed + 1) * sizeof(char *));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *t = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		types[i] = t ? SPI_palloc(strlen(t) + 1) : NULL;
		if (t)
			strcpy(types[i], t);
	}
	types[SPI_processed] = NULL;
	SPI_finish();
	return types;
}

/*
 * is_accepted
 *		Is a room type string one of types?
 */
static bool
is_accepted(char **types, const JsonbValue *rt)
{
	for (; *types; types++)
		if ((int) strlen(*types) == rt->val.string.len &&
			memcmp(*types, rt->val.string.val, rt->val.string.len) == 0)
			return true;
	return false;
}

/*
 * moverz_check_assets
 *		check_assets(assets jsonb) RETURNS void: raise the first broken rule
 *		of create_batch's "assets": the array, then each element in order,
 *		then whether each roomType is an accepted one.
 */
Datum
moverz_check_assets(PG_FUNCTION_ARGS)
{
	Jsonb	   *assets = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	int			n = check_array(assets);
	int			bad_room = -1;
	JsonbValue	bad_value;
	char	  **types = accepted_room_types();

	for (int i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&assets->root, i);
		Asset		a;

		read_asset(elem, i, &a);
		if (bad_room < 0 && a.room_type.type == jbvString && !is_accepted(types, &a.room_type))
		{
			bad_room = i;
			bad_value = a.room_type;
		}
	}
	if (bad_room >= 0)
	{
		StringInfoData quoted;
		int			keep = pg_mbcliplen(bad_value.val.string.val, bad_value.val.string.len, 64);

		/* at most 64 bytes of it: a 1 MB value is not sent back whole */
		initStringInfo(&quoted);
		escape_json(&quoted, pnstrdup(bad_value.val.string.val, keep));
		if (keep < bad_value.val.string.len)
			appendStringInfoString(&quoted, "…");
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("assets[%d].roomType %s is not an accepted room type", bad_room,
						quoted.data),
				 errhint("The accepted room types are listed in moverz_batch.room_types.")));
	}
	PG_RETURN_VOID();
}

/*
 * text_or_null
 *		A string member as a text datum; NULL for jbvNull.
 */
static Datum
text_or_null(const JsonbValue *v, bool *isnull)
{
	*isnull = v->type != jbvString;
	if (*isnull)
		return (Datum) 0;
	return PointerGetDatum(cstring_to_text_with_len(v->val.string.val, v->val.string.len));
}

/*
 * first_of
 *		The id of the first element before i with this checksum, as a
 *		datum, or NULL (*isnull) when element i is the first.
 */
static Datum
first_of(AssetRowsState *st, int i, Datum checksum, bool *isnull)
{
	text	   *t = DatumGetTextPP(checksum);
	FirstOfChecksum *entry;
	bool		found;

	if (VARSIZE_ANY_EXHDR(t) != CHECKSUM_LEN)
		elog(ERROR, "moverz_batch: unexpected checksum length");
	entry = hash_search(st->firsts, VARDATA_ANY(t), HASH_ENTER, &found);
	if (!found)
		entry->index = i;
	*isnull = !found;
	return found ? UUIDPGetDatum(&st->ids[entry->index]) : (Datum) 0;
}

/*
 * asset_row
 *		The row of element i: (id, position, filename, file_path, url,
 *		room_type, checksum, first_id, upload_id).  For a photo given by
 *		URL, checksum = md5(filename || ':' || url) and first_id = the id of
 *		the first element with that checksum when it is not this one; for
 *		an upload both are NULL (its checksum is its bytes', insert_photos).
 */
static HeapTuple
asset_row(FuncCallContext *fc, AssetRowsState *st, int i)
{
	JsonbValue *elem = getIthJsonbValueFromContainer(&st->assets->root, i);
	Asset		a;
	Datum		values[9];
	bool		nulls[9] = {false};

	read_asset(elem, i, &a);
	values[0] = UUIDPGetDatum(&st->ids[i]);
	values[1] = Int32GetDatum(i);
	values[2] = text_or_null(&a.filename, &nulls[2]);
	values[3] = text_or_null(&a.file_path, &nulls[3]);
	values[4] = text_or_null(&a.url, &nulls[4]);
	values[5] = text_or_null(&a.room_type, &nulls[5]);
	if (a.upload_id.type == jbvString)
	{
		nulls[6] = nulls[7] = true;
		values[8] = DirectFunctionCall1(uuid_in,
										CStringGetDatum(pnstrdup(a.upload_id.val.string.val,
																 a.upload_id.val.string.len)));
	}
	else
	{
		StringInfoData key;

		initStringInfo(&key);
		appendBinaryStringInfo(&key, a.filename.val.string.val, a.filename.val.string.len);
		appendStringInfoChar(&key, ':');
		appendBinaryStringInfo(&key, a.url.val.string.val, a.url.val.string.len);
		values[6] = DirectFunctionCall1(md5_text,
										PointerGetDatum(cstring_to_text_with_len(key.data, key.len)));
		values[7] = first_of(st, i, values[6], &nulls[7]);
		nulls[8] = true;
	}
	return heap_form_tuple(fc->tuple_desc, values, nulls);
}

/*
 * time_ordered_ids
 *		n ids in the UUID version 7 layout (RFC 9562): the Unix time in ms,
 *		then the element's index as a 30-bit counter, then 46 random bits.
 *		A batch's photos thus sit next to each other in every index on
 *		their id, in order.  Random (version 4) ids spread each insert and
 *		each update of a photo over the whole primary key: a different
 *		page per photo to read and, after a checkpoint, to write whole into
 *		the WAL.
 */
static pg_uuid_t *
time_ordered_ids(int n)
{
	pg_uuid_t  *ids = palloc(sizeof(pg_uuid_t) * Max(n, 1));
	uint64		unix_ms = (uint64) (GetCurrentTimestamp() / 1000) +
		(uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;

	if (!pg_strong_random(ids, sizeof(pg_uuid_t) * n))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));
	for (int i = 0; i < n; i++)
	{
		unsigned char *d = ids[i].data;
		uint32		c = (uint32) i;

		for (int b = 0; b < 6; b++)
			d[b] = (unsigned char) (unix_ms >> (8 * (5 - b)));
		d[6] = 0x70 | ((c >> 26) & 0x0f);	/* version 7 */
		d[7] = (c >> 18) & 0xff;
		d[8] = 0x80 | ((c >> 12) & 0x3f);	/* variant */
		d[9] = (c >> 4) & 0xff;
		d[10] = ((c & 0x0f) << 4) | (d[10] & 0x0f);
	}
	return ids;
}

/*
 * start_asset_rows
 *		asset_rows' state: the checked array, an id per element, and an
 *		empty table of checksums.
 */
static AssetRowsState *
start_asset_rows(Jsonb *assets)
{
	AssetRowsState *st = palloc(sizeof(AssetRowsState));
	HASHCTL		ctl;
	int			n = check_array(assets);

	st->assets = assets;
	st->ids = time_ordered_ids(n);
	ctl.keysize = CHECKSUM_LEN;
	ctl.entrysize = sizeof(FirstOfChecksum);
	ctl.hcxt = CurrentMemoryContext;
	st->firsts = hash_create("moverz_batch asset checksums", n, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	return st;
}

/*
 * moverz_asset_rows
 *		asset_rows(assets jsonb) RETURNS TABLE (id uuid, position int,
 *		filename text, file_path text, url text, room_type text,
 *		checksum text, first_id uuid, upload_id uuid): one row per element,
 *		in order, each
 *		checked as by check_assets (room types excepted); ids are
 *		time-ordered (version 7 layout).
 */
Datum
moverz_asset_rows(PG_FUNCTION_ARGS)
{
	FuncCallContext *fc;
	AssetRowsState *st;

	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext old;
		TupleDesc	desc;

		fc = SRF_FIRSTCALL_INIT();
		old = MemoryContextSwitchTo(fc->multi_call_memory_ctx);
		st = start_asset_rows(PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P_COPY(0));
		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "moverz_batch: asset_rows must return a row type");
		fc->tuple_desc = BlessTupleDesc(desc);
		fc->max_calls = JB_ROOT_COUNT(st->assets);
		fc->user_fctx = st;
		MemoryContextSwitchTo(old);
	}
	fc = SRF_PERCALL_SETUP();
	st = fc->user_fctx;
	if (fc->call_cntr < fc->max_calls)
	{
		HeapTuple	tup = asset_row(fc, st, (int) fc->call_cntr);

		SRF_RETURN_NEXT(fc, HeapTupleGetDatum(tup));
	}
	SRF_RETURN_DONE(fc);
}
