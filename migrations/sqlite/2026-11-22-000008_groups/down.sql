DROP TABLE group_members;
DROP TABLE mailbox_groups;
