/*-------------------------------------------------------------------------
 *
 * ai_provider.c
 *		The AI providers' requests: where a photo is sent, with which
 *		headers and which body (moverz_batch.ai_provider).
 *
 *	moverz-ai	POST <url>/v1/analyze-photo, moverz_batch's own contract:
 *				the service prompts the model and answers an analysis.
 *	anthropic	POST <url>/v1/messages (Anthropic Messages API): the photo
 *				as an image block with a URL source, the analysis asked for
 *				through a tool whose input_schema is its shape, forced by
 *				tool_choice.
 *	openai		POST <url>/chat/completions, <url> ending in /v1 as OpenAI's
 *				SDKs take it (OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp,
 *				LM Studio): the photo as an image_url part, the analysis
 *				asked for through a strict json_schema response_format.
 *
 * The two model APIs need the system prompt and the schema of the answer,
 * both made in SQL from the room types (ai_request_config()): they are read
 * in a short transaction of the photo worker at start and after each
 * reload of the settings, and every body is then the same text around the
 * photo's own part.  The answers are read in SQL, by classify_result()
 * (ai_contract.c, ai_answer.c).
 *
 * The API key goes into a header only: never into a body, a log line or an
 * error message.  It is read from moverz_batch.ai_api_key_file when set (a
 * file only its owner reads, as PostgreSQL's own ssl_key_file): the
 * postmaster logs the new value of a setting changed by a reload, so a key
 * set as moverz_batch.ai_api_key is logged when it changes.
 *
 *-------------------------------------------------------------------------
 */
#include "moverz_batch.h"

#include "lib/stringinfo.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

/* The tool through which Claude answers (its input is the analysis). */
#define AI_TOOL_NAME		"record_room_analysis"
/* The name of the response_format schema of the OpenAI-compatible APIs. */
#define AI_SCHEMA_NAME		"room_analysis"

/* The values of moverz_batch.ai_provider. */
const struct config_enum_entry moverz_ai_provider_options[] = {
	{"moverz-ai", AI_PROVIDER_MOVERZ, false},
	{"anthropic", AI_PROVIDER_ANTHROPIC, false},
	{"openai", AI_PROVIDER_OPENAI, false},
	{NULL, 0, false}
};

/* The values of moverz_batch.openai_max_tokens_field. */
const struct config_enum_entry moverz_max_tokens_field_options[] = {
	{"max_completion_tokens", 0, false},
	{"max_tokens", 1, false},
	{NULL, 0, false}
};

/*
 * ai_provider_name
 *		The name of a provider, as ai_metrics.provider records it.
 */
const char *
ai_provider_name(int provider)
{
	for (int i = 0; moverz_ai_provider_options[i].name != NULL; i++)
		if (moverz_ai_provider_options[i].val == provider)
			return moverz_ai_provider_options[i].name;
	return "moverz-ai";
}

/*
 * default_base_url
 *		The base URL a provider is reached at when moverz_batch.ai_service_url
 *		is empty.
 */
static const char *
default_base_url(int provider)
{
	switch (provider)
	{
		case AI_PROVIDER_ANTHROPIC:
			return "https://api.anthropic.com";
		case AI_PROVIDER_OPENAI:
			return "https://api.openai.com/v1";
		default:
			return "http://127.0.0.1:8000";
	}
}

/*
 * ai_shape_model
 *		The model asked for: moverz_batch.ai_model, or the provider's default.
 */
static const char *
ai_shape_model(int provider)
{
	if (moverz_ai_model != NULL && moverz_ai_model[0] != '\0')
		return moverz_ai_model;
	return provider == AI_PROVIDER_ANTHROPIC ? "claude-sonnet-4-5" : "gpt-4.1-mini";
}

/* Longest API key read from moverz_batch.ai_api_key_file. */
#define AI_MAX_KEY_LEN		4096

/*
 * read_api_key
 *		The API key: the first line of moverz_batch.ai_api_key_file when set
 *		(trailing white space dropped), else moverz_batch.ai_api_key; NULL
 *		when none.  A file that cannot be read is logged by its name only.
 */
