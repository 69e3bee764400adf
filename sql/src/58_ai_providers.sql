-- The AI providers (moverz_batch.ai_provider): what the workers send to a
-- real model, and what its calls cost.
--
--   moverz-ai   moverz_batch's own contract (POST <url>/v1/analyze-photo);
--               the service does the prompting and answers an analysis.
--   anthropic   the Anthropic Messages API (POST <url>/v1/messages).
--   openai      an OpenAI-compatible Chat Completions API
--               (POST <url>/chat/completions, <url> ending in /v1).
--
-- For the two model APIs, the worker asks ai_request_config() once at start
-- and after each reload of the settings (SELECT pg_reload_conf()) for the
-- system prompt and the JSON schema of the answer; both name the room types
-- of the room_types table.  The prompt is versioned here, with the
-- extension; moverz_batch.ai_system_prompt replaces it when set ({room_types}
-- in it is replaced by the list).  Reading the answer is done in C
-- (classify_result, src/ai_contract.c).

-- model_prices: what one million tokens cost, per model, as the operator
-- sets them (providers change their prices: nothing is preset).  "model" is
-- a model name or the prefix of one: the longest entry that starts the name
-- the provider answered with wins ('claude-sonnet-4-5' prices
-- 'claude-sonnet-4-5-20250929').  ai_metrics.cost_usd is computed from it
-- when the call is written back; a model without a price has no cost.
CREATE TABLE model_prices (
    model                 text PRIMARY KEY CHECK (model <> '' AND octet_length(model) <= 200),
    input_usd_per_mtok    numeric(12, 6) NOT NULL CHECK (input_usd_per_mtok >= 0),
    output_usd_per_mtok   numeric(12, 6) NOT NULL CHECK (output_usd_per_mtok >= 0),
    note                  text,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('model_prices', '');

-- ai_cost_usd: the cost of one call of model with these token counts, from
-- model_prices; NULL when the model has no price or the cost does not fit
-- ai_metrics.cost_usd (a paid answer is never lost for its metadata).
CREATE FUNCTION moverz_batch_internal.ai_cost_usd(p_model text, p_tokens_in int, p_tokens_out int) RETURNS numeric
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE WHEN c < 1000000 THEN round(c, 6) END
  FROM (SELECT (coalesce(p_tokens_in, 0) * p.input_usd_per_mtok
                + coalesce(p_tokens_out, 0) * p.output_usd_per_mtok) / 1000000 AS c
          FROM moverz_batch.model_prices p
         WHERE p_model IS NOT NULL AND left(p_model, length(p.model)) = p.model
         ORDER BY length(p.model) DESC
         LIMIT 1) AS x
$$;

-- ai_prompt_version: the version of the built-in system prompt; recorded in
-- ai_metrics.meta (promptVersion) of each call made with it.
CREATE FUNCTION ai_prompt_version() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'moverz-1' $$;

-- ai_room_type_list: the accepted room types, with their descriptions, as
-- the prompt names them.
CREATE FUNCTION moverz_batch_internal.ai_room_type_list() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT string_agg(t.room_type || ' (' || t.description || ')', ', ' ORDER BY t.room_type)
  FROM moverz_batch.room_types t
$$;

-- ai_system_prompt: the system prompt sent with every photo:
-- moverz_batch.ai_system_prompt when set, else the built-in one; in both,
-- {room_types} is replaced by the accepted room types.
CREATE FUNCTION ai_system_prompt() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
SELECT replace(coalesce(nullif(current_setting('moverz_batch.ai_system_prompt', true), ''),
$prompt$You look at one photo of a room for a moving company, which prices a move by the volume of what it carries.
List the furniture and the large objects a mover would carry: furniture, appliances, electronics, lamps, rugs, boxes, bicycles, plants in pots. Leave out what stays in the building (built-in cupboards, radiators, sinks, doors, windows, fitted kitchens) and small loose objects that go into boxes.
For each kind of object give:
- label: a short English noun phrase, singular ("sofa", "double bed", "wardrobe", "chair");
- quantity: how many of them you can see, an integer;
- volume_m3: the volume of ONE of them in cubic metres, as a mover estimates it for the truck (for example: chair 0.2, armchair 0.8, three-seat sofa 2.5, double bed with mattress 1.9, two-door wardrobe 1.1, fridge 1.0, dining table 0.6).
Put identical objects in one entry with their quantity; never count one object twice, also when it appears twice in the photo.
Say which room this is, as exactly one of these room types: {room_types}.
If the photo shows no room or nothing to move, answer an empty list of items and the room type "other".
Answer only with the structured result asked for, nothing else.$prompt$), '{room_types}',
               coalesce(moverz_batch_internal.ai_room_type_list(), 'other'))
$$;

-- ai_analysis_schema: the JSON schema of an analysis, as the model must
-- answer it (Anthropic: the tool's input_schema; OpenAI: the strict
-- response_format schema, hence every property required and no other
-- allowed).  The stored analysis is checked again by analysis_error().
CREATE FUNCTION ai_analysis_schema() RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT jsonb_build_object(
    'type', 'object',
    'properties', jsonb_build_object(
        'room_type', jsonb_build_object(
            'type', 'string',
            'description', 'The room shown in the photo.',
            'enum', (SELECT jsonb_agg(t.room_type ORDER BY t.room_type) FROM moverz_batch.room_types t)),
        'items', jsonb_build_object(
            'type', 'array',
            'description', 'The objects to move, identical objects in one entry.',
            'items', jsonb_build_object(
                'type', 'object',
                'properties', jsonb_build_object(
                    'label', jsonb_build_object('type', 'string',
                                                'description', 'Short English noun phrase, singular.'),
                    'quantity', jsonb_build_object('type', 'integer',
                                                   'description', 'How many of them, at least 1.'),
                    'volume_m3', jsonb_build_object('type', 'number',
                                                    'description', 'Volume of one of them in cubic metres.')),
                'required', jsonb_build_array('label', 'quantity', 'volume_m3'),
                'additionalProperties', false))),
    'required', jsonb_build_array('room_type', 'items'),
    'additionalProperties', false)
$$;

-- ai_request_config: what a worker needs to build its requests to a model
-- API: the prompt, its version and the schema of the answer.
CREATE FUNCTION moverz_batch_internal.ai_request_config(OUT prompt_version text, OUT system_prompt text,
                                  OUT analysis_schema jsonb)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE WHEN nullif(current_setting('moverz_batch.ai_system_prompt', true), '') IS NULL
            THEN moverz_batch.ai_prompt_version() ELSE 'custom' END,
       moverz_batch.ai_system_prompt(), moverz_batch.ai_analysis_schema()
$$;

REVOKE ALL ON FUNCTION moverz_batch_internal.ai_request_config() FROM PUBLIC;
