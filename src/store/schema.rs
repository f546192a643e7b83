// One schema for both backends: the migrations in `migrations/sqlite` and `migrations/postgres`
// create the same columns with the same diesel types. Kept by hand, checked by the test suite
// running every query on both backends.

diesel::table! {
    nodes (id) {
        id -> Text,
        parent_id -> Nullable<Text>,
        path -> Text,
        kind -> Text,
        name -> Text,
        description -> Nullable<Text>,
        contact_phone -> Nullable<Text>,
        contact_email -> Nullable<Text>,
        status -> Text,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        deleted_at -> Nullable<Timestamp>,
        max_aliases_per_mailbox -> Integer,
        auto_enrol -> Bool,
        inbound_recipients -> Text,
        role_recipient -> Nullable<Text>,
        local_part_case -> Text,
        oversell_version -> BigInt,
    }
}

diesel::table! {
    accounts (id) {
        id -> Text,
        node_id -> Text,
        username -> Text,
        email -> Text,
        role -> Text,
        password_hash -> Text,
        disabled -> Bool,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        credential_version -> BigInt,
        password_change_required -> Bool,
    }
}

diesel::table! {
    settings (name) {
        name -> Text,
        value -> Text,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        at -> Timestamp,
        actor -> Text,
        node_id -> Text,
        action -> Text,
        target_kind -> Text,
        target_id -> Text,
        before -> Nullable<Text>,
        after -> Nullable<Text>,
        request_id -> Nullable<Text>,
        actor_name -> Nullable<Text>,
        node_name -> Nullable<Text>,
        client_address -> Nullable<Text>,
    }
}

