//! Diesel table definitions for the tables queried through the DSL. The ledger record tables
//! (households, persons, ...) are reached through `db::records`, which builds their SQL from
//! `domain::entities`. Only types both backends share: Text, BigInt, Integer, Bool, Nullable.

diesel::table! {
    org_units (code) {
        code -> Text,
        name -> Text,
        level -> Text,
        parent_code -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        display_name -> Text,
        role -> Text,
        org_unit -> Nullable<Text>,
        password_hash -> Text,
        active -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    user_villages (user_id, org_unit) {
        user_id -> Text,
        org_unit -> Text,
    }
}

diesel::table! {
    devices (id) {
        id -> Text,
        user_id -> Text,
        name -> Text,
        app_version -> Nullable<Text>,
        status -> Text,
        last_seq -> BigInt,
        scope_hash -> Nullable<Text>,
        last_push_at -> Nullable<BigInt>,
        last_pull_at -> Nullable<BigInt>,
        last_pull_cursor -> Nullable<BigInt>,
        clock_offset_ms -> Nullable<BigInt>,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        revoked_by -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        family_id -> Text,
        device_id -> Nullable<Text>,
        user_id -> Text,
        token_hash -> Text,
        successor_id -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> BigInt,
        actor_user -> Nullable<Text>,
        actor_role -> Nullable<Text>,
        action -> Text,
        target_kind -> Nullable<Text>,
        target_ids -> Nullable<Text>,
        request_id -> Nullable<Text>,
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    sync_state (id) {
        id -> Integer,
        last_change_seq -> BigInt,
        purged_before_seq -> BigInt,
    }
}

diesel::table! {
    device_ops (device_id, seq) {
        device_id -> Text,
        seq -> BigInt,
        op_id -> Text,
        entity -> Text,
        record_id -> Text,
        kind -> Text,
        status -> Text,
        code -> Nullable<Text>,
        result -> Text,
        payload -> Nullable<Text>,
        recorded_at -> Nullable<BigInt>,
        received_at -> BigInt,
    }
}

diesel::table! {
    record_versions (entity, record_id, version) {
        entity -> Text,
        record_id -> Text,
        version -> BigInt,
        org_unit -> Text,
        deleted -> Bool,
        merged_into -> Nullable<Text>,
        data -> Text,
        change_seq -> BigInt,
        op_id -> Nullable<Text>,
        device_id -> Nullable<Text>,
        user_id -> Text,
        recorded_at -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    conflicts (id) {
        id -> Text,
        entity -> Text,
        record_id -> Text,
        org_unit -> Text,
        field -> Nullable<Text>,
        kind -> Text,
        policy -> Text,
        status -> Text,
        winner -> Text,
        base_value -> Text,
        server_value -> Text,
        device_value -> Text,
        base_version -> Nullable<BigInt>,
        server_version -> BigInt,
        device_id -> Nullable<Text>,
        user_id -> Text,
        op_id -> Nullable<Text>,
        recorded_at -> BigInt,
        created_at -> BigInt,
        change_seq -> BigInt,
        resolved_by -> Nullable<Text>,
        resolved_at -> Nullable<BigInt>,
        resolution -> Nullable<Text>,
        reason -> Nullable<Text>,
    }
}

diesel::table! {
    flags (entity, record_id, check_code) {
        entity -> Text,
        record_id -> Text,
        check_code -> Text,
        org_unit -> Text,
        active -> Bool,
        version -> BigInt,
        raised_at -> BigInt,
        cleared_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    duplicate_candidates (id) {
        id -> Text,
        person_a -> Text,
        person_b -> Text,
        org_unit -> Text,
        signal -> Text,
        status -> Text,
        created_at -> BigInt,
        decided_at -> Nullable<BigInt>,
        decided_by -> Nullable<Text>,
    }
}

diesel::table! {
    person_merges (id) {
        id -> Text,
        survivor_id -> Text,
        merged_id -> Text,
        snapshot -> Text,
        merged_by -> Text,
        automatic -> Bool,
        merged_at -> BigInt,
        undone_at -> Nullable<BigInt>,
        undone_by -> Nullable<Text>,
    }
}

diesel::table! {
    duplicate_dismissals (person_a, person_b) {
        person_a -> Text,
        person_b -> Text,
        org_unit -> Text,
        reason -> Text,
        dismissed_by -> Text,
        dismissed_at -> BigInt,
        merge_id -> Nullable<Text>,
    }
}

diesel::table! {
    departures (entity, record_id, version) {
        entity -> Text,
        record_id -> Text,
        version -> BigInt,
        from_org_unit -> Text,
        to_org_unit -> Text,
        change_seq -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    org_units,
    users,
    user_villages,
    devices,
    refresh_tokens,
    audit_log,
    sync_state,
    device_ops,
    record_versions,
    conflicts,
    flags,
    duplicate_candidates,
    person_merges,
    duplicate_dismissals,
    departures,
);
