DROP INDEX nodes_suspended;
