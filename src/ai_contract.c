/*-------------------------------------------------------------------------
 *
 * ai_contract.c
 *		The AI service contract as SQL-callable C functions: the shape of
 *		an analysis (analysis_error) and the classification of an answer
 *		(classify_result): the moverz-ai contract here, the answers of the
 *		model APIs in ai_answer.c.
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
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
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
char *
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

/*
 * error_object
 *		An answer carrying {"error": {"code", "message", "retryable"}} with
 *		a known code: taken at its word.  Returns false when there is none.
 */
static bool
error_object(Jsonb *body, int status, AiVerdict *v)
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
/*
 * ai_status_verdict
 *		The class of an HTTP error status when the body says no better:
 *		408 and 504 TIMEOUT, 429 RATE_LIMIT (all retried), other 5xx a
 *		retried AI_ERROR, anything else a final AI_ERROR.  The message is
 *		"HTTP <status>[: <body, clipped>]".
 */
void
ai_status_verdict(int status, Jsonb *body, const char *body_text, AiVerdict *v)
{
	v->ok = false;
	v->code = (status == 408 || status == 504) ? "TIMEOUT" :
		status == 429 ? "RATE_LIMIT" : "AI_ERROR";
	v->retryable = status == 408 || status == 429 || status >= 500;
	if (body_text == NULL && body != NULL)
		body_text = JsonbToCString(NULL, &body->root, VARSIZE(body));
	if (body_text != NULL && body_text[0] != '\0')
		v->message = psprintf("HTTP %d: %s", status, clip_chars(body_text, 200));
	else
		v->message = psprintf("HTTP %d", status);
}

/*
 * ai_analysis_verdict
 *		A structured answer that arrived (analysis NULL: it was not JSON):
 *		ok when it has the shape of an analysis, else a retried AI_ERROR
 *		naming the rule it breaks.
 */
void
ai_analysis_verdict(Jsonb *analysis, AiVerdict *v)
{
	char	   *shape = analysis ? analysis_rule(analysis) : "response is not valid JSON";

	v->ok = shape == NULL;
	v->code = v->ok ? NULL : "AI_ERROR";
	v->message = v->ok ? NULL : psprintf("invalid AI response: %s", shape);
	v->retryable = !v->ok;
	v->analysis = v->ok ? analysis : NULL;
}

/*
 * ai_json_count
 *		A token count of an answer: a jsonb integer between 0 and 2^31 - 1,
 *		else -1 (unknown: out-of-range metadata is not stored).
 */
int64
ai_json_count(JsonbContainer *obj, const char *key)
{
	JsonbValue	v;

	if (obj == NULL || !moverz_json_key(obj, key, &v) || v.type != jbvNumeric ||
		!numeric_is_integer(v.val.numeric) || !numeric_between(v.val.numeric, 0, PG_INT32_MAX))
		return -1;
	return DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v.val.numeric)));
}

/*
 * ai_json_string
 *		A string member of a jsonb object, copied, clipped to n characters;
 *		NULL when absent or not a string.
 */
char *
ai_json_string(JsonbContainer *obj, const char *key, int n)
{
	JsonbValue	v;

	if (obj == NULL || !moverz_json_key(obj, key, &v) || v.type != jbvString)
		return NULL;
	return clip_chars(pnstrdup(v.val.string.val, v.val.string.len), n);
}

/*
 * ai_json_object
 *		An object member of a jsonb object (its container), or NULL.
 */
JsonbContainer *
ai_json_object(JsonbContainer *obj, const char *key)
{
	JsonbValue	v;

	if (obj == NULL || !moverz_json_key(obj, key, &v) || !moverz_json_is_container(&v, true))
		return NULL;
	return v.val.binary.data;
}

/*
 * read_moverz
 *		An HTTP answer of the moverz-ai contract: a 2xx is the analysis
 *		itself (with model, usage and cost_usd beside it); an error object
 *		with a known code is taken at its word.
 */
static void
read_moverz(int status, Jsonb *body, const char *body_text, AiVerdict *v)
{
	JsonbContainer *root = (body && JB_ROOT_IS_OBJECT(body) && !JB_ROOT_IS_SCALAR(body))
		? &body->root : NULL;

	if (status >= 200 && status <= 299)
	{
		JsonbContainer *usage = ai_json_object(root, "usage");

		ai_analysis_verdict(body, v);
		v->model = ai_json_string(root, "model", 200);
		v->tokens_in = ai_json_count(usage, "input_tokens");
		v->tokens_out = ai_json_count(usage, "output_tokens");
		return;
	}
	if (!error_object(body, status, v))
		ai_status_verdict(status, body, body_text, v);
}

