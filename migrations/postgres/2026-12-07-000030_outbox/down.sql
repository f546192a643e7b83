DROP TABLE webhooks;
DROP TABLE outbox_attempts;
DROP TABLE outbox;
