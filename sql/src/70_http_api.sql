-- The HTTP API, served by PostgREST (http/postgrest.conf) behind nginx
-- (http/nginx.conf), and per-user isolation with row-level security.
--
-- Roles (cluster-wide, created here only when absent):
--   moverz_authenticator  LOGIN NOINHERIT: PostgREST connects as it and
--                         switches to the JWT's "role" claim;
--   moverz_anon           requests without a token: may do nothing;
--   moverz_user           requests with a valid token; the user is the JWT
--                         "sub" claim, never a value sent by the client;
--   moverz_app            trusted SQL callers (an application connecting
--                         with a role of its own, member of moverz_app) that
--                         use the SQL API of schema moverz_batch, user_id
--                         passed in: they see every user's rows.
-- Schema moverz_api holds the only objects PostgREST exposes: functions,
-- SECURITY DEFINER with a pinned search_path, EXECUTE for moverz_user only.
-- The writing functions end with SET CONSTRAINTS ALL IMMEDIATE: the
-- deferred triggers of the core (progress notifications) then run inside
-- them, as the owner, not at commit as moverz_user.
-- Errors use PostgREST's SQLSTATE mapping: 22xxx -> 400, 23505 -> 409,
-- 42501 -> 401/403, and PTxyz -> HTTP xyz (PT401, PT404, PT413).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'moverz_authenticator') THEN
        CREATE ROLE moverz_authenticator LOGIN NOINHERIT;   -- the password is set by the administrator
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'moverz_anon') THEN
        CREATE ROLE moverz_anon NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'moverz_user') THEN
        CREATE ROLE moverz_user NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'moverz_app') THEN
        CREATE ROLE moverz_app NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('moverz_authenticator', 'moverz_anon', 'MEMBER') THEN
        GRANT moverz_anon TO moverz_authenticator;
    END IF;
    IF NOT pg_catalog.pg_has_role('moverz_authenticator', 'moverz_user', 'MEMBER') THEN
        GRANT moverz_user TO moverz_authenticator;
    END IF;
END
$$;