/*
 * classify
 *		The contract of provider applied to one answer.  transport_code
 *		names a failed transfer (NULL when an HTTP answer arrived); body is
 *		the answer when it parsed as JSON, else body_text may hold it.
 */
static AiVerdict
classify(const char *provider, int status, const char *transport_code,
		 const char *transport_message, Jsonb *body, const char *body_text)
{
	AiVerdict	v = {false, NULL, NULL, false, NULL, NULL, -1, -1};

	if (transport_code != NULL)
	{
		v.code = known_code(transport_code, strlen(transport_code)) &&
			strcmp(transport_code, "RATE_LIMIT") != 0 ? transport_code : "NETWORK_ERROR";
		v.message = transport_message ? pstrdup(transport_message) : asc_tolower(v.code, strlen(v.code));
		v.retryable = strcmp(v.code, "AI_ERROR") != 0;
		return v;
	}
	if (provider != NULL && strcmp(provider, "anthropic") == 0)
		ai_read_anthropic(status, body, body_text, &v);
	else if (provider != NULL && strcmp(provider, "openai") == 0)
		ai_read_openai(status, body, body_text, &v);
	else
		read_moverz(status, body, body_text, &v);
	return v;
}

/*
 * moverz_json_parses
 *		Is this text JSON that jsonb will take?  Valid in the database
 *		encoding, no NUL byte, and parsed by PostgreSQL's own JSON parser
 *		(which also rejects \u0000 and excessive nesting).  The parser's
 *		allocations go to scratch, reset here.
 */
bool
moverz_json_parses(const char *data, int len, MemoryContext scratch)
{
	MemoryContext oldcxt;
	volatile bool ok = false;

	if (len == 0 || memchr(data, '\0', len) != NULL ||
		!pg_verify_mbstr(GetDatabaseEncoding(), data, len, true))
		return false;
	oldcxt = MemoryContextSwitchTo(scratch);
	PG_TRY();
	{
#if PG_VERSION_NUM >= 170000
		JsonLexContext lexbuf;
		JsonLexContext *lex = makeJsonLexContextCstringLen(&lexbuf, unconstify(char *, data), len,
														   GetDatabaseEncoding(), true);

		ok = (pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS);
		freeJsonLexContext(lex);
#else
		JsonLexContext *lex = makeJsonLexContextCstringLen(unconstify(char *, data), len,
														   GetDatabaseEncoding(), true);

		ok = (pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS);
#endif
	}
	PG_CATCH();
	{
		/* e.g. stack depth exceeded on absurd nesting: not storable */
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(scratch);
	return ok;
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
 *		SQL classify_result(provider, http_status, transport_code,
 *		transport_message, body, body_text) -> (ok, code, message,
 *		retryable, analysis, model, tokens_in, tokens_out).
 *		The install scripts before 0.5.0 declare it without provider and
 *		with the first four results: a worker of this library writing back
 *		through them (between "make install" and ALTER EXTENSION UPDATE)
 *		gets the moverz-ai verdict in that shape.
 */
Datum
moverz_classify_result(PG_FUNCTION_ARGS)
{
	int			a = PG_NARGS() == 6 ? 1 : 0;	/* the first argument after provider */
	TupleDesc	desc;
	Datum		values[8];
	bool		nulls[8];
	AiVerdict	v;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE ||
		(desc->natts != 4 && desc->natts != 8) || PG_NARGS() < 5)
		elog(ERROR, "classify_result declared with an unexpected signature");
	v = classify(a ? text_arg(fcinfo, 0) : "moverz-ai", PG_ARGISNULL(a) ? 0 : PG_GETARG_INT32(a),
				 text_arg(fcinfo, a + 1), text_arg(fcinfo, a + 2),
				 PG_ARGISNULL(a + 3) ? NULL : PG_GETARG_JSONB_P(a + 3), text_arg(fcinfo, a + 4));
	memset(nulls, 0, sizeof(nulls));
	values[0] = BoolGetDatum(v.ok);
	values[1] = v.code ? CStringGetTextDatum(v.code) : (Datum) 0;
	nulls[1] = v.code == NULL;
	values[2] = v.message ? CStringGetTextDatum(v.message) : (Datum) 0;
	nulls[2] = v.message == NULL;
	values[3] = BoolGetDatum(v.retryable);
	values[4] = v.analysis ? JsonbPGetDatum(v.analysis) : (Datum) 0;
	nulls[4] = v.analysis == NULL;
	values[5] = v.model ? CStringGetTextDatum(v.model) : (Datum) 0;
	nulls[5] = v.model == NULL;
	values[6] = Int32GetDatum((int32) v.tokens_in);
	nulls[6] = v.tokens_in < 0;
	values[7] = Int32GetDatum((int32) v.tokens_out);
	nulls[7] = v.tokens_out < 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
