//! What the audit trail records: every action a write can be, spelt once. An action is
//! `<kind>.<verb>`, the kind naming what changed (`mailbox`, `domain`, …); the trail's readers
//! filter by these spellings, so they are part of the API.

super::text_enum! {
    /// One kind of change the audit trail records.
    pub enum Action {
        AccountCreate = "account.create",
        AccountDelete = "account.delete",
        AccountUpdate = "account.update",
        AliasCreate = "alias.create",
        AliasDelete = "alias.delete",
        AllocationCreate = "allocation.create",
        AllocationEnd = "allocation.end",
        AllocationUpdate = "allocation.update",
        ApiKeyCreate = "api_key.create",
        ApiKeyRevoke = "api_key.revoke",
        DomainCreate = "domain.create",
        DomainDelete = "domain.delete",
        DomainExpire = "domain.expire",
        DomainRouteTest = "domain.route_test",
        DomainTakenOver = "domain.taken_over",
        DomainUpdate = "domain.update",
        DomainVerify = "domain.verify",
        GroupAddMember = "group.add_member",
        GroupCreate = "group.create",
        GroupDelete = "group.delete",
        GroupRemoveMember = "group.remove_member",
        LicenceCreate = "licence.create",
        LicenceEnd = "licence.end",
        MailboxCreate = "mailbox.create",
        MailboxDelete = "mailbox.delete",
        MailboxDisable = "mailbox.disable",
        MailboxEnable = "mailbox.enable",
        MailboxEnrol = "mailbox.enrol",
        MailboxModuleAssign = "mailbox.module.assign",
        MailboxModuleRemove = "mailbox.module.remove",
        MailboxUpdate = "mailbox.update",
        ModuleCreate = "module.create",
        ModuleDelete = "module.delete",
        ModuleUpdate = "module.update",
        NodeCreate = "node.create",
        NodeDelete = "node.delete",
        NodeModuleAssign = "node.module.assign",
        NodeModuleRemove = "node.module.remove",
        NodeMove = "node.move",
        NodeUpdate = "node.update",
    }
}
