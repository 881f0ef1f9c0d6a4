-- Times are unix microseconds (UTC) in BIGINT columns: one representation on both backends.
-- Division codes use the C collation on PostgreSQL so that prefix ranges follow byte order.

CREATE TABLE org_units (
    code TEXT COLLATE "C" PRIMARY KEY CHECK (length(code) BETWEEN 6 AND 20),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    level TEXT NOT NULL CHECK (level IN ('county', 'township', 'village', 'group')),
    parent_code TEXT COLLATE "C" REFERENCES org_units(code),
    created_at BIGINT NOT NULL,
    CHECK ((level = 'county') = (parent_code IS NULL))
);
CREATE INDEX org_units_parent ON org_units (parent_code);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 64),
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('worker', 'township_supervisor', 'county_supervisor', 'admin')),
    org_unit TEXT COLLATE "C" REFERENCES org_units(code),
    password_hash TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The villages (or villager groups) a field worker is assigned to.
CREATE TABLE user_villages (
    user_id TEXT NOT NULL REFERENCES users(id),
    org_unit TEXT COLLATE "C" NOT NULL REFERENCES org_units(code),
    PRIMARY KEY (user_id, org_unit)
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    app_version TEXT,
    status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    last_seq BIGINT NOT NULL DEFAULT 0,
    scope_hash TEXT,
    last_push_at BIGINT,
    last_pull_at BIGINT,
    last_pull_cursor BIGINT,
    clock_offset_ms BIGINT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT
);
CREATE INDEX devices_user ON devices (user_id);

CREATE TABLE refresh_tokens (
    id TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    token_hash TEXT NOT NULL UNIQUE,
    successor_id TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Append-only: triggers below refuse UPDATE and DELETE.
CREATE TABLE audit_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_user TEXT,
    actor_role TEXT,
    action TEXT NOT NULL,
    target_kind TEXT,
    target_ids TEXT,
    request_id TEXT,
    detail TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor_user, at);

-- One row. last_change_seq orders every record change in commit order (writers are serialised);
-- purged_before_seq is the oldest cursor the server can still serve without a reset.
CREATE TABLE sync_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_change_seq BIGINT NOT NULL,
    purged_before_seq BIGINT NOT NULL
);
INSERT INTO sync_state (id, last_change_seq, purged_before_seq) VALUES (1, 0, 0);

-- The per-device ledger of ops, written in the same transaction as their effects.
CREATE TABLE device_ops (
    device_id TEXT NOT NULL REFERENCES devices(id),
    seq BIGINT NOT NULL,
    op_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    record_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('create', 'update', 'delete')),
    status TEXT NOT NULL CHECK (status IN ('applied', 'redirected', 'rejected')),
    code TEXT,
    result TEXT NOT NULL,
    payload TEXT,
    recorded_at BIGINT,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX device_ops_received ON device_ops (received_at);
CREATE INDEX device_ops_rejected ON device_ops (status, device_id);

-- Every version of every record: the bases of three-way merges and the supervisor's history.
CREATE TABLE record_versions (
    entity TEXT NOT NULL,
    record_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    org_unit TEXT COLLATE "C" NOT NULL,
    deleted BOOLEAN NOT NULL,
    merged_into TEXT,
    data TEXT NOT NULL,
    change_seq BIGINT NOT NULL,
    op_id TEXT,
    device_id TEXT,
    user_id TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (entity, record_id, version)
);

CREATE TABLE conflicts (
    id TEXT PRIMARY KEY,
    entity TEXT NOT NULL,
    record_id TEXT NOT NULL,
    org_unit TEXT COLLATE "C" NOT NULL,
    field TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('field', 'delete_vs_edit', 'edit_vs_delete')),
    policy TEXT NOT NULL CHECK (policy IN ('review', 'latest')),
    status TEXT NOT NULL CHECK (status IN ('open', 'closed', 'resolved')),
    winner TEXT NOT NULL CHECK (winner IN ('server', 'device')),
    base_value TEXT NOT NULL,
    server_value TEXT NOT NULL,
    device_value TEXT NOT NULL,
    base_version BIGINT,
    server_version BIGINT NOT NULL,
    device_id TEXT,
    user_id TEXT NOT NULL,
    op_id TEXT,
    recorded_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    change_seq BIGINT NOT NULL,
    resolved_by TEXT,
    resolved_at BIGINT,
    resolution TEXT,
    reason TEXT
);
CREATE INDEX conflicts_scope_seq ON conflicts (org_unit, change_seq);
CREATE INDEX conflicts_record ON conflicts (entity, record_id);
CREATE INDEX conflicts_status ON conflicts (status, org_unit);

