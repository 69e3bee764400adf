/*-------------------------------------------------------------------------
 *
 * ai_contract.c
 *		The AI service contract as SQL-callable C functions: the shape of
 *		an analysis (analysis_error) and the classification of an answer
 *		(classify_result).
 *
 * Both run once or twice per analysed photo (the write-back, and the CHECK
 * constraint of photos.analysis), so they walk the jsonb directly instead
 * of going through SQL.  The rules are documented in README.md ("AI service
 * contract") and tested through SQL.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "fmgr.h"
#include "funcapi.h"
#include "access/htup_details.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

PG_FUNCTION_INFO_V1(moverz_analysis_error);
PG_FUNCTION_INFO_V1(moverz_classify_result);

/* The error codes of the contract. */
static const char *const error_codes[] = {"TIMEOUT", "RATE_LIMIT", "NETWORK_ERROR", "AI_ERROR"};

/*
 * moverz_json_key
 *		Value of key in a jsonb object container; false when absent.
 */
bool
moverz_json_key(JsonbContainer *obj, const char *key, JsonbValue *out)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), out) != NULL;
}

/*
 * moverz_json_is_container
 *		Is v an object (want_object) or an array?
 */
bool
moverz_json_is_container(const JsonbValue *v, bool want_object)
{
	if (v->type != jbvBinary)
		return false;
	return want_object ? JsonContainerIsObject(v->val.binary.data)
		: JsonContainerIsArray(v->val.binary.data);
}

/*
 * numeric_between
 *		lo <= n <= hi, for a jsonb number.
 */
static bool
numeric_between(Numeric n, int lo, int hi)
{
	Datum		d = NumericGetDatum(n);

	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, d,
											 DirectFunctionCall1(int4_numeric, Int32GetDatum(lo)))) >= 0 &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, d,
										  DirectFunctionCall1(int4_numeric, Int32GetDatum(hi)))) <= 0;
}

/*
 * numeric_is_integer
 *		Has a jsonb number no fractional part?
 */
static bool
numeric_is_integer(Numeric n)
{
	Datum		t = DirectFunctionCall2(numeric_trunc, NumericGetDatum(n), Int32GetDatum(0));

	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n), t)) == 0;
}

/*
 * label_ok
 *		A label: a string, not only spaces, at most 200 bytes.
 */
static bool
label_ok(const JsonbValue *v)
{
	if (v->type != jbvString || v->val.string.len > 200)
		return false;
	for (int i = 0; i < v->val.string.len; i++)
		if (v->val.string.val[i] != ' ')
			return true;
	return false;
}

/*
 * item_rule
 *		The rule one item breaks (a suffix of "analysis.items[i]"), or NULL.
 */
static const char *
item_rule(const JsonbValue *item)
{
	JsonbContainer *obj;
	JsonbValue	v;

	if (!moverz_json_is_container(item, true))
		return " must be an object";
	obj = item->val.binary.data;
	if (!moverz_json_key(obj, "label", &v) || !label_ok(&v))
		return ".label must be a non-empty string of at most 200 bytes";
	if (!moverz_json_key(obj, "quantity", &v) || v.type != jbvNumeric)
		return ".quantity must be a number";
	if (!numeric_between(v.val.numeric, 0, 100000) || !numeric_is_integer(v.val.numeric))
		return ".quantity must be an integer between 0 and 100000";
	if (!moverz_json_key(obj, "volume_m3", &v) || v.type != jbvNumeric)
		return ".volume_m3 must be a number";
	if (!numeric_between(v.val.numeric, 0, 1000))
		return ".volume_m3 must be between 0 and 1000";
	return NULL;
}

/*
 * analysis_rule
 *		Why an analysis is not of the shape {room_type?, items: [{label,
 *		quantity, volume_m3}]}, or NULL when it is.  a may be NULL.
 */
static char *
analysis_rule(Jsonb *a)
{
	JsonbValue	items;
	JsonbValue	v;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	int			i = 0;

	if (a == NULL || !JB_ROOT_IS_OBJECT(a) || JB_ROOT_IS_SCALAR(a))
		return "analysis must be a JSON object";
	if (!moverz_json_key(&a->root, "items", &items) || !moverz_json_is_container(&items, false))
		return "analysis.items must be an array";
	if (moverz_json_key(&a->root, "room_type", &v) && v.type != jbvString && v.type != jbvNull)
		return "analysis.room_type must be a string or null";

	it = JsonbIteratorInit(items.val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		const char *rule;

		if (tok != WJB_ELEM)
			continue;
		if ((rule = item_rule(&v)) != NULL)
			return psprintf("analysis.items[%d]%s", i, rule);
		i++;
	}
	return NULL;
}

/*
 * moverz_analysis_error
 *		SQL analysis_error(jsonb): the rule an analysis breaks, or NULL.
 */
Datum
moverz_analysis_error(PG_FUNCTION_ARGS)
{
	char	   *rule = analysis_rule(PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0));

	if (rule == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(rule));
}

