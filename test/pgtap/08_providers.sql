-- The model APIs' answers, read by classify_result one at a time (bodies as
-- the Anthropic Messages and OpenAI Chat Completions references document
-- them), the prompt and schema the workers send (ai_request_config), and
-- the cost of a call (ai_cost_usd over model_prices).
BEGIN;
SET client_min_messages = warning;
SELECT plan(44);

CREATE TEMP TABLE cases (api text, what text, http int, body jsonb, body_text text, expected text) ON COMMIT DROP;
INSERT INTO cases VALUES
  ('anthropic', 'a tool_use answer', 200,
   '{"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
     "content": [{"type": "text", "text": "Here it is."},
                 {"type": "tool_use", "id": "toolu_1", "name": "record_room_analysis",
                  "input": {"room_type": "kitchen", "items": [{"label": "chair", "quantity": 4, "volume_m3": 0.2}]}}],
     "stop_reason": "tool_use", "stop_sequence": null, "usage": {"input_tokens": 1500, "output_tokens": 80}}', NULL,
   '(t,,,f,"{""items"": [{""label"": ""chair"", ""quantity"": 4, ""volume_m3"": 0.2}], ""room_type"": ""kitchen""}",claude-sonnet-4-5-20250929,1500,80)'),
  ('anthropic', 'a refusal', 200,
   '{"type": "message", "model": "m", "content": [], "stop_reason": "refusal", "usage": {"input_tokens": 10, "output_tokens": 1}}', NULL,
   '(f,AI_ERROR,"the model refused to analyse the photo (stop_reason refusal)",f,,m,10,1)'),
  ('anthropic', 'cut at max_tokens', 200,
   '{"type": "message", "model": "m", "content": [{"type": "tool_use", "id": "t", "name": "record_room_analysis", "input": {}}],
     "stop_reason": "max_tokens", "usage": {"input_tokens": 10, "output_tokens": 1024}}', NULL,
   '(f,AI_ERROR,"the answer was cut at max_tokens (stop_reason max_tokens, 1024 allowed): raise moverz_batch.ai_max_tokens",f,,m,10,1024)'),
  ('anthropic', 'no tool call', 200,
   '{"type": "message", "model": "m", "content": [{"type": "text", "text": "I see a sofa."}], "stop_reason": "end_turn", "usage": {}}', NULL,
   '(f,AI_ERROR,"invalid AI response: the model did not call the tool record_room_analysis (stop_reason end_turn)",t,,m,,)'),
  ('anthropic', 'another tool called', 200,
   '{"type": "message", "content": [{"type": "tool_use", "name": "other", "input": {"items": []}}], "stop_reason": "tool_use"}', NULL,
   '(f,AI_ERROR,"invalid AI response: the model did not call the tool record_room_analysis (stop_reason tool_use)",t,,,,)'),
  ('anthropic', 'input off the schema', 200,
   '{"type": "message", "content": [{"type": "tool_use", "name": "record_room_analysis", "input": {"room_type": "kitchen", "items": "lots"}}], "stop_reason": "tool_use"}', NULL,
   '(f,AI_ERROR,"invalid AI response: analysis.items must be an array",t,,,,)'),
  ('anthropic', 'input not an object', 200,
   '{"type": "message", "content": [{"type": "tool_use", "name": "record_room_analysis", "input": [1]}], "stop_reason": "tool_use"}', NULL,
   '(f,AI_ERROR,"invalid AI response: the input of the tool record_room_analysis is not an object",t,,,,)'),
  ('anthropic', 'content not an array', 200, '{"type": "message", "content": "x", "stop_reason": "tool_use"}', NULL,
   '(f,AI_ERROR,"invalid AI response: the model did not call the tool record_room_analysis (stop_reason tool_use)",t,,,,)'),
  ('anthropic', 'not JSON', 200, NULL, '<html>', '(f,AI_ERROR,"invalid AI response: response is not valid JSON",t,,,,)'),
  ('anthropic', '429 rate_limit_error', 429,
   '{"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your per-minute rate limit"}}', NULL,
   '(f,RATE_LIMIT,"anthropic HTTP 429 rate_limit_error: Number of request tokens has exceeded your per-minute rate limit",t,,,,)'),
  ('anthropic', '529 overloaded_error', 529,
   '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}', NULL,
   '(f,RATE_LIMIT,"anthropic HTTP 529 overloaded_error: Overloaded",t,,,,)'),
  ('anthropic', '500 api_error', 500, '{"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}', NULL,
   '(f,AI_ERROR,"anthropic HTTP 500 api_error: Internal server error",t,,,,)'),
  ('anthropic', '504 timeout_error', 504, '{"type": "error", "error": {"type": "timeout_error", "message": "Request timeout"}}', NULL,
   '(f,TIMEOUT,"anthropic HTTP 504 timeout_error: Request timeout",t,,,,)'),
  ('anthropic', '400 image not fetched', 400,
   '{"type": "error", "error": {"type": "invalid_request_error", "message": "Unable to download the file. Please verify the URL and try again."}}', NULL,
   '(f,AI_ERROR,"anthropic HTTP 400 invalid_request_error: Unable to download the file. Please verify the URL and try again.",f,,,,)'),
  ('anthropic', '401 authentication_error', 401, '{"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}', NULL,
   '(f,AI_ERROR,"anthropic HTTP 401 authentication_error: invalid x-api-key",f,,,,)'),
  ('anthropic', '502 with a text body', 502, NULL, 'bad gateway', '(f,AI_ERROR,"HTTP 502: bad gateway",t,,,,)'),
  ('anthropic', 'token counts out of range', 200,
   '{"type": "message", "model": "m", "content": [{"type": "tool_use", "name": "record_room_analysis", "input": {"items": []}}],
     "stop_reason": "tool_use", "usage": {"input_tokens": 3000000000, "output_tokens": -1}}', NULL,
   '(t,,,f,"{""items"": []}",m,,)'),
  ('openai', 'a structured answer', 200,
   '{"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4.1-mini-2025-04-14",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": "{\"room_type\": \"bedroom\", \"items\": [{\"label\": \"bed\", \"quantity\": 1, \"volume_m3\": 1.9}]}", "refusal": null},
                  "finish_reason": "stop", "logprobs": null}],
     "usage": {"prompt_tokens": 900, "completion_tokens": 60, "total_tokens": 960}}', NULL,
   '(t,,,f,"{""items"": [{""label"": ""bed"", ""quantity"": 1, ""volume_m3"": 1.9}], ""room_type"": ""bedroom""}",gpt-4.1-mini-2025-04-14,900,60)'),
  ('openai', 'a refusal', 200,
   '{"model": "g", "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": "I''m sorry, I can''t help with that."}, "finish_reason": "stop"}]}', NULL,
   '(f,AI_ERROR,"the model refused to analyse the photo: I''m sorry, I can''t help with that.",f,,g,,)'),
  ('openai', 'cut: finish_reason length', 200,
   '{"model": "g", "choices": [{"index": 0, "message": {"content": "{\"room_type\": \"kit"}, "finish_reason": "length"}]}', NULL,
   '(f,AI_ERROR,"the answer was cut at max tokens (finish_reason length, 1024 allowed): raise moverz_batch.ai_max_tokens",f,,g,,)'),
  ('openai', 'content_filter', 200, '{"choices": [{"message": {"content": null}, "finish_reason": "content_filter"}]}', NULL,
   '(f,AI_ERROR,"the answer was withheld by the provider''s content filter (finish_reason content_filter)",f,,,,)'),
  ('openai', 'content not JSON', 200, '{"choices": [{"message": {"content": "I can see a sofa."}, "finish_reason": "stop"}]}', NULL,
   '(f,AI_ERROR,"invalid AI response: the message content is not JSON: I can see a sofa.",t,,,,)'),
  ('openai', 'content JSON off the schema', 200, '{"choices": [{"message": {"content": "{\"items\": \"lots\"}"}, "finish_reason": "stop"}]}', NULL,
   '(f,AI_ERROR,"invalid AI response: analysis.items must be an array",t,,,,)'),
  ('openai', 'content with \u0000', 200, '{"choices": [{"message": {"content": "{\"items\": [], \"x\": \"\\u0000\"}"}, "finish_reason": "stop"}]}', NULL,
   '(f,AI_ERROR,"invalid AI response: the message content is not JSON: {""items"": [], ""x"": ""\\u0000""}",t,,,,)'),
  ('openai', 'no choices', 200, '{"choices": []}', NULL,
   '(f,AI_ERROR,"invalid AI response: no message content in choices[0] (finish_reason missing)",t,,,,)'),
  ('openai', '429 rate_limit_exceeded', 429,
   '{"error": {"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}', NULL,
   '(f,RATE_LIMIT,"openai HTTP 429 rate_limit_exceeded: Rate limit reached for requests",t,,,,)'),
  ('openai', '503 overloaded', 503,
   '{"error": {"message": "The server is overloaded", "type": "service_unavailable_error", "param": null, "code": "server_is_overloaded"}}', NULL,
   '(f,AI_ERROR,"openai HTTP 503 server_is_overloaded: The server is overloaded",t,,,,)'),
  ('openai', '400 invalid_image_url', 400,
   '{"error": {"message": "Error while downloading https://x.invalid/a.jpg.", "type": "invalid_request_error", "param": null, "code": "invalid_image_url"}}', NULL,
   '(f,AI_ERROR,"openai HTTP 400 invalid_image_url: Error while downloading https://x.invalid/a.jpg.",f,,,,)'),
  ('openai', '408', 408, '{"error": {"message": "Request timed out.", "type": "invalid_request_error", "param": null, "code": null}}', NULL,
   '(f,TIMEOUT,"openai HTTP 408 invalid_request_error: Request timed out.",t,,,,)');