-- Logic-check flags (逻辑错误): one row per record and check; active until a later version passes.
CREATE TABLE flags (
    entity TEXT NOT NULL,
    record_id TEXT NOT NULL,
    check_code TEXT NOT NULL,
    org_unit TEXT COLLATE "C" NOT NULL,
    active BOOLEAN NOT NULL,
    version BIGINT NOT NULL,
    raised_at BIGINT NOT NULL,
    cleared_at BIGINT,
    PRIMARY KEY (entity, record_id, check_code)
);
CREATE INDEX flags_scope ON flags (org_unit, active);

-- Potential duplicate persons (same resident ID number, or same name + birth date + village).
CREATE TABLE duplicate_candidates (
    id TEXT PRIMARY KEY,
    person_a TEXT NOT NULL,
    person_b TEXT NOT NULL,
    org_unit TEXT COLLATE "C" NOT NULL,
    signal TEXT NOT NULL CHECK (signal IN ('id_number', 'name_birth_date')),
    status TEXT NOT NULL CHECK (status IN ('open', 'merged', 'dismissed')),
    created_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT,
    UNIQUE (person_a, person_b)
);
CREATE INDEX duplicate_candidates_scope ON duplicate_candidates (org_unit, status);

-- Merges of duplicate persons, with the snapshot that makes an undo possible.
CREATE TABLE person_merges (
    id TEXT PRIMARY KEY,
    survivor_id TEXT NOT NULL,
    merged_id TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    merged_by TEXT NOT NULL,
    automatic BOOLEAN NOT NULL,
    merged_at BIGINT NOT NULL,
    undone_at BIGINT,
    undone_by TEXT
);
CREATE INDEX person_merges_merged ON person_merges (merged_id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- The village ledgers. Field lists mirror src/domain/entities.rs.
-- household
CREATE TABLE households (
    id TEXT PRIMARY KEY CHECK (length(id) = 36),
    org_unit TEXT COLLATE "C" NOT NULL REFERENCES org_units(code),
    version BIGINT NOT NULL CHECK (version >= 1),
    change_seq BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    merged_into TEXT,
    field_stamps TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_device TEXT,
    household_no TEXT NOT NULL CHECK (char_length(household_no) <= 100),
    address TEXT CHECK (char_length(address) <= 200),
    head_name TEXT CHECK (char_length(head_name) <= 50),
    phone TEXT CHECK (char_length(phone) <= 20),
    one_child BOOLEAN,
    two_daughters BOOLEAN,
    notes TEXT CHECK (char_length(notes) <= 2000)
);
CREATE INDEX households_scope_seq ON households (org_unit, change_seq);
CREATE UNIQUE INDEX households_change_seq ON households (change_seq);
-- person
CREATE TABLE persons (
    id TEXT PRIMARY KEY CHECK (length(id) = 36),
    org_unit TEXT COLLATE "C" NOT NULL REFERENCES org_units(code),
    version BIGINT NOT NULL CHECK (version >= 1),
    change_seq BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    merged_into TEXT,
    field_stamps TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_device TEXT,
    household_id TEXT CHECK (length(household_id) = 36),
    name TEXT NOT NULL CHECK (char_length(name) <= 50),
    sex TEXT NOT NULL CHECK (sex IN ('male', 'female')),
    birth_date TEXT NOT NULL CHECK (birth_date ~ '^[0-9]{4}-[0-1][0-9]-[0-3][0-9]$'),
    id_number TEXT CHECK (length(id_number) = 18),
    relation TEXT CHECK (relation IN ('head', 'spouse', 'child', 'parent', 'grandchild', 'sibling', 'other')),
    marital_status TEXT CHECK (marital_status IN ('unmarried', 'first_marriage', 'remarried', 'divorced', 'widowed')),
    marriage_date TEXT CHECK (marriage_date ~ '^[0-9]{4}-[0-1][0-9]-[0-3][0-9]$'),
    residence TEXT CHECK (residence IN ('resident', 'moved_out', 'moved_in')),
    alive BOOLEAN,
    phone TEXT CHECK (char_length(phone) <= 20),
    notes TEXT CHECK (char_length(notes) <= 2000)
);
CREATE INDEX persons_scope_seq ON persons (org_unit, change_seq);
CREATE UNIQUE INDEX persons_change_seq ON persons (change_seq);
CREATE INDEX persons_household_id ON persons (household_id);
CREATE INDEX persons_id_number ON persons (id_number);
CREATE INDEX persons_wcba ON persons (org_unit, sex, birth_date);
-- pregnancy
CREATE TABLE pregnancies (
    id TEXT PRIMARY KEY CHECK (length(id) = 36),
    org_unit TEXT COLLATE "C" NOT NULL REFERENCES org_units(code),
    version BIGINT NOT NULL CHECK (version >= 1),
    change_seq BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    merged_into TEXT,
    field_stamps TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_device TEXT,
    person_id TEXT NOT NULL CHECK (length(person_id) = 36),
    detected_on TEXT CHECK (detected_on ~ '^[0-9]{4}-[0-1][0-9]-[0-3][0-9]$'),
    expected_date TEXT CHECK (expected_date ~ '^[0-9]{4}-[0-1][0-9]-[0-3][0-9]$'),
    parity INTEGER CHECK (parity BETWEEN 1 AND 20),
    within_policy BOOLEAN,
    certificate_no TEXT CHECK (char_length(certificate_no) <= 100),
    status TEXT NOT NULL CHECK (status IN ('ongoing', 'ended')),
    outcome TEXT CHECK (outcome IN ('birth', 'miscarriage', 'induced')),
    outcome_date TEXT CHECK (outcome_date ~ '^[0-9]{4}-[0-1][0-9]-[0-3][0-9]$'),
    notes TEXT CHECK (char_length(notes) <= 2000)
);
CREATE INDEX pregnancies_scope_seq ON pregnancies (org_unit, change_seq);
CREATE UNIQUE INDEX pregnancies_change_seq ON pregnancies (change_seq);
CREATE INDEX pregnancies_person_id ON pregnancies (person_id);
-- birth
CREATE TABLE births (
    id TEXT PRIMARY KEY CHECK (length(id) = 36),
    org_unit TEXT COLLATE "C" NOT NULL REFERENCES org_units(code),
    version BIGINT NOT NULL CHECK (version >= 1),
    change_seq BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    merged_into TEXT,
    field_stamps TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_device TEXT,
    mother_id TEXT NOT NULL CHECK (length(mother_id) = 36),
    child_id TEXT CHECK (length(child_id) = 36),
    birth_date TEXT NOT NULL CHECK (birth_date ~ '^[0-9]{4}-[0-1][0-9]-[0-3][0-9]$'),
    sex TEXT NOT NULL CHECK (sex IN ('male', 'female')),
    parity INTEGER NOT NULL CHECK (parity BETWEEN 1 AND 20),
    place TEXT CHECK (place IN ('hospital', 'township_clinic', 'home', 'other')),
    within_policy BOOLEAN,
    notes TEXT CHECK (char_length(notes) <= 2000)
);
CREATE INDEX births_scope_seq ON births (org_unit, change_seq);
CREATE UNIQUE INDEX births_change_seq ON births (change_seq);
CREATE INDEX births_mother_id ON births (mother_id);
CREATE INDEX births_child_id ON births (child_id);
-- death
CREATE TABLE deaths (
    id TEXT PRIMARY KEY CHECK (length(id) = 36),
    org_unit TEXT COLLATE "C" NOT NULL REFERENCES org_units(code),
    version BIGINT NOT NULL CHECK (version >= 1),
    change_seq BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    merged_into TEXT,
    field_stamps TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_device TEXT,
    person_id TEXT NOT NULL CHECK (length(person_id) = 36),
    death_date TEXT NOT NULL CHECK (death_date ~ '^[0-9]{4}-[0-1][0-9]-[0-3][0-9]$'),
    cause TEXT CHECK (char_length(cause) <= 100),
    notes TEXT CHECK (char_length(notes) <= 2000)
);
CREATE INDEX deaths_scope_seq ON deaths (org_unit, change_seq);
CREATE UNIQUE INDEX deaths_change_seq ON deaths (change_seq);
CREATE INDEX deaths_person_id ON deaths (person_id);
-- measure
CREATE TABLE measures (
    id TEXT PRIMARY KEY CHECK (length(id) = 36),
    org_unit TEXT COLLATE "C" NOT NULL REFERENCES org_units(code),
    version BIGINT NOT NULL CHECK (version >= 1),
    change_seq BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    merged_into TEXT,
    field_stamps TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_device TEXT,
    person_id TEXT NOT NULL CHECK (length(person_id) = 36),
    method TEXT NOT NULL CHECK (method IN ('iud_insertion', 'iud_removal', 'tubal_ligation', 'vasectomy', 'implant', 'pills', 'condoms', 'injection')),
    started_on TEXT NOT NULL CHECK (started_on ~ '^[0-9]{4}-[0-1][0-9]-[0-3][0-9]$'),
    ended_on TEXT CHECK (ended_on ~ '^[0-9]{4}-[0-1][0-9]-[0-3][0-9]$'),
    provider TEXT CHECK (char_length(provider) <= 100),
    notes TEXT CHECK (char_length(notes) <= 2000)
);
CREATE INDEX measures_scope_seq ON measures (org_unit, change_seq);
CREATE UNIQUE INDEX measures_change_seq ON measures (change_seq);
CREATE INDEX measures_person_id ON measures (person_id);
-- visit
CREATE TABLE visits (
    id TEXT PRIMARY KEY CHECK (length(id) = 36),
    org_unit TEXT COLLATE "C" NOT NULL REFERENCES org_units(code),
    version BIGINT NOT NULL CHECK (version >= 1),
    change_seq BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    merged_into TEXT,
    field_stamps TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_device TEXT,
    person_id TEXT NOT NULL CHECK (length(person_id) = 36),
    kind TEXT NOT NULL CHECK (kind IN ('iud_check', 'pregnancy_check', 'disease_check', 'post_operation', 'postpartum', 'contraceptive')),
    due_date TEXT CHECK (due_date ~ '^[0-9]{4}-[0-1][0-9]-[0-3][0-9]$'),
    visit_date TEXT CHECK (visit_date ~ '^[0-9]{4}-[0-1][0-9]-[0-3][0-9]$'),
    findings TEXT CHECK (char_length(findings) <= 2000),
    next_due TEXT CHECK (next_due ~ '^[0-9]{4}-[0-1][0-9]-[0-3][0-9]$'),
    notes TEXT CHECK (char_length(notes) <= 2000)
);
CREATE INDEX visits_scope_seq ON visits (org_unit, change_seq);
CREATE UNIQUE INDEX visits_change_seq ON visits (change_seq);
CREATE INDEX visits_person_id ON visits (person_id);
-- migration
CREATE TABLE migrations_log (
    id TEXT PRIMARY KEY CHECK (length(id) = 36),
    org_unit TEXT COLLATE "C" NOT NULL REFERENCES org_units(code),
    version BIGINT NOT NULL CHECK (version >= 1),
    change_seq BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    merged_into TEXT,
    field_stamps TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_device TEXT,
    person_id TEXT NOT NULL CHECK (length(person_id) = 36),
    direction TEXT NOT NULL CHECK (direction IN ('out', 'in')),
    place TEXT CHECK (place IN ('within_province', 'outside_province')),
    moved_on TEXT NOT NULL CHECK (moved_on ~ '^[0-9]{4}-[0-1][0-9]-[0-3][0-9]$'),
    certificate_no TEXT CHECK (char_length(certificate_no) <= 100),
    certificate_checked BOOLEAN,
    notes TEXT CHECK (char_length(notes) <= 2000)
);
CREATE INDEX migrations_log_scope_seq ON migrations_log (org_unit, change_seq);
CREATE UNIQUE INDEX migrations_log_change_seq ON migrations_log (change_seq);
CREATE INDEX migrations_log_person_id ON migrations_log (person_id);
-- supply
CREATE TABLE supplies (
    id TEXT PRIMARY KEY CHECK (length(id) = 36),
    org_unit TEXT COLLATE "C" NOT NULL REFERENCES org_units(code),
    version BIGINT NOT NULL CHECK (version >= 1),
    change_seq BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    merged_into TEXT,
    field_stamps TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_device TEXT,
    person_id TEXT NOT NULL CHECK (length(person_id) = 36),
    item TEXT NOT NULL CHECK (item IN ('condoms', 'film', 'pills')),
    quantity INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 10000),
    handed_on TEXT NOT NULL CHECK (handed_on ~ '^[0-9]{4}-[0-1][0-9]-[0-3][0-9]$')
);
CREATE INDEX supplies_scope_seq ON supplies (org_unit, change_seq);
CREATE UNIQUE INDEX supplies_change_seq ON supplies (change_seq);
CREATE INDEX supplies_person_id ON supplies (person_id);
-- benefit
CREATE TABLE benefits (
    id TEXT PRIMARY KEY CHECK (length(id) = 36),
    org_unit TEXT COLLATE "C" NOT NULL REFERENCES org_units(code),
    version BIGINT NOT NULL CHECK (version >= 1),
    change_seq BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    merged_into TEXT,
    field_stamps TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_device TEXT,
    person_id TEXT CHECK (length(person_id) = 36),
    household_id TEXT CHECK (length(household_id) = 36),
    kind TEXT NOT NULL CHECK (kind IN ('one_child_certificate', 'reward_assistance', 'special_assistance')),
    year INTEGER NOT NULL CHECK (year BETWEEN 1980 AND 2100),
    amount_yuan INTEGER CHECK (amount_yuan BETWEEN 0 AND 1000000)
);
CREATE INDEX benefits_scope_seq ON benefits (org_unit, change_seq);
CREATE UNIQUE INDEX benefits_change_seq ON benefits (change_seq);
CREATE INDEX benefits_person_id ON benefits (person_id);
CREATE INDEX benefits_household_id ON benefits (household_id);