static char *
read_api_key(void)
{
	FILE	   *f;
	char	   *key;
	size_t		len;

	if (moverz_ai_api_key_file == NULL || moverz_ai_api_key_file[0] == '\0')
		return (moverz_ai_api_key && moverz_ai_api_key[0] != '\0') ? pstrdup(moverz_ai_api_key) : NULL;
	f = AllocateFile(moverz_ai_api_key_file, "r");
	if (f == NULL)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("moverz_batch: could not read the API key file \"%s\": %m",
						moverz_ai_api_key_file)));
		return NULL;
	}
	key = palloc0(AI_MAX_KEY_LEN + 1);
	len = fread(key, 1, AI_MAX_KEY_LEN, f);
	FreeFile(f);
	key[len] = '\0';
	len = strcspn(key, "\r\n");
	while (len > 0 && (key[len - 1] == ' ' || key[len - 1] == '\t'))
		len--;
	key[len] = '\0';
	if (len == 0)
	{
		ereport(LOG,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("moverz_batch: the API key file \"%s\" is empty", moverz_ai_api_key_file)));
		pfree(key);
		return NULL;
	}
	return key;
}

/*
 * ai_shape_configure
 *		(Re)read the settings into shape, allocated in cxt: provider,
 *		endpoint and the header lines that carry the key.  The prompt and
 *		schema are read apart (ai_shape_load): shape->loaded says whether
 *		the requests of a model API can be built.
 */
void
ai_shape_configure(AiShape *shape, MemoryContext cxt)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	const char *base = (moverz_ai_service_url && moverz_ai_service_url[0] != '\0')
		? moverz_ai_service_url : default_base_url(moverz_ai_provider);
	int			len = strlen(base);
	char	   *key = read_api_key();
	const char *path;

	while (len > 0 && base[len - 1] == '/')
		len--;
	path = moverz_ai_provider == AI_PROVIDER_ANTHROPIC ? "/v1/messages" :
		moverz_ai_provider == AI_PROVIDER_OPENAI ? "/chat/completions" : "/v1/analyze-photo";
	for (int i = 0; i < AI_AUTH_LINES; i++)
	{
		if (shape->auth[i])
		{
			/* the key leaves no copy behind in memory we give back */
			explicit_bzero(shape->auth[i], strlen(shape->auth[i]));
			pfree(shape->auth[i]);
		}
		shape->auth[i] = NULL;
	}
	if (shape->endpoint)
		pfree(shape->endpoint);
	shape->endpoint = psprintf("%.*s%s", len, base, path);
	shape->provider = moverz_ai_provider;
	if (moverz_ai_provider == AI_PROVIDER_ANTHROPIC)
	{
		shape->auth[0] = key ? psprintf("x-api-key: %s", key) : NULL;
		shape->auth[1] = psprintf("anthropic-version: %s", moverz_anthropic_version);
	}
	else if (key)
		shape->auth[0] = psprintf("Authorization: Bearer %s", key);
	if (key != NULL)
	{
		explicit_bzero(key, strlen(key));
		pfree(key);
	}
	/* the body's frame depends on the model and max_tokens: built again */
	shape->loaded = false;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * frame_anthropic
 *		The text of a Messages API body up to the photo's content blocks.
 */
static void
frame_anthropic(AiShape *shape, const char *prompt, const char *schema)
{
	StringInfoData head;

	initStringInfo(&head);
	appendStringInfoString(&head, "{\"model\":");
	escape_json(&head, ai_shape_model(AI_PROVIDER_ANTHROPIC));
	appendStringInfo(&head, ",\"max_tokens\":%d,\"system\":", moverz_ai_max_tokens);
	escape_json(&head, prompt);
	appendStringInfo(&head,
					 ",\"tools\":[{\"name\":\"%s\",\"description\":"
					 "\"Record the objects to move seen in the photo, and its room type.\","
					 "\"input_schema\":%s}],"
					 "\"tool_choice\":{\"type\":\"tool\",\"name\":\"%s\"},"
					 "\"messages\":[{\"role\":\"user\",\"content\":[",
					 AI_TOOL_NAME, schema, AI_TOOL_NAME);
	shape->head = head.data;
}