diesel::table! {
    allocations (id) {
        id -> Text,
        node_id -> Text,
        grantor_id -> Nullable<Text>,
        resource -> Text,
        amount -> BigInt,
        starts_on -> Date,
        ends_on -> Nullable<Date>,
        active -> Bool,
        description -> Nullable<Text>,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    modules (code) {
        code -> Text,
        name -> Text,
        description -> Text,
        unit -> Text,
        auto_assign -> Bool,
        retired -> Bool,
        created_at -> Timestamp,
        version -> BigInt,
    }
}

diesel::table! {
    module_requires (module_code, required_code) {
        module_code -> Text,
        required_code -> Text,
    }
}

diesel::table! {
    module_excludes (module_code, excluded_code) {
        module_code -> Text,
        excluded_code -> Text,
    }
}

diesel::table! {
    usage_counters (node_id, resource) {
        node_id -> Text,
        resource -> Text,
        used -> BigInt,
    }
}

diesel::joinable!(accounts -> nodes (node_id));
diesel::joinable!(usage_counters -> nodes (node_id));
diesel::joinable!(audit_events -> nodes (node_id));
diesel::allow_tables_to_appear_in_same_query!(audit_events, nodes);
diesel::allow_tables_to_appear_in_same_query!(
    nodes,
    accounts,
    allocations,
    modules,
    usage_counters,
);

diesel::table! {
    idempotency_keys (principal, key) {
        principal -> Text,
        key -> Text,
        fingerprint -> Text,
        status -> Integer,
        body -> Text,
        location -> Nullable<Text>,
        etag -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        node_id -> Text,
        name -> Text,
        role -> Text,
        secret_hash -> Text,
        expires_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        rate_limit -> Nullable<BigInt>,
        version -> BigInt,
    }
}

diesel::table! {
    domains (id) {
        id -> Text,
        node_id -> Text,
        name -> Text,
        description -> Nullable<Text>,
        route_host -> Nullable<Text>,
        route_port -> Nullable<Integer>,
        route_priority -> Nullable<Integer>,
        status -> Text,
        verification_token -> Text,
        verified_at -> Nullable<Timestamp>,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(domains -> nodes (node_id));
diesel::allow_tables_to_appear_in_same_query!(domains, nodes);

diesel::table! {
    mailboxes (id) {
        id -> Text,
        node_id -> Text,
        domain_id -> Text,
        local_part -> Text,
        address -> Text,
        display_name -> Nullable<Text>,
        first_name -> Nullable<Text>,
        last_name -> Nullable<Text>,
        contact_email -> Nullable<Text>,
        status -> Text,
        origin -> Text,
        first_seen_at -> Nullable<Timestamp>,
        last_seen_at -> Nullable<Timestamp>,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        address_key -> Nullable<Text>,
    }
}

diesel::joinable!(mailboxes -> nodes (node_id));
diesel::joinable!(mailboxes -> domains (domain_id));
diesel::allow_tables_to_appear_in_same_query!(mailboxes, nodes);
diesel::allow_tables_to_appear_in_same_query!(mailboxes, domains);

diesel::table! {
    aliases (id) {
        id -> Text,
        mailbox_id -> Text,
        node_id -> Text,
        domain_id -> Text,
        local_part -> Text,
        address -> Text,
        created_at -> Timestamp,
        address_key -> Nullable<Text>,
    }
}

diesel::joinable!(aliases -> mailboxes (mailbox_id));
diesel::allow_tables_to_appear_in_same_query!(aliases, mailboxes);
diesel::allow_tables_to_appear_in_same_query!(aliases, nodes);

diesel::table! {
    mailbox_groups (id) {
        id -> Text,
        node_id -> Text,
        name -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    group_members (group_id, mailbox_id) {
        group_id -> Text,
        mailbox_id -> Text,
    }
}

diesel::joinable!(group_members -> mailbox_groups (group_id));
diesel::joinable!(group_members -> mailboxes (mailbox_id));
diesel::allow_tables_to_appear_in_same_query!(group_members, mailbox_groups, mailboxes);

diesel::table! {
    changes (seq) {
        seq -> BigInt,
        kind -> Text,
        id -> Text,
        key -> Nullable<Text>,
        at -> Timestamp,
    }
}

diesel::table! {
    mailbox_modules (mailbox_id, module_code) {
        mailbox_id -> Text,
        module_code -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    node_modules (node_id, module_code) {
        node_id -> Text,
        module_code -> Text,
        created_at -> Timestamp,
    }
}

diesel::joinable!(mailbox_modules -> mailboxes (mailbox_id));
diesel::allow_tables_to_appear_in_same_query!(mailbox_modules, mailboxes);
diesel::allow_tables_to_appear_in_same_query!(mailbox_modules, nodes);
diesel::allow_columns_to_appear_in_same_group_by_clause!(
    mailboxes::node_id,
    mailbox_modules::module_code,
);

diesel::table! {
    usage_history (node_id, day, resource) {
        node_id -> Text,
        resource -> Text,
        day -> Date,
        day_limit -> BigInt,
        peak -> BigInt,
        used -> BigInt,
    }
}

diesel::table! {
    usage_history_days (day) {
        day -> Date,
        closed -> Bool,
        limits_judged -> Bool,
    }
}

diesel::table! {
    active_user_history (node_id, day) {
        node_id -> Text,
        day -> Date,
        active_users -> BigInt,
    }
}

diesel::allow_columns_to_appear_in_same_group_by_clause!(
    allocations::node_id,
    allocations::resource
);

diesel::allow_tables_to_appear_in_same_query!(usage_history, nodes);

diesel::table! {
    login_attempts (attempt, key_hash) {
        attempt -> Text,
        key_hash -> Text,
        at -> Timestamp,
        pending -> Bool,
    }
}

diesel::table! {
    oversell_ratios (node_id, resource) {
        node_id -> Text,
        resource -> Text,
        permille -> BigInt,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        kind -> Text,
        node_id -> Text,
        target -> Text,
        ordering_key -> Nullable<Text>,
        topic -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        lease_until -> Nullable<Timestamp>,
        claim -> Nullable<Text>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    outbox_attempts (id) {
        id -> Text,
        message_id -> Text,
        at -> Timestamp,
        duration_ms -> BigInt,
        status_code -> Nullable<Integer>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    webhooks (id) {
        id -> Text,
        node_id -> Text,
        url -> Text,
        events -> Text,
        description -> Nullable<Text>,
        secret -> Binary,
        previous_secret -> Nullable<Binary>,
        previous_until -> Nullable<Timestamp>,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(outbox -> nodes (node_id));
diesel::joinable!(webhooks -> nodes (node_id));
diesel::allow_tables_to_appear_in_same_query!(outbox, nodes);
diesel::allow_tables_to_appear_in_same_query!(webhooks, nodes);

diesel::table! {
    node_settings (node_id, settings_group) {
        node_id -> Text,
        settings_group -> Text,
        own_values -> Text,
        secrets -> Text,
        version -> BigInt,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    quota_crossings (node_id, resource, threshold) {
        node_id -> Text,
        resource -> Text,
        threshold -> Integer,
        crossed_at -> Timestamp,
    }
}

diesel::table! {
    plans (id) {
        id -> Text,
        node_id -> Text,
        code -> Text,
        name -> Text,
        description -> Nullable<Text>,
        retired -> Bool,
        current_version -> BigInt,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    plan_versions (plan_id, number) {
        plan_id -> Text,
        number -> BigInt,
        resources -> Text,
        modules -> Text,
        max_aliases_per_mailbox -> Nullable<Integer>,
        auto_enrol -> Nullable<Bool>,
        inbound_recipients -> Nullable<Text>,
        term_months -> Nullable<Integer>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    node_plans (node_id) {
        node_id -> Text,
        plan_id -> Text,
        plan_version -> BigInt,
        starts_on -> Date,
        applied_at -> Timestamp,
    }
}

diesel::table! {
    plan_grants (allocation_id) {
        allocation_id -> Text,
        node_id -> Text,
    }
}

diesel::joinable!(node_plans -> plans (plan_id));
diesel::allow_tables_to_appear_in_same_query!(node_plans, plans, nodes);