-- jwt_user_id: the user of the current request, the "sub" claim of the JWT
-- that PostgREST verified (request.jwt.claims), or NULL.
CREATE FUNCTION moverz_batch_internal.jwt_user_id() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT nullif(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub', '')
$$;

-- api_user: jwt_user_id(), or HTTP 401 when there is no token (the
-- request ran as moverz_anon, which may call the API functions only to be
-- told this), when the token names no user, or when it never expires (no
-- "exp" claim: PostgREST refuses an expired token, but accepts one without
-- "exp" for ever).
CREATE FUNCTION moverz_batch_internal.api_user() RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch_internal.jwt_user_id();
BEGIN
    -- PostgREST ran the request as its anonymous role (no token, or one
    -- without a role claim); "role" is the caller's, also in a SECURITY
    -- DEFINER function
    IF current_setting('role', true) = 'moverz_anon' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT401',
            MESSAGE = 'a JWT is required: send "Authorization: Bearer <token>"',
            HINT = 'The user is the token''s "sub" claim (HS256, claims role, sub and exp); '
                   'an x-user-id header is not read.';
    ELSIF v_user IS NULL OR btrim(v_user) = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT401', MESSAGE = 'the token names no user (no "sub" claim)',
            HINT = 'Sign a JWT with {"role": "moverz_user", "sub": "<user id>", "exp": <expiry>}.';
    ELSIF octet_length(v_user) > 255 THEN
        RAISE EXCEPTION USING ERRCODE = 'PT401', MESSAGE = 'the token''s "sub" claim is longer than 255 bytes';
    ELSIF jsonb_typeof(current_setting('request.jwt.claims', true)::jsonb -> 'exp') IS DISTINCT FROM 'number' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT401', MESSAGE = 'the token never expires (no "exp" claim)',
            HINT = 'Sign the JWT with an "exp" claim: seconds since 1970, e.g. one hour from now.';
    END IF;
    RETURN v_user;
END
$$;

-- request_header: one header of the current HTTP request (lower-case name),
-- from PostgREST's request.headers, or NULL.
CREATE FUNCTION moverz_batch_internal.request_header(p_name text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT nullif(current_setting('request.headers', true), '')::jsonb ->> lower(p_name)
$$;

-- api_raise: re-raise an error of the SQL API for HTTP.  no_data_found
-- becomes 404 (PT404) and program_limit_exceeded 413 (PT413); the SQL
-- argument names in messages become the HTTP names (assets -> imageUrls...).
CREATE FUNCTION moverz_batch_internal.api_raise(p_state text, p_message text, p_hint text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_state text := CASE p_state WHEN 'P0002' THEN 'PT404' WHEN '54000' THEN 'PT413' ELSE p_state END;
    v_msg text := p_message;
    v_names text[] := ARRAY['assets', 'imageUrls', 'project_id', 'projectId', 'photos_limit', 'photosLimit',
                            'photos_offset', 'photosOffset', 'idempotency_key', 'Idempotency-Key'];
BEGIN
    FOR i IN 1 .. array_length(v_names, 1) BY 2 LOOP
        IF v_msg LIKE v_names[i] || '%' THEN
            v_msg := v_names[i + 1] || substr(v_msg, length(v_names[i]) + 1);
            EXIT;
        END IF;
    END LOOP;
    IF v_state = 'PT413' AND coalesce(p_hint, '') LIKE 'Split the photos%' THEN
        p_hint := 'Split the photos into several batches.';
    ELSIF p_hint LIKE '%moverz_batch.room_types%' THEN
        p_hint := 'Accepted room types: '
                  || (SELECT string_agg(room_type, ', ' ORDER BY room_type) FROM moverz_batch.room_types) || '.';
    END IF;
    IF coalesce(p_hint, '') = '' THEN
        RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_msg;
    END IF;
    RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_msg, HINT = p_hint;
END
$$;

-- api_check_priority: HIGH jumps every queue: only a token whose role is a
-- member of moverz_priority may ask for it (HTTP 403 naming the field);
-- NORMAL and LOW are for everyone.
CREATE FUNCTION moverz_batch_internal.api_check_priority(p_priority text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- the request's role, as PostgREST set it from the token ("role" is
    -- the caller's, also in a SECURITY DEFINER function)
    v_role text := current_setting('role', true);
BEGIN
    IF p_priority = 'HIGH'
       AND NOT coalesce(EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = v_role
                                   AND pg_catalog.pg_has_role(r.oid, 'moverz_priority', 'MEMBER')), false) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = 'priority HIGH is reserved to roles granted moverz_priority',
            HINT = 'Send NORMAL or LOW, or ask an administrator for a token whose role is a member of moverz_priority.';
    END IF;
END
$$;

-- api_owned_batch: the batch if it belongs to p_user; HTTP 404 otherwise,
-- with the very same body for an unknown batch and another user's batch.
CREATE FUNCTION moverz_batch_internal.api_owned_batch(p_batch_id uuid, p_user text) RETURNS uuid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM moverz_batch.batches b WHERE b.id = p_batch_id AND b.user_id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = 'batch not found';
    END IF;
    RETURN p_batch_id;
END
$$;

-- api_page: check page (>= 1) and perPage (1..100) of a list call.
CREATE FUNCTION moverz_batch_internal.api_page(p_page int, p_per_page int) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_page IS NULL OR p_page < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'page must be an integer >= 1';
    ELSIF p_per_page IS NULL OR p_per_page NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'perPage must be an integer between 1 and 100';
    END IF;
END
$$;

-- api_body_uuid: the UUID in string field p_field of a request body.
CREATE FUNCTION moverz_batch_internal.api_body_uuid(p_body jsonb, p_field text) RETURNS uuid
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(p_body -> p_field) IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('%s is required and must be a string', p_field);
    ELSIF (p_body ->> p_field) !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('%s must be a UUID', p_field);
    END IF;
    RETURN (p_body ->> p_field)::uuid;
END
$$;

-- api_check_body: the request body must be a JSON object.
CREATE FUNCTION moverz_batch_internal.api_check_body(p_body jsonb, p_shape text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(p_body) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('the request body must be a JSON object %s, not %s', p_shape,
                             coalesce(jsonb_typeof(p_body), 'empty'));
    END IF;
END
$$;

-- api_too_many: a 53400 of the SQL API (a quota) as HTTP 429 Too Many
-- Requests, with Retry-After from its DETAIL retry_after_s=N.
CREATE FUNCTION moverz_batch_internal.api_too_many(p_message text, p_hint text, p_detail text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE SQLSTATE 'PGRST' USING
        MESSAGE = jsonb_build_object('code', '53400', 'message', p_message, 'hint', p_hint, 'details', NULL)::text,
        DETAIL = jsonb_build_object('status', 429, 'status_text', 'Too Many Requests',
                                    'headers', jsonb_build_object('Retry-After', substr(p_detail, 15)))::text;
END
$$;

-- api_assets: create_batch's assets from a request body: its imageUrls
-- ([{"filename", "url", "roomType"?}]) then its uploads ([{"uploadId",
-- "roomType"?}], since 0.7.0); NULL when it has neither (create_batch
-- then says imageUrls is required).
CREATE FUNCTION moverz_batch_internal.api_assets(p_body jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_body -> 'uploads' IS NULL OR jsonb_typeof(p_body -> 'uploads') = 'null' THEN
        RETURN p_body -> 'imageUrls';
    ELSIF jsonb_typeof(p_body -> 'uploads') <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('uploads must be a JSON array of {"uploadId", "roomType"} objects, not %s',
                             jsonb_typeof(p_body -> 'uploads'));
    ELSIF p_body -> 'imageUrls' IS NULL OR jsonb_typeof(p_body -> 'imageUrls') = 'null' THEN
        RETURN p_body -> 'uploads';
    ELSIF jsonb_typeof(p_body -> 'imageUrls') <> 'array' THEN
        RETURN p_body -> 'imageUrls';       -- refused by create_batch, as before
    END IF;
    RETURN (p_body -> 'imageUrls') || (p_body -> 'uploads');
END
$$;

-- batch_summary: one batch in a list: batch_state (batchId, status,
-- progress, counts) with its project, priority and times; no photos.
CREATE FUNCTION moverz_batch_internal.batch_summary(b batches) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT moverz_batch.batch_state(b)
       || jsonb_strip_nulls(jsonb_build_object('projectId', b.project_id, 'priority', b.priority,
                                               'createdAt', b.created_at, 'updatedAt', b.updated_at,
                                               'completedAt', b.completed_at))
$$;

CREATE SCHEMA moverz_api;
COMMENT ON SCHEMA moverz_api IS 'moverz_batch: the HTTP API (PostgREST db-schemas); functions only';

-- moverz_api.create_project: POST /rpc/create_project {"name"}: a project of
-- the token's user.  201 {"success": true, "project": {id, name, createdAt}}.
CREATE FUNCTION moverz_api.create_project(jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch_internal.api_user();
    v_id uuid;
    v_state text;
    v_msg text;
    v_hint text;
BEGIN
    PERFORM moverz_batch_internal.api_check_body($1, '{"name"}');
    IF jsonb_typeof($1 -> 'name') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'name is required and must be a string';
    END IF;
    BEGIN
        v_id := moverz_batch.create_project(v_user, $1 ->> 'name');
    EXCEPTION WHEN data_exception THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
        PERFORM moverz_batch_internal.api_raise(v_state, v_msg, v_hint);
    END;
    PERFORM set_config('response.status', '201', true);
    SET CONSTRAINTS ALL IMMEDIATE;   -- deferred triggers fire here, as the owner
    RETURN (SELECT jsonb_build_object('success', true,
                   'project', jsonb_build_object('id', p.id, 'name', p.name, 'createdAt', p.created_at))
              FROM moverz_batch.projects p WHERE p.id = v_id);
END
$$;

-- moverz_api.list_projects: GET /rpc/list_projects?page=&perPage=: the
-- token's user's projects, newest first.
CREATE FUNCTION moverz_api.list_projects(page int DEFAULT 1, "perPage" int DEFAULT 20) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch_internal.api_user();
BEGIN
    PERFORM moverz_batch_internal.api_page(page, "perPage");
    RETURN jsonb_build_object(
        'success', true,
        'projects', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', p.id, 'name', p.name, 'createdAt', p.created_at)
                                               ORDER BY p.created_at DESC, p.id DESC), '[]')
                       FROM (SELECT * FROM moverz_batch.projects x WHERE x.user_id = v_user
                              ORDER BY x.created_at DESC, x.id DESC
                              LIMIT "perPage" OFFSET (page - 1)::bigint * "perPage") AS p),
        'page', page, 'perPage', "perPage",
        'total', (SELECT count(*) FROM moverz_batch.projects x WHERE x.user_id = v_user));
END
$$;

-- moverz_api.create_batch: POST /rpc/create_batch (nginx: POST /api/batches)
-- with the seed's body {"projectId", "imageUrls": [{"filename", "filePath",
-- "url", "roomType"?}], "priority"?} and an optional Idempotency-Key header.
-- 202 Accepted, Location: /api/batches/<id>, {"success": true, "batchId",
-- "photosCount", "jobsEnqueued"}.  The same key and body answer the same
-- (with Idempotent-Replayed: true); the same key and another body 409.
CREATE FUNCTION moverz_api.create_batch(jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch_internal.api_user();
    v_assets jsonb;
    v_k int;
    v_project uuid;
    v_batch uuid;
    v_state text;
    v_msg text;
    v_hint text;
    b record;
BEGIN
    PERFORM moverz_batch_internal.api_check_body($1, '{"projectId", "imageUrls", "uploads"}');
    v_project := moverz_batch_internal.api_body_uuid($1, 'projectId');
    IF jsonb_typeof($1 -> 'priority') NOT IN ('string', 'null') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'priority must be one of HIGH, NORMAL, LOW';
    END IF;
    PERFORM moverz_batch_internal.api_check_priority($1 ->> 'priority');
    v_assets := moverz_batch_internal.api_assets($1);
    BEGIN
        v_batch := moverz_batch.create_batch(v_project, v_user, v_assets,
                                             coalesce($1 ->> 'priority', 'NORMAL'),
                                             moverz_batch_internal.request_header('idempotency-key'));
    EXCEPTION WHEN data_exception OR no_data_found OR program_limit_exceeded OR unique_violation THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
        -- assets[k] of an upload is uploads[k - the number of imageUrls]
        v_k := substring(v_msg FROM '^assets\[([0-9]+)\]')::int
               - CASE WHEN jsonb_typeof($1 -> 'imageUrls') = 'array' THEN jsonb_array_length($1 -> 'imageUrls') ELSE 0 END;
        IF v_k >= 0 THEN
            v_msg := regexp_replace(v_msg, '^assets\[[0-9]+\]', 'uploads[' || v_k || ']');
        END IF;
        PERFORM moverz_batch_internal.api_raise(v_state, v_msg, v_hint);
    WHEN configuration_limit_exceeded THEN
        -- the daily photo quota: 429 Too Many Requests with Retry-After
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT, v_state = PG_EXCEPTION_DETAIL;
        PERFORM moverz_batch_internal.api_too_many(v_msg, v_hint, v_state);
    END;
    SELECT x.id, x.created_at <> now() AS replayed,
           x.count_queued + x.count_processing + x.count_completed + x.count_failed AS n
      INTO b FROM moverz_batch.batches x WHERE x.id = v_batch;
    SET CONSTRAINTS ALL IMMEDIATE;   -- deferred triggers fire here, as the owner
    PERFORM set_config('response.status', '202', true);
    PERFORM set_config('response.headers',
        (jsonb_build_array(jsonb_build_object('Location', '/api/batches/' || b.id))
        || CASE WHEN b.replayed THEN '[{"Idempotent-Replayed": "true"}]'::jsonb ELSE '[]' END)::text, true);
    RETURN jsonb_build_object('success', true, 'batchId', b.id, 'photosCount', b.n, 'jobsEnqueued', b.n);
END
$$;

-- moverz_api.request_uploads: POST /rpc/request_uploads (nginx: POST
-- /api/uploads) {"projectId", "files": [{"filename", "contentType",
-- "size"}]}: 201 {"success": true, "uploads": [{"uploadId", "filename",
-- "method", "url", "headers", "expiresAt"}]}.
CREATE FUNCTION moverz_api.request_uploads(jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch_internal.api_user();
    v_project uuid;
    v_out jsonb;
    v_state text;
    v_msg text;
    v_hint text;
BEGIN
    PERFORM moverz_batch_internal.api_check_body($1, '{"projectId", "files"}');
    v_project := moverz_batch_internal.api_body_uuid($1, 'projectId');
    BEGIN
        v_out := moverz_batch.request_uploads(v_project, v_user, $1 -> 'files');
    EXCEPTION WHEN data_exception OR no_data_found OR program_limit_exceeded THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
        PERFORM moverz_batch_internal.api_raise(v_state, v_msg, v_hint);
    WHEN configuration_limit_exceeded THEN
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT, v_state = PG_EXCEPTION_DETAIL;
        PERFORM moverz_batch_internal.api_too_many(v_msg, v_hint, v_state);
    END;
    PERFORM set_config('response.status', '201', true);
    RETURN jsonb_build_object('success', true, 'uploads', v_out);
END
$$;

-- moverz_api.upload_put: the body of PUT /api/uploads/:id?token= (nginx
-- passes it raw, application/octet-stream, with the id and the token in
-- the headers X-Upload-Id and X-Upload-Token): store_upload.  Authorised
-- by the token, not by a JWT (the request runs as moverz_anon).  200
-- {"success": true, "uploadId", "size", "sha256"}; 403 unknown upload or
-- wrong token, 409 already uploaded, 410 expired, 413 larger than
-- announced, 415 not an image of the announced type.
CREATE FUNCTION moverz_api.upload_put(bytea) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id text := moverz_batch_internal.request_header('x-upload-id');
    v_out jsonb;
    v_state text;
    v_msg text;
    v_hint text;
BEGIN
    IF v_id IS NULL OR v_id !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = 'no such upload';
    END IF;
    BEGIN
        v_out := moverz_batch.store_upload(v_id::uuid, moverz_batch_internal.request_header('x-upload-token'), $1);
    EXCEPTION WHEN insufficient_privilege OR object_not_in_prerequisite_state OR object_in_use
                   OR program_limit_exceeded OR invalid_parameter_value OR null_value_not_allowed THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
        v_state := CASE v_state WHEN '42501' THEN 'PT403' WHEN '55000' THEN 'PT410' WHEN '55006' THEN 'PT409'
                                WHEN '54000' THEN 'PT413' WHEN '22023' THEN 'PT415' ELSE v_state END;
        RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_msg, HINT = coalesce(v_hint, '');
    END;
    RETURN jsonb_build_object('success', true) || v_out;
END
$$;

-- moverz_api.get_batch: GET /rpc/get_batch?id= (nginx: GET /api/batches/:id):
-- 200 {"success": true, "batch": <batch_progress>}; 404 with the same body
-- for an unknown batch and for another user's.  STABLE: PostgREST runs GETs
-- read-only.
CREATE FUNCTION moverz_api.get_batch(id uuid, "photosLimit" int DEFAULT NULL, "photosOffset" int DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_state text;
    v_msg text;
    v_hint text;
BEGIN
    PERFORM moverz_batch_internal.api_owned_batch(get_batch.id, moverz_batch_internal.api_user());
    BEGIN
        RETURN jsonb_build_object('success', true,
                                  'batch', moverz_batch.batch_progress(get_batch.id, "photosLimit", "photosOffset"));
    EXCEPTION WHEN data_exception THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT, v_hint = PG_EXCEPTION_HINT;
        PERFORM moverz_batch_internal.api_raise(v_state, v_msg, v_hint);
    END;
END
$$;

-- moverz_api.list_batches: GET /rpc/list_batches?projectId=&page=&perPage=
-- (nginx: GET /api/batches): the token's user's batches, newest first,
-- paged; another user's project lists nothing.
CREATE FUNCTION moverz_api.list_batches("projectId" uuid DEFAULT NULL, page int DEFAULT 1, "perPage" int DEFAULT 20)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_user text := moverz_batch_internal.api_user();
BEGIN
    PERFORM moverz_batch_internal.api_page(page, "perPage");
    RETURN jsonb_build_object(
        'success', true,
        'batches', (SELECT coalesce(jsonb_agg(moverz_batch_internal.batch_summary(s.b)
                                              ORDER BY (s.b).created_at DESC, (s.b).id DESC), '[]')
                      FROM (SELECT x AS b FROM moverz_batch.batches x
                             WHERE x.user_id = v_user AND ("projectId" IS NULL OR x.project_id = "projectId")
                             ORDER BY x.created_at DESC, x.id DESC
                             LIMIT "perPage" OFFSET (page - 1)::bigint * "perPage") AS s),
        'page', page, 'perPage', "perPage",
        'total', (SELECT count(*) FROM moverz_batch.batches x
                   WHERE x.user_id = v_user AND ("projectId" IS NULL OR x.project_id = "projectId")));
END
$$;

-- moverz_api.retry_batch: POST /rpc/retry_batch {"id"} (nginx: POST
-- /api/batches/:id/retry): the batch's ERROR photos back to PENDING.
-- 202 {"success": true, "batchId", "photosRequeued"} (200 when none); 404
-- as get_batch.
CREATE FUNCTION moverz_api.retry_batch(id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_n int;
BEGIN
    PERFORM moverz_batch_internal.api_owned_batch(retry_batch.id, moverz_batch_internal.api_user());
    v_n := moverz_batch.retry_batch(retry_batch.id);
    SET CONSTRAINTS ALL IMMEDIATE;   -- deferred triggers fire here, as the owner
    PERFORM set_config('response.status', CASE WHEN v_n > 0 THEN '202' ELSE '200' END, true);
    RETURN jsonb_build_object('success', true, 'batchId', retry_batch.id, 'photosRequeued', v_n);
END
$$;

-- moverz_api.cancel_batch: POST /rpc/cancel_batch {"id"} (nginx: POST
-- /api/batches/:id/cancel): cancel_batch.  200 {"success": true, "batchId",
-- "photosCancelled"}; 404 as get_batch; 409 for a batch already finished.
CREATE FUNCTION moverz_api.cancel_batch(id uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_n int;
    v_msg text;
BEGIN
    PERFORM moverz_batch_internal.api_owned_batch(cancel_batch.id, moverz_batch_internal.api_user());
    BEGIN
        v_n := moverz_batch.cancel_batch(cancel_batch.id);
    EXCEPTION WHEN object_not_in_prerequisite_state THEN
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
        RAISE EXCEPTION USING ERRCODE = 'PT409', MESSAGE = v_msg;
    END;
    SET CONSTRAINTS ALL IMMEDIATE;   -- deferred triggers fire here, as the owner
    RETURN jsonb_build_object('success', true, 'batchId', cancel_batch.id, 'photosCancelled', v_n);
END
$$;

-- Privileges.  PUBLIC executes nothing of the extension: moverz_app keeps
-- what PUBLIC could execute so far (the SQL API; not what earlier files
-- reserved to the owner, as the workers' functions); moverz_user executes
-- the HTTP API and reads its own rows (row-level security); moverz_anon can
-- only reach the schema.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'moverz_batch'::regnamespace
                AND (p.proacl IS NULL
                     OR EXISTS (SELECT 1 FROM pg_catalog.aclexplode(p.proacl) a
                                 WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')) LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO moverz_app', f);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA moverz_api FROM PUBLIC;
-- The internal schema: no USAGE for anyone, no EXECUTE for PUBLIC.  Only
-- jwt_user_id is granted, to moverz_user: the row-level security policies
-- below call it as the querying role.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA moverz_batch_internal FROM PUBLIC;
GRANT USAGE ON SCHEMA moverz_api TO moverz_anon, moverz_user;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA moverz_api TO moverz_user;
-- ... and to moverz_anon, so that a request without a token is answered
-- 401 "a JWT is required" by api_user(), their first step, rather than
-- "permission denied for function ..."
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA moverz_api TO moverz_anon;

GRANT USAGE ON SCHEMA moverz_batch TO moverz_user, moverz_app;
GRANT EXECUTE ON FUNCTION moverz_batch_internal.jwt_user_id() TO moverz_user;
GRANT SELECT ON projects, batches, photos, inventory_summaries, inventory_items,
                inventory_sync_jobs, ai_metrics, room_types, uploads TO moverz_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON projects, batches, photos, inventory_summaries, inventory_items,
    inventory_sync_jobs TO moverz_app;
GRANT SELECT ON ai_metrics, room_types, model_prices, uploads TO moverz_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA moverz_batch TO moverz_app;

-- Row-level security on every table of user data (a user_id column, and
-- ai_metrics whose meta carries "userId"): moverz_user sees (and could only
-- ever write) the rows of its JWT's user, moverz_app every row.  Not FORCEd:
-- the owner and the background workers (superuser) are not subject to it.
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT c.relname FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'moverz_batch'::regnamespace AND c.relkind IN ('r', 'p')
                AND (c.relname = 'ai_metrics'
                     OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                 WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped))
              ORDER BY c.relname LOOP
        EXECUTE format('ALTER TABLE moverz_batch.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY %I ON moverz_batch.%I TO moverz_user USING (%s = (SELECT moverz_batch_internal.jwt_user_id())) '
                       'WITH CHECK (%3$s = (SELECT moverz_batch_internal.jwt_user_id()))',
                       t || '_own_rows', t, CASE WHEN t = 'ai_metrics' THEN '(meta ->> ''userId'')' ELSE 'user_id' END);
        EXECUTE format('CREATE POLICY %I ON moverz_batch.%I TO moverz_app USING (true) WITH CHECK (true)',
                       t || '_trusted_app', t);
    END LOOP;
END
$$;