/*
 * frame_openai
 *		The text of a Chat Completions body up to the photo's content parts.
 */
static void
frame_openai(AiShape *shape, const char *prompt, const char *schema)
{
	StringInfoData head;

	initStringInfo(&head);
	appendStringInfoString(&head, "{\"model\":");
	escape_json(&head, ai_shape_model(AI_PROVIDER_OPENAI));
	appendStringInfo(&head, ",\"%s\":%d",
					 moverz_openai_max_tokens_field == 1 ? "max_tokens" : "max_completion_tokens",
					 moverz_ai_max_tokens);
	appendStringInfo(&head,
					 ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
					 "{\"name\":\"%s\",\"strict\":true,\"schema\":%s}},"
					 "\"messages\":[{\"role\":\"system\",\"content\":",
					 AI_SCHEMA_NAME, schema);
	escape_json(&head, prompt);
	appendStringInfoString(&head, "},{\"role\":\"user\",\"content\":[");
	shape->head = head.data;
}

/*
 * ai_shape_set_frame
 *		Build the constant text of every body from the prompt and the JSON
 *		schema (ai_request_config()), in the shape's context.
 */
static void
ai_shape_set_frame(AiShape *shape, MemoryContext cxt, const char *version,
				   const char *prompt, const char *schema)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);

	if (shape->head)
		pfree(shape->head);
	if (shape->tail)
		pfree(shape->tail);
	if (shape->prompt_version)
		pfree(shape->prompt_version);
	shape->head = shape->tail = NULL;
	shape->prompt_version = pstrdup(version);
	if (shape->provider == AI_PROVIDER_ANTHROPIC)
		frame_anthropic(shape, prompt, schema);
	else
		frame_openai(shape, prompt, schema);
	/* both close the user message's content, the messages and the body */
	shape->tail = pstrdup("]}]}");
	shape->loaded = true;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * ai_shape_needs_frame
 *		Does the provider need the prompt and schema, not yet read?
 */
bool
ai_shape_needs_frame(const AiShape *shape)
{
	return shape->provider != AI_PROVIDER_MOVERZ && !shape->loaded;
}

/*
 * append_photo_text
 *		What the model is told of the photo besides the image: its file name
 *		and the room the customer named, if any.
 */
static void
append_photo_text(StringInfo buf, const AiPhoto *photo)
{
	char	   *text;

	if (photo->room_type != NULL)
		text = psprintf("Photo file name: %s. The customer says it shows this room: %s.",
						photo->filename, photo->room_type);
	else
		text = psprintf("Photo file name: %s.", photo->filename);
	escape_json(buf, text);
	pfree(text);
}

/*
 * build_moverz_body
 *		The request body of the moverz-ai contract.
 */
static void
build_moverz_body(StringInfo buf, const AiPhoto *photo)
{
	appendStringInfo(buf, "{\"photo_id\":\"%s\",\"batch_id\":\"%s\",\"project_id\":\"%s\"",
					 photo->id, photo->batch_id, photo->project_id);
	if (photo->uploaded)
	{
		appendStringInfo(buf, ",\"media_type\":\"%s\",\"image_base64\":\"", photo->media_type);
		appendStringInfoString(buf, photo->image_b64);
		appendStringInfoChar(buf, '"');
	}
	else
	{
		appendStringInfoString(buf, ",\"image_url\":");
		escape_json(buf, photo->url);
	}
	appendStringInfoString(buf, ",\"filename\":");
	escape_json(buf, photo->filename);
	appendStringInfoString(buf, ",\"room_type\":");
	if (photo->room_type)
		escape_json(buf, photo->room_type);
	else
		appendStringInfoString(buf, "null");
	appendStringInfo(buf, ",\"attempt\":%d}", photo->attempt);
}

/*
 * ai_shape_body
 *		The request body for one photo.  For a model API, the frame must be
 *		set (ai_shape_needs_frame() false).
 */