SELECT is(moverz_batch.classify_result(api, http, NULL, NULL, body, body_text)::text, expected,
          'classify_result ' || api || ': ' || what)
  FROM cases ORDER BY api, what;

SELECT is((moverz_batch.classify_result('openai', NULL, 'TIMEOUT', 'Operation timed out after 60000 ms', NULL, NULL)).code,
          'TIMEOUT', 'classify_result: the client''s own time-out is TIMEOUT whatever the provider');
SELECT is((moverz_batch.classify_result('anthropic', NULL, 'NETWORK_ERROR', 'Connection refused', NULL, NULL))::text,
          '(f,NETWORK_ERROR,"Connection refused",t,,,,)', 'classify_result: a connection failure is NETWORK_ERROR, retried');
SELECT is(length((moverz_batch.classify_result('anthropic', 400, NULL, NULL,
                  jsonb_build_object('type', 'error', 'error', jsonb_build_object('type', 'invalid_request_error', 'message', repeat('m', 5000))),
                  NULL)).message), 342, 'classify_result: a provider''s message is cut to 300 characters');

-- the prompt and the schema
SELECT matches(moverz_batch.ai_system_prompt(), 'kitchen \(kitchen \(cuisine\)\)', 'the prompt names the room types');
SELECT is((SELECT r.prompt_version FROM moverz_batch_internal.ai_request_config() r), moverz_batch.ai_prompt_version(),
          'ai_request_config: the built-in prompt and its version');
