-- Tables: projects, batches, photos, inventory, AI metrics, inventory-sync queue.

-- Accepted room types (photos.roomType, the AI's room_type).  Documented in
-- README.md; an installation may add its own rows.
CREATE TABLE room_types (
    room_type   text PRIMARY KEY CHECK (room_type ~ '^[a-z][a-z0-9_]*$' AND octet_length(room_type) <= 64),
    description text NOT NULL
);
INSERT INTO room_types (room_type, description) VALUES
    ('living_room', 'living room, lounge (salon)'),
    ('bedroom', 'bedroom (chambre)'),
    ('kids_room', 'child''s bedroom'),
    ('kitchen', 'kitchen (cuisine)'),
    ('dining_room', 'dining room (salle à manger)'),
    ('bathroom', 'bathroom, toilets (salle de bain)'),
    ('office', 'office, study (bureau)'),
    ('hallway', 'hallway, entrance (entrée)'),
    ('laundry', 'laundry room (buanderie)'),
    ('storage', 'storage room, closet (débarras)'),
    ('garage', 'garage'),
    ('cellar', 'cellar, basement (cave)'),
    ('attic', 'attic (grenier)'),
    ('balcony', 'balcony, terrace'),
    ('garden', 'garden, shed'),
    ('other', 'anything else');
SELECT pg_catalog.pg_extension_config_dump('room_types', 'WHERE room_type NOT IN (''living_room'', ''bedroom'', ''kids_room'', ''kitchen'', ''dining_room'', ''bathroom'', ''office'', ''hallway'', ''laundry'', ''storage'', ''garage'', ''cellar'', ''attic'', ''balcony'', ''garden'', ''other'')');

CREATE TABLE projects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX projects_user_idx ON projects (user_id, created_at);

CREATE TABLE batches (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id           uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    user_id              text NOT NULL,
    status               batch_status NOT NULL DEFAULT 'QUEUED',
    count_queued         int NOT NULL DEFAULT 0 CHECK (count_queued >= 0),
    count_processing     int NOT NULL DEFAULT 0 CHECK (count_processing >= 0),
    count_completed      int NOT NULL DEFAULT 0 CHECK (count_completed >= 0),
    count_failed         int NOT NULL DEFAULT 0 CHECK (count_failed >= 0),
    count_cancelled      int NOT NULL DEFAULT 0 CHECK (count_cancelled >= 0),
    cancelled_at         timestamptz,
    inventory_queued     boolean NOT NULL DEFAULT false,
    inventory_generation int NOT NULL DEFAULT 1,
    priority             batch_priority NOT NULL DEFAULT 'NORMAL',
    idempotency_key      text,
    request_hash         text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    completed_at         timestamptz,
    CONSTRAINT batches_idempotency_key UNIQUE (user_id, idempotency_key)
);
CREATE INDEX batches_project_idx ON batches (project_id, user_id, status);
CREATE INDEX batches_user_created_idx ON batches (user_id, created_at DESC);
-- The claim's users: those with open batches (few rows; status changes
-- twice in a batch's life, so counter updates stay HOT).
CREATE INDEX batches_open_idx ON batches (user_id) WHERE status IN ('QUEUED', 'PROCESSING');

CREATE TABLE photos (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    batch_id        uuid NOT NULL,  -- references batches: see below
    position        int NOT NULL,
    project_id      uuid NOT NULL,
    user_id         text NOT NULL,
    filename        text NOT NULL,
    file_path       text,
    url             text,           -- the image's address, for a photo given by URL
    upload_id       uuid,           -- or its upload (uploads), for a file uploaded (since 0.7.0)
    -- one of room_types (checked on the way in).  The format check is a
    -- pattern without a bounded repeat plus a length: "{0,63}" made the
    -- regular expression cost 3 us per photo, a tenth of create_batch.
    room_type       text CHECK (room_type ~ '^[a-z][a-z0-9_]*$' AND octet_length(room_type) <= 64),
    checksum        text NOT NULL,
    duplicate_of    uuid,           -- same checksum as this photo of the project
    status          photo_status NOT NULL DEFAULT 'PENDING',
    priority        batch_priority NOT NULL DEFAULT 'NORMAL',
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_by      int,            -- worker slot holding the claim
    claim_token     bigint,         -- identifies that worker's incarnation
    lease_until     timestamptz,    -- last-resort expiry of the claim
    error_code      error_code,
    error_message   text,
    analysis        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    CONSTRAINT photos_batch_position UNIQUE (batch_id, position),
    CONSTRAINT photos_url_or_upload CHECK ((url IS NULL) <> (upload_id IS NULL))
);
-- photos.batch_id references batches, and the photos go with their batch,
-- but not through a foreign key: its per-row check (one query per photo,
-- a seq scan while batches is small) was a third of create_batch.  The
-- photos triggers check each batch once per statement (apply_batch_delta,
-- SQLSTATE 23503), and batches' delete and truncate triggers take the
-- photos along (30_counters.sql).
-- The claim: PENDING photos, per user, by priority then age.  Duplicates
-- are never sent: they take their original's outcome.
CREATE INDEX photos_claim_idx ON photos (user_id, priority DESC, created_at, batch_id, position)
    WHERE status = 'PENDING' AND duplicate_of IS NULL;
CREATE INDEX photos_duplicates_idx ON photos (duplicate_of) WHERE duplicate_of IS NOT NULL;
-- An upload is one photo (since 0.7.0); photos given by URL pay nothing.
CREATE UNIQUE INDEX photos_upload_idx ON photos (upload_id) WHERE upload_id IS NOT NULL;
-- Crash recovery and per-user fairness: photos in flight.
CREATE INDEX photos_inflight_idx ON photos (lease_until, user_id)
    WHERE status = 'PROCESSING';
-- Duplicate detection: the photos a new photo of the project may take its
-- analysis from (insert_photos), in the order it picks one (the earliest
-- finished), so that the lookup reads one entry and sorts nothing.
-- Partial, so that creating and claiming a photo do not insert into it
-- (two index insertions less per photo).
CREATE INDEX photos_project_idx ON photos (project_id, checksum, finished_at, id)
    WHERE status = 'DONE' AND duplicate_of IS NULL;
-- photos works as a queue: each photo is updated twice (claim, result) and
-- the claim's index scans step over dead entries until VACUUM removes them
-- (with 40,000 dead tuples the first request of a new batch took 6-8 ms, 1
-- ms after a VACUUM).  Vacuum when 1 % of the rows are dead, not 20 %.
ALTER TABLE photos SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000);

