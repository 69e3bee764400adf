/*-------------------------------------------------------------------------
 *
 * progress.c
 *		The jsonb document of batch_progress, built in C.
 *
 * batch_progress (sql/src/40_api.sql) checks its arguments, reads the batch
 * and its inventory summary, and hands them to progress_document, which
 * adds the photos list.  Built in SQL, a 1,000-photo answer cost one
 * jsonb_build_object per photo, a jsonb_agg that copies each of them, and
 * copies of the whole 100 kB array for every "||": about 7-10 ms.  Here
 * every value is pushed once into a single JsonbParseState, which is
 * serialised once.  The photos are read with the caller's privileges (row
 * level security applies), through a plan kept for the session.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "fmgr.h"
#include "catalog/pg_type.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(moverz_progress_document);

/* The photos of a batch, in submission order, one page of them. */
#define PHOTOS_SQL \
	"SELECT p.id::text, p.filename, p.status::text, p.room_type, " \
	"       p.error_code::text, p.duplicate_of::text " \
	"  FROM moverz_batch.photos p " \
	" WHERE p.batch_id = $1 " \
	" ORDER BY p.position " \
	" LIMIT $2 OFFSET $3"

/* Keys of a photo object, in the column order of PHOTOS_SQL. */
static const char *const photo_keys[] = {
	"id", "filename", "status", "roomType", "errorCode", "duplicateOf"
};

static SPIPlanPtr photos_plan = NULL;

/*
 * push_key
 *		Push an object key given as a C string.
 */
static void
push_key(JsonbParseState **ps, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(ps, WJB_KEY, &k);
}

/*
 * push_text_value
 *		Push a text datum as a string value.  The datum stays in the SPI
 *		result, which lives until the document is serialised.
 */
static void
push_text_value(JsonbParseState **ps, Datum d)
{
	text	   *t = DatumGetTextPP(d);
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = VARDATA_ANY(t);
	v.val.string.len = VARSIZE_ANY_EXHDR(t);
	pushJsonbValue(ps, WJB_VALUE, &v);
}

/*
 * push_object_fields
 *		Push the key/value pairs of a jsonb object (not its braces).
 */
static void
push_object_fields(JsonbParseState **ps, Jsonb *obj)
{
	JsonbIterator *it = JsonbIteratorInit(&obj->root);
	JsonbValue	v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY || tok == WJB_VALUE)
			pushJsonbValue(ps, tok, &v);
	}
}

/*
 * push_photos
 *		Push the "photos" array: one object per photo of the page, with
 *		roomType, errorCode and duplicateOf only when set.
 */
static void
push_photos(JsonbParseState **ps, Datum batch_id, Datum limit, bool limit_null,
			Datum offset)
{
	Oid			types[3] = {UUIDOID, INT8OID, INT8OID};
	Datum		values[3] = {batch_id, limit, offset};
	char		nulls[3] = {' ', limit_null ? 'n' : ' ', ' '};
	SPIPlanPtr	plan;
	int			rc;

	plan = moverz_saved_plan(&photos_plan, PHOTOS_SQL, 3, types);
	rc = SPI_execute_plan(plan, values, nulls, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "moverz_batch: reading the photos failed: %s",
			 SPI_result_code_string(rc));

	push_key(ps, "photos");
	pushJsonbValue(ps, WJB_BEGIN_ARRAY, NULL);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];

		pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
		for (int c = 0; c < (int) lengthof(photo_keys); c++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(tup, SPI_tuptable->tupdesc, c + 1, &isnull);

			if (isnull)
				continue;
			push_key(ps, photo_keys[c]);
			push_text_value(ps, d);
		}
		pushJsonbValue(ps, WJB_END_OBJECT, NULL);
	}
	pushJsonbValue(ps, WJB_END_ARRAY, NULL);
}

/*
 * moverz_progress_document
 *		progress_document(state jsonb, batch_id uuid, photos_limit bigint,
 *		photos_offset bigint, summary jsonb) RETURNS jsonb: state's keys,
 *		"photos", and "inventorySummary" when summary is not NULL.
 *		batch_progress has checked the arguments.
 */
Datum
moverz_progress_document(PG_FUNCTION_ARGS)
{
	Jsonb	   *state;
	JsonbParseState *ps = NULL;
	JsonbValue *doc;
	Jsonb	   *result;
	Size		len;
	void	   *copy;

	state = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	if (state == NULL || PG_ARGISNULL(1) || PG_ARGISNULL(3) || !JB_ROOT_IS_OBJECT(state))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("progress_document needs a state object, a batch_id and an offset")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "moverz_batch: SPI_connect failed");

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	push_object_fields(&ps, state);
	push_photos(&ps, PG_GETARG_DATUM(1), PG_GETARG_DATUM(2), PG_ARGISNULL(2),
				PG_GETARG_DATUM(3));
	if (!PG_ARGISNULL(4))
	{
		Jsonb	   *summary = PG_GETARG_JSONB_P(4);
		JsonbValue	v;

		push_key(&ps, "inventorySummary");
		if (!JsonbExtractScalar(&summary->root, &v))
		{
			v.type = jbvBinary;
			v.val.binary.data = &summary->root;
			v.val.binary.len = VARSIZE(summary) - VARHDRSZ;
		}
		pushJsonbValue(&ps, WJB_VALUE, &v);
	}
	doc = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);

	/* serialise while the SPI result is alive, then leave SPI with a copy */
	result = JsonbValueToJsonb(doc);
	len = VARSIZE(result);
	copy = SPI_palloc(len);
	memcpy(copy, result, len);
	SPI_finish();
	PG_RETURN_POINTER(copy);
}
