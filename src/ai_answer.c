/*-------------------------------------------------------------------------
 *
 * ai_answer.c
 *		The answers of the model APIs (Anthropic Messages, OpenAI-compatible
 *		Chat Completions), read into a verdict on one photo: its analysis,
 *		or one of the four error classes with their retry policy.
 *
 * Called by classify_result() (ai_contract.c) at write-back, in SQL, so
 * that every rule is testable from SQL.  The classes:
 *
 *	RATE_LIMIT (retried, Retry-After honoured)
 *		HTTP 429, and Anthropic's 529 overloaded_error.
 *	TIMEOUT (retried)
 *		HTTP 408 and 504 (the worker names its own time-outs).
 *	AI_ERROR, retried
 *		other 5xx; a 200 whose structured answer is missing, is not JSON or
 *		does not have the shape of an analysis (a model may answer better
 *		the next time).
 *	AI_ERROR, final
 *		other 4xx (an image the provider cannot fetch or read, a bad key, an
 *		unknown model), with the provider's own message; a refusal; an
 *		answer cut at max_tokens (asking again would be cut again).
 *
 * Nothing here trusts the answer: every member is looked up by type, and a
 * body of the wrong shape is a verdict, never an error or half an analysis.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

/* The tool through which Claude answers (ai_provider.c sends it). */
#define AI_TOOL_NAME		"record_room_analysis"

/* Longest provider message kept in error_message. */
#define AI_MESSAGE_CHARS	300

/*
 * root_object
 *		The body's root object, or NULL when the body is not an object.
 */
static JsonbContainer *
root_object(Jsonb *body)
{
	if (body == NULL || !JB_ROOT_IS_OBJECT(body) || JB_ROOT_IS_SCALAR(body))
		return NULL;
	return &body->root;
}

/*
 * provider_error
 *		An HTTP error answer of a model API.  err is the body's "error"
 *		object (both APIs nest their error there).  Classified by status,
 *		and by the documented error types where the status says less.
 */
static void
provider_error(const char *api, int status, Jsonb *body, const char *body_text,
			   JsonbContainer *err, AiVerdict *v)
{
	char	   *type = ai_json_string(err, "type", 64);
	char	   *code = ai_json_string(err, "code", 64);
	char	   *message = ai_json_string(err, "message", AI_MESSAGE_CHARS);
	/* Anthropic names an error by its type, OpenAI by its code first */
	const char *kind = code ? code : type;

	ai_status_verdict(status, body, body_text, v);
	if (status == 529 || (kind && (strcmp(kind, "overloaded_error") == 0 ||
								   strcmp(kind, "rate_limit_error") == 0)))
	{
		v->code = "RATE_LIMIT";
		v->retryable = true;
	}
	else if (kind && strcmp(kind, "timeout_error") == 0)
	{
		v->code = "TIMEOUT";
		v->retryable = true;
	}
	if (message != NULL)
		v->message = psprintf("%s HTTP %d%s%s: %s", api, status, kind ? " " : "",
							  kind ? kind : "", message);
}

/*
 * answer_error
 *		A 200 answer without a usable analysis: final when asking again
 *		cannot help (refused, cut, filtered), else retried (a new try may
 *		give one).
 */
static void
answer_error(AiVerdict *v, bool retryable, char *message)
{
	v->ok = false;
	v->code = "AI_ERROR";
	v->retryable = retryable;
	v->message = message;
}

/*
 * answer_root
 *		What both APIs share: an error answer, or a 2xx that is not a JSON
 *		object, gets its verdict here and NULL is returned; else the model
 *		and the token counts (usage's members in_key and out_key) are read
 *		and the answer's root object returned.
 */
static JsonbContainer *
answer_root(const char *api, int status, Jsonb *body, const char *body_text,
			const char *in_key, const char *out_key, AiVerdict *v)
{
	JsonbContainer *root = root_object(body);

	if (status < 200 || status > 299)
	{
		provider_error(api, status, body, body_text, ai_json_object(root, "error"), v);
		return NULL;
	}
	if (root == NULL)
	{
		ai_analysis_verdict(NULL, v);
		return NULL;
	}
	v->model = ai_json_string(root, "model", 200);
	v->tokens_in = ai_json_count(ai_json_object(root, "usage"), in_key);
	v->tokens_out = ai_json_count(ai_json_object(root, "usage"), out_key);
	return root;
}

/*
 * find_tool_input
 *		The input of the first tool_use block calling AI_TOOL_NAME in an
 *		Anthropic message's content; false when there is none.
 */
static bool
find_tool_input(JsonbContainer *msg, JsonbValue *input)
{
	JsonbValue	content;
	JsonbValue	block;
	JsonbIterator *it;
	JsonbIteratorToken tok;

	if (!moverz_json_key(msg, "content", &content) || !moverz_json_is_container(&content, false))
		return false;
	it = JsonbIteratorInit(content.val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &block, true)) != WJB_DONE)
	{
		char	   *type;
		char	   *name;

		if (tok != WJB_ELEM || !moverz_json_is_container(&block, true))
			continue;
		type = ai_json_string(block.val.binary.data, "type", 32);
		name = ai_json_string(block.val.binary.data, "name", 128);
		if (type && strcmp(type, "tool_use") == 0 && name && strcmp(name, AI_TOOL_NAME) == 0 &&
			moverz_json_key(block.val.binary.data, "input", input))
			return true;
	}
	return false;
}