-- Queue of inventory syncs: one job per (batch, generation).  A batch's
-- generation grows each time retry_batch re-opens it.
CREATE TABLE inventory_sync_jobs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id    uuid NOT NULL REFERENCES batches ON DELETE CASCADE,
    project_id  uuid NOT NULL,
    user_id     text NOT NULL,
    generation  int NOT NULL,
    status      text NOT NULL DEFAULT 'PENDING'
                CHECK (status IN ('PENDING', 'DONE', 'SUPERSEDED')),
    attempts    int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CONSTRAINT inventory_sync_jobs_once UNIQUE (batch_id, generation)
);
CREATE INDEX inventory_sync_jobs_pending_idx ON inventory_sync_jobs (next_attempt_at, id)
    WHERE status = 'PENDING';

-- Inventory of a finished batch: one summary row, and one row per item.
CREATE TABLE inventory_summaries (
    batch_id     uuid PRIMARY KEY REFERENCES batches ON DELETE CASCADE,
    project_id   uuid NOT NULL,
    user_id      text NOT NULL,
    generation   int NOT NULL,
    total_items  bigint NOT NULL,
    total_volume numeric NOT NULL,
    summary      jsonb NOT NULL,
    synced_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inventory_summaries_project_idx ON inventory_summaries (project_id);

-- The items of every DONE photo (duplicates excepted), kept current by the
-- photos triggers (30_counters.sql) as photos finish; deleted with their
-- photo.  Per-room totals of each batch, kept by the same triggers, make a
-- batch's inventory summary cost the same for 3 photos or 20,000.
CREATE TABLE inventory_items (
    batch_id        uuid NOT NULL,
    photo_id        uuid NOT NULL,
    item_no         int NOT NULL,
    project_id      uuid NOT NULL,
    user_id         text NOT NULL,
    room_type       text NOT NULL,
    label           text NOT NULL,
    quantity        int NOT NULL CHECK (quantity >= 0),
    unit_volume_m3  numeric NOT NULL CHECK (unit_volume_m3 >= 0),
    PRIMARY KEY (batch_id, photo_id, item_no)
);
CREATE INDEX inventory_items_project_idx ON inventory_items (project_id);
CREATE INDEX inventory_items_photo_idx ON inventory_items (photo_id);

CREATE TABLE inventory_rooms (
    batch_id    uuid NOT NULL REFERENCES batches ON DELETE CASCADE,
    room_type   text NOT NULL,
    item_rows   int NOT NULL,
    items       bigint NOT NULL,
    volume      numeric NOT NULL,
    PRIMARY KEY (batch_id, room_type)
);

-- Processing switch (pause / resume), one row.
CREATE TABLE control (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    paused      boolean NOT NULL DEFAULT false,
    paused_at   timestamptz
);
INSERT INTO control DEFAULT VALUES;

-- One row per AI call (the seed's AiMetric).
CREATE TABLE ai_metrics (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider    text NOT NULL,
    operation   text NOT NULL,
    latency_ms  int NOT NULL CHECK (latency_ms >= 0),
    success     boolean NOT NULL,
    cost_usd    numeric(12, 6),
    tokens_in   int,
    tokens_out  int,
    meta        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    model       text            -- the model that answered, when it said
);
CREATE INDEX ai_metrics_batch_idx ON ai_metrics ((meta ->> 'batchId'));
CREATE INDEX ai_metrics_created_idx ON ai_metrics (created_at);

-- Direct upload of photo files (since 0.7.0): request_uploads makes one row
-- per file with a signed single-use URL (the token's SHA-256 only is kept);
-- the client PUTs the bytes to it (store_upload: the database store keeps
-- them in moverz_batch_internal.upload_bytes), then names the upload in
-- create_batch, which makes it a photo (photo_id).  checksum is the SHA-256
-- of the bytes: duplicates by content.  An upload never attached expires
-- and is deleted (expire_uploads); one attached goes with its photo.
CREATE TABLE uploads (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id    uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    user_id       text NOT NULL,
    filename      text NOT NULL,
    content_type  text NOT NULL
                  CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp', 'image/gif')),
    size          int NOT NULL CHECK (size > 0),    -- announced; the bytes' once uploaded
    store         text NOT NULL CHECK (store IN ('database', 's3')),
    token_sha256  bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    uploaded_at   timestamptz,
    checksum      text,           -- SHA-256 of the bytes, hex
    photo_id      uuid,           -- the photo it became (once only)
    CONSTRAINT uploads_uploaded CHECK ((uploaded_at IS NULL) = (checksum IS NULL))
);
CREATE INDEX uploads_expiry_idx ON uploads (expires_at) WHERE photo_id IS NULL;
CREATE INDEX uploads_project_idx ON uploads (project_id);
CREATE INDEX uploads_waiting_idx ON uploads (user_id) WHERE photo_id IS NULL;

-- The bytes of the database store, apart from their upload's row (which
-- the API reads and updates without them).  Images are compressed
-- already: stored out of line, uncompressed.
CREATE TABLE moverz_batch_internal.upload_bytes (
    upload_id  uuid PRIMARY KEY REFERENCES uploads ON DELETE CASCADE,
    bytes      bytea NOT NULL
);
ALTER TABLE moverz_batch_internal.upload_bytes ALTER COLUMN bytes SET STORAGE EXTERNAL;

-- The objects of the s3 store to delete (their upload was deleted: its
-- photo went, or it expired unused), drained by the photo workers with
-- presigned DELETEs; a failure is tried again later.
CREATE TABLE moverz_batch_internal.object_deletions (
    object_key       text PRIMARY KEY,
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text
);
CREATE INDEX object_deletions_due_idx ON moverz_batch_internal.object_deletions (next_attempt_at);

SELECT pg_catalog.pg_extension_config_dump('projects', '');
SELECT pg_catalog.pg_extension_config_dump('uploads', '');
SELECT pg_catalog.pg_extension_config_dump('moverz_batch_internal.upload_bytes', '');
SELECT pg_catalog.pg_extension_config_dump('moverz_batch_internal.object_deletions', '');
SELECT pg_catalog.pg_extension_config_dump('batches', '');
SELECT pg_catalog.pg_extension_config_dump('photos', '');
SELECT pg_catalog.pg_extension_config_dump('inventory_sync_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('inventory_summaries', '');
SELECT pg_catalog.pg_extension_config_dump('inventory_items', '');
SELECT pg_catalog.pg_extension_config_dump('inventory_rooms', '');
SELECT pg_catalog.pg_extension_config_dump('ai_metrics', '');
SELECT pg_catalog.pg_extension_config_dump('control', '');