/*
 * clip_chars
 *		s cut to at most n characters.
 */
static char *
clip_chars(const char *s, int n)
{
	int			len = strlen(s);

	return pnstrdup(s, pg_mbcharcliplen(s, len, n));
}

/*
 * known_code
 *		Is code one of the contract's error codes?
 */
static bool
known_code(const char *code, int len)
{
	for (int i = 0; i < (int) lengthof(error_codes); i++)
		if ((int) strlen(error_codes[i]) == len && strncmp(code, error_codes[i], len) == 0)
			return true;
	return false;
}

/* One classification. */
typedef struct Verdict
{
	bool		ok;
	const char *code;			/* NULL when ok */
	char	   *message;		/* NULL when ok */
	bool		retryable;
} Verdict;

/*
 * error_object
 *		An answer carrying {"error": {"code", "message", "retryable"}} with
 *		a known code: taken at its word.  Returns false when there is none.
 */
static bool
error_object(Jsonb *body, int status, Verdict *v)
{
	JsonbValue	err;
	JsonbValue	x;
	JsonbContainer *obj;

	if (body == NULL || !JB_ROOT_IS_OBJECT(body) || JB_ROOT_IS_SCALAR(body) ||
		!moverz_json_key(&body->root, "error", &err) || !moverz_json_is_container(&err, true))
		return false;
	obj = err.val.binary.data;
	if (!moverz_json_key(obj, "code", &x) || x.type != jbvString ||
		!known_code(x.val.string.val, x.val.string.len))
		return false;
	v->code = pnstrdup(x.val.string.val, x.val.string.len);
	if (moverz_json_key(obj, "message", &x) && x.type == jbvString)
		v->message = clip_chars(pnstrdup(x.val.string.val, x.val.string.len), 500);
	else if (moverz_json_key(obj, "message", &x) && x.type != jbvNull)
		v->message = clip_chars(JsonbToCString(NULL, &JsonbValueToJsonb(&x)->root, 0), 500);
	else
		v->message = psprintf("HTTP %d", status);
	if (moverz_json_key(obj, "retryable", &x) && x.type == jbvBool)
		v->retryable = x.val.boolean;
	else
		v->retryable = status == 408 || status == 429 || status >= 500;
	return true;
}

/*
 * classify
 *		The contract applied to one answer.  transport_code names a failed
 *		transfer (NULL when an HTTP answer arrived); body is the answer when
 *		it parsed as JSON, else body_text may hold it.
 */
static Verdict
classify(int status, const char *transport_code, const char *transport_message,
		 Jsonb *body, const char *body_text)
{
	Verdict		v = {false, NULL, NULL, false};

	if (transport_code != NULL)
	{
		v.code = known_code(transport_code, strlen(transport_code)) &&
			strcmp(transport_code, "RATE_LIMIT") != 0 ? transport_code : "NETWORK_ERROR";
		v.message = transport_message ? pstrdup(transport_message) : asc_tolower(v.code, strlen(v.code));
		v.retryable = strcmp(v.code, "AI_ERROR") != 0;
		return v;
	}
	if (status >= 200 && status <= 299)
	{
		char	   *shape = body ? analysis_rule(body) : "response is not valid JSON";

		v.ok = shape == NULL;
		v.code = v.ok ? NULL : "AI_ERROR";
		v.message = v.ok ? NULL : psprintf("invalid AI response: %s", shape);
		v.retryable = !v.ok;
		return v;
	}
	if (error_object(body, status, &v))
		return v;
	v.code = (status == 408 || status == 504) ? "TIMEOUT" :
		status == 429 ? "RATE_LIMIT" : "AI_ERROR";
	v.retryable = status == 408 || status == 429 || status >= 500;
	if (body_text == NULL && body != NULL)
		body_text = JsonbToCString(NULL, &body->root, VARSIZE(body));
	if (body_text != NULL && body_text[0] != '\0')
		v.message = psprintf("HTTP %d: %s", status, clip_chars(body_text, 200));
	else
		v.message = psprintf("HTTP %d", status);
	return v;
}

/*
 * text_arg
 *		Argument n as a C string, or NULL.
 */
static char *
text_arg(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/*
 * moverz_classify_result
 *		SQL classify_result(http_status, transport_code, transport_message,
 *		body, body_text) -> (ok, code, message, retryable).
 */
Datum
moverz_classify_result(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	Verdict		v;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	v = classify(PG_ARGISNULL(0) ? 0 : PG_GETARG_INT32(0), text_arg(fcinfo, 1), text_arg(fcinfo, 2),
				 PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3), text_arg(fcinfo, 4));
	values[0] = BoolGetDatum(v.ok);
	values[1] = v.code ? CStringGetTextDatum(v.code) : (Datum) 0;
	nulls[1] = v.code == NULL;
	values[2] = v.message ? CStringGetTextDatum(v.message) : (Datum) 0;
	nulls[2] = v.message == NULL;
	values[3] = BoolGetDatum(v.retryable);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