SET LOCAL moverz_batch.ai_system_prompt = 'Rooms: {room_types}. Count the furniture.';
SELECT is((SELECT r.prompt_version || ' / ' || left(r.system_prompt, 19) FROM moverz_batch_internal.ai_request_config() r),
          'custom / Rooms: attic (attic', 'moverz_batch.ai_system_prompt replaces the prompt, {room_types} expanded');
RESET moverz_batch.ai_system_prompt;
SELECT is(moverz_batch.ai_analysis_schema() #> '{properties,room_type,enum}',
          (SELECT jsonb_agg(room_type ORDER BY room_type) FROM moverz_batch.room_types),
          'the schema''s room types are the room_types table');
SELECT is(moverz_batch.ai_analysis_schema() -> 'required', '["room_type", "items"]',
          'strict schema: every property of the analysis is required');
SELECT is(moverz_batch.ai_analysis_schema() #> '{properties,items,items,required}', '["label", "quantity", "volume_m3"]',
          'strict schema: every property of an item is required');
SELECT is((moverz_batch.ai_analysis_schema() ->> 'additionalProperties') || '/' ||
          (moverz_batch.ai_analysis_schema() #>> '{properties,items,items,additionalProperties}'), 'false/false',
          'strict schema: no other property allowed');
SELECT ok(NOT has_function_privilege('moverz_app', 'moverz_batch_internal.ai_request_config()', 'EXECUTE'),
          'ai_request_config is the workers'' (owner only)');

-- costs
INSERT INTO moverz_batch.model_prices (model, input_usd_per_mtok, output_usd_per_mtok)
VALUES ('claude-sonnet-4-5', 3, 15), ('claude-sonnet', 99, 99);
SELECT is(moverz_batch_internal.ai_cost_usd('claude-sonnet-4-5-20250929', 1500, 80), 0.005700,
          'ai_cost_usd: tokens x prices of the longest matching model prefix');
SELECT is(moverz_batch_internal.ai_cost_usd('gpt-unknown', 1500, 80), NULL, 'ai_cost_usd: no price, no cost');
SELECT is(moverz_batch_internal.ai_cost_usd('claude-sonnet-4-5', NULL, 80), 0.001200, 'ai_cost_usd: an unknown count costs nothing');
SELECT throws_ok($$INSERT INTO moverz_batch.model_prices VALUES ('x', -1, 1)$$, '23514', NULL,
                 'model_prices: a negative price is refused');

SELECT * FROM finish();
ROLLBACK;