/*
 * ai_read_anthropic
 *		One answer of the Messages API.  A 200 is a Message: its stop_reason
 *		says whether it was refused or cut; the analysis is the input of the
 *		tool_use block of our tool (tool_choice forced it).
 */
void
ai_read_anthropic(int status, Jsonb *body, const char *body_text, AiVerdict *v)
{
	JsonbContainer *root = answer_root("anthropic", status, body, body_text,
										"input_tokens", "output_tokens", v);
	char	   *stop;
	JsonbValue	input;

	if (root == NULL)
		return;
	stop = ai_json_string(root, "stop_reason", 64);
	if (stop && strcmp(stop, "refusal") == 0)
		answer_error(v, false, pstrdup("the model refused to analyse the photo (stop_reason refusal)"));
	else if (stop && strcmp(stop, "max_tokens") == 0)
		answer_error(v, false, psprintf("the answer was cut at max_tokens (stop_reason max_tokens, %d allowed): "
								"raise moverz_batch.ai_max_tokens", moverz_ai_max_tokens));
	else if (!find_tool_input(root, &input))
		answer_error(v, true, psprintf("invalid AI response: the model did not call the tool %s "
								  "(stop_reason %s)", AI_TOOL_NAME, stop ? stop : "missing"));
	else if (!moverz_json_is_container(&input, true))
		answer_error(v, true, psprintf("invalid AI response: the input of the tool %s is not an object",
								  AI_TOOL_NAME));
	else
		ai_analysis_verdict(JsonbValueToJsonb(&input), v);
}

/*
 * parse_content
 *		The JSON text the model answered as a jsonb, or NULL when it is not
 *		JSON that jsonb takes (checked first: jsonb_in raises errors).
 */
static Jsonb *
parse_content(const char *text)
{
	MemoryContext scratch = AllocSetContextCreate(CurrentMemoryContext, "moverz_batch answer",
												  ALLOCSET_SMALL_SIZES);
	bool		parses = moverz_json_parses(text, strlen(text), scratch);

	MemoryContextDelete(scratch);
	if (!parses)
		return NULL;
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}

/*
 * first_choice
 *		choices[0] of a chat completion, or NULL.
 */
static JsonbContainer *
first_choice(JsonbContainer *root)
{
	JsonbValue	choices;
	JsonbValue *first;

	if (root == NULL || !moverz_json_key(root, "choices", &choices) ||
		!moverz_json_is_container(&choices, false))
		return NULL;
	first = getIthJsonbValueFromContainer(choices.val.binary.data, 0);
	if (first == NULL || !moverz_json_is_container(first, true))
		return NULL;
	return first->val.binary.data;
}

/*
 * ai_read_openai
 *		One answer of a Chat Completions API.  A 200 is a chat completion:
 *		choices[0].message carries a refusal or the content, the analysis as
 *		JSON text (response_format json_schema); finish_reason says whether
 *		it was cut (length) or filtered (content_filter).
 */
void
ai_read_openai(int status, Jsonb *body, const char *body_text, AiVerdict *v)
{
	JsonbContainer *root = answer_root("openai", status, body, body_text,
										"prompt_tokens", "completion_tokens", v);
	JsonbContainer *choice;
	JsonbContainer *message;
	char	   *finish;
	char	   *refusal;
	char	   *content;
	Jsonb	   *analysis;

	if (root == NULL)
		return;
	choice = first_choice(root);
	message = ai_json_object(choice, "message");
	finish = ai_json_string(choice, "finish_reason", 64);
	refusal = ai_json_string(message, "refusal", AI_MESSAGE_CHARS);
	content = ai_json_string(message, "content", MaxAllocSize);
	if (refusal != NULL)
		answer_error(v, false, psprintf("the model refused to analyse the photo: %s", refusal));
	else if (finish && strcmp(finish, "length") == 0)
		answer_error(v, false, psprintf("the answer was cut at max tokens (finish_reason length, %d allowed): "
								"raise moverz_batch.ai_max_tokens", moverz_ai_max_tokens));
	else if (finish && strcmp(finish, "content_filter") == 0)
		answer_error(v, false, pstrdup("the answer was withheld by the provider's content filter "
							   "(finish_reason content_filter)"));
	else if (content == NULL)
		answer_error(v, true, psprintf("invalid AI response: no message content in choices[0] "
								  "(finish_reason %s)", finish ? finish : "missing"));
	else if ((analysis = parse_content(content)) == NULL)
		answer_error(v, true, psprintf("invalid AI response: the message content is not JSON: %s",
								  clip_chars(content, 80)));
	else
		ai_analysis_verdict(analysis, v);
}