void
ai_shape_body(const AiShape *shape, StringInfo buf, const AiPhoto *photo)
{
	if (shape->provider == AI_PROVIDER_MOVERZ)
	{
		build_moverz_body(buf, photo);
		return;
	}
	Assert(shape->loaded);
	appendStringInfoString(buf, shape->head);
	if (shape->provider == AI_PROVIDER_ANTHROPIC)
	{
		appendStringInfoString(buf, "{\"type\":\"image\",\"source\":");
		if (photo->uploaded)
		{
			appendStringInfo(buf, "{\"type\":\"base64\",\"media_type\":\"%s\",\"data\":\"",
							 photo->media_type);
			appendStringInfoString(buf, photo->image_b64);
			appendStringInfoString(buf, "\"}");
		}
		else
		{
			appendStringInfoString(buf, "{\"type\":\"url\",\"url\":");
			escape_json(buf, photo->url);
			appendStringInfoChar(buf, '}');
		}
		appendStringInfoString(buf, "},{\"type\":\"text\",\"text\":");
		append_photo_text(buf, photo);
		appendStringInfoChar(buf, '}');
	}
	else
	{
		appendStringInfoString(buf, "{\"type\":\"text\",\"text\":");
		append_photo_text(buf, photo);
		appendStringInfoString(buf, "},{\"type\":\"image_url\",\"image_url\":{\"url\":");
		if (photo->uploaded)
		{
			appendStringInfo(buf, "\"data:%s;base64,", photo->media_type);
			appendStringInfoString(buf, photo->image_b64);
			appendStringInfoChar(buf, '"');
		}
		else
			escape_json(buf, photo->url);
		appendStringInfoString(buf, "}}");
	}
	appendStringInfoString(buf, shape->tail);
}

/* What load_frame_txn reads, for ai_shape_load. */
typedef struct FrameRead
{
	MemoryContext cxt;			/* where the values are copied to */
	char	   *version;
	char	   *prompt;
	char	   *schema;
} FrameRead;

/*
 * load_frame_txn
 *		In a transaction of its own: read ai_request_config().  The values
 *		are copied out of SPI's memory into the caller's context.
 */
static void
load_frame_txn(void *arg)
{
	static SPIPlanPtr plan = NULL;
	FrameRead  *read = (FrameRead *) arg;
	MemoryContext cxt = read->cxt;
	int			rc;

	moverz_saved_plan(&plan,
					  "SELECT prompt_version, system_prompt, analysis_schema::text"
					  "  FROM moverz_batch_internal.ai_request_config()", 0, NULL);
	rc = SPI_execute_plan(plan, NULL, NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "moverz_batch: reading ai_request_config() failed: %s",
			 SPI_result_code_string(rc));
	{
		char	  **out[3] = {&read->version, &read->prompt, &read->schema};

		/* a NULL column (no room type left, say) stays NULL: not loaded */
		for (int i = 0; i < 3; i++)
		{
			char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1);

			*out[i] = v ? MemoryContextStrdup(cxt, v) : NULL;
		}
	}
}

/*
 * ai_shape_load
 *		Read the prompt and the schema (one short transaction) and build the
 *		frame of the bodies.  False when they could not be read (the
 *		extension is not installed yet, or an error, which is logged): the
 *		caller sends nothing to a model API until it is read.
 */
bool
ai_shape_load(AiShape *shape, MemoryContext cxt)
{
	MemoryContext scratch = AllocSetContextCreate(CurrentMemoryContext, "moverz_batch prompt",
												  ALLOCSET_SMALL_SIZES);
	FrameRead	read;
	bool		ok;

	read.cxt = scratch;
	read.version = read.prompt = read.schema = NULL;
	ok = moverz_run_in_transaction(load_frame_txn, &read, "reading the AI prompt", NULL) &&
		read.version != NULL && read.prompt != NULL && read.schema != NULL;
	if (!ok && read.prompt == NULL && read.version != NULL)
		elog(LOG, "moverz_batch: the AI prompt is empty (no room type in moverz_batch.room_types?): nothing is sent");
	if (ok)
		ai_shape_set_frame(shape, cxt, read.version, read.prompt, read.schema);
	MemoryContextDelete(scratch);
	return ok;
}
